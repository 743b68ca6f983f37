/**
 * A Chain whose arrays and Segment objects are reused from one use to the next: the split and
 * packed rings keep one per id (head index / buffer id), so a steady state pop/push allocates
 * nothing. A ring fills it with begin(), add() per buffer element, end().
 */
import type { Chain, Segment } from './model.ts';

interface MutableSegment {
  addr: number;
  len: number;
}

export class PooledChain implements Chain {
  id: number;
  readonly readable: Segment[] = [];
  readonly writable: Segment[] = [];
  readableLen = 0;
  writableLen = 0;
  descCount = 0;
  /** Elements added since begin(), per direction. */
  nR = 0;
  nW = 0;
  private readonly rPool: MutableSegment[] = [];
  private readonly wPool: MutableSegment[] = [];

  constructor(id = 0) {
    this.id = id;
  }

  /** Start filling the chain again (lengths are the ring's to set). */
  begin(): void {
    this.nR = 0;
    this.nW = 0;
    this.readableLen = 0;
    this.writableLen = 0;
  }

  /** Append one element, device-writable or device-readable, reusing a pooled Segment. */
  add(write: boolean, addr: number, len: number): void {
    const pool = write ? this.wPool : this.rPool;
    const list = (write ? this.writable : this.readable) as MutableSegment[];
    const n = write ? this.nW++ : this.nR++;
    let s = pool[n];
    if (!s) s = pool[n] = { addr, len };
    else {
      s.addr = addr;
      s.len = len;
    }
    list[n] = s;
  }

  /** Trim the arrays to what was added since begin(). */
  end(): void {
    if (this.readable.length !== this.nR) this.readable.length = this.nR;
    if (this.writable.length !== this.nW) this.writable.length = this.nW;
  }
}
