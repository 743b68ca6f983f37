/**
 * virtio-blk (device-types/blk/description.tex): config presentation, request semantics and
 * error statuses of the device; request construction of the driver.
 */
import fc from 'fast-check';
import { BlkConfig, BLK_ZONE_TYPES } from '../../spec-refs/abi/blk-layout.ts';
import type { VirtioBlkDriver } from '../../drivers/blk/driver.ts';
import { Blk, BlkF, F, bit, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { UsageError } from '../../spec-refs/errors.ts';
import { CheckFailure, CheckSkip, checkProperty, defineCheck, expectEqual, expectThat } from '../check.ts';
import type { DeviceOptions, DeviceUnderTest, TargetContext } from '../target.ts';
import { BLK_JUDGE_STATEMENTS, blkJudge, monitor, raw, simInternals, startRef } from './support.ts';

function blkSession(ctx: TargetContext, dut: DeviceUnderTest, without?: bigint): VirtioBlkDriver {
  const s = startRef(ctx, dut, without !== undefined ? { without } : {});
  if (!s.blk) throw new CheckSkip('not a virtio-blk device');
  return s.blk;
}

/** A fresh device (with `opts`) and the reference blk driver on it. */
function newBlkSession(ctx: TargetContext, opts: DeviceOptions = {}, without?: bigint): { dut: DeviceUnderTest; b: VirtioBlkDriver } {
  const dut = ctx.newDevice(opts);
  return { dut, b: blkSession(ctx, dut, without) };
}

/** Submit a request the reference driver would refuse (range requests with chosen flags, unknown types...) and wait for it. */
function rawRequest(b: VirtioBlkDriver, type: number, sector: number, data: Uint8Array, writable = false): { status: number; len: number; buf: number } {
  const p = b.platform;
  const buf = p.dma.alloc(Math.max(16, data.length), 16);
  if (!writable) p.mem.writeBytes(buf, data);
  const h = b.submit({ type, sector, data: data.length ? [{ addr: buf, len: data.length }] : [], unchecked: true, writable });
  b.kick();
  const r = b.wait(h);
  return { status: r.status, len: r.len, buf };
}

function dwz(segs: readonly { sector: number; num: number; flags: number }[]): Uint8Array {
  const out = new Uint8Array(16 * segs.length);
  const v = new DataView(out.buffer);
  segs.forEach((s, i) => {
    v.setUint32(16 * i, s.sector % 0x1_0000_0000, true);
    v.setUint32(16 * i + 4, Math.floor(s.sector / 0x1_0000_0000), true);
    v.setUint32(16 * i + 8, s.num, true);
    v.setUint32(16 * i + 12, s.flags, true);
  });
  return out;
}

// ---------------------------------------------------------------------------- device side

defineCheck({
  id: 'blk.device.config',
  title: 'padding config bytes read 0; writeback starts at 0 when CONFIG_WCE is accepted without FLUSH',
  statements: ['blk.device.4', 'blk.device.3'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['blk'], transports: ['mmio'] },
  run(ctx) {
    const dut = ctx.newDevice();
    const r = raw(dut);
    r.probe();
    const n = r.negotiate((o) => o & ~bit(BlkF.FLUSH) & (bit(F.VERSION_1) | 0xffffffn));
    // A padding byte is part of the device's configuration space only when a field after it is:
    // a device may size the space by the features it offers (QEMU 7.2 does, virtio_blk_cfg_size_params,
    // and reads past the end return 0xff). unused0 precedes num_queues (MQ) and the later fields;
    // unused1 precedes max_secure_erase_sectors (SECURE_ERASE) and the zoned block (ZONED).
    const has = (...fs: number[]) => fs.some((f) => hasFeature(n.offered, f));
    const padding: number[] = [];
    if (has(BlkF.MQ, BlkF.DISCARD, BlkF.WRITE_ZEROES, BlkF.SECURE_ERASE, BlkF.ZONED)) padding.push(BlkConfig.UNUSED0);
    if (has(BlkF.SECURE_ERASE, BlkF.ZONED)) padding.push(BlkConfig.UNUSED1, BlkConfig.UNUSED1 + 1, BlkConfig.UNUSED1 + 2);
    for (const off of padding) expectEqual(r.config8(off), 0, ['blk.device.4'], `padding config byte at ${off}`);
    if (padding.length < 4) ctx.note(`padding bytes checked: ${padding.join(', ') || 'none'} (the others precede fields of features the device does not offer)`);
    if (hasFeature(n.accepted, BlkF.CONFIG_WCE) && n.featuresOk) expectEqual(r.config8(BlkConfig.WRITEBACK), 0, ['blk.device.3'], 'writeback with CONFIG_WCE accepted and FLUSH not');
    else ctx.note('CONFIG_WCE not offered: blk.device.3 not exercised');
  },
});

defineCheck({
  id: 'blk.device.read-only',
  title: 'a read-only device fails every write with IOERR and leaves the disk unchanged',
  statements: ['blk.device.21', 'blk.device.22'],
  side: 'device',
  kind: 'property',
  applies: { devices: ['blk'] },
  run(ctx) {
    const { b } = newBlkSession(ctx, { params: { readOnly: true } });
    if (!b.info.readOnly) throw new CheckSkip('device is not read-only on this target');
    checkProperty(ctx, ['blk.device.21'], [fc.integer({ min: 0, max: 64 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 255 })], (sector, sectors, fill) => {
      const before = new Uint8Array(sectors * 512);
      b.read(sector, before);
      const res = rawRequest(b, Blk.T_OUT, sector, new Uint8Array(sectors * 512).fill(fill));
      expectEqual(res.status, Blk.S_IOERR, ['blk.device.21'], 'status of a write to a read-only device');
      const after = new Uint8Array(sectors * 512);
      b.read(sector, after);
      expectThat(before.every((x, i) => x === after[i]), ['blk.device.22'], 'a write to a read-only device changed the disk');
    });
  },
});

defineCheck({
  id: 'blk.device.range-flags',
  title: 'DISCARD / WRITE_ZEROES / SECURE_ERASE segments with unknown flag bits, and DISCARD with unmap, complete with UNSUPP',
  statements: ['blk.device.23', 'blk.device.24'],
  side: 'device',
  kind: 'property',
  applies: { devices: ['blk'] },
  run(ctx) {
    const { b } = newBlkSession(ctx);
    const types = [b.info.discard ? Blk.T_DISCARD : -1, b.info.writeZeroes ? Blk.T_WRITE_ZEROES : -1, b.info.secureErase ? Blk.T_SECURE_ERASE : -1].filter((t) => t >= 0);
    if (types.length === 0) throw new CheckSkip('device supports none of DISCARD, WRITE_ZEROES, SECURE_ERASE');
    checkProperty(ctx, ['blk.device.23'], [fc.constantFrom(...types), fc.integer({ min: 1, max: 31 }), fc.boolean()], (type, flagBit, unmapOnDiscard) => {
      const unmap = type === Blk.T_DISCARD && unmapOnDiscard;
      const flags = unmap ? Blk.WRITE_ZEROES_FLAG_UNMAP : (1 << flagBit) >>> 0;
      const res = rawRequest(b, type, 0, dwz([{ sector: 0, num: 8, flags }]));
      expectEqual(res.status, Blk.S_UNSUPP, unmap ? ['blk.device.24'] : ['blk.device.23'], `status of type ${type} with segment flags 0x${flags.toString(16)}`);
    });
  },
});

defineCheck({
  id: 'blk.device.write-zeroes',
  title: 'a completed WRITE_ZEROES reads back as zeroes, with or without unmap',
  statements: ['blk.device.27'],
  side: 'device',
  kind: 'property',
  applies: { devices: ['blk'] },
  run(ctx) {
    const { b } = newBlkSession(ctx);
    if (!b.info.writeZeroes) throw new CheckSkip('device does not support WRITE_ZEROES');
    const mayUnmap = b.info.writeZeroes.mayUnmap;
    checkProperty(ctx, ['blk.device.27'], [fc.integer({ min: 0, max: 200 }), fc.integer({ min: 1, max: 24 }), fc.boolean()], (sector, sectors, unmap) => {
      const span = sectors + 4;
      b.write(sector, new Uint8Array(span * 512).fill(0xa5));
      b.writeZeroes([{ sector: sector + 2, sectors, unmap: unmap && mayUnmap }]);
      const back = new Uint8Array(span * 512);
      b.read(sector, back);
      for (let i = 0; i < back.length; i++) {
        const inRange = i >= 1024 && i < 1024 + sectors * 512;
        const want = inRange ? 0 : 0xa5;
        if (back[i] !== want) throw new CheckFailure(`byte ${i} of the span ${inRange ? 'inside' : 'outside'} the zeroed range`, { statements: ['blk.device.27'], expected: String(want), seen: String(back[i]) });
      }
    });
  },
});

defineCheck({
  id: 'blk.device.zone-requests',
  title: 'zone request types complete with UNSUPP when VIRTIO_BLK_F_ZONED was not negotiated',
  statements: ['blk.device.36'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['blk'] },
  run(ctx) {
    const { b } = newBlkSession(ctx, {}, bit(BlkF.ZONED));
    for (const type of BLK_ZONE_TYPES) {
      const writable = type === 16; // ZONE_REPORT returns data
      const res = rawRequest(b, type, 0, new Uint8Array(writable ? 64 : 0), writable);
      expectEqual(res.status, Blk.S_UNSUPP, ['blk.device.36'], `status of zone request type ${type}`);
    }
  },
});

defineCheck({
  id: 'blk.device.lifetime',
  title: 'LIFETIME is offered only with meaningful metrics, and GET_LIFETIME returns no reserved values',
  statements: ['blk.device.34', 'blk.device.35'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['blk'] },
  run(ctx) {
    const { dut, b } = newBlkSession(ctx);
    const offered = hasFeature(b.dev.offered, BlkF.LIFETIME);
    const backend = (dut.internals?.['model'] as { backend?: { kind: string } } | undefined)?.backend;
    if (backend && backend.kind === 'ram') expectThat(!offered, ['blk.device.34'], 'a RAM-backed device offers VIRTIO_BLK_F_LIFETIME');
    if (!offered) return;
    const res = rawRequest(b, Blk.T_GET_LIFETIME, 0, new Uint8Array(8), true);
    expectEqual(res.status, Blk.S_OK, ['blk.device.35'], 'GET_LIFETIME status');
    const v = new DataView(b.platform.mem.readBytes(res.buf, 8).buffer);
    const preEol = v.getUint16(0, true);
    const a = v.getUint16(2, true);
    const bb = v.getUint16(4, true);
    expectThat(preEol <= 3, ['blk.device.35'], 'pre_eol_info reserved value', '0..3', String(preEol));
    expectThat(a <= 0x0b && bb <= 0x0b, ['blk.device.35'], 'lifetime estimate reserved value', '0..0x0b', `${a}, ${bb}`);
  },
});

defineCheck({
  id: 'blk.device.writethrough-persists',
  title: 'in writethrough mode a completed write is already in the backing store',
  statements: ['blk.device.31'],
  side: 'device',
  kind: 'property',
  applies: { devices: ['blk'] },
  run(ctx) {
    const dut = ctx.newDevice({ params: { writeback: 0 } });
    const sim = simInternals(dut);
    const backend = (sim.model as unknown as { backend: { read(off: number, dst: Uint8Array, dstOffset: number, len: number): void } }).backend;
    const b = blkSession(ctx, dut);
    if (b.info.cache !== 'writethrough') throw new CheckSkip('device is not in writethrough mode');
    checkProperty(ctx, ['blk.device.31'], [fc.integer({ min: 0, max: 500 }), fc.uint8Array({ minLength: 512, maxLength: 512 })], (sector, data) => {
      b.write(sector, data);
      const stored = new Uint8Array(512);
      backend.read(sector * 512, stored, 0, 512);
      expectThat(stored.every((x, i) => x === data[i]), ['blk.device.31'], 'a completed writethrough write is not in the backing store');
    });
  },
});

// ---------------------------------------------------------------------------- driver side

defineCheck({
  id: 'blk.driver.requests',
  title: 'every request the blk driver puts on the ring is well formed: sizes, ranges, FLUSH sector, GET_ID buffer, segment counts and flags',
  statements: ['blk.driver.12', 'blk.driver.14', 'blk.driver.16', 'blk.driver.17', 'blk.driver.18', 'blk.driver.19', 'blk.driver.20', 'blk.driver.21', 'blk.driver.24', 'blk.driver.4'],
  side: 'driver',
  kind: 'property',
  applies: { rings: ['split'], devices: ['blk'], transports: ['mmio'] }, // the monitor parses split rings on virtio-mmio
  run(ctx) {
    const op = fc.oneof(
      fc.record({ k: fc.constant('read' as const), sector: fc.integer({ min: -2, max: 2100 }), bytes: fc.integer({ min: 0, max: 4200 }) }),
      fc.record({ k: fc.constant('write' as const), sector: fc.integer({ min: -2, max: 2100 }), bytes: fc.integer({ min: 0, max: 4200 }) }),
      fc.record({ k: fc.constantFrom('flush' as const, 'id' as const) }),
      fc.record({ k: fc.constantFrom('discard' as const, 'zeroes' as const, 'erase' as const), ranges: fc.array(fc.record({ sector: fc.integer({ min: 0, max: 2100 }), sectors: fc.integer({ min: 0, max: 300 }), unmap: fc.boolean() }), { minLength: 1, maxLength: 40 }) }),
    );
    let judged = 0;
    checkProperty(ctx, ['blk.driver.12'], [fc.array(op, { minLength: 1, maxLength: 8 })], (ops) => {
      const dut = ctx.newDevice({ params: { diskBytes: 1 << 20, discard: { maxSectors: 64, maxSeg: 3, alignment: 1 }, secureErase: { maxSectors: 128, maxSeg: 2, alignment: 1 }, writeZeroes: { maxSectors: 256, maxSeg: 4, mayUnmap: true } } });
      const mon = monitor(dut, { onChain: blkJudge(dut.machine!.mem) });
      const b = blkSession(ctx, dut);
      for (const o of ops) {
        try {
          if (o.k === 'read') b.read(o.sector, new Uint8Array(o.bytes));
          else if (o.k === 'write') b.write(o.sector, new Uint8Array(o.bytes).fill(3));
          else if (o.k === 'flush') b.flush();
          else if (o.k === 'id') b.getId();
          else if (o.k === 'discard') b.discard(o.ranges.map((r) => ({ sector: r.sector, sectors: r.sectors })));
          else if (o.k === 'zeroes') b.writeZeroes(o.ranges);
          else if (o.k === 'erase') b.secureErase(o.ranges.map((r) => ({ sector: r.sector, sectors: r.sectors })));
        } catch (e) {
          // refusing a bad request before it reaches the ring is what the driver must do
          if (!(e instanceof UsageError)) throw e;
        }
      }
      b.shutdown();
      mon.detach();
      mon.assertClean({ side: 'driver' });
      judged += mon.stats.chains;
    });
    expectThat(judged > 0, [...BLK_JUDGE_STATEMENTS], 'no request reached the ring: nothing was judged');
  },
});
