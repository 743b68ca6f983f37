import { describe, expect, it } from 'vitest';
import { test as fcTest, fc } from '@fast-check/vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GuestMemory } from '../machine/memory.ts';
import { Scheduler } from '../machine/scheduler.ts';
import { Blk, BlkF, F, bit, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { UsageError } from '../../spec-refs/errors.ts';
import { VirtioBlkDevice, type VirtioBlkOptions } from './device.ts';
import { FileDisk, RamDisk, type BlkBackend } from './backend.ts';
import { BlkConfig } from '../../spec-refs/abi/blk-layout.ts';
import { Bump, ListContext, dwzSegments, header, makeChain } from './test-support.ts';
import type { Segment } from '../virtio/model.ts';

const MiB = 1 << 20;

function setup(opts: Partial<VirtioBlkOptions> = {}, features?: bigint) {
  // two RAM regions that touch: a segment may run from one into the other
  const mem = new GuestMemory([
    { base: 0, size: MiB },
    { base: MiB, size: MiB },
  ]);
  const backend = opts.backend ?? new RamDisk(64 * 1024);
  const dev = new VirtioBlkDevice({ ...opts, backend });
  const feats = features ?? dev.offeredFeatures;
  expect(dev.acceptFeatures(feats)).toBe(true);
  const ctx = new ListContext(mem, new Scheduler({ seed: 7 }), feats, dev.numQueues);
  dev.activate(ctx);
  const arena = new Bump(mem, 0x1000);
  const q = ctx.queues[0]!;
  let nextId = 0;
  /** Submit one chain and run the device; returns used.len. */
  const run = (readable: Segment[], writable: Segment[], queue = 0): number => {
    const id = nextId++;
    ctx.queues[queue]!.pending.push(makeChain(id, readable, writable));
    dev.queueNotify(queue);
    const u = ctx.queues[queue]!.used.find((x) => x.id === id);
    expect(u, 'request completed').toBeDefined();
    return u!.len;
  };
  const status = (seg: Segment) => mem.read8(seg.addr + seg.len - 1);
  const statusSeg = () => arena.put(new Uint8Array([0xee]));
  return { mem, backend: backend as RamDisk, dev, ctx, q, arena, run, status, statusSeg };
}

function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return b;
}

