/**
 * virtio-pci transport, driver side (transport-pci.tex): the modern interface through the virtio
 * vendor capabilities, and the legacy interface through I/O BAR0, as a VirtioTransport.
 *
 * Discovery follows the spec's driver rules: vendor 0x1AF4 and device id 0x1040..0x107f, or a
 * transitional id 0x1000..0x103f (device type from the subsystem id), any revision
 * (pci.driver.1 to pci.driver.3). Capabilities with a reserved cfg_type or bar are ignored, the
 * first of each type is used, longer cap_len and larger lengths are accepted (pci.driver.7 to
 * pci.driver.13), and capabilities are never written except PCI_CFG (pci.driver.14).
 *
 * Interrupts: MSI-X with one vector for configuration changes and one per queue while the table
 * has room (queues share otherwise); a mapping the device refuses (NO_VECTOR read back,
 * pci.driver.36) makes the driver share the config vector, and then fall back to INTx with the ISR
 * (pci.driver.37). A table of one entry means INTx (pci.driver.33).
 *
 * With `access: 'pci-cfg'` every access to the modern structures goes through the PCI
 * configuration access capability instead of the BAR.
 */
import type { GuestPlatform } from '../../spec-refs/platform/platform.ts';
import type { InterruptCause, QueueAddresses, VirtioTransport } from './transport.ts';
import { PciBus, type BarInfo, type MsixInfo, type PciAddress, type PciDeviceInfo } from './pci-bus.ts';
import { DeviceMisbehaviourError, TimeoutError, UsageError, hex } from '../../spec-refs/errors.ts';
import { F, featureWord, hasFeature, withFeatureWord } from '../../spec-refs/abi/virtio.ts';
import { Common, ISR_CONFIG, ISR_QUEUE, Legacy, PciCap, VIRTIO_MSI_NO_VECTOR, VIRTIO_PCI_VENDOR_ID } from '../../spec-refs/abi/virtio-pci.ts';

export interface PciTransportOptions {
  /** Drive the device through its legacy interface (a legacy driver). Needs a transitional device. */
  readonly legacy?: boolean;
  /** Reach the modern structures through the BARs (default) or the PCI_CFG window. */
  readonly access?: 'bar' | 'pci-cfg';
  /** Use MSI-X when the device has it (default true). */
  readonly msix?: boolean;
  /** Bound on polling loops (reset, queue reset), in reads. Default 1000. */
  readonly maxPolls?: number;
}

interface Region {
  readonly bar: BarInfo;
  readonly offset: number;
  readonly length: number;
}

/** What a probe found, for callers that want to look before driving. */
export interface VirtioPciIdentity {
  readonly transitional: boolean;
  readonly deviceType: number;
}

/** Classify a PCI function as a virtio device (pci.driver.1, pci.driver.2, pci.driver.3), or undefined. */
export function identifyVirtioPci(d: PciDeviceInfo): VirtioPciIdentity | undefined {
  if (d.vendorId !== VIRTIO_PCI_VENDOR_ID) return undefined;
  if (d.deviceId >= 0x1040 && d.deviceId <= 0x107f) return { transitional: false, deviceType: d.deviceId - 0x1040 };
  // transitional: the device type is in the subsystem device id
  if (d.deviceId >= 0x1000 && d.deviceId <= 0x103f) return { transitional: true, deviceType: d.subsystemId };
  return undefined;
}

const KNOWN_CFG_TYPES = new Set([PciCap.COMMON_CFG, PciCap.NOTIFY_CFG, PciCap.ISR_CFG, PciCap.DEVICE_CFG, PciCap.PCI_CFG, PciCap.SHARED_MEMORY_CFG, PciCap.VENDOR_CFG]);
/** Drivers map at most this much of a structure (transport-pci.tex note on large lengths). */
const MAP_LIMIT = 0x1000;

