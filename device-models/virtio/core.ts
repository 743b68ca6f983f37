/**
 * The transport-agnostic device side of virtio: device status, feature negotiation, config
 * generation, per-queue configuration and the life cycle of the rings. A transport
 * (virtio-mmio, virtio-pci) decodes its registers into calls on a VirtioCore and implements
 * TransportSignals to carry the core's interrupts; a device model (VirtioDeviceModel) sees only
 * DeviceContext and DeviceQueue. The ring layouts (split, packed) sit behind the RingLayout
 * interface of ring.ts; ring-layouts.ts holds the table of them.
 *
 * Nothing here throws for guest input: a driver error is recorded, and where the device cannot
 * go on it sets DEVICE_NEEDS_RESET and sends a configuration-change notification.
 */
import type { GuestMemory } from '../machine/memory.ts';
import type { Scheduler, ScheduledEvent } from '../machine/scheduler.ts';
import { DriverMisbehaviourError, PvkitError, hex } from '../../spec-refs/errors.ts';
import { F, Status, bit, featureWord, hasFeature, statusNames, withFeatureWord } from '../../spec-refs/abi/virtio.ts';
import type { Chain, DeviceContext, DeviceQueue, VirtioDeviceModel } from './model.ts';
import type { CoreQueue, QueueConfig, RingHost, RingOptions } from './ring.ts';
import { ringLayout } from './ring-layouts.ts';

export type { CoreQueue, QueueConfig, RingHost, RingLayout, RingOptions } from './ring.ts';
export { registerRingLayout, ringLayout } from './ring-layouts.ts';

/** What a transport does for the core: raise its interrupts. */
export interface TransportSignals {
  /** A used-buffer notification for queue `index` (mmio: InterruptStatus bit 0; pci: the queue's vector). */
  usedBuffer(index: number): void;
  /** A configuration-change notification (mmio: InterruptStatus bit 1; pci: the config vector / ISR bit 1). */
  configChange(): void;
  /** The device was reset: drop pending interrupt state and lower lines. */
  reset(): void;
}

export interface VirtioCoreOptions {
  /** Legacy interface (virtio-mmio version 1, legacy virtio-pci): no FEATURES_OK, no VERSION_1. */
  legacy?: boolean;
  /** Delay between a driver notification and the model's queueNotify running (the iothread wake-up). Default 0. */
  notifyLatencyNs?: number;
  /** Feature bits the transport can carry (e.g. RING_RESET only where the transport has the register). Default: all. */
  transportFeatures?: bigint;
  /** VIRTIO_F_SUSPEND: least time between the driver setting SUSPEND and the device reporting it suspended. Default 0. */
  suspendLatencyNs?: number;
  /** VIRTIO_F_SUSPEND: time between the driver setting DRIVER_OK on a suspended device and the device running again. Default 0. */
  resumeLatencyNs?: number;
  /** VIRTIO_F_SUSPEND: how long in-flight requests may take to finish before suspending fails (DEVICE_NEEDS_RESET). Default 10 ms. */
  suspendTimeoutNs?: number;
}

/** Where a device is in the VIRTIO_F_SUSPEND cycle. */
export type SuspendState = 'running' | 'suspending' | 'suspended' | 'resuming';

const SUSPEND_POLL_NS = 1_000;

/** A recorded driver error (kept for the conformance monitor and for tests). */
export interface DriverErrorRecord {
  readonly at: number;
  readonly error: DriverMisbehaviourError;
  /** True when the error set DEVICE_NEEDS_RESET, false when the access was merely ignored. */
  readonly fatal: boolean;
}

const MAX_RECORDS = 256;
const ALL_FEATURES = (1n << 128n) - 1n;

/** A queue that is not live: pops nothing, completes nothing. Given to models for queues the driver did not enable. */
class DeadQueue implements CoreQueue {
  readonly layout = 'split' as const;
  constructor(readonly index: number, readonly size: number) {}
  pop(): Chain | null {
    return null;
  }
  push(): void {}
  flush(): void {}
  disableNotify(): void {}
  enableNotify(): boolean {
    return true;
  }
  stop(): void {}
}

