/**
 * virtio-pci (transport-pci.tex): the device's PCI identity, capabilities, common configuration,
 * notification and ISR structures, PCI_CFG window and MSI-X vector handling; the driver's matching,
 * capability parsing, register discipline, notifications, vector verification and queue reset.
 *
 * Device-side checks drive the function through config space and its BARs with PciBus (a raw
 * driver); driver-side checks run pvkit's PciTransport against the simulated device and watch the
 * bus (every config cycle and BAR access passes the monitor point).
 */
import fc from 'fast-check';
import type { GuestPlatform } from '../../spec-refs/platform/platform.ts';
import { PciBus, type BarInfo, type PciAddress } from '../../drivers/transport/pci-bus.ts';
import { discoverPci, identifyVirtioPci } from '../../drivers/transport/pci.ts';
import { VirtioDriverDevice } from '../../drivers/core/device.ts';
import type { VirtioPciDevice } from '../../device-models/virtio/pci.ts';
import type { PciFunction } from '../../device-models/machine/pci.ts';
import type { VirtioCore } from '../../device-models/virtio/core.ts';
import { DeviceType, F, Status, bit, featureSet, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { COMMON_FIELD_WIDTH, Common, ISR_CONFIG, ISR_QUEUE, PciCap, VIRTIO_MSI_NO_VECTOR } from '../../spec-refs/abi/virtio-pci.ts';
import { CheckFailure, CheckSkip, checkProperty, defineCheck, expectEqual, expectThat } from '../check.ts';
import type { DeviceOptions, DeviceUnderTest, TargetContext } from '../target.ts';
import { requestQueue, validRequest, validRequestOnQueue } from './requests.ts';
import { startRef } from './support.ts';
import { RawSplitRing } from '../hostile.ts';

const PCI = ['pci'] as const;
const PCI_ANY = ['pci', 'pci-legacy'] as const;

interface VCap {
  readonly at: number;
  readonly len: number;
  readonly type: number;
  readonly bar: number;
  readonly offset: number;
  readonly length: number;
  readonly mult: number;
}

interface PciDut {
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
function openPci(ctx: TargetContext, opts: DeviceOptions = {}): PciDut {
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

const C = PciCap.COMMON_CFG;
const rc = (d: PciDut, off: number, size: 1 | 2 | 4) => d.r(C, off, size);
const wc = (d: PciDut, off: number, size: 1 | 2 | 4, v: number) => d.w(C, off, size, v);
/** Select queue `q` and read one of its common configuration fields. */
const rq = (d: PciDut, q: number, off: number, size: 1 | 2 | 4) => (wc(d, Common.QUEUE_SELECT, 2, q), rc(d, off, size));
/** Set DRIVER_OK (after FEATURES_OK), the device is live. */
const driverOk = (d: PciDut) => wc(d, Common.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);

function offered(d: PciDut): bigint {
  let f = 0n;
  for (let sel = 0; sel < 4; sel++) {
    wc(d, Common.DEVICE_FEATURE_SELECT, 4, sel);
    f |= BigInt(rc(d, Common.DEVICE_FEATURE, 4)) << BigInt(32 * sel);
  }
  return f;
}

/** Reset, negotiate `want & offered` (+VERSION_1), FEATURES_OK; returns what was accepted. */
function negotiate(d: PciDut, want: bigint): bigint {
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
function rawSplitQueue(d: PciDut, q: number, size: number, enable = true): RawSplitRing {
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
function postRequest(d: PciDut, q: number, ring: RawSplitRing, deviceType: number): { done(): boolean } {
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

function deviceTypeOf(d: PciDut): number {
  const id = identifyVirtioPci({ ...d.a, vendorId: d.bus.read(d.a, 0, 2), deviceId: d.deviceId, revision: d.revision, classCode: 0, subsystemVendorId: 0, subsystemId: d.subsystemId, headerType: 0, interruptPin: 0 });
  if (!id) throw new CheckFailure('not a virtio PCI function', { statements: ['pci.device.2', 'pci.device.3'] });
  return id.deviceType;
}

function msixOf(d: PciDut) {
  const msix = d.bus.msix(d.a);
  if (!msix) throw new CheckSkip('device has no MSI-X capability');
  return msix;
}

function waitFor(p: GuestPlatform, cond: () => boolean, ns = 10_000_000): boolean {
  for (let t = 0; t < ns && !cond(); t += 10_000) p.spin(10_000);
  return cond();
}

function internalsOf(dut: DeviceUnderTest): { transport: VirtioPciDevice; fn: PciFunction; core: VirtioCore; model: { resize?(b: number): void; bumpConfig?(): void } } {
  const i = dut.internals;
  if (!i?.['transport'] || !i['fn']) throw new CheckSkip('needs a simulated virtio-pci device (white-box)');
  return i as never;
}

function canChangeConfig(dut: DeviceUnderTest): boolean {
  const m = (dut.internals?.['model'] ?? {}) as { resize?(b: number): void; bumpConfig?(): void };
  return typeof m.resize === 'function' || typeof m.bumpConfig === 'function';
}

function changeConfig(dut: DeviceUnderTest): void {
  // any target's host-side configuration change (sim: the model; qemu: QMP block_resize), not only white-box ones
  const m = (dut.internals?.['model'] ?? {}) as { resize?(b: number): void; bumpConfig?(): void };
  if (m.resize) m.resize(16 << 20);
  else if (m.bumpConfig) m.bumpConfig();
  else throw new CheckSkip('cannot make this device change its configuration');
}

// ============================================================================ device side

defineCheck({
  id: 'pci.device.identity',
  title: 'vendor 0x1AF4, a modern or transitional device id, a PCI header drivers can size',
  statements: ['pci.device.1', 'pci.device.2', 'pci.device.3'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI_ANY] },
  run(ctx) {
    const d = openPci(ctx);
    expectEqual(d.bus.read(d.a, 0, 2), 0x1af4, ['pci.device.2'], 'PCI vendor id', true);
    const type = deviceTypeOf(d);
    const modern = d.deviceId === 0x1040 + type;
    const transitional = d.deviceId >= 0x1000 && d.deviceId <= 0x103f;
    expectThat(modern || transitional, ['pci.device.3'], 'device id is neither 0x1040 + type nor a transitional id', `0x${(0x1040 + type).toString(16)} or 0x1000..0x103f`, `0x${d.deviceId.toString(16)}`);
    // PCI 3.0: header type 0, BARs size to powers of two (sizeBars throws otherwise), the status
    // register announces the capability list it has
    expectEqual(d.bus.read(d.a, 0x0e, 1) & 0x7f, 0, ['pci.device.1'], 'header type');
    expectThat((d.bus.read(d.a, 6, 2) & 0x10) !== 0, ['pci.device.1'], 'status register does not announce a capability list');
    expectThat(d.bars.length > 0, ['pci.device.1'], 'function implements no BAR');
  },
});

defineCheck({
  id: 'pci.device.capabilities',
  title: 'COMMON, NOTIFY, ISR, DEVICE and PCI_CFG capabilities present, cap_len covers them, offsets aligned, structures inside their BARs',
  statements: ['pci.device.9', 'pci.device.12', 'pci.device.13', 'pci.device.29', 'pci.device.40', 'pci.device.45', 'pci.device.51'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    const need: [number, string, number][] = [
      [PciCap.COMMON_CFG, 'pci.device.13', PciCap.CAP_LEN],
      [PciCap.NOTIFY_CFG, 'pci.device.29', PciCap.NOTIFY_CAP_LEN],
      [PciCap.ISR_CFG, 'pci.device.40', PciCap.CAP_LEN],
      [PciCap.PCI_CFG, 'pci.device.51', PciCap.CFG_CAP_LEN],
    ];
    for (const [type, st, len] of need) {
      const c = d.caps.find((x) => x.type === type);
      expectThat(c !== undefined, [st], `no capability with cfg_type ${type}`);
      expectThat(c.len >= len, ['pci.device.9'], `cap_len of cfg_type ${type} does not cover the structure and its extra fields`, `>= ${len}`, String(c.len));
    }
    const model = internalsOf(d.dut).core.model;
    if (model.configSize > 0) expectThat(d.caps.some((x) => x.type === PciCap.DEVICE_CFG), ['pci.device.45'], 'device has a configuration space but no DEVICE_CFG capability');
    for (const c of d.caps) {
      if (c.type === PciCap.COMMON_CFG) expectEqual(c.offset % 4, 0, ['pci.device.12'], 'common configuration offset modulo 4');
      if (c.type === PciCap.DEVICE_CFG) expectEqual(c.offset % 4, 0, ['pci.device.45'], 'device configuration offset modulo 4');
      if (c.type === PciCap.PCI_CFG || c.type > PciCap.PCI_CFG) continue;
      const b = d.bar(c.bar);
      expectThat(c.offset + Math.min(c.length, 0x1000) <= b.size, ['pci.device.9'], `structure of cfg_type ${c.type} runs past BAR${c.bar}`, `<= ${b.size}`, String(c.offset + c.length));
    }
    expectThat(d.cap(C).length >= Common.SIZE - 4, ['pci.device.13'], 'common configuration structure too short', `>= ${Common.SIZE - 4}`, String(d.cap(C).length));
  },
});

function notifyCapCheck(ctx: TargetContext, withData: boolean): void {
  const d = openPci(ctx, withData ? { extraFeatures: bit(F.NOTIFICATION_DATA) } : {});
  const nd = hasFeature(offered(d), F.NOTIFICATION_DATA);
  if (nd !== withData) throw new CheckSkip(withData ? 'device does not offer VIRTIO_F_NOTIFICATION_DATA' : 'device offers VIRTIO_F_NOTIFICATION_DATA');
  const n = d.cap(PciCap.NOTIFY_CFG);
  const S = withData ? { off: 'pci.device.36', mult: 'pci.device.35', min: 'pci.device.37', all: 'pci.device.38', each: 'pci.device.39' } : { off: 'pci.device.30', mult: 'pci.device.31', min: 'pci.device.32', all: 'pci.device.33', each: 'pci.device.34' };
  const w = withData ? 4 : 2;
  expectEqual(n.offset % w, 0, [S.off], `notify cap.offset modulo ${w}`);
  const m = n.mult;
  const pow2 = m > 0 && (m & (m - 1)) === 0;
  expectThat(m === 0 || (pow2 && (withData ? m % 4 === 0 : m % 2 === 0)), [S.mult], 'notify_off_multiplier is not 0 or a suitable power of two', withData ? '0 or a power of two that is a multiple of 4' : '0 or an even power of two', String(m));
  expectThat(n.length >= w, [S.min], `notify cap.length below ${w}`, `>= ${w}`, String(n.length));
  const nq = rc(d, Common.NUM_QUEUES, 2);
  for (let q = 0; q < nq; q++) {
    const off = rq(d, q, Common.QUEUE_NOTIFY_OFF, 2);
    expectThat(n.length >= off * m + w, [S.each, S.all], `queue ${q}'s notify address does not fit the notification structure`, `cap.length >= ${off} * ${m} + ${w}`, String(n.length));
  }
}

defineCheck({
  id: 'pci.device.notify-cap',
  title: 'without NOTIFICATION_DATA: notify offset 2-aligned, multiplier 0 or an even power of two, length covers every queue + 2',
  statements: ['pci.device.30', 'pci.device.31', 'pci.device.32', 'pci.device.33', 'pci.device.34'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run: (ctx) => notifyCapCheck(ctx, false),
});

defineCheck({
  id: 'pci.device.notify-cap-data',
  title: 'with NOTIFICATION_DATA: notify offset 4-aligned, multiplier 0 or a power of two multiple of 4, length covers every queue + 4',
  statements: ['pci.device.35', 'pci.device.36', 'pci.device.37', 'pci.device.38', 'pci.device.39'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run: (ctx) => notifyCapCheck(ctx, true),
});

defineCheck({
  id: 'pci.device.feature-windows',
  title: 'device_feature shows the offer window by window; driver_feature reads back what the driver wrote of it; 64-bit fields take independent halves',
  statements: ['pci.device.14', 'pci.device.15', 'pci.device.8'],
  side: 'device',
  kind: 'property',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    const off = offered(d);
    checkProperty(ctx, ['pci.device.14'], [fc.nat({ max: 6 }), fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 0xffff_ffff })], (sel, mask, lo, hi) => {
      wc(d, Common.DEVICE_STATUS, 1, 0);
      wc(d, Common.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER);
      wc(d, Common.DEVICE_FEATURE_SELECT, 4, sel);
      const word = sel < 4 ? Number((off >> BigInt(32 * sel)) & 0xffff_ffffn) : 0;
      expectEqual(rc(d, Common.DEVICE_FEATURE, 4), word, ['pci.device.14'], `device_feature window ${sel}`, true);
      if (sel >= 4) expectEqual(word, 0, ['pci.device.14'], `offered features above bit 127 (window ${sel})`, true);
      const valid = (mask & word) >>> 0;
      wc(d, Common.DRIVER_FEATURE_SELECT, 4, sel);
      wc(d, Common.DRIVER_FEATURE, 4, valid);
      expectEqual((rc(d, Common.DRIVER_FEATURE, 4) & word) >>> 0, valid, ['pci.device.15'], `valid driver_feature bits read back (window ${sel})`, true);
      // pci.device.8: queue_desc halves written in either order read back independently
      wc(d, Common.QUEUE_SELECT, 2, 0);
      const l = lo & ~0xf;
      wc(d, Common.QUEUE_DESC + 4, 4, hi & 0x1f);
      wc(d, Common.QUEUE_DESC, 4, l);
      expectEqual(rc(d, Common.QUEUE_DESC, 4), l >>> 0, ['pci.device.8'], 'queue_desc low half', true);
      expectEqual(rc(d, Common.QUEUE_DESC + 4, 4), hi & 0x1f, ['pci.device.8'], 'queue_desc high half', true);
      wc(d, Common.QUEUE_DESC + 4, 4, 0);
      expectEqual(rc(d, Common.QUEUE_DESC, 4), l >>> 0, ['pci.device.8'], 'queue_desc low half after the high half changed', true);
    });
  },
});

defineCheck({
  id: 'pci.device.config-generation',
  title: 'config_generation changes when the device changes its configuration',
  statements: ['pci.device.17'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    negotiate(d, 0n);
    rawSplitQueue(d, 0, 8);
    driverOk(d);
    const g0 = rc(d, Common.CONFIG_GENERATION, 1);
    const dev0 = d.r(PciCap.DEVICE_CFG, 0, 4);
    changeConfig(d.dut);
    const dev1 = d.r(PciCap.DEVICE_CFG, 0, 4);
    const g1 = rc(d, Common.CONFIG_GENERATION, 1);
    expectThat(dev0 !== dev1, ['pci.device.17'], 'configuration did not change');
    expectThat(g0 !== g1, ['pci.device.17'], 'configuration changed but config_generation did not', `not ${g0}`, String(g1));
  },
});

defineCheck({
  id: 'pci.device.reset',
  title: 'writing 0 to device_status resets: status, queue_enable, queue_reset read 0 and every vector is unmapped',
  statements: ['pci.device.18', 'pci.device.19', 'pci.device.20', 'pci.device.61'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx, { extraFeatures: bit(F.RING_RESET) });
    negotiate(d, bit(F.RING_RESET));
    const nq = rc(d, Common.NUM_QUEUES, 2);
    for (let q = 0; q < nq; q++) {
      rawSplitQueue(d, q, 8);
      wc(d, Common.QUEUE_MSIX_VECTOR, 2, 0);
    }
    wc(d, Common.CONFIG_MSIX_VECTOR, 2, 0);
    driverOk(d);
    wc(d, Common.DEVICE_STATUS, 1, 0);
    expectEqual(rc(d, Common.DEVICE_STATUS, 1), 0, ['pci.device.18'], 'device_status after writing 0');
    expectEqual(rc(d, Common.CONFIG_MSIX_VECTOR, 2), VIRTIO_MSI_NO_VECTOR, ['pci.device.61'], 'config_msix_vector after reset', true);
    for (let q = 0; q < nq; q++) {
      expectEqual(rq(d, q, Common.QUEUE_ENABLE, 2), 0, ['pci.device.19'], `queue ${q} queue_enable after reset`);
      expectEqual(rc(d, Common.QUEUE_RESET, 2), 0, ['pci.device.20'], `queue ${q} queue_reset after reset`);
      expectEqual(rc(d, Common.QUEUE_MSIX_VECTOR, 2), VIRTIO_MSI_NO_VECTOR, ['pci.device.61'], `queue ${q} queue_msix_vector after reset`, true);
    }
  },
});

defineCheck({
  id: 'pci.device.queue-reset',
  title: 'with RING_RESET: queue_reset 0 once enabled; writing 1 resets the queue (no more requests or interrupts for it) and ends with queue_reset and queue_enable 0; the queue works again after re-enabling',
  statements: ['pci.device.21', 'pci.device.22', 'pci.device.23', 'pci.device.24', 'vq_reset.device.1', 'vq_reset.device.2', 'vq_reset.device.3'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx, { extraFeatures: bit(F.RING_RESET), params: { notifyLatencyNs: 50_000 } });
    const acc = negotiate(d, bit(F.RING_RESET));
    if (!hasFeature(acc, F.RING_RESET)) throw new CheckSkip('device does not offer VIRTIO_F_RING_RESET');
    const type = deviceTypeOf(d);
    const qi = requestQueue(type);
    const maxSize = rq(d, qi, Common.QUEUE_SIZE, 2); // before any write: the maximum the device offers
    const q0 = rawSplitQueue(d, qi, 16);
    expectEqual(rc(d, Common.QUEUE_RESET, 2), 0, ['pci.device.21'], 'queue_reset after queue_enable');
    driverOk(d);
    const first = postRequest(d, qi, q0, type);
    expectThat(waitFor(d.p, first.done), ['vq_reset.device.3'], 'device did not complete a request before the reset');
    // a request notified but not yet run (the device's notification latency), then the reset
    postRequest(d, qi, q0, type);
    wc(d, Common.QUEUE_SELECT, 2, qi);
    wc(d, Common.QUEUE_RESET, 2, 1);
    let polls = 0;
    while (rc(d, Common.QUEUE_RESET, 2) !== 0 && polls++ < 1000) d.p.spin(1000); // pci.device.23: 1 while ongoing
    expectEqual(rc(d, Common.QUEUE_RESET, 2), 0, ['pci.device.24'], 'queue_reset once the reset completed');
    expectEqual(rc(d, Common.QUEUE_ENABLE, 2), 0, ['pci.device.24', 'pci.device.22'], 'queue_enable once the reset completed');
    const usedBefore = d.p.mem.read16(q0.used + 2);
    d.p.spin(1_000_000);
    expectEqual(d.p.mem.read16(q0.used + 2), usedBefore, ['vq_reset.device.1'], 'device used a buffer of a reset queue');
    // vq_reset.device.2: the queue starts again from index 0 on a new ring of another size
    expectEqual(rq(d, qi, Common.QUEUE_SIZE, 2), maxSize, ['vq_reset.device.2'], 'queue_size after the queue reset (back to the maximum)');
    const q1 = rawSplitQueue(d, qi, 8);
    const again = postRequest(d, qi, q1, type);
    expectThat(waitFor(d.p, again.done), ['vq_reset.device.2', 'vq_reset.device.3'], 'the re-enabled queue did not process a request from index 0 of its new ring');
  },
});

defineCheck({
  id: 'pci.device.queue-size',
  title: 'queue_size reads 0 for a queue that does not exist, and 0 or a power of two while RING_PACKED is not negotiated',
  statements: ['pci.device.25', 'pci.device.26'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    negotiate(d, 0n);
    const nq = rc(d, Common.NUM_QUEUES, 2);
    for (const q of [nq, nq + 1, 0xffff]) {
      expectEqual(rq(d, q, Common.QUEUE_SIZE, 2), 0, ['pci.device.25'], `queue_size of absent queue ${q}`);
    }
    for (let q = 0; q < nq; q++) {
      const s = rq(d, q, Common.QUEUE_SIZE, 2);
      expectThat(s === 0 || (s & (s - 1)) === 0, ['pci.device.26'], `queue ${q} presents a size that is not a power of two without RING_PACKED`, 'a power of two', String(s));
    }
  },
});

defineCheck({
  id: 'pci.device.isr',
  title: 'without MSI-X: queue and config events set their ISR bits, the PCI interrupt status bit and INTx follow the ISR, a read clears it',
  statements: ['pci.device.41', 'pci.device.42', 'pci.device.43', 'pci.device.44'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    negotiate(d, 0n);
    const type = deviceTypeOf(d);
    const qi = requestQueue(type);
    const q = rawSplitQueue(d, qi, 16);
    driverOk(d);
    const req = postRequest(d, qi, q, type);
    expectThat(waitFor(d.p, req.done), ['pci.device.42'], 'device did not complete a request');
    const pciStatus = () => d.bus.read(d.a, 6, 2) & 0x8;
    // The used buffer notification may follow the used idx update: QEMU 7.2's virtio-blk (dataplane
    // code path, taken whenever ioeventfd is on, iothread or not) batches notifications in a bottom
    // half (virtio_blk_data_plane_notify -> notify_guest_bh, hw/block/dataplane/virtio-blk.c), so a
    // read right after used idx moved can see the interrupt not yet sent. Wait for the notification
    // (the PCI Interrupt Status bit; a config read does not clear anything), then judge.
    waitFor(d.p, () => pciStatus() !== 0);
    expectEqual(pciStatus(), 0x8, ['pci.device.43', 'pci.device.42'], 'PCI status Interrupt Status after a used buffer notification (ISR queue bit set)', true);
    const isr = d.r(PciCap.ISR_CFG, 0, 1);
    expectEqual(isr & ISR_QUEUE, ISR_QUEUE, ['pci.device.42'], 'ISR queue bit after a used buffer notification', true);
    expectEqual(d.r(PciCap.ISR_CFG, 0, 1), 0, ['pci.device.44'], 'ISR after it was read', true);
    expectEqual(pciStatus(), 0, ['pci.device.43'], 'PCI status Interrupt Status with the ISR clear', true);
    const vector = d.bus.intxVector(d.a);
    while (d.p.irq.poll() !== null) d.p.irq.eoi(vector);
    if (!canChangeConfig(d.dut)) {
      ctx.note('the target cannot change this device configuration: pci.device.41 not exercised');
      return;
    }
    changeConfig(d.dut);
    d.p.spin(1000);
    expectEqual(d.r(PciCap.ISR_CFG, 0, 1) & ISR_CONFIG, ISR_CONFIG, ['pci.device.41'], 'ISR config bit after a configuration change', true);
  },
});

defineCheck({
  id: 'pci.device.cfg-window',
  title: 'the PCI_CFG window reads and writes the BAR structures it addresses',
  statements: ['pci.device.52', 'pci.device.53'],
  side: 'device',
  kind: 'property',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    const w = d.cap(PciCap.PCI_CFG).at;
    const common = d.cap(C);
    const via = (off: number, size: 1 | 2 | 4, v?: number): number => {
      d.bus.write(d.a, w + 4, 1, common.bar);
      d.bus.write(d.a, w + 12, 4, size);
      d.bus.write(d.a, w + 8, 4, common.offset + off);
      if (v !== undefined) {
        d.bus.write(d.a, w + 16, size, v);
        return 0;
      }
      return d.bus.read(d.a, w + 16, size);
    };
    // queue_select takes any 16-bit value on pvkit's device but a device may keep only values it can
    // select (QEMU: below VIRTIO_QUEUE_MAX, 1024; virtio_pci_common_write). So the window write is
    // compared with the same write through the BAR: what the BAR write leaves behind, the window write
    // must leave too, starting each time from a value different from it (so an ignored window write shows).
    checkProperty(ctx, ['pci.device.52', 'pci.device.53'], [fc.nat({ max: 0xffff }), fc.nat({ max: 3 })], (sel, fsel) => {
      const throughBar = (from: number) => {
        wc(d, Common.QUEUE_SELECT, 2, from);
        wc(d, Common.QUEUE_SELECT, 2, sel);
        return rc(d, Common.QUEUE_SELECT, 2);
      };
      let before = 0;
      let viaBar = throughBar(before);
      if (viaBar === before) viaBar = throughBar((before = 1));
      wc(d, Common.QUEUE_SELECT, 2, before);
      via(Common.QUEUE_SELECT, 2, sel);
      const viaWindow = rc(d, Common.QUEUE_SELECT, 2);
      expectEqual(viaWindow, viaBar, ['pci.device.52'], `queue_select ${sel} written through the window (read through the BAR; from ${before})`);
      wc(d, Common.DEVICE_FEATURE_SELECT, 4, fsel);
      expectEqual(via(Common.DEVICE_FEATURE, 4), rc(d, Common.DEVICE_FEATURE, 4), ['pci.device.53'], 'device_feature read through the window', true);
      expectEqual(via(Common.NUM_QUEUES, 2), rc(d, Common.NUM_QUEUES, 2), ['pci.device.53'], 'num_queues read through the window');
    });
  },
});

defineCheck({
  id: 'pci.device.msix-vectors',
  title: 'MSI-X Table Size reports the vectors; any event maps to any vector in the table and reads back; NO_VECTOR unmaps; a vector outside the table reads back NO_VECTOR',
  statements: ['pci.device.56', 'pci.device.58', 'pci.device.59', 'pci.device.60', 'pci.device.63'],
  side: 'device',
  kind: 'property',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    const msix = msixOf(d);
    const f = internalsOf(d.dut).fn;
    expectEqual(msix.tableSize, f.msixVectors, ['pci.device.56'], 'Table Size + 1 against the vectors the device implements');
    const nq = rc(d, Common.NUM_QUEUES, 2);
    checkProperty(ctx, ['pci.device.58'], [fc.nat({ max: nq }), fc.nat({ max: msix.tableSize + 3 })], (event, v) => {
      const write = (x: number) => {
        if (event === nq) wc(d, Common.CONFIG_MSIX_VECTOR, 2, x);
        else {
          wc(d, Common.QUEUE_SELECT, 2, event);
          wc(d, Common.QUEUE_MSIX_VECTOR, 2, x);
        }
      };
      const read = () => (event === nq ? rc(d, Common.CONFIG_MSIX_VECTOR, 2) : rq(d, event, Common.QUEUE_MSIX_VECTOR, 2));
      write(v);
      if (v < msix.tableSize) expectEqual(read(), v, ['pci.device.58', 'pci.device.60'], `event ${event} mapped to vector ${v}`);
      else expectEqual(read(), VIRTIO_MSI_NO_VECTOR, ['pci.device.63'], `event ${event} mapped outside the table (${v})`, true);
      write(VIRTIO_MSI_NO_VECTOR);
      expectEqual(read(), VIRTIO_MSI_NO_VECTOR, ['pci.device.59', 'pci.device.60'], `event ${event} unmapped`, true);
    });
  },
});

