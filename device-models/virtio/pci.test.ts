/**
 * virtio-pci: the device transport (pci.ts) and the driver transport (drivers/transport/pci.ts)
 * on the simulated machine with the echo model. Census ids are cited per test.
 */
import { describe, expect, it } from 'vitest';
import { test as fcTest, fc } from '@fast-check/vitest';
import { Machine } from '../machine/machine.ts';
import { attachVirtioPci, ModernLayout, notifConfigData, type VirtioPciOptions } from './pci.ts';
import { EchoModel, ECHO_CONFIG_MAGIC, type EchoOptions } from './testing/echo.ts';
import { discoverPci, type PciTransport, type PciTransportOptions } from '../../drivers/transport/pci.ts';
import { Cfg } from '../../drivers/transport/pci-bus.ts';
import { VirtioDriverDevice } from '../../drivers/core/device.ts';
import { SplitVirtqueue } from '../../drivers/core/split.ts';
import { F, Status, featureSet } from '../../spec-refs/abi/virtio.ts';
import { Common, PciCap, VIRTIO_MSI_NO_VECTOR } from '../../spec-refs/abi/virtio-pci.ts';

/** The echo model under a real device type with a transitional id (net = 1). */
class NetEcho extends EchoModel {
  override readonly deviceType = 1 as never;
}

const BASE = featureSet(F.VERSION_1, F.INDIRECT_DESC, F.EVENT_IDX);

function setup(opts: VirtioPciOptions & { echo?: EchoOptions; driver?: PciTransportOptions } = {}) {
  const m = new Machine();
  const model = new NetEcho({ features: BASE, queueMaxSize: 64, ...opts.echo });
  const dev = attachVirtioPci(m, model, { notifyLatencyNs: 500, ...opts });
  const found = discoverPci(m.platform, opts.driver);
  expect(found.skipped).toEqual([]);
  return { m, model, dev, t: found.transports[0]! as PciTransport, bus: found.bus };
}

function echoOnce(m: Machine, d: VirtioDriverDevice, q = 0, n = 3): void {
  const vq = d.queue<number>(q);
  const src = m.dma.alloc(256);
  const dst = m.dma.alloc(256);
  m.mem.fill(src, 256, 0x5a);
  for (let i = 0; i < n; i++) expect(vq.add([{ addr: src, len: 64 }], [{ addr: dst, len: 64 }], i)).toBe(true);
  vq.kick();
  const got = new Set<number>();
  for (let i = 0; i < n; i++) got.add(d.waitUsed<number>(q).token);
  expect(got.size).toBe(n);
  expect(m.mem.read8(dst + 63)).toBe(0x5a);
  m.dma.free(src);
  m.dma.free(dst);
}

