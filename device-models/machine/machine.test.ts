import { describe, expect, it } from 'vitest';
import { test as fcTest, fc } from '@fast-check/vitest';
import { GuestMemory } from './memory.ts';
import { Scheduler } from './scheduler.ts';
import { ExtentAllocator } from '../../spec-refs/platform/dma.ts';
import { Machine } from './machine.ts';
import { GuestMemoryError, UsageError } from '../../spec-refs/errors.ts';

describe('GuestMemory', () => {
  const mem = () => new GuestMemory([{ base: 0x1000, size: 0x1000 }, { base: 0x10000, size: 0x1000 }]);

  it('reads back little-endian values of every width', () => {
    const m = mem();
    m.write64(0x1100, 0x1234_5678_9abc);
    expect(m.read8(0x1100)).toBe(0xbc);
    expect(m.read16(0x1100)).toBe(0x9abc);
    expect(m.read32(0x1100)).toBe(0x5678_9abc);
    expect(m.read32(0x1104)).toBe(0x1234);
    expect(m.read64(0x1100)).toBe(0x1234_5678_9abc);
  });

  it('rejects accesses in holes, past the end, straddling a region edge, and negative', () => {
    const m = mem();
    expect(() => m.read8(0x0)).toThrow(GuestMemoryError);
    expect(() => m.read8(0x2000)).toThrow(GuestMemoryError);
    expect(() => m.read32(0x1ffe)).toThrow(GuestMemoryError);
    expect(() => m.readBytes(0x10ff0, 0x20)).toThrow(GuestMemoryError);
    expect(() => m.read8(-1)).toThrow(GuestMemoryError);
    expect(() => m.writeBytes(2 ** 53, new Uint8Array(1))).toThrow(GuestMemoryError);
    expect(m.isRam(0x1ff0, 0x20)).toBe(false);
    expect(m.isRam(0x1ff0, 0x10)).toBe(true);
  });

  fcTest.prop([fc.integer({ min: 0, max: 0x3000 }), fc.integer({ min: 0, max: 0x3000 })])('isRam agrees with whether an access succeeds', (off, len) => {
    const m = mem();
    const gpa = 0x800 + off;
    let ok = true;
    try {
      m.readBytes(gpa, len);
    } catch {
      ok = false;
    }
    expect(m.isRam(gpa, len)).toBe(ok);
  });
});

describe('Scheduler', () => {
  it('runs events in time order, ties in insertion order, and advances virtual time', () => {
    const s = new Scheduler();
    const seen: string[] = [];
    s.schedule(20, 'b', () => seen.push('b'));
    s.schedule(10, 'a', () => seen.push('a'));
    s.schedule(20, 'c', () => seen.push('c'));
    s.runUntil(() => false);
    expect(seen).toEqual(['a', 'b', 'c']);
    expect(s.now).toBe(20);
  });

  it('stops at the deadline with time at the deadline', () => {
    const s = new Scheduler();
    let ran = false;
    s.schedule(100, 'late', () => (ran = true));
    expect(s.runUntil(() => ran, 50)).toBe(false);
    expect(s.now).toBe(50);
    expect(s.runUntil(() => ran)).toBe(true);
  });

  fcTest.prop([fc.integer(), fc.array(fc.integer({ min: 0, max: 1000 }), { maxLength: 50 })])('is deterministic for a seed, with jitter', (seed, delays) => {
    const run = () => {
      const s = new Scheduler({ seed, jitterNs: 500 });
      const order: number[] = [];
      delays.forEach((d, i) => s.schedule(d, String(i), () => order.push(i)));
      s.runUntil(() => false);
      return order;
    };
    expect(run()).toEqual(run());
  });
});

