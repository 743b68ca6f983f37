/**
 * The virtio-blk device model (device-types/blk/description.tex, VIRTIO 1.4).
 *
 * It implements VirtioDeviceModel: the shared core (status, features, rings, transports) hands
 * it validated descriptor chains; this file only parses virtio_blk_req, talks to a BlkBackend
 * and writes the status byte. Every request taken from a queue is completed exactly once. Guest
 * input never makes it throw: a malformed request gets VIRTIO_BLK_S_IOERR (a driver error, in
 * the spec's words) or VIRTIO_BLK_S_UNSUPP where the spec says so.
 *
 * What it writes and what used.len says (split.device.16: the device writes at least `len`
 * bytes from the start of the writable area):
 * - The status byte is the last byte of the chain's device-writable area (the spec fixes the
 *   request layout, not the descriptor arrangement: split.device.1).
 * - When a status is written, every writable byte before it is written too: the data of a
 *   successful IN or GET_ID, zeroes otherwise. used.len is then the whole writable length.
 * - A chain with no writable byte cannot carry a status: it is completed with used.len 0 and
 *   nothing is written.
 */
import type { Chain, DeviceContext, Segment, VirtioDeviceModel } from '../virtio/model.ts';
import type { GuestMemory } from '../machine/memory.ts';
import { Blk, BlkF, DeviceType, F, bit, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { GuestMemoryError, UsageError, hex } from '../../spec-refs/errors.ts';
import { BlkConfig, BlkDwz, BlkReqHeader, BlkZonedConfig, BlkZoneModel, BlkZoneReport, BLK_APPEND_SECTOR_BYTES } from '../../spec-refs/abi/blk-layout.ts';
import { SECTOR, type BlkBackend } from './backend.ts';
import { ZoneSet, type ZonedOptions } from './zones.ts';

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

const IMPLEMENTED = new Set<number>([...DEFAULT_BLK_FEATURES, BlkF.MQ, BlkF.RO, BlkF.ZONED]);
const TWO32 = 0x1_0000_0000;
const S_OK = Blk.S_OK;
const S_IOERR = Blk.S_IOERR;
const S_UNSUPP = Blk.S_UNSUPP;

function u32(name: string, v: number, min = 0, max = 0xffff_ffff): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new UsageError('usage.blk.config', `bad virtio-blk option ${name}`, { expected: `an integer in ${min}..${max}`, seen: String(v) });
  return v;
}

export class VirtioBlkDevice implements VirtioDeviceModel {
  readonly deviceType = DeviceType.BLOCK;
  readonly name: string;
  readonly numQueues: number;
  readonly offeredFeatures: bigint;
  readonly configSize = BlkConfig.SIZE;
  readonly backend: BlkBackend;
  readonly stats: BlkStats = { requests: 0, reads: 0, writes: 0, flushes: 0, bytesRead: 0, bytesWritten: 0, ok: 0, ioerr: 0, unsupp: 0, noStatus: 0, batches: 0 };

  private readonly config = new Uint8Array(BlkConfig.SIZE);
  private readonly cfg = new DataView(this.config.buffer);
  private readonly queueSize: number;
  private readonly defaultWriteback: number;
  private readonly idBytes = new Uint8Array(Blk.ID_BYTES);
  private readonly reorder: boolean;
  private readonly latencyNs: number;
  private readonly enforceAlignment: boolean;

  // offered (o*) and negotiated (n*) feature booleans, cached for the hot path
  private readonly oRo: boolean;
  private readonly oFlush: boolean;
  private readonly oWce: boolean;
  private readonly oSegMax: boolean;
  private readonly oSizeMax: boolean;
  private nFlush = false;
  private nWce = false;
  private nDiscard = false;
  private nWriteZeroes = false;
  private nSecureErase = false;
  private nSegMax = false;
  private nSizeMax = false;
  private nZoned = false;
  /** ZONED negotiated with model HM or HA: zone rules apply to requests. */
  private zonedOn = false;
  /** FEATURES_OK was accepted without ZONED: the zoned fields read 0 (blk.device.7). */
  private zonedHidden = false;
  /** The zones (zoned option given), else undefined. */
  readonly zones: ZoneSet | undefined;
  /** Features a legacy interface must not offer (blk.device.6: ZONED needs FEATURES_OK). */
  readonly legacyWithheldFeatures = bit(BlkF.ZONED);

  private readonly segMax: number;
  private readonly sizeMax: number;
  private readonly discardLim: Required<BlkLimits>;
  private readonly wzLim: Required<BlkLimits>;
  private readonly seLim: Required<BlkLimits>;

  private ctx: DeviceContext | undefined;
  private mem: GuestMemory | undefined;
  /** Bumped on every activate/reset so that delayed completions of an old session are dropped. */
  private session = 0;
  private readonly hdr = new Uint8Array(BlkReqHeader.SIZE);
  private readonly hdrView = new DataView(this.hdr.buffer);
  private readonly dwz: Uint8Array;
  private readonly dwzView: DataView;

