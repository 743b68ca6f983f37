/**
 * The virtio-blk driver's public types (device-types/blk/description.tex, VIRTIO 1.4): options,
 * what the driver read from config space, requests, results and the per-queue request slots.
 * driver.ts re-exports all of them; BlkRequester is the part of VirtioBlkDriver that the request
 * helpers built on submit/wait (ranges.ts, zoned.ts, sync.ts) use.
 */
import type { DmaBuffer } from '../core/virtqueue.ts';
import type { GuestPlatform } from '../../spec-refs/platform/platform.ts';
import type { PvkitError } from '../../spec-refs/errors.ts';

/** One request slot of a queue: its header + status DMA area and its state. */
export interface BlkSlot {
  readonly queue: number;
  readonly index: number;
  readonly hdr: DmaBuffer;
  readonly status: DmaBuffer;
  /** Reused element lists for Virtqueue.add (no allocation per request). */
  readonly out: DmaBuffer[];
  readonly inp: DmaBuffer[];
  /** Fixed lists for one data buffer: [hdr] / [data, status] and [hdr, data] / [status]. */
  readonly out1: DmaBuffer[];
  readonly inp2: DmaBuffer[];
  readonly out2: DmaBuffer[];
  readonly inp1: DmaBuffer[];
  /** ZONE_APPEND's append_sector (8 bytes after the status in the slot's DMA area). */
  readonly append: DmaBuffer;
  gen: number;
  busy: boolean;
  /** Device-writable bytes posted (data + status). */
  wlen: number;
  type: number;
  callback: BlkCallback | undefined;
}

/** Completion callback: status (-1 when the device misbehaved), handle, the error if any, used.len. */
export type BlkCallback = (status: number, handle: number, error: PvkitError | undefined, len: number) => void;

export interface BlkDriverOptions {
  /** Core feature bits the driver may accept (default INDIRECT_DESC | EVENT_IDX | RING_PACKED). */
  readonly ringFeatures?: bigint;
  /** Feature bits the driver will not accept even if offered (to test feature combinations). */
  readonly withoutFeatures?: bigint;
  /** Upper bound on each queue's size (the device's maximum rounded down as the ring needs). Default 1024. */
  readonly queueSize?: number;
  /** Most queues to use with MQ (default 4). */
  readonly maxQueues?: number;
  /** Indirect tables for requests of at least this many elements, when negotiated (default 2; Infinity: never). */
  readonly indirectThreshold?: number;
  /** Bound of every wait, in target nanoseconds (default 1 s). */
  readonly timeoutNs?: number;
  /** Retries of the config generation loop before giving up (default 64). */
  readonly configRetries?: number;
  /**
   * Zoned devices (VIRTIO_BLK_F_ZONED): true (default) accepts ZONED, since this driver handles
   * every zone model (blk.driver.5); false declines it, fails a host-managed device before
   * FEATURES_OK (blk.driver.8) and drives a host-aware one as a plain disk (blk.driver.9, .10).
   */
  readonly zoned?: boolean;
}

/** The zoned characteristics the driver works with (ZONED negotiated, model HM or HA). */
export interface BlkZonedInfo {
  readonly model: 'hm' | 'ha';
  readonly zoneSectors: number;
  readonly maxOpen: number;
  readonly maxActive: number;
  /** 0: ZONE_APPEND not supported. */
  readonly maxAppendSectors: number;
  /** Bytes. */
  readonly writeGranularity: number;
  readonly nrZones: number;
  /** Zone types (BlkZoneType) from the report taken at probe. */
  readonly types: Uint8Array;
}

/** One zone as ZONE_REPORT describes it. */
export interface BlkZoneInfo {
  readonly start: number;
  readonly cap: number;
  readonly wp: number;
  readonly type: number;
  readonly state: number;
}

/** What the driver read from config space (validated; see `warnings` for values it corrected). */
export interface BlkDeviceInfo {
  /** Capacity in 512-byte sectors. */
  capacity: number;
  readonly readOnly: boolean;
  readonly blkSize: number;
  /** Most data segments per IN/OUT request (Infinity: no limit given). */
  readonly segMax: number;
  /** Largest data segment in bytes (Infinity: no limit given). */
  readonly sizeMax: number;
  numQueues: number;
  readonly topology?: { physicalBlockExp: number; alignmentOffset: number; minIoSize: number; optIoSize: number };
  readonly discard?: RangeLimits;
  readonly writeZeroes?: RangeLimits & { mayUnmap: boolean };
  readonly secureErase?: RangeLimits;
  /** 'writeback': completed writes need a FLUSH to be stable; 'writethrough': they are stable. */
  cache: 'writeback' | 'writethrough';
  readonly flush: boolean;
  readonly configWce: boolean;
  /** Set when ZONED is negotiated and the model is host-managed or host-aware. */
  zoned?: BlkZonedInfo;
}

export interface RangeLimits {
  readonly maxSectors: number;
  readonly maxSeg: number;
  readonly alignment: number;
}

export interface BlkRange {
  readonly sector: number;
  readonly sectors: number;
  readonly unmap?: boolean;
}

export interface BlkRequest {
  readonly type: number;
  /** Start sector (IN / OUT); 0 for the others. */
  readonly sector?: number;
  /** The data buffers: device-writable for IN and GET_ID, device-readable otherwise. */
  readonly data?: readonly DmaBuffer[];
  /** Queue to use (default: round robin over the queues in use). */
  readonly queue?: number;
  /**
   * Skip the driver-side checks (size, range, limits, negotiated features): for conformance
   * tests that send what a correct driver never would. Device answers are still validated.
   */
  readonly unchecked?: boolean;
  /** Direction of `data` for types the driver does not know (unchecked only). */
  readonly writable?: boolean;
}

export interface BlkResult {
  /** The status byte (Blk.S_OK / S_IOERR / S_UNSUPP), or -1 when the device misbehaved. */
  readonly status: number;
  /** used.len the device reported. */
  readonly len: number;
  /** Set when the device's answer could not be trusted. */
  readonly error?: PvkitError;
  /** ZONE_APPEND completed with OK: where the data went (blk.driver.35). */
  readonly appendSector?: number;
}

/** What the request helpers need of VirtioBlkDriver: its public request API. */
export interface BlkRequester {
  readonly platform: GuestPlatform;
  readonly info: BlkDeviceInfo;
  /** Largest IN/OUT request in bytes the device's limits allow. */
  readonly maxTransfer: number;
  submit(req: BlkRequest, callback?: BlkCallback): number;
  wait(handle: number): BlkResult;
}
