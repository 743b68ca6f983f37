/**
 * Driver-side device initialisation and operation, over any VirtioTransport (content.tex,
 * "Device Initialization"; status_init.driver.6):
 *
 *   reset -> ACKNOWLEDGE -> DRIVER -> read features -> write the chosen subset -> FEATURES_OK,
 *   re-read it -> (driver checks config) -> set up queues -> DRIVER_OK
 *
 * On any failure the driver sets FAILED (status_init.driver.10) and stops. Every wait is bounded
 * and ends in a TimeoutError; a device that sets DEVICE_NEEDS_RESET produces a
 * DeviceNeedsResetError from the next wait. Config reads go through the generation loop
 * (config_space.driver.2) with bounded retries.
 */
import type { GuestPlatform } from '../../spec-refs/platform/platform.ts';
import type { Virtqueue } from './virtqueue.ts';
import type { InterruptCause, QueueAddresses, VirtioTransport } from '../transport/transport.ts';
import { SplitVirtqueue } from './split.ts';
import { PackedVirtqueue } from './packed.ts';
import { DeviceMisbehaviourError, DeviceNeedsResetError, NegotiationError, TimeoutError, UsageError, hex } from '../../spec-refs/errors.ts';
import { F, Packed, Split, Status, bit, hasFeature, statusNames } from '../../spec-refs/abi/virtio.ts';

// ------------------------------------------------------------------ virtqueue layouts

/** What a ring implementation needs to build a driver-side queue. */
export interface VirtqueueArgs {
  readonly platform: GuestPlatform;
  readonly index: number;
  readonly size: number;
  readonly features: bigint;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  readonly indirectThreshold?: number;
  readonly legacyAlign?: number;
  /** Send an available-buffer notification; `data` is the 32-bit NOTIFICATION_DATA value when negotiated. */
  readonly notify: (data?: number) => void;
}

export type QueueWithAddresses = Virtqueue<unknown> & { readonly addresses: QueueAddresses };

export interface VirtqueueLayout {
  readonly name: 'split' | 'packed';
  /** The size to use given the device's maximum and the driver's cap (split: a power of two). */
  chooseSize(max: number, cap: number): number;
  create(args: VirtqueueArgs): QueueWithAddresses;
}

const splitVq: VirtqueueLayout = {
  name: 'split',
  chooseSize(max: number, cap: number): number {
    const n = Math.min(max, cap, Split.MAX_SIZE);
    let p = 1;
    while (p * 2 <= n) p *= 2;
    return n >= 1 ? p : 0;
  },
  create(a: VirtqueueArgs): QueueWithAddresses {
    return new SplitVirtqueue(a.platform.mem, a.platform.dma, { index: a.index, size: a.size, eventIdx: a.eventIdx, indirect: a.indirect, indirectThreshold: a.indirectThreshold, legacyAlign: a.legacyAlign, notify: a.notify, inOrder: hasFeature(a.features, F.IN_ORDER), notificationData: hasFeature(a.features, F.NOTIFICATION_DATA) });
  },
};

const packedVq: VirtqueueLayout = {
  name: 'packed',
  chooseSize(max: number, cap: number): number {
    // packed rings take any size (packed-ring.tex "Structure Size and Alignment")
    return Math.max(0, Math.min(max, cap, Packed.MAX_SIZE));
  },
  create(a: VirtqueueArgs): QueueWithAddresses {
    return new PackedVirtqueue(a.platform.mem, a.platform.dma, a.index, a.size, (_i, data) => a.notify(data), {
      indirect: a.indirect,
      eventIdx: a.eventIdx,
      inOrder: hasFeature(a.features, F.IN_ORDER),
      notificationData: hasFeature(a.features, F.NOTIFICATION_DATA),
      indirectThreshold: a.indirectThreshold,
    });
  },
};

const vqLayouts = new Map<'split' | 'packed', VirtqueueLayout>([
  ['split', splitVq],
  ['packed', packedVq],
]);

/** Install a driver-side ring layout (drivers/core/packed.ts registers 'packed'). */
export function registerVirtqueueLayout(layout: VirtqueueLayout): void {
  vqLayouts.set(layout.name, layout);
}

// ------------------------------------------------------------------ interrupts

type VectorHandler = (vector: number) => void;

/**
 * Routes interrupt vectors to the drivers that own them, one per platform: while one driver waits,
 * interrupts of other devices are still handled (acknowledged) by their own drivers.
 */
