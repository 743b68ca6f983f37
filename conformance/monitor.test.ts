import { describe, expect, it } from 'vitest';
import { Machine } from '../device-models/machine/machine.ts';
import { attachVirtioMmio } from '../device-models/virtio/mmio.ts';
import { EchoModel } from '../device-models/virtio/testing/echo.ts';
import { VirtioBlkDevice } from '../device-models/blk/device.ts';
import { RamDisk } from '../device-models/blk/backend.ts';
import { discoverMmio } from '../drivers/transport/mmio.ts';
import { VirtioDriverDevice } from '../drivers/core/device.ts';
import { F, Mmio, Split, Status, featureSet } from '../spec-refs/virtio.ts';
import { attachMonitor, type Monitor } from './monitor.ts';
import { monitorMachine } from './vitest.ts';
import { RawMmio, RawSplitRing } from './hostile.ts';

const ALL = featureSet(F.VERSION_1, F.INDIRECT_DESC, F.EVENT_IDX);

function sim(opts: { legacy?: boolean; features?: bigint } = {}) {
  const m = new Machine({ ram: [{ base: 0, size: 8 << 20 }] });
  const model = new EchoModel(opts.features !== undefined ? { features: opts.features } : {});
  const dev = attachVirtioMmio(m, model, { legacy: opts.legacy ?? false, notifyLatencyNs: 500 });
  return { m, model, dev };
}

function echoTraffic(m: Machine, d: VirtioDriverDevice, q: number, n: number, parts = 1): void {
  const vq = d.queue<number>(q);
  for (let i = 0; i < n; i++) {
    const len = 64 + 37 * i;
    const src = m.dma.alloc(len);
    const dst = m.dma.alloc(len);
    m.mem.fill(src, len, i & 0xff);
    const part = Math.ceil(len / parts);
    const out = [];
    const inp = [];
    for (let o = 0; o < len; o += part) {
      out.push({ addr: src + o, len: Math.min(part, len - o) });
      inp.push({ addr: dst + o, len: Math.min(part, len - o) });
    }
    expect(vq.add(out, inp, i)).toBe(true);
    vq.kick();
    const u = d.waitUsed<number>(q);
    expect(u.token).toBe(i);
    expect(u.len).toBe(len);
    m.dma.free(src);
    m.dma.free(dst);
  }
}

describe('monitor: the reference driver and the core device models never trip it', () => {
  for (const [name, legacy, features] of [
    ['v2, indirect + event idx', false, ALL],
    ['v2, no event idx, no indirect', false, featureSet(F.VERSION_1)],
    ['legacy v1', true, featureSet(F.INDIRECT_DESC, F.EVENT_IDX)],
  ] as const) {
    it(`${name}: init, traffic on two queues, shutdown, re-init`, () => {
      const { m } = sim({ legacy, features });
      const mon = monitorMachine(m);
      const t = discoverMmio(m.platform).transports[0]!;
      let d = VirtioDriverDevice.init(m.platform, t, { features: ALL, queues: 2 });
      echoTraffic(m, d, 0, 12);
      echoTraffic(m, d, 1, 6, 3);
      d.shutdown();
      d = VirtioDriverDevice.init(m.platform, t, { features: ALL, queues: 1 });
      echoTraffic(m, d, 0, 4, 2);
      expect(mon.violations).toEqual([]);
      // the monitor really watched: it saw every chain made available and used, and the interrupts
      if (!legacy) expect(mon.stats).toMatchObject({ chains: 22, used: 22 });
      expect(mon.stats.irqs).toBeGreaterThan(0);
      expect(mon.stats.accesses).toBeGreaterThan(50);
    });
  }
});

/** A fresh device, monitored, with the driver having read magic/version/id. */
function hostile(features = ALL): { m: Machine; raw: RawMmio; mon: Monitor } {
  const { m, dev } = sim({ features });
  const mon = attachMonitor(m);
  const raw = new RawMmio(m.platform, dev.base);
  raw.probe();
  return { m, raw, mon };
}

function statements(mon: Monitor): string[] {
  return [...new Set(mon.violations.map((v) => v.statement))].sort();
}

