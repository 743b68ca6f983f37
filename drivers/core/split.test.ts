import { describe, expect, it } from 'vitest';
import { test as fcTest, fc } from '@fast-check/vitest';
import { Machine } from '../../device-models/machine/machine.ts';
import { SplitVirtqueue } from './split.ts';
import { DeviceMisbehaviourError, UsageError } from '../../spec-refs/errors.ts';
import { Split } from '../../spec-refs/abi/virtio.ts';
import { attachVirtioMmio } from '../../device-models/virtio/mmio.ts';
import { EchoModel } from '../../device-models/virtio/testing/echo.ts';
import { discoverMmio } from '../transport/mmio.ts';
import { VirtioDriverDevice } from './device.ts';
import { F, featureSet } from '../../spec-refs/abi/virtio.ts';

const RAM = [
  { base: 0, size: 8 << 20, name: 'ram-low' },
  { base: 0x1_0000_0000, size: 1 << 20, name: 'ram-high' },
];

/** Hostile-device tests only need room for the rings: a small machine keeps them fast. */
const SMALL_RAM = [{ base: 0, size: 1 << 20, name: 'ram' }];

function mk(o: { size?: number; eventIdx?: boolean; indirect?: boolean; legacyAlign?: number } = {}) {
  const m = new Machine({ ram: o.size && o.size > 1024 ? RAM : SMALL_RAM, reservedLow: 0x1_0000 });
  let notified = 0;
  const vq = new SplitVirtqueue<string>(m.mem, m.dma, { index: 0, size: o.size ?? 8, eventIdx: o.eventIdx ?? false, indirect: o.indirect ?? false, legacyAlign: o.legacyAlign, notify: () => notified++ });
  const a = vq.addresses;
  const dev = {
    /** The device side, by hand: read what the driver made available and complete by writing used elements. */
    availIdx: () => m.mem.read16(a.driver + 2),
    availEntry: (k: number) => m.mem.read16(a.driver + 4 + 2 * (k % vq.size)),
    availFlags: () => m.mem.read16(a.driver),
    usedEvent: () => m.mem.read16(a.driver + 4 + 2 * vq.size),
    desc: (i: number, table = a.desc) => ({ addr: m.mem.read64(table + 16 * i), len: m.mem.read32(table + 16 * i + 8), flags: m.mem.read16(table + 16 * i + 12), next: m.mem.read16(table + 16 * i + 14) }),
    usedIdx: 0,
    complete(id: number, len: number) {
      const o = a.device + 4 + 8 * (this.usedIdx % vq.size);
      m.mem.write32(o, id);
      m.mem.write32(o + 4, len);
      this.usedIdx = (this.usedIdx + 1) & 0xffff;
      m.mem.write16(a.device + 2, this.usedIdx);
    },
    setUsedIdx(v: number) {
      m.mem.write16(a.device + 2, v);
    },
    setUsedFlags(v: number) {
      m.mem.write16(a.device, v);
    },
    setAvailEvent(v: number) {
      m.mem.write16(a.device + 4 + 8 * vq.size, v);
    },
  };
  return { m, vq, dev, notified: () => notified };
}

const buf = (addr: number, len: number) => ({ addr, len });

