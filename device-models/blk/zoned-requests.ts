/**
 * Zoned requests on the device side (device-types/blk/description.tex, VIRTIO_BLK_F_ZONED,
 * "Device Operation"): range requests on a zoned device (blk.device.58, .59), ZONE_APPEND and
 * its append_sector (blk.device.47), ZONE_REPORT, and ZONE_OPEN / CLOSE / FINISH / RESET /
 * RESET_ALL (blk.device.55). zones.ts decides the status and updates the zone state; this file
 * parses the requests and moves the data.
 */
import type { Chain } from '../virtio/model.ts';
import { Blk } from '../../spec-refs/abi/virtio.ts';
import { BlkDwz, BlkReqHeader, BlkZoneReport, BLK_APPEND_SECTOR_BYTES } from '../../spec-refs/abi/blk-layout.ts';
import { SECTOR } from './backend.ts';
import { BlkRequests } from './requests.ts';

const TWO32 = 0x1_0000_0000;
const S_OK = Blk.S_OK;
const S_IOERR = Blk.S_IOERR;

/** The zoned request handlers; VirtioBlkDevice (device.ts) dispatches to them. */
export abstract class BlkZonedRequests extends BlkRequests {
  /**
   * Range requests on a zoned device. DISCARD and WRITE_ZEROES apply to conventional zones only
   * (a sequential zone is written at its write pointer, never zeroed in place): ZONE_INVALID_CMD
   * otherwise. SECURE_ERASE works on whole zones (blk.device.58) and resets each sequential zone
   * it covers as ZONE_RESET would (blk.device.59); the data is then erased by the caller.
   */
  protected override zonedRanges(v: DataView, nseg: number, kind: 0 | 1 | 2): number {
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
  protected doAppend(chain: Chain, wlen: number, secLo: number, secHi: number): number {
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
  protected doReport(chain: Chain, wlen: number, secLo: number, secHi: number): number {
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
  protected doZoneMgmt(chain: Chain, wlen: number, secLo: number, secHi: number): number {
    if (wlen !== 1 || chain.readableLen !== BlkReqHeader.SIZE) return S_IOERR;
    if (this.oRo) return S_IOERR;
    if (secHi >= 0x20_0000) return Blk.S_ZONE_INVALID_CMD;
    const r = this.zones!.manage(this.hType, secHi * TWO32 + secLo);
    // blk.device.55: ranges that became unwritten read back as the fill pattern (zeroes)
    for (const u of r.unwritten) this.backend.writeZeroes(u.sector * SECTOR, u.sectors * SECTOR);
    return r.status;
  }
}
