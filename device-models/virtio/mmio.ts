/**
 * virtio-mmio device transport (transport-mmio.tex), version 2 and legacy version 1, as a
 * RegisterHandler on the machine's bus. It decodes registers into calls on a VirtioCore and
 * carries the core's interrupts on a level-triggered line through InterruptStatus.
 *
 * Never throws for guest input: accesses of the wrong width or alignment read 0 / are dropped
 * and recorded (mmio.driver.4); reads of write-only and writes of read-only registers likewise
 * (mmio.driver.2, mmio.driver.3); writes the spec forbids in the current state are ignored by
 * the core and recorded, or set DEVICE_NEEDS_RESET where the device cannot go on.
 */
import type { AccessSize, RegisterHandler } from '../machine/bus.ts';
import type { IrqLine } from '../machine/irq.ts';
import type { Machine } from '../machine/machine.ts';
import { DriverMisbehaviourError, hex } from '../../spec-refs/errors.ts';
import { F, Mmio, Split, bit } from '../../spec-refs/abi/virtio.ts';
import { VirtioCore, type TransportSignals } from './core.ts';
import { legacySplitLayout } from './split-queue.ts';
import type { VirtioDeviceModel } from './model.ts';

/** Vendor id this transport reports ("pvkt", little endian). */
export const PVKIT_VENDOR_ID = 0x746b_7670;

export interface MmioTransportOptions {
  /** Legacy interface: Version 1, GuestPageSize / QueueAlign / QueuePFN. */
  legacy?: boolean;
}

/** A recorded bad register access. */
export interface MmioAccessRecord {
  readonly kind: 'read' | 'write';
  readonly offset: number;
  readonly size: number;
  readonly reason: string;
}

const MAX_RECORDS = 256;

export class VirtioMmioDevice implements RegisterHandler, TransportSignals {
  readonly core: VirtioCore;
  readonly legacy: boolean;
  private line: IrqLine | undefined;
  private _interruptStatus = 0;
  private deviceFeaturesSel = 0;
  private driverFeaturesSel = 0;
  private queueSel = 0;
  // legacy registers
  private guestPageSize = 0;
  private readonly queueAlign: number[];
  private readonly queuePfn: number[];
  /** Whether the QueueReset register exists (RING_RESET offered). */
  readonly hasQueueReset: boolean;
  readonly badAccesses: MmioAccessRecord[] = [];
  badAccessCount = 0;

  constructor(core: VirtioCore, opts: MmioTransportOptions = {}) {
    this.core = core;
    this.legacy = opts.legacy ?? core.legacy;
    this.queueAlign = new Array<number>(core.numQueues).fill(4096);
    this.queuePfn = new Array<number>(core.numQueues).fill(0);
    this.hasQueueReset = !this.legacy && (core.deviceFeatures & bit(F.RING_RESET)) !== 0n;
    core.attach(this);
  }

  /** Connect the interrupt line (done by attachVirtioMmio). */
  connect(line: IrqLine): void {
    this.line = line;
  }

  get interruptStatus(): number {
    return this._interruptStatus;
  }

  // ------------------------------------------------------------ TransportSignals

  usedBuffer(): void {
    this.raise(Mmio.INT_VRING);
  }

  configChange(): void {
    this.raise(Mmio.INT_CONFIG);
  }

  reset(): void {
    // mmio.device.5: InterruptStatus cleared on reset; the line goes low with it
    this._interruptStatus = 0;
    this.line?.deassert();
    this.deviceFeaturesSel = 0;
    this.driverFeaturesSel = 0;
    this.queueSel = 0;
    this.queuePfn.fill(0);
    this.queueAlign.fill(4096);
  }

  private raise(bits: number): void {
    // mmio.device.3: each event sets its bit; the level line stays up while any bit is set
    this._interruptStatus |= bits;
    this.line?.assert();
  }

  private bad(kind: 'read' | 'write', offset: number, size: number, reason: string): void {
    this.badAccessCount++;
    if (this.badAccesses.length >= MAX_RECORDS) this.badAccesses.shift();
    this.badAccesses.push({ kind, offset, size, reason });
  }

  // ------------------------------------------------------------ RegisterHandler

  read(offset: number, size: AccessSize): number {
    try {
      if (offset >= Mmio.CONFIG) return this.readConfig(offset - Mmio.CONFIG, size);
      if (size !== 4 || offset % 4 !== 0) {
        this.bad('read', offset, size, 'control registers take aligned 32-bit accesses only (mmio.driver.4)');
        return 0;
      }
      return this.readReg(offset) >>> 0;
    } catch (e) {
      this.bad('read', offset, size, internalError(e));
      return 0;
    }
  }

  write(offset: number, size: AccessSize, value: number): void {
    try {
      if (offset >= Mmio.CONFIG) {
        this.writeConfig(offset - Mmio.CONFIG, size, value);
        return;
      }
      if (size !== 4 || offset % 4 !== 0) {
        this.bad('write', offset, size, 'control registers take aligned 32-bit accesses only (mmio.driver.4)');
        return;
      }
      this.writeReg(offset, value >>> 0);
    } catch (e) {
      this.bad('write', offset, size, internalError(e));
    }
  }