export class VirtioCore implements RingHost {
  readonly mem: GuestMemory;
  readonly scheduler: Scheduler;
  readonly model: VirtioDeviceModel;
  readonly legacy: boolean;
  notifyLatencyNs: number;
  private signals: TransportSignals | undefined;

  private _status = 0;
  private _driverFeatures = 0n;
  private _negotiated = 0n;
  private readonly _deviceFeatures: bigint;
  private _generation = 0;
  readonly queues: QueueConfig[];
  private rings: (CoreQueue | null)[];
  private readonly pendingNotify: (ScheduledEvent | null)[];
  private ringOpts: RingOptions = { eventIdx: false, indirect: false, inOrder: false, legacy: false };
  /** Incremented on every reset: contexts and scheduled work of an earlier epoch are inert. */
  private epoch = 0;
  private ctx: DeviceContext | null = null;
  private _suspend: SuspendState = 'running';
  /** A configuration change happened while suspended: notify on resume (status_init.device.10). */
  private configPending = false;
  suspendLatencyNs: number;
  resumeLatencyNs: number;
  suspendTimeoutNs: number;

  readonly errors: DriverErrorRecord[] = [];
  errorCount = 0;
  /** Why the device last set DEVICE_NEEDS_RESET. */
  needsResetReason: PvkitError | undefined;
  /** Counters, for tests and benchmarks. */
  readonly stats = { notifies: 0, notifyRuns: 0, usedSignals: 0, configSignals: 0, resets: 0, suspends: 0, resumes: 0 };

  constructor(mem: GuestMemory, scheduler: Scheduler, model: VirtioDeviceModel, opts: VirtioCoreOptions = {}) {
    this.mem = mem;
    this.scheduler = scheduler;
    this.model = model;
    this.legacy = opts.legacy ?? false;
    this.notifyLatencyNs = opts.notifyLatencyNs ?? 0;
    this.suspendLatencyNs = opts.suspendLatencyNs ?? 0;
    this.resumeLatencyNs = opts.resumeLatencyNs ?? 0;
    this.suspendTimeoutNs = opts.suspendTimeoutNs ?? 10_000_000;
    let offered = model.offeredFeatures & (opts.transportFeatures ?? ALL_FEATURES);
    // A ring layout nobody implements is not offered.
    if (!ringLayout('packed')) offered &= ~bit(F.RING_PACKED);
    // The legacy interface has 32 feature bits and no VERSION_1 (features >= 32 all need VERSION_1).
    if (this.legacy) offered &= 0xffff_ffffn & ~(model.legacyWithheldFeatures ?? 0n);
    this._deviceFeatures = offered;
    const n = model.numQueues;
    this.queues = [];
    for (let i = 0; i < n; i++) {
      const max = model.queueMaxSize(i);
      this.queues.push({ index: i, maxSize: max, size: max, ready: false, desc: 0, driver: 0, device: 0, resetting: false });
    }
    this.rings = new Array<CoreQueue | null>(n).fill(null);
    this.pendingNotify = new Array<ScheduledEvent | null>(n).fill(null);
    model.bind?.({ configChanged: () => this.configChanged() });
  }

  /** The transport attaches itself once. */
  attach(signals: TransportSignals): void {
    this.signals = signals;
  }

  // ---------------------------------------------------------------- status

  get status(): number {
    return this._status;
  }

  get deviceFeatures(): bigint {
    return this._deviceFeatures;
  }

  /** What the driver has written so far. */
  get driverFeatures(): bigint {
    return this._driverFeatures;
  }

  /** The negotiated feature set (valid from FEATURES_OK, legacy: from DRIVER_OK). */
  get features(): bigint {
    return this._negotiated;
  }

  get generation(): number {
    return this._generation;
  }

  get driverOk(): boolean {
    return (this._status & Status.DRIVER_OK) !== 0;
  }