defineCheck({
  id: 'pci.device.msix-no-vector',
  title: 'with MSI-X enabled, NO_VECTOR means no interrupt for that queue or for configuration changes',
  statements: ['pci.device.64', 'pci.device.65'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    const msix = msixOf(d);
    const vectors = Array.from({ length: Math.min(msix.tableSize, 4) }, () => d.bus.allocVector());
    d.bus.enableMsix(d.a, msix, d.bars, vectors);
    negotiate(d, 0n);
    const type = deviceTypeOf(d);
    const qi = requestQueue(type);
    const q = rawSplitQueue(d, qi, 16, false);
    wc(d, Common.QUEUE_MSIX_VECTOR, 2, VIRTIO_MSI_NO_VECTOR);
    wc(d, Common.QUEUE_ENABLE, 2, 1);
    wc(d, Common.CONFIG_MSIX_VECTOR, 2, VIRTIO_MSI_NO_VECTOR);
    driverOk(d);
    const m = d.dut.machine;
    if (!m) throw new CheckSkip('needs the simulated machine to count interrupts');
    const before = m.irq.delivered;
    const req = postRequest(d, qi, q, type);
    expectThat(waitFor(d.p, req.done), ['pci.device.64'], 'device did not complete the request');
    expectEqual(m.irq.delivered, before, ['pci.device.64'], 'interrupts delivered for a queue mapped to NO_VECTOR');
    changeConfig(d.dut);
    d.p.spin(10_000);
    expectEqual(m.irq.delivered, before, ['pci.device.65'], 'interrupts delivered for a configuration change with config_msix_vector NO_VECTOR');
  },
});

