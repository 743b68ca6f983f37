/**
 * Zoned virtio-blk (VIRTIO_BLK_F_ZONED), driver and device together: unit cases for the
 * negotiation rules, and a property: random zone operations (writes at and off the write
 * pointer, appends, open / close / finish / reset / reset-all, reads) keep the disk contents,
 * the zone states and the write pointers equal to a small independent model.
 */
import { describe, expect, test } from 'vitest';
import { test as fcTest, fc } from '@fast-check/vitest';
import { simBlk } from '../../conformance/harness/blk.ts';
import { RamDisk } from '../../device-models/blk/backend.ts';
import { VirtioBlkDriver } from './driver.ts';
import { Blk, BlkF, Status, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { BlkZoneState as ZS, BlkZoneType as ZT } from '../../spec-refs/abi/blk-layout.ts';
import type { ZonedOptions } from '../../device-models/blk/zones.ts';

const ZONE = 64; // sectors
const NZ = 6;

function zonedSim(z: ZonedOptions, disk = NZ * ZONE * 512) {
  const sim = simBlk({ device: { backend: new RamDisk(disk), zoned: z } });
  return { sim, blk: VirtioBlkDriver.probe(sim.machine.platform, sim.transport) };
}

describe('zoned negotiation', () => {
  test('host-managed: ZONED accepted, DISCARD declined (blk.driver.5, .6); zone info read', () => {
    const { blk } = zonedSim({ model: 'hm', zoneSectors: ZONE });
    expect(hasFeature(blk.features, BlkF.ZONED)).toBe(true);
    expect(hasFeature(blk.features, BlkF.DISCARD)).toBe(false);
    expect(blk.info.zoned?.zoneSectors).toBe(ZONE);
    expect(blk.info.zoned?.nrZones).toBe(NZ);
    expect(blk.info.zoned?.types[0]).toBe(ZT.CONV);
    expect(blk.info.zoned?.types[1]).toBe(ZT.SWR);
  });
  test('host-aware keeps DISCARD (blk.driver.7)', () => {
    const { blk } = zonedSim({ model: 'ha', zoneSectors: ZONE });
    expect(hasFeature(blk.features, BlkF.DISCARD)).toBe(true);
    expect(blk.info.zoned?.model).toBe('ha');
  });
  test('zoned support off: HM fails before FEATURES_OK (blk.driver.8); HA runs as a plain disk with zoned fields 0 (blk.driver.9, blk.device.7)', () => {
    const sim = simBlk({ device: { backend: new RamDisk(NZ * ZONE * 512), zoned: { model: 'hm', zoneSectors: ZONE } } });
    expect(() => VirtioBlkDriver.probe(sim.machine.platform, sim.transport, { zoned: false })).toThrow();
    expect(sim.core.status & Status.FAILED).toBe(Status.FAILED);
    expect(sim.core.status & Status.FEATURES_OK).toBe(0);
    const ha = simBlk({ device: { backend: new RamDisk(NZ * ZONE * 512), zoned: { model: 'ha', zoneSectors: ZONE } } });
    const b = VirtioBlkDriver.probe(ha.machine.platform, ha.transport, { zoned: false });
    expect(b.info.zoned).toBeUndefined();
    for (let o = 72; o < 96; o++) expect(ha.device.readConfig(o, 1)).toBe(0);
    b.write(ZONE * 2 + 5, new Uint8Array(512).fill(7));
  });
  test('the device refuses FEATURES_OK to a driver that declines ZONED on an HM device (blk.device.8)', () => {
    const sim = simBlk({ device: { backend: new RamDisk(NZ * ZONE * 512), zoned: { model: 'hm', zoneSectors: ZONE } } });
    expect(sim.device.acceptFeatures(sim.device.offeredFeatures & ~(1n << BigInt(BlkF.ZONED)))).toBe(false);
  });
});

// ------------------------------------------------------------------ the model

interface MZone {
  state: number;
  wp: number;
  readonly start: number;
  readonly type: number;
}

class Model {
  readonly disk = new Uint8Array(NZ * ZONE * 512);
  readonly zones: MZone[] = [];
  constructor(readonly maxOpen: number, readonly maxActive: number, readonly maxAppend: number) {
    for (let i = 0; i < NZ; i++) this.zones.push({ start: i * ZONE, wp: i * ZONE, type: i === 0 ? ZT.CONV : ZT.SWR, state: i === 0 ? ZS.NOT_WP : ZS.EMPTY });
  }
  private count(states: number[]) {
    return this.zones.filter((z) => states.includes(z.state)).length;
  }
  private open(z: MZone): number {
    if (z.state === ZS.EMPTY && this.maxActive && this.count([ZS.IOPEN, ZS.EOPEN, ZS.CLOSED]) >= this.maxActive) return Blk.S_ZONE_ACTIVE_RESOURCE;
    if (this.maxOpen && this.count([ZS.IOPEN, ZS.EOPEN]) >= this.maxOpen) {
      const v = this.zones.find((x) => x.state === ZS.IOPEN);
      if (!v) return Blk.S_ZONE_OPEN_RESOURCE;
      v.state = v.wp === v.start ? ZS.EMPTY : ZS.CLOSED;
    }
    return Blk.S_OK;
  }
  private zero(from: number, to: number) {
    this.disk.fill(0, from * 512, to * 512);
  }
  write(sector: number, n: number, fill: number, append: boolean): { status: number; at?: number } {
    const z = this.zones[Math.floor(sector / ZONE)]!;
    if (append) {
      if (n > this.maxAppend) return { status: Blk.S_ZONE_INVALID_CMD };
      if (sector !== z.start || z.type !== ZT.SWR) return { status: Blk.S_ZONE_INVALID_CMD };
    }
    if (z.type === ZT.CONV) {
      if (sector + n > z.start + ZONE) return { status: Blk.S_ZONE_INVALID_CMD };
      this.disk.fill(fill, sector * 512, (sector + n) * 512);
      return { status: Blk.S_OK, at: sector };
    }
    if (!append && sector + n > z.start + ZONE) return { status: Blk.S_ZONE_INVALID_CMD };
    if (z.state === ZS.FULL) return { status: Blk.S_ZONE_INVALID_CMD };
    if (!append && sector !== z.wp) return { status: Blk.S_ZONE_UNALIGNED_WP };
    const from = append ? z.wp : sector;
    if (from + n > z.start + ZONE) return { status: Blk.S_ZONE_INVALID_CMD };
    if (z.state === ZS.EMPTY || z.state === ZS.CLOSED) {
      const st = this.open(z);
      if (st) return { status: st };
      z.state = ZS.IOPEN;
    }
    this.disk.fill(fill, from * 512, (from + n) * 512);
    z.wp = from + n;
    if (z.wp === z.start + ZONE) z.state = ZS.FULL;
    return { status: Blk.S_OK, at: from };
  }
  manage(type: number, zi: number): number {
    if (type === Blk.T_ZONE_RESET_ALL) {
      for (const z of this.zones) {
        if (z.type === ZT.CONV || z.state === ZS.EMPTY) continue;
        this.zero(z.start, z.start + ZONE);
        z.state = ZS.EMPTY;
        z.wp = z.start;
      }
      return Blk.S_OK;
    }
    const z = this.zones[zi]!;
    if (z.type === ZT.CONV) return Blk.S_ZONE_INVALID_CMD;
    switch (type) {
      case Blk.T_ZONE_OPEN:
        if (z.state === ZS.EOPEN) return Blk.S_OK;
        if (z.state === ZS.FULL) return Blk.S_ZONE_INVALID_CMD;
        if (z.state !== ZS.IOPEN) {
          const st = this.open(z);
          if (st) return st;
        }
        z.state = ZS.EOPEN;
        return Blk.S_OK;
      case Blk.T_ZONE_CLOSE:
        if (z.state === ZS.CLOSED) return Blk.S_OK;
        if (z.state !== ZS.IOPEN && z.state !== ZS.EOPEN) return Blk.S_ZONE_INVALID_CMD;
        z.state = z.wp === z.start ? ZS.EMPTY : ZS.CLOSED;
        return Blk.S_OK;
      case Blk.T_ZONE_FINISH:
        if (z.state !== ZS.FULL) {
          this.zero(z.wp, z.start + ZONE);
          z.state = ZS.FULL;
          z.wp = z.start + ZONE;
        }
        return Blk.S_OK;
      default: // reset
        this.zero(z.start, z.start + ZONE);
        z.state = ZS.EMPTY;
        z.wp = z.start;
        return Blk.S_OK;
    }
  }
}

type ZOp =
  | { kind: 'write'; zone: number; atWp: boolean; off: number; n: number; fill: number }
  | { kind: 'append'; zone: number; n: number; fill: number }
  | { kind: 'manage'; type: number; zone: number }
  | { kind: 'read'; zone: number; off: number; n: number };

const zopArb: fc.Arbitrary<ZOp> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('write' as const), zone: fc.nat(NZ - 1), atWp: fc.boolean(), off: fc.nat(ZONE - 1), n: fc.integer({ min: 1, max: 24 }), fill: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('append' as const), zone: fc.nat(NZ - 1), n: fc.integer({ min: 1, max: 24 }), fill: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('manage' as const), type: fc.constantFrom(Blk.T_ZONE_OPEN, Blk.T_ZONE_CLOSE, Blk.T_ZONE_FINISH, Blk.T_ZONE_RESET, Blk.T_ZONE_RESET_ALL), zone: fc.nat(NZ - 1) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('read' as const), zone: fc.nat(NZ - 1), off: fc.nat(ZONE - 1), n: fc.integer({ min: 1, max: 16 }) }) },
);

