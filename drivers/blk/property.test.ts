/**
 * Property: random virtio-blk workloads over random queue sizes and feature sets keep the disk
 * equal to a plain Uint8Array model, and every request completes exactly once with the status
 * and used length it should have.
 *
 * Requests are issued in batches that are in flight together; a request that would overlap a
 * write (or discard) of the same batch first waits for the batch, so the model's order of
 * effects is well defined even though the device may complete a batch in any order.
 */
import { describe, expect } from 'vitest';
import { test as fcTest, fc } from '@fast-check/vitest';
import { simBlk } from '../../device-models/blk/harness.ts';
import { RamDisk } from '../../device-models/blk/backend.ts';
import { VirtioBlkDriver } from './driver.ts';
import { Blk, F, bit } from '../../spec-refs/virtio.ts';
import type { PvkitError } from '../../spec-refs/errors.ts';

/** First index where a and b differ (-1: equal); cheap where expect().toEqual on big arrays is not. */
function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

const SECTORS = 256; // a 128 KiB disk keeps ranges colliding often

type Op =
  | { kind: 'read' | 'write'; sector: number; count: number; pieces: number; queue: number; fill: number }
  | { kind: 'flush' | 'getid' | 'unsupp'; queue: number }
  | { kind: 'discard' | 'zeroes'; sector: number; count: number; queue: number }
  | { kind: 'oob'; queue: number }
  | { kind: 'wait' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constantFrom('read' as const, 'write' as const), sector: fc.nat(SECTORS - 1), count: fc.integer({ min: 1, max: 16 }), pieces: fc.integer({ min: 1, max: 3 }), queue: fc.nat(3), fill: fc.nat(255) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom('flush' as const, 'getid' as const, 'unsupp' as const, 'oob' as const), queue: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom('discard' as const, 'zeroes' as const), sector: fc.nat(SECTORS / 8 - 1).map((s) => s * 8), count: fc.integer({ min: 1, max: 24 }), queue: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'wait' as const }) },
);

const configArb = fc.record({
  queueSize: fc.constantFrom(4, 8, 16, 32, 256),
  indirect: fc.boolean(),
  eventIdx: fc.boolean(),
  numQueues: fc.integer({ min: 1, max: 4 }),
  reorder: fc.boolean(),
  latencyNs: fc.constantFrom(0, 0, 2000),
  notifyLatencyNs: fc.constantFrom(0, 500),
  legacy: fc.boolean(),
  packed: fc.boolean(),
  seed: fc.nat(),
});

