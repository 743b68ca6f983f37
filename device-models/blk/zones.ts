/**
 * The zone state machine of a zoned virtio-blk device (VIRTIO_BLK_F_ZONED,
 * device-types/blk/description.tex "Device Operation", zoned parts): zone types, states, write
 * pointers, open / active resource accounting, and the rules that decide the status of each
 * zoned request. Data movement stays in zoned-requests.ts and requests.ts; this file decides
 * and updates state only, and tells the caller which ranges become unwritten (they are then made
 * to read back as the device's fill pattern, zeroes).
 *
 * All sector numbers are plain numbers (the device model keeps capacities below 2^53 sectors).
 */
import { Blk } from '../../spec-refs/abi/virtio.ts';
import { BlkZoneModel, BlkZoneState as ZS, BlkZoneType as ZT } from '../../spec-refs/abi/blk-layout.ts';
import { UsageError } from '../../spec-refs/errors.ts';

export type ZoneModelName = 'hm' | 'ha' | 'none';

export interface ZonedOptions {
  /** host-managed (SWR zones), host-aware (SWP zones) or none (drive-managed: a plain disk). Default 'hm'. */
  model?: ZoneModelName;
  /** Zone size in 512-byte sectors (config zone_sectors). Default 2048 (1 MiB). */
  zoneSectors?: number;
  /** Writable sectors of each sequential zone (z_cap), at most zoneSectors. Default zoneSectors. */
  zoneCapacity?: number;
  /** config max_open_zones (0: no limit). Default 4. */
  maxOpen?: number;
  /** config max_active_zones (0: no limit). Default 6. */
  maxActive?: number;
  /** config max_append_sectors (0: ZONE_APPEND unsupported). Default 256. */
  maxAppendSectors?: number;
  /** config write_granularity in bytes. Default 512. */
  writeGranularity?: number;
  /** The first N zones are conventional. Default 1. */
  conventionalZones?: number;
  /** Zones that start (and stay) read-only / offline: as a failing medium would put them. */
  readOnlyZones?: readonly number[];
  offlineZones?: readonly number[];
  /** Close an implicitly open zone when an open would pass max_open_zones (blk.device.52). Default true. */
  implicitClose?: boolean;
}

export interface Zone {
  readonly start: number;
  /** Sectors of the zone (the last may be short). */
  readonly len: number;
  /** Writable sectors (z_cap). */
  readonly cap: number;
  readonly type: number;
  state: number;
  wp: number;
}

/** A range that became unwritten data: [sector, sector + sectors). */
export interface Unwritten {
  readonly sector: number;
  readonly sectors: number;
}

export class ZoneSet {
  readonly model: number;
  readonly zoneSectors: number;
  readonly maxOpen: number;
  readonly maxActive: number;
  readonly maxAppendSectors: number;
  readonly writeGranularity: number;
  readonly zones: Zone[] = [];
  private readonly implicitClose: boolean;
  private readonly initial: { state: number }[] = [];

  constructor(capacitySectors: number, o: ZonedOptions = {}) {
    const name = o.model ?? 'hm';
    this.model = name === 'hm' ? BlkZoneModel.HM : name === 'ha' ? BlkZoneModel.HA : BlkZoneModel.NONE;
    const int = (n: string, v: number, min: number, max = 0xffff_ffff): number => {
      if (!Number.isInteger(v) || v < min || v > max) throw new UsageError('usage.blk.zoned', `bad zoned option ${n}`, { expected: `an integer in ${min}..${max}`, seen: String(v) });
      return v;
    };
    this.zoneSectors = int('zoneSectors', o.zoneSectors ?? 2048, 1);
    const cap = int('zoneCapacity', o.zoneCapacity ?? this.zoneSectors, 1, this.zoneSectors);
    this.maxOpen = int('maxOpen', o.maxOpen ?? 4, 0);
    this.maxActive = int('maxActive', o.maxActive ?? 6, 0);
    if (this.maxActive !== 0 && this.maxOpen > this.maxActive) throw new UsageError('usage.blk.zoned', 'maxOpen above maxActive', { seen: `${this.maxOpen} > ${this.maxActive}` });
    this.maxAppendSectors = int('maxAppendSectors', o.maxAppendSectors ?? 256, 0);
    this.writeGranularity = int('writeGranularity', o.writeGranularity ?? 512, 512);
    if (this.writeGranularity % 512 !== 0) throw new UsageError('usage.blk.zoned', 'writeGranularity must be a multiple of 512', { seen: String(this.writeGranularity) });
    this.implicitClose = o.implicitClose ?? true;
    const conv = int('conventionalZones', o.conventionalZones ?? 1, 0);
    const seqType = this.model === BlkZoneModel.HA ? ZT.SWP : ZT.SWR;
    const n = Math.ceil(capacitySectors / this.zoneSectors);
    for (let i = 0; i < n; i++) {
      const start = i * this.zoneSectors;
      const len = Math.min(this.zoneSectors, capacitySectors - start);
      const type = i < conv ? ZT.CONV : seqType;
      let state: number = type === ZT.CONV ? ZS.NOT_WP : ZS.EMPTY;
      if (o.readOnlyZones?.includes(i)) state = ZS.RDONLY;
      if (o.offlineZones?.includes(i)) state = ZS.OFFLINE;
      this.zones.push({ start, len, cap: type === ZT.CONV ? len : Math.min(cap, len), type, state, wp: start });
      this.initial.push({ state });
    }
  }

