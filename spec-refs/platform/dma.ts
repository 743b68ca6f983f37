import { UsageError, hex } from '../errors.ts';
import type { DmaAllocator } from './platform.ts';

interface Extent {
  start: number;
  size: number;
}

/**
 * First-fit allocator over guest-physical ranges, with coalescing on free. Memory handed out is
 * zeroed through `zero`. It is the guest kernel's page allocator in miniature: it lives outside
 * shared memory, so nothing a device writes can corrupt it.
 */
export class ExtentAllocator implements DmaAllocator {
  private extents: Extent[];
  private readonly live = new Map<number, number>();

  constructor(ranges: readonly { base: number; size: number }[], private readonly zero: (gpa: number, len: number) => void) {
    this.extents = ranges.filter((r) => r.size > 0).map((r) => ({ start: r.base, size: r.size })).sort((a, b) => a.start - b.start);
  }

  get available(): number {
    return this.extents.reduce((n, e) => n + e.size, 0);
  }

  alloc(size: number, align = 16): number {
    if (!Number.isSafeInteger(size) || size <= 0) throw new UsageError('dma.size', 'DMA allocation size must be a positive integer', { seen: String(size) });
    if (align <= 0 || (align & (align - 1)) !== 0) throw new UsageError('dma.align', 'DMA alignment must be a power of two', { seen: String(align) });
    for (let i = 0; i < this.extents.length; i++) {
      const e = this.extents[i]!;
      const start = Math.ceil(e.start / align) * align;
      const pad = start - e.start;
      if (pad + size > e.size) continue;
      const tail = e.size - pad - size;
      const pieces: Extent[] = [];
      if (pad > 0) pieces.push({ start: e.start, size: pad });
      if (tail > 0) pieces.push({ start: start + size, size: tail });
      this.extents.splice(i, 1, ...pieces);
      this.live.set(start, size);
      this.zero(start, size);
      return start;
    }
    throw new UsageError('dma.exhausted', 'out of DMA memory', { expected: `${size} bytes aligned to ${align}`, seen: `${this.available} bytes free, fragmented` });
  }

  sizeOf(gpa: number): number | undefined {
    return this.live.get(gpa);
  }

  free(gpa: number): void {
    const size = this.live.get(gpa);
    if (size === undefined) throw new UsageError('dma.free', 'free of an address that is not allocated', { seen: hex(gpa) });
    this.live.delete(gpa);
    const list = this.extents;
    let i = 0;
    while (i < list.length && list[i]!.start < gpa) i++;
    list.splice(i, 0, { start: gpa, size });
    // coalesce with neighbours
    if (i + 1 < list.length && list[i]!.start + list[i]!.size === list[i + 1]!.start) {
      list[i]!.size += list[i + 1]!.size;
      list.splice(i + 1, 1);
    }
    if (i > 0 && list[i - 1]!.start + list[i - 1]!.size === list[i]!.start) {
      list[i - 1]!.size += list[i]!.size;
      list.splice(i, 1);
    }
  }
}
