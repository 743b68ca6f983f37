/**
 * Packed virtqueue: the driver (drivers/core/packed.ts) against the device (packed-queue.ts),
 * properties over sizes that are not powers of two, indirect / event idx / in-order, and hostile
 * drivers writing arbitrary rings. Census ids: packed.device.1, packed.device.2, packed.device.4,
 * packed.device.6, packed.device.8, packed.driver.1..17 (as cited per test).
 */
import { describe, expect, it } from 'vitest';
import { test as fcTest, fc } from '@fast-check/vitest';
import { GuestMemory } from '../machine/memory.ts';
import { ExtentAllocator } from '../../spec-refs/platform/dma.ts';
import { PackedDeviceQueue, validatePackedConfig, type PackedRingOptions } from './packed-queue.ts';
import { PackedVirtqueue } from '../../drivers/core/packed.ts';
import { DriverMisbehaviourError } from '../../spec-refs/errors.ts';
import type { Chain } from './model.ts';

const RAM = 1 << 20;

function world(size: number, opts: Partial<PackedRingOptions> = {}) {
  const mem = new GuestMemory([{ base: 0, size: RAM }]);
  const dma = new ExtentAllocator([{ base: 0x1000, size: RAM - 0x1000 }], (g, l) => mem.fill(g, l, 0));
  const errors: DriverMisbehaviourError[] = [];
  let signals = 0;
  let notifies = 0;
  const notifyData: (number | undefined)[] = [];
  const o: PackedRingOptions = { eventIdx: false, indirect: false, inOrder: false, legacy: false, ...opts };
  const drv = new PackedVirtqueue<number>(mem, dma, 0, size, (_i, d) => {
    notifies++;
    notifyData.push(d);
  }, { indirect: o.indirect, eventIdx: o.eventIdx, inOrder: o.inOrder, notificationData: true });
  const cfg = { index: 0, size, desc: drv.descAddr, driver: drv.driverAddr, device: drv.deviceAddr };
  expect(validatePackedConfig(cfg, mem, o)).toBeNull();
  const host = { mem, driverError: (e: DriverMisbehaviourError) => void errors.push(e), signalUsed: () => void signals++ };
  const dev = new PackedDeviceQueue(host, cfg, o);
  return { mem, dma, drv, dev, errors, cfg, o, host, get signals() { return signals; }, get notifies() { return notifies; }, notifyData };
}

const opCmd = fc.oneof(
  fc.record({ op: fc.constant('add' as const), nOut: fc.integer({ min: 0, max: 3 }), nIn: fc.integer({ min: 0, max: 3 }), len: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ op: fc.constant('kick' as const) }),
  fc.record({ op: fc.constant('pop' as const), n: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ op: fc.constant('complete' as const), pick: fc.nat(), written: fc.nat() }),
  fc.record({ op: fc.constant('flush' as const) }),
  fc.record({ op: fc.constant('reap' as const) }),
  fc.record({ op: fc.constant('irq' as const), on: fc.boolean() }),
);

