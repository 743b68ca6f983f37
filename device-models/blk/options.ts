/**
 * Options of the virtio-blk device model (device-types/blk/description.tex): the backend, the
 * feature bits offered, the config-space values (limits, topology, cache mode, zoned
 * characteristics) and the model's own behaviour (reordering, latency), plus the statistics it
 * keeps. device.ts re-exports all of it; config-space.ts validates the options.
 */
import { BlkF } from '../../spec-refs/abi/virtio.ts';
import type { BlkBackend } from './backend.ts';
import type { ZonedOptions } from './zones.ts';

export interface BlkLimits {
  /** Largest num_sectors of one segment (config max_*_sectors). */
  maxSectors: number;
  /** Most segments in one request (config max_*_seg). */
  maxSeg: number;
  /** Start sectors must be a multiple of this (config *_sector_alignment); 0 or 1: none. */
  alignment?: number;
}

export interface BlkTopology {
  physicalBlockExp: number;
  alignmentOffset: number;
  minIoSize: number;
  optIoSize: number;
}

export interface VirtioBlkOptions {
  backend: BlkBackend;
  /**
   * virtio-blk feature bits (BlkF values) to offer. Default: SIZE_MAX, SEG_MAX, BLK_SIZE, FLUSH,
   * TOPOLOGY, CONFIG_WCE, DISCARD, WRITE_ZEROES, SECURE_ERASE, and MQ when numQueues > 1.
   * RO is added when the disk is read-only. GEOMETRY, LIFETIME and ZONED are not implemented.
   */
  blkFeatures?: readonly number[];
  /** Core feature bits offered. Default VERSION_1 | INDIRECT_DESC | EVENT_IDX. */
  ringFeatures?: bigint;
  /** Offer VIRTIO_BLK_F_RO even when the backend is writable. */
  readOnly?: boolean;
  /** Request queues (config num_queues; needs MQ when above 1). Default 1. */
  numQueues?: number;
  /** Maximum size of every queue. Default 256. */
  queueSize?: number;
  /** Config seg_max: most data segments in one IN/OUT request. Default queueSize - 2. */
  segMax?: number;
  /** Config size_max: largest data segment in bytes. Default 1 MiB. */
  sizeMax?: number;
  /** Config blk_size. Default 512. */
  blkSize?: number;
  topology?: BlkTopology;
  /** Cache mode after reset when CONFIG_WCE is offered: 1 writeback (default), 0 writethrough. */
  writeback?: 0 | 1;
  discard?: BlkLimits;
  writeZeroes?: BlkLimits & { mayUnmap?: boolean };
  secureErase?: BlkLimits;
  /** Reject DISCARD / SECURE_ERASE segments whose start is not aligned (default true). */
  enforceAlignment?: boolean;
  /** Device ID string returned by GET_ID (ASCII, at most 20 bytes). */
  id?: string;
  /** Complete each batch in a seeded random order (exercises out-of-order completion). */
  reorder?: boolean;
  /** Complete each batch this many ns of virtual time after it was taken (0: at once). */
  latencyNs?: number;
  /**
   * A zoned device (VIRTIO_BLK_F_ZONED offered): zone model, zone size, limits, conventional /
   * read-only / offline zones. See zones.ts. Absent: not zoned, ZONED not offered (blk.device.5).
   */
  zoned?: ZonedOptions;
}

export interface BlkStats {
  requests: number;
  reads: number;
  writes: number;
  flushes: number;
  bytesRead: number;
  bytesWritten: number;
  ok: number;
  ioerr: number;
  unsupp: number;
  /** Chains that could carry no status (no writable byte): completed with used.len 0. */
  noStatus: number;
  /** Notifications handled (batches). */
  batches: number;
}

export const DEFAULT_BLK_FEATURES: readonly number[] = [
  BlkF.SIZE_MAX,
  BlkF.SEG_MAX,
  BlkF.BLK_SIZE,
  BlkF.FLUSH,
  BlkF.TOPOLOGY,
  BlkF.CONFIG_WCE,
  BlkF.DISCARD,
  BlkF.WRITE_ZEROES,
  BlkF.SECURE_ERASE,
];