export class InterruptDispatcher {
  private static readonly byPlatform = new WeakMap<GuestPlatform, InterruptDispatcher>();
  private readonly handlers = new Map<number, Set<VectorHandler>>();
  /** Interrupts taken with no handler (acknowledged with an EOI only). */
  unhandled = 0;
  /** Upper bound on interrupts taken in one wait (an interrupt storm ends in a TimeoutError too). */
  maxInterruptsPerWait = 100_000;

  private constructor(private readonly p: GuestPlatform) {}

  static for(p: GuestPlatform): InterruptDispatcher {
    let d = InterruptDispatcher.byPlatform.get(p);
    if (!d) {
      d = new InterruptDispatcher(p);
      InterruptDispatcher.byPlatform.set(p, d);
    }
    return d;
  }

  register(vector: number, h: VectorHandler): () => void {
    let s = this.handlers.get(vector);
    if (!s) this.handlers.set(vector, (s = new Set()));
    s.add(h);
    return () => void s.delete(h);
  }

  dispatch(vector: number): void {
    const s = this.handlers.get(vector);
    try {
      if (s && s.size) for (const h of s) h(vector);
      else this.unhandled++;
    } finally {
      this.p.irq.eoi(vector);
    }
  }

  /** Handle every interrupt already pending; returns how many. */
  poll(): number {
    let n = 0;
    for (let v = this.p.irq.poll(); v !== null && n < this.maxInterruptsPerWait; v = this.p.irq.poll()) {
      this.dispatch(v);
      n++;
    }
    return n;
  }

  /** Wait (halting) until `done()` holds, handling interrupts as they come; TimeoutError after `timeoutNs`. */
  waitUntil(done: () => boolean, timeoutNs: number, what: string): void {
    const p = this.p;
    const deadline = p.now() + timeoutNs;
    let taken = 0;
    for (;;) {
      if (done()) return;
      const remaining = deadline - p.now();
      if (remaining <= 0 || taken >= this.maxInterruptsPerWait) break;
      const v = p.irq.wait(remaining);
      if (v !== null) {
        taken++;
        this.dispatch(v);
      }
    }
    if (done()) return;
    throw new TimeoutError('wait.timeout', `timed out waiting for ${what}`, { expected: `within ${timeoutNs} ns`, seen: taken >= this.maxInterruptsPerWait ? `${taken} interrupts and no progress` : 'nothing' });
  }
}

// ------------------------------------------------------------------ the device

export interface DeviceInitOptions {
  /** Feature bits the driver understands and wants (device-specific and core bits). */
  readonly features: bigint;
  /** Queues to set up: a count (0..n-1) or a list of indices. Default 1. */
  readonly queues?: number | readonly number[];
  /** Queues that may be absent (QueueSizeMax 0) without failing initialisation. */
  readonly optionalQueues?: readonly number[];
  /** Upper bound on queue sizes (default 256). */
  readonly queueSize?: number;
  /** Indirect tables for buffers of at least this many elements, when negotiated (default 2; Infinity: never). */
  readonly indirectThreshold?: number;
  /** Bound of every wait, in target ns (default 1 s). */
  readonly timeoutNs?: number;
  /** Bound of config-generation retries (default 32). */
  readonly configRetries?: number;
  /**
   * Runs after FEATURES_OK and before queue setup (the device-specific setup step of status_init.driver.6): read the configuration and
   * throw if the driver cannot drive this device. The device is then marked FAILED.
   */
  readonly check?: (dev: VirtioDriverDevice) => void;
  /**
   * Narrow the chosen features (already `wanted & offered`) before they are written, e.g. to drop
   * features whose prerequisites the device did not offer (features.driver.2). Added for virtio-net.
   */
  readonly select?: (chosen: bigint, offered: bigint) => bigint;
  /**
   * Runs after `select`, before the features are written: may read device config (e.g. a zoned
   * model) and returns the features to accept (a subset of `chosen`). Throw to give up on the
   * device before FEATURES_OK (it is then marked FAILED). Added for zoned virtio-blk.
   */
  readonly configSelect?: (dev: VirtioDriverDevice, chosen: bigint) => bigint;
}

/**
 * A virtio device being driven: the transport, the negotiated features and the queues. Device
 * drivers (blk, net) build on it.
 */
