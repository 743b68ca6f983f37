/**
 * Zoned virtio-blk (VIRTIO_BLK_F_ZONED, device-types/blk/description.tex): the zoned
 * characteristics in config space, zone management, zoned writes and appends, unwritten data,
 * secure erase on zones (device side), and the requests the driver forms (driver side).
 *
 * Device-side checks run the reference driver (its `unchecked` requests for what a correct
 * driver never sends) against a zoned device; they are skipped when the target cannot make one.
 */
import fc from 'fast-check';
import { BlkConfig, BlkDwz, BlkReqHeader, BlkZonedConfig, BlkZoneModel, BlkZoneReport, BlkZoneState as ZS, BlkZoneType as ZT } from '../../spec-refs/abi/blk-layout.ts';
import { VirtioBlkDriver, type BlkZoneInfo } from '../../drivers/blk/driver.ts';
import { Blk, BlkF, F, Mmio, Status, bit, hasFeature, statusNames } from '../../spec-refs/abi/virtio.ts';
import { UsageError } from '../../spec-refs/errors.ts';
import { CheckSkip, checkProperty, defineCheck, expectEqual, expectThat } from '../check.ts';
import type { DeviceOptions, DeviceUnderTest, TargetContext } from '../target.ts';
import { monitor, raw, simInternals, transportOf } from './support.ts';

/** ZONED needs FEATURES_OK: zoned devices are checked over the modern interfaces (blk.device.6 covers the legacy ones). */
const MODERN = ['mmio', 'pci'] as const;

const ZONE = 64; // sectors per zone on the checking device
const NZ = 8;
/** zone 0 conventional, 1..5 sequential, 6 read-only, 7 offline */
const RDONLY_ZONE = 6;
const OFFLINE_ZONE = 7;

function zonedParams(model: 'hm' | 'ha' | 'none', extra: Record<string, unknown> = {}): DeviceOptions {
  return { params: { diskBytes: NZ * ZONE * 512, zoned: { model, zoneSectors: ZONE, maxOpen: 2, maxActive: 3, maxAppendSectors: 16, conventionalZones: 1, readOnlyZones: [RDONLY_ZONE], offlineZones: [OFFLINE_ZONE], ...extra } } };
}

/** A zoned device under test driven by the reference driver (ZONED accepted). */
function zonedSession(ctx: TargetContext, model: 'hm' | 'ha' = 'hm', extra: Record<string, unknown> = {}): { dut: DeviceUnderTest; b: VirtioBlkDriver } {
  if (ctx.target.name !== 'sim') throw new CheckSkip('needs a zoned device (the sim target makes one)');
  const dut = ctx.newDevice(zonedParams(model, extra));
  const b = VirtioBlkDriver.probe(dut.platform, transportOf(dut), { ringFeatures: bit(F.INDIRECT_DESC) | bit(F.EVENT_IDX) });
  if (!b.info.zoned) throw new CheckSkip('device is not zoned (ZONED not negotiated)');
  return { dut, b };
}

/** A request the reference driver would refuse, sent anyway; returns the status (and the data buffer). */
function rawReq(b: VirtioBlkDriver, type: number, sector: number, bytes: number, writable: boolean, fill = 0x5a): { status: number; buf: number; appendSector?: number } {
  const p = b.platform;
  const buf = p.dma.alloc(Math.max(16, bytes), 16);
  if (!writable && bytes) p.mem.writeBytes(buf, new Uint8Array(bytes).fill(fill));
  const h = b.submit({ type, sector, data: bytes ? [{ addr: buf, len: bytes }] : [], unchecked: true, writable });
  b.kick();
  const r = b.wait(h);
  return r.appendSector !== undefined ? { status: r.status, buf, appendSector: r.appendSector } : { status: r.status, buf };
}

function zone(b: VirtioBlkDriver, i: number): BlkZoneInfo {
  return b.reportZones(i * ZONE, 1)[0]!;
}

const name = (s: number) => ['OK', 'IOERR', 'UNSUPP', 'ZONE_INVALID_CMD', 'ZONE_UNALIGNED_WP', 'ZONE_OPEN_RESOURCE', 'ZONE_ACTIVE_RESOURCE'][s] ?? String(s);

function expectStatus(seen: number, want: number | number[], statements: readonly string[], what: string): void {
  const ok = Array.isArray(want) ? want.includes(seen) : seen === want;
  expectThat(ok, statements, `status of ${what}`, Array.isArray(want) ? want.map(name).join(' or ') : name(want), name(seen));
}

// ---------------------------------------------------------------------------- device side