export class PciTransport implements VirtioTransport {
  readonly kind: 'pci' | 'pci-legacy';
  readonly legacy: boolean;
  readonly deviceType: number;
  readonly legacyAlign?: number;
  readonly fixedQueueSize?: boolean;
  readonly addr: PciAddress;
  readonly info: PciDeviceInfo;
  readonly bars: readonly BarInfo[];
  private readonly p: GuestPlatform;
  private readonly bus: PciBus;
  private readonly maxPolls: number;
  private readonly viaCfg: boolean;
  // modern structures
  private common: Region | undefined;
  private notifyCap: Region | undefined;
  private notifyMult = 0;
  private isrRegion: Region | undefined;
  private deviceRegion: Region | undefined;
  private pciCfgCap = 0;
  private legacyBar: BarInfo | undefined;
  // interrupts
  private msix: MsixInfo | undefined;
  private msixOn = false;
  private entryVectors: number[] = [];
  private intxVector = 0;
  /** MSI-X entry of the config vector and of each queue (NO_VECTOR: none). */
  private configEntry = VIRTIO_MSI_NO_VECTOR;
  private readonly queueEntry = new Map<number, number>();
  // per queue
  private readonly notifyAddr = new Map<number, number>();
  private readonly notifyData = new Map<number, number>();
  private driverFeatures = 0n;
  /** Times a vector mapping was refused and the driver fell back (for tests). */
  fallbacks = 0;

  constructor(p: GuestPlatform, bus: PciBus, info: PciDeviceInfo, opts: PciTransportOptions = {}) {
    const id = identifyVirtioPci(info);
    if (!id) throw new UsageError('pci.not_virtio', 'not a virtio PCI function', { seen: `${hex(info.vendorId)}:${hex(info.deviceId)}` });
    this.p = p;
    this.bus = bus;
    this.info = info;
    this.addr = { bus: info.bus, dev: info.dev, fn: info.fn };
    this.deviceType = id.deviceType;
    this.maxPolls = opts.maxPolls ?? 1000;
    this.viaCfg = opts.access === 'pci-cfg';
    this.bars = bus.assignBars(this.addr);
    this.findCapabilities();
    const modernOk = this.common !== undefined && this.notifyCap !== undefined && this.isrRegion !== undefined;
    this.legacyBar = this.bars.find((b) => b.index === 0 && b.kind === 'io');
    if (!opts.legacy && modernOk) {
      this.legacy = false;
    } else if (id.transitional && this.legacyBar) {
      // pci.driver: a transitional driver falls back to the legacy interface in BAR0
      this.legacy = true;
      this.legacyAlign = Legacy.ALIGN;
      this.fixedQueueSize = true;
    } else if (opts.legacy) {
      throw new DeviceMisbehaviourError('pci.no_legacy', 'device offers no legacy interface (not transitional, or no I/O BAR0)', { seen: `${hex(info.deviceId)} rev ${info.revision}` });
    } else {
      // non-transitional drivers fail gracefully on a device without the virtio capabilities
      throw new DeviceMisbehaviourError('pci.no_caps', 'device has no usable virtio capabilities', { expected: 'COMMON, NOTIFY and ISR capabilities', seen: `${this.common ? '' : 'no COMMON '}${this.notifyCap ? '' : 'no NOTIFY '}${this.isrRegion ? '' : 'no ISR'}`.trim() });
    }
    if (this.viaCfg && (this.legacy || !this.pciCfgCap)) throw new UsageError('pci.no_cfg_window', 'PCI_CFG access needs the modern interface and the capability');
    this.kind = this.legacy ? 'pci-legacy' : 'pci';
    this.intxVector = info.interruptPin ? bus.intxVector(this.addr) : 0;
    this.msix = bus.msix(this.addr);
    if (this.msix && opts.msix !== false && this.msix.tableSize >= 2) this.enableMsix();
  }

  // ---------------------------------------------------------------- discovery

