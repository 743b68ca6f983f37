import type { GuestMemoryAccess } from '../platform/guest-memory.ts';

/**
 * x86-64 4-level paging (Intel SDM Vol. 3A, 4.5 "4-Level Paging and 5-Level Paging"), walked
 * from guest memory. Virtual addresses are the low 48 bits of the canonical address (the sign
 * extension of bit 47 is implied and not represented: a JS number cannot hold 0xffff8000_00000000
 * exactly). Only 4 KiB leaves are produced by pvkit's guest; PS (large page) entries are
 * honoured at the PDPT and PD levels for completeness.
 */
export const PTE_P = 0x1;
export const PTE_RW = 0x2;
export const PTE_US = 0x4;
export const PTE_A = 0x20;
export const PTE_D = 0x40;
export const PTE_PS = 0x80;
export const PTE_G = 0x100;

export const PAGE_SIZE = 4096;
export const VA_BITS = 48;
export const VA_LIMIT = 2 ** VA_BITS;
const TWO32 = 0x1_0000_0000;

export const CR4_PGE = 1 << 7;
export const CR4_PCIDE = 1 << 17;

/** Index of `va` in the table at `level` (4 = PML4 ... 1 = PT). */
const LEVEL_SPAN = [0, 2 ** 12, 2 ** 21, 2 ** 30, 2 ** 39];
const PAGES_PER_ENTRY = [0, 1, 512, 512 ** 2, 512 ** 3];

export function tableIndex(va: number, level: number): number {
  return Math.floor(va / LEVEL_SPAN[level]!) % 512;
}

/** Pages covered by one entry of a table at `level` (1 for a PT entry, 512 for a PD entry...). */
export function pagesPerEntry(level: number): number {
  return PAGES_PER_ENTRY[level]!;
}

/** Physical address held in a PTE (bits 51:12), from its two 32-bit halves. */
export function pteAddress(lo: number, hi: number): number {
  return ((lo & 0xffff_f000) >>> 0) + (hi & 0xfffff) * TWO32;
}

/** Build a PTE value (as a JS number: bits 51:0 only, so it stays exact). */
export function makePte(pa: number, flags: number): number {
  return pa - (pa % PAGE_SIZE) + (flags & 0xfff);
}

/** Result of a walk, reused by the caller to avoid allocation. */
export interface WalkResult {
  /** Physical frame address (page aligned) of the translation, or -1 on a fault. */
  frame: number;
  writable: boolean;
  user: boolean;
  global: boolean;
  /** Paging-structure entries read (what a hardware walk costs in memory references). */
  refs: number;
  /** Level at which the walk faulted (entry not present), 0 when it did not. */
  faultLevel: number;
  /** Guest-physical addresses of the tables visited, top down (valid for `refs` entries). */
  readonly tables: number[];
}

export function newWalkResult(): WalkResult {
  return { frame: -1, writable: false, user: false, global: false, refs: 0, faultLevel: 0, tables: [0, 0, 0, 0] };
}

/**
 * Walk the 4-level tables rooted at `cr3` (its bits 51:12; low 12 bits are PCID/flags) for `va`.
 * Writable/user are the AND over the levels, as the SDM specifies for the effective rights.
 */
export function walk(mem: GuestMemoryAccess, cr3: number, va: number, out: WalkResult): WalkResult {
  let table = cr3 - (cr3 % PAGE_SIZE);
  let writable = true;
  let user = true;
  out.refs = 0;
  out.faultLevel = 0;
  out.frame = -1;
  for (let level = 4; level >= 1; level--) {
    const idx = tableIndex(va, level);
    const ea = table + idx * 8;
    out.tables[4 - level] = table;
    const lo = mem.read32(ea);
    const hi = mem.read32(ea + 4);
    out.refs++;
    if ((lo & PTE_P) === 0) {
      out.faultLevel = level;
      return out;
    }
    writable = writable && (lo & PTE_RW) !== 0;
    user = user && (lo & PTE_US) !== 0;
    const addr = ((lo & 0xffff_f000) >>> 0) + (hi & 0xfffff) * TWO32;
    if (level > 1 && level < 4 && (lo & PTE_PS) !== 0) {
      const span = pagesPerEntry(level) * PAGE_SIZE;
      const base = addr - (addr % span);
      out.frame = base + (va % span) - (va % PAGE_SIZE);
      out.writable = writable;
      out.user = user;
      out.global = (lo & PTE_G) !== 0;
      return out;
    }
    if (level === 1) {
      out.frame = addr;
      out.writable = writable;
      out.user = user;
      out.global = (lo & PTE_G) !== 0;
      return out;
    }
    table = addr;
  }
  return out;
}

/** Convenience: the guest-physical address `va` translates to, or -1. */
export function translate(mem: GuestMemoryAccess, cr3: number, va: number): number {
  const r = walk(mem, cr3, va, newWalkResult());
  return r.frame < 0 ? -1 : r.frame + (va % PAGE_SIZE);
}

/**
 * Memory references of a two-dimensional (EPT/NPT) walk for a 4-level guest under a 4-level
 * nested table: each of the 4 guest entries and the final guest-physical address needs a
 * 4-reference nested walk, plus the 4 guest entries themselves: (4+1)*4 + 4 = 24
 * (Bhargava et al., ASPLOS 2008, "Accelerating Two-Dimensional Page Walks for Virtualized
 * Systems", section 3).
 */
export const TWO_D_WALK_REFS = 24;
