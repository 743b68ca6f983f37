/**
 * Test support: the random virtio-blk workload shared by property.test.ts (random queue sizes and
 * feature sets) and matrix.test.ts (every transport x ring cell). The disk must stay equal to a
 * plain Uint8Array model, and every request must complete exactly once with the status and used
 * length it should have, and the device must record no driver error.
 *
 * Requests are issued in batches that are in flight together; a request that would overlap a
 * write (or discard) of the same batch first waits for the batch, so the model's order of
 * effects is well defined even though the device may complete a batch in any order.
 */
import { expect } from 'vitest';
import { fc } from '@fast-check/vitest';
import type { SimBlk } from '../../conformance/harness/blk.ts';
import type { RamDisk } from '../../device-models/blk/backend.ts';
import type { VirtioBlkDriver } from './driver.ts';
import { Blk } from '../../spec-refs/abi/virtio.ts';
import type { PvkitError } from '../../spec-refs/errors.ts';

export type BlkOp =
  | { kind: 'read' | 'write'; sector: number; count: number; pieces: number; queue: number; fill: number }
  | { kind: 'flush' | 'getid' | 'unsupp' | 'oob'; queue: number }
  | { kind: 'discard' | 'zeroes'; sector: number; count: number; queue: number }
  | { kind: 'wait' };

/** Random operations on a disk of `sectors` 512-byte sectors (a multiple of 8). */
export function blkOpArb(sectors: number): fc.Arbitrary<BlkOp> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constantFrom('read' as const, 'write' as const), sector: fc.nat(sectors - 1), count: fc.integer({ min: 1, max: 16 }), pieces: fc.integer({ min: 1, max: 3 }), queue: fc.nat(3), fill: fc.nat(255) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom('flush' as const, 'getid' as const, 'unsupp' as const, 'oob' as const), queue: fc.nat(3) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom('discard' as const, 'zeroes' as const), sector: fc.nat(sectors / 8 - 1).map((s) => s * 8), count: fc.integer({ min: 1, max: 24 }), queue: fc.nat(3) }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'wait' as const }) },
  );
}

/** First index where a and b differ (-1: equal); cheap where expect().toEqual on big arrays is not. */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

export interface BlkWorkloadSetup {
  /** Disk size in sectors (the device's backend is a RamDisk of this size, initially zero). */
  readonly sectors: number;
  /** The device's queue size and number of queues. */
  readonly queueSize: number;
  readonly numQueues: number;
  /** The device's serial (GET_ID answer), at most 20 bytes. */
  readonly id: string;
}