describe('ExtentAllocator', () => {
  it('aligns, zeroes, coalesces and refuses what it cannot give', () => {
    const zeroed: Array<[number, number]> = [];
    const a = new ExtentAllocator([{ base: 0x1000, size: 0x4000 }], (g, l) => zeroed.push([g, l]));
    const x = a.alloc(0x100, 0x1000);
    expect(x % 0x1000).toBe(0);
    const y = a.alloc(0x100, 16);
    expect(zeroed).toEqual([[x, 0x100], [y, 0x100]]);
    a.free(x);
    a.free(y);
    expect(a.available).toBe(0x4000);
    expect(a.alloc(0x4000, 0x1000)).toBe(0x1000);
    expect(() => a.alloc(1)).toThrow(UsageError);
    expect(() => a.free(0x999)).toThrow(UsageError);
    expect(() => a.alloc(16, 3)).toThrow(UsageError);
  });

  fcTest.prop([fc.array(fc.record({ size: fc.integer({ min: 1, max: 0x800 }), align: fc.constantFrom(1, 16, 64, 4096) }), { maxLength: 40 })])('never hands out overlapping ranges', (reqs) => {
    const a = new ExtentAllocator([{ base: 0, size: 0x10000 }], () => {});
    const got: Array<[number, number]> = [];
    for (const r of reqs) {
      try {
        const g = a.alloc(r.size, r.align);
        expect(g % r.align).toBe(0);
        for (const [s, l] of got) expect(g + r.size <= s || s + l <= g).toBe(true);
        got.push([g, r.size]);
      } catch (e) {
        expect(e).toBeInstanceOf(UsageError);
        // running out is the only excuse: the first request (at most 0x800 bytes of 0x10000) always fits
        expect(got.length, 'the first allocation failed').toBeGreaterThan(0);
      }
    }
  });
});

describe('Machine', () => {
  it('counts an exit per MMIO and port access and a HLT per wait', () => {
    const m = new Machine();
    const regs = new Map<number, number>();
    m.mapMmio(0xfe00_0000, 0x100, 'dev', { read: (o) => regs.get(o) ?? 0, write: (o, _s, v) => void regs.set(o, v) });
    m.platform.mmioWrite(0xfe00_0010, 4, 7);
    expect(m.platform.mmioRead(0xfe00_0010, 4)).toBe(7);
    expect(m.platform.mmioRead(0xfd00_0000, 4)).toBe(0xffff_ffff); // nothing there
    m.platform.pioWrite(0x80, 1, 1);
    expect(m.exits('EPT_MISCONFIG')).toBe(2);
    expect(m.exits('EPT_VIOLATION')).toBe(1);
    expect(m.exits('IO_INSTRUCTION')).toBe(1);
    expect(m.platform.irq.wait(1000)).toBeNull();
    expect(m.exits('HLT')).toBe(1);
  });

  it('wakes a waiting vCPU with the interrupt device work raised, without an extra exit', () => {
    const m = new Machine();
    const line = m.irq.line(5);
    m.scheduler.schedule(500, 'device completes', () => line.assert());
    const t0 = m.platform.now();
    expect(m.platform.irq.wait(1e6)).toBe(line.vector);
    expect(m.platform.now()).toBeGreaterThanOrEqual(t0 + 500);
    expect(m.exits('EXTERNAL_INTERRUPT')).toBe(0);
    // level line still asserted: EOI re-delivers it
    m.platform.irq.eoi(line.vector);
    expect(m.platform.irq.poll()).toBe(line.vector);
    line.deassert();
    m.platform.irq.eoi(line.vector);
    expect(m.platform.irq.poll()).toBeNull();
  });

  it('counts an EXTERNAL_INTERRUPT exit when device work interrupts a running vCPU', () => {
    const m = new Machine();
    const line = m.irq.line(6);
    m.scheduler.schedule(10, 'device completes', () => line.assert());
    m.platform.spin(100);
    expect(m.exits('EXTERNAL_INTERRUPT')).toBe(1);
    expect(m.platform.irq.poll()).toBe(line.vector);
  });

  it('hands out DMA memory inside RAM and outside the reserved low area', () => {
    const m = new Machine();
    const g = m.platform.dma.alloc(8192, 4096);
    expect(g).toBeGreaterThanOrEqual(1 << 20);
    expect(m.mem.isRam(g, 8192)).toBe(true);
  });
});