defineCheck({
  id: 'pci.device.vendor-data',
  title: 'a vendor data capability, when present, does not claim vendor 0x1AF4, is a multiple of 4 bytes and reads without side effects',
  statements: ['pci.device.48', 'pci.device.49', 'pci.device.50'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    const vd = d.caps.filter((c) => c.type === PciCap.VENDOR_CFG);
    if (vd.length === 0) throw new CheckSkip('device presents no vendor data capability');
    for (const c of vd) {
      expectThat(d.bus.read(d.a, c.at + 4, 2) !== 0x1af4, ['pci.device.48'], 'vendor data capability with vendor_id 0x1AF4');
      expectEqual(c.len % 4, 0, ['pci.device.49'], 'vendor data capability length modulo 4');
      const a = Array.from({ length: c.len }, (_, i) => d.bus.read(d.a, c.at + i, 1));
      const b = Array.from({ length: c.len }, (_, i) => d.bus.read(d.a, c.at + i, 1));
      expectThat(a.every((x, i) => x === b[i]), ['pci.device.50'], 'reading the vendor data capability changed it');
    }
  },
});

// ============================================================================ driver side

/** Watch config cycles and BAR accesses of one function while `fn` runs. */
function watch(dut: DeviceUnderTest, fn: () => void): { cfgWrites: { off: number; size: number; v: number }[]; bar: { kind: 'read' | 'write'; window: string; offset: number; size: number; value: number }[] } {
  const m = dut.machine;
  if (!m) throw new CheckSkip('needs the simulated machine to watch the bus');
  const loc = dut.location as { dev: number; fn: number };
  const cfgWrites: { off: number; size: number; v: number }[] = [];
  const bar: { kind: 'read' | 'write'; window: string; offset: number; size: number; value: number }[] = [];
  let cf8 = 0;
  const stop = m.bus.addListener((a) => {
    if (a.window === 'pci-cf8') {
      if (a.kind === 'write' && a.offset === 0) cf8 = a.value;
      else if (a.kind === 'write' && ((cf8 >>> 11) & 0x1f) === loc.dev) cfgWrites.push({ off: (cf8 & 0xfc) + a.offset - 4, size: a.size, v: a.value });
    } else if (a.window === 'pci-ecam') {
      if (a.kind === 'write' && ((a.offset >>> 15) & 0x1f) === loc.dev && ((a.offset >>> 12) & 7) === loc.fn) cfgWrites.push({ off: a.offset & 0xfff, size: a.size, v: a.value });
    } else if (a.window.startsWith('virtio-pci:')) {
      bar.push({ kind: a.kind, window: a.window, offset: a.offset, size: a.size, value: a.value });
    }
  });
  try {
    fn();
  } finally {
    stop();
  }
  return { cfgWrites, bar };
}