defineCheck({
  id: 'blk.device.zoned-config',
  title: 'a zoned device reports a valid model, zone size, limits it enforces, append size within seg_max*size_max, write granularity, and zero padding',
  statements: ['blk.device.9', 'blk.device.10', 'blk.device.12', 'blk.device.13', 'blk.device.14', 'blk.device.15', 'blk.device.17', 'blk.device.18'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['blk'], transports: MODERN },
  run(ctx) {
    const { dut, b } = zonedSession(ctx);
    const t = transportOf(dut);
    const o = BlkConfig.ZONED;
    const model = t.readConfig(o + BlkZonedConfig.MODEL, 1);
    expectThat(model === BlkZoneModel.HM || model === BlkZoneModel.HA || model === BlkZoneModel.NONE, ['blk.device.9'], 'zoned.model is not a defined model', '0, 1 or 2', String(model));
    for (let k = 0; k < 3; k++) expectEqual(t.readConfig(o + BlkZonedConfig.UNUSED2 + k, 1), 0, ['blk.device.18'], `zoned.unused2[${k}]`);
    const zs = t.readConfig(o + BlkZonedConfig.ZONE_SECTORS, 4);
    const cap = b.info.capacity;
    const nr = Math.ceil(cap / zs);
    const rep = b.reportZones(0, nr + 1);
    expectEqual(rep.length, nr, ['blk.device.10'], 'zones reported vs ceil(capacity / zone_sectors)');
    rep.forEach((z, i) => {
      expectEqual(z.start, i * zs, ['blk.device.10'], `start of zone ${i}`);
      expectThat(z.cap <= zs, ['blk.device.10'], `zone ${i} capacity above zone_sectors`, `<= ${zs}`, String(z.cap));
    });
    const maxOpen = t.readConfig(o + BlkZonedConfig.MAX_OPEN_ZONES, 4);
    const maxActive = t.readConfig(o + BlkZonedConfig.MAX_ACTIVE_ZONES, 4);
    const seq = rep.map((z, i) => ({ z, i })).filter(({ z }) => z.type !== ZT.CONV && z.state === ZS.EMPTY).map(({ i }) => i);
    // blk.device.12: max_open_zones explicit opens succeed, one more does not (0: no limit to test)
    if (maxOpen > 0 && seq.length > maxOpen) {
      for (let k = 0; k < maxOpen; k++) expectStatus(b.zoneOpen(seq[k]! * zs), Blk.S_OK, ['blk.device.12'], `explicit open ${k + 1} of max_open_zones ${maxOpen}`);
      expectStatus(b.zoneOpen(seq[maxOpen]! * zs), [Blk.S_ZONE_OPEN_RESOURCE, Blk.S_ZONE_ACTIVE_RESOURCE], ['blk.device.12'], `explicit open beyond max_open_zones ${maxOpen}`);
      expectEqual(b.zoneResetAll(), Blk.S_OK, ['blk.device.12'], 'ZONE_RESET_ALL');
      for (const i of seq) b.zoneClose(i * zs); // back to EMPTY (close of an empty open zone)
    }
    // blk.device.13: max_active_zones zones made active by writes, one more fails with ACTIVE_RESOURCE
    if (maxActive > 0 && seq.length > maxActive) {
      const one = new Uint8Array(512).fill(1);
      for (let k = 0; k < maxActive; k++) expectStatus(b.writeOnce(seq[k]! * zs, one), Blk.S_OK, ['blk.device.13'], `write activating zone ${k + 1} of max_active_zones ${maxActive}`);
      expectStatus(b.writeOnce(seq[maxActive]! * zs, one), Blk.S_ZONE_ACTIVE_RESOURCE, ['blk.device.13'], `write to a further empty zone with max_active_zones ${maxActive} active`);
      b.zoneResetAll();
    }
    // blk.device.14 / .15: max_append_sectors is what an append may carry, within seg_max * size_max
    const maxAppend = t.readConfig(o + BlkZonedConfig.MAX_APPEND_SECTORS, 4);
    if (hasFeature(b.features, BlkF.SEG_MAX) && hasFeature(b.features, BlkF.SIZE_MAX)) {
      const lim = Math.floor((t.readConfig(BlkConfig.SEG_MAX, 4) * t.readConfig(BlkConfig.SIZE_MAX, 4)) / 512);
      expectThat(maxAppend <= lim, ['blk.device.15'], 'max_append_sectors above seg_max * size_max', `<= ${lim}`, String(maxAppend));
    }
    const wg = t.readConfig(o + BlkZonedConfig.WRITE_GRANULARITY, 4);
    expectThat(wg >= 512 && wg % 512 === 0, ['blk.device.17'], 'write_granularity is not a whole number of sectors', 'n * 512', String(wg));
    if (maxAppend > 0 && seq.length > 0) {
      const z0 = seq[0]! * zs;
      const a = b.zoneAppend(z0, new Uint8Array(maxAppend * 512).fill(2));
      expectStatus(a.status, Blk.S_OK, ['blk.device.14'], `ZONE_APPEND of max_append_sectors (${maxAppend})`);
      b.zoneReset(z0);
      expectStatus(rawReq(b, Blk.T_ZONE_APPEND, z0, (maxAppend + 1) * 512, false).status, Blk.S_ZONE_INVALID_CMD, ['blk.device.14'], 'ZONE_APPEND one sector above max_append_sectors');
      // blk.device.17: a write of write_granularity bytes at the write pointer is accepted
      expectStatus(b.writeOnce(z0, new Uint8Array(wg).fill(3)), Blk.S_OK, ['blk.device.17'], `OUT of write_granularity (${wg}) bytes at the write pointer`);
    }
  },
});

