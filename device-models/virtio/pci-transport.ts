/**
 * virtio-pci device transport, the state its interfaces share (transport-pci.tex): the cores of
 * the modern and legacy interfaces and which one the driver is using (a transitional device
 * resets the other, "Legacy Interfaces: A Note on PCI Device Layout"), the ISR status
 * (pci.device.41 to .44), the MSI-X vectors (pci.device.58, .61, .63 to .65), the selectors, and
 * the record of bad accesses. The legacy I/O BAR (pci-legacy.ts) and the modern capabilities and
 * BAR4 (pci.ts) build on this class.
 */
import type { PciFunction } from '../machine/pci.ts';
import type { Machine } from '../machine/machine.ts';
import { DriverMisbehaviourError, UsageError } from '../../spec-refs/errors.ts';
import { F, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { ISR_CONFIG, ISR_QUEUE, VIRTIO_MSI_NO_VECTOR } from '../../spec-refs/abi/virtio-pci.ts';
import { VirtioCore, type TransportSignals } from './core.ts';
import type { VirtioDeviceModel } from './model.ts';

export type VirtioPciMode = 'modern' | 'transitional' | 'legacy';

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

export function isPow2(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

/** Per-core signal adapter: only the core the driver is using may raise interrupts. */
class CoreSignals implements TransportSignals {
  constructor(private readonly dev: PciTransportBase, private readonly core: VirtioCore) {}
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

/** The shared state of a virtio-pci function; VirtioPciDevice (pci.ts) is the concrete class. */
export abstract class PciTransportBase {
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
  protected configVector = VIRTIO_MSI_NO_VECTOR;
  protected readonly queueVectors: number[];
  protected deviceFeatureSel = 0;
  protected driverFeatureSel = 0;
  protected queueSel = 0;
  protected legacyQueueSel = 0;
  protected readonly legacyPfn: number[];
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
  protected use(core: VirtioCore): void {
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
  protected readIsr(): number {
    const v = this.isr;
    this.isr = 0;
    this.fn.setIntx(false);
    return v;
  }

  /** A vector the device can map, or NO_VECTOR (pci.device.58, pci.device.63). */
  protected mapVector(v: number): number {
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

  protected bad(where: string, kind: 'read' | 'write', offset: number, size: number, reason: string): void {
    this.badAccessCount++;
    if (this.badAccesses.length >= MAX_RECORDS) this.badAccesses.shift();
    this.badAccesses.push({ where, kind, offset, size, reason });
  }

  protected driverError(core: VirtioCore, code: string, message: string, statements: string[], seen?: string): void {
    core.record(new DriverMisbehaviourError(code, message, { statements, seen }), false);
  }

  protected guard(f: () => number, where: string, kind: 'read' | 'write', off: number, size: number): number {
    try {
      return f() >>> 0;
    } catch (e) {
      this.bad(where, kind, off, size, `internal error: ${e instanceof Error ? e.message : String(e)}`);
      return 0;
    }
  }
}