/** pvkit's PciTransport for the device under test (found by its slot). */
function driverTransport(dut: DeviceUnderTest, opts?: Parameters<typeof discoverPci>[1]) {
  return discoverPci(dut.platform, opts).transports.find((x) => x.addr.dev === (dut.location as { dev: number }).dev)!;
}

function refWorkload(ctx: TargetContext, dut: DeviceUnderTest, extraRing = 0n): void {
  const s = startRef(ctx, dut, { extraRing });
  s.io(4, ctx.seed);
  s.shutdown();
}

defineCheck({
  id: 'pci.driver.matching',
  title: 'the driver matches vendor 0x1AF4 with a modern id (any revision) or a transitional id, and nothing else',
  statements: ['pci.driver.1', 'pci.driver.2', 'pci.driver.3'],
  side: 'driver',
  kind: 'property',
  applies: { transports: [...PCI] },
  run(ctx) {
    checkProperty(ctx, ['pci.driver.1'], [fc.nat({ max: 255 }), fc.constantFrom('modern', 'transitional', 'other')], (revision, kind) => {
      const dut = ctx.newDevice();
      const { fn } = internalsOf(dut);
      const type = (fn.cfg[0x2e]! | (fn.cfg[0x2f]! << 8)) >= 0x40 ? fn.cfg[2]! + (fn.cfg[3]! << 8) - 0x1040 : fn.cfg[0x2e]!;
      fn.cfg[8] = revision; // pci.driver.3: any revision
      if (kind === 'transitional') {
        const tid = type === DeviceType.NET ? 0x1000 : type === DeviceType.BLOCK ? 0x1001 : -1;
        if (tid < 0) return;
        fn.cfg[2] = tid & 0xff;
        fn.cfg[3] = tid >> 8;
        fn.cfg[0x2e] = type;
        fn.cfg[0x2f] = 0;
      } else if (kind === 'other') {
        fn.cfg[2] = 0x00;
        fn.cfg[3] = 0x11; // 0x1100: outside both ranges
      }
      const found = discoverPci(dut.platform);
      if (kind === 'other') expectEqual(found.transports.length, 0, ['pci.driver.1'], 'driver took a function outside the virtio id ranges');
      else {
        expectEqual(found.transports.length, 1, [kind === 'modern' ? 'pci.driver.1' : 'pci.driver.2', 'pci.driver.3'], `driver did not match a ${kind} device with revision ${revision}`);
        expectEqual(found.transports[0]!.deviceType, type, [kind === 'modern' ? 'pci.driver.1' : 'pci.driver.2'], 'device type the driver derived');
      }
    });
  },
});