  get needsResetSet(): boolean {
    return (this._status & Status.DEVICE_NEEDS_RESET) !== 0;
  }

  get numQueues(): number {
    return this.queues.length;
  }

  /** VIRTIO_F_SUSPEND state. */
  get suspendState(): SuspendState {
    return this._suspend;
  }

  /**
   * A driver write of the status field. 0 resets the device (status_init.device.4). Otherwise bits
   * are only ever added: a driver may not clear one (status_init.driver.2), so the device keeps
   * them and records the attempt.
   */
  writeStatus(value: number): void {
    value &= 0xff;
    if (value === 0) {
      this.reset();
      return;
    }
    const old = this._status;
    if (this._suspend !== 'running') {
      this.suspendedStatusWrite(value);
      return;
    }
    if (value & Status.SUSPEND && !(old & Status.SUSPEND)) {
      // status_init.device.6: SUSPEND counts only on a completely initialised device that negotiated it
      value &= ~Status.SUSPEND;
      if (!this.legacy && hasFeature(this._negotiated, F.SUSPEND) && old & Status.DRIVER_OK && !(old & Status.DEVICE_NEEDS_RESET) && this.ctx) {
        this.beginSuspend(old | value);
        return;
      }
      this.record(new DriverMisbehaviourError('status.suspend_early', 'driver set SUSPEND before DRIVER_OK or without VIRTIO_F_SUSPEND; ignored', { statements: ['status_init.driver.15', 'status_init.device.6'], expected: 'DRIVER_OK set and VIRTIO_F_SUSPEND negotiated', seen: statusNames(old | value) }), false);
    }
    // (DEVICE_NEEDS_RESET is the device's bit: a driver writing status back without it clears nothing)
    if (old & ~value & 0xff & ~Status.DEVICE_NEEDS_RESET) {
      this.record(new DriverMisbehaviourError('status.clear', 'driver cleared device status bits without a reset', { statements: ['status_init.driver.2'], expected: `a superset of ${statusNames(old)}`, seen: statusNames(value) }), false);
    }
    // DEVICE_NEEDS_RESET belongs to the device; the driver cannot set it.
    let next = old | (value & ~Status.DEVICE_NEEDS_RESET);
    const added = next & ~old;
    if (added & Status.FEATURES_OK) {
      if (this.legacy) {
        // no FEATURES_OK in the legacy interface: the bit is just stored
      } else if (!this.featuresAcceptable(this._driverFeatures)) {
        next &= ~Status.FEATURES_OK; // features.device.3: refuse by not setting FEATURES_OK
      } else {
        this.negotiate(this._driverFeatures);
      }
    }
    this._status = next;
    if (added & Status.DRIVER_OK) this.driverOkSet();
  }

  private featuresAcceptable(f: bigint): boolean {
    const unoffered = f & ~this._deviceFeatures;
    if (unoffered) {
      this.record(new DriverMisbehaviourError('features.unoffered', 'driver accepted features the device did not offer', { statements: ['features.driver.1', 'features.device.3'], expected: `a subset of ${hex(Number(this._deviceFeatures & 0xffff_ffffn))}...`, seen: `extra bits 0x${unoffered.toString(16)}` }), false);
      return false;
    }
    if (!this.legacy && !hasFeature(f, F.VERSION_1)) {
      this.record(new DriverMisbehaviourError('features.version_1', 'driver did not accept VERSION_1 on a modern interface', { statements: ['features.driver.9', 'features.device.7'], expected: 'VERSION_1 set', seen: `0x${f.toString(16)}` }), false);
      return false;
    }
    let ok: boolean;
    try {
      ok = this.model.acceptFeatures(f);
    } catch {
      ok = false;
    }
    if (!ok) this.record(new DriverMisbehaviourError('features.refused', 'device model refused the feature combination', { statements: ['features.device.3'], seen: `0x${f.toString(16)}` }), false);
    return ok;
  }

