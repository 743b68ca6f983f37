import { describe, expect, it } from 'vitest';
import { test as fcTest, fc } from '@fast-check/vitest';
import { Machine } from '../machine/machine.ts';
import { attachVirtioMmio, PVKIT_VENDOR_ID } from './mmio.ts';
import { EchoModel, ECHO_DEVICE_ID, ECHO_CONFIG_MAGIC } from './testing/echo.ts';
import { RawSplitRing, D_NEXT, D_WRITE } from './testing/raw-ring.ts';
import { F, Mmio, Status, featureSet, featureWord } from '../../spec-refs/abi/virtio.ts';
import { legacySplitLayout } from './split-queue.ts';

const BUF = 0x20_0000;
const ALL = featureSet(F.VERSION_1, F.INDIRECT_DESC, F.EVENT_IDX);

const RAM = [
  { base: 0, size: 4 << 20, name: 'ram-low' },
  { base: 0x1_0000_0000, size: 1 << 20, name: 'ram-high' },
];

function setup(o: { legacy?: boolean; features?: bigint; maxSize?: number } = {}) {
  const m = new Machine({ ram: RAM });
  const model = new EchoModel({ features: o.features ?? ALL, queueMaxSize: o.maxSize ?? 256 });
  const dev = attachVirtioMmio(m, model, { legacy: o.legacy, notifyLatencyNs: 100 });
  const r = (off: number, size: 1 | 2 | 4 | 8 = 4) => m.bus.mmio.read(dev.base + off, size);
  const w = (off: number, v: number, size: 1 | 2 | 4 | 8 = 4) => m.bus.mmio.write(dev.base + off, size, v);
  return { m, model, dev, core: dev.core, r, w };
}

type S = ReturnType<typeof setup>;

