/**
 * virtio-pci check support, shared by the files of this folder (no checks here): the raw
 * driver the device-side checks drive a function with (openPci: config space through PciBus,
 * BARs assigned, virtio capabilities parsed; common configuration accessors, negotiation, raw
 * split queues and requests) and the white-box helpers both sides use (internalsOf,
 * changeConfig).
 */
import type { GuestPlatform } from '../../../spec-refs/platform/platform.ts';
import { PciBus, type BarInfo, type PciAddress } from '../../../drivers/transport/pci-bus.ts';
import { identifyVirtioPci } from '../../../drivers/transport/pci.ts';
import type { VirtioPciDevice } from '../../../device-models/virtio/pci.ts';
import type { PciFunction } from '../../../device-models/machine/pci.ts';
import type { VirtioCore } from '../../../device-models/virtio/core.ts';
import { F, Status, bit } from '../../../spec-refs/abi/virtio.ts';
import { Common, PciCap } from '../../../spec-refs/abi/virtio-pci.ts';
import { CheckFailure, CheckSkip } from '../../check.ts';
import type { DeviceOptions, DeviceUnderTest, TargetContext } from '../../target.ts';
import { validRequestOnQueue } from '../requests.ts';
import { RawSplitRing } from '../../hostile.ts';

export const PCI = ['pci'] as const;
export const PCI_ANY = ['pci', 'pci-legacy'] as const;

export interface VCap {
  readonly at: number;
  readonly len: number;
  readonly type: number;
  readonly bar: number;
  readonly offset: number;
  readonly length: number;
  readonly mult: number;
}

export interface PciDut {
  readonly dut: DeviceUnderTest;
  readonly p: GuestPlatform;
  readonly bus: PciBus;
  readonly a: PciAddress;
  readonly bars: BarInfo[];
  readonly caps: VCap[];
  readonly deviceId: number;
  readonly revision: number;
  readonly subsystemId: number;
  cap(type: number): VCap;
  bar(i: number): BarInfo;
  /** Access a virtio structure (first capability of `type`) through its BAR. */
  r(type: number, off: number, size: 1 | 2 | 4): number;
  w(type: number, off: number, size: 1 | 2 | 4, v: number): void;
}

/** A fresh device, its BARs assigned and its virtio capabilities parsed, as a raw driver sees it. */
export function openPci(ctx: TargetContext, opts: DeviceOptions = {}): PciDut {
  const dut = ctx.newDevice(opts);
  const loc = dut.location;
  if (loc.kind !== 'pci') throw new CheckSkip('this check drives a virtio-pci function');
  const p = dut.platform;
  const bus = new PciBus(p);
  const a = { bus: loc.bus, dev: loc.dev, fn: loc.fn };
  const bars = bus.assignBars(a);
  const caps: VCap[] = [];
  for (const c of bus.capabilities(a)) {
    if (c.id !== 0x09) continue;
    const type = bus.read(a, c.offset + 3, 1);
    caps.push({ at: c.offset, len: bus.read(a, c.offset + 2, 1), type, bar: bus.read(a, c.offset + 4, 1), offset: bus.read(a, c.offset + 8, 4), length: bus.read(a, c.offset + 12, 4), mult: type === PciCap.NOTIFY_CFG ? bus.read(a, c.offset + 16, 4) : 0 });
  }
  const self: PciDut = {
    dut,
    p,
    bus,
    a,
    bars,
    caps,
    deviceId: bus.read(a, 2, 2),
    revision: bus.read(a, 8, 1),
    subsystemId: bus.read(a, 0x2e, 2),
    cap(type) {
      const c = caps.find((x) => x.type === type);
      if (!c) throw new CheckFailure(`no virtio capability of type ${type}`, { statements: ['pci.device.13', 'pci.device.29', 'pci.device.40'] });
      return c;
    },
    bar(i) {
      const b = bars.find((x) => x.index === i);
      if (!b) throw new CheckFailure(`capability points at BAR${i}, which the function does not implement`, { statements: ['pci.device.1'] });
      return b;
    },
    r(type, off, size) {
      const { io, at } = locate(type, off);
      return io ? p.pioRead(at, size) : p.mmioRead(at, size);
    },
    w(type, off, size, v) {
      const { io, at } = locate(type, off);
      if (io) p.pioWrite(at, size, v);
      else p.mmioWrite(at, size, v);
    },
  };
  /** Where byte `off` of the structure of capability `type` is: its BAR's space and address. */
  function locate(type: number, off: number): { io: boolean; at: number } {
    const c = self.cap(type);
    const b = self.bar(c.bar);
    return { io: b.kind === 'io', at: b.addr + c.offset + off };
  }
  return self;
}

export const C = PciCap.COMMON_CFG;
export const rc = (d: PciDut, off: number, size: 1 | 2 | 4) => d.r(C, off, size);
export const wc = (d: PciDut, off: number, size: 1 | 2 | 4, v: number) => d.w(C, off, size, v);
/** Select queue `q` and read one of its common configuration fields. */
export const rq = (d: PciDut, q: number, off: number, size: 1 | 2 | 4) => (wc(d, Common.QUEUE_SELECT, 2, q), rc(d, off, size));
/** Set DRIVER_OK (after FEATURES_OK), the device is live. */
export const driverOk = (d: PciDut) => wc(d, Common.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);