/** Negotiate and bring queue 0 up with a raw ring of `size`; DRIVER_OK set. */
function liveRing(features = ALL, size = 8) {
  const h = hostile(features);
  const n = h.raw.negotiate((o) => o & features);
  expect(n.featuresOk).toBe(true);
  const ring = new RawSplitRing(h.m.platform, size);
  h.raw.setupQueue(0, size, ring.desc, ring.avail, ring.used);
  h.raw.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
  return { ...h, ring };
}

describe('monitor: each driver rule fires on a hostile driver', () => {
  it('status: clearing a bit, DRIVER_OK without FEATURES_OK, features after FEATURES_OK, notify before DRIVER_OK', () => {
    const { raw, mon } = hostile();
    raw.reset();
    raw.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
    raw.setStatus(Status.ACKNOWLEDGE); // clears DRIVER
    expect(statements(mon)).toEqual(['status_init.driver.2']);
    raw.reset();
    raw.setStatus(Status.ACKNOWLEDGE);
    raw.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
    raw.notify(0);
    raw.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.DRIVER_OK);
    expect(statements(mon)).toEqual(['status_init.driver.12', 'status_init.driver.2', 'status_init.driver.6']);
    const { raw: r2, mon: m2 } = hostile();
    r2.negotiate((o) => o);
    r2.writeDriverFeatures(featureSet(F.VERSION_1));
    expect(statements(m2)).toEqual(['status_init.driver.9']);
  });

  it('features: unoffered bits, VERSION_1 declined, undefined bits', () => {
    const a = hostile(featureSet(F.VERSION_1));
    a.raw.negotiate(() => featureSet(F.VERSION_1, F.EVENT_IDX));
    expect(statements(a.mon)).toEqual(['features.driver.1']);
    const b = hostile();
    b.raw.negotiate(() => featureSet(F.INDIRECT_DESC));
    expect(statements(b.mon)).toEqual(['features.driver.9']);
  });

  it('mmio registers: width, read-only, write-only, size above max, queue registers while ready, ack bits, unknown offset', () => {
    const { m, raw, mon } = hostile();
    m.platform.mmioRead(raw.base + Mmio.STATUS, 2);
    raw.w(Mmio.MAGIC_VALUE, 1);
    raw.r(Mmio.QUEUE_SEL);
    raw.r(0x0f0);
    expect(statements(mon)).toEqual(['mmio.driver.1', 'mmio.driver.2', 'mmio.driver.3', 'mmio.driver.4']);
    raw.negotiate((o) => o);
    const max = raw.queueMax(0);
    raw.w(Mmio.QUEUE_NUM, max * 2);
    const ring = new RawSplitRing(m.platform, 8);
    raw.setupQueue(0, 8, ring.desc, ring.avail, ring.used);
    raw.w(Mmio.QUEUE_NUM, 4);
    raw.w(Mmio.INTERRUPT_ACK, 0x10);
    expect(statements(mon)).toEqual(['mmio.driver.1', 'mmio.driver.14', 'mmio.driver.15', 'mmio.driver.2', 'mmio.driver.20', 'mmio.driver.3', 'mmio.driver.4']);
  });

  it('config access beyond the config space a device type defines', () => {
    const m = new Machine({ ram: [{ base: 0, size: 8 << 20 }] });
    const dev = attachVirtioMmio(m, new VirtioBlkDevice({ backend: new RamDisk(1 << 20) }));
    const mon = attachMonitor(m);
    const raw = new RawMmio(m.platform, dev.base);
    raw.probe();
    raw.config32(92);
    expect(statements(mon)).toEqual([]);
    raw.config32(96);
    expect(statements(mon)).toEqual(['mmio.driver.1']);
  });

  it('writes before reading MagicValue/Version', () => {
    const { m, dev } = sim();
    const mon = attachMonitor(m);
    new RawMmio(m.platform, dev.base).setStatus(0);
    expect(statements(mon)).toEqual(['mmio.driver.24']);
  });

  it('split ring: misaligned areas', () => {
    const { m, raw, mon } = hostile();
    raw.negotiate((o) => o);
    const base = m.dma.alloc(8192, 4096);
    raw.setupQueue(0, 8, base + 8, base + 1024 + 1, base + 2048 + 2);
    expect(statements(mon)).toEqual(['split.driver.1']);
  });

  it('split ring: loop, readable after writable, INDIRECT not negotiated, INDIRECT+NEXT, no notify, in-flight change', () => {
    const { m, raw, mon, ring } = liveRing(featureSet(F.VERSION_1), 8);
    const buf = m.dma.alloc(4096);
    // 0 -> 1 -> 0 loop
    ring.setDesc(0, { addr: buf, len: 16, flags: Split.DESC_F_NEXT, next: 1 });
    ring.setDesc(1, { addr: buf, len: 16, flags: Split.DESC_F_NEXT, next: 0 });
    ring.publish(0);
    raw.notify(0);
    expect(statements(mon)).toContain('split.driver.4');
    // writable then readable
    ring.setDesc(2, { addr: buf, len: 16, flags: Split.DESC_F_WRITE | Split.DESC_F_NEXT, next: 3 });
    ring.setDesc(3, { addr: buf + 64, len: 16, flags: 0, next: 0 });
    // indirect without the feature, and with NEXT
    ring.setDesc(4, { addr: buf + 512, len: 32, flags: Split.DESC_F_INDIRECT | Split.DESC_F_NEXT, next: 5 });
    ring.setDesc(5, { addr: buf + 128, len: 16, flags: Split.DESC_F_WRITE, next: 0 });
    ring.publish(2, 4);
    raw.notify(0);
    expect(statements(mon)).toEqual(['split.driver.2', 'split.driver.4', 'split.driver.6', 'split.driver.9']);
  });

  it('split ring: buffers made available without a notification, and an in-flight descriptor rewritten', () => {
    const { m, mon, ring } = liveRing(featureSet(F.VERSION_1), 8);
    const buf = m.dma.alloc(4096);
    ring.chain(0, [{ addr: buf, len: 32 }, { addr: buf + 64, len: 32, write: true }]);
    ring.publish(0);
    m.platform.spin(1000); // waits without notifying
    expect(statements(mon)).toEqual(['split.driver.22']);
    ring.setDesc(0, { addr: buf, len: 8, flags: Split.DESC_F_NEXT, next: 1 }); // still in flight: the device never saw a notify
    m.platform.spin(1000);
    expect(statements(mon)).toEqual(['split.driver.22', 'status_init.driver.13']);
  });
});