  private findCapabilities(): void {
    for (const c of this.bus.capabilities(this.addr)) {
      if (c.id !== 0x09) continue;
      const a = this.addr;
      const capLen = this.bus.read(a, c.offset + 2, 1);
      const cfgType = this.bus.read(a, c.offset + PciCap.OFF_CFG_TYPE, 1);
      if (!KNOWN_CFG_TYPES.has(cfgType as never)) continue; // pci.driver.7
      if (capLen < PciCap.CAP_LEN) continue; // too short to be a virtio_pci_cap
      if (cfgType === PciCap.PCI_CFG) {
        if (!this.pciCfgCap && capLen >= PciCap.CFG_CAP_LEN) this.pciCfgCap = c.offset;
        continue;
      }
      const barIndex = this.bus.read(a, c.offset + PciCap.OFF_BAR, 1);
      if (barIndex > 5) continue; // pci.driver.10
      const offset = this.bus.read(a, c.offset + PciCap.OFF_OFFSET, 4);
      const length = this.bus.read(a, c.offset + PciCap.OFF_LENGTH, 4);
      const bar = this.bars.find((b) => b.index === barIndex);
      if (!bar) continue;
      // pci.driver.12/13: map only what is needed, but the structure must lie in its BAR
      const mapped = Math.min(length, MAP_LIMIT);
      if (offset + mapped > bar.size) continue;
      const r: Region = { bar, offset, length: mapped };
      // pci.driver.8: the first of each type
      if (cfgType === PciCap.COMMON_CFG && !this.common && length >= Common.SIZE - 8) this.common = r;
      else if (cfgType === PciCap.NOTIFY_CFG && !this.notifyCap && capLen >= PciCap.NOTIFY_CAP_LEN && length >= 2) {
        this.notifyCap = r;
        this.notifyMult = this.bus.read(a, c.offset + PciCap.OFF_NOTIFY_MULT, 4);
      } else if (cfgType === PciCap.ISR_CFG && !this.isrRegion && length >= 1) this.isrRegion = r;
      else if (cfgType === PciCap.DEVICE_CFG && !this.deviceRegion) this.deviceRegion = r;
    }
  }

  // ---------------------------------------------------------------- register access

  private rd(r: Region, off: number, size: 1 | 2 | 4): number {
    if (this.viaCfg) return this.cfgWindow(r, off, size);
    const at = r.bar.addr + r.offset + off;
    return (r.bar.kind === 'io' ? this.p.pioRead(at, size) : this.p.mmioRead(at, size)) >>> 0;
  }

  private wr(r: Region, off: number, size: 1 | 2 | 4, v: number): void {
    if (this.viaCfg) {
      this.cfgWindow(r, off, size, v);
      return;
    }
    const at = r.bar.addr + r.offset + off;
    if (r.bar.kind === 'io') this.p.pioWrite(at, size, v);
    else this.p.mmioWrite(at, size, v);
  }

  /** One access through the PCI_CFG capability: program bar / length / offset, then use pci_cfg_data. */
  private cfgWindow(r: Region, off: number, size: 1 | 2 | 4, v?: number): number {
    const c = this.pciCfgCap;
    const a = this.addr;
    const offset = r.offset + off;
    // pci.driver.29: the offset is a multiple of the length
    if (offset % size !== 0) throw new UsageError('pci.cfg_align', 'unaligned access through the PCI_CFG window', { statements: ['pci.driver.29'], seen: `${hex(offset)}/${size}` });
    this.bus.write(a, c + PciCap.OFF_BAR, 1, r.bar.index);
    this.bus.write(a, c + PciCap.OFF_LENGTH, 4, size);
    this.bus.write(a, c + PciCap.OFF_OFFSET, 4, offset);
    const data = c + PciCap.OFF_PCI_CFG_DATA;
    if (v !== undefined) {
      this.bus.write(a, data, size, v);
      return 0;
    }
    return this.bus.read(a, data, size);
  }

  /** A legacy register in BAR0. */
  private lrd(off: number, size: 1 | 2 | 4): number {
    return this.p.pioRead(this.legacyBar!.addr + off, size) >>> 0;
  }

  private lwr(off: number, size: 1 | 2 | 4, v: number): void {
    this.p.pioWrite(this.legacyBar!.addr + off, size, v);
  }

  private c16(off: number): number {
    return this.rd(this.common!, off, 2);
  }

  private w16(off: number, v: number): void {
    this.wr(this.common!, off, 2, v);
  }

  // ---------------------------------------------------------------- MSI-X

  private enableMsix(): void {
    const m = this.msix!;
    const want = Math.min(m.tableSize, this.legacy ? m.tableSize : (this.numQueues() ?? 0) + 1, 64);
    this.entryVectors = Array.from({ length: Math.max(2, want) }, () => this.bus.allocVector());
    this.bus.enableMsix(this.addr, m, this.bars, this.entryVectors);
    this.msixOn = true;
  }

  /** Give up on MSI-X: INTx and the ISR from now on (pci.driver.37). */
  private fallBackToIntx(): void {
    if (this.msix) this.bus.disableMsix(this.addr, this.msix);
    this.msixOn = false;
    this.configEntry = VIRTIO_MSI_NO_VECTOR;
    this.queueEntry.clear();
    this.fallbacks++;
  }

