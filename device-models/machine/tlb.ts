/**
 * A hardware TLB model: translations from virtual page number to physical frame, tagged by
 * PCID (when CR4.PCIDE is on; tag 0 otherwise), with global entries (PTE.G under CR4.PGE) kept
 * apart so that a CR3 load can drop every non-global entry in O(1).
 *
 * Capacity is a total over all tags; when full, the oldest entry of the map being filled is
 * evicted (FIFO within a tag, a fair stand-in for the pseudo-LRU of real STLBs). Values pack
 * the frame and two flags: `frame * 4 + (global ? 2 : 0) + (writable ? 1 : 0)`.
 */
import { UsageError } from '../../spec-refs/errors.ts';

export const TLB_WRITABLE = 1;
export const TLB_GLOBAL = 2;

export class Tlb {
  readonly capacity: number;
  private readonly global = new Map<number, number>();
  private readonly tagged = new Map<number, Map<number, number>>();
  private size = 0;

  constructor(capacity: number) {
    this.capacity = Math.max(1, capacity | 0);
  }

  get entries(): number {
    return this.size;
  }

  /** The packed value for `vpn` under `tag`, or -1 on a miss. */
  lookup(tag: number, vpn: number): number {
    const g = this.global.get(vpn);
    if (g !== undefined) return g;
    const m = this.tagged.get(tag);
    if (m === undefined) return -1;
    const v = m.get(vpn);
    return v === undefined ? -1 : v;
  }

  insert(tag: number, vpn: number, frame: number, writable: boolean, global: boolean): void {
    const value = frame * 4 + (global ? TLB_GLOBAL : 0) + (writable ? TLB_WRITABLE : 0);
    let m: Map<number, number>;
    if (global) m = this.global;
    else {
      let t = this.tagged.get(tag);
      if (t === undefined) {
        t = new Map();
        this.tagged.set(tag, t);
      }
      m = t;
    }
    if (m.has(vpn)) {
      m.set(vpn, value);
      return;
    }
    if (this.size >= this.capacity) this.evictFrom(m);
    m.set(vpn, value);
    this.size++;
  }

  private evictFrom(preferred: Map<number, number>): void {
    let victim: Map<number, number> | undefined = preferred.size > 0 ? preferred : undefined;
    if (!victim) {
      for (const t of this.tagged.values()) if (t.size > 0) { victim = t; break; }
      if (!victim && this.global.size > 0) victim = this.global;
    }
    if (!victim) return;
    const first = victim.keys().next();
    if (!first.done) {
      victim.delete(first.value);
      this.size--;
    }
  }

  /** INVLPG: drop `vpn` under `tag` and any global entry for it. */
  invalidatePage(tag: number, vpn: number): void {
    if (this.global.delete(vpn)) this.size--;
    const m = this.tagged.get(tag);
    if (m && m.delete(vpn)) this.size--;
  }

  /** Drop `vpn` under every tag (what a hypervisor does after zapping a shadow entry). */
  invalidatePageAllTags(vpn: number): void {
    if (this.global.delete(vpn)) this.size--;
    for (const m of this.tagged.values()) if (m.delete(vpn)) this.size--;
  }

  /** A CR3 load without PCID (or with the flush bit): every non-global entry of `tag` goes. */
  flushTag(tag: number): void {
    const m = this.tagged.get(tag);
    if (m) {
      this.size -= m.size;
      m.clear();
    }
  }

  /** Every non-global entry of every tag (CR3 load with PCID off flushes all tags' non-global entries). */
  flushNonGlobal(): void {
    for (const m of this.tagged.values()) {
      this.size -= m.size;
      m.clear();
    }
  }

  /** Everything, globals included (CR4.PGE toggle, or a VM exit/entry on CPUs without VPID). */
  flushAll(): void {
    this.global.clear();
    for (const m of this.tagged.values()) m.clear();
    this.size = 0;
  }
}

/**
 * QEMU-style software TLB: direct mapped on the low bits of the virtual page number, one entry
 * per slot; CR3 loads flush it whole (QEMU's i386 target flushes on every CR3 write).
 */
export class SoftTlb {
  readonly slots: number;
  private readonly mask: number;
  private readonly vpns: Float64Array;
  private readonly frames: Float64Array;

  constructor(slots = 256) {
    if (!Number.isInteger(slots) || slots < 1 || (slots & (slots - 1)) !== 0) throw new UsageError('usage.tlb.slots', 'SoftTlb slots must be a power of two', { expected: 'a power of two', seen: String(slots) });
    this.slots = slots;
    this.mask = slots - 1;
    this.vpns = new Float64Array(slots).fill(-1);
    this.frames = new Float64Array(slots);
  }

  /** The frame for `vpn` (a write needs a writable entry, as QEMU keeps separate read and write tags), or -1. */
  lookup(vpn: number, write = false): number {
    const i = vpn & this.mask;
    if (this.vpns[i] !== vpn) return -1;
    const v = this.frames[i]!;
    if (write && v % 2 === 0) return -1;
    return v - (v % 2);
  }

  insert(vpn: number, frame: number, writable = true): void {
    const i = vpn & this.mask;
    this.vpns[i] = vpn;
    this.frames[i] = frame + (writable ? 1 : 0);
  }

  invalidatePage(vpn: number): void {
    const i = vpn & this.mask;
    if (this.vpns[i] === vpn) this.vpns[i] = -1;
  }

  flush(): void {
    this.vpns.fill(-1);
  }
}