describe('split virtqueue, driver side', () => {
  it('allocates aligned areas (split.driver.1) with used flags 0 (split.driver.19)', () => {
    const { vq, m } = mk({ size: 256 });
    const a = vq.addresses;
    expect(a.desc % Split.DESC_ALIGN).toBe(0);
    expect(a.driver % Split.AVAIL_ALIGN).toBe(0);
    expect(a.device % Split.USED_ALIGN).toBe(0);
    expect(m.mem.read16(a.device)).toBe(0);
  });

  it('legacy: one contiguous page-aligned area with the used ring on the alignment', () => {
    const { vq } = mk({ size: 256, legacyAlign: 4096 });
    const a = vq.addresses;
    expect(a.desc % 4096).toBe(0);
    expect(a.driver).toBe(a.desc + 4096);
    expect(a.device).toBe(a.desc + 8192);
  });

  it('writes readable then writable descriptors, the avail entry first, idx at kick (split.driver.2, split.driver.26)', () => {
    const { vq, dev } = mk();
    expect(vq.add([buf(0x20_0000, 10), buf(0x20_1000, 20)], [buf(0x20_2000, 30)], 't')).toBe(true);
    expect(dev.availIdx()).toBe(0); // not published before kick
    const head = dev.availEntry(0);
    const d0 = dev.desc(head);
    expect(d0).toMatchObject({ addr: 0x20_0000, len: 10, flags: Split.DESC_F_NEXT });
    const d1 = dev.desc(d0.next);
    expect(d1).toMatchObject({ addr: 0x20_1000, len: 20, flags: Split.DESC_F_NEXT });
    expect(dev.desc(d1.next)).toMatchObject({ addr: 0x20_2000, len: 30, flags: Split.DESC_F_WRITE });
    expect(vq.kick()).toBe(true);
    expect(dev.availIdx()).toBe(1);
    expect(vq.numFree).toBe(5);
    dev.complete(head, 30);
    expect(vq.getUsed()).toEqual({ token: 't', len: 30 });
    expect(vq.numFree).toBe(8);
    expect(vq.getUsed()).toBeNull();
  });

  it('uses one indirect descriptor for multi-element buffers when negotiated, never with NEXT (split.driver.9)', () => {
    const { vq, dev } = mk({ indirect: true });
    vq.add([buf(0x20_0000, 10)], [buf(0x20_2000, 30), buf(0x20_3000, 2)], 't');
    const head = dev.availEntry(0);
    const d = dev.desc(head);
    expect(d.flags).toBe(Split.DESC_F_INDIRECT);
    expect(d.len).toBe(48);
    expect(dev.desc(0, d.addr)).toMatchObject({ len: 10, flags: Split.DESC_F_NEXT, next: 1 });
    expect(dev.desc(1, d.addr)).toMatchObject({ len: 30, flags: Split.DESC_F_NEXT | Split.DESC_F_WRITE, next: 2 });
    expect(dev.desc(2, d.addr)).toMatchObject({ len: 2, flags: Split.DESC_F_WRITE });
    expect(vq.numFree).toBe(7);
    vq.kick();
    dev.complete(head, 32);
    expect(vq.getUsed()).toEqual({ token: 't', len: 32 });
  });

  it('returns false when full, and refuses chains longer than the queue or 2^32 bytes (split.driver.8, split.driver.4)', () => {
    const { vq } = mk({ size: 2 });
    expect(() => vq.add([buf(0, 1), buf(0, 1), buf(0, 1)], [], 'x')).toThrow(UsageError);
    expect(() => vq.add([buf(0, 0xffff_ffff), buf(0, 2)], [], 'x')).toThrow(UsageError);
    expect(() => vq.add([], [], 'x')).toThrow(UsageError);
    expect(vq.add([buf(0, 1), buf(0, 1)], [], 'a')).toBe(true);
    expect(vq.add([buf(0, 1)], [], 'b')).toBe(false);
    expect(vq.inFlight).toBe(1);
  });

  it('kick honours NO_NOTIFY without EVENT_IDX (split.driver.21, split.driver.22)', () => {
    const { vq, dev, notified } = mk();
    dev.setUsedFlags(1);
    vq.add([buf(0, 1)], [], 'a');
    expect(vq.kick()).toBe(false);
    dev.setUsedFlags(0);
    vq.add([buf(0, 1)], [], 'b');
    expect(vq.kick()).toBe(true);
    expect(notified()).toBe(1);
    expect(vq.kick()).toBe(false); // nothing new
  });

  it('kick honours avail_event with EVENT_IDX and ignores NO_NOTIFY (split.driver.23, split.driver.24, split.driver.25)', () => {
    const { vq, dev } = mk({ eventIdx: true });
    dev.setUsedFlags(1);
    dev.setAvailEvent(1); // notify when the entry at index 1 is published
    vq.add([buf(0, 1)], [], 'a');
    expect(vq.kick()).toBe(false); // idx 0 -> 1: entry 0 published
    vq.add([buf(0, 1)], [], 'b');
    expect(vq.kick()).toBe(true); // entry 1 published
    vq.add([buf(0, 1)], [], 'c');
    vq.add([buf(0, 1)], [], 'd');
    dev.setAvailEvent(2);
    expect(vq.kick()).toBe(true); // entries 2..3: passes 2
  });

  it('interrupt suppression: NO_INTERRUPT flag without EVENT_IDX, used_event with it (split.driver.13, split.driver.14, split.driver.15)', () => {
    const a = mk();
    a.vq.disableInterrupts();
    expect(a.dev.availFlags()).toBe(1);
    expect(a.vq.enableInterrupts()).toBe(true);
    expect(a.dev.availFlags()).toBe(0);
    const b = mk({ eventIdx: true });
    b.vq.add([buf(0, 1)], [], 'a');
    b.vq.kick();
    b.vq.disableInterrupts();
    expect(b.dev.availFlags()).toBe(0);
    b.dev.complete(b.dev.availEntry(0), 0);
    expect(b.vq.enableInterrupts()).toBe(false); // one pending
    b.vq.getUsed();
    expect(b.dev.usedEvent()).toBe(1);
  });
});