  get msixEnabled(): boolean {
    return this.msixOn;
  }

  get vectors(): readonly number[] {
    return this.msixOn ? this.entryVectors : [this.intxVector];
  }

  private writeConfigVector(entry: number): number {
    if (this.legacy) {
      this.lwr(Legacy.CONFIG_VECTOR, 2, entry);
      return this.lrd(Legacy.CONFIG_VECTOR, 2);
    }
    this.w16(Common.CONFIG_MSIX_VECTOR, entry);
    return this.c16(Common.CONFIG_MSIX_VECTOR);
  }

  /** Map queue `index` (selected) to `entry`; returns what the device reads back. */
  private writeQueueVector(entry: number): number {
    if (this.legacy) {
      this.lwr(Legacy.QUEUE_VECTOR, 2, entry);
      return this.lrd(Legacy.QUEUE_VECTOR, 2);
    }
    this.w16(Common.QUEUE_MSIX_VECTOR, entry);
    return this.c16(Common.QUEUE_MSIX_VECTOR);
  }

  /** The config vector is entry 0; verify the mapping (pci.driver.36). */
  private mapConfigVector(): void {
    if (!this.msixOn) return;
    const back = this.writeConfigVector(0);
    if (back !== 0) this.fallBackToIntx();
    else this.configEntry = 0;
  }

  private mapQueueVector(index: number): void {
    if (!this.msixOn) return;
    const n = this.entryVectors.length;
    // pci.driver.35: only entries inside the table
    const entry = 1 + (index % (n - 1));
    if (this.writeQueueVector(entry) === entry) {
      this.queueEntry.set(index, entry);
      return;
    }
    // refused: share the config vector, then give up on MSI-X
    this.fallbacks++;
    if (this.configEntry === 0 && this.writeQueueVector(0) === 0) {
      this.queueEntry.set(index, 0);
      return;
    }
    this.writeQueueVector(VIRTIO_MSI_NO_VECTOR);
    this.fallBackToIntx();
  }

  // ---------------------------------------------------------------- VirtioTransport

  reset(): void {
    this.setStatus(0);
    // pci.driver.19: wait for device_status to read 0 before reinitialising
    for (let i = 0; i < this.maxPolls; i++) {
      if (this.getStatus() === 0) {
        this.notifyAddr.clear();
        this.notifyData.clear();
        this.queueEntry.clear();
        this.configEntry = VIRTIO_MSI_NO_VECTOR;
        this.mapConfigVector();
        return;
      }
      this.p.spin(1000);
    }
    throw new TimeoutError('pci.reset', 'device did not complete the reset', { statements: ['pci.driver.19', 'pci.device.18'], expected: 'device_status 0', seen: hex(this.getStatus()) });
  }

  getStatus(): number {
    return this.legacy ? this.lrd(Legacy.STATUS, 1) : this.rd(this.common!, Common.DEVICE_STATUS, 1);
  }

  setStatus(status: number): void {
    if (this.legacy) this.lwr(Legacy.STATUS, 1, status & 0xff);
    else this.wr(this.common!, Common.DEVICE_STATUS, 1, status & 0xff);
  }

  deviceFeatures(): bigint {
    if (this.legacy) return BigInt(this.lrd(Legacy.HOST_FEATURES, 4));
    let f = 0n;
    for (let sel = 0; sel < 4; sel++) {
      this.wr(this.common!, Common.DEVICE_FEATURE_SELECT, 4, sel);
      f = withFeatureWord(f, sel, this.rd(this.common!, Common.DEVICE_FEATURE, 4));
    }
    return f;
  }

  setDriverFeatures(features: bigint): void {
    this.driverFeatures = features;
    if (this.legacy) {
      if (features >> 32n) throw new UsageError('pci.legacy_features', 'the legacy interface carries feature bits 0..31 only', { seen: `0x${features.toString(16)}` });
      this.lwr(Legacy.GUEST_FEATURES, 4, Number(features));
      return;
    }
    for (let sel = 0; sel < 4; sel++) {
      this.wr(this.common!, Common.DRIVER_FEATURE_SELECT, 4, sel);
      this.wr(this.common!, Common.DRIVER_FEATURE, 4, featureWord(features, sel));
    }
  }