/** Drive a v2 device to FEATURES_OK with `feats`. */
function toFeaturesOk(s: S, feats = ALL): void {
  s.w(Mmio.STATUS, 0);
  s.w(Mmio.STATUS, Status.ACKNOWLEDGE);
  s.w(Mmio.STATUS, Status.ACKNOWLEDGE | Status.DRIVER);
  for (const sel of [0, 1]) {
    s.w(Mmio.DRIVER_FEATURES_SEL, sel);
    s.w(Mmio.DRIVER_FEATURES, featureWord(feats, sel));
  }
  s.w(Mmio.STATUS, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
}

function setupQueue(s: S, q: number, size: number, ring: RawSplitRing): void {
  s.w(Mmio.QUEUE_SEL, q);
  s.w(Mmio.QUEUE_NUM, size);
  s.w(Mmio.QUEUE_DESC_LOW, ring.desc % 2 ** 32);
  s.w(Mmio.QUEUE_DESC_HIGH, Math.floor(ring.desc / 2 ** 32));
  s.w(Mmio.QUEUE_DRIVER_LOW, ring.avail % 2 ** 32);
  s.w(Mmio.QUEUE_DRIVER_HIGH, Math.floor(ring.avail / 2 ** 32));
  s.w(Mmio.QUEUE_DEVICE_LOW, ring.used % 2 ** 32);
  s.w(Mmio.QUEUE_DEVICE_HIGH, Math.floor(ring.used / 2 ** 32));
  s.w(Mmio.QUEUE_READY, 1);
}

const OK = Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK;

function live(s: S, size = 8): RawSplitRing {
  toFeaturesOk(s);
  const ring = new RawSplitRing(s.m.mem, 0x10000, size);
  setupQueue(s, 0, size, ring);
  s.w(Mmio.STATUS, OK);
  expect(s.r(Mmio.STATUS)).toBe(OK);
  return ring;
}

function echoOnce(s: S, ring: RawSplitRing): void {
  ring.setDesc(0, BUF, 1, D_NEXT, 1);
  ring.setDesc(1, BUF + 0x100, 1, D_WRITE);
  ring.publish(0);
  s.w(Mmio.QUEUE_NOTIFY, 0);
  s.m.scheduler.runFor(10_000);
}

const needsReset = (s: S) => (s.core.status & Status.DEVICE_NEEDS_RESET) !== 0;

describe('virtio-mmio device: identification and registers', () => {
  it('reports magic, version 2, device and vendor id (mmio.device.1, mmio.device.2)', () => {
    const s = setup();
    expect(s.r(Mmio.MAGIC_VALUE)).toBe(0x74726976);
    expect(s.r(Mmio.VERSION)).toBe(2);
    expect(s.r(Mmio.DEVICE_ID)).toBe(ECHO_DEVICE_ID);
    expect(s.r(Mmio.VENDOR_ID)).toBe(PVKIT_VENDOR_ID);
    expect(s.r(Mmio.CONFIG)).toBe(ECHO_CONFIG_MAGIC);
    expect(s.r(Mmio.CONFIG, 1)).toBe(ECHO_CONFIG_MAGIC & 0xff);
    expect(s.r(Mmio.CONFIG + 2, 2)).toBe(ECHO_CONFIG_MAGIC >>> 16);
  });

  it('legacy reports version 1 and no VERSION_1 feature', () => {
    const s = setup({ legacy: true });
    expect(s.r(Mmio.VERSION)).toBe(1);
    s.w(Mmio.DEVICE_FEATURES_SEL, 1);
    expect(s.r(Mmio.DEVICE_FEATURES)).toBe(0);
  });

  it('feature windows show 64+ bits through DeviceFeaturesSel', () => {
    const s = setup({ features: ALL | featureSet(F.RING_RESET) | (1n << 100n) });
    s.w(Mmio.DEVICE_FEATURES_SEL, 0);
    expect(s.r(Mmio.DEVICE_FEATURES)).toBe(featureWord(ALL, 0));
    s.w(Mmio.DEVICE_FEATURES_SEL, 1);
    expect(s.r(Mmio.DEVICE_FEATURES)).toBe(featureWord(ALL | featureSet(F.RING_RESET), 1));
    s.w(Mmio.DEVICE_FEATURES_SEL, 3);
    expect(s.r(Mmio.DEVICE_FEATURES)).toBe(1 << 4);
    s.w(Mmio.DEVICE_FEATURES_SEL, 9);
    expect(s.r(Mmio.DEVICE_FEATURES)).toBe(0);
  });

  it('wrong-size, misaligned, write-only and read-only accesses never throw; they read 0 and are recorded (mmio.driver.2-4)', () => {
    const s = setup();
    expect(s.r(Mmio.MAGIC_VALUE, 2)).toBe(0);
    expect(s.r(Mmio.MAGIC_VALUE + 1, 4)).toBe(0);
    expect(s.r(Mmio.MAGIC_VALUE, 8)).toBe(0);
    expect(s.r(Mmio.QUEUE_NOTIFY)).toBe(0);
    expect(s.r(Mmio.CONFIG, 8)).toBe(0);
    s.w(Mmio.STATUS, 1, 1);
    s.w(Mmio.MAGIC_VALUE, 5);
    s.w(Mmio.GUEST_PAGE_SIZE, 4096); // legacy-only register on a v2 device
    s.w(0x0f0, 1);
    expect(s.core.status).toBe(0);
    expect(s.dev.transport.badAccessCount).toBe(9);
  });

  fcTest.prop([fc.array(fc.record({ write: fc.boolean(), off: fc.integer({ min: 0, max: 0x1ff }), size: fc.constantFrom(1, 2, 4, 8) as fc.Arbitrary<1 | 2 | 4 | 8>, v: fc.integer({ min: 0, max: 0xffff_ffff }) }), { maxLength: 200 }), fc.boolean()], { numRuns: 200 })(
    'any sequence of register accesses: the bus never throws and the device stays within its rules',
    (ops, legacy) => {
      const s = setup({ legacy });
      for (const o of ops) {
        if (o.write) expect(() => s.w(o.off, o.v, o.size)).not.toThrow();
        else expect(() => s.r(o.off, o.size)).not.toThrow();
        s.m.scheduler.runFor(1000);
      }
      // mmio.device.4: no undefined InterruptStatus bits; the line follows InterruptStatus
      expect(s.dev.transport.interruptStatus & ~3).toBe(0);
      if (s.dev.transport.interruptStatus === 0) expect(s.dev.line.asserted).toBe(false);
      // DRIVER_OK on a modern device only with FEATURES_OK, unless NEEDS_RESET was raised
      const st = s.core.status;
      if (!legacy && st & Status.DRIVER_OK && !(st & Status.FEATURES_OK)) expect(st & Status.DEVICE_NEEDS_RESET).toBeTruthy();
    },
  );
});

describe('virtio-mmio device: status and features', () => {
  it('writing 0 resets: status 0, InterruptStatus 0, queues not ready (status_init.device.4, mmio.device.5)', () => {
    const s = setup();
    const ring = live(s);
    echoOnce(s, ring);
    expect(s.r(Mmio.INTERRUPT_STATUS)).toBe(1);
    expect(s.dev.line.asserted).toBe(true);
    const resets = s.model.resets;
    s.w(Mmio.STATUS, 0);
    expect(s.r(Mmio.STATUS)).toBe(0);
    expect(s.r(Mmio.INTERRUPT_STATUS)).toBe(0);
    expect(s.dev.line.asserted).toBe(false);
    s.w(Mmio.QUEUE_SEL, 0);
    expect(s.r(Mmio.QUEUE_READY)).toBe(0);
    expect(s.model.resets).toBe(resets + 1);
  });

  it('status bits are never cleared by the driver (status_init.driver.2)', () => {
    const s = setup();
    toFeaturesOk(s);
    s.w(Mmio.STATUS, Status.ACKNOWLEDGE);
    expect(s.r(Mmio.STATUS)).toBe(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
    expect(s.core.errors.map((e) => e.error.code)).toContain('status.clear');
  });

  it('the driver cannot set DEVICE_NEEDS_RESET itself', () => {
    const s = setup();
    s.w(Mmio.STATUS, Status.ACKNOWLEDGE | Status.DEVICE_NEEDS_RESET);
    expect(s.r(Mmio.STATUS)).toBe(Status.ACKNOWLEDGE);
  });

  it('FEATURES_OK does not stick for features never offered (features.device.3)', () => {
    const s = setup({ features: featureSet(F.VERSION_1, F.EVENT_IDX) });
    toFeaturesOk(s, featureSet(F.VERSION_1, F.EVENT_IDX, F.INDIRECT_DESC));
    expect(s.r(Mmio.STATUS) & Status.FEATURES_OK).toBe(0);
  });

  it('FEATURES_OK does not stick without VERSION_1 on a modern device', () => {
    const s = setup();
    toFeaturesOk(s, featureSet(F.EVENT_IDX));
    expect(s.r(Mmio.STATUS) & Status.FEATURES_OK).toBe(0);
  });

  it('FEATURES_OK does not stick when the model refuses the combination', () => {
    const m = new Machine();
    const model = new EchoModel({ refuse: () => true });
    const dev = attachVirtioMmio(m, model);
    dev.core.writeStatus(3);
    dev.core.writeDriverFeatureWord(1, 1);
    dev.core.writeStatus(3 | Status.FEATURES_OK);
    expect(dev.core.status).toBe(3);
  });

  it('features written after FEATURES_OK are ignored and recorded', () => {
    const s = setup();
    toFeaturesOk(s, featureSet(F.VERSION_1));
    s.w(Mmio.DRIVER_FEATURES_SEL, 0);
    s.w(Mmio.DRIVER_FEATURES, featureWord(ALL, 0));
    expect(s.core.features).toBe(featureSet(F.VERSION_1));
    expect(s.core.driverFeatures).toBe(featureSet(F.VERSION_1));
    expect(s.core.errors.map((e) => e.error.code)).toContain('features.late_write');
  });

  it('DRIVER_OK without FEATURES_OK sets DEVICE_NEEDS_RESET and does not activate the model', () => {
    const s = setup();
    s.w(Mmio.STATUS, Status.ACKNOWLEDGE | Status.DRIVER);
    s.w(Mmio.STATUS, Status.ACKNOWLEDGE | Status.DRIVER | Status.DRIVER_OK);
    expect(needsReset(s)).toBe(true);
    expect(s.model.activations).toBe(0);
    expect(s.r(Mmio.INTERRUPT_STATUS)).toBe(2);
  });

  it('DRIVER_OK with no ready queue activates; notifications for the unready queue are dropped', () => {
    const s = setup();
    toFeaturesOk(s);
    s.w(Mmio.STATUS, OK);
    expect(s.model.activations).toBe(1);
    s.w(Mmio.QUEUE_NOTIFY, 0);
    s.m.scheduler.runFor(10_000);
    expect(s.core.stats.notifyRuns).toBe(0);
    expect(needsReset(s)).toBe(false);
  });

  it('notifications for queues that do not exist (including 0xFFFF) or before DRIVER_OK are ignored', () => {
    const s = setup();
    s.w(Mmio.QUEUE_NOTIFY, 0);
    const ring = live(s);
    for (const q of [2, 7, 0xffff, 0xffff_ffff]) s.w(Mmio.QUEUE_NOTIFY, q);
    s.m.scheduler.runFor(10_000);
    expect(needsReset(s)).toBe(false);
    expect(s.core.errors.map((e) => e.error.code).filter((c) => c.startsWith('notify'))).toEqual(['notify.early', 'notify.index', 'notify.index', 'notify.index', 'notify.index']);
    echoOnce(s, ring);
    expect(s.model.completed).toBe(1);
  });

  it('config generation changes with the config and config changes interrupt after DRIVER_OK (mmio.device.6)', () => {
    const s = setup();
    const g0 = s.r(Mmio.CONFIG_GENERATION);
    s.core.configChanged(); // a change before DRIVER_OK: new generation, no notification
    expect(s.r(Mmio.CONFIG_GENERATION)).not.toBe(g0);
    expect(s.r(Mmio.INTERRUPT_STATUS)).toBe(0);
    live(s);
    const g1 = s.r(Mmio.CONFIG_GENERATION);
    s.model.bumpConfig();
    expect(s.r(Mmio.CONFIG_GENERATION)).not.toBe(g1);
    expect(s.r(Mmio.INTERRUPT_STATUS)).toBe(2);
    expect(s.r(Mmio.CONFIG + 4)).toBe(1);
  });

  it('InterruptACK clears the acknowledged bits and lowers the line when none is left', () => {
    const s = setup();
    const ring = live(s);
    echoOnce(s, ring);
    s.model.bumpConfig();
    expect(s.r(Mmio.INTERRUPT_STATUS)).toBe(3);
    s.w(Mmio.INTERRUPT_ACK, 1);
    expect(s.r(Mmio.INTERRUPT_STATUS)).toBe(2);
    expect(s.dev.line.asserted).toBe(true);
    s.w(Mmio.INTERRUPT_ACK, 2);
    expect(s.r(Mmio.INTERRUPT_STATUS)).toBe(0);
    expect(s.dev.line.asserted).toBe(false);
  });
});

describe('virtio-mmio device: hostile queue setup (ROBUSTNESS "Setup and transport")', () => {
  const cases: [string, (ring: RawSplitRing) => [number, number, number, number], string][] = [
    ['size 0', (r) => [0, r.desc, r.avail, r.used], 'queue.size'],
    ['size not a power of two', (r) => [6, r.desc, r.avail, r.used], 'split.size'],
    ['size above the maximum', (r) => [512, r.desc, r.avail, r.used], 'queue.size'],
    ['misaligned descriptor table', (r) => [8, r.desc + 8, r.avail, r.used], 'split.align'],
    ['misaligned available ring', (r) => [8, r.desc, r.avail + 1, r.used], 'split.align'],
    ['misaligned used ring', (r) => [8, r.desc, r.avail, r.used + 2], 'split.align'],
    ['overlapping areas', (r) => [8, r.desc, r.desc + 64, r.used], 'split.overlap'],
    ['used ring inside MMIO', (r) => [8, r.desc, r.avail, 0xfeb0_0000], 'split.area_range'],
    ['descriptor table past the end of RAM', (r) => [8, 0x1_0010_0000 - 64, r.avail, r.used], 'split.area_range'],
    ['area across the hole', (r) => [8, (4 << 20) - 64, r.avail, r.used], 'split.area_range'],
    ['address + size overflowing', (r) => [8, 0xffff_ffff_fff0, r.avail, r.used], 'split.area_range'],
  ];
  for (const [name, f, code] of cases) {
    it(`${name}: QueueReady does not stick and the device needs a reset`, () => {
      const s = setup();
      toFeaturesOk(s);
      const ring = new RawSplitRing(s.m.mem, 0x10000, 8);
      const [size, desc, avail, used] = f(ring);
      setupQueue(s, 0, size, { desc, avail, used } as RawSplitRing);
      expect(s.r(Mmio.QUEUE_READY)).toBe(0);
      expect(needsReset(s)).toBe(true);
      expect(s.core.errors.filter((e) => e.fatal).map((e) => e.error.code)).toContain(code);
      s.w(Mmio.STATUS, OK);
      expect(s.model.activations).toBe(0);
    });
  }

  it('queue size, addresses and ready rewritten while ready / after DRIVER_OK are ignored', () => {
    const s = setup();
    const ring = live(s);
    s.w(Mmio.QUEUE_SEL, 0);
    s.w(Mmio.QUEUE_NUM, 4);
    s.w(Mmio.QUEUE_DESC_LOW, 0x5000);
    s.w(Mmio.QUEUE_DRIVER_LOW, 0x6000);
    s.w(Mmio.QUEUE_DEVICE_LOW, 0x7000);
    s.w(Mmio.QUEUE_READY, 1);
    const q = s.core.queueConfig(0)!;
    expect([q.size, q.desc, q.driver, q.device]).toEqual([8, ring.desc, ring.avail, ring.used]);
    expect(s.core.errors.filter((e) => e.error.code === 'queue.ready_write')).toHaveLength(4);
    echoOnce(s, ring);
    expect(s.model.completed).toBe(1);
  });

  it('reset while requests are in flight: late completions never touch the old rings (status_init.device.5)', () => {
    const m = new Machine({ ram: RAM });
    const model = new EchoModel({ completionDelayNs: 1_000_000 });
    const dev = attachVirtioMmio(m, model, { notifyLatencyNs: 100 });
    const s: S = { m, model, dev, core: dev.core, r: (o, z = 4) => m.bus.mmio.read(dev.base + o, z), w: (o, v, z = 4) => m.bus.mmio.write(dev.base + o, z, v) };
    const ring = live(s);
    ring.setDesc(0, BUF, 1, D_NEXT, 1);
    ring.setDesc(1, BUF + 0x100, 1, D_WRITE);
    ring.publish(0);
    s.w(Mmio.QUEUE_NOTIFY, 0);
    m.scheduler.runFor(1000); // taken, not completed
    expect(dev.core.ring(0)!.pop).toBeDefined();
    s.w(Mmio.STATUS, 0);
    const snapshot = m.mem.readBytes(ring.desc, ring.end - ring.desc);
    m.scheduler.runFor(10_000_000);
    expect(m.mem.readBytes(ring.desc, ring.end - ring.desc)).toEqual(snapshot);
    expect(s.r(Mmio.INTERRUPT_STATUS)).toBe(0);
    // re-initialisation with another size works
    toFeaturesOk(s);
    const ring2 = new RawSplitRing(m.mem, 0x30000, 16);
    setupQueue(s, 0, 16, ring2);
    s.w(Mmio.STATUS, OK);
    ring2.setDesc(3, BUF, 1, D_NEXT, 4);
    ring2.setDesc(4, BUF + 0x100, 1, D_WRITE);
    ring2.publish(3);
    s.w(Mmio.QUEUE_NOTIFY, 0);
    m.scheduler.runFor(10_000_000);
    expect(ring2.usedIdx).toBe(1);
    expect(ring2.usedElem(0)).toEqual({ id: 3, len: 1 });
  });

  it('QueueReady 0 stops the queue: no more chains are taken (mmio.device.7)', () => {
    const s = setup();
    const ring = live(s);
    s.w(Mmio.QUEUE_SEL, 0);
    s.w(Mmio.QUEUE_READY, 0);
    expect(s.r(Mmio.QUEUE_READY)).toBe(0);
    echoOnce(s, ring);
    expect(s.model.completed).toBe(0);
  });

  it('QueueReset exists only when RING_RESET is offered, and resets the queue when negotiated (mmio.device.10, mmio.device.12)', () => {
    const plain = setup();
    live(plain);
    plain.w(Mmio.QUEUE_RESET, 1);
    expect(plain.dev.transport.badAccessCount).toBe(1);
    const s = setup({ features: ALL | featureSet(F.RING_RESET) });
    toFeaturesOk(s, ALL | featureSet(F.RING_RESET));
    const ring = new RawSplitRing(s.m.mem, 0x10000, 8);
    setupQueue(s, 0, 8, ring);
    s.w(Mmio.STATUS, OK);
    echoOnce(s, ring);
    s.w(Mmio.QUEUE_SEL, 0);
    s.w(Mmio.QUEUE_RESET, 1);
    expect(s.r(Mmio.QUEUE_RESET)).toBe(0);
    expect(s.r(Mmio.QUEUE_READY)).toBe(0);
    expect(s.core.ring(0)).toBeNull();
    // re-enable on a fresh ring
    const ring2 = new RawSplitRing(s.m.mem, 0x30000, 8);
    setupQueue(s, 0, 8, ring2);
    echoOnce(s, ring2);
    expect(ring2.usedIdx).toBe(1);
    expect(needsReset(s)).toBe(false);
  });
});

describe('virtio-mmio device: legacy (version 1)', () => {
  function legacyLive(s: S, size = 8, pfn = 0x10, align = 4096): RawSplitRing {
    s.w(Mmio.STATUS, 0);
    s.w(Mmio.STATUS, 3);
    s.w(Mmio.DRIVER_FEATURES_SEL, 0);
    s.w(Mmio.DRIVER_FEATURES, 1 << F.INDIRECT_DESC);
    s.w(Mmio.GUEST_PAGE_SIZE, 4096);
    s.w(Mmio.QUEUE_SEL, 0);
    expect(s.r(Mmio.QUEUE_PFN)).toBe(0);
    s.w(Mmio.QUEUE_NUM, size);
    s.w(Mmio.QUEUE_ALIGN, align);
    s.w(Mmio.QUEUE_PFN, pfn);
    s.w(Mmio.STATUS, 3 | Status.DRIVER_OK);
    const l = legacySplitLayout(pfn * 4096, size, align);
    const ring = new RawSplitRing(s.m.mem, l.desc, size);
    (ring as { used: number }).used = l.device;
    return ring;
  }

  it('places the ring at PFN * GuestPageSize with the used ring at QueueAlign and processes it', () => {
    const s = setup({ legacy: true });
    const ring = legacyLive(s);
    expect(s.r(Mmio.QUEUE_PFN)).toBe(0x10);
    const q = s.core.queueConfig(0)!;
    expect([q.desc, q.driver, q.device]).toEqual([0x10000, 0x10080, 0x11000]);
    echoOnce(s, ring);
    expect(ring.usedIdx).toBe(1);
    expect(s.core.status).toBe(3 | Status.DRIVER_OK);
  });

  it('a QueueAlign that is not a power of two, or GuestPageSize 0, sets DEVICE_NEEDS_RESET', () => {
    const s = setup({ legacy: true });
    s.w(Mmio.STATUS, 3);
    s.w(Mmio.QUEUE_SEL, 0);
    s.w(Mmio.QUEUE_NUM, 8);
    s.w(Mmio.QUEUE_PFN, 0x10);
    expect(needsReset(s)).toBe(true);
    const s2 = setup({ legacy: true });
    s2.w(Mmio.GUEST_PAGE_SIZE, 4096);
    s2.w(Mmio.QUEUE_ALIGN, 3000);
    s2.w(Mmio.QUEUE_NUM, 8);
    s2.w(Mmio.QUEUE_PFN, 0x10);
    expect(needsReset(s2)).toBe(true);
    expect(s2.r(Mmio.QUEUE_PFN)).toBe(0);
  });

  it('writing PFN 0 stops the queue; legacy has no FEATURES_OK and the features become final at DRIVER_OK', () => {
    const s = setup({ legacy: true });
    const ring = legacyLive(s);
    expect(s.core.features).toBe(featureSet(F.INDIRECT_DESC));
    s.w(Mmio.QUEUE_PFN, 0);
    echoOnce(s, ring);
    expect(s.model.completed).toBe(0);
  });
});