export class VirtioDriverDevice {
  readonly platform: GuestPlatform;
  readonly transport: VirtioTransport;
  /** Features offered by the device, and the subset negotiated. */
  offered = 0n;
  features = 0n;
  readonly queues = new Map<number, QueueWithAddresses>();
  readonly timeoutNs: number;
  readonly configRetries: number;
  readonly dispatcher: InterruptDispatcher;
  /** Counts, for tests and benchmarks. */
  readonly stats = { interrupts: 0, usedInterrupts: 0, configInterrupts: 0, spuriousInterrupts: 0 };
  private needsResetSeen = false;
  private readonly configListeners: (() => void)[] = [];
  private readonly usedListeners: (() => void)[] = [];
  private unregister: (() => void)[] = [];
  private live = false;
  private indirectThreshold: number | undefined;
  /** The driver-owned status bits as last written (ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK). */
  private driverStatus = 0;
  private _suspended = false;
  private readonly savedKicks = new Map<QueueWithAddresses, PropertyDescriptor | undefined>();

  private constructor(platform: GuestPlatform, transport: VirtioTransport, opts: DeviceInitOptions) {
    this.platform = platform;
    this.transport = transport;
    this.timeoutNs = opts.timeoutNs ?? 1_000_000_000;
    this.configRetries = opts.configRetries ?? 32;
    this.dispatcher = InterruptDispatcher.for(platform);
  }

  /** Initialise a device (status_init.driver.6). Throws (after setting FAILED) when it cannot be driven. */
  static init(platform: GuestPlatform, transport: VirtioTransport, opts: DeviceInitOptions): VirtioDriverDevice {
    const dev = new VirtioDriverDevice(platform, transport, opts);
    try {
      dev.initialise(opts);
    } catch (e) {
      dev.fail();
      throw e;
    }
    return dev;
  }

  private initialise(opts: DeviceInitOptions): void {
    const t = this.transport;
    t.reset();
    t.setStatus(Status.ACKNOWLEDGE);
    t.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
    const offered = t.deviceFeatures();
    this.offered = offered;
    // features.driver.1 / 4 / 5: accept only what is offered and understood
    let wanted = opts.features;
    if (!vqLayouts.has('packed')) wanted &= ~bit(F.RING_PACKED);
    let chosen = wanted & offered;
    if (opts.select) chosen = opts.select(chosen, offered) & offered;
    if (t.legacy) {
      chosen &= 0xffff_ffffn;
    } else {
      if (!hasFeature(offered, F.VERSION_1)) {
        // features.driver.10: a modern transport without VERSION_1 is not a device we drive
        throw new NegotiationError('features.no_version_1', 'device on a modern transport does not offer VIRTIO_F_VERSION_1', { statements: ['features.driver.10', 'features.device.6'], expected: 'bit 32 offered', seen: `0x${offered.toString(16)}` });
      }
      chosen |= bit(F.VERSION_1); // features.driver.9
    }
    if (opts.configSelect) chosen = opts.configSelect(this, chosen) & chosen;
    t.setDriverFeatures(chosen);
    this.features = chosen;
    let status = Status.ACKNOWLEDGE | Status.DRIVER;
    if (!t.legacy) {
      status |= Status.FEATURES_OK;
      t.setStatus(status);
      // status_init.driver.9 / features.device.3: the device says no by leaving FEATURES_OK clear
      const back = t.getStatus();
      if (!(back & Status.FEATURES_OK)) {
        throw new NegotiationError('features.refused', 'device did not accept the features (FEATURES_OK not set)', { statements: ['status_init.driver.9', 'status_init.driver.11'], expected: 'FEATURES_OK', seen: `status ${statusNames(back)} for features 0x${chosen.toString(16)}` });
      }
    }
    opts.check?.(this);
    const wantedQueues = typeof opts.queues === 'number' || opts.queues === undefined ? Array.from({ length: opts.queues ?? 1 }, (_, i) => i) : opts.queues;
    const optional = new Set(opts.optionalQueues ?? []);
    const layout = vqLayouts.get(hasFeature(chosen, F.RING_PACKED) ? 'packed' : 'split')!;
    this.indirectThreshold = opts.indirectThreshold;
    const cap = opts.queueSize ?? 256;
    for (const i of wantedQueues) {
      const max = t.queueMaxSize(i);
      if (max === 0) {
        if (optional.has(i)) continue;
        throw new DeviceMisbehaviourError('queue.absent', `device has no queue ${i}`, { statements: ['mmio.driver.14'], expected: 'QueueSizeMax > 0', seen: '0' });
      }
      // the legacy PCI interface has no way to choose a size: the device's is the size
      const size = t.fixedQueueSize ? max : layout.chooseSize(max, cap);
      if (size < 1) throw new UsageError('queue.size', `no usable size for queue ${i}`, { seen: `max ${max}, cap ${cap}` });
      this.createQueue(i, size);
    }
    for (const v of t.vectors) this.unregister.push(this.dispatcher.register(v, (vec) => this.onInterrupt(vec)));
    status |= Status.DRIVER_OK;
    t.setStatus(status);
    this.driverStatus = status;
    this.live = true;
    const after = t.getStatus();
    if (after & Status.DEVICE_NEEDS_RESET) {
      this.needsResetSeen = true;
      throw new DeviceNeedsResetError('status.needs_reset', 'device set DEVICE_NEEDS_RESET during initialisation', { seen: statusNames(after) });
    }
    if (!(after & Status.DRIVER_OK)) {
      throw new DeviceMisbehaviourError('status.driver_ok', 'DRIVER_OK did not stick', { statements: ['status_init.driver.1'], expected: 'DRIVER_OK set', seen: statusNames(after) });
    }
  }