  get zoned(): boolean {
    return this.model !== BlkZoneModel.NONE;
  }

  /** The zone holding `sector`, or undefined past the end. */
  zoneOf(sector: number): Zone | undefined {
    return this.zones[Math.floor(sector / this.zoneSectors)];
  }

  get openCount(): number {
    let n = 0;
    for (const z of this.zones) if (z.state === ZS.IOPEN || z.state === ZS.EOPEN) n++;
    return n;
  }

  get activeCount(): number {
    let n = 0;
    for (const z of this.zones) if (z.state === ZS.IOPEN || z.state === ZS.EOPEN || z.state === ZS.CLOSED) n++;
    return n;
  }

  /** Back to the state at power-on (device reset keeps zones: only used by tests and resize). */
  restore(): void {
    this.zones.forEach((z, i) => {
      z.state = this.initial[i]!.state;
      z.wp = z.start;
    });
  }

  /**
   * Make room to move a zone from `from` into an open state (IOPEN or EOPEN): returns S_OK, or
   * the resource status. From EMPTY a zone needs an active and an open resource, from CLOSED an
   * open one. When both would be exceeded ACTIVE_RESOURCE wins (description.tex).
   */
  private admitOpen(from: number): number {
    const needActive = from === ZS.EMPTY;
    const activeFull = needActive && this.maxActive !== 0 && this.activeCount >= this.maxActive;
    if (activeFull) return Blk.S_ZONE_ACTIVE_RESOURCE;
    if (this.maxOpen !== 0 && this.openCount >= this.maxOpen) {
      // blk.device.52: an implicitly open zone may be closed to make room
      const victim = this.implicitClose ? this.zones.find((z) => z.state === ZS.IOPEN) : undefined;
      if (!victim) return Blk.S_ZONE_OPEN_RESOURCE;
      victim.state = victim.wp === victim.start ? ZS.EMPTY : ZS.CLOSED;
    }
    return Blk.S_OK;
  }

  private isSeq(z: Zone): boolean {
    return z.type !== ZT.CONV;
  }

  /**
   * A read of [sector, sector + sectors): S_OK or an error status. Unwritten data in the range
   * reads as the fill pattern (zeroes), which device.ts guarantees by zeroing ranges when they
   * become unwritten.
   */
  checkRead(sector: number, sectors: number): number {
    const z = this.zoneOf(sector);
    if (!z || sectors === 0) return Blk.S_OK;
    const last = this.zoneOf(sector + sectors - 1) ?? z;
    for (let i = this.zones.indexOf(z); i <= this.zones.indexOf(last); i++) if (this.zones[i]!.state === ZS.OFFLINE) return Blk.S_ZONE_INVALID_CMD; // blk.device.54
    // blk.device.50: a read may not span zones when it touches an SWR zone
    if (last !== z && (z.type === ZT.SWR || last.type === ZT.SWR)) return Blk.S_ZONE_INVALID_CMD;
    return Blk.S_OK;
  }