defineCheck({
  id: 'blk.device.zoned-negotiation',
  title: 'a host-managed device refuses FEATURES_OK without ZONED; a host-aware one goes on and reports the zoned fields as 0',
  statements: ['blk.device.8', 'blk.device.7'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['blk'], transports: ['mmio'] },
  run(ctx) {
    if (ctx.target.name !== 'sim') throw new CheckSkip('needs a zoned device (the sim target makes one)');
    for (const model of ['hm', 'ha'] as const) {
      const dut = ctx.newDevice(zonedParams(model));
      const r = raw(dut);
      r.probe();
      const n = r.negotiate((of) => of & ~bit(BlkF.ZONED) & (bit(F.VERSION_1) | 0xffffffn));
      if (model === 'hm') {
        expectThat(!n.featuresOk, ['blk.device.8'], 'host-managed device accepted FEATURES_OK from a driver that declined ZONED', 'FEATURES_OK clear', statusNames(r.status()));
      } else {
        expectThat(n.featuresOk, ['blk.device.7'], 'host-aware device refused a driver that declined ZONED', 'FEATURES_OK set', statusNames(r.status()));
        for (let k = 0; k < BlkZonedConfig.SIZE; k++) expectEqual(r.config8(BlkConfig.ZONED + k), 0, ['blk.device.7'], `zoned config byte ${k} after ZONED was declined`);
      }
    }
  },
});

defineCheck({
  id: 'blk.device.zone-management',
  title: 'zone open / close / finish / reset: conventional zones, impossible transitions, resource limits, read-only and offline zones',
  statements: ['blk.device.37', 'blk.device.39', 'blk.device.40', 'blk.device.41', 'blk.device.42', 'blk.device.43', 'blk.device.53', 'blk.device.54'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['blk'], transports: MODERN },
  run(ctx) {
    const { b } = zonedSession(ctx);
    const z = (i: number) => i * ZONE;
    for (const [type, nm] of [[Blk.T_ZONE_OPEN, 'OPEN'], [Blk.T_ZONE_CLOSE, 'CLOSE'], [Blk.T_ZONE_FINISH, 'FINISH'], [Blk.T_ZONE_RESET, 'RESET']] as const) {
      expectStatus(b.zoneManage(type, z(0)), Blk.S_ZONE_INVALID_CMD, ['blk.device.37'], `ZONE_${nm} of a conventional zone`);
    }
    // blk.device.39: a full zone cannot be explicitly opened
    expectStatus(b.zoneFinish(z(1)), Blk.S_OK, ['blk.device.42'], 'ZONE_FINISH of an empty zone');
    expectStatus(b.zoneOpen(z(1)), Blk.S_ZONE_INVALID_CMD, ['blk.device.39'], 'ZONE_OPEN of a full zone');
    expectEqual(zone(b, 1).state, ZS.FULL, ['blk.device.39'], 'state of a full zone after a refused open');
    // blk.device.41: an empty zone cannot be closed
    expectStatus(b.zoneClose(z(2)), Blk.S_ZONE_INVALID_CMD, ['blk.device.41'], 'ZONE_CLOSE of an empty zone');
    // blk.device.40: out of open resources, the explicit open fails and the zone stays as it was
    expectStatus(b.zoneOpen(z(2)), Blk.S_OK, ['blk.device.40'], 'first explicit open');
    expectStatus(b.zoneOpen(z(3)), Blk.S_OK, ['blk.device.40'], 'second explicit open (max_open_zones 2)');
    expectStatus(b.zoneOpen(z(4)), [Blk.S_ZONE_OPEN_RESOURCE, Blk.S_ZONE_ACTIVE_RESOURCE], ['blk.device.40'], 'explicit open beyond max_open_zones');
    expectEqual(zone(b, 4).state, ZS.EMPTY, ['blk.device.40'], 'state of the zone whose open failed for lack of resources');
    // read-only and offline zones: no transition, state kept (blk.device.42, .43), writes refused (blk.device.53), everything refused offline (blk.device.54)
    const ro = zone(b, RDONLY_ZONE).state;
    expectStatus(b.zoneFinish(z(RDONLY_ZONE)), Blk.S_ZONE_INVALID_CMD, ['blk.device.42'], 'ZONE_FINISH of a read-only zone');
    expectStatus(b.zoneReset(z(RDONLY_ZONE)), Blk.S_ZONE_INVALID_CMD, ['blk.device.43'], 'ZONE_RESET of a read-only zone');
    expectEqual(zone(b, RDONLY_ZONE).state, ro, ['blk.device.42', 'blk.device.43'], 'state of a read-only zone after refused finish/reset');
    expectStatus(rawReq(b, Blk.T_OUT, z(RDONLY_ZONE), 512, false).status, Blk.S_ZONE_INVALID_CMD, ['blk.device.53'], 'OUT to a read-only zone');
    expectStatus(rawReq(b, Blk.T_ZONE_APPEND, z(RDONLY_ZONE), 512, false).status, Blk.S_ZONE_INVALID_CMD, ['blk.device.53'], 'ZONE_APPEND to a read-only zone');
    expectStatus(rawReq(b, Blk.T_IN, z(RDONLY_ZONE), 512, true).status, Blk.S_OK, ['blk.device.53'], 'IN from a read-only zone (its data may still be read)');
    expectStatus(b.zoneReset(z(OFFLINE_ZONE)), Blk.S_ZONE_INVALID_CMD, ['blk.device.43', 'blk.device.54'], 'ZONE_RESET of an offline zone');
    expectStatus(rawReq(b, Blk.T_IN, z(OFFLINE_ZONE), 512, true).status, Blk.S_ZONE_INVALID_CMD, ['blk.device.54'], 'IN from an offline zone');
    expectStatus(rawReq(b, Blk.T_OUT, z(OFFLINE_ZONE), 512, false).status, Blk.S_ZONE_INVALID_CMD, ['blk.device.54'], 'OUT to an offline zone');
    expectEqual(zone(b, OFFLINE_ZONE).state, ZS.OFFLINE, ['blk.device.54'], 'state of the offline zone');
  },
});