  /** Build queue `i` with the negotiated layout and program it into the transport. */
  private createQueue(i: number, size: number): QueueWithAddresses {
    const t = this.transport;
    const layout = vqLayouts.get(hasFeature(this.features, F.RING_PACKED) ? 'packed' : 'split')!;
    const vq = layout.create({
      platform: this.platform,
      index: i,
      size,
      features: this.features,
      eventIdx: hasFeature(this.features, F.EVENT_IDX),
      indirect: hasFeature(this.features, F.INDIRECT_DESC),
      indirectThreshold: this.indirectThreshold,
      legacyAlign: t.legacy ? t.legacyAlign : undefined,
      notify: (data?: number) => t.notify(i, data),
    });
    this.queues.set(i, vq);
    t.setupQueue(i, vq.addresses);
    return vq;
  }

  /**
   * VIRTIO_F_RING_RESET: reset queue `index` on its own and set it up again on fresh memory.
   * The transport waits until the device reports the reset done (vq_reset.driver.1); the old
   * ring is then released (vq_reset.driver.2) and a new one programmed (vq_reset.driver.3).
   * Buffers still outstanding on the old queue are dropped: their tokens are returned.
   */
  resetQueue(index: number): unknown[] {
    const t = this.transport;
    if (!hasFeature(this.features, F.RING_RESET) || !t.resetQueue) {
      throw new UsageError('queue.reset', 'queue reset needs VIRTIO_F_RING_RESET negotiated on a transport that has it', { statements: ['vq_reset.driver.1'] });
    }
    const old = this.queues.get(index);
    if (!old) throw new UsageError('queue.none', `queue ${index} was not set up`);
    t.resetQueue(index);
    const dropped = old.outstandingTokens?.() ?? [];
    old.destroy();
    this.queues.delete(index);
    this.createQueue(index, old.size);
    return dropped;
  }

  private fail(): void {
    try {
      // status_init.driver.10: tell the device we gave up
      this.transport.setStatus(this.transport.getStatus() | Status.FAILED);
    } catch {
      // the device is beyond reach; nothing more to do
    }
    this.release();
  }

  private release(): void {
    this.live = false;
    for (const u of this.unregister) u();
    this.unregister = [];
    for (const q of this.queues.values()) q.destroy();
    this.queues.clear();
  }

  /** Queue `index`, typed with the driver's token type. */
  queue<T>(index: number): Virtqueue<T> {
    const q = this.queues.get(index);
    if (!q) throw new UsageError('queue.none', `queue ${index} was not set up`);
    return q as Virtqueue<T>;
  }

  get needsReset(): boolean {
    return this.needsResetSeen;
  }

  onConfigChange(fn: () => void): void {
    this.configListeners.push(fn);
  }

  onUsed(fn: () => void): void {
    this.usedListeners.push(fn);
  }

