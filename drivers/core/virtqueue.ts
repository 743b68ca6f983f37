/**
 * Driver-side virtqueue API, one for both ring layouts (in the manner of Linux's virtio_ring):
 * a driver posts buffers with a token, kicks, and collects used tokens. Implementations keep all
 * bookkeeping (free list, per-id lengths and tokens) in private memory and validate every used
 * element against it; a misbehaving device gets a DeviceMisbehaviourError, never corrupted state.
 */
export interface DmaBuffer {
  readonly addr: number;
  readonly len: number;
}

export interface UsedBuffer<T> {
  readonly token: T;
  /** Bytes the device reports writing (validated: never above the writable length posted). */
  readonly len: number;
}

export interface Virtqueue<T = unknown> {
  readonly index: number;
  readonly size: number;
  readonly layout: 'split' | 'packed';
  /** Descriptors free for new buffers. */
  readonly numFree: number;
  /** Buffers posted and not yet used. */
  readonly inFlight: number;
  /**
   * Post one buffer: device-readable parts `out`, then device-writable parts `inp`.
   * Returns false when there is no room (nothing is changed then).
   */
  add(out: readonly DmaBuffer[], inp: readonly DmaBuffer[], token: T): boolean;
  /** Publish what was added; notify the device if it wants to be (flags / event idx). Returns whether it notified. */
  kick(): boolean;
  /** The next used buffer, or null. */
  getUsed(): UsedBuffer<T> | null;
  /** Ask the device not to interrupt for this queue (best effort). */
  disableInterrupts(): void;
  /** Ask for interrupts again; returns false when used buffers are already pending (poll again). */
  enableInterrupts(): boolean;
  /** Release all guest memory the queue allocated. */
  destroy(): void;
  /** Tokens of the buffers still in flight (for a driver that resets and drops the queue). */
  outstandingTokens?(): T[];
}