defineCheck({
  id: 'blk.device.zone-writes',
  title: 'zoned writes and appends: write pointer, zone boundaries, remaining capacity, append rules and append_sector, resources for implicit opens',
  statements: ['blk.device.38', 'blk.device.44', 'blk.device.45', 'blk.device.46', 'blk.device.47', 'blk.device.49', 'blk.device.50', 'blk.device.51'],
  side: 'device',
  kind: 'property',
  applies: { devices: ['blk'], transports: MODERN },
  run(ctx) {
    const { b } = zonedSession(ctx);
    const zs = (i: number) => i * ZONE;
    checkProperty(ctx, ['blk.device.51'], [fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 255 })], (zi, n, off, fill) => {
      b.zoneResetAll();
      // blk.device.51: OUT off the write pointer
      expectStatus(rawReq(b, Blk.T_OUT, zs(zi) + off, n * 512, false).status, Blk.S_ZONE_UNALIGNED_WP, ['blk.device.51'], `OUT at ${off} sectors past the write pointer`);
      // blk.device.47: appends land at the write pointer, and append_sector says where
      const a1 = rawReq(b, Blk.T_ZONE_APPEND, zs(zi), n * 512, false, fill);
      expectStatus(a1.status, Blk.S_OK, ['blk.device.47'], 'ZONE_APPEND to an empty zone');
      expectEqual(a1.appendSector, zs(zi), ['blk.device.47'], 'append_sector of the first append');
      const a2 = rawReq(b, Blk.T_ZONE_APPEND, zs(zi), 512, false, fill ^ 0xff);
      expectEqual(a2.appendSector, zs(zi) + n, ['blk.device.47'], 'append_sector of the second append');
      const back = new Uint8Array(512);
      b.read(zs(zi) + n, back);
      expectThat(back.every((x) => x === (fill ^ 0xff)), ['blk.device.47'], 'data of the second append is not at append_sector');
      expectEqual(zone(b, zi).wp, zs(zi) + n + 1, ['blk.device.47'], 'write pointer after two appends');
      // blk.device.45: an append must name the zone start
      expectStatus(rawReq(b, Blk.T_ZONE_APPEND, zs(zi) + 1, 512, false).status, Blk.S_ZONE_INVALID_CMD, ['blk.device.45'], 'ZONE_APPEND whose sector is not a zone start');
      // blk.device.38: appends only to SWR zones
      expectStatus(rawReq(b, Blk.T_ZONE_APPEND, zs(0), 512, false).status, Blk.S_ZONE_INVALID_CMD, ['blk.device.38'], 'ZONE_APPEND to a conventional zone');
      // blk.device.49: above max_append_sectors (16)
      expectStatus(rawReq(b, Blk.T_ZONE_APPEND, zs(zi), 17 * 512, false).status, Blk.S_ZONE_INVALID_CMD, ['blk.device.49'], 'ZONE_APPEND above max_append_sectors');
      // blk.device.46: a write at the write pointer that overruns the zone
      const wp = zone(b, zi).wp;
      expectStatus(rawReq(b, Blk.T_OUT, wp, (zs(zi) + ZONE - wp + 1) * 512, false).status, Blk.S_ZONE_INVALID_CMD, ['blk.device.46', 'blk.device.50'], 'OUT at the write pointer running past the zone end');
      // fill to one sector short of the end, then an append of 2 sectors overruns
      const left = zs(zi) + ZONE - wp;
      if (left > 1) expectStatus(rawReq(b, Blk.T_OUT, wp, (left - 1) * 512, false).status, Blk.S_OK, ['blk.device.51'], 'OUT at the write pointer');
      expectStatus(rawReq(b, Blk.T_ZONE_APPEND, zs(zi), 2 * 512, false).status, Blk.S_ZONE_INVALID_CMD, ['blk.device.46'], 'ZONE_APPEND larger than the capacity left');
      // blk.device.50: an IN across two sequential zones
      if (zi < 5) expectStatus(rawReq(b, Blk.T_IN, zs(zi + 1) - 1, 2 * 512, true).status, Blk.S_ZONE_INVALID_CMD, ['blk.device.50'], 'IN spanning two sequential zones');
      // blk.device.44: with max_active_zones (3) zones active, an implicit open of one more fails
      b.zoneResetAll();
      for (let k = 1; k <= 3; k++) expectStatus(rawReq(b, Blk.T_OUT, zs(k), 512, false).status, Blk.S_OK, ['blk.device.44'], `write activating zone ${k}`);
      expectStatus(rawReq(b, Blk.T_ZONE_APPEND, zs(4), 512, false).status, [Blk.S_ZONE_ACTIVE_RESOURCE, Blk.S_ZONE_OPEN_RESOURCE], ['blk.device.44'], 'ZONE_APPEND implicitly opening a zone beyond max_active_zones');
      expectEqual(zone(b, 4).state, ZS.EMPTY, ['blk.device.44'], 'state of the zone that could not be opened');
    });
  },
});