describe('packed virtqueue, driver against device', () => {
  fcTest.prop(
    [fc.integer({ min: 1, max: 13 }), fc.boolean(), fc.boolean(), fc.boolean(), fc.array(opCmd, { minLength: 40, maxLength: 160 })],
    { numRuns: 150 },
  )('every buffer comes back once, with its segments and a length within what was posted', (size, indirect, eventIdx, inOrder, ops) => {
    const w = world(size, { indirect, eventIdx, inOrder });
    let token = 0;
    const posted = new Map<number, { out: { addr: number; len: number }[]; inp: { addr: number; len: number }[] }>();
    const taken: Chain[] = [];
    const tokenOfId = new Map<number, number>();
    const written = new Map<number, number>();
    const back = new Set<number>();
    const queueOrder: number[] = [];
    const takenOrder: number[] = [];
    let bump = 0x8_0000;
    for (const c of ops) {
      if (c.op === 'add') {
        if (c.nOut + c.nIn === 0) continue;
        const out = Array.from({ length: c.nOut }, () => ({ addr: (bump += 0x100), len: c.len }));
        const inp = Array.from({ length: c.nIn }, () => ({ addr: (bump += 0x100), len: c.len }));
        if (c.nOut + c.nIn > size) continue; // longer than the queue: the driver refuses (packed.driver.7)
        if (w.drv.add(out, inp, token)) {
          posted.set(token, { out, inp });
          queueOrder.push(token);
          token++;
        }
      } else if (c.op === 'kick') w.drv.kick();
      else if (c.op === 'pop') {
        for (let i = 0; i < c.n; i++) {
          const ch = w.dev.pop();
          if (!ch) break;
          // the device sees the segments the driver posted, in order (packed.device.1, packed.device.8)
          const t = queueOrder[takenOrder.length]!;
          takenOrder.push(t);
          const p = posted.get(t)!;
          expect(ch.readable.map((s) => [s.addr, s.len])).toEqual(p.out.map((s) => [s.addr, s.len]));
          expect(ch.writable.map((s) => [s.addr, s.len])).toEqual(p.inp.map((s) => [s.addr, s.len]));
          tokenOfId.set(ch.id, t);
          taken.push(ch);
        }
      } else if (c.op === 'complete') {
        if (taken.length === 0) continue;
        const ch = taken.splice(c.pick % taken.length, 1)[0]!;
        const n = ch.writableLen === 0 ? 0 : c.written % (ch.writableLen + 1);
        written.set(tokenOfId.get(ch.id)!, n);
        w.dev.push(ch, n);
      } else if (c.op === 'flush') w.dev.flush();
      else if (c.op === 'irq') {
        if (c.on) w.drv.enableInterrupts();
        else w.drv.disableInterrupts();
      } else {
        w.dev.flush();
        for (let u = w.drv.getUsed(); u; u = w.drv.getUsed()) {
          expect(back.has(u.token)).toBe(false);
          back.add(u.token);
          const p = posted.get(u.token)!;
          const wl = p.inp.reduce((a, s) => a + s.len, 0);
          expect(u.len).toBeLessThanOrEqual(wl);
          // exact length, except buffers an IN_ORDER batch reported as fully used
          if (!inOrder) expect(u.len).toBe(written.get(u.token));
          else expect([written.get(u.token), wl]).toContain(u.len);
        }
      }
    }
    // drain: everything posted comes back
    w.drv.kick();
    for (let ch = w.dev.pop(); ch; ch = w.dev.pop()) taken.push(ch);
    for (const ch of taken) w.dev.push(ch, 0);
    w.dev.flush();
    for (let u = w.drv.getUsed(); u; u = w.drv.getUsed()) {
      expect(back.has(u.token)).toBe(false);
      back.add(u.token);
    }
    expect(w.errors).toEqual([]);
    expect(back.size).toBe(posted.size);
    expect(w.drv.inFlight).toBe(0);
    expect(w.drv.numFree).toBe(size);
  });

  fcTest.prop([fc.integer({ min: 1, max: 9 }), fc.boolean(), fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 60 })], { numRuns: 100 })(
    'no lost wake-ups either way with event suppression (flags or event idx)',
    (size, eventIdx, steps) => {
      const w = world(size, { eventIdx });
      let t = 0;
      for (const s of steps) {
        // device side: re-enable notifications; if the ring looks empty it may sleep, so the next kick must notify
        const mayNotify = w.dev.enableNotify();
        if (mayNotify && w.drv.numFree > 0) {
          const before = w.notifies;
          w.drv.add([{ addr: 0x9_0000, len: 8 }], [], t++);
          w.drv.kick();
          expect(w.notifies).toBe(before + 1);
        }
        if (s === 0) w.dev.disableNotify();
        // driver side: re-enable interrupts; if nothing is pending it sleeps, so the next used buffer must signal
        const idle = w.drv.enableInterrupts();
        const ch = w.dev.pop();
        if (ch) {
          const before = w.signals;
          w.dev.push(ch, 0);
          w.dev.flush();
          if (idle) expect(w.signals).toBe(before + 1);
          while (w.drv.getUsed()) {
            /* drain */
          }
        }
        if (s === 1) w.drv.disableInterrupts();
      }
      expect(w.errors).toEqual([]);
    },
  );

  it('a list crossing the end of the ring carries the flipped wrap counter after the wrap', () => {
    const w = world(3);
    for (let t = 0; t < 2; t++) w.drv.add([{ addr: 0x9_0000, len: 4 }], [], t);
    for (let t = 0; t < 2; t++) w.dev.push(w.dev.pop()!, 0);
    w.dev.flush();
    expect([w.drv.getUsed()?.token, w.drv.getUsed()?.token]).toEqual([0, 1]);
    expect(w.drv.add([{ addr: 0x9_0000, len: 4 }], [{ addr: 0x9_1000, len: 4 }], 2)).toBe(true); // slots 2, then 0
    const c = w.dev.pop();
    expect(w.errors).toEqual([]);
    expect([c?.readable.length, c?.writable.length, c?.descCount]).toEqual([1, 1, 2]);
    expect(w.dev.availPosition).toEqual({ off: 1, wrap: 0 });
  });

  it('event idx suppresses interrupts until the driver-chosen descriptor is used', () => {
    const w = world(8, { eventIdx: true });
    for (let i = 0; i < 4; i++) w.drv.add([{ addr: 0x9_0000, len: 4 }], [], i);
    w.drv.kick();
    // the driver asks for an event only when slot 2 is used
    w.mem.write16(w.drv.driverAddr, 2 | (1 << 15));
    w.mem.write16(w.drv.driverAddr + 2, 2);
    const chains = [w.dev.pop()!, w.dev.pop()!, w.dev.pop()!, w.dev.pop()!];
    w.dev.push(chains[0]!, 0);
    w.dev.flush();
    w.dev.push(chains[1]!, 0);
    w.dev.flush();
    expect(w.signals).toBe(0);
    w.dev.push(chains[2]!, 0);
    w.dev.flush();
    expect(w.signals).toBe(1);
    w.dev.push(chains[3]!, 0);
    w.dev.flush();
    expect(w.signals).toBe(1);
  });

  it('NOTIFICATION_DATA carries next_off and next_wrap of the next descriptor to be made available (packed.driver.4)', () => {
    const w = world(3);
    for (let i = 0; i < 2; i++) w.drv.add([{ addr: 0x9_0000, len: 4 }], [], i);
    w.drv.kick();
    expect(w.notifyData.at(-1)).toBe(((2 | (1 << 15)) << 16) >>> 0); // queue 0 in the low half
    w.drv.add([{ addr: 0x9_0000, len: 4 }], [], 2);
    w.drv.kick();
    expect(w.notifyData.at(-1)).toBe(0); // wrapped: offset 0, wrap counter now 0
  });

  it('IN_ORDER: completions leave in ring order and a fully written run is one used descriptor', () => {
    const w = world(5, { inOrder: true });
    for (let i = 0; i < 3; i++) w.drv.add([], [{ addr: 0x9_0000 + i * 64, len: 16 }], i);
    w.drv.kick();
    const c = [w.dev.pop()!, w.dev.pop()!, w.dev.pop()!];
    w.dev.push(c[2]!, 16); // out of order: held back
    w.dev.flush();
    expect(w.drv.getUsed()).toBeNull();
    w.dev.push(c[0]!, 16);
    w.dev.push(c[1]!, 5);
    w.dev.flush();
    expect(w.dev.stats.usedDescriptorsWritten).toBe(2); // [0,1] batched (0 full), then [2]
    expect([w.drv.getUsed(), w.drv.getUsed(), w.drv.getUsed()].map((u) => [u?.token, u?.len])).toEqual([[0, 16], [1, 5], [2, 16]]);
  });
});