  private readConfig(off: number, size: AccessSize): number {
    if (size === 8) {
      this.bad('read', Mmio.CONFIG + off, size, '64-bit config access (mmio.driver.5)');
      return 0;
    }
    return this.core.readConfig(off, size);
  }

  private writeConfig(off: number, size: AccessSize, value: number): void {
    if (size === 8) {
      this.bad('write', Mmio.CONFIG + off, size, '64-bit config access (mmio.driver.5)');
      return;
    }
    this.core.writeConfig(off, size, value);
  }

  private readReg(off: number): number {
    const core = this.core;
    const q = core.queueConfig(this.queueSel);
    switch (off) {
      case Mmio.MAGIC_VALUE:
        return Mmio.MAGIC; // mmio.device.1
      case Mmio.VERSION:
        return this.legacy ? 1 : 2; // mmio.device.2 (legacy devices report 1)
      case Mmio.DEVICE_ID:
        return core.model.deviceType;
      case Mmio.VENDOR_ID:
        return PVKIT_VENDOR_ID;
      case Mmio.DEVICE_FEATURES:
        return this.legacy && this.deviceFeaturesSel > 0 ? 0 : core.deviceFeatureWord(this.deviceFeaturesSel);
      case Mmio.QUEUE_NUM_MAX:
        return q ? q.maxSize : 0;
      case Mmio.QUEUE_READY:
        if (this.legacy) break;
        return q?.ready ? 1 : 0;
      case Mmio.QUEUE_PFN:
        if (!this.legacy) break;
        return this.queuePfn[this.queueSel] ?? 0;
      case Mmio.INTERRUPT_STATUS:
        return this._interruptStatus;
      case Mmio.STATUS:
        return core.status;
      case Mmio.SHM_LEN_LOW:
      case Mmio.SHM_LEN_HIGH:
      case Mmio.SHM_BASE_LOW:
      case Mmio.SHM_BASE_HIGH:
        if (this.legacy) break;
        return 0xffff_ffff; // no shared memory regions: length -1, base all ones
      case Mmio.QUEUE_RESET:
        if (!this.hasQueueReset) break;
        // mmio.device.11/12: 1 while a reset is in progress (ours completes at once)
        return q?.resetting ? 1 : 0;
      case Mmio.CONFIG_GENERATION:
        if (this.legacy) break;
        return core.generation; // mmio.device.6
      default:
        break;
    }
    this.bad('read', off, 4, 'read of a write-only or undefined register (mmio.driver.3)');
    return 0;
  }

  private writeReg(off: number, v: number): void {
    const core = this.core;
    const sel = this.queueSel;
    switch (off) {
      case Mmio.DEVICE_FEATURES_SEL:
        this.deviceFeaturesSel = v;
        return;
      case Mmio.DRIVER_FEATURES:
        if (this.legacy && this.driverFeaturesSel > 0) {
          if (v !== 0) core.writeDriverFeatureWord(this.driverFeaturesSel, v);
          return;
        }
        core.writeDriverFeatureWord(this.driverFeaturesSel, v);
        return;
      case Mmio.DRIVER_FEATURES_SEL:
        this.driverFeaturesSel = v;
        return;
      case Mmio.GUEST_PAGE_SIZE:
        if (!this.legacy) break;
        this.guestPageSize = v;
        return;
      case Mmio.QUEUE_SEL:
        this.queueSel = v;
        return;
      case Mmio.QUEUE_NUM:
        core.setQueueSize(sel, v);
        return;
      case Mmio.QUEUE_ALIGN:
        if (!this.legacy) break;
        if (sel < this.queueAlign.length) this.queueAlign[sel] = v;
        return;
      case Mmio.QUEUE_PFN:
        if (!this.legacy) break;
        this.writePfn(sel, v);
        return;
      case Mmio.QUEUE_READY:
        if (this.legacy) break;
        core.setQueueReady(sel, (v & 1) !== 0);
        return;
      case Mmio.QUEUE_NOTIFY:
        // With NOTIFICATION_DATA the low 16 bits still carry the queue index.
        core.notify(v & 0xffff);
        return;
      case Mmio.INTERRUPT_ACK:
        if (v & ~3) this.bad('write', off, 4, 'InterruptACK with undefined bits (mmio.driver.20)');
        this._interruptStatus &= ~v;
        if (this._interruptStatus === 0) this.line?.deassert();
        return;
      case Mmio.STATUS:
        core.writeStatus(v);
        return;
      case Mmio.QUEUE_DESC_LOW:
      case Mmio.QUEUE_DESC_HIGH:
        if (this.legacy) break;
        core.setQueueAreaHalf(sel, 'desc', off === Mmio.QUEUE_DESC_HIGH, v);
        return;
      case Mmio.QUEUE_DRIVER_LOW:
      case Mmio.QUEUE_DRIVER_HIGH:
        if (this.legacy) break;
        core.setQueueAreaHalf(sel, 'driver', off === Mmio.QUEUE_DRIVER_HIGH, v);
        return;
      case Mmio.QUEUE_DEVICE_LOW:
      case Mmio.QUEUE_DEVICE_HIGH:
        if (this.legacy) break;
        core.setQueueAreaHalf(sel, 'device', off === Mmio.QUEUE_DEVICE_HIGH, v);
        return;
      case Mmio.SHM_SEL:
        if (this.legacy) break;
        return; // no shared memory regions: the selection has nothing to select
      case Mmio.QUEUE_RESET:
        if (!this.hasQueueReset) break;
        // mmio.device.10: writing 1 resets the selected queue
        if (v & 1) this.queueReset(sel);
        return;
      default:
        break;
    }
    this.bad('write', off, 4, 'write of a read-only or undefined register (mmio.driver.2)');
  }