/** Run `ops` through `blk` (already probed over `sim`); throws (expect) on any divergence. */
export function runBlkWorkload(sim: SimBlk, blk: VirtioBlkDriver, ops: readonly BlkOp[], setup: BlkWorkloadSetup): void {
  const { sectors, queueSize, numQueues } = setup;
  const mem = sim.machine.mem;
  const dma = sim.machine.dma;
  const model = new Uint8Array(sectors * 512);
  const disk = sim.device.backend as RamDisk;
  const serial = new Uint8Array(20);
  for (let i = 0; i < setup.id.length; i++) serial[i] = setup.id.charCodeAt(i);

  interface Pending {
    readonly op: BlkOp;
    readonly expectStatus: number;
    readonly expectLen: number;
    readonly buf: number;
    readonly bytes: number;
    readonly expectData?: Uint8Array;
    completions: number;
    status?: number;
    len?: number;
    error?: PvkitError;
  }
  const all: Pending[] = [];
  let batch: Pending[] = [];
  let effects: (() => void)[] = [];
  let written: [number, number][] = []; // sector ranges changed by this batch
  let touched: [number, number][] = []; // sector ranges any request of this batch uses
  const overlaps = (list: [number, number][], a: number, n: number) => list.some(([b, m]) => a < b + m && b < a + n);

  const settle = () => {
    blk.waitAll();
    for (const p of batch) {
      if (p.expectData) expect(firstDiff(mem.readBytes(p.buf, p.bytes), p.expectData), `first wrong byte read by ${JSON.stringify(p.op)}`).toBe(-1);
      if (p.buf) dma.free(p.buf);
    }
    for (const e of effects) e();
    batch = [];
    effects = [];
    written = [];
    touched = [];
  };

  const submit = (op: BlkOp, type: number, sector: number, bytes: number, pieces: number, expectStatus: number, expectLen: number, o: { unchecked?: boolean; expectData?: Uint8Array; init?: Uint8Array } = {}) => {
    const buf = bytes > 0 ? dma.alloc(bytes, 512) : 0;
    if (o.init) mem.writeBytes(buf, o.init);
    const data = [];
    const per = Math.ceil(bytes / pieces / 512) * 512 || bytes;
    for (let off = 0; off < bytes; off += per) data.push({ addr: buf + off, len: Math.min(per, bytes - off) });
    const p: Pending = { op, expectStatus, expectLen, buf, bytes, expectData: o.expectData, completions: 0 };
    all.push(p);
    batch.push(p);
    const queue = 'queue' in op ? op.queue % numQueues : 0;
    blk.submit({ type, sector, data, queue, unchecked: o.unchecked }, (status, _h, error, len) => {
      p.completions++;
      p.status = status;
      p.error = error;
      p.len = len;
    });
  };

  for (const op of ops) {
    switch (op.kind) {
      case 'wait':
        settle();
        break;
      case 'read':
      case 'write': {
        const count = Math.min(op.count, sectors - op.sector);
        if (overlaps(written, op.sector, count) || (op.kind === 'write' && overlaps(touched, op.sector, count))) settle();
        const bytes = count * 512;
        const pieces = Math.min(op.pieces, Math.max(1, queueSize - 2));
        if (op.kind === 'read') {
          submit(op, Blk.T_IN, op.sector, bytes, pieces, Blk.S_OK, bytes + 1, { expectData: model.slice(op.sector * 512, op.sector * 512 + bytes) });
        } else {
          const data = new Uint8Array(bytes).map((_, i) => (op.fill + i * 7 + (i >> 9)) & 0xff);
          submit(op, Blk.T_OUT, op.sector, bytes, pieces, Blk.S_OK, 1, { init: data });
          effects.push(() => model.set(data, op.sector * 512));
          written.push([op.sector, count]);
        }
        touched.push([op.sector, count]);
        break;
      }
      case 'discard':
      case 'zeroes': {
        const count = Math.min(op.count, sectors - op.sector);
        if (overlaps(touched, op.sector, count)) settle();
        const seg = new Uint8Array(16);
        const v = new DataView(seg.buffer);
        v.setUint32(0, op.sector, true);
        v.setUint32(8, count, true);
        submit(op, op.kind === 'discard' ? Blk.T_DISCARD : Blk.T_WRITE_ZEROES, 0, 16, 1, Blk.S_OK, 1, { init: seg });
        // both RAM-disk operations leave zeroes behind
        effects.push(() => model.fill(0, op.sector * 512, (op.sector + count) * 512));
        written.push([op.sector, count]);
        touched.push([op.sector, count]);
        break;
      }
      case 'flush':
        submit(op, Blk.T_FLUSH, 0, 0, 1, Blk.S_OK, 1);
        break;
      case 'getid':
        submit(op, Blk.T_GET_ID, 0, 20, 1, Blk.S_OK, 21, { expectData: serial });
        break;
      case 'unsupp':
        submit(op, 3, 0, 0, 1, Blk.S_UNSUPP, 1, { unchecked: true });
        break;
      case 'oob':
        submit(op, Blk.T_IN, sectors - 1, 1024, 1, Blk.S_IOERR, 1025, { unchecked: true, expectData: new Uint8Array(1024) });
        break;
    }
  }
  settle();
  expect(blk.outstanding).toBe(0);
  for (const p of all) {
    expect(p.completions, `completions of ${JSON.stringify(p.op)}`).toBe(1);
    expect(p.error, `error of ${JSON.stringify(p.op)}`).toBeUndefined();
    expect(p.status, `status of ${JSON.stringify(p.op)}`).toBe(p.expectStatus);
    expect(p.len, `used len of ${JSON.stringify(p.op)}`).toBe(p.expectLen);
  }
  expect(firstDiff(disk.contents, model), 'first byte where the disk and the model differ').toBe(-1);
  expect(sim.core.errors.map((e) => e.error.message), 'driver errors the device recorded').toEqual([]);
  expect(sim.core.errorCount, 'driver errors the device recorded').toBe(0);
}