describe('packed ring configuration rules', () => {
  it('accepts sizes that are not powers of two and refuses bad sizes, alignment, areas outside RAM, overlap and legacy', () => {
    const mem = new GuestMemory([{ base: 0, size: RAM }]);
    const ok = { index: 0, size: 7, desc: 0x1000, driver: 0x2000, device: 0x2004 };
    expect(validatePackedConfig(ok, mem, { legacy: false })).toBeNull();
    const bad: [Partial<typeof ok>, string][] = [
      [{ size: 0 }, 'packed.size'],
      [{ size: 32769 }, 'packed.size'],
      [{ desc: 0x1008 }, 'packed.align'],
      [{ driver: 0x2002 }, 'packed.align'],
      [{ device: RAM }, 'packed.area'],
      [{ desc: RAM - 16 }, 'packed.area'],
      [{ driver: 0x1010 }, 'packed.overlap'],
    ];
    for (const [patch, code] of bad) expect(validatePackedConfig({ ...ok, ...patch }, mem, { legacy: false })?.code).toBe(code);
    expect(validatePackedConfig(ok, mem, { legacy: true })?.code).toBe('packed.legacy');
  });
});

/** Write a descriptor by hand (hostile driver). */
function putDesc(mem: GuestMemory, base: number, i: number, addr: number, len: number, id: number, flags: number): void {
  const d = base + 16 * i;
  mem.write64(d, addr);
  mem.write32(d + 8, len);
  mem.write16(d + 12, id);
  mem.write16(d + 14, flags);
}

