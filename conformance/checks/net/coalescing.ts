/**
 * virtio-net notifications coalescing (device-types/net/description.tex, "Control Virtqueue /
 * Notifications Coalescing"):
 *
 *   net.device.coalescing          net.device.105, .108, .113
 *   net.device.coalescing-applied  net.device.107
 *   net.driver.coal-get-err        net.driver.105
 *
 * Coalescing across a per-queue reset (net.device.109, .110) is in mq.ts (net.device.queue-reset).
 */
import { VirtioNetDriver } from '../../../drivers/net/driver.ts';
import { NetCtrl } from '../../../spec-refs/abi/net.ts';
import { NetF } from '../../../spec-refs/abi/virtio.ts';
import { CheckSkip, defineCheck, expectEqual, expectThat } from '../../check.ts';
import { transportOf } from '../support.ts';
import { withRing, rigWith, udpTo, same } from './rig.ts';

defineCheck({
  id: 'net.device.coalescing',
  title: 'coalescing: reserved ignored, VQ_SET/GET only on enabled data queues, all parameters 0 after reset',
  statements: ['net.device.105', 'net.device.108', 'net.device.113'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'], features: [NetF.VQ_NOTF_COAL] },
  run(ctx) {
    const r = rigWith(ctx, NetF.VQ_NOTF_COAL, 'VQ_NOTF_COAL');
    const set = new Uint8Array(12);
    const v = new DataView(set.buffer);
    v.setUint16(0, 0, true);
    v.setUint16(2, 0xbeef, true); // reserved
    v.setUint32(4, 5, true);
    v.setUint32(8, 50, true);
    expectEqual(r.drv.command(NetCtrl.CLASS_NOTF_COAL, NetCtrl.NOTF_COAL_VQ_SET, set).ack, NetCtrl.OK, ['net.device.105'], 'VQ_SET with a non-zero reserved field');
    const get = (vq: number) => r.drv.command(NetCtrl.CLASS_NOTF_COAL, NetCtrl.NOTF_COAL_VQ_GET, new Uint8Array([vq & 0xff, vq >> 8, 0, 0]), 8);
    const g = get(0);
    expectThat(g.ack === NetCtrl.OK && same(g.result, new Uint8Array([5, 0, 0, 0, 50, 0, 0, 0])), ['net.device.105'], 'VQ_GET after VQ_SET');
    for (const bad of [r.drv.ctrlIndex, 2 * r.drv.maxPairs + 5]) expectEqual(get(bad).ack, NetCtrl.ERR, ['net.device.108'], `VQ_GET on queue ${bad}`);
    set[0] = r.drv.ctrlIndex;
    expectEqual(r.drv.command(NetCtrl.CLASS_NOTF_COAL, NetCtrl.NOTF_COAL_VQ_SET, set).ack, NetCtrl.ERR, ['net.device.108'], 'VQ_SET on the control queue');
    r.drv.shutdown();
    const d = VirtioNetDriver.init(r.dut.platform, transportOf(r.dut), withRing(ctx, {}));
    expectThat(same(d.command(NetCtrl.CLASS_NOTF_COAL, NetCtrl.NOTF_COAL_VQ_GET, new Uint8Array(4), 8).result, new Uint8Array(8)), ['net.device.113'], 'coalescing parameters not 0 after reset');
  },
});

defineCheck({
  id: 'net.device.coalescing-applied',
  title: 'a NOTF_COAL_VQ_SET acknowledged OK was applied (the values read back and shape the interrupts)',
  statements: ['net.device.107'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'], features: [NetF.VQ_NOTF_COAL] },
  run(ctx) {
    const r = rigWith(ctx, NetF.VQ_NOTF_COAL, 'VQ_NOTF_COAL');
    r.drv.setQueueCoalescing(0, 4, 1000);
    const back = r.drv.getQueueCoalescing(0);
    expectThat(back?.maxPackets === 4 && back.maxUsecs === 1000, ['net.device.107'], 'VQ_SET acknowledged but not applied', '4/1000', JSON.stringify(back));
    // Applied means used: 4 frames give one interrupt, not four.
    const core = r.dut.internals?.['core'] as { stats: { usedSignals: number } } | undefined;
    if (core) {
      const before = core.stats.usedSignals;
      for (let i = 0; i < 4; i++) r.inject(udpTo(r.drv.mac, 10, 6000 + i));
      r.run(200_000);
      expectEqual(r.received().length, 4, ['net.device.107'], 'frames received');
      expectEqual(core.stats.usedSignals - before, 1, ['net.device.107'], 'used-buffer interrupts for 4 frames with max_packets 4');
    }
  },
});

defineCheck({
  id: 'net.driver.coal-get-err',
  title: 'the driver disregards NOTF_COAL_VQ_GET values when the device answers VIRTIO_NET_ERR',
  statements: ['net.driver.105'],
  side: 'driver',
  kind: 'example',
  applies: { devices: ['net'] },
  run(ctx) {
    if (!ctx.target.runsDriverChecks) throw new CheckSkip('driver checks need pvkit\'s checking device');
    const r = rigWith(ctx, NetF.VQ_NOTF_COAL, 'VQ_NOTF_COAL', { ctrlHook: (cls, cmd) => (cls === NetCtrl.CLASS_NOTF_COAL && cmd === NetCtrl.NOTF_COAL_VQ_GET ? { ack: NetCtrl.ERR, result: new Uint8Array([9, 9, 9, 9, 9, 9, 9, 9]) } : undefined) });
    const v = r.drv.getQueueCoalescing(0);
    expectThat(v === null, ['net.driver.105'], 'values of a NOTF_COAL_VQ_GET answered with ERR were used', 'null', JSON.stringify(v));
  },
});