describe('virtio-pci discovery and layout', () => {
  it('modern: vendor 0x1AF4, id 0x1040 + type, revision >= 1, subsystem >= 0x40 (pci.device.2, pci.device.3, pci.device.5 to pci.device.7)', () => {
    const { t } = setup();
    expect(t.info).toMatchObject({ vendorId: 0x1af4, deviceId: 0x1041, revision: 1 });
    expect(t.info.subsystemId).toBeGreaterThanOrEqual(0x40);
    expect(t.kind).toBe('pci');
    expect(t.deviceType).toBe(1);
  });

  it('transitional: id 0x1000, revision 0, subsystem id = device type; a legacy-only device has no virtio capabilities', () => {
    const { t } = setup({ mode: 'transitional' });
    expect(t.info).toMatchObject({ deviceId: 0x1000, revision: 0, subsystemId: 1 });
    expect(t.kind).toBe('pci'); // a modern driver prefers the capabilities
    const l = setup({ mode: 'legacy' });
    expect(l.t.kind).toBe('pci-legacy'); // no capabilities: the driver assumes a legacy device
    expect(l.bus.capabilities(l.t.addr).map((c) => c.id)).toEqual([0x11]);
  });

  it('a device type without a transitional id cannot be transitional (listed, not silently modern)', () => {
    const m = new Machine();
    expect(() => attachVirtioPci(m, new EchoModel(), { mode: 'transitional' })).toThrow(/no transitional PCI device id/);
  });

  it('presents COMMON, NOTIFY, ISR, DEVICE and PCI_CFG capabilities with cap_len covering their extra fields and aligned offsets (pci.device.9, pci.device.12, pci.device.13, pci.device.29, pci.device.30, pci.device.35, pci.device.36, pci.device.40, pci.device.45, pci.device.51)', () => {
    const { t, bus } = setup();
    const caps = bus.capabilities(t.addr).filter((c) => c.id === 0x09);
    const byType = new Map<number, { len: number; bar: number; off: number; length: number; mult?: number }>();
    for (const c of caps) {
      const type = bus.read(t.addr, c.offset + 3, 1);
      byType.set(type, { len: bus.read(t.addr, c.offset + 2, 1), bar: bus.read(t.addr, c.offset + 4, 1), off: bus.read(t.addr, c.offset + 8, 4), length: bus.read(t.addr, c.offset + 12, 4), mult: type === 2 ? bus.read(t.addr, c.offset + 16, 4) : undefined });
    }
    expect([...byType.keys()].sort()).toEqual([1, 2, 3, 4, 5]);
    expect(byType.get(PciCap.COMMON_CFG)!.len).toBe(16);
    expect(byType.get(PciCap.COMMON_CFG)!.length).toBeGreaterThanOrEqual(Common.SIZE);
    expect(byType.get(PciCap.NOTIFY_CFG)!.len).toBe(20);
    expect(byType.get(PciCap.PCI_CFG)!.len).toBe(20);
    for (const type of [1, 4]) expect(byType.get(type)!.off % 4).toBe(0);
    const n = byType.get(PciCap.NOTIFY_CFG)!;
    expect(n.off % 4).toBe(0);
    const mult = n.mult!;
    expect(mult === 0 || (mult % 4 === 0 && (mult & (mult - 1)) === 0)).toBe(true);
    // pci.device.33/34/38/39: every queue's address + 4 bytes fits
    expect(n.length).toBeGreaterThanOrEqual((2 - 1) * mult + 4);
  });
});

describe('virtio-pci end to end', () => {
  const cells: [string, VirtioPciOptions, PciTransportOptions][] = [
    ['modern, MSI-X', {}, {}],
    ['modern, INTx (driver without MSI-X)', {}, { msix: false }],
    ['modern, no MSI-X capability', { msixVectors: 0 }, {}],
    ['modern through the PCI_CFG window (pci.device.52, pci.device.53)', {}, { access: 'pci-cfg' }],
    ['modern, notify_off_multiplier 0', { notifyOffMultiplier: 0 }, {}],
    ['transitional, modern driver', { mode: 'transitional' }, {}],
    ['transitional, legacy driver', { mode: 'transitional' }, { legacy: true }],
    ['transitional, legacy driver with INTx', { mode: 'transitional' }, { legacy: true, msix: false }],
    ['legacy device', { mode: 'legacy' }, {}],
  ];
  for (const [name, dopts, topts] of cells) {
    it(name, () => {
      const { m, t, dev, model } = setup({ ...dopts, driver: topts });
      const d = VirtioDriverDevice.init(m.platform, t, { features: BASE, queues: 2 });
      expect(d.config32(0)).toBe(ECHO_CONFIG_MAGIC);
      echoOnce(m, d, 0);
      echoOnce(m, d, 1);
      // a config change reaches the driver (ISR bit 1 / config vector)
      model.bumpConfig();
      d.waitUntil(() => d.stats.configInterrupts > 0, 'config interrupt');
      expect(d.config32(4)).toBe(1);
      expect(dev.transport.badAccesses).toEqual([]);
      expect(dev.transport.active.errors.filter((e) => e.fatal)).toEqual([]);
      expect(dev.transport.active.errors).toEqual([]);
      d.shutdown();
      expect(dev.transport.active.status).toBe(0);
    });
  }

  it('NOTIFICATION_DATA and NOTIF_CONFIG_DATA: 32-bit notifications whose low half is queue_notif_config_data (pci.driver.39, pci.driver.43)', () => {
    for (const packed of [false, true]) {
      const feats = featureSet(F.VERSION_1, F.NOTIFICATION_DATA, F.NOTIF_CONFIG_DATA, ...(packed ? [F.RING_PACKED] : []));
      const { m, t, dev } = setup({ echo: { features: feats } });
      const writes: number[] = [];
      m.bus.addListener((a) => {
        if (a.kind === 'write' && a.window.endsWith('.bar4') && a.offset >= ModernLayout.NOTIFY) writes.push(a.size, a.value);
      });
      const d = VirtioDriverDevice.init(m.platform, t, { features: feats, queues: 2 });
      echoOnce(m, d, 1, 2);
      expect(writes[0]).toBe(4);
      expect(writes[1]! & 0xffff).toBe(notifConfigData(1));
      // the upper half names the next descriptor / avail index (split: idx 2; packed: two buffers
      // of two descriptors each, so offset 4 with wrap counter 1)
      expect(writes[1]! >>> 16).toBe(packed ? 4 | 0x8000 : 2);
      expect(dev.core.errors).toEqual([]);
    }
  });

  it('a notification that names the wrong queue, or has the wrong width, is recorded (pci.driver.38, pci.driver.40)', () => {
    const { m, t, dev } = setup();
    VirtioDriverDevice.init(m.platform, t, { features: BASE, queues: 2 });
    const bar4 = t.bars.find((b) => b.index === 4)!.addr;
    m.platform.mmioWrite(bar4 + ModernLayout.NOTIFY + 4, 2, 0); // queue 1's address, value 0
    m.platform.mmioWrite(bar4 + ModernLayout.NOTIFY, 4, 0);
    expect(dev.core.errors.map((e) => e.error.code)).toEqual(['pci.notify_value', 'pci.notify_width']);
  });
});

