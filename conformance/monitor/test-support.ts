/**
 * Shared set-ups for the monitor tests: simulated machines with an echo device on virtio-mmio or
 * virtio-pci, a hostile raw driver, hand-built split and packed rings.
 */
import { expect } from 'vitest';
import { Machine } from '../../device-models/machine/machine.ts';
import { attachVirtioMmio } from '../../device-models/virtio/mmio.ts';
import { ModernLayout, attachVirtioPci } from '../../device-models/virtio/pci.ts';
import { discoverPci } from '../../drivers/transport/pci.ts';
import { Common, PciCap } from '../../spec-refs/abi/virtio-pci.ts';
import { EchoModel } from '../../device-models/virtio/testing/echo.ts';
import { VirtioDriverDevice } from '../../drivers/core/device.ts';
import { F, Status, featureSet } from '../../spec-refs/abi/virtio.ts';
import { attachMonitor, type Monitor } from '../monitor.ts';
import { RawMmio, RawSplitRing } from '../hostile.ts';

export const ALL = featureSet(F.VERSION_1, F.INDIRECT_DESC, F.EVENT_IDX);

export function sim(opts: { legacy?: boolean; features?: bigint } = {}) {
  const m = new Machine({ ram: [{ base: 0, size: 8 << 20 }] });
  const model = new EchoModel(opts.features !== undefined ? { features: opts.features } : {});
  const dev = attachVirtioMmio(m, model, { legacy: opts.legacy ?? false, notifyLatencyNs: 500 });
  return { m, model, dev };
}

export function echoTraffic(m: Machine, d: VirtioDriverDevice, q: number, n: number, parts = 1): void {
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

/** A fresh device, monitored, with the driver having read magic/version/id. */
export function hostile(features = ALL): { m: Machine; raw: RawMmio; mon: Monitor } {
  const { m, dev } = sim({ features });
  const mon = attachMonitor(m);
  const raw = new RawMmio(m.platform, dev.base);
  raw.probe();
  return { m, raw, mon };
}

export function statements(mon: Monitor): string[] {
  return [...new Set(mon.violations.map((v) => v.statement))].sort();
}

/** Negotiate and bring queue 0 up with a raw ring of `size`; DRIVER_OK set. */
export function liveRing(features = ALL, size = 8) {
  const h = hostile(features);
  const n = h.raw.negotiate((o) => o & features);
  expect(n.featuresOk).toBe(true);
  const ring = new RawSplitRing(h.m.platform, size);
  h.raw.setupQueue(0, size, ring.desc, ring.avail, ring.used);
  h.raw.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
  return { ...h, ring };
}

/** The echo model under a device type that has a transitional PCI id (4, entropy: no device-specific rules apply). */
export function pciEcho(opts: ConstructorParameters<typeof EchoModel>[0]): EchoModel {
  const e = new EchoModel(opts);
  Object.defineProperty(e, 'deviceType', { value: 4 });
  return e;
}

/** An echo device on PCI, enumerated (BARs assigned, MSI-X on) by the reference PCI discovery, monitored. */
export function pciSim(mode: 'modern' | 'transitional' | 'legacy' = 'modern', features?: bigint) {
  const m = new Machine({ ram: [{ base: 0, size: 8 << 20 }] });
  attachVirtioPci(m, pciEcho(features !== undefined ? { features } : {}), { mode, notifyLatencyNs: 500 });
  const mon = attachMonitor(m);
  const t = discoverPci(m.platform, { legacy: mode === 'legacy' }).transports[0]!;
  const bar = (i: number): number => t.bars.find((b) => b.index === i)!.addr;
  const ecam = m.platform.pci!.ecamBase! + (t.addr.dev << 15);
  return { m, mon, t, bar, ecam };
}

/** Raw common-config access of a modern virtio-pci function (BAR4 layout of device-models/virtio/pci.ts). */
export function common(s: ReturnType<typeof pciSim>) {
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

export function findPciCfgCap(s: ReturnType<typeof pciSim>): number {
  let at = s.m.platform.mmioRead(s.ecam + 0x34, 1) & 0xfc;
  while (at) {
    if (s.m.platform.mmioRead(s.ecam + at, 1) === 0x09 && s.m.platform.mmioRead(s.ecam + at + PciCap.OFF_CFG_TYPE, 1) === PciCap.PCI_CFG) return at;
    at = s.m.platform.mmioRead(s.ecam + at + 1, 1) & 0xfc;
  }
  throw new Error('no PCI_CFG capability');
}

export const PACKED = featureSet(F.VERSION_1, F.INDIRECT_DESC, F.EVENT_IDX, F.RING_PACKED);

/** A packed queue 0 of `size` set up by hand over virtio-mmio (DRIVER_OK set); write descriptors with `put`. */
export function livePacked(features = PACKED, size = 8) {
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