  private negotiate(f: bigint): void {
    this._negotiated = f;
    this.ringOpts = {
      eventIdx: hasFeature(f, F.EVENT_IDX),
      indirect: hasFeature(f, F.INDIRECT_DESC),
      inOrder: hasFeature(f, F.IN_ORDER),
      legacy: this.legacy,
    };
  }

  private get layoutName(): 'split' | 'packed' {
    return hasFeature(this._negotiated, F.RING_PACKED) ? 'packed' : 'split';
  }

  private driverOkSet(): void {
    if (this.legacy) {
      // Legacy: the features are final now.
      if (!this.featuresAcceptable(this._driverFeatures)) {
        this.needsReset(new DriverMisbehaviourError('features.refused', 'legacy driver set DRIVER_OK with features the device cannot use', { statements: ['features.device.3'] }));
        return;
      }
      this.negotiate(this._driverFeatures);
    } else if (!(this._status & Status.FEATURES_OK)) {
      this.needsReset(new DriverMisbehaviourError('status.driver_ok_early', 'driver set DRIVER_OK without FEATURES_OK', { statements: ['status_init.driver.6', 'status_init.driver.11'], expected: 'FEATURES_OK before DRIVER_OK', seen: statusNames(this._status) }));
      return;
    }
    if (this._status & Status.DEVICE_NEEDS_RESET) {
      // it was set before DRIVER_OK (a bad queue setup): tell the driver now (status_init.device.3)
      this.sendConfigInterrupt();
      return;
    }
    // Build the rings of the queues the driver enabled; the others stay dead.
    for (const q of this.queues) {
      if (q.ready) {
        const err = this.validateQueue(q);
        if (err) {
          this.needsReset(err);
          return;
        }
      }
    }
    for (const q of this.queues) if (q.ready) this.rings[q.index] = this.makeRing(q);
    const epoch = this.epoch;
    const core = this;
    this.ctx = {
      mem: this.mem,
      scheduler: this.scheduler,
      features: this._negotiated,
      queue(index: number): DeviceQueue {
        if (epoch !== core.epoch) return new DeadQueue(index, 0);
        return core.rings[index] ?? new DeadQueue(index, core.queues[index]?.size ?? 0);
      },
      queueEnabled(index: number): boolean {
        return epoch === core.epoch && core.queues[index]?.ready === true && !!core.rings[index];
      },
      configChanged(): void {
        if (epoch === core.epoch) core.configChanged();
      },
      needsReset(reason: DriverMisbehaviourError): void {
        if (epoch === core.epoch) core.needsReset(reason);
      },
    };
    try {
      this.model.activate(this.ctx);
    } catch (e) {
      this.needsReset(asDriverError(e, 'model.activate'));
    }
  }

  private makeRing(q: QueueConfig): CoreQueue {
    const layout = ringLayout(this.layoutName);
    if (!layout) return new DeadQueue(q.index, q.size);
    return layout.create(this, q, this.ringOpts);
  }

  /** Device reset (status 0 written, or a transport reset): status_init.device.4, status_init.device.5, mmio.device.5. */
  reset(): void {
    this.epoch++;
    this.stats.resets++;
    for (let i = 0; i < this.rings.length; i++) {
      this.rings[i]?.stop('detach');
      this.rings[i] = null;
      const ev = this.pendingNotify[i];
      if (ev) this.scheduler.cancel(ev);
      this.pendingNotify[i] = null;
    }
    for (const q of this.queues) {
      q.size = q.maxSize;
      q.ready = false;
      q.desc = q.driver = q.device = 0;
      q.resetting = false;
    }
    this._status = 0;
    this._suspend = 'running';
    this.configPending = false;
    this._driverFeatures = 0n;
    this._negotiated = 0n;
    this.ringOpts = { eventIdx: false, indirect: false, inOrder: false, legacy: this.legacy };
    this.ctx = null;
    this.needsResetReason = undefined;
    try {
      this.model.reset();
    } catch {
      // a model that fails to reset still ends up with no context: nothing reaches it until DRIVER_OK
    }
    this.signals?.reset();
  }