describe('monitor: device rules fire on a misbehaving device', () => {
  it('used len above the writable bytes, unknown used id, writes into a readable buffer, no notification', () => {
    const { m, raw, mon, ring } = liveRing(featureSet(F.VERSION_1), 8);
    const buf = m.dma.alloc(4096);
    ring.chain(0, [{ addr: buf, len: 32 }, { addr: buf + 64, len: 32, write: true }]);
    ring.chain(2, [{ addr: buf + 128, len: 32 }, { addr: buf + 192, len: 16, write: true }]);
    ring.publish(0, 2);
    // a "device" that runs on the scheduler: writes into the readable buffer, completes with a bad len and a bad id, and never interrupts
    m.scheduler.schedule(10, 'bad device', () => {
      m.mem.write8(buf, 0xee);
      m.mem.write32(ring.used + 4, 0);
      m.mem.write32(ring.used + 8, 4096);
      m.mem.write32(ring.used + 12, 7);
      m.mem.write32(ring.used + 16, 0);
      m.mem.write16(ring.used + 2, 2);
    });
    raw.notify(0);
    // the echo device model also runs on notify; stop it from interfering by checking only the rules above
    m.platform.spin(100);
    mon.detach();
    const s = statements(mon);
    expect(s).toContain('split.device.3');
    expect(s).toContain('split.device.16');
    expect(s).toContain('split.device.11');
    expect(mon.bySide('driver')).toEqual([]);
  });

  it('a used buffer notification before DRIVER_OK', () => {
    const { m, dev } = sim();
    const mon = attachMonitor(m);
    const raw = new RawMmio(m.platform, dev.base);
    raw.negotiate((o) => o);
    dev.transport.usedBuffer(); // the transport raising a used interrupt with DRIVER_OK clear
    expect(statements(mon)).toEqual(['status_init.device.1']);
  });
});