defineCheck({
  id: 'pci.driver.capabilities',
  title: 'the driver skips reserved cfg_type and bar values, accepts a longer cap_len and a huge length, and writes no capability but PCI_CFG',
  statements: ['pci.driver.7', 'pci.driver.9', 'pci.driver.10', 'pci.driver.12', 'pci.driver.14', 'pci.driver.28'],
  side: 'driver',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const dut = ctx.newDevice();
    const { fn } = internalsOf(dut);
    // put decoys first in the list: a reserved cfg_type, a COMMON cap with a reserved bar, a vendor data cap
    const decoy = (cfgType: number, bar: number, len = 16): number => {
      const b = new Uint8Array(len);
      b[2] = len;
      b[3] = cfgType;
      b[4] = bar;
      if (len >= 16) {
        new DataView(b.buffer).setUint32(8, 0x10, true);
        new DataView(b.buffer).setUint32(12, 0x40, true);
      }
      return fn.addCapability(0x09, b);
    };
    const first = fn.cfg[0x34]!;
    const d1 = decoy(0x77, 4);
    const d2 = decoy(PciCap.COMMON_CFG, 7);
    const d3 = decoy(PciCap.VENDOR_CFG, 0, 8);
    fn.cfg[d3 + 4] = 0x34; // vendor_id 0x1234, a vendor this driver does not know
    fn.cfg[d3 + 5] = 0x12;
    // splice: cap_ptr -> d1 -> d2 -> d3 -> the original list (the tail of which is d1: cut it there)
    let p = first;
    while (fn.cfg[p + 1] !== d1) p = fn.cfg[p + 1]!;
    fn.cfg[p + 1] = 0;
    fn.cfg[0x34] = d1;
    fn.cfg[d1 + 1] = d2;
    fn.cfg[d2 + 1] = d3;
    fn.cfg[d3 + 1] = first;
    // the real COMMON cap: cap_len larger than the structure, and a length of 1 GiB
    const { transport } = internalsOf(dut);
    const caps = new PciBus(dut.platform).capabilities({ bus: 0, dev: fn.dev, fn: fn.fn }).map((c) => c.offset);
    const common = caps.find((o) => fn.cfg[o] === 0x09 && fn.cfg[o + 3] === PciCap.COMMON_CFG && fn.cfg[o + 4] !== 7)!;
    new DataView(fn.cfg.buffer).setUint32(common + 12, 0x4000_0000, true);
    void transport;
    const seen = watch(dut, () => refWorkload(ctx, dut));
    const capRanges = caps.concat([d1, d2, d3]).filter((o) => fn.cfg[o] === 0x09 && fn.cfg[o + 3] !== PciCap.PCI_CFG);
    for (const w of seen.cfgWrites) {
      for (const c of capRanges) {
        if (w.off < c + fn.cfg[c + 2]! && c <= w.off + w.size - 1) throw new CheckFailure('driver wrote into a virtio capability other than PCI_CFG', { statements: w.off >= d3 && w.off < d3 + 8 ? ['pci.driver.28', 'pci.driver.14'] : ['pci.driver.14'], seen: `config write at 0x${w.off.toString(16)}` });
      }
    }
  },
});