defineCheck({
  id: 'blk.device.zone-append-unsupported',
  title: 'with max_append_sectors 0 a ZONE_APPEND completes with UNSUPP',
  statements: ['blk.device.48'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['blk'], transports: MODERN },
  run(ctx) {
    const { b } = zonedSession(ctx, 'hm', { maxAppendSectors: 0 });
    expectEqual(b.info.zoned!.maxAppendSectors, 0, ['blk.device.48'], 'max_append_sectors of the device made without appends');
    expectStatus(rawReq(b, Blk.T_ZONE_APPEND, ZONE, 512, false).status, Blk.S_UNSUPP, ['blk.device.48'], 'ZONE_APPEND when max_append_sectors is 0');
  },
});

defineCheck({
  id: 'blk.device.zone-unwritten',
  title: 'sectors past the write pointer, and those a finish skipped, read as the unwritten-data pattern',
  statements: ['blk.device.55', 'blk.device.56'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['blk'], transports: MODERN },
  run(ctx) {
    const { b } = zonedSession(ctx);
    // the device's pattern: what a never-written zone reads as (or the read fails: blk.device.56 allows it)
    const pattern = new Uint8Array(8 * 512);
    const pr = rawReq(b, Blk.T_IN, 5 * ZONE, pattern.length, true);
    if (pr.status !== Blk.S_OK) {
      expectStatus(pr.status, [Blk.S_IOERR, Blk.S_ZONE_INVALID_CMD], ['blk.device.56'], 'read of unwritten data');
      return;
    }
    pattern.set(b.platform.mem.readBytes(pr.buf, pattern.length));
    const z = 2 * ZONE;
    b.writeOnce(z, new Uint8Array(8 * 512).fill(0xa5));
    expectStatus(b.zoneReset(z), Blk.S_OK, ['blk.device.55'], 'ZONE_RESET');
    const after = new Uint8Array(8 * 512);
    b.read(z, after);
    expectThat(after.every((x, i) => x === pattern[i]), ['blk.device.55', 'blk.device.56'], 'old data readable past the write pointer after a reset', 'the unwritten-data pattern', `byte 0 = 0x${after[0]!.toString(16)}`);
    b.writeOnce(z, new Uint8Array(2 * 512).fill(0x3c));
    expectStatus(b.zoneFinish(z), Blk.S_OK, ['blk.device.55'], 'ZONE_FINISH of a partly written zone');
    const fin = new Uint8Array(8 * 512);
    b.read(z, fin);
    expectThat(fin.subarray(0, 1024).every((x) => x === 0x3c), ['blk.device.55'], 'written data lost by ZONE_FINISH');
    expectThat(fin.subarray(1024).every((x, i) => x === pattern[1024 + i]), ['blk.device.55', 'blk.device.56'], 'sectors skipped by ZONE_FINISH do not read as unwritten data');
  },
});

