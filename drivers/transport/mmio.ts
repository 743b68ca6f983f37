/**
 * virtio-mmio transport, driver side (transport-mmio.tex): version 2 and legacy version 1.
 *
 * Only aligned 32-bit accesses to control registers (mmio.driver.4), config space with the width
 * of the field (mmio.driver.5), a selector written before every windowed register
 * (mmio.driver.12, mmio.driver.13), and the probe order the spec requires: MagicValue, Version,
 * then DeviceID, touching nothing else when DeviceID is 0 (mmio.driver.24 to mmio.driver.27).
 */
import type { GuestPlatform, PlatformDevice } from '../../spec-refs/platform/platform.ts';
import type { InterruptCause, QueueAddresses, VirtioTransport } from './transport.ts';
import { DeviceMisbehaviourError, TimeoutError, UsageError, hex } from '../../spec-refs/errors.ts';
import { Mmio, withFeatureWord, featureWord } from '../../spec-refs/abi/virtio.ts';

/** Page size and used-ring alignment the legacy driver programs (what Linux uses). */
export const LEGACY_PAGE_SIZE = 4096;
export const LEGACY_QUEUE_ALIGN = 4096;
/** How many 32-bit feature windows a modern driver reads and writes (bits 0..127). */
export const FEATURE_WINDOWS = 4;

export type MmioProbeResult =
  | { readonly ok: true; readonly transport: MmioTransport }
  | { readonly ok: false; readonly reason: 'bad-magic' | 'bad-version' | 'no-device'; readonly detail: string };

export interface MmioTransportOptions {
  /** Bound on polling loops (reset completion, queue reset), in reads. Default 1000. */
  readonly maxPolls?: number;
}

export class MmioTransport implements VirtioTransport {
  readonly kind: 'mmio' | 'mmio-legacy';
  readonly legacy: boolean;
  readonly deviceType: number;
  readonly vectors: readonly number[];
  readonly legacyAlign?: number;
  readonly version: number;
  readonly vendorId: number;
  private readonly p: GuestPlatform;
  private readonly base: number;
  private readonly maxPolls: number;

  private constructor(p: GuestPlatform, dev: PlatformDevice, version: number, deviceType: number, opts: MmioTransportOptions) {
    this.p = p;
    this.base = dev.base;
    this.version = version;
    this.legacy = version === 1;
    this.kind = this.legacy ? 'mmio-legacy' : 'mmio';
    this.deviceType = deviceType;
    this.vectors = [dev.vector];
    this.maxPolls = opts.maxPolls ?? 1000;
    if (this.legacy) this.legacyAlign = LEGACY_QUEUE_ALIGN;
    this.vendorId = this.r(Mmio.VENDOR_ID);
  }

  /**
   * Probe one firmware-described device. A wrong MagicValue or Version is reported (mmio.driver.6
   * to mmio.driver.9: the device is ignored, an error MAY be reported); DeviceID 0 is a
   * placeholder, ignored without an error (mmio.driver.10, mmio.driver.11).
   */
  static probe(p: GuestPlatform, dev: PlatformDevice, opts: MmioTransportOptions = {}): MmioProbeResult {
    const magic = p.mmioRead(dev.base + Mmio.MAGIC_VALUE, 4) >>> 0;
    if (magic !== Mmio.MAGIC) return { ok: false, reason: 'bad-magic', detail: `${dev.name}: MagicValue ${hex(magic)}, expected ${hex(Mmio.MAGIC)}` };
    const version = p.mmioRead(dev.base + Mmio.VERSION, 4) >>> 0;
    if (version !== 1 && version !== 2) return { ok: false, reason: 'bad-version', detail: `${dev.name}: Version ${version}, expected 2 (or legacy 1)` };
    const id = p.mmioRead(dev.base + Mmio.DEVICE_ID, 4) >>> 0;
    if (id === 0) return { ok: false, reason: 'no-device', detail: `${dev.name}: DeviceID 0 (placeholder)` };
    return { ok: true, transport: new MmioTransport(p, dev, version, id, opts) };
  }

  private r(off: number): number {
    return this.p.mmioRead(this.base + off, 4) >>> 0;
  }

