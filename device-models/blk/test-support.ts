/**
 * Test support for device models: a DeviceQueue without a ring. Tests build Chain objects over
 * real GuestMemory and hand them to the device; the queue records what the device completes.
 * (The real queues are the core's split and packed rings; this isolates request handling.)
 */
import type { Chain, DeviceContext, DeviceQueue, Segment } from '../virtio/model.ts';
import { GuestMemory } from '../machine/memory.ts';
import { Scheduler } from '../machine/scheduler.ts';
import type { DriverMisbehaviourError } from '../../spec-refs/errors.ts';

export class ListQueue implements DeviceQueue {
  readonly pending: Chain[] = [];
  readonly used: { id: number; len: number }[] = [];
  flushes = 0;
  notifyEnabled = true;
  constructor(readonly index: number, readonly size: number) {}
  pop(): Chain | null {
    return this.pending.shift() ?? null;
  }
  push(chain: Chain, written: number): void {
    this.used.push({ id: chain.id, len: written });
  }
  flush(): void {
    this.flushes++;
  }
  disableNotify(): void {
    this.notifyEnabled = false;
  }
  enableNotify(): boolean {
    this.notifyEnabled = true;
    return this.pending.length === 0;
  }
}

export class ListContext implements DeviceContext {
  readonly queues: ListQueue[];
  configChanges = 0;
  resets: DriverMisbehaviourError[] = [];
  constructor(readonly mem: GuestMemory, readonly scheduler: Scheduler, readonly features: bigint, numQueues: number, size = 256) {
    this.queues = Array.from({ length: numQueues }, (_, i) => new ListQueue(i, size));
  }
  queue(index: number): DeviceQueue {
    return this.queues[index]!;
  }
  configChanged(): void {
    this.configChanges++;
  }
  needsReset(reason: DriverMisbehaviourError): void {
    this.resets.push(reason);
  }
}

export function makeChain(id: number, readable: Segment[], writable: Segment[]): Chain {
  const sum = (s: Segment[]) => s.reduce((n, x) => n + x.len, 0);
  return { id, readable, writable, readableLen: sum(readable), writableLen: sum(writable), descCount: readable.length + writable.length };
}

/** A bump allocator over a GuestMemory, for laying out test buffers. */
export class Bump {
  private next: number;
  constructor(readonly mem: GuestMemory, base: number, private readonly end = Infinity) {
    this.next = base;
  }
  alloc(len: number, align = 8): number {
    const a = Math.ceil(this.next / align) * align;
    if (a + len > this.end) throw new RangeError('test arena exhausted');
    this.next = a + len;
    return a;
  }
  /** Allocate and fill. */
  put(data: Uint8Array, align = 8): Segment {
    const addr = this.alloc(data.length, align);
    this.mem.writeBytes(addr, data);
    return { addr, len: data.length };
  }
}

export function header(type: number, sector: number | bigint): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint32(0, type, true);
  v.setBigUint64(8, BigInt(sector), true);
  return b;
}

export function dwzSegments(segs: readonly { sector: number | bigint; num: number; flags?: number }[]): Uint8Array {
  const b = new Uint8Array(16 * segs.length);
  const v = new DataView(b.buffer);
  segs.forEach((s, i) => {
    v.setBigUint64(i * 16, BigInt(s.sector), true);
    v.setUint32(i * 16 + 8, s.num, true);
    v.setUint32(i * 16 + 12, s.flags ?? 0, true);
  });
  return b;
}