describe('virtio-pci common configuration', () => {
  function raw() {
    const x = setup();
    const bar4 = x.t.bars.find((b) => b.index === 4)!.addr;
    const r = (off: number, size: 1 | 2 | 4) => x.m.platform.mmioRead(bar4 + off, size);
    const w = (off: number, size: 1 | 2 | 4, v: number) => x.m.platform.mmioWrite(bar4 + off, size, v);
    return { ...x, r, w, bar4 };
  }

  it('feature windows, driver features read back, reset to 0 (pci.device.14, pci.device.15, pci.device.18)', () => {
    const { r, w, dev } = raw();
    w(Common.DEVICE_FEATURE_SELECT, 4, 1);
    expect(r(Common.DEVICE_FEATURE, 4)).toBe(1); // VERSION_1 is bit 32
    w(Common.DEVICE_FEATURE_SELECT, 4, 0);
    expect(r(Common.DEVICE_FEATURE, 4)).toBe(Number(BASE & 0xffff_ffffn));
    w(Common.DEVICE_FEATURE_SELECT, 4, 7);
    expect(r(Common.DEVICE_FEATURE, 4)).toBe(0);
    w(Common.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER);
    w(Common.DRIVER_FEATURE_SELECT, 4, 1);
    w(Common.DRIVER_FEATURE, 4, 1);
    expect(r(Common.DRIVER_FEATURE, 4)).toBe(1);
    w(Common.DEVICE_STATUS, 1, 0);
    expect(r(Common.DEVICE_STATUS, 1)).toBe(0);
    expect(dev.core.driverFeatures).toBe(0n);
  });

  it('queue fields: size 0 for an absent queue, enable 0 after reset, 64-bit halves independent (pci.device.8, pci.device.19, pci.device.25)', () => {
    const { r, w } = raw();
    w(Common.QUEUE_SELECT, 2, 5);
    expect(r(Common.QUEUE_SIZE, 2)).toBe(0);
    w(Common.QUEUE_SELECT, 2, 0);
    expect(r(Common.QUEUE_SIZE, 2)).toBe(64);
    expect(r(Common.QUEUE_ENABLE, 2)).toBe(0);
    w(Common.QUEUE_DESC + 4, 4, 0x1);
    w(Common.QUEUE_DESC, 4, 0x2000);
    expect([r(Common.QUEUE_DESC, 4), r(Common.QUEUE_DESC + 4, 4)]).toEqual([0x2000, 1]);
    w(Common.QUEUE_DESC + 4, 4, 0);
    expect(r(Common.QUEUE_DESC, 4)).toBe(0x2000);
  });

  it('records wrong widths, writes to read-only fields and queue_enable = 0 without acting on them (pci.driver.5, pci.driver.15, pci.driver.20)', () => {
    const { r, w, dev } = raw();
    w(Common.NUM_QUEUES, 2, 9);
    expect(r(Common.NUM_QUEUES, 2)).toBe(2);
    w(Common.QUEUE_ENABLE, 2, 0);
    expect(r(Common.DEVICE_STATUS, 4)).toBe(0); // a 32-bit read of an 8-bit field
    w(Common.QUEUE_SIZE, 4, 8);
    expect(r(Common.QUEUE_SIZE, 2)).toBe(64);
    expect(dev.core.errors.map((e) => e.error.statements[0])).toEqual(['pci.driver.15', 'pci.driver.20']);
    expect(dev.transport.badAccesses.map((b) => b.reason)).toEqual(['wrong access width (pci.driver.5)', 'wrong access width (pci.driver.5)']);
  });

  it('queue size rules: split needs a power of two, packed refuses 0 (pci.driver.16, pci.driver.17): DEVICE_NEEDS_RESET at enable', () => {
    for (const [packed, size] of [[false, 48], [true, 0]] as const) {
      const feats = packed ? featureSet(F.VERSION_1, F.RING_PACKED) : featureSet(F.VERSION_1);
      const { m, t, dev } = setup({ echo: { features: feats } });
      t.reset();
      t.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
      t.setDriverFeatures(feats);
      t.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
      const a = m.dma.alloc(0x4000, 4096);
      t.setupQueue(0, { size, desc: a, driver: a + 0x1000, device: a + 0x2000 });
      expect(t.getStatus() & Status.DEVICE_NEEDS_RESET).toBe(Status.DEVICE_NEEDS_RESET);
      expect(dev.core.needsResetReason?.code).toMatch(/size/);
    }
    // a packed queue of 48 (not a power of two) is fine
    const feats = featureSet(F.VERSION_1, F.RING_PACKED);
    const { m, t } = setup({ echo: { features: feats, queueMaxSize: 48 } });
    const d = VirtioDriverDevice.init(m.platform, t, { features: feats, queues: 2 });
    expect(d.queue(0).size).toBe(48);
    echoOnce(m, d);
  });

  it('RING_RESET: reset a queue, read back 0 in queue_reset and queue_enable, re-enable with another size (pci.device.20 to pci.device.24, vq_reset.device.1 to vq_reset.device.3, vq_reset.driver.1, vq_reset.driver.3)', () => {
    const feats = featureSet(F.VERSION_1, F.RING_RESET, F.EVENT_IDX);
    const { m, t, dev, model } = setup({ echo: { features: feats } });
    const d = VirtioDriverDevice.init(m.platform, t, { features: feats, queues: 2 });
    echoOnce(m, d, 0);
    // a buffer in flight when the queue is reset is never completed (vq_reset.device.1)
    const vq = d.queue<number>(0);
    const buf = m.dma.alloc(64);
    model.ctx!.queue(0).disableNotify();
    vq.add([{ addr: buf, len: 8 }], [{ addr: buf + 8, len: 8 }], 99);
    const before = model.completed;
    t.resetQueue(0);
    m.platform.spin(10_000);
    expect(model.completed).toBe(before);
    expect(dev.core.queueConfig(0)).toMatchObject({ ready: false, size: 64, desc: 0 }); // vq_reset.device.2
    // re-enable with a smaller size (vq_reset.device.3)
    vq.destroy();
    const nq = new SplitVirtqueue(m.platform.mem, m.platform.dma, { index: 0, size: 16, eventIdx: true, indirect: false, notify: () => t.notify(0) });
    t.setupQueue(0, nq.addresses);
    expect(dev.core.queueConfig(0)).toMatchObject({ ready: true, size: 16 });
    d.queues.set(0, nq);
    echoOnce(m, d, 0);
    expect(dev.core.errors.filter((e) => e.fatal)).toEqual([]);
  });
});

