/**
 * Driver-side transport ops (in the manner of QEMU libqos' QVirtioBus): everything a virtio
 * driver needs from virtio-mmio, virtio-pci or their legacy forms, so that one driver runs over
 * all of them.
 */
export interface QueueAddresses {
  readonly size: number;
  readonly desc: number;
  readonly driver: number;
  readonly device: number;
}

export interface InterruptCause {
  readonly used: boolean;
  readonly config: boolean;
}

export interface VirtioTransport {
  readonly kind: 'mmio' | 'mmio-legacy' | 'pci' | 'pci-legacy';
  /** Legacy interface: no VERSION_1, guest-endian config, queue by page frame number. */
  readonly legacy: boolean;
  readonly deviceType: number;
  /** Interrupt vector(s) to wait on. With MSI-X, one per queue plus config. */
  readonly vectors: readonly number[];
  reset(): void;
  getStatus(): number;
  setStatus(status: number): void;
  deviceFeatures(): bigint;
  setDriverFeatures(features: bigint): void;
  /** 0 on legacy transports (no generation counter). */
  configGeneration(): number;
  readConfig(offset: number, size: 1 | 2 | 4): number;
  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void;
  /** Number of queues the transport reports, when it can (pci: num_queues); otherwise undefined. */
  numQueues(): number | undefined;
  /** Maximum size of queue `index` (0: the queue does not exist). */
  queueMaxSize(index: number): number;
  /**
   * Legacy transports need the split ring in one contiguous area laid out with this alignment
   * (mmio legacy: QueueAlign; pci legacy: 4096). Undefined for modern transports.
   */
  readonly legacyAlign?: number;
  /** The queue size cannot be chosen (legacy virtio-pci): the driver must use queueMaxSize(). */
  readonly fixedQueueSize?: boolean;
  /** Program size and addresses of queue `index` and enable it. */
  setupQueue(index: number, q: QueueAddresses): void;
  /** Per-queue reset (RING_RESET), where supported. */
  resetQueue?(index: number): void;
  /** Notify the device about queue `index` (`data`: NOTIFICATION_DATA value, when negotiated). */
  notify(index: number, data?: number): void;
  /** Read (and acknowledge) why the device interrupted. */
  ackInterrupt(vector: number): InterruptCause;
}
