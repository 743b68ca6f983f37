/**
 * The virtio-blk device's config space and feature negotiation (device-types/blk/description.tex,
 * "Feature bits", "Device configuration layout", "Device Initialization"): the options validated
 * and laid out as struct virtio_blk_config (blk.device.2, .4, .5, .9 to .18, .28, .57), reads and
 * the writeback write (blk.device.3, .7), FEATURES_OK (blk.device.8), resize (blk.device.19,
 * .20), and the cache mode a write is committed under (blk.device.31, .32). The request side
 * (requests.ts, zoned-requests.ts, device.ts) builds on this class and its negotiated state.
 */
import type { DeviceContext } from '../virtio/model.ts';
import type { GuestMemory } from '../machine/memory.ts';
import { Blk, BlkF, DeviceType, F, bit, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { UsageError } from '../../spec-refs/errors.ts';
import { BlkConfig, BlkDwz, BlkZonedConfig, BlkZoneModel } from '../../spec-refs/abi/blk-layout.ts';
import { SECTOR, type BlkBackend } from './backend.ts';
import { ZoneSet } from './zones.ts';
import { DEFAULT_BLK_FEATURES, type BlkLimits, type BlkStats, type VirtioBlkOptions } from './options.ts';

const IMPLEMENTED = new Set<number>([...DEFAULT_BLK_FEATURES, BlkF.MQ, BlkF.RO, BlkF.ZONED]);
const TWO32 = 0x1_0000_0000;

function u32(name: string, v: number, min = 0, max = 0xffff_ffff): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new UsageError('usage.blk.config', `bad virtio-blk option ${name}`, { expected: `an integer in ${min}..${max}`, seen: String(v) });
  return v;
}

/** The config space and negotiated features of a virtio-blk device; VirtioBlkDevice (device.ts) is the concrete class. */
export abstract class BlkConfigSpace {
  readonly deviceType = DeviceType.BLOCK;
  readonly name: string;
  readonly numQueues: number;
  readonly offeredFeatures: bigint;
  readonly configSize = BlkConfig.SIZE;
  readonly backend: BlkBackend;
  readonly stats: BlkStats = { requests: 0, reads: 0, writes: 0, flushes: 0, bytesRead: 0, bytesWritten: 0, ok: 0, ioerr: 0, unsupp: 0, noStatus: 0, batches: 0 };

  protected readonly config = new Uint8Array(BlkConfig.SIZE);
  private readonly cfg = new DataView(this.config.buffer);
  private readonly queueSize: number;
  protected readonly defaultWriteback: number;
  protected readonly idBytes = new Uint8Array(Blk.ID_BYTES);
  protected readonly reorder: boolean;
  protected readonly latencyNs: number;
  protected readonly enforceAlignment: boolean;

  // offered (o*) and negotiated (n*) feature booleans, cached for the hot path
  protected readonly oRo: boolean;
  protected readonly oFlush: boolean;
  private readonly oWce: boolean;
  private readonly oSegMax: boolean;
  private readonly oSizeMax: boolean;
  private nFlush = false;
  private nWce = false;
  protected nDiscard = false;
  protected nWriteZeroes = false;
  protected nSecureErase = false;
  protected nSegMax = false;
  protected nSizeMax = false;
  private nZoned = false;
  /** ZONED negotiated with model HM or HA: zone rules apply to requests. */
  protected zonedOn = false;
  /** FEATURES_OK was accepted without ZONED: the zoned fields read 0 (blk.device.7). */
  protected zonedHidden = false;
  /** The zones (zoned option given), else undefined. */
  readonly zones: ZoneSet | undefined;
  /** Features a legacy interface must not offer (blk.device.6: ZONED needs FEATURES_OK). */
  readonly legacyWithheldFeatures = bit(BlkF.ZONED);

  protected readonly segMax: number;
  protected readonly sizeMax: number;
  protected readonly discardLim: Required<BlkLimits>;
  protected readonly wzLim: Required<BlkLimits>;
  protected readonly seLim: Required<BlkLimits>;

  protected ctx: DeviceContext | undefined;
  protected mem: GuestMemory | undefined;
  protected readonly dwz: Uint8Array;
  protected readonly dwzView: DataView;

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

  protected latch(features: bigint): void {
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

  /**
   * A write is stable at completion unless the driver runs a writeback cache: FLUSH negotiated
   * and, with CONFIG_WCE, writeback = 1 (description.tex, Device Operation, cases 1 and 2).
   * Without FLUSH offered we may also commit (blk.device.32) and do, so no data is ever lost.
   */
  protected get writethrough(): boolean {
    return !(this.nFlush && (!this.nWce || this.config[BlkConfig.WRITEBACK] === 1));
  }
}
