import { GuestMemoryError, hex } from '../../../spec-refs/errors.ts';
import type { GuestMemoryAccess } from '../../../spec-refs/platform/platform.ts';
import type { QtestClient } from './client.ts';

/**
 * Guest memory of a QEMU machine, seen through qtest.
 *
 * QEMU's devices run concurrently with the driver (an aio completion may write a used ring at any
 * moment), so the cache must keep the ordering a CPU gives. It holds one *snapshot*: lines all
 * fetched in the same round trip (so loads never see a later device write on one line and an
 * earlier one on another), plus the driver's own stores applied on top.
 *
 * - Stores are posted to QEMU as byte-exact b64writes in program order (never whole lines: a
 *   device may be writing other bytes of the same line, as in a packed ring).
 * - A load after a store takes a new snapshot: the posted stores go out first, in the same round
 *   trip, so the load sees the device's state after it saw the stores. This is the store->load
 *   ordering virtio's notification suppression relies on (driver: write avail idx, then read
 *   avail_event / flags; device: the reverse). Serving that load from the old snapshot made the
 *   driver skip a notify the device needed: a lost request.
 * - A load that misses takes a new snapshot of every cached line plus the missing ones (one
 *   round trip), so loads stay ordered.
 * - The platform drops the cache at every device interaction (MMIO, port I/O, interrupt poll,
 *   spin), so polling loops see new device writes.
 */
export interface RamRange {
  readonly base: number;
  readonly size: number;
}

interface Line {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  /** The RAM part of the line that was fetched: [lo, hi). */
  readonly lo: number;
  readonly hi: number;
}

const TWO32 = 0x1_0000_0000;

export class QtestMemory implements GuestMemoryAccess {
  private readonly lines = new Map<number, Line>();
  private readonly lineSize: number;
  private readonly scratch = new Uint8Array(8);
  private readonly scratchView = new DataView(this.scratch.buffer);
  /** Line fetches (cache misses), for tests and benchmarks. */
  misses = 0;
  /** Stores made since the snapshot was taken: the next load takes a new one. */
  private storedSinceSnapshot = false;
  /** Most lines a snapshot refreshes on a miss (beyond: the old lines are dropped instead). */
  private static readonly MAX_SNAPSHOT_LINES = 16;

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
    this.storedSinceSnapshot = false;
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
    if (!this.storedSinceSnapshot) {
      const l = this.lines.get(idx);
      if (l) return l;
    }
    this.fetch(gpa, len);
    return this.lines.get(idx)!;
  }

  /** Make [gpa, gpa+len) readable from the cache, taking a new snapshot when needed. */
  private fetch(gpa: number, len: number): void {
    const first = Math.floor(gpa / this.lineSize);
    const last = Math.floor((gpa + Math.max(len, 1) - 1) / this.lineSize);
    if (!this.storedSinceSnapshot) {
      let allCached = true;
      for (let i = first; i <= last && allCached; i++) allCached = this.lines.has(i);
      if (allCached) return;
    }
    // a new snapshot: the wanted lines, and the cached ones again (or none, when there are many)
    const want: (readonly [number, number])[] = [];
    const idxs: number[] = [];
    for (let i = first; i <= last; i++) {
      // clip lines to RAM so that no fetch touches MMIO
      const base = i * this.lineSize;
      const lo = Math.max(base, this.ramStartOf(gpa));
      const hi = Math.min(base + this.lineSize, this.ramEndOf(gpa));
      want.push([lo, hi - lo]);
      idxs.push(i);
    }
    if (this.lines.size + want.length <= QtestMemory.MAX_SNAPSHOT_LINES) {
      for (const [i, l] of this.lines) {
        if (i >= first && i <= last) continue;
        want.push([l.lo, l.hi - l.lo]);
        idxs.push(i);
      }
    }
    this.lines.clear();
    this.storedSinceSnapshot = false;
    const got = this.client.readMem(want);
    for (let k = 0; k < idxs.length; k++) {
      const bytes = new Uint8Array(this.lineSize);
      const [lo, n] = want[k]!;
      bytes.set(got[k]!, lo - idxs[k]! * this.lineSize);
      this.lines.set(idxs[k]!, { bytes, view: new DataView(bytes.buffer), lo, hi: lo + n });
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

  // Stores are posted and mark the snapshot stale; they do not patch the cached lines: the next
  // load takes a new snapshot anyway (store->load order), with the stores applied by QEMU first,
  // so a patched line would never be read. (An earlier version patched them: dead code that the
  // coherence property could not tell from its absence.)
  writeBytes(gpa: number, data: Uint8Array): void {
    const len = data.length;
    this.check(gpa, len);
    if (len === 0) return;
    this.client.writeMem(gpa, data);
    this.storedSinceSnapshot = true;
  }

  fill(gpa: number, len: number, value: number): void {
    this.check(gpa, len);
    if (len === 0) return;
    this.client.memset(gpa, len, value);
    this.storedSinceSnapshot = true;
  }
}