defineCheck({
  id: 'pci.driver.register-discipline',
  title: 'natural access widths; no writes to read-only fields; queue fields before queue_enable, never 0 to it; valid queue sizes; status read back as 0 after a reset before anything else',
  statements: ['pci.driver.5', 'pci.driver.15', 'pci.driver.16', 'pci.driver.17', 'pci.driver.18', 'pci.driver.19', 'pci.driver.20'],
  side: 'driver',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    for (const packed of ctx.ring === 'packed' ? [false, true] : [false]) {
      const dut = ctx.newDevice({ extraFeatures: packed ? bit(F.RING_PACKED) : 0n });
      const { transport, fn } = internalsOf(dut);
      const base4 = 'bar4';
      const seen = watch(dut, () => refWorkload(ctx, dut, packed ? bit(F.RING_PACKED) : 0n));
      void fn;
      const common = seen.bar.filter((a) => a.window.endsWith(base4) && a.offset < 0x1000);
      const ro = new Set<number>([Common.DEVICE_FEATURE, Common.NUM_QUEUES, Common.CONFIG_GENERATION, Common.QUEUE_NOTIFY_OFF, Common.QUEUE_NOTIF_CONFIG_DATA]);
      let sel = 0;
      const enabled = new Set<number>();
      let awaitZero = false;
      for (const a of common) {
        const w = COMMON_FIELD_WIDTH[a.offset] ?? (COMMON_FIELD_WIDTH[a.offset - 4] === 8 ? 8 : undefined);
        expectThat(w !== undefined && (w === a.size || (w === 8 && a.size === 4)), ['pci.driver.5'], 'access of the wrong width to the common configuration', `field width ${w}`, `${a.size}-byte ${a.kind} at 0x${a.offset.toString(16)}`);
        if (a.kind === 'read') {
          if (a.offset === Common.DEVICE_STATUS && a.value === 0) awaitZero = false;
          continue;
        }
        expectThat(!awaitZero, ['pci.driver.19'], 'driver wrote the common configuration before device_status read back 0 after a reset', 'a read of 0 first', `write at 0x${a.offset.toString(16)}`);
        expectThat(!ro.has(a.offset), ['pci.driver.15'], 'driver wrote a read-only common configuration field', undefined, `0x${a.offset.toString(16)}`);
        if (a.offset === Common.DEVICE_STATUS && a.value === 0) {
          awaitZero = true;
          enabled.clear();
        }
        if (a.offset === Common.QUEUE_SELECT) sel = a.value;
        if (a.offset === Common.QUEUE_ENABLE) {
          expectThat(a.value !== 0, ['pci.driver.20'], 'driver wrote 0 to queue_enable');
          enabled.add(sel);
        }
        if ([Common.QUEUE_SIZE, Common.QUEUE_DESC, Common.QUEUE_DESC + 4, Common.QUEUE_DRIVER, Common.QUEUE_DRIVER + 4, Common.QUEUE_DEVICE, Common.QUEUE_DEVICE + 4].includes(a.offset)) {
          expectThat(!enabled.has(sel), ['pci.driver.18'], `driver configured queue ${sel} after enabling it`, undefined, `write at 0x${a.offset.toString(16)}`);
        }
        if (a.offset === Common.QUEUE_SIZE) {
          if (packed) expectThat(a.value !== 0, ['pci.driver.16'], 'driver wrote queue_size 0 with RING_PACKED');
          else expectThat(a.value !== 0 && (a.value & (a.value - 1)) === 0, ['pci.driver.17'], 'driver wrote a queue_size that is not a power of two without RING_PACKED', 'a power of two', String(a.value));
        }
      }
      expectEqual(transport.badAccesses.length, 0, ['pci.driver.5'], 'accesses the device recorded as malformed');
    }
  },
});