describe('zoned property', () => {
  fcTest.prop([fc.record({ maxOpen: fc.integer({ min: 0, max: 3 }), maxActive: fc.integer({ min: 0, max: 4 }), maxAppend: fc.constantFrom(8, 16, 64) }), fc.array(zopArb, { minLength: 1, maxLength: 50 })], { numRuns: 30 })(
    'random zone operations keep the disk, zone states and write pointers equal to the model',
    (cfg, ops) => {
      const maxActive = cfg.maxActive && cfg.maxActive < cfg.maxOpen ? cfg.maxOpen : cfg.maxActive;
      const { blk } = zonedSim({ model: 'hm', zoneSectors: ZONE, maxOpen: cfg.maxOpen, maxActive, maxAppendSectors: cfg.maxAppend, conventionalZones: 1 });
      const m = new Model(cfg.maxOpen, maxActive, cfg.maxAppend);
      for (const op of ops) {
        const mz = m.zones[op.zone]!;
        if (op.kind === 'write') {
          const sector = op.atWp && mz.type !== ZT.CONV ? mz.wp : mz.start + op.off;
          const n = Math.min(op.n, NZ * ZONE - sector);
          if (n <= 0) continue;
          const data = new Uint8Array(n * 512).fill(op.fill);
          // the driver refuses writes that cross a sequential zone's end (blk.driver.36)
          let st: number;
          try {
            st = blk.writeOnce(sector, data);
          } catch {
            st = -2;
          }
          const want = m.write(sector, n, op.fill, false);
          if (st === -2) {
            // refused by the driver: only allowed for writes the driver rules forbid (crossing a sequential zone end)
            expect(sector + n > mz.start + ZONE && mz.type !== ZT.CONV).toBe(true);
            // (the model refused it too, before changing anything)
            expect(want.status).toBe(Blk.S_ZONE_INVALID_CMD);
            continue;
          }
          expect(st, `write ${sector}+${n}`).toBe(want.status);
        } else if (op.kind === 'append') {
          if (mz.type === ZT.CONV) continue;
          const n = Math.min(op.n, cfg.maxAppend); // the driver never sends more (blk.driver.34)
          const r = blk.zoneAppend(mz.start, new Uint8Array(n * 512).fill(op.fill));
          const want = m.write(mz.start, n, op.fill, true);
          expect(r.status, `append zone ${op.zone} +${op.n}`).toBe(want.status);
          expect(r.sector).toBe(want.at);
        } else if (op.kind === 'manage') {
          const st = blk.zoneManage(op.type, op.type === Blk.T_ZONE_RESET_ALL ? 0 : mz.start);
          expect(st, `zone op ${op.type} on zone ${op.zone}`).toBe(m.manage(op.type, op.zone));
        } else {
          const sector = mz.start + op.off;
          const n = Math.min(op.n, mz.start + ZONE - sector);
          const buf = new Uint8Array(n * 512);
          blk.read(sector, buf);
          const want = m.disk.subarray(sector * 512, (sector + n) * 512);
          expect(buf.findIndex((b, i) => b !== want[i])).toBe(-1);
        }
      }
      const rep = blk.reportZones(0, NZ);
      for (let i = 0; i < NZ; i++) {
        const mz = m.zones[i]!;
        expect(rep[i]!.state, `state of zone ${i}`).toBe(mz.state);
        if (mz.type !== ZT.CONV && mz.state !== ZS.FULL) expect(rep[i]!.wp, `wp of zone ${i}`).toBe(mz.wp);
      }
      const all = new Uint8Array(NZ * ZONE * 512);
      blk.read(0, all);
      expect(all.findIndex((b, i) => b !== m.disk[i])).toBe(-1);
    },
  );
});