  /**
   * RING_RESET hook: reset one queue. The core detaches the ring and returns the queue to its
   * defaults; QueueReset and QueueReady then read 0 (mmio.device.12).
   */
  queueReset(index: number): void {
    if (!(this.core.features & bit(F.RING_RESET))) {
      this.core.record(new DriverMisbehaviourError('mmio.queue_reset', 'QueueReset written without VIRTIO_F_RING_RESET negotiated', { statements: ['mmio.device.10'] }), false);
      return;
    }
    this.core.resetQueue(index);
  }

  /** Legacy: QueuePFN places the whole split ring at PFN * GuestPageSize; 0 stops the queue. */
  private writePfn(sel: number, pfn: number): void {
    const q = this.core.queueConfig(sel);
    if (!q) {
      this.core.record(new DriverMisbehaviourError('queue.index', 'QueuePFN for a queue that does not exist', { seen: String(sel) }), false);
      return;
    }
    if (pfn === 0) {
      this.queuePfn[sel] = 0;
      this.core.setQueueReady(sel, false);
      return;
    }
    if (q.ready) {
      this.core.record(new DriverMisbehaviourError('queue.ready_write', 'QueuePFN rewritten while the queue is in use', { seen: `queue ${sel} pfn ${hex(pfn)}` }), false);
      return;
    }
    const page = this.guestPageSize;
    const align = this.queueAlign[sel] ?? 4096;
    if (page === 0 || (page & (page - 1)) !== 0 || align === 0 || (align & (align - 1)) !== 0 || align < Split.USED_ALIGN) {
      this.core.needsReset(new DriverMisbehaviourError('mmio.legacy_layout', 'legacy queue set up with an unusable GuestPageSize or QueueAlign', { expected: 'powers of two', seen: `page ${page}, align ${align}` }));
      return;
    }
    const l = legacySplitLayout(pfn * page, q.size, align);
    this.queuePfn[sel] = pfn;
    this.core.setQueueArea(sel, 'desc', l.desc);
    this.core.setQueueArea(sel, 'driver', l.driver);
    this.core.setQueueArea(sel, 'device', l.device);
    this.core.setQueueReady(sel, true);
    if (!q.ready) this.queuePfn[sel] = 0;
  }
}

/**
 * Feature bits virtio-mmio can carry: everything but SR-IOV, and NOTIF_CONFIG_DATA (the per-queue
 * notification value is a virtio-pci field, queue_notif_config_data; virtio-mmio has no register
 * for it, transport-mmio.tex).
 */
export const MMIO_TRANSPORT_FEATURES = ((1n << 128n) - 1n) & ~bit(F.SR_IOV) & ~bit(F.NOTIF_CONFIG_DATA);

export interface AttachMmioOptions {
  legacy?: boolean;
  notifyLatencyNs?: number;
  /** Offer RING_RESET through the QueueReset register (default: whatever the model offers). */
  transportFeatures?: bigint;
}

export interface AttachedMmio {
  readonly core: VirtioCore;
  readonly transport: VirtioMmioDevice;
  readonly base: number;
  readonly line: IrqLine;
  readonly vector: number;
}

/** Put `model` on `machine` as a virtio-mmio device in the next free slot. */
export function attachVirtioMmio(machine: Machine, model: VirtioDeviceModel, opts: AttachMmioOptions = {}): AttachedMmio {
  const legacy = opts.legacy ?? false;
  // features.device.15: SR-IOV is a PCI matter, never offered over virtio-mmio
  const transportFeatures = (opts.transportFeatures ?? MMIO_TRANSPORT_FEATURES) & MMIO_TRANSPORT_FEATURES;
  const core = new VirtioCore(machine.mem, machine.scheduler, model, { legacy, notifyLatencyNs: opts.notifyLatencyNs, transportFeatures });
  const transport = new VirtioMmioDevice(core, { legacy });
  const { base, line } = machine.addMmioDevice(`virtio-mmio:${model.name}`, transport);
  transport.connect(line);
  return { core, transport, base, line, vector: line.vector };
}

/** What a bad-access record says about an exception caught at the bus boundary (as pci.ts does). */
function internalError(e: unknown): string {
  return `internal error: ${e instanceof Error ? e.message : String(e)}`;
}