describe('virtio-blk driver + device, random workloads', () => {
  fcTest.prop([configArb, fc.array(opArb, { minLength: 1, maxLength: 60 })], { numRuns: 150 })(
    'the disk equals the model and every request completes exactly once with the right status and used length',
    (cfg, ops) => {
      let ring = 0n;
      if (cfg.indirect) ring |= bit(F.INDIRECT_DESC);
      if (cfg.eventIdx) ring |= bit(F.EVENT_IDX);
      const packed = cfg.packed && !cfg.legacy; // the legacy interface has no packed ring
      if (packed) ring |= bit(F.RING_PACKED);
      const sim = simBlk({
        transport: cfg.legacy ? 'mmio-legacy' : 'mmio',
        ring: packed ? 'packed' : 'split',
        device: { backend: new RamDisk(SECTORS * 512), queueSize: cfg.queueSize, numQueues: cfg.numQueues, reorder: cfg.reorder, latencyNs: cfg.latencyNs, id: 'prop' },
        ringFeatures: ring,
        notifyLatencyNs: cfg.notifyLatencyNs,
        machine: { ram: [{ base: 0, size: 8 << 20 }], scheduler: { seed: cfg.seed, jitterNs: 300 } },
      });
      const blk = VirtioBlkDriver.probe(sim.machine.platform, sim.transport, { ringFeatures: ring, maxQueues: 4 });
      expect(blk.numQueues).toBe(cfg.numQueues);
      expect(blk.queue(0).layout).toBe(packed ? 'packed' : 'split');
      const mem = sim.machine.mem;
      const dma = sim.machine.dma;
      const model = new Uint8Array(SECTORS * 512);
      const disk = sim.device.backend as RamDisk;

      interface Pending {
        readonly op: Op;
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
      let batchEffects: (() => void)[] = [];
      let written: [number, number][] = []; // sector ranges changed by this batch
      let touched: [number, number][] = []; // sector ranges any request of this batch uses
      const overlaps = (list: [number, number][], a: number, n: number) => list.some(([b, m]) => a < b + m && b < a + n);

      const settle = () => {
        blk.waitAll();
        for (const p of batch) {
          if (p.expectData) expect(firstDiff(mem.readBytes(p.buf, p.bytes), p.expectData), `first wrong byte read by ${JSON.stringify(p.op)}`).toBe(-1);
          if (p.buf) dma.free(p.buf);
        }
        for (const e of batchEffects) e();
        batch = [];
        batchEffects = [];
        written = [];
        touched = [];
      };

      const submit = (op: Op, type: number, sector: number, bytes: number, pieces: number, expectStatus: number, expectLen: number, opts: { unchecked?: boolean; writable?: boolean; expectData?: Uint8Array; init?: Uint8Array } = {}) => {
        const buf = bytes > 0 ? dma.alloc(bytes, 512) : 0;
        if (opts.init) mem.writeBytes(buf, opts.init);
        const data = [];
        const per = Math.ceil(bytes / pieces / 512) * 512 || bytes;
        for (let o = 0; o < bytes; o += per) data.push({ addr: buf + o, len: Math.min(per, bytes - o) });
        const p: Pending = { op, expectStatus, expectLen, buf, bytes, expectData: opts.expectData, completions: 0 };
        all.push(p);
        batch.push(p);
        const queue = 'queue' in op ? op.queue % cfg.numQueues : 0;
        blk.submit({ type, sector, data, queue, unchecked: opts.unchecked, writable: opts.writable }, (status, _h, error, len) => {
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
            const count = Math.min(op.count, SECTORS - op.sector);
            if (overlaps(written, op.sector, count) || (op.kind === 'write' && overlaps(touched, op.sector, count))) settle();
            const bytes = count * 512;
            const pieces = Math.min(op.pieces, Math.max(1, cfg.queueSize - 2));
            if (op.kind === 'read') {
              submit(op, Blk.T_IN, op.sector, bytes, pieces, Blk.S_OK, bytes + 1, { expectData: model.slice(op.sector * 512, op.sector * 512 + bytes) });
            } else {
              const data = new Uint8Array(bytes).map((_, i) => (op.fill + i * 7 + (i >> 9)) & 0xff);
              submit(op, Blk.T_OUT, op.sector, bytes, pieces, Blk.S_OK, 1, { init: data });
              batchEffects.push(() => model.set(data, op.sector * 512));
              written.push([op.sector, count]);
            }
            touched.push([op.sector, count]);
            break;
          }
          case 'discard':
          case 'zeroes': {
            const count = Math.min(op.count, SECTORS - op.sector);
            if (overlaps(touched, op.sector, count)) settle();
            const seg = new Uint8Array(16);
            const v = new DataView(seg.buffer);
            v.setUint32(0, op.sector, true);
            v.setUint32(8, count, true);
            submit(op, op.kind === 'discard' ? Blk.T_DISCARD : Blk.T_WRITE_ZEROES, 0, 16, 1, Blk.S_OK, 1, { init: seg });
            // both RAM-disk operations leave zeroes behind
            batchEffects.push(() => model.fill(0, op.sector * 512, (op.sector + count) * 512));
            written.push([op.sector, count]);
            touched.push([op.sector, count]);
            break;
          }
          case 'flush':
            submit(op, Blk.T_FLUSH, 0, 0, 1, Blk.S_OK, 1);
            break;
          case 'getid':
            submit(op, Blk.T_GET_ID, 0, 20, 1, Blk.S_OK, 21, { expectData: new Uint8Array([...'prop'].map((c) => c.charCodeAt(0)).concat(new Array(16).fill(0))) });
            break;
          case 'unsupp':
            submit(op, 3, 0, 0, 1, Blk.S_UNSUPP, 1, { unchecked: true });
            break;
          case 'oob':
            submit(op, Blk.T_IN, SECTORS - 1, 1024, 1, Blk.S_IOERR, 1025, { unchecked: true, expectData: new Uint8Array(1024) });
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
      expect(sim.core.errorCount, 'driver errors the device recorded').toBe(0);
    },
  );
});