export function offered(d: PciDut): bigint {
  let f = 0n;
  for (let sel = 0; sel < 4; sel++) {
    wc(d, Common.DEVICE_FEATURE_SELECT, 4, sel);
    f |= BigInt(rc(d, Common.DEVICE_FEATURE, 4)) << BigInt(32 * sel);
  }
  return f;
}

/** Reset, negotiate `want & offered` (+VERSION_1), FEATURES_OK; returns what was accepted. */
export function negotiate(d: PciDut, want: bigint): bigint {
  wc(d, Common.DEVICE_STATUS, 1, 0);
  wc(d, Common.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER);
  const acc = (offered(d) & want) | bit(F.VERSION_1);
  for (let sel = 0; sel < 4; sel++) {
    wc(d, Common.DRIVER_FEATURE_SELECT, 4, sel);
    wc(d, Common.DRIVER_FEATURE, 4, Number((acc >> BigInt(32 * sel)) & 0xffff_ffffn));
  }
  wc(d, Common.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
  if (!(rc(d, Common.DEVICE_STATUS, 1) & Status.FEATURES_OK)) throw new CheckFailure('device refused a subset of its own offer', { statements: ['features.device.2'] });
  return acc;
}

/** Set up split queue `q` on a raw ring (not enabled yet when `enable` is false). */
export function rawSplitQueue(d: PciDut, q: number, size: number, enable = true): RawSplitRing {
  const ring = new RawSplitRing(d.p, size);
  wc(d, Common.QUEUE_SELECT, 2, q);
  wc(d, Common.QUEUE_SIZE, 2, size);
  for (const [off, v] of [[Common.QUEUE_DESC, ring.desc], [Common.QUEUE_DRIVER, ring.avail], [Common.QUEUE_DEVICE, ring.used]] as const) {
    wc(d, off, 4, v % 0x1_0000_0000);
    wc(d, off + 4, 4, Math.floor(v / 0x1_0000_0000));
  }
  if (enable) wc(d, Common.QUEUE_ENABLE, 2, 1);
  return ring;
}

/** Post one valid request on a raw split queue and notify; returns a verifier. */
export function postRequest(d: PciDut, q: number, ring: RawSplitRing, deviceType: number): { done(): boolean } {
  const req = validRequestOnQueue(d.p, deviceType);
  const head = (ring.availIdx * 4) % ring.size;
  ring.chain(head, req.segs);
  ring.publish(head);
  const want = ring.availIdx;
  const nc = d.cap(PciCap.NOTIFY_CFG);
  wc(d, Common.QUEUE_SELECT, 2, q);
  const off = rc(d, Common.QUEUE_NOTIFY_OFF, 2) * nc.mult;
  d.w(PciCap.NOTIFY_CFG, off, 2, q);
  return { done: () => ring.usedIdx() === want };
}

export function deviceTypeOf(d: PciDut): number {
  const id = identifyVirtioPci({ ...d.a, vendorId: d.bus.read(d.a, 0, 2), deviceId: d.deviceId, revision: d.revision, classCode: 0, subsystemVendorId: 0, subsystemId: d.subsystemId, headerType: 0, interruptPin: 0 });
  if (!id) throw new CheckFailure('not a virtio PCI function', { statements: ['pci.device.2', 'pci.device.3'] });
  return id.deviceType;
}

export function msixOf(d: PciDut) {
  const msix = d.bus.msix(d.a);
  if (!msix) throw new CheckSkip('device has no MSI-X capability');
  return msix;
}

export function waitFor(p: GuestPlatform, cond: () => boolean, ns = 10_000_000): boolean {
  for (let t = 0; t < ns && !cond(); t += 10_000) p.spin(10_000);
  return cond();
}

export function internalsOf(dut: DeviceUnderTest): { transport: VirtioPciDevice; fn: PciFunction; core: VirtioCore; model: { resize?(b: number): void; bumpConfig?(): void } } {
  const i = dut.internals;
  if (!i?.['transport'] || !i['fn']) throw new CheckSkip('needs a simulated virtio-pci device (white-box)');
  return i as never;
}

export function canChangeConfig(dut: DeviceUnderTest): boolean {
  const m = (dut.internals?.['model'] ?? {}) as { resize?(b: number): void; bumpConfig?(): void };
  return typeof m.resize === 'function' || typeof m.bumpConfig === 'function';
}

export function changeConfig(dut: DeviceUnderTest): void {
  // any target's host-side configuration change (sim: the model; qemu: QMP block_resize), not only white-box ones
  const m = (dut.internals?.['model'] ?? {}) as { resize?(b: number): void; bumpConfig?(): void };
  if (m.resize) m.resize(16 << 20);
  else if (m.bumpConfig) m.bumpConfig();
  else throw new CheckSkip('cannot make this device change its configuration');
}
