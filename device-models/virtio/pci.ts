/**
 * virtio-pci device transport (transport-pci.tex): a PCI function on the machine's host bridge
 * that decodes the virtio structures into calls on a VirtioCore and carries the core's interrupts
 * as MSI-X messages or INTx with the ISR status byte.
 *
 * Modes:
 * - modern: device id 0x1040 + type, revision 1, vendor capabilities COMMON / NOTIFY / ISR /
 *   DEVICE / PCI_CFG pointing into a 64-bit memory BAR (BAR4), MSI-X table and PBA in BAR1.
 * - transitional: a transitional device id (0x1000..0x103f), revision 0, subsystem id = device
 *   type, the modern capabilities AND the legacy register block in I/O BAR0. A modern driver uses
 *   the capabilities, a legacy driver BAR0; whichever interface the driver writes to drives the
 *   device (the other one is reset first).
 * - legacy: the legacy register block only (a pre-1.0 device).
 *
 * Never throws for guest input: wrong-width accesses, writes to read-only fields and other driver
 * errors are recorded (badAccesses, core.errors) and ignored; what the core cannot accept sets
 * DEVICE_NEEDS_RESET there.
 */
import type { AccessSize, RegisterHandler } from '../machine/bus.ts';
import type { Machine } from '../machine/machine.ts';
import { pciHost, type PciFunction } from '../machine/pci.ts';
import { DriverMisbehaviourError, UsageError, hex } from '../../spec-refs/errors.ts';
import { F, hasFeature } from '../../spec-refs/abi/virtio.ts';
import {
  COMMON_FIELD_WIDTH,
  Common,
  ISR_CONFIG,
  ISR_QUEUE,
  Legacy,
  MODERN_DEVICE_ID_BASE,
  PciCap,
  TRANSITIONAL_DEVICE_ID,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI_VENDOR_ID,
} from '../../spec-refs/abi/virtio-pci.ts';
import { VirtioCore, type TransportSignals } from './core.ts';
import { legacySplitLayout } from './split-queue.ts';
import type { VirtioDeviceModel } from './model.ts';

export type VirtioPciMode = 'modern' | 'transitional' | 'legacy';

/** Where the modern structures sit in BAR4 (as QEMU lays them out). */
export const ModernLayout = {
  BAR: 4,
  COMMON: 0x0000,
  ISR: 0x1000,
  DEVICE: 0x2000,
  NOTIFY: 0x3000,
  REGION: 0x1000,
  MSIX_BAR: 1,
  LEGACY_BAR: 0,
} as const;

export interface VirtioPciOptions {
  mode?: VirtioPciMode;
  /** MSI-X table size (0: no MSI-X capability). Default: one per queue plus one for config, at least 2. */
  msixVectors?: number;
  /**
   * Table entries the device can actually map an event to (default: all). Mapping an event to an
   * entry at or above this is refused: the vector field reads back NO_VECTOR (pci.device.63).
   */
  mappableVectors?: number;
  /** notify_off_multiplier: 0 or a power of two (a multiple of 4 when NOTIFICATION_DATA is offered). Default 4. */
  notifyOffMultiplier?: number;
  notifyLatencyNs?: number;
  /** Feature bits the transport carries (default: all the model offers). */
  transportFeatures?: bigint;
  /** PCI device number on bus 0 (default: the next free one). */
  device?: number;
}

export interface BadAccess {
  readonly where: string;
  readonly kind: 'read' | 'write';
  readonly offset: number;
  readonly size: number;
  readonly reason: string;
}

const MAX_RECORDS = 256;