  configGeneration(): number {
    return this.legacy ? 0 : this.rd(this.common!, Common.CONFIG_GENERATION, 1);
  }

  private get legacyConfigOffset(): number {
    return this.msixOn ? Legacy.CONFIG_OFF_MSIX : Legacy.CONFIG_OFF;
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    if (this.legacy) return this.lrd(this.legacyConfigOffset + offset, size);
    if (!this.deviceRegion || offset + size > this.deviceRegion.length) throw new DeviceMisbehaviourError('pci.no_device_cfg', 'device-specific configuration out of range', { seen: `${offset}+${size} of ${this.deviceRegion?.length ?? 0}` });
    return this.rd(this.deviceRegion, offset, size);
  }

  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    if (this.legacy) {
      this.lwr(this.legacyConfigOffset + offset, size, value);
      return;
    }
    if (!this.deviceRegion || offset + size > this.deviceRegion.length) throw new DeviceMisbehaviourError('pci.no_device_cfg', 'device-specific configuration out of range', { seen: `${offset}+${size}` });
    this.wr(this.deviceRegion, offset, size, value);
  }

  numQueues(): number | undefined {
    return this.legacy ? undefined : this.c16(Common.NUM_QUEUES);
  }

  private select(index: number): void {
    if (this.legacy) this.lwr(Legacy.QUEUE_SEL, 2, index);
    else this.w16(Common.QUEUE_SELECT, index);
  }

  queueMaxSize(index: number): number {
    if (!this.legacy) {
      const n = this.numQueues()!;
      if (index >= n) return 0;
    }
    this.select(index);
    return this.legacy ? this.lrd(Legacy.QUEUE_NUM, 2) : this.c16(Common.QUEUE_SIZE);
  }

  setupQueue(index: number, q: QueueAddresses): void {
    this.select(index);
    if (this.legacy) {
      const max = this.lrd(Legacy.QUEUE_NUM, 2);
      if (q.size !== max) throw new UsageError('pci.legacy_size', 'the legacy interface cannot change the queue size', { expected: String(max), seen: String(q.size) });
      if (this.lrd(Legacy.QUEUE_PFN, 4) !== 0) throw new DeviceMisbehaviourError('pci.queue_in_use', `queue ${index} already has an address after reset`, { expected: '0' });
      const usedOff = Math.ceil((16 * q.size + 6 + 2 * q.size) / Legacy.ALIGN) * Legacy.ALIGN;
      if (q.desc % Legacy.PAGE !== 0 || q.driver !== q.desc + 16 * q.size || q.device !== q.desc + usedOff) {
        throw new UsageError('pci.legacy_layout', 'legacy rings are one page-aligned area with the used ring aligned to 4096', { seen: `desc ${hex(q.desc)} driver ${hex(q.driver)} device ${hex(q.device)}` });
      }
      this.mapQueueVector(index);
      this.select(index);
      this.lwr(Legacy.QUEUE_PFN, 4, q.desc / Legacy.PAGE);
      return;
    }
    const c = this.common!;
    if (this.c16(Common.QUEUE_ENABLE) !== 0) throw new DeviceMisbehaviourError('pci.queue_in_use', `queue ${index} is enabled before setup`, { statements: ['pci.device.19'], expected: 'queue_enable 0' });
    // pci.driver.18: everything before queue_enable; 64-bit fields as two 32-bit writes (pci.driver.5)
    this.w16(Common.QUEUE_SIZE, q.size);
    for (const [off, v] of [[Common.QUEUE_DESC, q.desc], [Common.QUEUE_DRIVER, q.driver], [Common.QUEUE_DEVICE, q.device]] as const) {
      this.wr(c, off, 4, v % 0x1_0000_0000);
      this.wr(c, off + 4, 4, Math.floor(v / 0x1_0000_0000));
    }
    this.mapQueueVector(index);
    this.select(index);
    const nd = hasFeature(this.driverFeatures, F.NOTIFICATION_DATA);
    const off = this.c16(Common.QUEUE_NOTIFY_OFF) * this.notifyMult;
    const n = this.notifyCap!;
    if (off + (nd ? 4 : 2) > n.length) throw new DeviceMisbehaviourError('pci.notify_off', `queue ${index} notify address beyond the notification structure`, { statements: [nd ? 'pci.device.39' : 'pci.device.34'], expected: `<= ${n.length}`, seen: String(off + (nd ? 4 : 2)) });
    this.notifyAddr.set(index, off);
    if (hasFeature(this.driverFeatures, F.NOTIF_CONFIG_DATA)) this.notifyData.set(index, this.c16(Common.QUEUE_NOTIF_CONFIG_DATA));
    this.w16(Common.QUEUE_ENABLE, 1);
  }

  /** RING_RESET: write 1 to queue_reset, then wait for 0 (pci.driver.21, vq_reset.driver.1). */
  resetQueue(index: number): void {
    if (this.legacy) throw new UsageError('pci.queue_reset', 'the legacy interface has no queue reset');
    if (!hasFeature(this.driverFeatures, F.RING_RESET)) throw new UsageError('pci.queue_reset', 'VIRTIO_F_RING_RESET not negotiated');
    this.select(index);
    this.w16(Common.QUEUE_RESET, 1);
    for (let i = 0; i < this.maxPolls; i++) {
      if (this.c16(Common.QUEUE_RESET) === 0) {
        // vq_reset.driver.1: verify the queue is reset (disabled)
        if (this.c16(Common.QUEUE_ENABLE) !== 0) throw new DeviceMisbehaviourError('pci.queue_reset', `queue ${index} still enabled after its reset`, { statements: ['pci.device.24', 'vq_reset.driver.1'], expected: 'queue_enable 0' });
        this.notifyAddr.delete(index);
        this.queueEntry.delete(index);
        return;
      }
      this.p.spin(1000);
    }
    throw new TimeoutError('pci.queue_reset', `queue ${index} reset did not complete`, { statements: ['pci.driver.21', 'pci.device.23'], expected: 'queue_reset 0' });
  }

  notify(index: number, data?: number): void {
    if (this.legacy) {
      this.lwr(Legacy.QUEUE_NOTIFY, 2, index);
      return;
    }
    const off = this.notifyAddr.get(index);
    if (off === undefined) throw new UsageError('pci.notify', `queue ${index} is not set up`);
    const cfgData = this.notifyData.get(index);
    if (hasFeature(this.driverFeatures, F.NOTIFICATION_DATA)) {
      // pci.driver.39, pci.driver.41, pci.driver.43: a 32-bit value; low half = index or config data
      const v = data ?? index;
      this.wr(this.notifyCap!, off, 4, ((v & 0xffff_0000) | (cfgData ?? index)) >>> 0);
    } else {
      // pci.driver.38, pci.driver.40, pci.driver.42: the 16-bit index or config data
      this.wr(this.notifyCap!, off, 2, cfgData ?? index);
    }
  }

  /** Why the device interrupted: by vector with MSI-X (no ISR read, pci.driver.26), else from the ISR (read clears it). */
  ackInterrupt(vector: number): InterruptCause {
    if (this.msixOn) {
      const entry = this.entryVectors.indexOf(vector);
      if (entry < 0) return { used: false, config: false };
      let used = false;
      for (const e of this.queueEntry.values()) if (e === entry) used = true;
      // pci.driver.44: one vector may carry both
      return { used, config: entry === this.configEntry };
    }
    const isr = this.legacy ? this.lrd(Legacy.ISR, 1) : this.rd(this.isrRegion!, 0, 1);
    return { used: (isr & ISR_QUEUE) !== 0, config: (isr & ISR_CONFIG) !== 0 };
  }
}

/** Every virtio function on the PCI bus (skipped ones with the reason). */
export function discoverPci(p: GuestPlatform, opts: PciTransportOptions & { mechanism?: 'ecam' | 'cf8' } = {}): { transports: PciTransport[]; skipped: { info: PciDeviceInfo; reason: string }[]; bus: PciBus } {
  const bus = new PciBus(p, { mechanism: opts.mechanism });
  const transports: PciTransport[] = [];
  const skipped: { info: PciDeviceInfo; reason: string }[] = [];
  for (const info of bus.enumerate()) {
    if (!identifyVirtioPci(info)) continue;
    try {
      transports.push(new PciTransport(p, bus, info, opts));
    } catch (e) {
      skipped.push({ info, reason: e instanceof Error ? e.message : String(e) });
    }
  }
  return { transports, skipped, bus };
}