describe('virtio-blk config space', () => {
  it('lays out virtio_blk_config as struct-layouts.tsv says, 96 bytes, padding zero', () => {
    const dev = new VirtioBlkDevice({ backend: new RamDisk(8 * MiB), numQueues: 3, segMax: 126, sizeMax: 65536, blkSize: 4096, discard: { maxSectors: 2048, maxSeg: 4, alignment: 8 }, writeZeroes: { maxSectors: 1024, maxSeg: 2 }, secureErase: { maxSectors: 512, maxSeg: 3, alignment: 16 } });
    expect(dev.configSize).toBe(96);
    expect(dev.readConfig(BlkConfig.CAPACITY, 4)).toBe(16384);
    expect(dev.readConfig(BlkConfig.CAPACITY + 4, 4)).toBe(0);
    expect(dev.readConfig(BlkConfig.SIZE_MAX, 4)).toBe(65536);
    expect(dev.readConfig(BlkConfig.SEG_MAX, 4)).toBe(126);
    expect(dev.readConfig(BlkConfig.BLK_SIZE, 4)).toBe(4096);
    expect(dev.readConfig(BlkConfig.NUM_QUEUES, 2)).toBe(3);
    expect(dev.readConfig(BlkConfig.MAX_DISCARD_SECTORS, 4)).toBe(2048);
    expect(dev.readConfig(BlkConfig.MAX_DISCARD_SEG, 4)).toBe(4);
    expect(dev.readConfig(BlkConfig.DISCARD_SECTOR_ALIGNMENT, 4)).toBe(8);
    expect(dev.readConfig(BlkConfig.MAX_WRITE_ZEROES_SECTORS, 4)).toBe(1024);
    expect(dev.readConfig(BlkConfig.MAX_WRITE_ZEROES_SEG, 4)).toBe(2);
    expect(dev.readConfig(BlkConfig.WRITE_ZEROES_MAY_UNMAP, 1)).toBe(1);
    expect(dev.readConfig(BlkConfig.MAX_SECURE_ERASE_SECTORS, 4)).toBe(512);
    expect(dev.readConfig(BlkConfig.MAX_SECURE_ERASE_SEG, 4)).toBe(3);
    expect(dev.readConfig(BlkConfig.SECURE_ERASE_SECTOR_ALIGNMENT, 4)).toBe(16);
    // blk.device.4: unused0 and unused1 are 0; zoned (not offered, blk.device.5) is all zero
    expect(dev.readConfig(BlkConfig.UNUSED0, 1)).toBe(0);
    for (let i = 0; i < 3; i++) expect(dev.readConfig(BlkConfig.UNUSED1 + i, 1)).toBe(0);
    for (let o = BlkConfig.ZONED; o < 96; o += 4) expect(dev.readConfig(o, 4)).toBe(0);
    expect(hasFeature(dev.offeredFeatures, BlkF.ZONED)).toBe(false);
    // out of range reads are 0, also partly out of range
    expect(dev.readConfig(96, 4)).toBe(0);
    expect(dev.readConfig(94, 4)).toBe(0);
    expect(dev.numQueues).toBe(3);
    expect(dev.queueMaxSize(2)).toBe(256);
    expect(dev.queueMaxSize(3)).toBe(0);
  });

  it('offers FLUSH whenever it offers CONFIG_WCE (blk.device.1, blk.device.2)', () => {
    const dev = new VirtioBlkDevice({ backend: new RamDisk(4096) });
    expect(hasFeature(dev.offeredFeatures, BlkF.FLUSH)).toBe(true);
    expect(hasFeature(dev.offeredFeatures, BlkF.CONFIG_WCE)).toBe(true);
    expect(() => new VirtioBlkDevice({ backend: new RamDisk(4096), blkFeatures: [BlkF.CONFIG_WCE] })).toThrow(UsageError);
    expect(() => new VirtioBlkDevice({ backend: new RamDisk(4096), numQueues: 2, blkFeatures: [BlkF.FLUSH] })).toThrow(UsageError);
    expect(() => new VirtioBlkDevice({ backend: new RamDisk(4096), blkFeatures: [BlkF.ZONED] })).toThrow(UsageError);
  });

  it('makes writeback 0 when CONFIG_WCE is negotiated without FLUSH (blk.device.3), else lets the driver toggle it', () => {
    const dev = new VirtioBlkDevice({ backend: new RamDisk(4096) });
    expect(dev.readConfig(BlkConfig.WRITEBACK, 1)).toBe(1);
    expect(dev.acceptFeatures(bit(F.VERSION_1) | bit(BlkF.CONFIG_WCE))).toBe(true);
    expect(dev.readConfig(BlkConfig.WRITEBACK, 1)).toBe(0);
    dev.reset();
    expect(dev.readConfig(BlkConfig.WRITEBACK, 1)).toBe(1);
    expect(dev.acceptFeatures(bit(F.VERSION_1) | bit(BlkF.CONFIG_WCE) | bit(BlkF.FLUSH))).toBe(true);
    dev.writeConfig(BlkConfig.WRITEBACK, 1, 0);
    expect(dev.writeback).toBe(0);
    dev.writeConfig(BlkConfig.WRITEBACK, 1, 7); // not a cache mode: ignored
    expect(dev.writeback).toBe(0);
    dev.writeConfig(BlkConfig.CAPACITY, 4, 1); // read-only field
    expect(dev.readConfig(BlkConfig.CAPACITY, 4)).toBe(8);
  });

  it('refuses features it did not offer', () => {
    const dev = new VirtioBlkDevice({ backend: new RamDisk(4096), blkFeatures: [BlkF.FLUSH] });
    expect(dev.acceptFeatures(bit(F.VERSION_1) | bit(BlkF.DISCARD))).toBe(false);
  });

  it('changes capacity on resize and raises a configuration change (blk.device.19, blk.device.20)', () => {
    const { dev, ctx } = setup();
    dev.resize(128 * 1024);
    expect(dev.readConfig(BlkConfig.CAPACITY, 4)).toBe(256);
    expect(ctx.configChanges).toBe(1);
  });
});