describe('virtio-pci MSI-X vector configuration', () => {
  it('maps, reads back, unmaps, refuses vectors outside the table, and unmaps everything on reset (pci.device.58 to pci.device.61, pci.device.63)', () => {
    const { m, t, bus } = setup({ msixVectors: 4 });
    const bar4 = t.bars.find((b) => b.index === 4)!.addr;
    const r = (off: number) => m.platform.mmioRead(bar4 + off, 2);
    const w = (off: number, v: number) => m.platform.mmioWrite(bar4 + off, 2, v);
    t.reset();
    w(Common.CONFIG_MSIX_VECTOR, 3);
    expect(r(Common.CONFIG_MSIX_VECTOR)).toBe(3);
    w(Common.CONFIG_MSIX_VECTOR, 4);
    expect(r(Common.CONFIG_MSIX_VECTOR)).toBe(VIRTIO_MSI_NO_VECTOR);
    w(Common.QUEUE_SELECT, 1);
    w(Common.QUEUE_MSIX_VECTOR, 2);
    expect(r(Common.QUEUE_MSIX_VECTOR)).toBe(2);
    w(Common.QUEUE_MSIX_VECTOR, VIRTIO_MSI_NO_VECTOR);
    expect(r(Common.QUEUE_MSIX_VECTOR)).toBe(VIRTIO_MSI_NO_VECTOR);
    w(Common.QUEUE_MSIX_VECTOR, 1);
    m.platform.mmioWrite(bar4 + Common.DEVICE_STATUS, 1, 0);
    expect(r(Common.QUEUE_MSIX_VECTOR)).toBe(VIRTIO_MSI_NO_VECTOR);
    expect(r(Common.CONFIG_MSIX_VECTOR)).toBe(VIRTIO_MSI_NO_VECTOR);
    expect(bus.msix(t.addr)!.tableSize).toBe(4); // pci.device.56
  });

  it('a device that cannot map queue vectors: the driver shares the config vector (pci.driver.36, pci.driver.37)', () => {
    const { m, t, dev } = setup({ mappableVectors: 1 });
    const d = VirtioDriverDevice.init(m.platform, t, { features: BASE, queues: 2 });
    expect(t.msixEnabled).toBe(true);
    expect(t.fallbacks).toBe(2);
    expect(dev.transport.vectorOf(0)).toBe(0);
    echoOnce(m, d, 0);
    echoOnce(m, d, 1);
  });

  it('a device that maps nothing: the driver falls back to INTx and the ISR (pci.driver.37, pci.device.42 to pci.device.44)', () => {
    const { m, t, dev } = setup({ mappableVectors: 0 });
    const d = VirtioDriverDevice.init(m.platform, t, { features: BASE, queues: 2 });
    expect(t.msixEnabled).toBe(false);
    echoOnce(m, d, 0);
    expect(dev.transport.stats.intx).toBeGreaterThan(0);
    expect(dev.transport.stats.msix).toBe(0);
    expect(dev.transport.interruptStatus).toBe(0); // the driver's ISR read cleared it
    expect(dev.fn.intxAsserted).toBe(false);
  });

  it('NO_VECTOR means no interrupt for that queue or for config changes (pci.device.64, pci.device.65)', () => {
    const { m, t, dev, model } = setup();
    const d = VirtioDriverDevice.init(m.platform, t, { features: BASE, queues: 2 });
    const bar4 = t.bars.find((b) => b.index === 4)!.addr;
    m.platform.mmioWrite(bar4 + Common.QUEUE_SELECT, 2, 0);
    m.platform.mmioWrite(bar4 + Common.QUEUE_MSIX_VECTOR, 2, VIRTIO_MSI_NO_VECTOR);
    m.platform.mmioWrite(bar4 + Common.CONFIG_MSIX_VECTOR, 2, VIRTIO_MSI_NO_VECTOR);
    const delivered = m.irq.delivered;
    const vq = d.queue<number>(0);
    const b = m.dma.alloc(64);
    vq.add([{ addr: b, len: 8 }], [{ addr: b + 8, len: 8 }], 1);
    vq.kick();
    m.platform.spin(100_000);
    model.bumpConfig();
    expect(m.irq.delivered).toBe(delivered);
    expect(vq.getUsed()?.token).toBe(1); // the work was done, just not signalled
    expect(dev.transport.stats.suppressed).toBe(2);
    // pci.device.41: the config bit is still set in the ISR
    expect(dev.transport.interruptStatus & 2).toBe(2);
  });
});