  constructor(opts: VirtioBlkOptions) {
    this.backend = opts.backend;
    this.name = `virtio-blk(${opts.backend.kind})`;
    const nq = u32('numQueues', opts.numQueues ?? 1, 1, 0xffff);
    this.queueSize = u32('queueSize', opts.queueSize ?? 256, 1, 32768);
    const feats = new Set(opts.blkFeatures ?? (nq > 1 ? [...DEFAULT_BLK_FEATURES, BlkF.MQ] : DEFAULT_BLK_FEATURES));
    if (opts.readOnly || opts.backend.readOnly) feats.add(BlkF.RO);
    if (opts.zoned) feats.add(BlkF.ZONED);
    if (feats.has(BlkF.ZONED) && !opts.zoned) throw new UsageError('usage.blk.zoned', 'VIRTIO_BLK_F_ZONED needs the zoned option (blk.device.5)', { statements: ['blk.device.5'] });
    for (const f of feats) {
      if (!IMPLEMENTED.has(f)) throw new UsageError('usage.blk.features', 'virtio-blk feature not implemented by this model', { expected: [...IMPLEMENTED].join(','), seen: String(f) });
    }
    if (nq > 1 && !feats.has(BlkF.MQ)) throw new UsageError('usage.blk.mq', 'more than one queue needs VIRTIO_BLK_F_MQ', { seen: `numQueues=${nq}` });
    // blk.device.2: CONFIG_WCE may only be offered together with FLUSH
    if (feats.has(BlkF.CONFIG_WCE) && !feats.has(BlkF.FLUSH)) {
      throw new UsageError('usage.blk.wce', 'VIRTIO_BLK_F_CONFIG_WCE needs VIRTIO_BLK_F_FLUSH', { statements: ['blk.device.2'] });
    }
    this.numQueues = feats.has(BlkF.MQ) ? nq : 1;
    let offered = opts.ringFeatures ?? (bit(F.VERSION_1) | bit(F.INDIRECT_DESC) | bit(F.EVENT_IDX));
    for (const f of feats) offered |= bit(f);
    this.offeredFeatures = offered;
    this.oRo = feats.has(BlkF.RO);
    this.oFlush = feats.has(BlkF.FLUSH);
    this.oWce = feats.has(BlkF.CONFIG_WCE);
    this.oSegMax = feats.has(BlkF.SEG_MAX);
    this.oSizeMax = feats.has(BlkF.SIZE_MAX);
    this.segMax = u32('segMax', opts.segMax ?? Math.max(1, this.queueSize - 2), 1);
    this.sizeMax = u32('sizeMax', opts.sizeMax ?? 1 << 20, 1);
    const lim = (name: string, l: BlkLimits | undefined, d: BlkLimits): Required<BlkLimits> => ({
      maxSectors: u32(`${name}.maxSectors`, (l ?? d).maxSectors, 1),
      maxSeg: u32(`${name}.maxSeg`, (l ?? d).maxSeg, 1, 4096),
      alignment: u32(`${name}.alignment`, (l ?? d).alignment ?? 1, 0),
    });
    this.discardLim = lim('discard', opts.discard, { maxSectors: 0x3f_ffff, maxSeg: 16, alignment: 8 });
    this.wzLim = lim('writeZeroes', opts.writeZeroes, { maxSectors: 0x3f_ffff, maxSeg: 16 });
    this.seLim = lim('secureErase', opts.secureErase, { maxSectors: 0x3f_ffff, maxSeg: 16, alignment: 8 });
    if (opts.zoned) {
      this.zones = new ZoneSet(Math.floor(opts.backend.size / SECTOR), opts.zoned);
      const zs = this.zones.zoneSectors;
      if (this.zones.zoned) {
        // blk.device.57: with ZONED, secure erase works on whole zones
        this.seLim.alignment = zs * Math.max(1, Math.round(this.seLim.alignment / zs));
        this.seLim.maxSectors = Math.max(zs, this.seLim.maxSectors - (this.seLim.maxSectors % zs));
      }
    }
    this.enforceAlignment = opts.enforceAlignment ?? true;
    const maxSeg = Math.max(this.discardLim.maxSeg, this.wzLim.maxSeg, this.seLim.maxSeg);
    this.dwz = new Uint8Array(maxSeg * BlkDwz.SIZE);
    this.dwzView = new DataView(this.dwz.buffer);
    this.reorder = opts.reorder ?? false;
    this.latencyNs = opts.latencyNs ?? 0;
    const id = opts.id ?? 'pvkit-blk';
    for (let i = 0; i < id.length; i++) {
      const c = id.charCodeAt(i);
      if (i >= Blk.ID_BYTES || c > 0x7e || c < 0x20) throw new UsageError('usage.blk.id', 'device id must be printable ASCII of at most 20 bytes', { seen: JSON.stringify(id) });
      this.idBytes[i] = c;
    }

    // ---- config space (blk.device.4: unused0/unused1 stay 0; zoned stays 0: ZONED not offered, blk.device.5)
    this.setCapacity(opts.backend.size);
    const c = this.cfg;
    if (this.oSizeMax) c.setUint32(BlkConfig.SIZE_MAX, this.sizeMax, true);
    if (this.oSegMax) c.setUint32(BlkConfig.SEG_MAX, this.segMax, true);
    if (feats.has(BlkF.BLK_SIZE)) c.setUint32(BlkConfig.BLK_SIZE, u32('blkSize', opts.blkSize ?? 512, 1), true);
    if (feats.has(BlkF.TOPOLOGY)) {
      const t = opts.topology ?? { physicalBlockExp: 3, alignmentOffset: 0, minIoSize: 8, optIoSize: 0 };
      c.setUint8(BlkConfig.TOPOLOGY_PHYSICAL_BLOCK_EXP, u32('topology.physicalBlockExp', t.physicalBlockExp, 0, 255));
      c.setUint8(BlkConfig.TOPOLOGY_ALIGNMENT_OFFSET, u32('topology.alignmentOffset', t.alignmentOffset, 0, 255));
      c.setUint16(BlkConfig.TOPOLOGY_MIN_IO_SIZE, u32('topology.minIoSize', t.minIoSize, 0, 0xffff), true);
      c.setUint32(BlkConfig.TOPOLOGY_OPT_IO_SIZE, u32('topology.optIoSize', t.optIoSize), true);
    }
    this.defaultWriteback = this.oWce ? (opts.writeback ?? 1) : this.oFlush ? 1 : 0;
    c.setUint8(BlkConfig.WRITEBACK, this.defaultWriteback);
    if (feats.has(BlkF.MQ)) c.setUint16(BlkConfig.NUM_QUEUES, this.numQueues, true);
    if (feats.has(BlkF.DISCARD)) {
      c.setUint32(BlkConfig.MAX_DISCARD_SECTORS, this.discardLim.maxSectors, true);
      c.setUint32(BlkConfig.MAX_DISCARD_SEG, this.discardLim.maxSeg, true);
      c.setUint32(BlkConfig.DISCARD_SECTOR_ALIGNMENT, this.discardLim.alignment, true);
    }
    if (feats.has(BlkF.WRITE_ZEROES)) {
      c.setUint32(BlkConfig.MAX_WRITE_ZEROES_SECTORS, this.wzLim.maxSectors, true);
      c.setUint32(BlkConfig.MAX_WRITE_ZEROES_SEG, this.wzLim.maxSeg, true);
      // blk.device.28: set iff a write-zeroes request can deallocate; both backends deallocate on unmap
      c.setUint8(BlkConfig.WRITE_ZEROES_MAY_UNMAP, (opts.writeZeroes?.mayUnmap ?? true) ? 1 : 0);
    }
    if (feats.has(BlkF.SECURE_ERASE)) {
      c.setUint32(BlkConfig.MAX_SECURE_ERASE_SECTORS, this.seLim.maxSectors, true);
      c.setUint32(BlkConfig.MAX_SECURE_ERASE_SEG, this.seLim.maxSeg, true);
      c.setUint32(BlkConfig.SECURE_ERASE_SECTOR_ALIGNMENT, this.seLim.alignment, true);
    }
    if (this.zones) {
      // blk.device.9-18: the zoned characteristics; unused2 stays 0 (blk.device.18).
      // blk.device.15: max_append_sectors never above seg_max * size_max
      const z = this.zones;
      const o = BlkConfig.ZONED;
      const perReq = this.oSegMax && this.oSizeMax ? Math.floor((this.segMax * this.sizeMax) / SECTOR) : Infinity;
      const maxAppend = Math.min(z.maxAppendSectors, perReq);
      (z as { maxAppendSectors: number }).maxAppendSectors = maxAppend;
      if (z.zoned) {
        c.setUint32(o + BlkZonedConfig.ZONE_SECTORS, z.zoneSectors, true);
        c.setUint32(o + BlkZonedConfig.MAX_OPEN_ZONES, z.maxOpen, true);
        c.setUint32(o + BlkZonedConfig.MAX_ACTIVE_ZONES, z.maxActive, true);
        c.setUint32(o + BlkZonedConfig.MAX_APPEND_SECTORS, maxAppend, true);
        c.setUint32(o + BlkZonedConfig.WRITE_GRANULARITY, z.writeGranularity, true);
      }
      c.setUint8(o + BlkZonedConfig.MODEL, z.model);
    }
  }

