import { GuestMemoryError, hex } from '../../spec-refs/errors.ts';
import type { GuestMemoryAccess } from '../../spec-refs/platform/guest-memory.ts';

export type { GuestMemoryAccess };

/**
 * Guest-physical memory: RAM regions, each backed by one ArrayBuffer, in a map with holes.
 * All accesses are bounds-checked and little-endian. 64-bit values are exchanged as JS
 * numbers built from two 32-bit halves (exact up to 2^53, which covers every guest address
 * pvkit uses); `read64` throws rather than round when the high half exceeds 2^21.
 */
export interface RamRegionSpec {
  readonly base: number;
  readonly size: number;
  readonly name?: string;
}

export interface RamRegion {
  readonly base: number;
  readonly size: number;
  readonly end: number;
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly view: DataView;
}

const TWO32 = 0x1_0000_0000;

export class GuestMemory implements GuestMemoryAccess {
  readonly regions: readonly RamRegion[];
  // one-entry cache of the last region hit: most accesses stay in one region
  private last: RamRegion;

  constructor(specs: readonly RamRegionSpec[]) {
    if (specs.length === 0) throw new GuestMemoryError('mem.config', 'guest memory needs at least one RAM region');
    const sorted = [...specs].sort((a, b) => a.base - b.base);
    const regions: RamRegion[] = [];
    for (const s of sorted) {
      if (!Number.isSafeInteger(s.base) || s.base < 0 || !Number.isSafeInteger(s.size) || s.size <= 0) {
        throw new GuestMemoryError('mem.config', 'bad RAM region', { expected: 'non-negative base, positive size', seen: `${s.base}+${s.size}` });
      }
      const prev = regions[regions.length - 1];
      if (prev && s.base < prev.end) {
        throw new GuestMemoryError('mem.config', 'RAM regions overlap', { seen: `${prev.name} and ${s.name ?? hex(s.base)}` });
      }
      const buf = new ArrayBuffer(s.size);
      regions.push({ base: s.base, size: s.size, end: s.base + s.size, name: s.name ?? `ram@${hex(s.base)}`, bytes: new Uint8Array(buf), view: new DataView(buf) });
    }
    this.regions = regions;
    this.last = regions[0]!;
  }

  get totalSize(): number {
    return this.regions.reduce((n, r) => n + r.size, 0);
  }

  /** The region holding [gpa, gpa+len), or undefined when any byte lies outside one region. */
  regionOf(gpa: number, len: number): RamRegion | undefined {
    const r = this.last;
    if (gpa >= r.base && gpa + len <= r.end && len >= 0) return r;
    if (!(gpa >= 0) || !(len >= 0) || !Number.isSafeInteger(gpa + len)) return undefined;
    for (const reg of this.regions) {
      if (gpa >= reg.base && gpa + len <= reg.end) {
        this.last = reg;
        return reg;
      }
    }
    return undefined;
  }

  isRam(gpa: number, len: number): boolean {
    if (len === 0) return this.regionOf(gpa, 0) !== undefined;
    if (this.regionOf(gpa, len)) return true;
    // contiguous regions (no hole between) also count
    let cur = gpa;
    const end = gpa + len;
    if (!Number.isSafeInteger(end)) return false;
    while (cur < end) {
      const reg = this.regions.find((r) => cur >= r.base && cur < r.end);
      if (!reg) return false;
      cur = reg.end;
    }
    return true;
  }

  private region(gpa: number, len: number): RamRegion {
    const r = this.regionOf(gpa, len);
    if (!r) throw new GuestMemoryError('mem.out_of_ram', 'guest-physical access outside RAM', { expected: 'an address inside a RAM region', seen: `${hex(gpa)}+${len}` });
    return r;
  }

  read8(gpa: number): number {
    const r = this.region(gpa, 1);
    return r.bytes[gpa - r.base]!;
  }
  read16(gpa: number): number {
    const r = this.region(gpa, 2);
    return r.view.getUint16(gpa - r.base, true);
  }
  read32(gpa: number): number {
    const r = this.region(gpa, 4);
    return r.view.getUint32(gpa - r.base, true);
  }
  read64(gpa: number): number {
    const r = this.region(gpa, 8);
    const lo = r.view.getUint32(gpa - r.base, true);
    const hi = r.view.getUint32(gpa - r.base + 4, true);
    if (hi >= 0x20_0000) throw new GuestMemoryError('mem.u64_range', '64-bit value does not fit a JS number exactly', { expected: '< 2^53', seen: `hi=${hex(hi)}` });
    return hi * TWO32 + lo;
  }
  /** The two 32-bit halves of a 64-bit value, for values that may exceed 2^53. */
  read64Halves(gpa: number): [lo: number, hi: number] {
    const r = this.region(gpa, 8);
    return [r.view.getUint32(gpa - r.base, true), r.view.getUint32(gpa - r.base + 4, true)];
  }
  write8(gpa: number, v: number): void {
    const r = this.region(gpa, 1);
    r.bytes[gpa - r.base] = v;
  }
  write16(gpa: number, v: number): void {
    const r = this.region(gpa, 2);
    r.view.setUint16(gpa - r.base, v, true);
  }
  write32(gpa: number, v: number): void {
    const r = this.region(gpa, 4);
    r.view.setUint32(gpa - r.base, v >>> 0, true);
  }
  write64(gpa: number, v: number): void {
    const r = this.region(gpa, 8);
    r.view.setUint32(gpa - r.base, v % TWO32 >>> 0, true);
    r.view.setUint32(gpa - r.base + 4, Math.floor(v / TWO32) >>> 0, true);
  }
  readBytes(gpa: number, len: number): Uint8Array {
    const r = this.region(gpa, len);
    return r.bytes.slice(gpa - r.base, gpa - r.base + len);
  }
  writeBytes(gpa: number, data: Uint8Array): void {
    const r = this.region(gpa, data.length);
    r.bytes.set(data, gpa - r.base);
  }
  fill(gpa: number, len: number, value: number): void {
    const r = this.region(gpa, len);
    r.bytes.fill(value, gpa - r.base, gpa - r.base + len);
  }
  mapView(gpa: number, len: number): { readonly view: DataView; readonly offset: number } | undefined {
    const r = this.regionOf(gpa, len);
    return r ? { view: r.view, offset: gpa - r.base } : undefined;
  }

  /** A view (no copy) of [gpa, gpa+len); it must lie in one region. For device-model fast paths. */
  subarray(gpa: number, len: number): Uint8Array {
    const r = this.region(gpa, len);
    return r.bytes.subarray(gpa - r.base, gpa - r.base + len);
  }
  /** Copy inside guest memory (both ranges must each lie in one region). */
  copyWithin(dst: number, src: number, len: number): void {
    const rs = this.region(src, len);
    const rd = this.region(dst, len);
    if (rs === rd) rd.bytes.copyWithin(dst - rd.base, src - rs.base, src - rs.base + len);
    else rd.bytes.set(rs.bytes.subarray(src - rs.base, src - rs.base + len), dst - rd.base);
  }
}