defineCheck({
  id: 'pci.driver.notifications',
  title: '16-bit notifications of the queue index (or queue_notif_config_data); 32-bit ones with NOTIFICATION_DATA',
  statements: ['pci.driver.38', 'pci.driver.39', 'pci.driver.40', 'pci.driver.41', 'pci.driver.42', 'pci.driver.43'],
  side: 'driver',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const combos: [boolean, boolean][] = [[false, false], [true, false], [false, true], [true, true]];
    for (const [nd, ncd] of combos) {
      const extra = (nd ? bit(F.NOTIFICATION_DATA) : 0n) | (ncd ? bit(F.NOTIF_CONFIG_DATA) : 0n) | (ctx.ring === 'packed' ? bit(F.RING_PACKED) : 0n);
      const dut = ctx.newDevice({ extraFeatures: extra });
      const { core } = internalsOf(dut);
      const seen = watch(dut, () => refWorkload(ctx, dut, extra));
      const notes = seen.bar.filter((a) => a.kind === 'write' && a.window.endsWith('bar4') && a.offset >= 0x3000);
      expectThat(notes.length > 0, ['pci.driver.38'], 'driver never notified');
      for (const n of notes) {
        const q = (n.offset - 0x3000) / 4;
        expectEqual(n.size, nd ? 4 : 2, [nd ? 'pci.driver.39' : 'pci.driver.38'], `notification width (NOTIFICATION_DATA ${nd ? 'on' : 'off'})`);
        const low = n.value & 0xffff;
        const expectLow = ncd ? (q + 0x4000) & 0xffff : q;
        expectEqual(low, expectLow, [ncd ? (nd ? 'pci.driver.43' : 'pci.driver.42') : nd ? 'pci.driver.41' : 'pci.driver.40'], 'notification value (queue index or queue_notif_config_data)', true);
      }
      expectEqual(core.errors.filter((e) => e.error.code.startsWith('pci.notify')).length, 0, ['pci.driver.38'], 'notification errors the device recorded');
    }
  },
});

