/**
 * The seam between a virtio device model (blk, net, ...) and the shared virtio core.
 *
 * A device model implements VirtioDeviceModel and never touches rings or transports: the core
 * (status, features, queues, config generation) and the transports (virtio-mmio, virtio-pci)
 * give it validated descriptor chains through DeviceQueue, whatever the ring layout, and carry
 * its interrupts. So a model written once runs over every transport and both ring layouts.
 */
import type { GuestMemory } from '../machine/memory.ts';
import type { Scheduler } from '../machine/scheduler.ts';
import type { DriverMisbehaviourError } from '../../spec-refs/errors.ts';

/** One guest-physical buffer of a chain. */
export interface Segment {
  readonly addr: number;
  readonly len: number;
}

/**
 * A descriptor chain as the device sees it, already walked and validated by the core: every
 * segment lies in guest RAM, device-readable segments come before device-writable ones, the
 * totals fit in 32 bits. Each descriptor field was read from guest memory exactly once.
 */
export interface Chain {
  /** The id the chain is completed with (split: head index; packed: buffer id). */
  readonly id: number;
  readonly readable: readonly Segment[];
  readonly writable: readonly Segment[];
  readonly readableLen: number;
  readonly writableLen: number;
  /** Number of descriptors the chain used in the ring (packed rings need it to complete). */
  readonly descCount: number;
}

export interface DeviceQueue {
  readonly index: number;
  readonly size: number;
  /**
   * The next available chain, or null when the ring is empty. A malformed chain is never
   * returned: the core marks the device DEVICE_NEEDS_RESET (with a config-change interrupt)
   * and returns null from then on.
   */
  pop(): Chain | null;
  /** Complete a chain, reporting `written` bytes written into its writable segments. */
  push(chain: Chain, written: number): void;
  /** After a batch of pushes: interrupt the driver if it asked for one (flags / event idx). */
  flush(): void;
  /** Ask the driver not to notify (polling) / to notify again. Returns false if buffers arrived meanwhile. */
  disableNotify(): void;
  enableNotify(): boolean;
}

/** What the core gives a device model once the driver has set DRIVER_OK. */
export interface DeviceContext {
  readonly mem: GuestMemory;
  readonly scheduler: Scheduler;
  /** The negotiated feature set. */
  readonly features: bigint;
  queue(index: number): DeviceQueue;
  /** Optional: whether the driver has queue `index` enabled now (set up and not reset). */
  queueEnabled?(index: number): boolean;
  /** The device changed its configuration: bump the generation and send a config interrupt. */
  configChanged(): void;
  /** The device cannot go on: set DEVICE_NEEDS_RESET and send a config interrupt. */
  needsReset(reason: DriverMisbehaviourError): void;
}

/** What the core gives a model for its whole life (before DRIVER_OK too). */
export interface DeviceHost {
  /** The configuration changed: bump the generation; notify the driver if DRIVER_OK is set. */
  configChanged(): void;
}

export interface VirtioDeviceModel {
  readonly deviceType: number;
  readonly name: string;
  /** Number of virtqueues the device has (may depend on configuration, e.g. blk num_queues). */
  readonly numQueues: number;
  queueMaxSize(index: number): number;
  /** Features the device offers (VERSION_1 and ring features included). */
  readonly offeredFeatures: bigint;
  /** Optional: device-type features a legacy interface must not offer (e.g. blk ZONED, which needs FEATURES_OK). */
  readonly legacyWithheldFeatures?: bigint;
  /** Size in bytes of the device-specific configuration space. */
  readonly configSize: number;
  /** Little-endian read of config space; out-of-range bytes read as 0. */
  readConfig(offset: number, size: 1 | 2 | 4): number;
  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void;
  /** The driver set FEATURES_OK with `features`: return false to refuse the combination. */
  acceptFeatures(features: bigint): boolean;
  /** DRIVER_OK: the device is live with this context until reset. */
  activate(ctx: DeviceContext): void;
  /** The driver notified queue `index` (runs on the device's own thread: the scheduler). */
  queueNotify(index: number): void;
  /** Device reset: drop all state tied to the driver (the backing store stays). */
  reset(): void;
  /**
   * Optional: queue `index` was reset on its own (VIRTIO_F_RING_RESET). The core has already
   * detached the ring; drop requests tied to it. Models that never offer RING_RESET omit it.
   */
  queueReset?(index: number): void;
  /**
   * Optional: called once when the model is attached to a core, so that it can report config
   * changes that happen before DRIVER_OK (e.g. a resize while the driver initialises).
   */
  bind?(host: DeviceHost): void;
}
