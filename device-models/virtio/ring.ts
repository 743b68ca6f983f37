/**
 * The interface between the device-side core (core.ts) and a ring layout (split-queue.ts,
 * packed-queue.ts): the per-queue configuration the transport writes, what a ring gets from the
 * core, and what the core holds of a live ring.
 */
import type { GuestMemory } from '../machine/memory.ts';
import type { DriverMisbehaviourError } from '../../spec-refs/errors.ts';
import type { DeviceQueue } from './model.ts';

/** Per-queue configuration, written by the transport (the driver's view of the queue). */
export interface QueueConfig {
  readonly index: number;
  readonly maxSize: number;
  size: number;
  /** QueueReady / queue_enable (legacy: a non-zero PFN). */
  ready: boolean;
  /** Descriptor area (split: descriptor table; packed: descriptor ring). */
  desc: number;
  /** Driver area (split: available ring; packed: driver event suppression). */
  driver: number;
  /** Device area (split: used ring; packed: device event suppression). */
  device: number;
  /** A queue reset (RING_RESET) is in progress. */
  resetting: boolean;
}

/** What a ring implementation gets from the core. */
export interface RingHost {
  readonly mem: GuestMemory;
  /** The driver broke the ring: record, set DEVICE_NEEDS_RESET, stop every queue. */
  driverError(err: DriverMisbehaviourError): void;
  /** Raise a used-buffer notification for the queue. */
  signalUsed(index: number): void;
}

/** Negotiated facts a ring needs, as booleans (no BigInt on the hot path). */
export interface RingOptions {
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  readonly inOrder: boolean;
  readonly legacy: boolean;
}

/** A live ring as the core holds it: the model's DeviceQueue plus life-cycle control. */
export interface CoreQueue extends DeviceQueue {
  readonly layout: 'split' | 'packed';
  /**
   * Stop the ring. `halt` (DEVICE_NEEDS_RESET): no more chains are taken, but chains already
   * taken may still be completed. `detach` (reset, queue reset): the ring never touches guest
   * memory again, completions included.
   */
  stop(mode: 'halt' | 'detach'): void;
  /** VIRTIO_F_SUSPEND: stop (true) or restart (false) taking new chains; completions still go through. */
  pause?(on: boolean): void;
  /** Chains taken and not yet completed (for suspend: wait until every one has been used). */
  readonly numInFlight?: number;
}

/** A ring layout: how to validate a queue configuration and build the ring over it. */
export interface RingLayout {
  readonly name: 'split' | 'packed';
  /** A reason the configuration is unusable (size, alignment, areas outside RAM...), or null. */
  validate(cfg: Readonly<QueueConfig>, mem: GuestMemory, opts: RingOptions): DriverMisbehaviourError | null;
  create(host: RingHost, cfg: Readonly<QueueConfig>, opts: RingOptions): CoreQueue;
}