defineCheck({
  id: 'blk.device.zoned-secure-erase',
  title: 'with ZONED and SECURE_ERASE: the erase alignment is a multiple of the zone size, partial-zone erases are refused, an erase resets the zones it covers',
  statements: ['blk.device.57', 'blk.device.58', 'blk.device.59'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['blk'], transports: MODERN },
  run(ctx) {
    const { dut, b } = zonedSession(ctx);
    if (!hasFeature(b.features, BlkF.SECURE_ERASE)) throw new CheckSkip('SECURE_ERASE not negotiated');
    const t = transportOf(dut);
    const align = t.readConfig(BlkConfig.SECURE_ERASE_SECTOR_ALIGNMENT, 4);
    expectThat(align > 0 && align % ZONE === 0, ['blk.device.57'], 'secure_erase_sector_alignment is not a multiple of zone_sectors', `n * ${ZONE}`, String(align));
    const seg = (sector: number, num: number) => {
      const d = new Uint8Array(BlkDwz.SIZE);
      const v = new DataView(d.buffer);
      v.setUint32(BlkDwz.SECTOR, sector, true);
      v.setUint32(BlkDwz.NUM_SECTORS, num, true);
      return d;
    };
    const send = (d: Uint8Array) => {
      const buf = b.platform.dma.alloc(16, 16);
      b.platform.mem.writeBytes(buf, d);
      return b.wait(b.submit({ type: Blk.T_SECURE_ERASE, data: [{ addr: buf, len: 16 }], unchecked: true })).status;
    };
    b.writeOnce(3 * ZONE, new Uint8Array(4 * 512).fill(9));
    expectThat(send(seg(3 * ZONE, ZONE / 2)) !== Blk.S_OK, ['blk.device.58'], 'a secure erase of half a zone completed with OK');
    expectEqual(zone(b, 3).wp, 3 * ZONE + 4, ['blk.device.58'], 'write pointer after a refused partial-zone erase');
    expectStatus(send(seg(3 * ZONE, ZONE)), Blk.S_OK, ['blk.device.59'], 'secure erase of a whole zone');
    const z = zone(b, 3);
    expectEqual(z.state, ZS.EMPTY, ['blk.device.59'], 'zone state after a secure erase (as a ZONE_RESET)');
    expectEqual(z.wp, 3 * ZONE, ['blk.device.59'], 'write pointer after a secure erase (as a ZONE_RESET)');
  },
});

defineCheck({
  id: 'blk.device.zoned-legacy',
  title: 'over a legacy interface (no FEATURES_OK) a zoned device does not offer VIRTIO_BLK_F_ZONED',
  statements: ['blk.device.6'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['blk'], transports: ['mmio-legacy', 'pci-legacy'] },
  run(ctx) {
    if (ctx.target.name !== 'sim') throw new CheckSkip('needs a zoned device (the sim target makes one)');
    for (const model of ['hm', 'ha'] as const) {
      const dut = ctx.newDevice(zonedParams(model));
      const t = transportOf(dut);
      t.reset();
      t.setStatus(Status.ACKNOWLEDGE);
      t.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
      const offered = t.deviceFeatures();
      expectThat(!hasFeature(offered, BlkF.ZONED), ['blk.device.6'], `a ${model} zoned device offers ZONED over a legacy interface`, 'bit 17 clear', `0x${offered.toString(16)}`);
      t.reset();
    }
  },
});

// ---------------------------------------------------------------------------- driver side

