import { describe, expect, it } from 'vitest';
import { Machine } from '../device-models/machine/machine.ts';
import { attachVirtioMmio } from '../device-models/virtio/mmio.ts';
import { ModernLayout, attachVirtioPci } from '../device-models/virtio/pci.ts';
import { discoverPci } from '../drivers/transport/pci.ts';
import { Common, Legacy, PciCap } from '../spec-refs/abi/virtio-pci.ts';
import { EchoModel } from '../device-models/virtio/testing/echo.ts';
import { VirtioBlkDevice } from '../device-models/blk/device.ts';
import { RamDisk } from '../device-models/blk/backend.ts';
import { discoverMmio } from '../drivers/transport/mmio.ts';
import { VirtioDriverDevice } from '../drivers/core/device.ts';
import { F, Mmio, Split, Status, featureSet } from '../spec-refs/abi/virtio.ts';
import { attachMonitor, type Monitor } from './monitor.ts';
import { monitorMachine } from './vitest.ts';
import { RawMmio, RawSplitRing } from './hostile.ts';
import { NetTestbed } from './harness/net.ts';

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
      expect(mon.stats).toMatchObject({ chains: 22, used: 22 });
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

  it('split ring with IN_ORDER: a chain out of ring order, an indirect table out of sequence; the wrap to 0 is fine', () => {
    const { m, raw, mon, ring } = liveRing(featureSet(F.VERSION_1, F.IN_ORDER, F.INDIRECT_DESC), 8);
    const buf = m.dma.alloc(4096);
    // 6 -> 7 -> 0: ring order, wrapping after the last descriptor
    ring.setDesc(6, { addr: buf, len: 16, flags: Split.DESC_F_NEXT, next: 7 });
    ring.setDesc(7, { addr: buf + 64, len: 16, flags: Split.DESC_F_NEXT, next: 0 });
    ring.setDesc(0, { addr: buf + 128, len: 16, flags: Split.DESC_F_WRITE, next: 0 });
    ring.publish(6);
    raw.notify(0);
    expect(statements(mon).filter((s) => s.startsWith('split.driver'))).toEqual([]);
    // 1 -> 3: skips a descriptor
    ring.setDesc(1, { addr: buf, len: 16, flags: Split.DESC_F_NEXT, next: 3 });
    ring.setDesc(3, { addr: buf + 256, len: 16, flags: Split.DESC_F_WRITE, next: 0 });
    ring.publish(1);
    raw.notify(0);
    expect(statements(mon)).toContain('split.driver.5');
    expect(statements(mon)).not.toContain('split.driver.10');
    // an indirect table whose entry 0 links to entry 2
    const table = m.dma.alloc(64, 16);
    m.mem.write64(table, buf);
    m.mem.write32(table + 8, 16);
    m.mem.write32(table + 12, Split.DESC_F_NEXT | (2 << 16));
    m.mem.write64(table + 32, buf + 512);
    m.mem.write32(table + 40, 16);
    m.mem.write32(table + 44, Split.DESC_F_WRITE);
    ring.setDesc(4, { addr: table, len: 48, flags: Split.DESC_F_INDIRECT, next: 0 });
    ring.publish(4);
    raw.notify(0);
    expect(statements(mon)).toContain('split.driver.10');
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

// ---------------------------------------------------------------------------- virtio-pci, legacy mmio

/** The echo model under a device type that has a transitional PCI id (4, entropy: no device-specific rules apply). */
function pciEcho(opts: ConstructorParameters<typeof EchoModel>[0]): EchoModel {
  const e = new EchoModel(opts);
  Object.defineProperty(e, 'deviceType', { value: 4 });
  return e;
}

/** An echo device on PCI, enumerated (BARs assigned, MSI-X on) by the reference PCI discovery, monitored. */
function pciSim(mode: 'modern' | 'transitional' | 'legacy' = 'modern', features?: bigint) {
  const m = new Machine({ ram: [{ base: 0, size: 8 << 20 }] });
  attachVirtioPci(m, pciEcho(features !== undefined ? { features } : {}), { mode, notifyLatencyNs: 500 });
  const mon = attachMonitor(m);
  const t = discoverPci(m.platform, { legacy: mode === 'legacy' }).transports[0]!;
  const bar = (i: number): number => t.bars.find((b) => b.index === i)!.addr;
  const ecam = m.platform.pci!.ecamBase! + (t.addr.dev << 15);
  return { m, mon, t, bar, ecam };
}

/** Raw common-config access of a modern virtio-pci function (BAR4 layout of device-models/virtio/pci.ts). */
function common(s: ReturnType<typeof pciSim>) {
  const b = s.bar(ModernLayout.BAR) + ModernLayout.COMMON;
  return {
    w: (off: number, size: 1 | 2 | 4, v: number) => s.m.platform.mmioWrite(b + off, size, v),
    r: (off: number, size: 1 | 2 | 4) => s.m.platform.mmioRead(b + off, size),
    notify: (off: number, size: 1 | 2 | 4, v: number) => s.m.platform.mmioWrite(s.bar(ModernLayout.BAR) + ModernLayout.NOTIFY + off, size, v),
    /** Reset, ACKNOWLEDGE, DRIVER, accept `accept` of what is offered, FEATURES_OK. */
    negotiate(accept: bigint) {
      this.w(Common.DEVICE_STATUS, 1, 0);
      this.w(Common.DEVICE_STATUS, 1, Status.ACKNOWLEDGE);
      this.w(Common.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER);
      for (const sel of [0, 1]) {
        this.w(Common.DEVICE_FEATURE_SELECT, 4, sel);
        this.r(Common.DEVICE_FEATURE, 4);
        this.w(Common.DRIVER_FEATURE_SELECT, 4, sel);
        this.w(Common.DRIVER_FEATURE, 4, Number((accept >> BigInt(32 * sel)) & 0xffff_ffffn));
      }
      this.w(Common.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
    },
    /** negotiate(accept), then DRIVER_OK. */
    start(accept: bigint) {
      this.negotiate(accept);
      this.w(Common.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
    },
  };
}

describe('monitor over virtio-pci and legacy virtio-mmio: the reference components never trip it', () => {
  for (const mode of ['modern', 'transitional', 'legacy'] as const) {
    it(`pci ${mode}: init, traffic on two queues, shutdown, re-init`, () => {
      const { m, mon, t } = pciSim(mode);
      let d = VirtioDriverDevice.init(m.platform, t, { features: ALL, queues: 2 });
      echoTraffic(m, d, 0, 12);
      echoTraffic(m, d, 1, 6, 3);
      d.shutdown();
      d = VirtioDriverDevice.init(m.platform, t, { features: ALL, queues: 1 });
      echoTraffic(m, d, 0, 4, 2);
      mon.detach();
      expect(mon.violations).toEqual([]);
      // it decoded the rings (from common cfg, or from the legacy queue PFN) and saw the interrupts
      expect(mon.stats).toMatchObject({ chains: 22, used: 22 });
      expect(mon.stats.irqs).toBeGreaterThan(0);
      expect(mon.statusLog.map((s) => s.value).slice(0, 2)).toEqual([0, Status.ACKNOWLEDGE]);
    });
  }

  it('legacy virtio-mmio: rings found from QueuePFN are watched', () => {
    const { m } = sim({ legacy: true, features: featureSet(F.INDIRECT_DESC, F.EVENT_IDX) });
    const mon = attachMonitor(m);
    const d = VirtioDriverDevice.init(m.platform, discoverMmio(m.platform).transports[0]!, { features: ALL, queues: 1 });
    echoTraffic(m, d, 0, 5, 2);
    expect(mon.violations).toEqual([]);
    expect(mon.stats).toMatchObject({ chains: 5, used: 5 });
  });
});

describe('monitor: each virtio-pci driver rule fires on a hostile driver', () => {
  it('common cfg: access width (pci.driver.5), read-only fields (pci.driver.15)', () => {
    const s = pciSim();
    const c = common(s);
    c.w(Common.QUEUE_SELECT, 1, 0);
    expect(statements(s.mon)).toEqual(['pci.driver.5']);
    c.w(Common.NUM_QUEUES, 2, 4);
    c.w(Common.QUEUE_NOTIFY_OFF, 2, 1);
    expect(statements(s.mon)).toEqual(['pci.driver.15', 'pci.driver.5']);
    expect(s.mon.of(['pci.driver.15'])).toHaveLength(2);
  });

  it('queue_size 0 (pci.driver.16), not a power of two on a split ring (pci.driver.17), queue_enable 0 (pci.driver.20)', () => {
    const s = pciSim();
    const c = common(s);
    c.negotiate(ALL);
    c.w(Common.QUEUE_SELECT, 2, 0);
    c.w(Common.QUEUE_SIZE, 2, 8);
    expect(statements(s.mon)).toEqual([]);
    c.w(Common.QUEUE_SIZE, 2, 0);
    expect(statements(s.mon)).toEqual(['pci.driver.16']);
    c.w(Common.QUEUE_SIZE, 2, 6);
    expect(statements(s.mon)).toEqual(['pci.driver.16', 'pci.driver.17']);
    c.w(Common.QUEUE_ENABLE, 2, 0);
    expect(statements(s.mon)).toEqual(['pci.driver.16', 'pci.driver.17', 'pci.driver.20']);
  });

  it('notifications: width (pci.driver.38) and value (pci.driver.40)', () => {
    const s = pciSim();
    const c = common(s);
    c.negotiate(ALL);
    c.w(Common.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
    c.w(Common.QUEUE_SELECT, 2, 1);
    const no = c.r(Common.QUEUE_NOTIFY_OFF, 2);
    const mult = 4; // ModernLayout default notify_off_multiplier
    c.notify(no * mult, 2, 1);
    expect(statements(s.mon)).toEqual([]);
    c.notify(no * mult, 4, 1);
    expect(statements(s.mon)).toEqual(['pci.driver.38']);
    c.notify(no * mult, 2, 0);
    expect(statements(s.mon)).toEqual(['pci.driver.38', 'pci.driver.40']);
  });

  it('with VIRTIO_F_NOTIFICATION_DATA: 32-bit (pci.driver.39) carrying vq_index (pci.driver.41)', () => {
    const feats = ALL | featureSet(F.NOTIFICATION_DATA);
    const s = pciSim('modern', feats);
    const c = common(s);
    c.start(feats);
    c.w(Common.QUEUE_SELECT, 2, 1);
    const off = c.r(Common.QUEUE_NOTIFY_OFF, 2) * 4;
    c.notify(off, 4, 1);
    expect(statements(s.mon)).toEqual([]);
    c.notify(off, 2, 1);
    c.notify(off, 4, 0x0001_0000);
    expect(statements(s.mon)).toEqual(['pci.driver.39', 'pci.driver.41']);
  });

  it('with VIRTIO_F_NOTIF_CONFIG_DATA: the value is queue_notif_config_data (pci.driver.42)', () => {
    const feats = ALL | featureSet(F.NOTIF_CONFIG_DATA);
    const s = pciSim('modern', feats);
    const c = common(s);
    c.start(feats);
    c.w(Common.QUEUE_SELECT, 2, 0);
    const off = c.r(Common.QUEUE_NOTIFY_OFF, 2) * 4;
    const data = c.r(Common.QUEUE_NOTIF_CONFIG_DATA, 2);
    c.notify(off, 2, data);
    expect(statements(s.mon)).toEqual([]);
    c.notify(off, 2, 0); // the queue index, not the device's value
    expect(statements(s.mon)).toEqual(['pci.driver.42']);
  });

  it('PCI_CFG window: misaligned (pci.driver.29), outside every structure (pci.driver.31); a good window is decoded like BAR access', () => {
    const s = pciSim();
    const cap = findPciCfgCap(s);
    const cfgW = (reg: number, size: 1 | 2 | 4, v: number) => s.m.platform.mmioWrite(s.ecam + reg, size, v);
    const cfgR = (reg: number, size: 1 | 2 | 4) => s.m.platform.mmioRead(s.ecam + reg, size);
    // a good window onto device_status: write ACKNOWLEDGE|DRIVER without a reset first
    cfgW(cap + PciCap.OFF_BAR, 1, ModernLayout.BAR);
    cfgW(cap + PciCap.OFF_OFFSET, 4, ModernLayout.COMMON + Common.DEVICE_STATUS);
    cfgW(cap + PciCap.OFF_LENGTH, 4, 1);
    cfgW(cap + PciCap.OFF_PCI_CFG_DATA, 1, Status.ACKNOWLEDGE | Status.DRIVER);
    expect(statements(s.mon)).toEqual(['status_init.driver.6']);
    cfgW(cap + PciCap.OFF_OFFSET, 4, ModernLayout.COMMON + Common.QUEUE_SELECT + 1);
    cfgW(cap + PciCap.OFF_LENGTH, 4, 2);
    cfgR(cap + PciCap.OFF_PCI_CFG_DATA, 2);
    expect(statements(s.mon)).toEqual(['pci.driver.29', 'status_init.driver.6']);
    cfgW(cap + PciCap.OFF_OFFSET, 4, 0x800); // inside BAR4, but between structures
    cfgW(cap + PciCap.OFF_LENGTH, 4, 4);
    cfgR(cap + PciCap.OFF_PCI_CFG_DATA, 4);
    expect(statements(s.mon)).toEqual(['pci.driver.29', 'pci.driver.31', 'status_init.driver.6']);
  });

  it('the transport-independent rules apply over pci: features.driver.1, status_init.driver.2 (legacy I/O BAR too)', () => {
    const s = pciSim('modern', featureSet(F.VERSION_1));
    common(s).negotiate(featureSet(F.VERSION_1, F.EVENT_IDX));
    expect(statements(s.mon)).toEqual(['features.driver.1']);
    const l = pciSim('legacy');
    const io = l.bar(0);
    l.m.platform.pioWrite(io + Legacy.STATUS, 1, 0);
    l.m.platform.pioWrite(io + Legacy.STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER);
    l.m.platform.pioWrite(io + Legacy.STATUS, 1, Status.ACKNOWLEDGE);
    expect(statements(l.mon)).toEqual(['status_init.driver.2']);
  });

  it('split ring rules over the legacy PFN layout (pci legacy, mmio legacy): a looping chain (split.driver.4)', () => {
    for (const kind of ['pci', 'mmio'] as const) {
      let m: Machine;
      let mon: Monitor;
      let base: number;
      let size: number;
      let notify: () => void;
      if (kind === 'pci') {
        const l = pciSim('legacy');
        ({ m, mon } = l);
        const io = l.bar(0);
        const P = m.platform;
        P.pioWrite(io + Legacy.STATUS, 1, 0);
        P.pioWrite(io + Legacy.STATUS, 1, Status.ACKNOWLEDGE);
        P.pioWrite(io + Legacy.STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER);
        P.pioWrite(io + Legacy.GUEST_FEATURES, 4, 0);
        P.pioWrite(io + Legacy.QUEUE_SEL, 2, 0);
        size = P.pioRead(io + Legacy.QUEUE_NUM, 2);
        base = P.dma.alloc(0x10000, 4096);
        P.pioWrite(io + Legacy.QUEUE_PFN, 4, base / 4096);
        P.pioWrite(io + Legacy.STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER | Status.DRIVER_OK);
        notify = () => P.pioWrite(io + Legacy.QUEUE_NOTIFY, 2, 0);
      } else {
        const x = sim({ legacy: true, features: featureSet(F.INDIRECT_DESC) });
        m = x.m;
        mon = attachMonitor(m);
        const raw = new RawMmio(m.platform, x.dev.base);
        raw.probe();
        raw.w(Mmio.STATUS, 0);
        raw.w(Mmio.STATUS, Status.ACKNOWLEDGE);
        raw.w(Mmio.STATUS, Status.ACKNOWLEDGE | Status.DRIVER);
        raw.w(Mmio.DRIVER_FEATURES_SEL, 0);
        raw.w(Mmio.DRIVER_FEATURES, 0);
        raw.w(Mmio.GUEST_PAGE_SIZE, 4096);
        raw.w(Mmio.QUEUE_SEL, 0);
        size = 8;
        raw.w(Mmio.QUEUE_NUM, size);
        raw.w(Mmio.QUEUE_ALIGN, 4096);
        base = m.platform.dma.alloc(0x10000, 4096);
        raw.w(Mmio.QUEUE_PFN, base / 4096);
        raw.w(Mmio.STATUS, Status.ACKNOWLEDGE | Status.DRIVER | Status.DRIVER_OK);
        notify = () => raw.w(Mmio.QUEUE_NOTIFY, 0);
      }
      expect(statements(mon)).toEqual([]);
      const buf = m.platform.dma.alloc(64);
      const avail = base + 16 * size;
      // descriptors 0 -> 1 -> 0: a loop
      for (const [i, next] of [[0, 1], [1, 0]] as const) {
        m.mem.write32(base + 16 * i, buf);
        m.mem.write32(base + 16 * i + 4, 0);
        m.mem.write32(base + 16 * i + 8, 16);
        m.mem.write16(base + 16 * i + 12, Split.DESC_F_NEXT);
        m.mem.write16(base + 16 * i + 14, next);
      }
      m.mem.write16(avail + 4, 0);
      m.mem.write16(avail + 2, 1);
      notify();
      expect(statements(mon)).toContain('split.driver.4');
    }
  });
});

function findPciCfgCap(s: ReturnType<typeof pciSim>): number {
  let at = s.m.platform.mmioRead(s.ecam + 0x34, 1) & 0xfc;
  while (at) {
    if (s.m.platform.mmioRead(s.ecam + at, 1) === 0x09 && s.m.platform.mmioRead(s.ecam + at + PciCap.OFF_CFG_TYPE, 1) === PciCap.PCI_CFG) return at;
    at = s.m.platform.mmioRead(s.ecam + at + 1, 1) & 0xfc;
  }
  throw new Error('no PCI_CFG capability');
}

// ---------------------------------------------------------------------------- packed rings

const PACKED = featureSet(F.VERSION_1, F.INDIRECT_DESC, F.EVENT_IDX, F.RING_PACKED);

describe('monitor on packed rings: the reference driver and devices never trip it', () => {
  for (const transport of ['mmio', 'pci'] as const) {
    for (const features of [PACKED, featureSet(F.VERSION_1, F.RING_PACKED), PACKED | featureSet(F.IN_ORDER)]) {
      it(`${transport}, features 0x${features.toString(16)}: traffic past several wraps, shutdown, re-init`, () => {
        let m: Machine;
        let mon: Monitor;
        let t;
        if (transport === 'mmio') {
          ({ m } = sim({ features }));
          mon = attachMonitor(m);
          t = discoverMmio(m.platform).transports[0]!;
        } else {
          ({ m, mon, t } = pciSim('modern', features));
        }
        let d = VirtioDriverDevice.init(m.platform, t, { features, queues: 2, queueSize: 8 });
        echoTraffic(m, d, 0, 20, 3); // 3-descriptor lists on an 8-entry ring: wraps many times
        echoTraffic(m, d, 1, 9);
        d.shutdown();
        d = VirtioDriverDevice.init(m.platform, t, { features, queues: 1, queueSize: 8 });
        echoTraffic(m, d, 0, 5, 2);
        mon.detach();
        expect(mon.violations).toEqual([]);
        expect(mon.stats).toMatchObject({ chains: 34, used: 34 });
      });
    }
  }
});

/** A packed queue 0 of `size` set up by hand over virtio-mmio (DRIVER_OK set); write descriptors with `put`. */
function livePacked(features = PACKED, size = 8) {
  const { m, dev } = sim({ features });
  const mon = attachMonitor(m);
  const raw = new RawMmio(m.platform, dev.base);
  raw.probe();
  expect(raw.negotiate((o) => o & features).featuresOk).toBe(true);
  const desc = m.dma.alloc(16 * size, 16);
  const drv = m.dma.alloc(4, 4);
  const devArea = m.dma.alloc(4, 4);
  raw.setupQueue(0, size, desc, drv, devArea);
  raw.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
  const AV = 1 << 7;
  const US = 1 << 15;
  /** Write descriptor `pos` (flags get AVAIL/USED for driver wrap `wrap` unless `raw` flags are given). */
  const put = (pos: number, addr: number, len: number, id: number, flags: number, wrap = true) => {
    const a = desc + 16 * pos;
    m.mem.write32(a, addr);
    m.mem.write32(a + 4, 0);
    m.mem.write32(a + 8, len);
    m.mem.write16(a + 12, id);
    m.mem.write16(a + 14, flags | (wrap ? AV : US));
  };
  const run = () => m.platform.spin(1_000_000);
  return { m, mon, raw, desc, put, run, AV, US };
}

describe('monitor: each packed-ring rule fires on a hostile driver or device', () => {
  it('areas misaligned (packed.driver.1)', () => {
    const { m, dev } = sim({ features: PACKED });
    const mon = attachMonitor(m);
    const raw = new RawMmio(m.platform, dev.base);
    raw.probe();
    raw.negotiate((o) => o);
    const base = m.dma.alloc(4096, 16);
    raw.setupQueue(0, 8, base + 8, base + 2048 + 2, base + 3072);
    expect(statements(mon)).toEqual(['packed.driver.1']);
  });

  it('a well-formed list passes; readable after writable (packed.driver.8), INDIRECT unnegotiated (packed.driver.12), INDIRECT with NEXT (packed.driver.15)', () => {
    const { m, mon, raw, put, run } = livePacked(featureSet(F.VERSION_1, F.RING_PACKED));
    const buf = m.dma.alloc(256);
    put(0, buf, 16, 7, 0x1);
    put(1, buf + 64, 16, 7, 0x2);
    raw.notify(0);
    run();
    expect(statements(mon)).toEqual([]);
    expect(mon.stats).toMatchObject({ chains: 1, used: 1 });
    put(2, buf + 64, 16, 8, 0x2 | 0x1);
    put(3, buf, 16, 8, 0x0);
    put(4, buf + 128, 16, 9, 0x4 | 0x1);
    put(5, buf, 16, 9, 0x2);
    raw.notify(0);
    expect(statements(mon)).toEqual(['packed.driver.12', 'packed.driver.15', 'packed.driver.8']);
  });

  it('flags other than WRITE inside an indirect table (packed.driver.13)', () => {
    const { m, mon, raw, put } = livePacked();
    const buf = m.dma.alloc(256);
    const table = m.dma.alloc(32, 16);
    m.mem.write32(table, buf);
    m.mem.write32(table + 8, 16);
    m.mem.write16(table + 14, 0x1); // NEXT inside an indirect table
    m.mem.write32(table + 16, buf + 64);
    m.mem.write32(table + 24, 16);
    m.mem.write16(table + 30, 0x2);
    put(0, table, 32, 1, 0x4);
    raw.notify(0);
    expect(statements(mon)).toEqual(['packed.driver.13']);
  });

  it('head available before the rest of its list (packed.driver.11), a list longer than the queue (packed.driver.7)', () => {
    const a = livePacked();
    const buf = a.m.dma.alloc(64);
    a.put(0, buf, 16, 1, 0x1);
    a.put(1, buf, 16, 1, 0x0, false); // not made available (wrong AVAIL/USED for this wrap)
    a.raw.notify(0);
    expect(statements(a.mon)).toEqual(['packed.driver.11']);
    const b = livePacked(PACKED, 4);
    for (let i = 0; i < 4; i++) b.put(i, buf, 16, 1, 0x1);
    b.raw.notify(0);
    expect(statements(b.mon)).toEqual(['packed.driver.7']);
  });

  it('with NOTIFICATION_DATA the notification names the next position and wrap (packed.driver.4)', () => {
    const f = PACKED | featureSet(F.NOTIFICATION_DATA);
    const { m, mon, raw, put } = livePacked(f);
    const buf = m.dma.alloc(64);
    put(0, buf, 16, 1, 0x2);
    raw.w(Mmio.QUEUE_NOTIFY, (1 << 31) | (1 << 16) | 0); // next_off 1, wrap 1: right
    expect(statements(mon)).toEqual([]);
    put(1, buf, 16, 2, 0x2);
    raw.w(Mmio.QUEUE_NOTIFY, (1 << 31) | (1 << 16) | 0); // still says 1: wrong
    expect(statements(mon)).toEqual(['packed.driver.4']);
  });

  it('device side: a used descriptor for an id never made available (packed.device.6), a write into a readable buffer (packed.device.4)', () => {
    const { m, mon, raw, put, run, desc, AV, US } = livePacked();
    const buf = m.dma.alloc(64);
    m.mem.fill(buf, 64, 0x5a);
    put(0, buf, 64, 3, 0x0);
    raw.notify(0);
    // a "device" scribbles the readable buffer and writes a used descriptor with a foreign id, in device time
    (mon as unknown as { deviceTime<T>(f: () => T): T }).deviceTime(() => {
      m.mem.write8(buf + 5, 0);
      m.mem.write16(desc + 12, 99);
      m.mem.write16(desc + 14, AV | US);
    });
    expect(statements(mon)).toEqual(['packed.device.4', 'packed.device.6']);
    run();
  });
});

describe('monitor: the remaining new rules fire too', () => {
  it('NOTIFICATION_DATA with NOTIF_CONFIG_DATA: the low half is queue_notif_config_data (pci.driver.43)', () => {
    const feats = ALL | featureSet(F.NOTIFICATION_DATA, F.NOTIF_CONFIG_DATA);
    const s = pciSim('modern', feats);
    const c = common(s);
    c.start(feats);
    c.w(Common.QUEUE_SELECT, 2, 0);
    const off = c.r(Common.QUEUE_NOTIFY_OFF, 2) * 4;
    const data = c.r(Common.QUEUE_NOTIF_CONFIG_DATA, 2);
    c.notify(off, 4, data);
    expect(statements(s.mon)).toEqual([]);
    c.notify(off, 4, 0);
    expect(statements(s.mon)).toEqual(['pci.driver.43']);
  });

  it('packed: the driver rewrites a readable buffer in flight (status_init.driver.13), a descriptor outside RAM (features.driver.13)', () => {
    const { m, mon, raw, put } = livePacked();
    const buf = m.dma.alloc(64);
    put(0, buf, 64, 1, 0x0);
    raw.notify(0);
    m.mem.write8(buf, 0xee); // driver time: the device has not run
    m.platform.spin(1); // entering device time judges what the driver did
    expect(statements(mon)).toEqual(['status_init.driver.13']);
    put(1, 0x7fff_0000, 64, 2, 0x0);
    raw.notify(0);
    expect(statements(mon)).toEqual(['features.driver.13', 'status_init.driver.13']);
  });

  it('packed: a used descriptor before DRIVER_OK (status_init.device.1)', () => {
    const { m, dev } = sim({ features: PACKED });
    const mon = attachMonitor(m);
    const raw = new RawMmio(m.platform, dev.base);
    raw.probe();
    raw.negotiate((o) => o & PACKED); // FEATURES_OK, no DRIVER_OK
    const desc = m.dma.alloc(128, 16);
    raw.setupQueue(0, 8, desc, m.dma.alloc(4, 4), m.dma.alloc(4, 4));
    const buf = m.dma.alloc(64);
    m.mem.write32(desc, buf);
    m.mem.write32(desc + 8, 64);
    m.mem.write16(desc + 12, 1);
    m.mem.write16(desc + 14, 0x2 | (1 << 7));
    raw.notify(0); // status_init.driver.12 as well: a notification before DRIVER_OK
    // a device that uses the buffer anyway (in device time)
    mon.deviceTime(() => m.mem.write16(desc + 14, 0x2 | (1 << 7) | (1 << 15)));
    expect(statements(mon)).toEqual(['status_init.device.1', 'status_init.driver.12']);
  });
});

describe('monitor: used notifications on a virtio-net queue with notification coalescing', () => {
  const frame = (dst: Uint8Array) => {
    const f = new Uint8Array(60);
    f.set(dst, 0);
    f.set([0x02, 0, 0, 0, 0, 9], 6);
    f[12] = 0x88;
    f[13] = 0xb5;
    return f;
  };

  it('a device holding a notification back while the driver polls the buffers away is owed nothing', () => {
    const tb = new NetTestbed();
    const machine = new Machine({ sharedScheduler: tb.scheduler, ram: [{ base: 0, size: 32 << 20, name: 'ram' }] });
    const mon = attachMonitor(machine); // watching from the start: negotiation, the rings, the control queue
    const g = tb.addGuest({ machine });
    const port = tb.sw.attach({ name: 'inj', receive: () => {} });
    g.driver.setCoalescing('rx', 3, 30);
    let got = 0;
    g.driver.onReceive(() => got++);
    port.send({ data: frame(g.driver.mac) });
    tb.runAll(200_000);
    mon.detach();
    expect(got).toBe(1);
    expect(mon.violations.map((v) => v.statement)).toEqual([]);
  });

  it('coalescing configured, a device that never notifies while the driver waits: split.device.13 still fires', () => {
    const tb = new NetTestbed();
    const machine = new Machine({ sharedScheduler: tb.scheduler, ram: [{ base: 0, size: 32 << 20, name: 'ram' }] });
    const mon = attachMonitor(machine); // watching from the start: negotiation, the rings, the control queue
    const g = tb.addGuest({ machine });
    const port = tb.sw.attach({ name: 'inj', receive: () => {} });
    g.driver.setCoalescing('rx', 3, 30);
    (g.device as unknown as { fireCoal: () => void }).fireCoal = () => {}; // a device that forgets the coalesced notification
    const usedBefore = mon.stats.used;
    port.send({ data: frame(g.driver.mac) });
    mon.deviceTime(() => tb.scheduler.runFor(200_000)); // the driver does not poll: it waits for the interrupt
    mon.detach();
    expect(mon.stats.used).toBeGreaterThan(usedBefore);
    expect(mon.violations.map((v) => v.statement)).toContain('split.device.13');
  });
});
