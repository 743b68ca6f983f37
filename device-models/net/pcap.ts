/**
 * A pcap (libpcap 2.4, LINKTYPE_ETHERNET) writer for a switch port. Frames are written as they
 * appear on a real wire: GSO super-frames cut into segments and partial checksums completed
 * (wire.ts normalize), stamped with the simulated clock.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import type { SwitchPort, TapDirection } from './switch.ts';
import { normalize, type WireFrame } from './wire.ts';

const SNAPLEN = 262144;

export interface PcapOptions {
  /** Which directions to record (default both). */
  directions?: readonly TapDirection[];
  /** Clock in nanoseconds (default 0: every record at time 0). */
  now?: () => number;
}

export class PcapWriter {
  private fd: number | null;
  frames = 0;
  bytes = 0;

  constructor(readonly path: string, private readonly now: () => number = () => 0) {
    this.fd = openSync(path, 'w');
    const h = new DataView(new ArrayBuffer(24));
    h.setUint32(0, 0xa1b2c3d4, true);
    h.setUint16(4, 2, true);
    h.setUint16(6, 4, true);
    h.setInt32(8, 0, true); // thiszone
    h.setUint32(12, 0, true); // sigfigs
    h.setUint32(16, SNAPLEN, true);
    h.setUint32(20, 1, true); // LINKTYPE_ETHERNET
    writeSync(this.fd, new Uint8Array(h.buffer));
  }

  /** Write one on-the-wire frame. */
  writeFrame(frame: Uint8Array): void {
    if (this.fd === null) return;
    const t = Math.max(0, Math.floor(this.now()));
    const sec = Math.floor(t / 1e9);
    const usec = Math.floor((t % 1e9) / 1000);
    const rec = new DataView(new ArrayBuffer(16));
    const incl = Math.min(frame.length, SNAPLEN);
    rec.setUint32(0, sec >>> 0, true);
    rec.setUint32(4, usec, true);
    rec.setUint32(8, incl, true);
    rec.setUint32(12, frame.length, true);
    writeSync(this.fd, new Uint8Array(rec.buffer));
    writeSync(this.fd, frame.subarray(0, incl));
    this.frames++;
    this.bytes += incl;
  }

  write(wf: WireFrame): void {
    for (const f of normalize(wf)) this.writeFrame(f);
  }

  /** Record what passes `port`. */
  attach(port: SwitchPort, opts: PcapOptions = {}): this {
    const dirs = opts.directions ?? ['in', 'out'];
    port.tap((wf, dir) => {
      if (dirs.includes(dir)) this.write(wf);
    });
    return this;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
