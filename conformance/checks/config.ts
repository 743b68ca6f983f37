/**
 * Device configuration space (content.tex "Device Configuration Space") and a few driver rules
 * about trusting what the device reports.
 */
import fc from 'fast-check';
import { BlkConfig } from '../../spec-refs/abi/blk-layout.ts';
import { Blk, BlkF, F, Mmio, Status, bit, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { checkProperty, defineCheck, expectEqual, expectThat } from '../check.ts';
import { newDeviceWith, raw, simInternals, startRef } from './support.ts';

/** blk config fields and the feature each depends on (undefined: always present). */
const BLK_FIELDS: readonly { name: string; off: number; size: 1 | 2 | 4; feature?: number }[] = [
  { name: 'capacity.lo', off: BlkConfig.CAPACITY, size: 4 },
  { name: 'capacity.hi', off: BlkConfig.CAPACITY + 4, size: 4 },
  { name: 'size_max', off: BlkConfig.SIZE_MAX, size: 4, feature: BlkF.SIZE_MAX },
  { name: 'seg_max', off: BlkConfig.SEG_MAX, size: 4, feature: BlkF.SEG_MAX },
  { name: 'geometry.cylinders', off: BlkConfig.GEOMETRY_CYLINDERS, size: 2, feature: BlkF.GEOMETRY },
  { name: 'blk_size', off: BlkConfig.BLK_SIZE, size: 4, feature: BlkF.BLK_SIZE },
  { name: 'topology.physical_block_exp', off: BlkConfig.TOPOLOGY_PHYSICAL_BLOCK_EXP, size: 1, feature: BlkF.TOPOLOGY },
  { name: 'topology.opt_io_size', off: BlkConfig.TOPOLOGY_OPT_IO_SIZE, size: 4, feature: BlkF.TOPOLOGY },
  { name: 'num_queues', off: BlkConfig.NUM_QUEUES, size: 2, feature: BlkF.MQ },
  { name: 'max_discard_sectors', off: BlkConfig.MAX_DISCARD_SECTORS, size: 4, feature: BlkF.DISCARD },
  { name: 'max_discard_seg', off: BlkConfig.MAX_DISCARD_SEG, size: 4, feature: BlkF.DISCARD },
  { name: 'max_write_zeroes_sectors', off: BlkConfig.MAX_WRITE_ZEROES_SECTORS, size: 4, feature: BlkF.WRITE_ZEROES },
  { name: 'max_write_zeroes_seg', off: BlkConfig.MAX_WRITE_ZEROES_SEG, size: 4, feature: BlkF.WRITE_ZEROES },
  { name: 'max_secure_erase_sectors', off: BlkConfig.MAX_SECURE_ERASE_SECTORS, size: 4, feature: BlkF.SECURE_ERASE },
];

function readField(r: ReturnType<typeof raw>, f: (typeof BLK_FIELDS)[number]): number {
  return r.p.mmioRead(r.base + Mmio.CONFIG + f.off, f.size) >>> 0;
}

defineCheck({
  id: 'config_space.device.readable-early',
  title: 'every config field, feature-dependent ones included, reads the same before FEATURES_OK as after DRIVER_OK',
  statements: ['config_space.device.1'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['blk'], transports: ['mmio'] },
  run(ctx) {
    const dut = ctx.newDevice();
    const r = raw(dut);
    r.probe();
    r.reset();
    r.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
    const offered = r.deviceFeatures();
    const fields = BLK_FIELDS.filter((f) => f.feature === undefined || hasFeature(offered, f.feature));
    const early = fields.map((f) => readField(r, f));
    r.writeDriverFeatures(offered & (bit(F.VERSION_1) | 0xffffffn));
    r.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
    r.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
    fields.forEach((f, i) => expectEqual(early[i], readField(r, f), ['config_space.device.1'], `config field ${f.name} before FEATURES_OK`));
    expectThat(early[0]! + early[1]! > 0, ['config_space.device.1'], 'capacity read as 0 before FEATURES_OK');
  },
});

defineCheck({
  id: 'config_space.driver.torn-reads',
  title: 'the driver reads a 64-bit field changing under it consistently (generation loop), never a torn value',
  statements: ['config_space.driver.1', 'config_space.driver.2'],
  side: 'driver',
  kind: 'property',
  applies: { devices: ['blk'], transports: ['mmio'] },
  run(ctx) {
    checkProperty(ctx, ['config_space.driver.1'], [fc.integer({ min: 1, max: 3 }), fc.constantFrom(0x1000, 0x1_0000_0000 + 0x1000, 0xffff_f000)], (changes, newCap) => {
      // a device whose capacity (a 64-bit field) changes right after the driver reads its low half
      const oldCap = 0x2000;
      let cap = oldCap;
      let left = changes;
      let core: { configChanged(): void } | undefined;
      const dut = newDeviceWith(ctx, (m) => ({
        readConfig: (off: number, size: 1 | 2 | 4) => {
          if (off === BlkConfig.CAPACITY || off === BlkConfig.CAPACITY + 4) {
            const v = off === BlkConfig.CAPACITY ? cap % 0x1_0000_0000 : Math.floor(cap / 0x1_0000_0000);
            if (off === BlkConfig.CAPACITY && left > 0) {
              left--;
              cap = cap === oldCap ? newCap : oldCap;
              core?.configChanged();
            }
            return v;
          }
          return m.readConfig(off, size);
        },
      }));
      core = simInternals(dut).core;
      const s = startRef(ctx, dut);
      const seen = s.blk!.info.capacity;
      expectThat(seen === oldCap || seen === newCap, ['config_space.driver.1'], 'driver read a torn capacity', `${oldCap} or ${newCap}`, String(seen));
      s.blk!.shutdown();
    });
  },
});

defineCheck({
  id: 'config_space.driver.optional-fields',
  title: 'the driver reads feature-dependent config fields only when the feature is offered, and copes with a larger config space',
  statements: ['config_space.driver.3', 'config_space.driver.4'],
  side: 'driver',
  kind: 'property',
  applies: { devices: ['blk'] },
  run(ctx) {
    const optional = [BlkF.SIZE_MAX, BlkF.SEG_MAX, BlkF.BLK_SIZE, BlkF.TOPOLOGY, BlkF.DISCARD, BlkF.WRITE_ZEROES, BlkF.SECURE_ERASE];
    checkProperty(ctx, ['config_space.driver.3'], [fc.subarray(optional), fc.boolean()], (keep, bigConfig) => {
      let mask = -1n;
      for (const b of optional) if (!keep.includes(b)) mask &= ~bit(b);
      const dut = newDeviceWith(ctx, (m) => (bigConfig ? { configSize: m.configSize + 160 } : {}), { offerMask: mask });
      const sim = simInternals(dut);
      const base = (dut.location as { base: number }).base;
      const offered = sim.core.deviceFeatures;
      const bad: string[] = [];
      sim.machine.bus.addListener((a) => {
        if (a.kind !== 'read' || a.addr < base + Mmio.CONFIG || a.addr >= base + Mmio.CONFIG + 0x100) return;
        const off = a.addr - base - Mmio.CONFIG;
        for (const f of BLK_FIELDS) if (f.feature !== undefined && !hasFeature(offered, f.feature) && off < f.off + f.size && f.off < off + a.size) bad.push(`${f.name} (feature ${f.feature} not offered)`);
      });
      const s = startRef(ctx, dut);
      s.io(2, ctx.seed);
      s.shutdown();
      expectThat(bad.length === 0, ['config_space.driver.3'], 'driver read config fields whose feature is not offered', 'none', [...new Set(bad)].join(', '));
      void Blk;
    });
  },
});

defineCheck({
  id: 'split.driver.used-len',
  title: 'the driver does not trust bytes past used.len: a blk request whose status byte lies beyond it is not reported as done',
  statements: ['split.driver.17'],
  side: 'driver',
  kind: 'property',
  applies: { rings: ['split'], devices: ['blk'] },
  run(ctx) {
    checkProperty(ctx, ['split.driver.17'], [fc.integer({ min: 0, max: 512 })], (shortLen) => {
      const dut = ctx.newDevice();
      const sim = simInternals(dut);
      const s = startRef(ctx, dut);
      const b = s.blk!;
      // after the device completes, rewrite used.len of the last used element to a shorter value
      const q = sim.core.queues[0]!;
      const mem = dut.machine!.mem;
      const ring = sim.core.ring(0)!;
      const push = ring.push.bind(ring);
      ring.push = (chain, written) => {
        push(chain, written);
        const idx = (mem.read16(q.device + 2) - 1) & 0xffff;
        mem.write32(q.device + 4 + 8 * (idx % q.size) + 4, shortLen);
      };
      const buf = dut.platform.dma.alloc(512);
      const h = b.submit({ type: Blk.T_IN, sector: 0, data: [{ addr: buf, len: 512 }] });
      b.kick();
      let status = -2;
      try {
        status = b.wait(h).status;
      } catch {
        status = -1;
      }
      expectThat(status !== Blk.S_OK, ['split.driver.17'], `driver reported OK although used.len ${shortLen} does not cover the status byte (data 512 + status 1)`, 'an error', `status ${status}`);
    });
  },
});
