/**
 * virtio-blk driver rules about what the driver may not assume (device-types/blk/description.tex,
 * driver requirements of Device Operation): durability when leaving writeback mode, the
 * content of discarded sectors, and the effect of a failed multi-segment range request. Each is
 * checked against a device that behaves in the least convenient way the spec allows.
 */
import type { VirtioBlkDevice } from '../../device-models/blk/device.ts';
import type { RamDisk } from '../../device-models/blk/backend.ts';
import { BlkF, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { CheckSkip, defineCheck, expectThat } from '../check.ts';
import type { DeviceUnderTest } from '../target.ts';
import { monitor, simInternals, startRef } from './support.ts';

function blkModel(dut: DeviceUnderTest): VirtioBlkDevice & { backend: RamDisk } {
  const m = simInternals(dut).model as VirtioBlkDevice & { backend: RamDisk };
  if (!m.backend || !('stats' in m)) throw new CheckSkip('needs the simulated virtio-blk model');
  return m;
}

defineCheck({
  id: 'blk.driver.writethrough-switch',
  title: 'leaving writeback mode, the driver flushes: writes completed in writeback mode are not stable because the mode changed',
  statements: ['blk.driver.23'],
  side: 'driver',
  kind: 'example',
  applies: { devices: ['blk'] },
  run(ctx) {
    const dut = ctx.newDevice({ params: { writeback: 1 } });
    const model = blkModel(dut);
    const s = startRef(ctx, dut);
    const b = s.blk!;
    if (!b.info.configWce || !b.info.flush) throw new CheckSkip('CONFIG_WCE and FLUSH not both negotiated');
    if (b.info.cache !== 'writeback') b.setWriteback(true);
    b.write(8, new Uint8Array(4096).fill(0x11));
    const before = model.stats.flushes;
    b.setWriteback(false);
    expectThat(model.stats.flushes > before, ['blk.driver.23'], 'driver switched to writethrough without flushing the writes completed in writeback mode', 'a FLUSH', 'none');
    s.shutdown();
  },
});

defineCheck({
  id: 'blk.driver.discarded-content',
  title: 'the driver reads discarded sectors from the device instead of assuming their content',
  statements: ['blk.driver.25'],
  side: 'driver',
  kind: 'example',
  applies: { devices: ['blk'] },
  run(ctx) {
    const dut = ctx.newDevice();
    const model = blkModel(dut);
    // a device that leaves a pattern of its choosing in discarded sectors (the spec lets it)
    const bytes = model.backend.contents;
    model.backend.discard = (off: number, len: number) => void bytes.fill(0xee, off, off + len);
    const mon = monitor(dut);
    const s = startRef(ctx, dut);
    const b = s.blk!;
    if (!b.info.discard) throw new CheckSkip('DISCARD not negotiated');
    b.write(64, new Uint8Array(8 * 512).fill(0x42));
    b.discard([{ sector: 64, sectors: 8 }]);
    const back = new Uint8Array(8 * 512);
    b.read(64, back);
    expectThat(back.every((x) => x === 0xee), ['blk.driver.25'], 'driver returned something other than what the device holds for discarded sectors', 'the device pattern 0xee', `0x${back[0]!.toString(16)}`);
    mon.detach();
    mon.assertClean({ side: 'driver' });
    s.shutdown();
  },
});

defineCheck({
  id: 'blk.driver.range-ioerr',
  title: 'a multi-segment range request that fails with IOERR is reported failed as a whole, after some segments may have taken effect',
  statements: ['blk.driver.26'],
  side: 'driver',
  kind: 'example',
  applies: { devices: ['blk'] },
  run(ctx) {
    const dut = ctx.newDevice({ params: { writeZeroes: { maxSectors: 64, maxSeg: 4, mayUnmap: true } } });
    const model = blkModel(dut);
    // a device that applies the first segment and then fails: the request completes with IOERR
    let calls = 0;
    const zero = model.backend.writeZeroes.bind(model.backend);
    model.backend.writeZeroes = (off: number, len: number) => {
      if (++calls % 2 === 0) throw new Error('medium error');
      zero(off, len);
    };
    const s = startRef(ctx, dut);
    const b = s.blk!;
    if (!b.info.writeZeroes || !hasFeature(b.features, BlkF.WRITE_ZEROES)) throw new CheckSkip('WRITE_ZEROES not negotiated');
    b.write(0, new Uint8Array(32 * 512).fill(0x33));
    let failed = false;
    try {
      b.writeZeroes([{ sector: 0, sectors: 8 }, { sector: 16, sectors: 8 }]);
    } catch {
      failed = true;
    }
    expectThat(failed, ['blk.driver.26'], 'driver reported a write-zeroes request success although the device answered IOERR');
    // the driver still reads what the device holds: the first range zeroed, the second not
    const back = new Uint8Array(32 * 512);
    b.read(0, back);
    expectThat(back[0] === 0 && back[16 * 512] === 0x33, ['blk.driver.26'], 'data read back after a failed range request is not what the device holds', 'first range zero, second unchanged', `0x${back[0]!.toString(16)}, 0x${back[16 * 512]!.toString(16)}`);
    s.shutdown();
  },
});