  private w(off: number, v: number): void {
    this.p.mmioWrite(this.base + off, 4, v >>> 0);
  }

  /** Write 0 to Status and wait until it reads 0 (status_init.driver.5), bounded. */
  reset(): void {
    this.w(Mmio.STATUS, 0);
    for (let i = 0; i < this.maxPolls; i++) {
      if (this.r(Mmio.STATUS) === 0) return;
      this.p.spin(1000);
    }
    throw new TimeoutError('mmio.reset', 'device did not complete the reset', { statements: ['status_init.device.4', 'status_init.driver.5'], expected: 'Status 0', seen: hex(this.r(Mmio.STATUS)) });
  }

  getStatus(): number {
    return this.r(Mmio.STATUS) & 0xff;
  }

  setStatus(status: number): void {
    this.w(Mmio.STATUS, status & 0xff);
  }

  deviceFeatures(): bigint {
    let f = 0n;
    const windows = this.legacy ? 1 : FEATURE_WINDOWS;
    for (let sel = 0; sel < windows; sel++) {
      this.w(Mmio.DEVICE_FEATURES_SEL, sel); // mmio.driver.12
      f = withFeatureWord(f, sel, this.r(Mmio.DEVICE_FEATURES));
    }
    return f;
  }

  setDriverFeatures(features: bigint): void {
    const windows = this.legacy ? 1 : FEATURE_WINDOWS;
    if (this.legacy && features >> 32n) throw new UsageError('mmio.legacy_features', 'a legacy device takes 32 feature bits', { seen: `0x${features.toString(16)}` });
    // Highest window first: QEMU (up to at least 7.2) folds every DriverFeaturesSel above 0 onto
    // window 1, so writing windows 2 and 3 after window 1 would erase bits 32..63 (VERSION_1,
    // RING_PACKED). Windows 1 and 0, written last, land right everywhere (docs/qemu.md).
    for (let sel = windows - 1; sel >= 0; sel--) {
      this.w(Mmio.DRIVER_FEATURES_SEL, sel); // mmio.driver.13
      this.w(Mmio.DRIVER_FEATURES, featureWord(features, sel));
    }
  }

