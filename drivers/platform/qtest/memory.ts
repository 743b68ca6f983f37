import { GuestMemoryError, hex } from '../../../spec-refs/errors.ts';
import type { GuestMemoryAccess } from '../../core/platform.ts';
import type { QtestClient } from './client.ts';

/**
 * Guest memory of a QEMU machine, seen through qtest.
 *
 * Reads are served from a cache of fixed-size lines fetched with b64read (every missing line of
 * one access in a single round trip). Writes update cached lines and are posted to QEMU as
 * byte-exact b64writes in program order (never whole lines: a device may be writing other
 * bytes of the same line, as in a packed ring). The platform invalidates the cache at every
 * device interaction (MMIO, port I/O, interrupt poll, spin), which matches the simulated
 * machine, where device work also only happens inside such calls.
 */
export interface RamRange {
  readonly base: number;
  readonly size: number;
}

interface Line {
  readonly bytes: Uint8Array;
  readonly view: DataView;
}

const TWO32 = 0x1_0000_0000;

export class QtestMemory implements GuestMemoryAccess {
  private readonly lines = new Map<number, Line>();
  private readonly lineSize: number;
  private readonly scratch = new Uint8Array(8);
  private readonly scratchView = new DataView(this.scratch.buffer);
  /** Line fetches (cache misses), for tests and benchmarks. */
  misses = 0;

  constructor(
    private readonly client: QtestClient,
    readonly ram: readonly RamRange[],
    lineSize = 1024,
  ) {
    if (lineSize < 64 || (lineSize & (lineSize - 1)) !== 0) throw new GuestMemoryError('mem.config', 'cache line size must be a power of two >= 64', { seen: String(lineSize) });
    this.lineSize = lineSize;
  }

  /** Forget every cached line (the device may have written memory since). */
  invalidate(): void {
    this.lines.clear();
  }