  /** The interrupt handler: read and acknowledge the cause, then look at status on a config change. */
  private onInterrupt(vector: number): void {
    this.stats.interrupts++;
    // acknowledge even when not live, so a level-triggered line goes down
    const cause: InterruptCause = this.transport.ackInterrupt(vector);
    if (!this.live) {
      this.stats.spuriousInterrupts++;
      return;
    }
    if (!cause.used && !cause.config) this.stats.spuriousInterrupts++; // split.driver.16: spurious is fine
    if (cause.config) {
      this.stats.configInterrupts++;
      if (this.transport.getStatus() & Status.DEVICE_NEEDS_RESET) this.needsResetSeen = true;
      for (const f of this.configListeners) f();
    }
    if (cause.used) {
      this.stats.usedInterrupts++;
      for (const f of this.usedListeners) f();
    }
  }

  /** Handle pending interrupts without waiting. */
  poll(): void {
    this.dispatcher.poll();
    this.throwIfNeedsReset();
  }

  private throwIfNeedsReset(): void {
    if (this.needsResetSeen) throw new DeviceNeedsResetError('status.needs_reset', 'device needs a reset', { statements: ['status_init.driver.4'], seen: statusNames(this.transport.getStatus()) });
  }

  /**
   * Wait until `done()` holds, handling interrupts. Bounded: TimeoutError after `timeoutNs`
   * (default: the device's). A device that set DEVICE_NEEDS_RESET makes it throw DeviceNeedsResetError.
   */
  waitUntil(done: () => boolean, what: string, timeoutNs = this.timeoutNs): void {
    this.throwIfNeedsReset();
    let ok = false;
    // done() is called once per check: it may consume (e.g. getUsed)
    this.dispatcher.waitUntil(() => (ok = done()) || this.needsResetSeen, timeoutNs, what);
    if (!ok) this.throwIfNeedsReset();
  }

  /**
   * Poll without interrupts: let `stepNs` of target time pass between checks of `done()`, up to
   * `timeoutNs` (for drivers that run with interrupts disabled). TimeoutError when it never holds.
   */
  pollUntil(done: () => boolean, what: string, stepNs = 1000, timeoutNs = this.timeoutNs): void {
    const p = this.platform;
    const deadline = p.now() + timeoutNs;
    for (;;) {
      if (done()) return;
      this.dispatcher.poll();
      this.throwIfNeedsReset();
      if (p.now() >= deadline) break;
      p.spin(Math.max(1, Math.min(stepNs, deadline - p.now())));
    }
    if (done()) return;
    throw new TimeoutError('wait.timeout', `timed out polling for ${what}`, { expected: `within ${timeoutNs} ns` });
  }

  /** Wait for the next used buffer of queue `index`. */
  waitUsed<T>(index: number, timeoutNs = this.timeoutNs): { token: T; len: number } {
    const q = this.queue<T>(index);
    let u = q.getUsed();
    if (u) return u;
    this.waitUntil(() => (u = q.getUsed()) !== null, `a used buffer on queue ${index}`, timeoutNs);
    return u!;
  }

  // ---------------------------------------------------------------- suspend (VIRTIO_F_SUSPEND)

  /** True from the moment suspend() starts until resume() has seen the device running again. */
  get suspended(): boolean {
    return this._suspended;
  }

  /** Throw a UsageError if the device is suspended (drivers call it before making buffers available or writing config). */
  assertRunning(what: string, statement: string): void {
    if (this._suspended) throw new UsageError('device.suspended', `${what} while the device is suspended`, { statements: [statement] });
  }

  /**
   * Suspend the device (content.tex "Device Suspend"). Only with VIRTIO_F_SUSPEND negotiated and
   * DRIVER_OK set (status_init.driver.15). From the call on, the queues refuse to publish
   * buffers or notify (status_init.driver.17, .18) and config writes through writeConfig are
   * refused (.19). Returns once the device reads back SUSPEND=1 and DRIVER_OK=0
   * (status_init.driver.16); completions that arrive meanwhile are handled as usual. A device
   * that sets DEVICE_NEEDS_RESET instead gives a DeviceNeedsResetError; one that never
   * suspends a TimeoutError.
   */
  suspend(timeoutNs = this.timeoutNs): void {
    if (!this.live || !hasFeature(this.features, F.SUSPEND)) {
      throw new UsageError('device.suspend', 'suspend needs a live device with VIRTIO_F_SUSPEND negotiated', { statements: ['status_init.driver.15'], seen: `live ${this.live}, features 0x${this.features.toString(16)}` });
    }
    if (this._suspended) return;
    this.throwIfNeedsReset();
    this._suspended = true;
    const blocked = (): boolean => {
      throw new UsageError('device.suspended', 'buffers made available while the device is suspended', { statements: ['status_init.driver.17', 'status_init.driver.18'] });
    };
    for (const q of this.queues.values()) {
      this.savedKicks.set(q, Object.getOwnPropertyDescriptor(q, 'kick'));
      Object.defineProperty(q, 'kick', { value: blocked, configurable: true, writable: true });
    }
    this.writeSuspendStatus(true, timeoutNs);
  }