describe('virtio-pci transitional device', () => {
  it('serves a legacy driver and then a modern one (and back), each interface resetting the other', () => {
    const { m, dev, bus } = setup({ mode: 'transitional' });
    const info = bus.enumerate()[0]!;
    const legacyT = discoverPci(m.platform, { legacy: true }).transports[0]!;
    const d1 = VirtioDriverDevice.init(m.platform, legacyT, { features: BASE, queues: 2 });
    expect(dev.transport.active).toBe(dev.transport.legacyCore);
    expect(d1.features >> 32n).toBe(0n); // bits 32+ never acknowledged through the legacy interface
    echoOnce(m, d1, 0);
    const modernT = discoverPci(m.platform).transports[0]!;
    const d2 = VirtioDriverDevice.init(m.platform, modernT, { features: BASE, queues: 2 });
    expect(dev.transport.active).toBe(dev.transport.modern);
    expect(dev.transport.legacyCore!.status).toBe(0);
    echoOnce(m, d2, 1);
    expect(info.revision).toBe(0);
  });

  it('legacy config space reads the same bytes whatever the access width', () => {
    const { m, t } = setup({ mode: 'transitional', driver: { legacy: true } });
    VirtioDriverDevice.init(m.platform, t, { features: BASE, queues: 2 });
    expect(t.msixEnabled).toBe(true); // config moved to offset 24
    expect(t.fallbacks).toBe(0);
    const w32 = t.readConfig(0, 4);
    const w16 = t.readConfig(0, 2) | (t.readConfig(2, 2) << 16);
    const w8 = [0, 1, 2, 3].reduce((a, i) => a | (t.readConfig(i, 1) << (8 * i)), 0);
    expect([w16 >>> 0, w8 >>> 0]).toEqual([w32, w32]);
    expect(w32).toBe(ECHO_CONFIG_MAGIC);
  });
});