  isRam(gpa: number, len: number): boolean {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(len) || gpa < 0 || len < 0) return false;
    for (const r of this.ram) if (gpa >= r.base && gpa + len <= r.base + r.size) return true;
    return false;
  }

  private check(gpa: number, len: number): void {
    const r = this.ram[0];
    if (r !== undefined && gpa >= r.base && gpa + len <= r.base + r.size && len >= 0) return;
    if (!this.isRam(gpa, len)) throw new GuestMemoryError('mem.out_of_ram', 'guest-physical access outside RAM', { expected: 'an address inside a RAM region of the QEMU machine', seen: `${hex(gpa)}+${len}` });
  }

  /** The cached line holding gpa (fetching it and any other missing lines of [gpa, gpa+len)). */
  private line(gpa: number, len: number): Line {
    const idx = Math.floor(gpa / this.lineSize);
    const l = this.lines.get(idx);
    if (l) return l;
    this.fetch(gpa, len);
    return this.lines.get(idx)!;
  }

  private fetch(gpa: number, len: number): void {
    const first = Math.floor(gpa / this.lineSize);
    const last = Math.floor((gpa + Math.max(len, 1) - 1) / this.lineSize);
    const want: (readonly [number, number])[] = [];
    const idxs: number[] = [];
    for (let i = first; i <= last; i++) {
      if (this.lines.has(i)) continue;
      // clip lines to RAM so that no fetch touches MMIO
      const base = i * this.lineSize;
      const lo = Math.max(base, this.ramStartOf(gpa));
      const hi = Math.min(base + this.lineSize, this.ramEndOf(gpa));
      want.push([lo, hi - lo]);
      idxs.push(i);
    }
    if (want.length === 0) return;
    const got = this.client.readMem(want);
    for (let k = 0; k < idxs.length; k++) {
      const bytes = new Uint8Array(this.lineSize);
      bytes.set(got[k]!, want[k]![0] - idxs[k]! * this.lineSize);
      this.lines.set(idxs[k]!, { bytes, view: new DataView(bytes.buffer) });
      this.misses++;
    }
  }

  private ramStartOf(gpa: number): number {
    for (const r of this.ram) if (gpa >= r.base && gpa < r.base + r.size) return r.base;
    return gpa;
  }
  private ramEndOf(gpa: number): number {
    for (const r of this.ram) if (gpa >= r.base && gpa < r.base + r.size) return r.base + r.size;
    return gpa;
  }

  private sameLine(gpa: number, len: number): boolean {
    return (gpa % this.lineSize) + len <= this.lineSize;
  }

  read8(gpa: number): number {
    this.check(gpa, 1);
    return this.line(gpa, 1).bytes[gpa % this.lineSize]!;
  }
  read16(gpa: number): number {
    this.check(gpa, 2);
    if (!this.sameLine(gpa, 2)) return this.readSlow(gpa, 2);
    return this.line(gpa, 2).view.getUint16(gpa % this.lineSize, true);
  }
  read32(gpa: number): number {
    this.check(gpa, 4);
    if (!this.sameLine(gpa, 4)) return this.readSlow(gpa, 4);
    return this.line(gpa, 4).view.getUint32(gpa % this.lineSize, true);
  }
  read64(gpa: number): number {
    const lo = this.read32(gpa);
    const hi = this.read32(gpa + 4);
    if (hi >= 0x20_0000) throw new GuestMemoryError('mem.u64_range', '64-bit value does not fit a JS number exactly', { expected: '< 2^53', seen: `hi=${hex(hi)}` });
    return hi * TWO32 + lo;
  }
  private readSlow(gpa: number, n: 2 | 4): number {
    const b = this.readBytes(gpa, n);
    const v = new DataView(b.buffer, b.byteOffset, n);
    return n === 2 ? v.getUint16(0, true) : v.getUint32(0, true);
  }

  write8(gpa: number, v: number): void {
    this.scratch[0] = v;
    this.writeScratch(gpa, 1);
  }
  write16(gpa: number, v: number): void {
    this.scratchView.setUint16(0, v, true);
    this.writeScratch(gpa, 2);
  }
  write32(gpa: number, v: number): void {
    this.scratchView.setUint32(0, v >>> 0, true);
    this.writeScratch(gpa, 4);
  }
  write64(gpa: number, v: number): void {
    this.scratchView.setUint32(0, v % TWO32 >>> 0, true);
    this.scratchView.setUint32(4, Math.floor(v / TWO32) >>> 0, true);
    this.writeScratch(gpa, 8);
  }
  private writeScratch(gpa: number, n: number): void {
    this.writeBytes(gpa, this.scratch.subarray(0, n));
  }

  readBytes(gpa: number, len: number): Uint8Array {
    this.check(gpa, len);
    const out = new Uint8Array(len);
    if (len === 0) return out;
    this.fetch(gpa, len);
    let done = 0;
    while (done < len) {
      const a = gpa + done;
      const off = a % this.lineSize;
      const n = Math.min(len - done, this.lineSize - off);
      const l = this.lines.get(Math.floor(a / this.lineSize))!;
      out.set(l.bytes.subarray(off, off + n), done);
      done += n;
    }
    return out;
  }

  writeBytes(gpa: number, data: Uint8Array): void {
    const len = data.length;
    this.check(gpa, len);
    if (len === 0) return;
    this.client.writeMem(gpa, data);
    // keep cached lines coherent with our own stores
    let done = 0;
    while (done < len) {
      const a = gpa + done;
      const off = a % this.lineSize;
      const n = Math.min(len - done, this.lineSize - off);
      const l = this.lines.get(Math.floor(a / this.lineSize));
      if (l) l.bytes.set(data.subarray(done, done + n), off);
      done += n;
    }
  }

  fill(gpa: number, len: number, value: number): void {
    this.check(gpa, len);
    if (len === 0) return;
    this.client.memset(gpa, len, value);
    let done = 0;
    while (done < len) {
      const a = gpa + done;
      const off = a % this.lineSize;
      const n = Math.min(len - done, this.lineSize - off);
      const l = this.lines.get(Math.floor(a / this.lineSize));
      if (l) l.bytes.fill(value, off, off + n);
      done += n;
    }
  }
}
