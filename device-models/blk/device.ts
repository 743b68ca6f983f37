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
 *
 * This file holds the device lifecycle (activate / reset), queue processing (batches, reordering,
 * latency), the life of one request and the dispatch per request type, with FLUSH (blk.device.31)
 * and GET_ID (blk.driver.18) inline. VirtioBlkDevice is built in layers, one file per seam:
 *   options.ts         VirtioBlkOptions, BlkLimits, BlkStats, DEFAULT_BLK_FEATURES (re-exported here)
 *   config-space.ts    config space, feature offer and negotiation, resize, cache mode
 *   requests.ts        status and data movement, IN / OUT, DISCARD / WRITE_ZEROES / SECURE_ERASE, limits
 *   zoned-requests.ts  ZONE_APPEND, ZONE_REPORT, zone management, ranges on zones (state: zones.ts)
 */
import type { Chain, DeviceContext, VirtioDeviceModel } from '../virtio/model.ts';
import { Blk } from '../../spec-refs/abi/virtio.ts';
import { BlkConfig } from '../../spec-refs/abi/blk-layout.ts';
import { BlkZonedRequests } from './zoned-requests.ts';

export { DEFAULT_BLK_FEATURES, type BlkLimits, type BlkStats, type BlkTopology, type VirtioBlkOptions } from './options.ts';

const S_OK = Blk.S_OK;
const S_IOERR = Blk.S_IOERR;
const S_UNSUPP = Blk.S_UNSUPP;

export class VirtioBlkDevice extends BlkZonedRequests implements VirtioDeviceModel {
  /** Bumped on every activate/reset so that delayed completions of an old session are dropped. */
  private session = 0;

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
}