const A = 1 << 7;
const U = 1 << 15;

describe('packed ring, hostile driver (ROBUSTNESS.md "packed ring" and the generic chain classes)', () => {
  const cases: [string, (mem: GuestMemory, desc: number, size: number) => void, string, Partial<PackedRingOptions>?][] = [
    ['AVAIL and USED both set to the wrap counter', (m, d) => putDesc(m, d, 0, 0x9_0000, 8, 0, A | U), 'packed.avail_used'],
    ['buffer id out of range', (m, d) => putDesc(m, d, 0, 0x9_0000, 8, 4, A), 'packed.id_range'],
    ['list longer than the queue (NEXT on every descriptor)', (m, d, s) => { for (let i = 0; i < s; i++) putDesc(m, d, i, 0x9_0000, 8, 0, A | 1); }, 'packed.chain_len'],
    ['list running into a descriptor not made available', (m, d) => { putDesc(m, d, 0, 0x9_0000, 8, 0, A | 1); putDesc(m, d, 1, 0x9_0000, 8, 0, 0); }, 'packed.partial_list'],
    ['list continuing with the wrong wrap counter', (m, d) => { putDesc(m, d, 0, 0x9_0000, 8, 0, A | 1); putDesc(m, d, 1, 0x9_0000, 8, 0, U); }, 'packed.partial_list'],
    ['readable element after a writable one', (m, d) => { putDesc(m, d, 0, 0x9_0000, 8, 0, A | 1 | 2); putDesc(m, d, 1, 0x9_0000, 8, 0, A); }, 'packed.order'],
    ['element outside RAM', (m, d) => putDesc(m, d, 0, RAM - 4, 8, 0, A), 'packed.buffer_ram'],
    ['element address + len wrapping 2^64', (m, d) => { putDesc(m, d, 0, 0, 0xffff_ffff, 0, A); m.write32(d, 0xffff_fff0); m.write32(d + 4, 0xffff_ffff); }, 'packed.buffer_ram'],
    ['INDIRECT without the feature', (m, d) => putDesc(m, d, 0, 0x9_0000, 16, 0, A | 4), 'packed.indirect_unneg'],
    ['INDIRECT inside a NEXT list', (m, d) => { putDesc(m, d, 0, 0x9_0000, 8, 0, A | 1); putDesc(m, d, 1, 0x9_0000, 16, 0, A | 4); }, 'packed.indirect_in_list', { indirect: true }],
    ['INDIRECT with NEXT', (m, d) => { putDesc(m, d, 0, 0x9_0000, 16, 0, A | 4 | 1); putDesc(m, d, 1, 0x9_0000, 8, 0, A); }, 'packed.indirect_in_list', { indirect: true }],
    ['indirect table length not a multiple of 16', (m, d) => putDesc(m, d, 0, 0x9_0000, 24, 0, A | 4), 'packed.indirect_len', { indirect: true }],
    ['indirect table of length 0', (m, d) => putDesc(m, d, 0, 0x9_0000, 0, 0, A | 4), 'packed.indirect_len', { indirect: true }],
    ['indirect table with more entries than the queue size', (m, d) => putDesc(m, d, 0, 0x9_0000, 16 * 5, 0, A | 4), 'packed.indirect_count', { indirect: true }],
    ['indirect inside indirect', (m, d) => { putDesc(m, d, 0, 0x9_0000, 32, 0, A | 4); putDesc(m, 0x9_0000, 1, 0x9_1000, 16, 0, 4); }, 'packed.indirect_nested', { indirect: true }],
    ['indirect table outside RAM', (m, d) => putDesc(m, d, 0, RAM - 16, 32, 0, A | 4), 'packed.indirect_ram', { indirect: true }],
    ['total length above 2^32 - 1', (m, d) => { putDesc(m, d, 0, 0x1000, 0x8_0000, 0, A | 1); putDesc(m, d, 1, 0x1000, 0xffff_ffff, 0, A); }, 'packed.buffer_ram'],
  ];
  for (const [name, setup, code, opts] of cases) {
    it(`${name} -> DEVICE_NEEDS_RESET (${code}), nothing taken`, () => {
      const mem = new GuestMemory([{ base: 0, size: RAM }]);
      const errors: DriverMisbehaviourError[] = [];
      const cfg = { index: 0, size: 4, desc: 0x1000, driver: 0x2000, device: 0x2004 };
      const dev = new PackedDeviceQueue({ mem, driverError: (e) => void errors.push(e), signalUsed: () => {} }, cfg, { eventIdx: false, indirect: false, inOrder: false, legacy: false, ...opts });
      setup(mem, cfg.desc, cfg.size);
      expect(dev.pop()).toBeNull();
      expect(errors.map((e) => e.code)).toEqual([code]);
      expect(dev.pop()).toBeNull(); // halted: nothing more
      expect(errors).toHaveLength(1);
    });
  }

  it('a buffer id made available twice while in flight is refused', () => {
    const mem = new GuestMemory([{ base: 0, size: RAM }]);
    const errors: DriverMisbehaviourError[] = [];
    const dev = new PackedDeviceQueue({ mem, driverError: (e) => void errors.push(e), signalUsed: () => {} }, { index: 0, size: 4, desc: 0x1000, driver: 0x2000, device: 0x2004 }, { eventIdx: false, indirect: false, inOrder: false, legacy: false });
    putDesc(mem, 0x1000, 0, 0x9_0000, 8, 1, A);
    putDesc(mem, 0x1000, 1, 0x9_0000, 8, 1, A);
    expect(dev.pop()?.id).toBe(1);
    expect(dev.pop()).toBeNull();
    expect(errors[0]?.code).toBe('packed.id_busy');
  });

  it('a descriptor with the previous lap\'s wrap counter is simply not available (packed.device.6)', () => {
    const mem = new GuestMemory([{ base: 0, size: RAM }]);
    const errors: DriverMisbehaviourError[] = [];
    const dev = new PackedDeviceQueue({ mem, driverError: (e) => void errors.push(e), signalUsed: () => {} }, { index: 0, size: 4, desc: 0x1000, driver: 0x2000, device: 0x2004 }, { eventIdx: false, indirect: false, inOrder: false, legacy: false });
    putDesc(mem, 0x1000, 0, 0x9_0000, 8, 0, U); // AVAIL=0 USED=1: available only in the second lap
    expect(dev.pop()).toBeNull();
    expect(errors).toEqual([]);
  });

  it('a detached ring never writes guest memory again (reset with buffers in flight)', () => {
    const w = world(4);
    w.drv.add([], [{ addr: 0x9_0000, len: 8 }], 0);
    w.drv.kick();
    const ch = w.dev.pop()!;
    const before = w.mem.readBytes(w.drv.descAddr, 64);
    w.dev.stop('detach');
    w.dev.push(ch, 8);
    w.dev.flush();
    w.dev.disableNotify();
    expect(w.mem.readBytes(w.drv.descAddr, 64)).toEqual(before);
    expect(w.signals).toBe(0);
  });

  fcTest.prop(
    [fc.integer({ min: 1, max: 9 }), fc.boolean(), fc.uint8Array({ minLength: 16 * 9, maxLength: 16 * 9 }), fc.uint8Array({ minLength: 64, maxLength: 64 }), fc.array(fc.nat(), { maxLength: 12 })],
    { numRuns: 300 },
  )('arbitrary ring contents: never throws, bounded, every chain lies in RAM and is completed or the device needs reset', (size, indirect, ring, table, writes) => {
    const mem = new GuestMemory([{ base: 0, size: 0x10_0000 }]);
    const errors: DriverMisbehaviourError[] = [];
    const cfg = { index: 0, size, desc: 0x1000, driver: 0x2000, device: 0x2004 };
    const dev = new PackedDeviceQueue({ mem, driverError: (e) => void errors.push(e), signalUsed: () => {} }, cfg, { eventIdx: false, indirect, inOrder: false, legacy: false });
    // descriptors point mostly into a small table area so indirect tables and lengths are plausible
    const r = ring.slice(0, 16 * size);
    for (let i = 0; i < size; i++) {
      r[16 * i + 2] = 0;
      r[16 * i + 3] = r[16 * i + 3]! & 0x0f; // addr < 0x1000_0000: some in RAM, some not
      r[16 * i + 4] = r[16 * i + 5] = r[16 * i + 6] = r[16 * i + 7] = 0;
    }
    mem.writeBytes(cfg.desc, r);
    mem.writeBytes(0x9_0000, table);
    let n = 0;
    for (let round = 0; round <= writes.length; round++) {
      const ch = dev.pop();
      if (ch) {
        n++;
        for (const s of [...ch.readable, ...ch.writable]) expect(mem.isRam(s.addr, s.len)).toBe(true);
        expect(ch.readableLen).toBeLessThanOrEqual(0xffff_ffff);
        const before = mem.readBytes(0, 0x10_0000);
        dev.push(ch, writes[round] ?? 0);
        dev.flush();
        // the device wrote only the used descriptor in the ring (16 bytes at most) and nothing else
        const after = mem.readBytes(0, 0x10_0000);
        let diff = 0;
        for (let i = 0; i < after.length; i++) if (after[i] !== before[i]) {
          expect(i >= cfg.desc && i < cfg.desc + 16 * size).toBe(true);
          diff++;
        }
        expect(diff).toBeLessThanOrEqual(16);
      }
    }
    expect(n).toBeLessThanOrEqual(writes.length + 1);
    expect(errors.length).toBeLessThanOrEqual(1);
  });
});