  // ---------------------------------------------------------------- suspend (VIRTIO_F_SUSPEND)

  /**
   * The driver set SUSPEND on a running device: stop taking buffers at once, let the requests in
   * flight finish and send their used-buffer notifications, then report SUSPEND=1, DRIVER_OK=0
   * (content.tex "Device Suspend"; status_init.device.11, .13). Until then the status reads
   * back as the driver wrote it (SUSPEND and DRIVER_OK both set). If the requests in flight do
   * not finish within suspendTimeoutNs the device fails to suspend and sets DEVICE_NEEDS_RESET.
   */
  private beginSuspend(value: number): void {
    this._status = value | Status.SUSPEND;
    this._suspend = 'suspending';
    this.stats.suspends++;
    for (const r of this.rings) r?.pause?.(true);
    for (let i = 0; i < this.pendingNotify.length; i++) {
      const ev = this.pendingNotify[i];
      if (ev) this.scheduler.cancel(ev);
      this.pendingNotify[i] = null;
    }
    const epoch = this.epoch;
    const deadline = this.scheduler.now + this.suspendTimeoutNs;
    const step = (): void => {
      if (epoch !== this.epoch || this._suspend !== 'suspending') return;
      if (this._status & Status.DEVICE_NEEDS_RESET) return;
      if (this.inFlight() === 0) {
        this._suspend = 'suspended';
        this._status = (this._status | Status.SUSPEND) & ~Status.DRIVER_OK;
        return;
      }
      if (this.scheduler.now >= deadline) {
        this.needsReset(new DriverMisbehaviourError('suspend.timeout', 'requests in flight did not finish: the device could not suspend', { statements: ['status_init.device.11'] }));
        return;
      }
      this.scheduler.schedule(SUSPEND_POLL_NS, `virtio:${this.model.name}:suspend`, step);
    };
    this.scheduler.schedule(this.suspendLatencyNs, `virtio:${this.model.name}:suspend`, step);
  }

  private inFlight(): number {
    let n = 0;
    for (const r of this.rings) n += r?.numInFlight ?? 0;
    return n;
  }

  /** A status write while suspending, suspended or resuming. */
  private suspendedStatusWrite(value: number): void {
    const old = this._status;
    if (this._suspend === 'suspended' && value & Status.DRIVER_OK) {
      // resume (status_init.device.12); the driver may write SUSPEND back or not
      this._suspend = 'resuming';
      this._status = old | Status.DRIVER_OK | (value & (Status.FAILED));
      this.stats.resumes++;
      const epoch = this.epoch;
      this.scheduler.schedule(this.resumeLatencyNs, `virtio:${this.model.name}:resume`, () => {
        if (epoch !== this.epoch || this._suspend !== 'resuming') return;
        this.finishResume();
      });
      return;
    }
    if (value & Status.FAILED) this._status |= Status.FAILED;
    if ((value | Status.SUSPEND | Status.DRIVER_OK | Status.DEVICE_NEEDS_RESET) !== (old | Status.SUSPEND | Status.DRIVER_OK | Status.DEVICE_NEEDS_RESET)) {
      this.record(new DriverMisbehaviourError('status.suspended_write', `status write while ${this._suspend}`, { statements: ['status_init.driver.2'], seen: statusNames(value) }), false);
    }
  }

  private finishResume(): void {
    this._suspend = 'running';
    this._status = (this._status & ~Status.SUSPEND) | Status.DRIVER_OK;
    for (const r of this.rings) r?.pause?.(false);
    if (this.configPending) {
      this.configPending = false;
      this.sendConfigInterrupt(); // status_init.device.10: the change made while suspended
    }
    // buffers the driver may have made available while suspended (it should not have): look now
    for (const q of this.queues) if (q.ready && this.rings[q.index]) this.notify(q.index);
  }


  /** 32-bit window `sel` of the device features (DeviceFeatures / device_feature). */
  deviceFeatureWord(sel: number): number {
    if (sel > 3) return 0;
    return featureWord(this._deviceFeatures, sel);
  }