describe('virtio-blk requests', () => {
  it('writes and reads back across segments, with the status sharing the last data descriptor', () => {
    const { run, arena, mem, backend, status, statusSeg } = setup();
    const data = pattern(3 * 512, 1);
    const s1 = statusSeg();
    // OUT: header, data in two pieces of uneven length
    expect(run([arena.put(header(Blk.T_OUT, 5)), arena.put(data.subarray(0, 700)), arena.put(data.subarray(700))], [s1])).toBe(1);
    expect(status(s1)).toBe(Blk.S_OK);
    expect(backend.contents.subarray(5 * 512, 8 * 512)).toEqual(data);
    // IN: header and data in one readable/writable pair each; status is the last byte of the second writable segment
    const w1 = { addr: arena.alloc(1000), len: 1000 };
    const w2 = { addr: arena.alloc(537), len: 537 };
    expect(run([arena.put(header(Blk.T_IN, 5))], [w1, w2])).toBe(1537);
    expect(status(w2)).toBe(Blk.S_OK);
    const back = new Uint8Array(1536);
    back.set(mem.readBytes(w1.addr, 1000));
    back.set(mem.readBytes(w2.addr, 536), 1000);
    expect(back).toEqual(data);
  });

  it('reads into a buffer that runs from one RAM region into the next', () => {
    const { run, arena, mem, backend } = setup();
    backend.contents.set(pattern(1024, 3), 0);
    const w = { addr: MiB - 300, len: 1025 };
    expect(run([arena.put(header(Blk.T_IN, 0))], [w])).toBe(1025);
    expect(mem.read8(MiB + 724)).toBe(Blk.S_OK);
    const got = new Uint8Array(1024);
    got.set(mem.readBytes(MiB - 300, 300));
    got.set(mem.readBytes(MiB, 724), 300);
    expect(got).toEqual(pattern(1024, 3));
  });

  it('fails writes to a read-only disk with IOERR and writes nothing (blk.device.21, blk.device.22)', () => {
    const { run, arena, backend, status, statusSeg, dev } = setup({ readOnly: true });
    expect(hasFeature(dev.offeredFeatures, BlkF.RO)).toBe(true);
    const before = backend.contents.slice();
    for (const [r, s] of [
      [[arena.put(header(Blk.T_OUT, 0)), arena.put(pattern(512, 2))], statusSeg()],
      [[arena.put(header(Blk.T_WRITE_ZEROES, 0)), arena.put(dwzSegments([{ sector: 0, num: 1 }]))], statusSeg()],
      [[arena.put(header(Blk.T_DISCARD, 0)), arena.put(dwzSegments([{ sector: 0, num: 8 }]))], statusSeg()],
      [[arena.put(header(Blk.T_SECURE_ERASE, 0)), arena.put(dwzSegments([{ sector: 0, num: 8 }]))], statusSeg()],
    ] as [Segment[], Segment][]) {
      expect(run(r, [s])).toBe(1);
      expect(status(s)).toBe(Blk.S_IOERR);
    }
    expect(backend.contents).toEqual(before);
  });

  it('completes a header-only chain with used.len 0 and writes nothing', () => {
    const { run, arena, mem } = setup();
    const before = mem.readBytes(0, MiB);
    expect(run([arena.put(header(Blk.T_IN, 0))], [])).toBe(0);
    expect(run([arena.put(header(Blk.T_OUT, 0)), arena.put(pattern(512, 1)), arena.put(new Uint8Array(1))], [])).toBe(0);
    // only the buffers the test itself wrote changed
    const after = mem.readBytes(0, MiB);
    expect(after.subarray(0, 0x1000)).toEqual(before.subarray(0, 0x1000));
  });

  it('fails a short or missing header with IOERR', () => {
    const { run, arena, status, statusSeg } = setup();
    const s = statusSeg();
    expect(run([arena.put(header(Blk.T_IN, 0).subarray(0, 8))], [s])).toBe(1);
    expect(status(s)).toBe(Blk.S_IOERR);
    const s2 = statusSeg();
    expect(run([], [s2])).toBe(1);
    expect(status(s2)).toBe(Blk.S_IOERR);
  });

  it('handles a header split over descriptors', () => {
    const { run, arena, status, statusSeg, backend } = setup();
    backend.contents.set(pattern(512, 9), 512);
    const h = header(Blk.T_IN, 1);
    const data = { addr: arena.alloc(512), len: 512 };
    const s = statusSeg();
    expect(run([arena.put(h.subarray(0, 3)), arena.put(h.subarray(3, 11)), arena.put(h.subarray(11))], [data, s])).toBe(513);
    expect(status(s)).toBe(Blk.S_OK);
  });

  it('treats a status area of the wrong size as a malformed request: IOERR, the extra bytes zeroed', () => {
    const { run, arena, mem, backend } = setup();
    const before = backend.contents.slice();
    const w = arena.put(new Uint8Array([9, 9, 9, 9]));
    expect(run([arena.put(header(Blk.T_OUT, 0)), arena.put(pattern(512, 4))], [w])).toBe(4);
    expect(mem.readBytes(w.addr, 4)).toEqual(new Uint8Array([0, 0, 0, Blk.S_IOERR]));
    expect(backend.contents).toEqual(before);
    // a read whose data is not a multiple of 512 bytes (blk.driver.16)
    const w2 = arena.put(new Uint8Array(101).fill(5));
    expect(run([arena.put(header(Blk.T_IN, 0))], [w2])).toBe(101);
    expect(mem.read8(w2.addr + 100)).toBe(Blk.S_IOERR);
    expect(mem.readBytes(w2.addr, 100).every((b) => b === 0)).toBe(true);
  });

  it('rejects sector ranges past the capacity or overflowing 64 bits (blk.driver.12)', () => {
    const { run, arena, status, statusSeg, backend } = setup();
    const cap = backend.size / 512;
    const cases: bigint[] = [BigInt(cap), BigInt(cap - 1), 2n ** 64n - 1n, 2n ** 55n, 2n ** 64n - 8n];
    for (const sector of cases) {
      const data = { addr: arena.alloc(1024), len: 1024 };
      const s = statusSeg();
      run([arena.put(header(Blk.T_IN, sector))], [data, s]);
      expect(status(s), `IN at ${sector}`).toBe(Blk.S_IOERR);
      const s2 = statusSeg();
      run([arena.put(header(Blk.T_OUT, sector)), arena.put(pattern(1024, 1))], [s2]);
      expect(status(s2), `OUT at ${sector}`).toBe(Blk.S_IOERR);
    }
    // the last sector itself is fine
    const s = statusSeg();
    run([arena.put(header(Blk.T_IN, cap - 1)), ], [{ addr: arena.alloc(512), len: 512 }, s]);
    expect(status(s)).toBe(Blk.S_OK);
  });

  it('enforces seg_max and size_max on the data segments', () => {
    const { run, arena, status, statusSeg } = setup({ segMax: 2, sizeMax: 1024 });
    const segs = (n: number, len: number) => Array.from({ length: n }, () => ({ addr: arena.alloc(len), len }));
    let s = statusSeg();
    run([arena.put(header(Blk.T_IN, 0))], [...segs(2, 1024), s]);
    expect(status(s)).toBe(Blk.S_OK);
    s = statusSeg();
    run([arena.put(header(Blk.T_IN, 0))], [...segs(3, 512), s]);
    expect(status(s)).toBe(Blk.S_IOERR);
    s = statusSeg();
    run([arena.put(header(Blk.T_IN, 0))], [...segs(1, 2048), s]);
    expect(status(s)).toBe(Blk.S_IOERR);
    s = statusSeg();
    run([arena.put(header(Blk.T_OUT, 0)), arena.put(pattern(2048, 1))], [s]);
    expect(status(s)).toBe(Blk.S_IOERR);
  });

  it('flushes: FLUSH commits, and without a negotiated writeback cache every write is committed (blk.device.31)', () => {
    let flushes = 0;
    const inner = new RamDisk(64 * 1024);
    const backend: BlkBackend = Object.assign(Object.create(inner) as BlkBackend, { persistent: true, flush: () => flushes++ });
    // FLUSH negotiated, no CONFIG_WCE: writeback cache, only FLUSH commits
    let t = setup({ backend }, bit(F.VERSION_1) | bit(BlkF.FLUSH));
    t.run([t.arena.put(header(Blk.T_OUT, 0)), t.arena.put(pattern(512, 1))], [t.statusSeg()]);
    expect(flushes).toBe(0);
    const s = t.statusSeg();
    t.run([t.arena.put(header(Blk.T_FLUSH, 0))], [s]);
    expect(t.status(s)).toBe(Blk.S_OK);
    expect(flushes).toBe(1);
    // neither FLUSH nor CONFIG_WCE negotiated but FLUSH offered: writes are stable at completion
    flushes = 0;
    t = setup({ backend }, bit(F.VERSION_1));
    t.run([t.arena.put(header(Blk.T_OUT, 0)), t.arena.put(pattern(512, 1))], [t.statusSeg()]);
    expect(flushes).toBe(1);
    // CONFIG_WCE negotiated and writeback switched to 0: writethrough
    flushes = 0;
    t = setup({ backend }, bit(F.VERSION_1) | bit(BlkF.FLUSH) | bit(BlkF.CONFIG_WCE));
    t.dev.writeConfig(BlkConfig.WRITEBACK, 1, 0);
    t.run([t.arena.put(header(Blk.T_OUT, 0)), t.arena.put(pattern(512, 1))], [t.statusSeg()]);
    expect(flushes).toBe(1);
    t.dev.writeConfig(BlkConfig.WRITEBACK, 1, 1);
    t.run([t.arena.put(header(Blk.T_OUT, 0)), t.arena.put(pattern(512, 1))], [t.statusSeg()]);
    expect(flushes).toBe(1);
  });

  it('answers FLUSH with UNSUPP when FLUSH is not offered', () => {
    const t = setup({ blkFeatures: [BlkF.SEG_MAX] });
    const s = t.statusSeg();
    t.run([t.arena.put(header(Blk.T_FLUSH, 0))], [s]);
    expect(t.status(s)).toBe(Blk.S_UNSUPP);
  });

  it('returns the device id with GET_ID, and IOERR for a data area that is not 20 bytes (blk.driver.18)', () => {
    const t = setup({ id: 'serial-0123456789abc' });
    const d = { addr: t.arena.alloc(20), len: 20 };
    const s = t.statusSeg();
    expect(t.run([t.arena.put(header(Blk.T_GET_ID, 0))], [d, s])).toBe(21);
    expect(t.status(s)).toBe(Blk.S_OK);
    expect(new TextDecoder().decode(t.mem.readBytes(d.addr, 20))).toBe('serial-0123456789abc');
    const t2 = setup({ id: 'short' });
    const d2 = { addr: t2.arena.alloc(21), len: 21 };
    expect(t2.run([t2.arena.put(header(Blk.T_GET_ID, 0))], [d2])).toBe(21);
    expect(Array.from(t2.mem.readBytes(d2.addr, 21))).toEqual([...'short'].map((c) => c.charCodeAt(0)).concat(new Array(15).fill(0), [Blk.S_OK]));
    for (const len of [1, 9, 20, 33]) {
      const b = t2.arena.put(new Uint8Array(len).fill(0xaa));
      expect(t2.run([t2.arena.put(header(Blk.T_GET_ID, 0))], [b])).toBe(len);
      expect(t2.mem.read8(b.addr + len - 1)).toBe(Blk.S_IOERR);
      expect(t2.mem.readBytes(b.addr, len - 1).every((x) => x === 0)).toBe(true);
    }
  });

  it('answers unknown types, GET_LIFETIME and zone requests with UNSUPP (blk.device.36)', () => {
    const t = setup();
    for (const type of [2, 3, 5, 10, 15, 16, 18, 20, 22, 24, 26, 0xffff_ffff]) {
      const s = t.statusSeg();
      t.run([t.arena.put(header(type, 0))], [s]);
      expect(t.status(s), `type ${type}`).toBe(Blk.S_UNSUPP);
    }
  });

  it('discard / write zeroes / secure erase: flags, limits and alignment (blk.device.23, blk.device.24, blk.device.27)', () => {
    const t = setup({ discard: { maxSectors: 64, maxSeg: 2, alignment: 8 }, writeZeroes: { maxSectors: 32, maxSeg: 3 }, secureErase: { maxSectors: 16, maxSeg: 1, alignment: 4 } });
    t.backend.contents.fill(0x77);
    const req = (type: number, segs: Parameters<typeof dwzSegments>[0], raw?: Uint8Array) => {
      const s = t.statusSeg();
      expect(t.run([t.arena.put(header(type, 0)), t.arena.put(raw ?? dwzSegments(segs))], [s])).toBe(1);
      return t.status(s);
    };
    // write zeroes, with and without unmap: the range reads back as zeroes either way
    expect(req(Blk.T_WRITE_ZEROES, [{ sector: 1, num: 2 }, { sector: 10, num: 1, flags: Blk.WRITE_ZEROES_FLAG_UNMAP }])).toBe(Blk.S_OK);
    expect(t.backend.contents.subarray(512, 1536).every((b) => b === 0)).toBe(true);
    expect(t.backend.contents.subarray(5120, 5632).every((b) => b === 0)).toBe(true);
    expect(t.backend.contents[511]).toBe(0x77);
    expect(t.backend.contents[1536]).toBe(0x77);
    // unknown flags -> UNSUPP for all three (blk.device.23); unmap on discard -> UNSUPP (blk.device.24)
    expect(req(Blk.T_WRITE_ZEROES, [{ sector: 0, num: 1, flags: 2 }])).toBe(Blk.S_UNSUPP);
    expect(req(Blk.T_DISCARD, [{ sector: 0, num: 8, flags: 0x8000_0000 }])).toBe(Blk.S_UNSUPP);
    expect(req(Blk.T_DISCARD, [{ sector: 0, num: 8, flags: Blk.WRITE_ZEROES_FLAG_UNMAP }])).toBe(Blk.S_UNSUPP);
    expect(req(Blk.T_SECURE_ERASE, [{ sector: 0, num: 4, flags: 4 }])).toBe(Blk.S_UNSUPP);
    // too many sectors / segments -> IOERR (blk.driver.19-21 broken by the driver)
    expect(req(Blk.T_WRITE_ZEROES, [{ sector: 0, num: 33 }])).toBe(Blk.S_IOERR);
    expect(req(Blk.T_WRITE_ZEROES, [{ sector: 0, num: 1 }, { sector: 1, num: 1 }, { sector: 2, num: 1 }, { sector: 3, num: 1 }])).toBe(Blk.S_IOERR);
    expect(req(Blk.T_DISCARD, [{ sector: 0, num: 8 }, { sector: 8, num: 8 }, { sector: 16, num: 8 }])).toBe(Blk.S_IOERR);
    expect(req(Blk.T_DISCARD, [{ sector: 0, num: 72 }])).toBe(Blk.S_IOERR);
    expect(req(Blk.T_SECURE_ERASE, [{ sector: 0, num: 20 }])).toBe(Blk.S_IOERR);
    // misaligned start
    expect(req(Blk.T_DISCARD, [{ sector: 3, num: 8 }])).toBe(Blk.S_IOERR);
    expect(req(Blk.T_SECURE_ERASE, [{ sector: 6, num: 4 }])).toBe(Blk.S_IOERR);
    // past the capacity
    expect(req(Blk.T_WRITE_ZEROES, [{ sector: 127, num: 2 }])).toBe(Blk.S_IOERR);
    expect(req(Blk.T_WRITE_ZEROES, [{ sector: 2n ** 64n - 1n, num: 2 }])).toBe(Blk.S_IOERR);
    // payload not a multiple of 16 bytes, or empty (blk.driver.17)
    expect(req(Blk.T_DISCARD, [], new Uint8Array(15))).toBe(Blk.S_IOERR);
    const s = t.statusSeg();
    t.run([t.arena.put(header(Blk.T_DISCARD, 0))], [s]);
    expect(t.status(s)).toBe(Blk.S_IOERR);
    // good ones
    expect(req(Blk.T_DISCARD, [{ sector: 8, num: 8 }, { sector: 32, num: 64 }])).toBe(Blk.S_OK);
    expect(req(Blk.T_SECURE_ERASE, [{ sector: 16, num: 16 }])).toBe(Blk.S_OK);
    expect(t.backend.contents.subarray(16 * 512, 32 * 512).every((b) => b === 0)).toBe(true);
  });

  it('answers DISCARD / WRITE_ZEROES / SECURE_ERASE with UNSUPP when not negotiated', () => {
    const t = setup({}, bit(F.VERSION_1) | bit(BlkF.FLUSH));
    for (const type of [Blk.T_DISCARD, Blk.T_WRITE_ZEROES, Blk.T_SECURE_ERASE]) {
      const s = t.statusSeg();
      t.run([t.arena.put(header(type, 0)), t.arena.put(dwzSegments([{ sector: 0, num: 8 }]))], [s]);
      expect(t.status(s)).toBe(Blk.S_UNSUPP);
    }
  });

  it('serves every queue with MQ, and completes out of order with reorder on', () => {
    const t = setup({ numQueues: 4, reorder: true });
    expect(t.dev.numQueues).toBe(4);
    for (let qi = 0; qi < 4; qi++) {
      const q = t.ctx.queues[qi]!;
      for (let i = 0; i < 16; i++) q.pending.push(makeChain(i, [t.arena.put(header(Blk.T_IN, i))], [{ addr: t.arena.alloc(513), len: 513 }]));
      t.dev.queueNotify(qi);
      expect(q.used.map((u) => u.id).sort((a, b) => a - b)).toEqual([...Array(16).keys()]);
      expect(q.used.every((u) => u.len === 513)).toBe(true);
      expect(q.flushes).toBe(1);
    }
    expect(t.ctx.queues[3]!.used.map((u) => u.id)).not.toEqual([...Array(16).keys()]);
    // a notification for a queue that does not exist is ignored
    t.dev.queueNotify(4);
    t.dev.queueNotify(0xffff);
  });

  it('completes after latencyNs of virtual time, and drops completions of a session that was reset', () => {
    const t = setup({ latencyNs: 1000 });
    t.q.pending.push(makeChain(0, [t.arena.put(header(Blk.T_IN, 0))], [{ addr: t.arena.alloc(513), len: 513 }]));
    t.dev.queueNotify(0);
    expect(t.q.used).toHaveLength(0);
    t.ctx.scheduler.runFor(1000);
    expect(t.q.used).toEqual([{ id: 0, len: 513 }]);
    t.q.pending.push(makeChain(1, [t.arena.put(header(Blk.T_IN, 0))], [{ addr: t.arena.alloc(513), len: 513 }]));
    t.dev.queueNotify(0);
    t.dev.reset();
    t.ctx.scheduler.runFor(1000);
    expect(t.q.used).toHaveLength(1);
  });
});