  configGeneration(): number {
    return this.legacy ? 0 : this.r(Mmio.CONFIG_GENERATION);
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    return this.p.mmioRead(this.base + Mmio.CONFIG + offset, size) >>> 0;
  }

  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    this.p.mmioWrite(this.base + Mmio.CONFIG + offset, size, value);
  }

  numQueues(): number | undefined {
    return undefined;
  }

  queueMaxSize(index: number): number {
    this.w(Mmio.QUEUE_SEL, index);
    return this.r(Mmio.QUEUE_NUM_MAX);
  }

  setupQueue(index: number, q: QueueAddresses): void {
    this.w(Mmio.QUEUE_SEL, index);
    if (this.legacy) {
      if (this.r(Mmio.QUEUE_PFN) !== 0) throw new DeviceMisbehaviourError('mmio.queue_in_use', `queue ${index} already has a PFN after reset`, { statements: ['mmio.device.5'], expected: 'QueuePFN 0' });
      if (q.desc % LEGACY_PAGE_SIZE !== 0) throw new UsageError('mmio.legacy_align', 'legacy ring must start on a page', { seen: hex(q.desc) });
      const align = LEGACY_QUEUE_ALIGN;
      const usedOff = Math.ceil((16 * q.size + 6 + 2 * q.size) / align) * align;
      if (q.driver !== q.desc + 16 * q.size || q.device !== q.desc + usedOff) {
        throw new UsageError('mmio.legacy_layout', 'legacy ring areas must be contiguous', { expected: `driver ${hex(q.desc + 16 * q.size)}, device ${hex(q.desc + usedOff)}`, seen: `driver ${hex(q.driver)}, device ${hex(q.device)}` });
      }
      this.w(Mmio.GUEST_PAGE_SIZE, LEGACY_PAGE_SIZE);
      this.w(Mmio.QUEUE_NUM, q.size);
      this.w(Mmio.QUEUE_ALIGN, align);
      this.w(Mmio.QUEUE_PFN, q.desc / LEGACY_PAGE_SIZE);
      return;
    }
    // transport-mmio.tex, virtqueue configuration: the queue must not be in use yet
    if (this.r(Mmio.QUEUE_READY) !== 0) throw new DeviceMisbehaviourError('mmio.queue_in_use', `queue ${index} is already ready`, { statements: ['mmio.device.5'], expected: 'QueueReady 0' });
    this.w(Mmio.QUEUE_NUM, q.size); // mmio.driver.14: size <= QueueSizeMax, checked by the caller
    this.w(Mmio.QUEUE_DESC_LOW, q.desc % 0x1_0000_0000);
    this.w(Mmio.QUEUE_DESC_HIGH, Math.floor(q.desc / 0x1_0000_0000));
    this.w(Mmio.QUEUE_DRIVER_LOW, q.driver % 0x1_0000_0000);
    this.w(Mmio.QUEUE_DRIVER_HIGH, Math.floor(q.driver / 0x1_0000_0000));
    this.w(Mmio.QUEUE_DEVICE_LOW, q.device % 0x1_0000_0000);
    this.w(Mmio.QUEUE_DEVICE_HIGH, Math.floor(q.device / 0x1_0000_0000));
    this.w(Mmio.QUEUE_READY, 1);
  }

  /** RING_RESET: write 1 to QueueReset, then wait until it reads 0 (mmio.driver.21), bounded. */
  resetQueue(index: number): void {
    if (this.legacy) throw new UsageError('mmio.queue_reset', 'legacy virtio-mmio has no queue reset');
    this.w(Mmio.QUEUE_SEL, index);
    this.w(Mmio.QUEUE_RESET, 1);
    for (let i = 0; i < this.maxPolls; i++) {
      if (this.r(Mmio.QUEUE_RESET) === 0) return;
      this.p.spin(1000);
    }
    throw new TimeoutError('mmio.queue_reset', `queue ${index} reset did not complete`, { statements: ['mmio.driver.21', 'mmio.device.12'], expected: 'QueueReset 0' });
  }

  /** Stop using a queue: write 0 to QueueReady and read it back (mmio.driver.16, mmio.driver.17). */
  disableQueue(index: number): void {
    this.w(Mmio.QUEUE_SEL, index);
    if (this.legacy) {
      this.w(Mmio.QUEUE_PFN, 0);
      return;
    }
    this.w(Mmio.QUEUE_READY, 0);
    for (let i = 0; i < this.maxPolls; i++) {
      if (this.r(Mmio.QUEUE_READY) === 0) return;
      this.p.spin(1000);
    }
    throw new TimeoutError('mmio.queue_disable', `queue ${index} stays ready`, { statements: ['mmio.driver.17'], expected: 'QueueReady 0' });
  }

  notify(index: number, data?: number): void {
    this.w(Mmio.QUEUE_NOTIFY, data ?? index);
  }

  /** Read InterruptStatus and acknowledge the bits handled (mmio.driver.18 to mmio.driver.20, mmio.driver.30, mmio.driver.32). */
  ackInterrupt(_vector: number): InterruptCause {
    const st = this.r(Mmio.INTERRUPT_STATUS) & 3; // undefined bits ignored
    if (st) this.w(Mmio.INTERRUPT_ACK, st);
    return { used: (st & Mmio.INT_VRING) !== 0, config: (st & Mmio.INT_CONFIG) !== 0 };
  }
}

/** Every virtio-mmio device the platform describes, probed; skipped ones come with their reason. */
export function discoverMmio(p: GuestPlatform, opts: MmioTransportOptions = {}): { transports: MmioTransport[]; skipped: { device: PlatformDevice; reason: string; detail: string }[] } {
  const transports: MmioTransport[] = [];
  const skipped: { device: PlatformDevice; reason: string; detail: string }[] = [];
  for (const dev of p.devices()) {
    if (dev.kind !== 'virtio-mmio') continue;
    const r = MmioTransport.probe(p, dev, opts);
    if (r.ok) transports.push(r.transport);
    else skipped.push({ device: dev, reason: r.reason, detail: r.detail });
  }
  return { transports, skipped };
}