defineCheck({
  id: 'pci.driver.msix',
  title: 'the driver works with any MSI-X table size, maps only vectors inside the table, and checks every mapping (falling back when refused)',
  statements: ['pci.driver.32', 'pci.driver.35', 'pci.driver.36'],
  side: 'driver',
  kind: 'property',
  applies: { transports: [...PCI_ANY] },
  run(ctx) {
    checkProperty(ctx, ['pci.driver.32'], [fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 8 })], (vectors, mappable) => {
      const dut = ctx.newDevice({ params: { msixVectors: vectors, mappableVectors: mappable } });
      const seen = watch(dut, () => refWorkload(ctx, dut));
      const legacy = dut.transport === 'pci-legacy';
      for (const a of seen.bar) {
        if (a.kind !== 'write') continue;
        const isVec = legacy ? a.window.endsWith('bar0') && (a.offset === 20 || a.offset === 22) : a.window.endsWith('bar4') && (a.offset === Common.CONFIG_MSIX_VECTOR || a.offset === Common.QUEUE_MSIX_VECTOR);
        if (!isVec) continue;
        expectThat(a.value === VIRTIO_MSI_NO_VECTOR || a.value < vectors, ['pci.driver.35'], 'driver mapped an event to a vector outside the MSI-X table', `< ${vectors}`, String(a.value));
      }
      // the workload completing proves interrupts reached the driver: a driver that trusted a
      // refused mapping would have waited for an interrupt that never comes (pci.driver.36)
    });
  },
});

defineCheck({
  id: 'pci.driver.shared-interrupt',
  title: 'one interrupt carrying both a configuration change and used buffers is handled as both',
  statements: ['pci.driver.44'],
  side: 'driver',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    for (const params of [{ mappableVectors: 1 }, { msixVectors: 0 }]) {
      const dut = ctx.newDevice({ params });
      const t = driverTransport(dut);
      const dev = VirtioDriverDevice.init(dut.platform, t, { features: featureSet(F.VERSION_1), queues: 1 });
      let configSeen = 0;
      dev.onConfigChange(() => configSeen++);
      const type = t.deviceType;
      const vq = dev.queue<number>(0);
      const req = validRequest(dut.platform, type);
      vq.add(req.segs.filter((s) => !s.write), req.segs.filter((s) => s.write), 1);
      // the config change lands while the request is in flight: one interrupt line / vector for both
      changeConfig(dut);
      vq.kick();
      const u = dev.waitUsed<number>(0);
      expectEqual(u.token, 1, ['pci.driver.44'], 'used buffer token');
      dev.poll();
      expectThat(configSeen > 0, ['pci.driver.44'], 'driver missed the configuration change that shared the interrupt with a used buffer');
    }
  },
});

defineCheck({
  id: 'pci.driver.queue-reset',
  title: 'after writing 1 to queue_reset the driver waits for 0 and checks the queue is disabled before reusing it',
  statements: ['pci.driver.21', 'vq_reset.driver.1', 'vq_reset.driver.3'],
  side: 'driver',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const dut = ctx.newDevice({ extraFeatures: bit(F.RING_RESET) });
    const { transport } = internalsOf(dut);
    // a device whose queue reset takes a few reads to complete
    const dev = transport as unknown as { commonRead(off: number, size: number): number };
    const orig = dev.commonRead.bind(transport);
    let pending = 0;
    dev.commonRead = (off: number, size: number) => {
      if (off === Common.QUEUE_RESET && pending > 0) {
        pending--;
        return 1;
      }
      return orig(off, size);
    };
    const t = driverTransport(dut);
    const d = VirtioDriverDevice.init(dut.platform, t, { features: featureSet(F.VERSION_1, F.RING_RESET), queues: 1 });
    if (!hasFeature(d.features, F.RING_RESET)) throw new CheckSkip('device does not offer VIRTIO_F_RING_RESET');
    pending = 5;
    const seen = watch(dut, () => t.resetQueue(0));
    const resetReads = seen.bar.filter((a) => a.kind === 'read' && a.offset === Common.QUEUE_RESET);
    expectThat(resetReads.length > 0 && resetReads.at(-1)!.value === 0, ['pci.driver.21', 'vq_reset.driver.1'], 'driver considered the queue reset complete before queue_reset read back 0', 'a final read of 0', resetReads.length ? String(resetReads.at(-1)!.value) : 'no read');
    expectThat(seen.bar.some((a) => a.kind === 'read' && a.offset === Common.QUEUE_ENABLE && a.value === 0), ['vq_reset.driver.1'], 'driver did not verify that the reset queue is disabled');
    expectEqual(pending, 0, ['pci.driver.21'], 'reads of queue_reset left when the driver stopped polling');
    // vq_reset.driver.3: re-enabling goes through the full queue setup again (size, areas, enable)
    const vq = d.queues.get(0)!;
    const again = watch(dut, () => t.setupQueue(0, vq.addresses));
    const offs = new Set(again.bar.filter((a) => a.kind === 'write').map((a) => a.offset));
    for (const o of [Common.QUEUE_SIZE, Common.QUEUE_DESC, Common.QUEUE_DRIVER, Common.QUEUE_DEVICE, Common.QUEUE_ENABLE]) expectThat(offs.has(o), ['vq_reset.driver.3'], `re-enable skipped the queue field at 0x${o.toString(16)}`);
  },
});

defineCheck({
  id: 'pci.driver.cfg-window',
  title: 'through the PCI_CFG window: aligned accesses of 1, 2 or 4 bytes inside a structure another capability describes',
  statements: ['pci.driver.29', 'pci.driver.30', 'pci.driver.31'],
  side: 'driver',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const dut = ctx.newDevice();
    const { transport, core } = internalsOf(dut);
    const t = driverTransport(dut, { access: 'pci-cfg' });
    const c = transport.pciCfgCap;
    const seen = watch(dut, () => {
      const d = VirtioDriverDevice.init(dut.platform, t, { features: featureSet(F.VERSION_1), queues: 1 });
      d.config32(0);
      d.shutdown();
    });
    let len = 0;
    let bar = 0;
    for (const w of seen.cfgWrites) {
      if (w.off === c + 4) bar = w.v & 0xff;
      if (w.off === c + 12) len = w.v;
      if (w.off === c + 8) expectThat([1, 2, 4].includes(len) && w.v % len === 0, ['pci.driver.29', 'pci.driver.30'], 'PCI_CFG offset not a multiple of the length', `a multiple of ${len}`, `0x${w.v.toString(16)}`);
      if (w.off === c + 8) expectEqual(bar, 4, ['pci.driver.31'], 'PCI_CFG window aimed at a BAR no virtio structure is in');
    }
    expectThat(seen.cfgWrites.some((w) => w.off === c + 16), ['pci.driver.31'], 'driver never used the window');
    expectEqual(core.errors.filter((e) => e.error.code === 'pci.cfg_window').length, 0, ['pci.driver.31'], 'PCI_CFG accesses the device refused');
  },
});