describe('virtio-pci, hostile driver', () => {
  const access = fc.record({
    space: fc.constantFrom('bar4', 'bar0', 'cfg'),
    off: fc.nat({ max: 0x3100 }),
    size: fc.constantFrom(1, 2, 4),
    value: fc.nat({ max: 0xffff_ffff }),
    write: fc.boolean(),
  });
  fcTest.prop([fc.array(access, { maxLength: 200 }), fc.constantFrom('modern', 'transitional')], { numRuns: 60 })(
    'arbitrary register and config-space accesses never throw out of the bus, and the device still works after a reset',
    (accesses, mode) => {
      const { m, t, bus } = setup({ mode: mode as 'modern' | 'transitional' });
      const bar4 = t.bars.find((b) => b.index === 4)!.addr;
      const bar0 = t.bars.find((b) => b.index === 0)?.addr;
      for (const a of accesses) {
        const sz = a.size as 1 | 2 | 4;
        const off = a.off - (a.off % sz);
        if (a.space === 'bar4') {
          if (a.write) m.platform.mmioWrite(bar4 + off, sz, a.value);
          else m.platform.mmioRead(bar4 + off, sz);
        } else if (a.space === 'bar0' && bar0 !== undefined) {
          if (a.write) m.platform.pioWrite(bar0 + (off & 0x7f), sz, a.value);
          else m.platform.pioRead(bar0 + (off & 0x7f), sz);
        } else if (off >= 0x40 && off < 0x100) {
          // capability space only: do not let the fuzz move BARs away or switch decoding off
          if (a.write) bus.write(t.addr, off, sz, a.value);
          else bus.read(t.addr, off, sz);
        }
        m.platform.spin(100);
      }
      // the device recovers with a reset and a well-behaved driver
      bus.write(t.addr, Cfg.COMMAND, 2, Cfg.CMD_IO | Cfg.CMD_MEM | Cfg.CMD_BUS_MASTER);
      const fresh = discoverPci(m.platform, { msix: false }).transports[0]!;
      const d = VirtioDriverDevice.init(m.platform, fresh, { features: BASE, queues: 2 });
      echoOnce(m, d, 0);
    },
  );

  it('a PCI_CFG window aimed outside the virtio structures is refused and recorded (pci.driver.29, pci.driver.31)', () => {
    const { t, bus, dev } = setup();
    const c = dev.transport.pciCfgCap;
    bus.write(t.addr, c + 4, 1, 4);
    bus.write(t.addr, c + 12, 4, 4);
    bus.write(t.addr, c + 8, 4, 2); // misaligned
    expect(bus.read(t.addr, c + 16, 4)).toBe(0);
    bus.write(t.addr, c + 4, 1, 1); // the MSI-X BAR: not a virtio structure
    bus.write(t.addr, c + 8, 4, 0);
    bus.read(t.addr, c + 16, 4);
    expect(dev.core.errors.map((e) => e.error.code)).toEqual(['pci.cfg_window', 'pci.cfg_window']);
  });
});
