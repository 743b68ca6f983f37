/**
 * virtio-blk requests on the device side that move data (device-types/blk/description.tex,
 * "Device Operation"): the status byte and zero fill of the writable area (split.device.16),
 * scatter / gather over guest memory, the request header, the capacity check (blk.driver.12),
 * seg_max / size_max (config limits), IN and OUT (blk.driver.16, blk.device.21, .22, .31), and
 * DISCARD / WRITE_ZEROES / SECURE_ERASE segments (blk.driver.17, .19 to .21, blk.device.21 to
 * .27). FLUSH and GET_ID are a few lines of the dispatch in device.ts; the zoned requests are in
 * zoned-requests.ts.
 */
import type { Chain, Segment } from '../virtio/model.ts';
import { Blk } from '../../spec-refs/abi/virtio.ts';
import { GuestMemoryError, hex } from '../../spec-refs/errors.ts';
import { BlkDwz, BlkReqHeader } from '../../spec-refs/abi/blk-layout.ts';
import { SECTOR } from './backend.ts';
import type { BlkLimits } from './options.ts';
import { BlkConfigSpace } from './config-space.ts';

const TWO32 = 0x1_0000_0000;
const S_OK = Blk.S_OK;
const S_IOERR = Blk.S_IOERR;
const S_UNSUPP = Blk.S_UNSUPP;

/** The data-moving request handlers; the zoned layer (zoned-requests.ts) and VirtioBlkDevice build on it. */
export abstract class BlkRequests extends BlkConfigSpace {
  private readonly hdr = new Uint8Array(BlkReqHeader.SIZE);
  private readonly hdrView = new DataView(this.hdr.buffer);

  /** Write the status into the last byte of the writable area. */
  protected writeStatus(segs: readonly Segment[], status: number): boolean {
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

  protected fillWritable(segs: readonly Segment[], len: number): void {
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
  protected hType = 0;
  protected hSecLo = 0;
  protected hSecHi = 0;

  /** Read the 16-byte request header (each field once); false if the readable area is too short. */
  protected readHeader(chain: Chain): boolean {
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

  /** Byte offset on the disk of [sector, sector + bytes), or -1 when it is not inside the capacity. */
  protected range(secLo: number, secHi: number, bytes: number): number {
    if (secHi >= 0x20_0000) return -1; // sector * 512 would pass 2^62: beyond any capacity
    const sector = secHi * TWO32 + secLo;
    const cap = this.capacity;
    if (sector > cap) return -1;
    const off = sector * SECTOR;
    if (off + bytes > cap * SECTOR) return -1;
    return off;
  }

  /** Check seg_max / size_max on the data segments of a stream starting `skip` bytes in. */
  protected segLimitsOk(segs: readonly Segment[], skip: number, dataLen: number): boolean {
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

  protected doIn(chain: Chain, wlen: number, secLo: number, secHi: number): number {
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

  protected doOut(chain: Chain, wlen: number, secLo: number, secHi: number): number {
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
  protected writeData(chain: Chain, off: number, dataLen: number): number {
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
  protected doRanges(chain: Chain, wlen: number, lim: Required<BlkLimits>, kind: 0 | 1 | 2): number {
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

  /** Range requests on a zoned device (zoned-requests.ts). */
  protected abstract zonedRanges(v: DataView, nseg: number, kind: 0 | 1 | 2): number;

  protected scatterWritable(segs: readonly Segment[], data: Uint8Array): void {
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