  driverFeatureWord(sel: number): number {
    if (sel > 3) return 0;
    return featureWord(this._driverFeatures, sel);
  }

  /** Driver writes window `sel` of its features. Ignored (and recorded) after FEATURES_OK / DRIVER_OK. */
  writeDriverFeatureWord(sel: number, value: number): void {
    const st = this._status;
    if ((!this.legacy && st & Status.FEATURES_OK) || st & Status.DRIVER_OK) {
      this.record(new DriverMisbehaviourError('features.late_write', 'driver wrote features after FEATURES_OK', { statements: ['status_init.driver.9'], seen: `sel ${sel} = ${hex(value >>> 0)} with status ${statusNames(st)}` }), false);
      return;
    }
    if (sel > 3) {
      if (value !== 0) this.record(new DriverMisbehaviourError('features.sel', 'driver wrote a feature window beyond bit 127', { statements: ['features.driver.1'], seen: `sel ${sel} = ${hex(value >>> 0)}` }), false);
      return;
    }
    this._driverFeatures = withFeatureWord(this._driverFeatures, sel, value >>> 0);
  }

  // ---------------------------------------------------------------- config space

  readConfig(offset: number, size: 1 | 2 | 4): number {
    if (offset < 0 || offset + size > this.model.configSize) return 0;
    try {
      return this.model.readConfig(offset, size) >>> 0;
    } catch {
      return 0;
    }
  }

  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    if (this._suspend !== 'running') {
      // status_init.device.7: config writes are ignored while suspended
      this.record(new DriverMisbehaviourError('config.suspended', 'config write while the device is suspended; ignored', { statements: ['status_init.driver.19', 'status_init.device.7'], seen: `${offset}+${size} = ${hex(value >>> 0)}` }), false);
      return;
    }
    if (offset < 0 || offset + size > this.model.configSize) {
      this.record(new DriverMisbehaviourError('config.range', 'config write outside the device configuration space', { expected: `< ${this.model.configSize}`, seen: `${offset}+${size}` }), false);
      return;
    }
    try {
      this.model.writeConfig(offset, size, value);
    } catch (e) {
      this.needsReset(asDriverError(e, 'model.writeConfig'));
    }
  }

  /** The device changed its configuration: bump the generation (mmio.device.6) and notify once the driver is up. */
  configChanged(): void {
    this._generation = (this._generation + 1) >>> 0;
    if (this._suspend !== 'running') {
      this.configPending = true; // status_init.device.10: sent on resume
      return;
    }
    if (this._status & Status.DRIVER_OK) this.sendConfigInterrupt();
  }

  private sendConfigInterrupt(): void {
    this.stats.configSignals++;
    this.signals?.configChange();
  }

  // ---------------------------------------------------------------- queues

  queueConfig(index: number): QueueConfig | undefined {
    return index >= 0 && index < this.queues.length ? this.queues[index] : undefined;
  }

  queueMaxSize(index: number): number {
    return this.queueConfig(index)?.maxSize ?? 0;
  }

  /** Whether the driver may still change queue `index`'s configuration. */
  private queueWritable(q: QueueConfig | undefined, what: string): q is QueueConfig {
    if (!q) {
      this.record(new DriverMisbehaviourError('queue.index', `${what} for a queue that does not exist`, { expected: `< ${this.queues.length}` }), false);
      return false;
    }
    if (q.ready) {
      this.record(new DriverMisbehaviourError('queue.ready_write', `${what} while queue ${q.index} is enabled`, { statements: ['mmio.driver.15'] }), false);
      return false;
    }
    return true;
  }

  setQueueSize(index: number, size: number): void {
    const q = this.queueConfig(index);
    if (this.queueWritable(q, 'queue size write')) q.size = size >>> 0;
  }

  setQueueArea(index: number, area: 'desc' | 'driver' | 'device', addr: number): void {
    const q = this.queueConfig(index);
    if (this.queueWritable(q, `queue ${area} address write`)) q[area] = addr;
  }

  /** Change one 32-bit half of an area address (the Low/High register pairs). */
  setQueueAreaHalf(index: number, area: 'desc' | 'driver' | 'device', high: boolean, value: number): void {
    const q = this.queueConfig(index);
    if (!this.queueWritable(q, `queue ${area} address write`)) return;
    const cur = q[area];
    const lo = cur % 0x1_0000_0000;
    const hi = Math.floor(cur / 0x1_0000_0000);
    q[area] = high ? (value >>> 0) * 0x1_0000_0000 + lo : hi * 0x1_0000_0000 + (value >>> 0);
  }

  /**
   * Enable or disable queue `index` (QueueReady / queue_enable / legacy PFN). An enable is checked
   * at once: an unusable configuration sets DEVICE_NEEDS_RESET and the queue stays disabled.
   */
  setQueueReady(index: number, ready: boolean): void {
    const q = this.queueConfig(index);
    if (!q) {
      this.record(new DriverMisbehaviourError('queue.index', 'queue enable for a queue that does not exist', { expected: `< ${this.queues.length}`, seen: String(index) }), false);
      return;
    }
    if (!ready) {
      if (q.ready) this.stopQueue(q);
      return;
    }
    if (q.ready) return;
    if (q.maxSize === 0) {
      this.record(new DriverMisbehaviourError('queue.absent', 'queue enable for an unavailable queue', { statements: ['mmio.driver.14'], seen: String(index) }), false);
      return;
    }
    if (this.driverOk && !hasFeature(this._negotiated, F.RING_RESET)) {
      // Enabling a queue after DRIVER_OK is only meaningful after a queue reset.
      this.record(new DriverMisbehaviourError('queue.late_enable', 'queue enabled after DRIVER_OK without RING_RESET', { statements: ['status_init.driver.6'], seen: String(index) }), false);
    }
    // Before FEATURES_OK the ring options are not known yet: checks that depend on them run at DRIVER_OK.
    const err = this.validateQueue(q);
    if (err) {
      this.needsReset(err);
      return;
    }
    q.ready = true;
    q.resetting = false;
    if (this.driverOk && !this.needsResetSet) this.rings[index] = this.makeRing(q);
  }

  private stopQueue(q: QueueConfig): void {
    q.ready = false;
    this.rings[q.index]?.stop('detach');
    this.rings[q.index] = null;
    const ev = this.pendingNotify[q.index];
    if (ev) this.scheduler.cancel(ev);
    this.pendingNotify[q.index] = null;
  }

  /** RING_RESET: reset one queue to its default state (vq_reset.device.1, vq_reset.device.2). Transports without the feature never call it. */
  resetQueue(index: number): void {
    const q = this.queueConfig(index);
    if (!q) return;
    this.stopQueue(q);
    q.size = q.maxSize;
    q.desc = q.driver = q.device = 0;
    q.resetting = false;
    try {
      this.model.queueReset?.(index);
    } catch (e) {
      this.needsReset(asDriverError(e, 'model.queueReset'));
    }
  }

  private validateQueue(q: QueueConfig): DriverMisbehaviourError | null {
    if (q.size === 0 || q.size > q.maxSize) {
      return new DriverMisbehaviourError('queue.size', `queue ${q.index} size out of range`, { statements: ['mmio.driver.14'], expected: `1..${q.maxSize}`, seen: String(q.size) });
    }
    const layout = ringLayout(this.layoutName);
    if (!layout) return new DriverMisbehaviourError('queue.layout', `no ${this.layoutName} ring implementation`, {});
    return layout.validate(q, this.mem, this.ringOpts);
  }

  /** The live ring of queue `index` (for transports and tests), or null. */
  ring(index: number): CoreQueue | null {
    return this.rings[index] ?? null;
  }

  // ---------------------------------------------------------------- notifications

  /**
   * A driver notification (QueueNotify / notify capability). The model's queueNotify runs on the
   * scheduler (the device's own thread) after notifyLatencyNs; notifications arriving while one
   * is pending coalesce, like an eventfd. Notifications for queues that do not exist, are not
   * enabled, or arrive before DRIVER_OK are recorded and dropped (split.device.22: spurious
   * notifications are harmless).
   */
  notify(index: number): void {
    this.stats.notifies++;
    const q = index >= 0 && index < this.queues.length ? this.queues[index] : undefined;
    if (!q) {
      this.record(new DriverMisbehaviourError('notify.index', 'notification for a queue that does not exist', { expected: `< ${this.queues.length}`, seen: String(index) }), false);
      return;
    }
    if (this._suspend !== 'running') {
      // status_init.driver.18 (the driver's rule); the device does not touch the queues while suspended (status_init.device.8)
      this.record(new DriverMisbehaviourError('notify.suspended', `notification for queue ${index} while the device is ${this._suspend}`, { statements: ['status_init.driver.18'], seen: statusNames(this._status) }), false);
      return;
    }
    if (!(this._status & Status.DRIVER_OK)) {
      this.record(new DriverMisbehaviourError('notify.early', 'notification before DRIVER_OK', { statements: ['status_init.driver.12'], seen: statusNames(this._status) }), false);
      return;
    }
    if (this._status & Status.DEVICE_NEEDS_RESET || !q.ready || this.pendingNotify[index]) return;
    const epoch = this.epoch;
    this.pendingNotify[index] = this.scheduler.schedule(this.notifyLatencyNs, `virtio:${this.model.name}:notify${index}`, () => {
      if (epoch !== this.epoch) return;
      this.pendingNotify[index] = null;
      if (this._status & Status.DEVICE_NEEDS_RESET || !this.rings[index] || this._suspend !== 'running') return;
      this.stats.notifyRuns++;
      try {
        this.model.queueNotify(index);
      } catch (e) {
        this.needsReset(asDriverError(e, 'model.queueNotify'));
      }
    });
  }

  signalUsed(index: number): void {
    if (!(this._status & Status.DRIVER_OK)) return; // status_init.device.1
    if (this._suspend === 'suspended' || this._suspend === 'resuming') return; // status_init.device.8
    this.stats.usedSignals++;
    this.signals?.usedBuffer(index);
  }

  // ---------------------------------------------------------------- errors

  driverError(err: DriverMisbehaviourError): void {
    this.needsReset(err);
  }

  /**
   * The device cannot go on: set DEVICE_NEEDS_RESET (status_init.device.2), stop taking chains
   * from every queue, and if DRIVER_OK is set send a configuration-change notification
   * (status_init.device.3).
   */
  needsReset(reason: PvkitError): void {
    const err = reason instanceof DriverMisbehaviourError ? reason : new DriverMisbehaviourError(reason.code, reason.message, { statements: reason.statements });
    this.record(err, true);
    if (this._status & Status.DEVICE_NEEDS_RESET) return;
    this.needsResetReason = reason;
    this._status |= Status.DEVICE_NEEDS_RESET;
    for (const r of this.rings) r?.stop('halt');
    if (this._status & Status.DRIVER_OK) {
      this._generation = (this._generation + 1) >>> 0;
      this.sendConfigInterrupt();
    }
  }

  /** Record a driver error that the device merely ignored (fatal=false) or that set NEEDS_RESET. */
  record(error: DriverMisbehaviourError, fatal: boolean): void {
    this.errorCount++;
    if (this.errors.length >= MAX_RECORDS) this.errors.shift();
    this.errors.push({ at: this.scheduler.now, error, fatal });
  }
}

function asDriverError(e: unknown, where: string): DriverMisbehaviourError {
  if (e instanceof DriverMisbehaviourError) return e;
  if (e instanceof PvkitError) return new DriverMisbehaviourError(e.code, `${where}: ${e.message}`, { statements: e.statements });
  return new DriverMisbehaviourError('model.internal', `${where} threw: ${e instanceof Error ? e.message : String(e)}`, {});
}