describe('packed ring, hostile device (driver side never trusts the used descriptor)', () => {
  it('refuses a used id that is not outstanding, a used length above the posted one, and a second completion', () => {
    const mk = () => {
      const w = world(4);
      w.drv.add([], [{ addr: 0x9_0000, len: 8 }], 7);
      w.drv.kick();
      return w;
    };
    let w = mk();
    putDesc(w.mem, w.drv.descAddr, 0, 0, 0, 3, A | U);
    expect(() => w.drv.getUsed()).toThrow(/not outstanding/);
    expect(() => w.drv.getUsed()).toThrow(); // stays broken
    w = mk();
    putDesc(w.mem, w.drv.descAddr, 0, 0, 9, 3, A | U | 2);
    w.mem.write16(w.drv.descAddr + 12, 3);
    expect(() => w.drv.getUsed()).toThrow(/not outstanding/);
    w = mk();
    const id = w.mem.read16(w.drv.descAddr + 12);
    putDesc(w.mem, w.drv.descAddr, 0, 0, 9, id, A | U | 2);
    expect(() => w.drv.getUsed()).toThrow(/used length/);
    w = mk();
    putDesc(w.mem, w.drv.descAddr, 0, 0, 8, id, A | U | 2);
    expect(w.drv.getUsed()).toEqual({ token: 7, len: 8 });
    putDesc(w.mem, w.drv.descAddr, 1, 0, 8, id, A | U | 2); // the same id again, next slot
    expect(w.drv.getUsed()).toBeNull(); // nothing outstanding: the driver does not even look
  });

  fcTest.prop([fc.integer({ min: 1, max: 8 }), fc.boolean(), fc.array(fc.record({ slot: fc.nat(), id: fc.nat({ max: 12 }), len: fc.nat({ max: 40 }), flags: fc.nat({ max: 0xffff }) }), { maxLength: 20 })], { numRuns: 200 })(
    'arbitrary used descriptors: tokens come back at most once with valid lengths, or a DeviceMisbehaviourError',
    (size, inOrder, forged) => {
      const w = world(size, { inOrder });
      const lens = new Map<number, number>();
      for (let t = 0; t < size; t++) {
        if (w.drv.add([], [{ addr: 0x9_0000, len: 8 + t }], t)) lens.set(t, 8 + t);
      }
      w.drv.kick();
      const seen = new Set<number>();
      for (const f of forged) {
        putDesc(w.mem, w.drv.descAddr, f.slot % size, 0, f.len, f.id, f.flags);
        try {
          for (let u = w.drv.getUsed(); u; u = w.drv.getUsed()) {
            expect(seen.has(u.token)).toBe(false);
            seen.add(u.token);
            expect(u.len).toBeLessThanOrEqual(lens.get(u.token)!);
          }
        } catch (e) {
          expect((e as Error).name).toBe('DeviceMisbehaviourError');
          return;
        }
      }
    },
  );
});