  /**
   * A write (OUT, append = false) or ZONE_APPEND (append = true) of `sectors` at `sector`. On
   * S_OK returns where the data goes (`at`) and updates the zone; on failure nothing changes.
   */
  write(sector: number, sectors: number, append: boolean): { status: number; at: number } {
    const fail = (status: number) => ({ status, at: -1 });
    const z = this.zoneOf(sector);
    if (!z) return fail(Blk.S_IOERR);
    if (append) {
      // blk.device.48 / .49: size limit first (UNSUPP when appends are not supported at all)
      if (this.maxAppendSectors === 0) return fail(Blk.S_UNSUPP);
      if (sectors > this.maxAppendSectors) return fail(Blk.S_ZONE_INVALID_CMD);
      if (sector !== z.start) return fail(Blk.S_ZONE_INVALID_CMD); // blk.device.45
      if (z.type !== ZT.SWR) return fail(Blk.S_ZONE_INVALID_CMD); // blk.device.38
    }
    if (z.state === ZS.OFFLINE || z.state === ZS.RDONLY) return fail(Blk.S_ZONE_INVALID_CMD); // blk.device.53, .54
    const end = (append ? z.wp : sector) + sectors;
    if (z.type === ZT.CONV) {
      if (end > z.start + z.len) {
        // a write running into the next zone: fine unless that zone is sequential or unusable
        const next = this.zoneOf(end - 1);
        if (next && next !== z && (next.type !== ZT.CONV || next.state === ZS.OFFLINE || next.state === ZS.RDONLY)) return fail(Blk.S_ZONE_INVALID_CMD);
      }
      return { status: Blk.S_OK, at: sector };
    }
    // sequential zone
    if (!append && end > z.start + z.len) return fail(Blk.S_ZONE_INVALID_CMD); // blk.device.50
    if (z.state === ZS.FULL) return fail(Blk.S_ZONE_INVALID_CMD); // no writable capacity left (blk.device.46)
    if (z.type === ZT.SWR) {
      if (!append && sector !== z.wp) return fail(Blk.S_ZONE_UNALIGNED_WP); // blk.device.51
      if (((append ? z.wp : sector) + sectors) * 512 % this.writeGranularity !== 0) return fail(Blk.S_ZONE_UNALIGNED_WP);
    }
    const from = append ? z.wp : sector;
    if (from + sectors > z.start + z.cap) return fail(Blk.S_ZONE_INVALID_CMD); // blk.device.46
    if (sectors === 0) return { status: Blk.S_OK, at: from };
    if (z.state === ZS.EMPTY || z.state === ZS.CLOSED) {
      const st = this.admitOpen(z.state); // blk.device.44
      if (st !== Blk.S_OK) return fail(st);
      z.state = ZS.IOPEN;
    }
    if (from + sectors > z.wp) z.wp = from + sectors;
    if (z.wp >= z.start + z.cap) z.state = ZS.FULL;
    return { status: Blk.S_OK, at: from };
  }

  /**
   * ZONE_OPEN / CLOSE / FINISH / RESET at `sector` (the zone's first sector) and ZONE_RESET_ALL.
   * Returns the status and the ranges that became unwritten data.
   */
  manage(type: number, sector: number): { status: number; unwritten: Unwritten[] } {
    const out = (status: number, unwritten: Unwritten[] = []) => ({ status, unwritten });
    if (type === Blk.T_ZONE_RESET_ALL) {
      const un: Unwritten[] = [];
      for (const z of this.zones) {
        if (!this.isSeq(z)) continue;
        if (z.state === ZS.IOPEN || z.state === ZS.EOPEN || z.state === ZS.CLOSED || z.state === ZS.FULL) {
          un.push({ sector: z.start, sectors: z.len });
          z.state = ZS.EMPTY;
          z.wp = z.start;
        }
      }
      return out(Blk.S_OK, un);
    }
    const z = this.zoneOf(sector);
    if (!z || z.start !== sector) return out(Blk.S_ZONE_INVALID_CMD); // not a zone sector address
    if (!this.isSeq(z)) return out(Blk.S_ZONE_INVALID_CMD); // blk.device.37
    if (z.state === ZS.OFFLINE || z.state === ZS.RDONLY) return out(Blk.S_ZONE_INVALID_CMD); // blk.device.54 / no transition possible
    switch (type) {
      case Blk.T_ZONE_OPEN: {
        if (z.state === ZS.EOPEN) return out(Blk.S_OK);
        if (z.state === ZS.FULL) return out(Blk.S_ZONE_INVALID_CMD); // blk.device.39
        if (z.state !== ZS.IOPEN) {
          const st = this.admitOpen(z.state); // blk.device.40: the state stays on failure
          if (st !== Blk.S_OK) return out(st);
        }
        z.state = ZS.EOPEN;
        return out(Blk.S_OK);
      }
      case Blk.T_ZONE_CLOSE:
        if (z.state === ZS.CLOSED) return out(Blk.S_OK);
        if (z.state !== ZS.IOPEN && z.state !== ZS.EOPEN) return out(Blk.S_ZONE_INVALID_CMD); // blk.device.41 (EMPTY, FULL)
        z.state = z.wp === z.start ? ZS.EMPTY : ZS.CLOSED;
        return out(Blk.S_OK);
      case Blk.T_ZONE_FINISH: {
        if (z.state === ZS.FULL) return out(Blk.S_OK);
        // blk.device.55: what lies between the write pointer and the zone end is unwritten data
        const un = z.wp < z.start + z.len ? [{ sector: z.wp, sectors: z.start + z.len - z.wp }] : [];
        z.state = ZS.FULL;
        z.wp = z.start + z.cap;
        return out(Blk.S_OK, un);
      }
      case Blk.T_ZONE_RESET: {
        const un = z.state === ZS.EMPTY ? [] : [{ sector: z.start, sectors: z.len }];
        z.state = ZS.EMPTY;
        z.wp = z.start;
        return out(Blk.S_OK, un);
      }
      default:
        return out(Blk.S_UNSUPP);
    }
  }
}