function isPow2(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

function ceilPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

function classCodeFor(type: number): number {
  if (type === 1) return 0x020000; // network controller
  if (type === 2) return 0x010000; // mass storage (as QEMU's virtio-blk-pci)
  return 0xff0000;
}

/** Per-core signal adapter: only the core the driver is using may raise interrupts. */
class CoreSignals implements TransportSignals {
  constructor(private readonly dev: VirtioPciDevice, private readonly core: VirtioCore) {}
  usedBuffer(index: number): void {
    if (this.dev.active === this.core) this.dev.usedBuffer(index);
  }
  configChange(): void {
    if (this.dev.active === this.core) this.dev.configChange();
  }
  reset(): void {
    if (this.dev.active === this.core) this.dev.resetTransport();
  }
}

export class VirtioPciDevice {
  readonly mode: VirtioPciMode;
  /** The modern interface's core (modern, transitional). */
  readonly modern: VirtioCore | undefined;
  /** The legacy interface's core (legacy, transitional). */
  readonly legacyCore: VirtioCore | undefined;
  /** The core the driver is using now. */
  active: VirtioCore;
  fn!: PciFunction;
  readonly msixVectors: number;
  readonly mappableVectors: number;
  readonly notifyOffMultiplier: number;
  readonly notifyLength: number;
  readonly numQueues: number;
  /** Offset of the PCI_CFG capability in config space (0: none). */
  pciCfgCap = 0;
  private isr = 0;
  private configVector = VIRTIO_MSI_NO_VECTOR;
  private readonly queueVectors: number[];
  private deviceFeatureSel = 0;
  private driverFeatureSel = 0;
  private queueSel = 0;
  private legacyQueueSel = 0;
  private readonly legacyPfn: number[];
  readonly badAccesses: BadAccess[] = [];
  badAccessCount = 0;
  readonly stats = { msix: 0, intx: 0, suppressed: 0, notifies: 0 };

  constructor(model: VirtioDeviceModel, machine: Machine, opts: VirtioPciOptions = {}) {
    this.mode = opts.mode ?? 'modern';
    const coreOpts = { notifyLatencyNs: opts.notifyLatencyNs, transportFeatures: opts.transportFeatures };
    if (this.mode !== 'legacy') this.modern = new VirtioCore(machine.mem, machine.scheduler, model, { ...coreOpts, legacy: false });
    if (this.mode !== 'modern') this.legacyCore = new VirtioCore(machine.mem, machine.scheduler, model, { ...coreOpts, legacy: true });
    this.active = (this.modern ?? this.legacyCore)!;
    this.modern?.attach(new CoreSignals(this, this.modern));
    this.legacyCore?.attach(new CoreSignals(this, this.legacyCore));
    // Both cores bound the model to themselves; the model's own configuration changes belong to
    // whichever interface the driver is using.
    model.bind?.({ configChanged: () => this.active.configChanged() });
    this.numQueues = model.numQueues;
    const mult = opts.notifyOffMultiplier ?? 4;
    if (mult !== 0 && (!isPow2(mult) || mult < 2)) throw new UsageError('pci.notify_mult', 'notify_off_multiplier must be 0 or an even power of two', { statements: ['pci.device.31'], seen: String(mult) });
    if (mult !== 0 && mult % 4 !== 0 && this.modern && hasFeature(this.modern.deviceFeatures, F.NOTIFICATION_DATA)) {
      throw new UsageError('pci.notify_mult', 'with NOTIFICATION_DATA the multiplier must be a multiple of 4', { statements: ['pci.device.35'], seen: String(mult) });
    }
    this.notifyOffMultiplier = mult;
    // pci.device.32/33/37/38: room for every queue's notify address plus a 4-byte write
    this.notifyLength = Math.max(4, (this.numQueues - 1) * mult + 4);
    this.msixVectors = Math.min(2048, opts.msixVectors ?? Math.max(2, this.numQueues + 1));
    this.mappableVectors = Math.min(this.msixVectors, opts.mappableVectors ?? this.msixVectors);
    this.queueVectors = new Array<number>(this.numQueues).fill(VIRTIO_MSI_NO_VECTOR);
    this.legacyPfn = new Array<number>(this.numQueues).fill(0);
  }

  /** The core of the modern interface, or the legacy one for a legacy-only device. */
  get core(): VirtioCore {
    return (this.modern ?? this.legacyCore)!;
  }

  // ------------------------------------------------------------------ interface selection

  /** The driver writes through `core`'s interface: make it the active one, resetting the other. */
  private use(core: VirtioCore): void {
    if (this.active === core) return;
    const old = this.active;
    if (old.status !== 0) old.reset(); // resets transport state through its signals
    this.active = core;
    this.resetTransport();
  }

  // ------------------------------------------------------------------ interrupts

  usedBuffer(index: number): void {
    const fn = this.fn;
    if (fn.msixEnabled) {
      const v = this.queueVectors[index] ?? VIRTIO_MSI_NO_VECTOR;
      // pci.device.64: no vector, no interrupt
      if (v === VIRTIO_MSI_NO_VECTOR) {
        this.stats.suppressed++;
        return;
      }
      this.stats.msix++;
      fn.msixNotify(v);
      return;
    }
    // pci.device.42 / pci.device.43: ISR bit first, then the pin (Interrupt Status follows the ISR)
    this.isr |= ISR_QUEUE;
    this.stats.intx++;
    fn.setIntx(true);
  }

  configChange(): void {
    const fn = this.fn;
    this.isr |= ISR_CONFIG; // pci.device.41
    if (fn.msixEnabled) {
      if (this.configVector === VIRTIO_MSI_NO_VECTOR) {
        this.stats.suppressed++; // pci.device.65
        return;
      }
      this.stats.msix++;
      fn.msixNotify(this.configVector);
      return;
    }
    this.stats.intx++;
    fn.setIntx(true);
  }

  /** Device reset: ISR, vectors (pci.device.61: all events unmapped), selectors. */
  resetTransport(): void {
    this.isr = 0;
    this.fn?.setIntx(false);
    this.configVector = VIRTIO_MSI_NO_VECTOR;
    this.queueVectors.fill(VIRTIO_MSI_NO_VECTOR);
    this.deviceFeatureSel = 0;
    this.driverFeatureSel = 0;
    this.queueSel = 0;
    this.legacyQueueSel = 0;
    this.legacyPfn.fill(0);
  }

  /** ISR read: returns and clears the bits, lowering INTx (pci.device.44). */
  private readIsr(): number {
    const v = this.isr;
    this.isr = 0;
    this.fn.setIntx(false);
    return v;
  }

  /** A vector the device can map, or NO_VECTOR (pci.device.58, pci.device.63). */
  private mapVector(v: number): number {
    if (v === VIRTIO_MSI_NO_VECTOR) return v;
    if (v >= this.msixVectors || v >= this.mappableVectors) return VIRTIO_MSI_NO_VECTOR;
    return v;
  }

  get interruptStatus(): number {
    return this.isr;
  }

  vectorOf(queue: number | 'config'): number {
    return queue === 'config' ? this.configVector : (this.queueVectors[queue] ?? VIRTIO_MSI_NO_VECTOR);
  }

  private bad(where: string, kind: 'read' | 'write', offset: number, size: number, reason: string): void {
    this.badAccessCount++;
    if (this.badAccesses.length >= MAX_RECORDS) this.badAccesses.shift();
    this.badAccesses.push({ where, kind, offset, size, reason });
  }

  private driverError(core: VirtioCore, code: string, message: string, statements: string[], seen?: string): void {
    core.record(new DriverMisbehaviourError(code, message, { statements, seen }), false);
  }

  // ------------------------------------------------------------------ modern: BAR4

  /** The handler of BAR4 (also used by the PCI_CFG window). */
  readonly modernBar: RegisterHandler = {
    read: (off, size) => this.guard(() => this.modernRead(off, size), 'bar4', 'read', off, size),
    write: (off, size, v) => void this.guard(() => (this.modernWrite(off, size, v >>> 0), 0), 'bar4', 'write', off, size),
  };

  private guard(f: () => number, where: string, kind: 'read' | 'write', off: number, size: number): number {
    try {
      return f() >>> 0;
    } catch (e) {
      this.bad(where, kind, off, size, `internal error: ${e instanceof Error ? e.message : String(e)}`);
      return 0;
    }
  }

  private modernRead(off: number, size: AccessSize): number {
    const L = ModernLayout;
    if (off >= L.COMMON && off < L.COMMON + L.REGION) return this.commonRead(off - L.COMMON, size);
    if (off >= L.ISR && off < L.ISR + L.REGION) {
      if (off !== L.ISR) return 0;
      return this.readIsr();
    }
    if (off >= L.DEVICE && off < L.DEVICE + L.REGION) return this.deviceCfgRead(off - L.DEVICE, size);
    if (off >= L.NOTIFY && off < L.NOTIFY + this.notifyLength) return 0;
    this.bad('bar4', 'read', off, size, 'read outside every virtio structure');
    return 0;
  }

  private modernWrite(off: number, size: AccessSize, v: number): void {
    const L = ModernLayout;
    if (off >= L.COMMON && off < L.COMMON + L.REGION) return this.commonWrite(off - L.COMMON, size, v);
    if (off >= L.DEVICE && off < L.DEVICE + L.REGION) return this.deviceCfgWrite(off - L.DEVICE, size, v);
    if (off >= L.NOTIFY && off < L.NOTIFY + this.notifyLength) return this.notifyWrite(off - L.NOTIFY, size, v);
    this.bad('bar4', 'write', off, size, off >= L.ISR && off < L.ISR + L.REGION ? 'ISR status is read-only' : 'write outside every virtio structure');
  }

  /** Check a common-config access width (pci.driver.5; 64-bit fields may be accessed as two halves, pci.device.8). */
  private commonWidthOk(off: number, size: number): boolean {
    const w = COMMON_FIELD_WIDTH[off];
    if (w !== undefined) return w === size || (w === 8 && size === 4);
    const base = off - 4;
    return COMMON_FIELD_WIDTH[base] === 8 && size === 4;
  }

  private commonRead(off: number, size: AccessSize): number {
    const core = this.modern!;
    if (!this.commonWidthOk(off, size)) {
      this.bad('common', 'read', off, size, off >= Common.SIZE ? 'beyond virtio_pci_common_cfg' : 'wrong access width (pci.driver.5)');
      return 0;
    }
    const q = core.queueConfig(this.queueSel);
    const hi = (x: number): number => Math.floor(x / 0x1_0000_0000) >>> 0;
    const lo = (x: number): number => x % 0x1_0000_0000 >>> 0;
    switch (off) {
      case Common.DEVICE_FEATURE_SELECT:
        return this.deviceFeatureSel;
      case Common.DEVICE_FEATURE:
        return core.deviceFeatureWord(this.deviceFeatureSel); // pci.device.14
      case Common.DRIVER_FEATURE_SELECT:
        return this.driverFeatureSel;
      case Common.DRIVER_FEATURE:
        return core.driverFeatureWord(this.driverFeatureSel); // pci.device.15
      case Common.CONFIG_MSIX_VECTOR:
        return this.configVector; // pci.device.60
      case Common.NUM_QUEUES:
        return core.numQueues;
      case Common.DEVICE_STATUS:
        return this.active === core ? core.status : 0;
      case Common.CONFIG_GENERATION:
        return core.generation & 0xff;
      case Common.QUEUE_SELECT:
        return this.queueSel;
      case Common.QUEUE_SIZE: {
        if (!q) return 0; // pci.device.25
        // pci.device.26: without RING_PACKED only 0 or a power of two is presented
        if (!hasFeature(core.features, F.RING_PACKED) && !isPow2(q.size) && q.size !== 0) return 1 << Math.floor(Math.log2(q.size));
        return q.size;
      }
      case Common.QUEUE_MSIX_VECTOR:
        return q ? this.queueVectors[q.index]! : VIRTIO_MSI_NO_VECTOR;
      case Common.QUEUE_ENABLE:
        return q?.ready ? 1 : 0; // pci.device.19
      case Common.QUEUE_NOTIFY_OFF:
        return q ? q.index : 0;
      case Common.QUEUE_DESC:
        return q ? lo(q.desc) : 0;
      case Common.QUEUE_DESC + 4:
        return q ? hi(q.desc) : 0;
      case Common.QUEUE_DRIVER:
        return q ? lo(q.driver) : 0;
      case Common.QUEUE_DRIVER + 4:
        return q ? hi(q.driver) : 0;
      case Common.QUEUE_DEVICE:
        return q ? lo(q.device) : 0;
      case Common.QUEUE_DEVICE + 4:
        return q ? hi(q.device) : 0;
      case Common.QUEUE_NOTIF_CONFIG_DATA:
        return q && hasFeature(core.deviceFeatures, F.NOTIF_CONFIG_DATA) ? notifConfigData(q.index) : 0;
      case Common.QUEUE_RESET:
        // pci.device.20 to pci.device.24: 1 only while a reset is in progress (ours completes at once)
        return q?.resetting ? 1 : 0;
      case Common.ADMIN_QUEUE_INDEX:
        return core.numQueues; // no admin queues: ADMIN_VQ is never offered
      case Common.ADMIN_QUEUE_NUM:
        return 0;
      default:
        return 0;
    }
  }

  private commonWrite(off: number, size: AccessSize, v: number): void {
    const core = this.modern!;
    if (!this.commonWidthOk(off, size)) {
      this.bad('common', 'write', off, size, off >= Common.SIZE ? 'beyond virtio_pci_common_cfg' : 'wrong access width (pci.driver.5)');
      return;
    }
    const sel = this.queueSel;
    const q = core.queueConfig(sel);
    switch (off) {
      case Common.DEVICE_FEATURE_SELECT:
        this.deviceFeatureSel = v;
        return;
      case Common.DRIVER_FEATURE_SELECT:
        this.driverFeatureSel = v;
        return;
      case Common.DRIVER_FEATURE:
        this.use(core);
        core.writeDriverFeatureWord(this.driverFeatureSel, v);
        return;
      case Common.CONFIG_MSIX_VECTOR:
        this.configVector = this.mapVector(v & 0xffff);
        return;
      case Common.DEVICE_STATUS:
        this.use(core);
        core.writeStatus(v & 0xff); // 0 resets: pci.device.18
        return;
      case Common.QUEUE_SELECT:
        this.queueSel = v & 0xffff;
        return;
      case Common.QUEUE_SIZE:
        this.use(core);
        // the core refuses it while the queue is enabled; packed size 0 / split non-power-of-two
        // are refused when the queue is enabled (pci.driver.16, pci.driver.17)
        core.setQueueSize(sel, v & 0xffff);
        return;
      case Common.QUEUE_MSIX_VECTOR:
        if (q) this.queueVectors[sel] = this.mapVector(v & 0xffff);
        return;
      case Common.QUEUE_ENABLE:
        this.use(core);
        if ((v & 0xffff) === 0) {
          // pci.driver.20: a driver never writes 0 (queue_reset stops a queue)
          this.driverError(core, 'pci.queue_enable_0', 'driver wrote 0 to queue_enable', ['pci.driver.20'], `queue ${sel}`);
          return;
        }
        core.setQueueReady(sel, true);
        return;
      case Common.QUEUE_DESC:
      case Common.QUEUE_DESC + 4:
      case Common.QUEUE_DRIVER:
      case Common.QUEUE_DRIVER + 4:
      case Common.QUEUE_DEVICE:
      case Common.QUEUE_DEVICE + 4: {
        this.use(core);
        const area = off < Common.QUEUE_DRIVER ? 'desc' : off < Common.QUEUE_DEVICE ? 'driver' : 'device';
        core.setQueueAreaHalf(sel, area, off % 8 === 4, v >>> 0);
        return;
      }
      case Common.QUEUE_RESET:
        if (!hasFeature(core.features, F.RING_RESET)) {
          this.driverError(core, 'pci.queue_reset_unneg', 'queue_reset written without VIRTIO_F_RING_RESET', [], `queue ${sel}`);
          return;
        }
        if ((v & 1) && q) {
          core.resetQueue(sel); // vq_reset.device.1, vq_reset.device.2, pci.device.22
          this.queueVectors[sel] = VIRTIO_MSI_NO_VECTOR;
        }
        return;
      default:
        // pci.driver.15: device_feature, num_queues, config_generation, queue_notify_off, queue_notif_config_data
        this.driverError(core, 'pci.ro_write', `driver wrote read-only common config field at ${hex(off)}`, ['pci.driver.15'], hex(v));
    }
  }

  private deviceCfgRead(off: number, size: AccessSize): number {
    const core = this.modern!;
    if (size === 8 || off % size !== 0) {
      this.bad('device', 'read', off, size, 'device config read must be 8/16/32-bit and aligned (pci.driver.5)');
      return 0;
    }
    return core.readConfig(off, size);
  }

  private deviceCfgWrite(off: number, size: AccessSize, v: number): void {
    const core = this.modern!;
    if (size === 8 || off % size !== 0) {
      this.bad('device', 'write', off, size, 'device config write must be 8/16/32-bit and aligned (pci.driver.5)');
      return;
    }
    core.writeConfig(off, size, v);
  }

  /** Queue Notify: the address names the queue; the value is checked against what the spec asks of the driver. */
  private notifyWrite(off: number, size: AccessSize, v: number): void {
    const core = this.modern!;
    const mult = this.notifyOffMultiplier;
    const cfgData = hasFeature(core.features, F.NOTIF_CONFIG_DATA);
    const low = v & 0xffff;
    let index: number;
    if (mult === 0) {
      index = cfgData ? notifIndexOf(low) : low;
    } else {
      if (off % mult !== 0) {
        this.bad('notify', 'write', off, size, 'notification between queue notify addresses');
        return;
      }
      index = off / mult;
    }
    const nd = hasFeature(core.features, F.NOTIFICATION_DATA);
    // pci.driver.38 / pci.driver.39: 16-bit without NOTIFICATION_DATA, 32-bit with it
    if (size !== (nd ? 4 : 2)) this.driverError(core, 'pci.notify_width', `notification of ${size} bytes`, [nd ? 'pci.driver.39' : 'pci.driver.38'], `expected ${nd ? 4 : 2}`);
    // pci.driver.40 to pci.driver.43: the queue index, or queue_notif_config_data
    const expected = cfgData ? notifConfigData(index) : index;
    if (low !== expected) this.driverError(core, 'pci.notify_value', 'notification value does not name the queue', cfgData ? ['pci.driver.42', 'pci.driver.43'] : ['pci.driver.40', 'pci.driver.41'], `${hex(low)}, expected ${hex(expected)}`);
    this.stats.notifies++;
    core.notify(index);
  }

  // ------------------------------------------------------------------ PCI_CFG window

  /** Install the PCI_CFG access window's side effects (pci.device.52, pci.device.53). */
  pciCfgHook(capOffset: number): { read(offset: number, size: 1 | 2 | 4): number | undefined; write(offset: number, size: 1 | 2 | 4, value: number): void } {
    const C = capOffset;
    const D = C + PciCap.OFF_PCI_CFG_DATA;
    const window = (): { bar: number; off: number; len: number } | null => {
      const cfg = this.fn.cfg;
      const dv = new DataView(cfg.buffer);
      const bar = cfg[C + PciCap.OFF_BAR]!;
      const off = dv.getUint32(C + PciCap.OFF_OFFSET, true);
      const len = dv.getUint32(C + PciCap.OFF_LENGTH, true);
      // pci.driver.29 / pci.driver.31: an aligned 1/2/4-byte access inside a virtio structure of BAR4
      if (bar !== ModernLayout.BAR || (len !== 1 && len !== 2 && len !== 4) || off % len !== 0 || off + len > this.fn.barSize(ModernLayout.BAR)) {
        this.driverError(this.core, 'pci.cfg_window', 'PCI_CFG window does not address a virtio structure', ['pci.driver.29', 'pci.driver.31'], `bar ${bar} offset ${hex(off)} length ${len}`);
        return null;
      }
      return { bar, off, len };
    };
    return {
      read: (offset, size) => {
        if (offset + size <= D || offset >= D + 4) return undefined;
        const w = window();
        if (!w) return undefined;
        const v = this.modernBar.read(w.off, w.len as AccessSize);
        for (let i = 0; i < w.len; i++) this.fn.cfg[D + i] = (v >>> (8 * i)) & 0xff;
        return undefined; // the stored bytes are read back
      },
      write: (offset, size) => {
        if (offset + size <= D || offset >= D + 4) return;
        const w = window();
        if (!w) return;
        const dv = new DataView(this.fn.cfg.buffer);
        const v = w.len === 1 ? this.fn.cfg[D]! : w.len === 2 ? dv.getUint16(D, true) : dv.getUint32(D, true);
        this.modernBar.write(w.off, w.len as AccessSize, v);
      },
    };
  }

  // ------------------------------------------------------------------ legacy: BAR0

  readonly legacyBar: RegisterHandler = {
    read: (off, size) => this.guard(() => this.legacyRead(off, size), 'bar0', 'read', off, size),
    write: (off, size, v) => void this.guard(() => (this.legacyWrite(off, size, v >>> 0), 0), 'bar0', 'write', off, size),
  };

  private get legacyConfigOffset(): number {
    return this.fn.msixEnabled ? Legacy.CONFIG_OFF_MSIX : Legacy.CONFIG_OFF;
  }

  private legacyRead(off: number, size: AccessSize): number {
    const core = this.legacyCore!;
    const cfgOff = this.legacyConfigOffset;
    if (off >= cfgOff) {
      // Legacy config space: any access width gives the bytes of the natural layout (guest
      // endian: the simulated guest is x86, little-endian).
      const n = size === 8 ? 4 : size;
      const o = off - cfgOff;
      if (o % n === 0) return core.readConfig(o, n as 1 | 2 | 4);
      let v = 0;
      for (let i = 0; i < n; i++) v |= core.readConfig(o + i, 1) << (8 * i);
      return v >>> 0;
    }
    const q = core.queueConfig(this.legacyQueueSel);
    switch (off) {
      case Legacy.HOST_FEATURES:
        return core.deviceFeatureWord(0);
      case Legacy.GUEST_FEATURES:
        return core.driverFeatureWord(0);
      case Legacy.QUEUE_PFN:
        return this.legacyPfn[this.legacyQueueSel] ?? 0;
      case Legacy.QUEUE_NUM:
        return q ? q.maxSize : 0;
      case Legacy.QUEUE_SEL:
        return this.legacyQueueSel;
      case Legacy.QUEUE_NOTIFY:
        return 0;
      case Legacy.STATUS:
        return this.active === core ? core.status : 0;
      case Legacy.ISR:
        return this.readIsr();
      case Legacy.CONFIG_VECTOR:
        return this.configVector;
      case Legacy.QUEUE_VECTOR:
        return q ? this.queueVectors[q.index]! : VIRTIO_MSI_NO_VECTOR;
      default:
        this.bad('bar0', 'read', off, size, 'not a legacy register');
        return 0;
    }
  }

  private legacyWrite(off: number, size: AccessSize, v: number): void {
    const core = this.legacyCore!;
    const cfgOff = this.legacyConfigOffset;
    if (off >= cfgOff) {
      this.use(core);
      const n = size === 8 ? 4 : size;
      core.writeConfig(off - cfgOff, n as 1 | 2 | 4, v);
      return;
    }
    const sel = this.legacyQueueSel;
    switch (off) {
      case Legacy.GUEST_FEATURES:
        this.use(core);
        core.writeDriverFeatureWord(0, v);
        return;
      case Legacy.QUEUE_PFN:
        this.use(core);
        this.writePfn(sel, v);
        return;
      case Legacy.QUEUE_SEL:
        this.legacyQueueSel = v & 0xffff;
        return;
      case Legacy.QUEUE_NOTIFY:
        this.stats.notifies++;
        core.notify(v & 0xffff);
        return;
      case Legacy.STATUS:
        this.use(core);
        core.writeStatus(v & 0xff);
        return;
      case Legacy.CONFIG_VECTOR:
        this.configVector = this.mapVector(v & 0xffff);
        return;
      case Legacy.QUEUE_VECTOR:
        if (sel < this.numQueues) this.queueVectors[sel] = this.mapVector(v & 0xffff);
        return;
      default:
        this.bad('bar0', 'write', off, size, 'read-only or undefined legacy register');
    }
  }

  /** Legacy Queue Address: the split ring at PFN * 4096, used ring aligned to 4096; 0 stops the queue. */
  private writePfn(sel: number, pfn: number): void {
    const core = this.legacyCore!;
    const q = core.queueConfig(sel);
    if (!q) {
      this.driverError(core, 'queue.index', 'legacy queue address for a queue that does not exist', [], String(sel));
      return;
    }
    if (pfn === 0) {
      this.legacyPfn[sel] = 0;
      core.setQueueReady(sel, false);
      return;
    }
    if (q.ready) {
      this.driverError(core, 'queue.ready_write', 'legacy queue address rewritten while the queue is in use', [], `queue ${sel}`);
      return;
    }
    const l = legacySplitLayout(pfn * Legacy.PAGE, q.size, Legacy.ALIGN);
    core.setQueueArea(sel, 'desc', l.desc);
    core.setQueueArea(sel, 'driver', l.driver);
    core.setQueueArea(sel, 'device', l.device);
    core.setQueueReady(sel, true);
    this.legacyPfn[sel] = q.ready ? pfn : 0;
  }
}

/** The value a queue's notifications carry with NOTIF_CONFIG_DATA (device-chosen; here not the index, to catch drivers that send the index). */
export function notifConfigData(index: number): number {
  return (index + 0x4000) & 0xffff;
}

function notifIndexOf(data: number): number {
  return (data - 0x4000) & 0xffff;
}

export interface AttachedPci {
  readonly transport: VirtioPciDevice;
  /** The modern core (modern, transitional), else the legacy one. */
  readonly core: VirtioCore;
  readonly fn: PciFunction;
}

/** Put `model` on the machine's PCI bus as a virtio-pci function. */
export function attachVirtioPci(machine: Machine, model: VirtioDeviceModel, opts: VirtioPciOptions = {}): AttachedPci {
  const mode = opts.mode ?? 'modern';
  const type = model.deviceType;
  const transitionalId = TRANSITIONAL_DEVICE_ID[type];
  if (mode !== 'modern' && transitionalId === undefined) {
    throw new UsageError('pci.no_transitional_id', `device type ${type} has no transitional PCI device id, so it cannot be ${mode}`, { statements: ['pci.device.3'], expected: `one of ${Object.keys(TRANSITIONAL_DEVICE_ID).join(', ')}`, seen: String(type) });
  }
  const dev = new VirtioPciDevice(model, machine, opts);
  const bars: { index: number; kind: 'io' | 'mem32' | 'mem64'; size: number; prefetchable?: boolean; handler?: RegisterHandler }[] = [];
  if (mode !== 'modern') bars.push({ index: ModernLayout.LEGACY_BAR, kind: 'io', size: ceilPow2(Legacy.CONFIG_OFF_MSIX + model.configSize), handler: dev.legacyBar });
  const n = dev.msixVectors;
  const pbaOffset = Math.max(0x800, Math.ceil((n * 16) / 0x800) * 0x800);
  if (n > 0) bars.push({ index: ModernLayout.MSIX_BAR, kind: 'mem32', size: Math.max(0x1000, ceilPow2(pbaOffset + Math.ceil(n / 64) * 8)) });
  if (mode !== 'legacy') bars.push({ index: ModernLayout.BAR, kind: 'mem64', size: ceilPow2(ModernLayout.NOTIFY + dev.notifyLength), prefetchable: true, handler: dev.modernBar });
  const fn = pciHost(machine).addFunction({
    name: `virtio-pci:${model.name}`,
    vendorId: VIRTIO_PCI_VENDOR_ID, // pci.device.2
    deviceId: mode === 'modern' ? MODERN_DEVICE_ID_BASE + type : transitionalId!, // pci.device.3
    revision: mode === 'modern' ? 1 : 0, // pci.device.6; transitional devices have revision 0
    classCode: classCodeFor(type),
    subsystemVendorId: VIRTIO_PCI_VENDOR_ID,
    subsystemId: mode === 'modern' ? 0x1100 : type, // pci.device.7; transitional: the virtio device type
    interruptPin: 1,
    bars,
    msix: n > 0 ? { vectors: n, tableBar: ModernLayout.MSIX_BAR, tableOffset: 0, pbaBar: ModernLayout.MSIX_BAR, pbaOffset } : undefined,
    device: opts.device,
  });
  dev.fn = fn;
  if (mode !== 'legacy') {
    const cap = (cfgType: number, offset: number, length: number, extra = 0): Uint8Array => {
      // pci.device.9: cap_len covers the whole structure including its extra field
      const b = new Uint8Array(PciCap.CAP_LEN + extra);
      const v = new DataView(b.buffer);
      b[2] = b.length;
      b[PciCap.OFF_CFG_TYPE] = cfgType;
      b[PciCap.OFF_BAR] = cfgType === PciCap.PCI_CFG ? 0 : ModernLayout.BAR;
      v.setUint32(PciCap.OFF_OFFSET, offset, true);
      v.setUint32(PciCap.OFF_LENGTH, length, true);
      return b;
    };
    // Order of preference: one of each type (pci.device.11 applies to duplicates only).
    fn.addCapability(0x09, cap(PciCap.COMMON_CFG, ModernLayout.COMMON, Common.SIZE)); // pci.device.12, pci.device.13
    const notify = cap(PciCap.NOTIFY_CFG, ModernLayout.NOTIFY, dev.notifyLength, 4); // pci.device.29..39
    new DataView(notify.buffer).setUint32(PciCap.OFF_NOTIFY_MULT, dev.notifyOffMultiplier, true);
    fn.addCapability(0x09, notify);
    fn.addCapability(0x09, cap(PciCap.ISR_CFG, ModernLayout.ISR, 1)); // pci.device.40
    if (model.configSize > 0) fn.addCapability(0x09, cap(PciCap.DEVICE_CFG, ModernLayout.DEVICE, model.configSize)); // pci.device.45
    // pci.device.51: the PCI configuration access capability; bar, offset, length and data are the driver's
    let window: ReturnType<VirtioPciDevice['pciCfgHook']> | undefined;
    const capOffset = fn.addCapability(0x09, cap(PciCap.PCI_CFG, 0, 0, 4), {
      writable: [[PciCap.OFF_BAR, PciCap.OFF_BAR + 1], [PciCap.OFF_OFFSET, PciCap.OFF_PCI_CFG_DATA + 4]],
      hook: { read: (o, s) => window?.read(o, s), write: (o, s, v) => window?.write(o, s, v) },
    });
    window = dev.pciCfgHook(capOffset);
    dev.pciCfgCap = capOffset;
  }
  return { transport: dev, core: dev.core, fn };
}