describe('virtio-blk under hostile chains', () => {
  const segArb = fc.record({ off: fc.integer({ min: 0, max: 0x1_ffff }), len: fc.integer({ min: 0, max: 4200 }) });
  const headerArb = fc.record({
    type: fc.oneof(fc.constantFrom(0, 1, 4, 8, 10, 11, 13, 14, 16), fc.nat()),
    sector: fc.oneof(fc.bigInt({ min: 0n, max: 200n }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
  });
  fcTest.prop(
    [headerArb, fc.array(segArb, { maxLength: 5 }), fc.array(segArb, { maxLength: 5 }), fc.uint8Array({ minLength: 0, maxLength: 256 }), fc.boolean(), fc.boolean()],
    { numRuns: 300 },
  )('never throws, writes only into writable segments, and used.len never exceeds the writable bytes', (h, rsegs, wsegs, payload, withHeader, ro) => {
    const mem = new GuestMemory([{ base: 0, size: 0x4_0000 }]);
    const dev = new VirtioBlkDevice({ backend: new RamDisk(64 * 1024), readOnly: ro, numQueues: 2, segMax: 3, sizeMax: 2048, discard: { maxSectors: 16, maxSeg: 2, alignment: 8 }, writeZeroes: { maxSectors: 16, maxSeg: 2 } });
    dev.acceptFeatures(dev.offeredFeatures);
    const ctx = new ListContext(mem, new Scheduler(), dev.offeredFeatures, 2);
    dev.activate(ctx);
    // the readable area: the header (unless left out) and the payload, placed in the test area
    const base = 0x2_0000;
    const hdr = header(h.type, h.sector);
    mem.writeBytes(base, hdr);
    mem.writeBytes(base + 16, payload);
    const readable: Segment[] = withHeader ? [{ addr: base, len: 16 }, { addr: base + 16, len: payload.length }] : [];
    for (const s of rsegs) readable.push({ addr: s.off, len: Math.min(s.len, 0x4_0000 - s.off) });
    const writable = wsegs.map((s) => ({ addr: s.off, len: Math.min(s.len, 0x4_0000 - s.off) }));
    // fill RAM with a marker so that any write is visible
    const marker = new Uint8Array(0x4_0000).fill(0x5a);
    mem.writeBytes(0, marker);
    mem.writeBytes(base, hdr);
    mem.writeBytes(base + 16, payload);
    const before = mem.readBytes(0, 0x4_0000);
    const chain = makeChain(1, readable, writable);
    ctx.queues[1]!.pending.push(chain);
    dev.queueNotify(1);
    const used = ctx.queues[1]!.used;
    expect(used).toHaveLength(1);
    expect(used[0]!.len).toBeLessThanOrEqual(chain.writableLen);
    const after = mem.readBytes(0, 0x4_0000);
    const inWritable = new Uint8Array(0x4_0000);
    for (const w of writable) inWritable.fill(1, w.addr, w.addr + w.len);
    for (let i = 0; i < after.length; i++) {
      if (after[i] !== before[i] && !inWritable[i]) throw new Error(`byte ${i.toString(16)} outside the writable segments changed`);
    }
    if (used[0]!.len > 0) {
      // the status byte is the last writable byte, and it is a defined status value
      const last = [...writable].reverse().find((w) => w.len > 0)!;
      expect([Blk.S_OK, Blk.S_IOERR, Blk.S_UNSUPP]).toContain(mem.read8(last.addr + last.len - 1));
    }
  });
});

describe('FileDisk backend', () => {
  it('persists writes through the device model, fsyncs on FLUSH, and reopens with the same data', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pvkit-blk-'));
    const file = path.join(dir, 'disk.img');
    try {
      const disk = new FileDisk(file, { size: 64 * 1024 });
      const t = setup({ backend: disk });
      const data = pattern(2048, 5);
      const s = t.statusSeg();
      t.run([t.arena.put(header(Blk.T_OUT, 4)), t.arena.put(data)], [s]);
      expect(t.status(s)).toBe(Blk.S_OK);
      const f = t.statusSeg();
      t.run([t.arena.put(header(Blk.T_FLUSH, 0))], [f]);
      expect(t.status(f)).toBe(Blk.S_OK);
      disk.close();
      const raw = fs.readFileSync(file);
      expect(raw.length).toBe(64 * 1024);
      expect(new Uint8Array(raw.subarray(2048, 4096))).toEqual(data);
      const again = new FileDisk(file, { readOnly: true });
      const t2 = setup({ backend: again });
      expect(hasFeature(t2.dev.offeredFeatures, BlkF.RO)).toBe(true);
      const d = { addr: t2.arena.alloc(2048), len: 2048 };
      const s2 = t2.statusSeg();
      t2.run([t2.arena.put(header(Blk.T_IN, 4))], [d, s2]);
      expect(t2.status(s2)).toBe(Blk.S_OK);
      expect(t2.mem.readBytes(d.addr, 2048)).toEqual(data);
      again.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('turns backend failures into IOERR, never a throw', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pvkit-blk-'));
    try {
      const disk = new FileDisk(path.join(dir, 'd.img'), { size: 8192 });
      const t = setup({ backend: disk });
      disk.close(); // every later fs call fails with EBADF
      const s = t.statusSeg();
      t.run([t.arena.put(header(Blk.T_IN, 0))], [{ addr: t.arena.alloc(512), len: 512 }, s]);
      expect(t.status(s)).toBe(Blk.S_IOERR);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