  /**
   * Write the status the driver set at initialisation (DRIVER_OK included) plus SUSPEND: to a
   * running device that asks it to suspend, to a suspended one (which shows DRIVER_OK=0) it asks
   * it to resume. Then poll until the device shows SUSPEND=`suspended` and DRIVER_OK the opposite.
   */
  private writeSuspendStatus(suspended: boolean, timeoutNs: number): void {
    const t = this.transport;
    t.setStatus(this.driverStatus | Status.SUSPEND);
    this.pollUntil(() => {
      const st = t.getStatus();
      if (st & Status.DEVICE_NEEDS_RESET) this.needsResetSeen = true;
      return ((st & Status.SUSPEND) !== 0) === suspended && ((st & Status.DRIVER_OK) !== 0) === !suspended;
    }, suspended ? 'the device to report SUSPEND=1 and DRIVER_OK=0' : 'the device to report SUSPEND=0 and DRIVER_OK=1', 1000, timeoutNs);
  }

  /**
   * Resume a suspended device: set DRIVER_OK again and wait until the device reads back SUSPEND=0
   * and DRIVER_OK=1 before anything else (status_init.driver.20). The queues work again after.
   */
  resume(timeoutNs = this.timeoutNs): void {
    if (!this._suspended) return;
    this.writeSuspendStatus(false, timeoutNs);
    this.unblockQueues();
    this._suspended = false;
  }

  private unblockQueues(): void {
    for (const [q, d] of this.savedKicks) {
      if (d) Object.defineProperty(q, 'kick', d);
      else delete (q as { kick?: unknown }).kick;
    }
    this.savedKicks.clear();
  }

  /** Write device config (refused while suspended: status_init.driver.19). */
  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    this.assertRunning('config write', 'status_init.driver.19');
    this.transport.writeConfig(offset, size, value);
  }

  // ---------------------------------------------------------------- config space

  /**
   * Read config fields consistently (config_space.driver.2): repeat while the generation changes,
   * at most `configRetries` times.
   */
  readConfigStable<T>(read: (t: VirtioTransport) => T): T {
    const t = this.transport;
    if (t.legacy) {
      // The legacy interface has no generation counter: read until two reads in a row agree
      // (content.tex, "Legacy Interface: Device Configuration Space").
      let prev = read(t);
      for (let i = 0; i < this.configRetries; i++) {
        const v = read(t);
        if (JSON.stringify(v) === JSON.stringify(prev)) return v;
        prev = v;
      }
      throw new DeviceMisbehaviourError('config.unstable', 'legacy configuration never read the same twice in a row', { expected: `two equal reads within ${this.configRetries} tries` });
    }
    let last = 0;
    for (let i = 0; i < this.configRetries; i++) {
      const before = t.configGeneration();
      const v = read(t);
      last = t.configGeneration();
      if (before === last) return v;
    }
    throw new DeviceMisbehaviourError('config.generation', 'config generation never settled', { statements: ['config_space.driver.2'], expected: `two equal generation reads within ${this.configRetries} tries`, seen: `still changing (last ${hex(last)})` });
  }

  config8(off: number): number {
    return this.readConfigStable((t) => t.readConfig(off, 1));
  }

  config16(off: number): number {
    return this.readConfigStable((t) => t.readConfig(off, 2));
  }

  config32(off: number): number {
    return this.readConfigStable((t) => t.readConfig(off, 4));
  }

  /** A 64-bit field as two 32-bit reads inside one generation (mmio.driver.5). Exact below 2^53. */
  config64(off: number): number {
    return this.readConfigStable((t) => t.readConfig(off, 4) + t.readConfig(off + 4, 4) * 0x1_0000_0000);
  }

  /** Reset the device and release the queues (status_init.driver.14: the queues are not live after a reset). */
  shutdown(): void {
    this.unblockQueues();
    this._suspended = false;
    try {
      this.transport.reset();
    } finally {
      this.release();
    }
  }
}