describe('split virtqueue, driver side: hostile device (ROBUSTNESS "Drivers, run against a hostile device")', () => {
  function prepared() {
    const t = mk({ size: 8 });
    t.vq.add([buf(0x20_0000, 4)], [buf(0x20_1000, 8), buf(0x20_2000, 8)], 'a');
    t.vq.add([buf(0x20_0000, 4)], [buf(0x20_1000, 100)], 'b');
    t.vq.kick();
    return { ...t, a: t.dev.availEntry(0), b: t.dev.availEntry(1) };
  }
  const bad = (f: () => unknown, code: string) => {
    let err: unknown;
    try {
      f();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DeviceMisbehaviourError);
    expect((err as DeviceMisbehaviourError).code).toBe(code);
  };

  it('used id out of range', () => {
    const t = prepared();
    t.dev.complete(8, 0);
    bad(() => t.vq.getUsed(), 'split.used_id_range');
  });

  it('used id not outstanding (never made available)', () => {
    const t = prepared();
    t.dev.complete(7, 0);
    bad(() => t.vq.getUsed(), 'split.used_id');
  });

  it('used id in the middle of a chain', () => {
    const t = prepared();
    t.dev.complete(t.dev.desc(t.a).next, 0);
    bad(() => t.vq.getUsed(), 'split.used_id');
  });

  it('the same id completed twice', () => {
    const t = prepared();
    t.dev.complete(t.a, 16);
    t.dev.complete(t.a, 16);
    expect(t.vq.getUsed()?.token).toBe('a');
    bad(() => t.vq.getUsed(), 'split.used_id');
  });

  it('used len above the writable length posted (split.device.16)', () => {
    const t = prepared();
    t.dev.complete(t.a, 17);
    bad(() => t.vq.getUsed(), 'split.used_len');
  });

  it('used idx jumping further than the buffers in flight', () => {
    const t = prepared();
    t.dev.setUsedIdx(3);
    bad(() => t.vq.getUsed(), 'split.used_idx');
  });

  it('used idx moving backwards', () => {
    const t = prepared();
    t.dev.complete(t.a, 0);
    t.vq.getUsed();
    t.dev.setUsedIdx(0);
    bad(() => t.vq.getUsed(), 'split.used_idx');
  });

  it('after a misbehaviour the queue stays broken (no corrupted state is used)', () => {
    const t = prepared();
    t.dev.complete(9, 0);
    expect(() => t.vq.getUsed()).toThrow(DeviceMisbehaviourError);
    expect(() => t.vq.add([buf(0, 1)], [], 'c')).toThrow(DeviceMisbehaviourError);
    expect(t.vq.error?.code).toBe('split.used_id_range');
  });

  it('the driver never reads its own descriptors back: a device scribbling on the table cannot corrupt the free list', () => {
    const t = prepared();
    // hostile device overwrites every next field and flag
    for (let i = 0; i < 8; i++) t.m.mem.write32(t.vq.addresses.desc + 16 * i + 12, 0xffff_ffff);
    t.dev.complete(t.b, 100);
    t.dev.complete(t.a, 0);
    expect(t.vq.getUsed()?.token).toBe('b');
    expect(t.vq.getUsed()?.token).toBe('a');
    expect(t.vq.numFree).toBe(8);
    // all 8 descriptors are usable again
    expect(t.vq.add(Array.from({ length: 8 }, () => buf(0, 1)), [], 'c')).toBe(true);
  });

  fcTest.prop(
    [
      fc.array(
        fc.record({
          id: fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 0xffff_ffff })),
          // the lengths posted are 10, 20, 30, 40: hit them, their neighbours and 0 often
          len: fc.oneof(fc.constantFrom(0, 10, 11, 20, 21, 30, 40, 41), fc.integer({ min: 0, max: 0xffff_ffff })),
        }),
        { minLength: 1, maxLength: 10 },
      ),
      fc.oneof({ arbitrary: fc.constant(null), weight: 4 }, { arbitrary: fc.integer({ min: 0, max: 0xffff }), weight: 1 }),
    ],
    { numRuns: 300 },
  )('random used elements: accepted only when they name an outstanding head with a valid len; bookkeeping stays exact', (elems, idxOverride) => {
    const { vq, dev } = mk({ size: 8 });
    const posted = new Map<number, { token: string; writable: number }>();
    for (let k = 0; k < 4; k++) {
      const w = 10 * (k + 1);
      vq.add([buf(0x20_0000, 4)], [buf(0x20_1000, w)], `t${k}`);
      posted.set(dev.availEntry(k), { token: `t${k}`, writable: w });
    }
    vq.kick();
    for (const e of elems) dev.complete(e.id, e.len);
    if (idxOverride !== null) dev.setUsedIdx(idxOverride);
    const outstanding = new Map(posted);
    const usedIdx = idxOverride ?? elems.length & 0xffff;
    // what each used ring slot holds: the last element written there, or zeros
    const slots: { id: number; len: number }[] = [];
    elems.forEach((e, j) => (slots[j % 8] = e));
    for (let k = 0; k < usedIdx; k++) {
      const e = slots[k % 8] ?? { id: 0, len: 0 };
      const valid = k < 4 && outstanding.has(e.id) && e.len <= outstanding.get(e.id)!.writable && usedIdx <= 4;
      if (valid) {
        expect(vq.getUsed()).toEqual({ token: outstanding.get(e.id)!.token, len: e.len });
        outstanding.delete(e.id);
      } else {
        expect(() => vq.getUsed()).toThrow(DeviceMisbehaviourError);
        return;
      }
    }
    expect(vq.getUsed()).toBeNull();
    expect(vq.inFlight).toBe(outstanding.size);
    expect(vq.numFree).toBe(8 - 2 * outstanding.size);
  });
});