  /** Capacity in 512-byte sectors, as the config space says. */
  get capacity(): number {
    return this.cfg.getUint32(BlkConfig.CAPACITY + 4, true) * TWO32 + this.cfg.getUint32(BlkConfig.CAPACITY, true);
  }

  /** The cache mode now in force (config writeback). */
  get writeback(): number {
    return this.config[BlkConfig.WRITEBACK]!;
  }

  private setCapacity(bytes: number): void {
    const sectors = Math.floor(bytes / SECTOR);
    this.cfg.setUint32(BlkConfig.CAPACITY, sectors % TWO32, true);
    this.cfg.setUint32(BlkConfig.CAPACITY + 4, Math.floor(sectors / TWO32), true);
  }

  /**
   * Change the disk's size (bytes, a multiple of 512). The device may change capacity at any
   * time (blk.device.19) and then sends a configuration change notification (blk.device.20).
   */
  resize(bytes: number): void {
    if (this.zones) throw new UsageError('usage.blk.zoned', 'a zoned device cannot be resized');
    this.backend.resize(bytes);
    this.setCapacity(this.backend.size);
    this.ctx?.configChanged();
  }

  queueMaxSize(index: number): number {
    return index >= 0 && index < this.numQueues ? this.queueSize : 0;
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    // blk.device.7: ZONED declined (HA / NONE) -> every zoned field reads 0
    if (this.zonedHidden && offset + size > BlkConfig.ZONED && offset < BlkConfig.ZONED + BlkZonedConfig.SIZE) return 0;
    if (offset >= 0 && offset + size <= BlkConfig.SIZE) {
      if (size === 1) return this.config[offset]!;
      if (size === 2) return this.cfg.getUint16(offset, true);
      return this.cfg.getUint32(offset, true);
    }
    let v = 0;
    for (let i = size - 1; i >= 0; i--) {
      const o = offset + i;
      v = v * 256 + (o >= 0 && o < BlkConfig.SIZE ? this.config[o]! : 0);
    }
    return v;
  }

  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    // Only `writeback` is writable, and only with CONFIG_WCE (description.tex, Device Initialization).
    if (offset === BlkConfig.WRITEBACK && size === 1 && this.oWce && (value === 0 || value === 1)) {
      // blk.device.3: without FLUSH negotiated the cache stays writethrough
      if (this.ctx && !this.nFlush) return;
      this.config[BlkConfig.WRITEBACK] = value;
    }
  }

  acceptFeatures(features: bigint): boolean {
    if ((features & ~this.offeredFeatures) !== 0n) return false;
    // blk.device.8: a host-managed device cannot work for a driver that declines ZONED
    if (this.zones?.model === BlkZoneModel.HM && !hasFeature(features, BlkF.ZONED)) return false;
    this.latch(features);
    this.zonedHidden = this.zones !== undefined && !this.nZoned;
    // blk.device.3: CONFIG_WCE negotiated without FLUSH -> writethrough
    if (this.nWce && !this.nFlush) this.config[BlkConfig.WRITEBACK] = 0;
    return true;
  }

  private latch(features: bigint): void {
    this.nFlush = hasFeature(features, BlkF.FLUSH);
    this.nWce = hasFeature(features, BlkF.CONFIG_WCE);
    this.nDiscard = hasFeature(features, BlkF.DISCARD);
    this.nWriteZeroes = hasFeature(features, BlkF.WRITE_ZEROES);
    this.nSecureErase = hasFeature(features, BlkF.SECURE_ERASE);
    this.nSegMax = hasFeature(features, BlkF.SEG_MAX);
    this.nSizeMax = hasFeature(features, BlkF.SIZE_MAX);
    this.nZoned = hasFeature(features, BlkF.ZONED) && this.zones !== undefined;
    this.zonedOn = this.nZoned && this.zones!.zoned;
  }

  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
    this.mem = ctx.mem;
    this.session++;
    this.latch(ctx.features);
  }

  reset(): void {
    this.ctx = undefined;
    this.mem = undefined;
    this.session++;
    this.latch(0n);
    this.zonedHidden = false;
    this.config[BlkConfig.WRITEBACK] = this.defaultWriteback;
  }

  /**
   * A write is stable at completion unless the driver runs a writeback cache: FLUSH negotiated
   * and, with CONFIG_WCE, writeback = 1 (description.tex, Device Operation, cases 1 and 2).
   * Without FLUSH offered we may also commit (blk.device.32) and do, so no data is ever lost.
   */
  private get writethrough(): boolean {
    return !(this.nFlush && (!this.nWce || this.config[BlkConfig.WRITEBACK] === 1));
  }

  queueNotify(index: number): void {
    const ctx = this.ctx;
    if (!ctx || index < 0 || index >= this.numQueues || !(index === (index | 0))) return;
    const q = ctx.queue(index);
    this.stats.batches++;
    const delayed = this.reorder || this.latencyNs > 0;
    const done: { chain: Chain; written: number }[] | undefined = delayed ? [] : undefined;
    // Bounded: at most 4 queue sizes of chains per notification; the rest is left for a
    // follow-up event so that one queue cannot monopolise the device thread.
    let budget = 4 * q.size;
    for (;;) {
      q.disableNotify();
      let chain: Chain | null;
      while (budget > 0 && (chain = q.pop()) !== null) {
        budget--;
        const written = this.handle(chain);
        if (done) done.push({ chain, written });
        else q.push(chain, written);
      }
      if (budget === 0) {
        const session = this.session;
        ctx.scheduler.schedule(0, `${this.name} q${index} continue`, () => {
          if (this.session === session) this.queueNotify(index);
        });
        break;
      }
      if (q.enableNotify()) break;
    }
    if (!done) {
      q.flush();
      return;
    }
    if (this.reorder) {
      const rng = ctx.scheduler.rng;
      for (let i = done.length - 1; i > 0; i--) {
        const j = rng.below(i + 1);
        const t = done[i]!;
        done[i] = done[j]!;
        done[j] = t;
      }
    }
    const complete = () => {
      for (const d of done) q.push(d.chain, d.written);
      q.flush();
    };
    if (this.latencyNs > 0) {
      const session = this.session;
      ctx.scheduler.schedule(this.latencyNs, `${this.name} q${index} complete`, () => {
        if (this.session === session) complete();
      });
    } else complete();
  }

  // ---- request handling ------------------------------------------------------------------

  /** Handle one request; returns used.len. Never throws. */
  handle(chain: Chain): number {
    this.stats.requests++;
    const wlen = chain.writableLen;
    if (wlen === 0) {
      // No writable byte: no status can be reported. Complete with nothing written.
      this.stats.noStatus++;
      return 0;
    }
    let status: number;
    try {
      status = this.execute(chain, wlen);
    } catch {
      // a backend failure (fs error) or an unexpected guest-memory fault
      status = S_IOERR;
    }
    try {
      return this.finish(chain, wlen, status);
    } catch {
      return 0; // the status could not be written: report nothing written
    }
  }

  private finish(chain: Chain, wlen: number, status: number): number {
    if (status === S_OK) this.stats.ok++;
    else {
      if (status === S_IOERR) this.stats.ioerr++;
      else this.stats.unsupp++;
      // the data area was not (fully) produced: write zeroes over it so that used.len may
      // honestly cover the whole writable area (split.device.16)
      if (wlen > 1) this.fillWritable(chain.writable, wlen - 1);
    }
    if (!this.writeStatus(chain.writable, status)) return 0;
    return wlen;
  }

  /** Write the status into the last byte of the writable area. */
  private writeStatus(segs: readonly Segment[], status: number): boolean {
    for (let i = segs.length - 1; i >= 0; i--) {
      const s = segs[i]!;
      if (s.len === 0) continue;
      const mem = this.mem!;
      const a = s.addr + s.len - 1;
      const r = mem.regionOf(a, 1);
      if (!r) return false;
      r.bytes[a - r.base] = status;
      return true;
    }
    return false;
  }

  private fillWritable(segs: readonly Segment[], len: number): void {
    const mem = this.mem!;
    let left = len;
    for (let i = 0; i < segs.length && left > 0; i++) {
      const s = segs[i]!;
      const n = s.len < left ? s.len : left;
      if (n > 0 && mem.isRam(s.addr, n)) this.pieces(s.addr, n, 0, (v) => v.fill(0));
      left -= n;
    }
  }

  /**
   * Call `fn` with views of guest memory covering [addr, addr+len), split where a segment
   * crosses from one RAM region into the next; `pos` is the stream offset of the first byte.
   */
  private pieces(addr: number, len: number, pos: number, fn: (view: Uint8Array, pos: number) => void): void {
    const mem = this.mem!;
    const r = mem.regionOf(addr, len);
    if (r) {
      const o = addr - r.base;
      fn(r.bytes.subarray(o, o + len), pos);
      return;
    }
    let a = addr;
    let left = len;
    while (left > 0) {
      const reg = mem.regions.find((x) => a >= x.base && a < x.end);
      if (!reg) throw new GuestMemoryError('mem.out_of_ram', 'segment outside RAM', { expected: 'a chain segment the ring validated', seen: `${hex(a)}+${left}` });
      const n = Math.min(left, reg.end - a);
      fn(reg.bytes.subarray(a - reg.base, a - reg.base + n), pos);
      a += n;
      pos += n;
      left -= n;
    }
  }

  // the header fields of the request being handled
  private hType = 0;
  private hSecLo = 0;
  private hSecHi = 0;

  /** Read the 16-byte request header (each field once); false if the readable area is too short. */
  private readHeader(chain: Chain): boolean {
    const segs = chain.readable;
    if (chain.readableLen < BlkReqHeader.SIZE) return false;
    const s0 = segs[0]!;
    if (s0.len >= BlkReqHeader.SIZE) {
      const r = this.mem!.regionOf(s0.addr, BlkReqHeader.SIZE);
      if (r) {
        const o = s0.addr - r.base;
        this.hType = r.view.getUint32(o + BlkReqHeader.TYPE, true);
        this.hSecLo = r.view.getUint32(o + BlkReqHeader.SECTOR, true);
        this.hSecHi = r.view.getUint32(o + BlkReqHeader.SECTOR + 4, true);
        return true;
      }
    }
    this.gather(segs, 0, this.hdr, BlkReqHeader.SIZE);
    const h = this.hdrView;
    this.hType = h.getUint32(BlkReqHeader.TYPE, true);
    this.hSecLo = h.getUint32(BlkReqHeader.SECTOR, true);
    this.hSecHi = h.getUint32(BlkReqHeader.SECTOR + 4, true);
    return true;
  }

  /** Copy `len` bytes starting `offset` bytes into the readable stream into `out`. */
  private gather(segs: readonly Segment[], offset: number, out: Uint8Array, len: number): void {
    let skip = offset;
    let copied = 0;
    for (let i = 0; i < segs.length && copied < len; i++) {
      const s = segs[i]!;
      if (skip >= s.len) {
        skip -= s.len;
        continue;
      }
      const n = Math.min(s.len - skip, len - copied);
      this.pieces(s.addr + skip, n, copied, (v, pos) => out.set(v, pos));
      copied += n;
      skip = 0;
    }
  }

  private execute(chain: Chain, wlen: number): number {
    if (!this.readHeader(chain)) return S_IOERR; // header missing or short: a driver error
    const secLo = this.hSecLo;
    const secHi = this.hSecHi;
    switch (this.hType) {
      case Blk.T_IN:
        return this.doIn(chain, wlen, secLo, secHi);
      case Blk.T_OUT:
        return this.doOut(chain, wlen, secLo, secHi);
      case Blk.T_FLUSH:
        this.stats.flushes++;
        if (!this.oFlush) return S_UNSUPP;
        if (wlen !== 1) return S_IOERR; // nothing but the status may be device-writable
        // blk.device.31: every completed write is committed before the flush completes
        this.backend.flush();
        return S_OK;
      case Blk.T_GET_ID:
        // blk.driver.18: the data area is exactly 20 bytes; anything else is a driver error
        if (wlen - 1 !== Blk.ID_BYTES) return S_IOERR;
        this.scatterWritable(chain.writable, this.idBytes);
        return S_OK;
      case Blk.T_DISCARD:
        return this.nDiscard ? this.doRanges(chain, wlen, this.discardLim, 0) : S_UNSUPP;
      case Blk.T_WRITE_ZEROES:
        return this.nWriteZeroes ? this.doRanges(chain, wlen, this.wzLim, 1) : S_UNSUPP;
      case Blk.T_SECURE_ERASE:
        return this.nSecureErase ? this.doRanges(chain, wlen, this.seLim, 2) : S_UNSUPP;
      case Blk.T_ZONE_APPEND:
        return this.zonedOn ? this.doAppend(chain, wlen, secLo, secHi) : S_UNSUPP;
      case Blk.T_ZONE_REPORT:
        return this.zonedOn ? this.doReport(chain, wlen, secLo, secHi) : S_UNSUPP;
      case Blk.T_ZONE_OPEN:
      case Blk.T_ZONE_CLOSE:
      case Blk.T_ZONE_FINISH:
      case Blk.T_ZONE_RESET:
      case Blk.T_ZONE_RESET_ALL:
        return this.zonedOn ? this.doZoneMgmt(chain, wlen, secLo, secHi) : S_UNSUPP;
      default:
        // GET_LIFETIME (LIFETIME never offered), zone requests (ZONED never offered:
        // blk.device.36; BLK_ZONE_TYPES), and every unknown type
        return S_UNSUPP;
    }
  }

  /** Byte offset on the disk of [sector, sector + bytes), or -1 when it is not inside the capacity. */
  private range(secLo: number, secHi: number, bytes: number): number {
    if (secHi >= 0x20_0000) return -1; // sector * 512 would pass 2^62: beyond any capacity
    const sector = secHi * TWO32 + secLo;
    const cap = this.capacity;
    if (sector > cap) return -1;
    const off = sector * SECTOR;
    if (off + bytes > cap * SECTOR) return -1;
    return off;
  }

  /** Check seg_max / size_max on the data segments of a stream starting `skip` bytes in. */
  private segLimitsOk(segs: readonly Segment[], skip: number, dataLen: number): boolean {
    if (!this.nSegMax && !this.nSizeMax) return true;
    let count = 0;
    let left = dataLen;
    for (let i = 0; i < segs.length && left > 0; i++) {
      const s = segs[i]!;
      if (skip >= s.len) {
        skip -= s.len;
        continue;
      }
      const n = Math.min(s.len - skip, left);
      skip = 0;
      if (n === 0) continue;
      count++;
      if (this.nSizeMax && n > this.sizeMax) return false;
      left -= n;
    }
    return !this.nSegMax || count <= this.segMax;
  }

  private doIn(chain: Chain, wlen: number, secLo: number, secHi: number): number {
    this.stats.reads++;
    const dataLen = wlen - 1;
    // blk.driver.16: data is a multiple of 512 bytes; device-readable data after the header
    // has no place in a read request
    if (dataLen % SECTOR !== 0 || chain.readableLen !== BlkReqHeader.SIZE) return S_IOERR;
    const off = this.range(secLo, secHi, dataLen);
    if (off < 0) return S_IOERR; // blk.driver.12: beyond capacity
    if (this.zonedOn) {
      const st = this.zones!.checkRead(off / SECTOR, dataLen / SECTOR);
      if (st !== S_OK) return st;
    }
    const segs = chain.writable;
    if (!this.segLimitsOk(segs, 0, dataLen)) return S_IOERR;
    const backend = this.backend;
    let pos = 0;
    for (let i = 0; i < segs.length && pos < dataLen; i++) {
      const s = segs[i]!;
      const n = Math.min(s.len, dataLen - pos);
      if (n === 0) continue;
      const mem = this.mem!;
      const r = mem.regionOf(s.addr, n);
      if (r) {
        backend.read(off + pos, r.bytes, s.addr - r.base, n);
      } else this.pieces(s.addr, n, pos, (v, p) => backend.read(off + p, v, 0, v.length));
      pos += n;
    }
    this.stats.bytesRead += dataLen;
    return S_OK;
  }

  private doOut(chain: Chain, wlen: number, secLo: number, secHi: number): number {
    this.stats.writes++;
    // blk.device.21 / blk.device.22: with RO offered a write fails and nothing is written
    if (this.oRo) return S_IOERR;
    const dataLen = chain.readableLen - BlkReqHeader.SIZE;
    if (wlen !== 1 || dataLen % SECTOR !== 0) return S_IOERR; // blk.driver.16
    const off = this.range(secLo, secHi, dataLen);
    if (off < 0) return S_IOERR; // blk.driver.12
    const segs = chain.readable;
    if (!this.segLimitsOk(segs, BlkReqHeader.SIZE, dataLen)) return S_IOERR;
    if (this.zonedOn) {
      const w = this.zones!.write(off / SECTOR, dataLen / SECTOR, false);
      if (w.status !== S_OK) return w.status;
    }
    return this.writeData(chain, off, dataLen);
  }

  /** Copy the data after the header of `chain` to disk offset `off`. */
  private writeData(chain: Chain, off: number, dataLen: number): number {
    const segs = chain.readable;
    const backend = this.backend;
    let skip: number = BlkReqHeader.SIZE;
    let pos = 0;
    for (let i = 0; i < segs.length && pos < dataLen; i++) {
      const s = segs[i]!;
      if (skip >= s.len) {
        skip -= s.len;
        continue;
      }
      const n = Math.min(s.len - skip, dataLen - pos);
      const a = s.addr + skip;
      const r = this.mem!.regionOf(a, n);
      if (r) backend.write(off + pos, r.bytes, a - r.base, n);
      else this.pieces(a, n, pos, (v, p) => backend.write(off + p, v, 0, v.length));
      pos += n;
      skip = 0;
    }
    if (this.writethrough && backend.persistent) backend.flush(); // blk.device.31, cases 1 and 2
    this.stats.bytesWritten += dataLen;
    return S_OK;
  }

  /** DISCARD (kind 0), WRITE_ZEROES (1), SECURE_ERASE (2): a list of virtio_blk_discard_write_zeroes. */
  private doRanges(chain: Chain, wlen: number, lim: Required<BlkLimits>, kind: 0 | 1 | 2): number {
    if (this.oRo) return S_IOERR; // blk.device.21 / .22: these change the medium too
    const payload = chain.readableLen - BlkReqHeader.SIZE;
    // blk.driver.17: a whole number of 16-byte segments (and at least one)
    if (wlen !== 1 || payload <= 0 || payload % BlkDwz.SIZE !== 0) return S_IOERR;
    const nseg = payload / BlkDwz.SIZE;
    // blk.driver.19 / .20 / .21: no more segments than max_*_seg
    if (nseg > lim.maxSeg) return S_IOERR;
    this.gather(chain.readable, BlkReqHeader.SIZE, this.dwz, payload);
    const v = this.dwzView;
    // flags first: an unknown flag makes the whole request UNSUPP (blk.device.23), and so does
    // unmap on a discard (blk.device.24) or on a secure erase (unmap only means something to
    // write zeroes)
    for (let i = 0; i < nseg; i++) {
      const flags = v.getUint32(i * BlkDwz.SIZE + BlkDwz.FLAGS, true);
      if ((flags & ~Blk.WRITE_ZEROES_FLAG_UNMAP) !== 0) return S_UNSUPP;
      if (kind !== 1 && flags !== 0) return S_UNSUPP;
    }
    const align = this.enforceAlignment && kind !== 1 && lim.alignment > 1 ? lim.alignment : 1;
    for (let i = 0; i < nseg; i++) {
      const b = i * BlkDwz.SIZE;
      const n = v.getUint32(b + BlkDwz.NUM_SECTORS, true);
      if (n > lim.maxSectors) return S_IOERR;
      const lo = v.getUint32(b + BlkDwz.SECTOR, true);
      const hi = v.getUint32(b + BlkDwz.SECTOR + 4, true);
      if (this.range(lo, hi, n * SECTOR) < 0) return S_IOERR;
      if (align > 1 && (hi * TWO32 + lo) % align !== 0) return S_IOERR;
    }
    if (this.zonedOn) {
      const st = this.zonedRanges(v, nseg, kind);
      if (st !== S_OK) return st;
    }
    const backend = this.backend;
    for (let i = 0; i < nseg; i++) {
      const b = i * BlkDwz.SIZE;
      const n = v.getUint32(b + BlkDwz.NUM_SECTORS, true);
      const off = this.range(v.getUint32(b + BlkDwz.SECTOR, true), v.getUint32(b + BlkDwz.SECTOR + 4, true), n * SECTOR);
      if (n === 0) continue;
      if (kind === 0) backend.discard(off, n * SECTOR);
      else if (kind === 1) {
        // blk.device.26 / .27: unmap may deallocate, but reads must return zeroes either way
        if (v.getUint32(b + BlkDwz.FLAGS, true) & Blk.WRITE_ZEROES_FLAG_UNMAP) backend.discard(off, n * SECTOR);
        else backend.writeZeroes(off, n * SECTOR);
      } else backend.secureErase(off, n * SECTOR);
    }
    if (kind === 1 && this.writethrough && backend.persistent) backend.flush();
    return S_OK;
  }

  /**
   * Range requests on a zoned device. DISCARD and WRITE_ZEROES apply to conventional zones only
   * (a sequential zone is written at its write pointer, never zeroed in place): ZONE_INVALID_CMD
   * otherwise. SECURE_ERASE works on whole zones (blk.device.58) and resets each sequential zone
   * it covers as ZONE_RESET would (blk.device.59); the data is then erased by the caller.
   */
  private zonedRanges(v: DataView, nseg: number, kind: 0 | 1 | 2): number {
    const zones = this.zones!;
    const zs = zones.zoneSectors;
    for (let i = 0; i < nseg; i++) {
      const b = i * BlkDwz.SIZE;
      const n = v.getUint32(b + BlkDwz.NUM_SECTORS, true);
      const s = v.getUint32(b + BlkDwz.SECTOR + 4, true) * TWO32 + v.getUint32(b + BlkDwz.SECTOR, true);
      if (kind === 2) {
        if (n % zs !== 0 || s % zs !== 0) return S_IOERR; // blk.device.58
        for (let z = s; z < s + n; z += zs) {
          const zone = zones.zoneOf(z)!;
          if (zone.type === 1) continue; // conventional: a plain erase
          if (zone.state === 13 || zone.state === 15) return Blk.S_ZONE_INVALID_CMD; // a reset would fail
        }
        continue;
      }
      for (let z = s; z < s + n; z = (Math.floor(z / zs) + 1) * zs) {
        const zone = zones.zoneOf(z)!;
        if (zone.type !== 1 || zone.state === 15) return Blk.S_ZONE_INVALID_CMD;
      }
    }
    if (kind === 2) {
      for (let i = 0; i < nseg; i++) {
        const b = i * BlkDwz.SIZE;
        const n = v.getUint32(b + BlkDwz.NUM_SECTORS, true);
        const s = v.getUint32(b + BlkDwz.SECTOR + 4, true) * TWO32 + v.getUint32(b + BlkDwz.SECTOR, true);
        for (let z = s; z < s + n; z += zs) if (zones.zoneOf(z)!.type !== 1) zones.manage(Blk.T_ZONE_RESET, z);
      }
    }
    return S_OK;
  }

  /** ZONE_APPEND: header + data readable; le64 append_sector + status writable. */
  private doAppend(chain: Chain, wlen: number, secLo: number, secHi: number): number {
    this.stats.writes++;
    if (this.oRo) return S_IOERR;
    const dataLen = chain.readableLen - BlkReqHeader.SIZE;
    if (wlen !== BLK_APPEND_SECTOR_BYTES + 1 || dataLen % SECTOR !== 0) return S_IOERR;
    const off = this.range(secLo, secHi, 0);
    if (off < 0) return S_IOERR;
    if (!this.segLimitsOk(chain.readable, BlkReqHeader.SIZE, dataLen)) return S_IOERR;
    const w = this.zones!.write(off / SECTOR, dataLen / SECTOR, true);
    if (w.status !== S_OK) return w.status;
    const st = this.writeData(chain, w.at * SECTOR, dataLen);
    // blk.device.47: append_sector = the first sector written
    const a = new Uint8Array(BLK_APPEND_SECTOR_BYTES);
    const dv = new DataView(a.buffer);
    dv.setUint32(0, w.at % TWO32, true);
    dv.setUint32(4, Math.floor(w.at / TWO32), true);
    this.scatterWritable(chain.writable, a);
    return st;
  }

  /** ZONE_REPORT: the zones from the one holding `sector`, as many as fit in the data buffer. */
  private doReport(chain: Chain, wlen: number, secLo: number, secHi: number): number {
    const dataLen = wlen - 1;
    if (chain.readableLen !== BlkReqHeader.SIZE || dataLen < BlkZoneReport.HEADER_SIZE) return S_IOERR;
    if (secHi >= 0x20_0000) return S_IOERR;
    const sector = secHi * TWO32 + secLo;
    if (sector >= this.capacity) return S_IOERR;
    const zones = this.zones!;
    const first = Math.floor(sector / zones.zoneSectors);
    const fit = Math.floor((dataLen - BlkZoneReport.HEADER_SIZE) / BlkZoneReport.DESC_SIZE);
    const n = Math.max(0, Math.min(fit, zones.zones.length - first));
    const out = new Uint8Array(dataLen);
    const dv = new DataView(out.buffer);
    const put64 = (o: number, x: number) => {
      dv.setUint32(o, x % TWO32, true);
      dv.setUint32(o + 4, Math.floor(x / TWO32), true);
    };
    put64(BlkZoneReport.NR_ZONES, n);
    for (let i = 0; i < n; i++) {
      const z = zones.zones[first + i]!;
      const d = BlkZoneReport.HEADER_SIZE + i * BlkZoneReport.DESC_SIZE;
      put64(d + BlkZoneReport.Z_CAP, z.cap);
      put64(d + BlkZoneReport.Z_START, z.start);
      put64(d + BlkZoneReport.Z_WP, z.type === 1 || z.state >= 13 ? z.start + z.len : z.wp);
      out[d + BlkZoneReport.Z_TYPE] = z.type;
      out[d + BlkZoneReport.Z_STATE] = z.state;
    }
    this.scatterWritable(chain.writable, out);
    return S_OK;
  }

  /** ZONE_OPEN / CLOSE / FINISH / RESET / RESET_ALL: no data. */
  private doZoneMgmt(chain: Chain, wlen: number, secLo: number, secHi: number): number {
    if (wlen !== 1 || chain.readableLen !== BlkReqHeader.SIZE) return S_IOERR;
    if (this.oRo) return S_IOERR;
    if (secHi >= 0x20_0000) return Blk.S_ZONE_INVALID_CMD;
    const r = this.zones!.manage(this.hType, secHi * TWO32 + secLo);
    // blk.device.55: ranges that became unwritten read back as the fill pattern (zeroes)
    for (const u of r.unwritten) this.backend.writeZeroes(u.sector * SECTOR, u.sectors * SECTOR);
    return r.status;
  }

  private scatterWritable(segs: readonly Segment[], data: Uint8Array): void {
    let pos = 0;
    for (let i = 0; i < segs.length && pos < data.length; i++) {
      const s = segs[i]!;
      const n = Math.min(s.len, data.length - pos);
      if (n === 0) continue;
      this.pieces(s.addr, n, pos, (view, p) => view.set(data.subarray(p, p + view.length)));
      pos += n;
    }
  }
}
