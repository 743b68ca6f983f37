/**
 * Indirect descriptor tables kept per slot (split: head index; packed: buffer id) and reused by
 * the slot's next indirect buffer, so that steady-state I/O allocates no DMA memory. A table grows
 * to the next power of two (at least 4 entries) when a longer buffer needs it.
 */
import type { DmaAllocator } from '../../spec-refs/platform/platform.ts';

export class IndirectTables {
  private readonly gpa: Float64Array;
  private readonly cap: Uint32Array;

  constructor(private readonly dma: DmaAllocator, slots: number) {
    this.gpa = new Float64Array(slots);
    this.cap = new Uint32Array(slots);
  }

  /** The guest-physical address of a 16-byte-aligned table of at least `n` entries for `slot`. */
  tableFor(slot: number, n: number): number {
    if (this.cap[slot]! >= n) return this.gpa[slot]!;
    if (this.gpa[slot]) this.dma.free(this.gpa[slot]!);
    let cap = 4;
    while (cap < n) cap *= 2;
    const gpa = this.dma.alloc(16 * cap, 16);
    this.gpa[slot] = gpa;
    this.cap[slot] = cap;
    return gpa;
  }

  /** Release every table (the queue is being destroyed). */
  freeAll(): void {
    for (let i = 0; i < this.gpa.length; i++) if (this.gpa[i]) this.dma.free(this.gpa[i]!);
    this.gpa.fill(0);
    this.cap.fill(0);
  }
}
