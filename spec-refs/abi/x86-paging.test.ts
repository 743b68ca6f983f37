import { describe, expect, it } from 'vitest';
import { test as fcTest, fc } from '@fast-check/vitest';
import { GuestMemory } from '../../device-models/machine/memory.ts';
import { walk, translate, newWalkResult, makePte, tableIndex, PTE_P, PTE_RW, PTE_US, PTE_G, PTE_PS, PAGE_SIZE } from './x86-paging.ts';
import { Tlb, SoftTlb } from '../../device-models/machine/tlb.ts';

/** A tiny page-table builder over raw guest memory (tables from a bump allocator). */
function builder(mem: GuestMemory, base: number) {
  let next = base;
  const alloc = () => {
    const f = next;
    next += PAGE_SIZE;
    mem.fill(f, PAGE_SIZE, 0);
    return f;
  };
  const root = alloc();
  const map = (va: number, pa: number, flags: number) => {
    let t = root;
    for (let level = 4; level >= 2; level--) {
      const ea = t + tableIndex(va, level) * 8;
      const lo = mem.read32(ea);
      if ((lo & PTE_P) === 0) {
        const n = alloc();
        mem.write64(ea, makePte(n, PTE_P | PTE_RW | PTE_US));
        t = n;
      } else t = ((lo & 0xffff_f000) >>> 0) + (mem.read32(ea + 4) & 0xfffff) * 2 ** 32;
    }
    mem.write64(t + tableIndex(va, 1) * 8, makePte(pa, flags));
  };
  return { root, map, alloc };
}

describe('4-level page walk', () => {
  it('translates mapped pages, keeps the offset, and reports the rights and references', () => {
    const mem = new GuestMemory([{ base: 0, size: 4 << 20 }]);
    const b = builder(mem, 0x10_0000);
    b.map(0x40_0000, 0x20_0000, PTE_P | PTE_US);
    b.map(2 ** 47 + 0x3000, 0x21_0000, PTE_P | PTE_RW | PTE_G);
    expect(translate(mem, b.root, 0x40_0123)).toBe(0x20_0123);
    const w = walk(mem, b.root, 2 ** 47 + 0x3fff, newWalkResult());
    expect(w.frame).toBe(0x21_0000);
    expect(w.global).toBe(true);
    expect(w.user).toBe(false);
    expect(w.writable).toBe(true);
    expect(w.refs).toBe(4);
    const r = walk(mem, b.root, 0x40_0000, newWalkResult());
    expect(r.writable).toBe(false);
    expect(r.user).toBe(true);
  });

  it('faults at the level whose entry is not present', () => {
    const mem = new GuestMemory([{ base: 0, size: 4 << 20 }]);
    const b = builder(mem, 0x10_0000);
    b.map(0x40_0000, 0x20_0000, PTE_P);
    expect(walk(mem, b.root, 0x40_1000, newWalkResult()).faultLevel).toBe(1);
    expect(walk(mem, b.root, 0x8000_0000, newWalkResult()).faultLevel).toBe(3);
    expect(walk(mem, b.root, 2 ** 46, newWalkResult()).faultLevel).toBe(4);
    expect(translate(mem, b.root, 2 ** 46)).toBe(-1);
  });

  it('honours a 2 MiB page at the PD level', () => {
    const mem = new GuestMemory([{ base: 0, size: 8 << 20 }]);
    const b = builder(mem, 0x10_0000);
    b.map(0x40_0000, 0x20_0000, PTE_P); // builds PML4/PDPT/PD for the 0x400000 region
    // overwrite the PD entry for 0x600000 with a large page at 0x400000
    const pdpt = (mem.read32(b.root) & 0xffff_f000) >>> 0;
    const pd = (mem.read32(pdpt) & 0xffff_f000) >>> 0;
    mem.write64(pd + tableIndex(0x60_0000, 2) * 8, makePte(0x40_0000, PTE_P | PTE_PS));
    expect(translate(mem, b.root, 0x61_2345)).toBe(0x41_2345);
  });

  fcTest.prop([fc.uniqueArray(fc.integer({ min: 0, max: 2 ** 24 - 1 }), { minLength: 1, maxLength: 20 }), fc.integer({ min: 0, max: 4095 })])(
    'every mapped page translates to its frame, every other page faults',
    (vpnsRaw, off) => {
      const mem = new GuestMemory([{ base: 0, size: 4 << 20 }]);
      const b = builder(mem, 0x10_0000);
      const vpns = vpnsRaw.map((v) => v * 4099 % 2 ** 35); // spread over the address space
      const frames = new Map<number, number>();
      vpns.forEach((v, i) => {
        const pa = 0x30_0000 + i * PAGE_SIZE;
        frames.set(v, pa);
        b.map(v * PAGE_SIZE, pa, PTE_P | PTE_RW);
      });
      for (const [v, pa] of frames) expect(translate(mem, b.root, v * PAGE_SIZE + off)).toBe(pa + off);
      const other = (vpns[0]! + 1) % 2 ** 35;
      if (!frames.has(other)) expect(translate(mem, b.root, other * PAGE_SIZE)).toBe(-1);
    },
  );
});

describe('TLB', () => {
  it('keeps global entries across a non-global flush and drops them on a full flush', () => {
    const t = new Tlb(8);
    t.insert(0, 1, 0x1000, true, true);
    t.insert(0, 2, 0x2000, false, false);
    t.flushNonGlobal();
    expect(t.lookup(0, 1)).toBeGreaterThanOrEqual(0);
    expect(t.lookup(0, 2)).toBe(-1);
    t.flushAll();
    expect(t.lookup(0, 1)).toBe(-1);
    expect(t.entries).toBe(0);
  });

  it('tags entries by PCID and flushes one tag only', () => {
    const t = new Tlb(8);
    t.insert(1, 5, 0x5000, true, false);
    t.insert(2, 5, 0x6000, true, false);
    expect(Math.floor(t.lookup(1, 5) / 4)).toBe(0x5000);
    expect(Math.floor(t.lookup(2, 5) / 4)).toBe(0x6000);
    t.flushTag(1);
    expect(t.lookup(1, 5)).toBe(-1);
    expect(t.lookup(2, 5)).toBeGreaterThanOrEqual(0);
  });

  it('never holds more than its capacity, and INVLPG drops one page', () => {
    const t = new Tlb(4);
    for (let i = 0; i < 10; i++) t.insert(0, i, i * 0x1000, true, i % 3 === 0);
    expect(t.entries).toBeLessThanOrEqual(4);
    t.insert(0, 100, 0x64000, true, false);
    t.invalidatePage(0, 100);
    expect(t.lookup(0, 100)).toBe(-1);
  });

  it('software TLB: direct mapped, flushes whole', () => {
    const s = new SoftTlb(4);
    s.insert(1, 0x1000);
    s.insert(5, 0x5000); // same slot as 1
    expect(s.lookup(1)).toBe(-1);
    expect(s.lookup(5)).toBe(0x5000);
    s.flush();
    expect(s.lookup(5)).toBe(-1);
  });
});