/** Judge zoned requests on the ring against the device's zoned config (driver rules). */
function zonedJudge(dut: DeviceUnderTest): Parameters<typeof monitor>[1] {
  const sim = simInternals(dut);
  const mem = dut.machine!.mem;
  return {
    onChain(c, report) {
      if (!hasFeature(sim.core.features, BlkF.ZONED)) return;
      const rlen = c.readable.reduce((n, s) => n + s.len, 0);
      const wlen = c.writable.reduce((n, s) => n + s.len, 0);
      if (rlen < BlkReqHeader.SIZE) return;
      const h = mem.readBytes(c.readable[0]!.addr, Math.min(16, c.readable[0]!.len));
      if (h.length < 16) return;
      const dv = new DataView(h.buffer, h.byteOffset, 16);
      const type = dv.getUint32(0, true);
      const sector = dv.getUint32(8, true) + dv.getUint32(12, true) * 0x1_0000_0000;
      const zsz = c.config32(BlkConfig.ZONED + BlkZonedConfig.ZONE_SECTORS);
      const wg = c.config32(BlkConfig.ZONED + BlkZonedConfig.WRITE_GRANULARITY);
      const maxAppend = c.config32(BlkConfig.ZONED + BlkZonedConfig.MAX_APPEND_SECTORS);
      const cap = c.config32(BlkConfig.CAPACITY) + c.config32(BlkConfig.CAPACITY + 4) * 0x1_0000_0000;
      const out = rlen - BlkReqHeader.SIZE;
      if (!zsz) return;
      switch (type) {
        case Blk.T_ZONE_REPORT:
          if (sector >= cap) report('blk.driver.28', 'ZONE_REPORT sector outside every zone', `< ${cap}`, String(sector));
          if (wlen - 1 < BlkZoneReport.HEADER_SIZE) report('blk.driver.28', 'ZONE_REPORT buffer smaller than the header', '>= 64', String(wlen - 1));
          break;
        case Blk.T_ZONE_OPEN:
        case Blk.T_ZONE_CLOSE:
        case Blk.T_ZONE_FINISH:
        case Blk.T_ZONE_RESET:
          if (sector % zsz !== 0 || sector >= cap) report('blk.driver.30', `zone management (type ${type}) sector is not a zone start`, `a multiple of ${zsz}`, String(sector));
          break;
        case Blk.T_ZONE_RESET_ALL:
          if (sector !== 0) report('blk.driver.31', 'ZONE_RESET_ALL with a non-zero sector', '0', String(sector));
          break;
        case Blk.T_ZONE_APPEND:
          if (sector % zsz !== 0) report('blk.driver.32', 'ZONE_APPEND sector is not a zone start', `a multiple of ${zsz}`, String(sector));
          if (out % wg !== 0 || out % 512 !== 0) report('blk.driver.33', 'ZONE_APPEND size not a multiple of write_granularity', `n * ${wg}`, String(out));
          if (out / 512 > maxAppend) report('blk.driver.34', 'ZONE_APPEND above max_append_sectors', `<= ${maxAppend}`, String(out / 512));
          if (wlen !== 9) report('blk.driver.35', 'ZONE_APPEND without room for append_sector and status', '9 writable bytes', String(wlen));
          break;
        case Blk.T_OUT: {
          const zi = Math.floor(sector / zsz);
          if (zi === 0 || out === 0) break; // zone 0 is conventional on the checking device
          if ((sector * 512) % wg !== 0 || out % wg !== 0) report('blk.driver.36', 'OUT to a sequential zone not aligned to write_granularity', `n * ${wg}`, `sector ${sector}, ${out} bytes`);
          if (sector + out / 512 > (zi + 1) * zsz) report('blk.driver.36', 'OUT runs past the end of its sequential zone', `<= ${(zi + 1) * zsz}`, String(sector + out / 512));
          break;
        }
      }
    },
  };
}

defineCheck({
  id: 'blk.driver.zone-requests',
  title: 'every zone request the driver sends names the right sector and size; requests the rules forbid are refused before the ring',
  statements: ['blk.driver.27', 'blk.driver.28', 'blk.driver.30', 'blk.driver.31', 'blk.driver.32', 'blk.driver.33', 'blk.driver.34', 'blk.driver.36'],
  side: 'driver',
  kind: 'property',
  applies: { devices: ['blk'], transports: ['mmio'] },
  run(ctx) {
    const op = fc.oneof(
      fc.record({ k: fc.constantFrom('open' as const, 'close' as const, 'finish' as const, 'reset' as const), sector: fc.integer({ min: 0, max: NZ * ZONE + 4 }) }),
      fc.record({ k: fc.constant('resetall' as const) }),
      fc.record({ k: fc.constant('report' as const), sector: fc.integer({ min: 0, max: NZ * ZONE + 4 }), n: fc.integer({ min: 0, max: 9 }) }),
      fc.record({ k: fc.constant('append' as const), sector: fc.integer({ min: 0, max: NZ * ZONE }), bytes: fc.integer({ min: 0, max: 20 * 512 }) }),
      fc.record({ k: fc.constant('write' as const), sector: fc.integer({ min: 0, max: NZ * ZONE - 1 }), bytes: fc.integer({ min: 1, max: 8 }).map((x) => x * 512) }),
      fc.record({ k: fc.constant('frac' as const), sector: fc.double({ min: 1, max: 100, noNaN: true }) }),
    );
    let judged = 0;
    checkProperty(ctx, ['blk.driver.30'], [fc.array(op, { minLength: 1, maxLength: 10 }), fc.constantFrom(512, 1024)], (ops, wg) => {
      const dut = ctx.newDevice(zonedParams('hm', { writeGranularity: wg }));
      const mon = monitor(dut, zonedJudge(dut));
      const b = VirtioBlkDriver.probe(dut.platform, transportOf(dut), { ringFeatures: bit(F.INDIRECT_DESC) | bit(F.EVENT_IDX) });
      for (const o of ops) {
        try {
          if (o.k === 'open') b.zoneOpen(o.sector);
          else if (o.k === 'close') b.zoneClose(o.sector);
          else if (o.k === 'finish') b.zoneFinish(o.sector);
          else if (o.k === 'reset') b.zoneReset(o.sector);
          else if (o.k === 'resetall') b.zoneResetAll();
          else if (o.k === 'report') b.reportZones(o.sector, o.n);
          else if (o.k === 'append') b.zoneAppend(o.sector, new Uint8Array(o.bytes));
          else if (o.k === 'write') b.writeOnce(o.sector, new Uint8Array(o.bytes));
          else b.zoneOpen(o.sector); // blk.driver.27: a sector that is not a whole number
        } catch (e) {
          // refusing a bad request before it reaches the ring is what the driver must do
          if (!(e instanceof UsageError) && !(e as { code?: string }).code?.startsWith('blk.status')) throw e;
        }
      }
      b.shutdown();
      mon.detach();
      mon.assertClean({ side: 'driver' });
      judged += mon.stats.chains;
    });
    expectThat(judged > 0, ['blk.driver.30'], 'no request reached the ring: nothing was judged');
  },
});