// ------------------------------------------------------------------ end to end, with scheduler jitter

describe('split virtqueue: end-to-end property over virtio-mmio and the echo device', () => {
  fcTest.prop(
    [
      fc.record({
        seed: fc.integer(),
        sizeLog: fc.integer({ min: 0, max: 7 }),
        indirect: fc.boolean(),
        eventIdx: fc.boolean(),
        legacy: fc.boolean(),
        reverse: fc.boolean(),
        completionDelayNs: fc.constantFrom(0, 0, 500, 20_000),
        jitterNs: fc.constantFrom(0, 1000, 50_000),
        ops: fc.array(
          fc.oneof(
            fc.record({ op: fc.constant('add' as const), nOut: fc.integer({ min: 1, max: 3 }), nIn: fc.integer({ min: 0, max: 3 }), len: fc.integer({ min: 0, max: 300 }) }),
            fc.record({ op: fc.constant('kick' as const) }),
            fc.record({ op: fc.constant('run' as const), ns: fc.integer({ min: 0, max: 100_000 }) }),
            fc.record({ op: fc.constant('reap' as const) }),
            fc.record({ op: fc.constant('toggle' as const), on: fc.boolean() }),
          ),
          { maxLength: 60 },
        ),
      }),
    ],
    { numRuns: 300 },
  )('every buffer completes exactly once with the right length, whatever the interleaving', (c) => {
    const m = new Machine({ ram: [{ base: 0, size: 2 << 20, name: 'ram' }], reservedLow: 0x1_0000, scheduler: { seed: c.seed, jitterNs: c.jitterNs } });
    const feats = featureSet(F.VERSION_1, F.INDIRECT_DESC, F.EVENT_IDX);
    const model = new EchoModel({ reverse: c.reverse, completionDelayNs: c.completionDelayNs, queueMaxSize: 128 });
    const att = attachVirtioMmio(m, model, { legacy: c.legacy, notifyLatencyNs: 300 });
    const t = discoverMmio(m.platform).transports[0]!;
    const wanted = featureSet(F.VERSION_1, ...(c.indirect ? [F.INDIRECT_DESC] : []), ...(c.eventIdx ? [F.EVENT_IDX] : []));
    const d = VirtioDriverDevice.init(m.platform, t, { features: wanted & feats, queueSize: 1 << c.sizeLog, timeoutNs: 100_000_000 });
    const vq = d.queue<number>(0);
    expect(vq.size).toBe(1 << c.sizeLog);
    const expected = new Map<number, number>();
    const done = new Set<number>();
    let next = 0;
    const data = m.dma.alloc(4096);
    const out = m.dma.alloc(4096);
    const reap = () => {
      for (let u = vq.getUsed(); u; u = vq.getUsed()) {
        expect(done.has(u.token)).toBe(false);
        expect(u.len).toBe(expected.get(u.token));
        done.add(u.token);
      }
    };
    for (const op of c.ops) {
      if (op.op === 'add') {
        const outs = Array.from({ length: op.nOut }, (_, k) => buf(data + 300 * k, op.len));
        const ins = Array.from({ length: op.nIn }, (_, k) => buf(out + 300 * k, op.len));
        const n = op.nOut + op.nIn;
        if (n > vq.size) continue;
        if (vq.add(outs, ins, next)) expected.set(next++, Math.min(op.nOut * op.len, op.nIn * op.len));
      } else if (op.op === 'kick') vq.kick();
      else if (op.op === 'run') m.platform.spin(op.ns);
      else if (op.op === 'reap') reap();
      else if (op.on) vq.enableInterrupts();
      else vq.disableInterrupts();
    }
    vq.kick();
    vq.enableInterrupts();
    // No lost wake-up: the last completions must come with an interrupt, long before the wait's
    // deadline (a wait that only ends at its deadline would still find the buffers by polling).
    const start = m.platform.now();
    d.waitUntil(() => (reap(), done.size === expected.size), 'all buffers', 100_000_000);
    expect(m.platform.now() - start).toBeLessThan(10_000_000);
    expect(done.size).toBe(next);
    expect(vq.inFlight).toBe(0);
    expect(vq.numFree).toBe(vq.size);
    expect(att.core.errors.filter((e) => e.fatal)).toEqual([]);
  });
});