defineCheck({
  id: 'blk.driver.zoned',
  title: 'the driver accepts ZONED only because it drives every zone model, never DISCARD from a host-managed device, and without zoned support fails a host-managed device before FEATURES_OK',
  statements: ['blk.driver.5', 'blk.driver.6', 'blk.driver.8'],
  side: 'driver',
  kind: 'example',
  applies: { devices: ['blk'], transports: ['mmio'] },
  run(ctx) {
    if (ctx.target.name !== 'sim') throw new CheckSkip('needs zoned checking devices (sim target)');
    const ring = bit(F.INDIRECT_DESC) | bit(F.EVENT_IDX);
    for (const model of ['hm', 'ha', 'none'] as const) {
      const dut = ctx.newDevice(zonedParams(model));
      const mon = monitor(dut);
      const b = VirtioBlkDriver.probe(dut.platform, transportOf(dut), { ringFeatures: ring });
      expectThat(hasFeature(b.features, BlkF.ZONED), ['blk.driver.5'], `driver declined ZONED from a ${model} device although it drives every model`);
      if (model === 'hm') expectThat(!hasFeature(b.features, BlkF.DISCARD), ['blk.driver.6'], 'driver accepted DISCARD from a host-managed zoned device');
      // blk.driver.5: accepting ZONED is only allowed for a driver that really operates the model
      if (model !== 'none') {
        expectThat(b.info.zoned !== undefined, ['blk.driver.5'], `driver accepted ZONED but does not treat the ${model} device as zoned`);
        if (model === 'hm') expectEqual(b.zoneAppend(ZONE, new Uint8Array(512).fill(1)).sector, ZONE, ['blk.driver.5'], 'append through the driver');
        else expectEqual(b.writeOnce(ZONE + 8, new Uint8Array(512).fill(1)), Blk.S_OK, ['blk.driver.5'], 'random write to a host-aware zone through the driver');
        expectEqual(b.reportZones(0, NZ).length, NZ, ['blk.driver.5'], 'zones reported through the driver');
      }
      b.write(0, new Uint8Array(1024).fill(2));
      b.shutdown();
      mon.detach();
      mon.assertClean({ side: 'driver' });
    }
    // blk.driver.8: zoned support off, host-managed device: FAILED, FEATURES_OK never set
    const dut = ctx.newDevice(zonedParams('hm'));
    const sim = simInternals(dut);
    const base = (dut.location as { base: number }).base;
    const writes: number[] = [];
    sim.machine.bus.addListener((a) => {
      if (a.kind === 'write' && a.addr === base + Mmio.STATUS) writes.push(a.value & 0xff);
    });
    let threw = false;
    try {
      VirtioBlkDriver.probe(dut.platform, transportOf(dut), { ringFeatures: ring, zoned: false });
    } catch {
      threw = true;
    }
    expectThat(threw, ['blk.driver.8'], 'driver without zoned support went on with a host-managed device');
    expectThat(!writes.some((w) => w & Status.FEATURES_OK), ['blk.driver.8'], 'driver set FEATURES_OK on a host-managed device it cannot drive', 'FEATURES_OK never written', writes.map(statusNames).join(' -> '));
    expectThat((sim.core.status & Status.FAILED) !== 0, ['blk.driver.8'], 'driver did not set FAILED', 'FAILED', statusNames(sim.core.status));
  },
});
