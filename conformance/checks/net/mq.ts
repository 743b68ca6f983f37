/**
 * virtio-net multiqueue (device-types/net/description.tex, "Control Virtqueue / Automatic receive
 * steering in multiqueue mode"), and per-queue reset of the data queues (net.device.100 with
 * .102 from "RSS processing" and .109/.110 from "Notifications Coalescing"):
 *
 *   net.device.mq           net.device.97, .98
 *   net.device.queue-reset  net.device.100, .102, .109, .110
 *   net.driver.mq-setup     net.driver.89
 */
import { DEFAULT_RSS_KEY } from '../../../device-models/net/rss.ts';
import { VirtioNetDriver, type RxFrame } from '../../../drivers/net/driver.ts';
import { HashType } from '../../../spec-refs/abi/net.ts';
import { F, NetF, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { CheckSkip, defineCheck, expectEqual, expectThat } from '../../check.ts';
import { transportOf } from '../support.ts';
import { PEER, withRing, rigWith, rig, udpTo, tcpTo, strictRig } from './rig.ts';

defineCheck({
  id: 'net.device.mq',
  title: 'receiveq1 only until VQ_PAIRS_SET; then never above the pairs in use',
  statements: ['net.device.97', 'net.device.98'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'], features: [NetF.MQ] },
  run(ctx) {
    const r = rigWith(ctx, NetF.MQ, 'MQ', { maxPairs: 4 }, { pairs: 4 });
    // The driver enabled 4 pairs at init; reset to 1 by re-initialising without asking for more.
    r.drv.shutdown();
    const d1 = VirtioNetDriver.init(r.dut.platform, transportOf(r.dut), withRing(ctx, { pairs: 4 }));
    // d1 sent VQ_PAIRS_SET(4) during init; start over with a driver that does not.
    d1.shutdown();
    const d = VirtioNetDriver.init(r.dut.platform, transportOf(r.dut), withRing(ctx, { pairs: 1 }));
    const got: RxFrame[] = [];
    d.onReceive((f) => got.push(f));
    for (let i = 0; i < 32; i++) r.inject(udpTo(d.mac, 10, 3000 + i));
    d.run(300_000);
    expectThat(got.length === 32 && got.every((f) => f.pair === 0), ['net.device.97'], 'frames on a queue other than receiveq1 before VQ_PAIRS_SET', '32 on pair 0', got.map((f) => f.pair).join(','));
    d.shutdown();
    const d2 = VirtioNetDriver.init(r.dut.platform, transportOf(r.dut), withRing(ctx, { pairs: 4 }));
    d2.setPairs(2);
    const got2: RxFrame[] = [];
    d2.onReceive((f) => got2.push(f));
    for (let i = 0; i < 64; i++) r.inject(udpTo(d2.mac, 10, 4000 + i));
    d2.run(300_000);
    expectThat(got2.length === 64 && got2.every((f) => f.pair < 2), ['net.device.98'], 'frames above the pairs in use', 'pairs 0..1', got2.map((f) => f.pair).join(','));
  },
});

defineCheck({
  id: 'net.device.queue-reset',
  title: 'per-queue reset: traffic for a receive queue being reset is dropped (also when RSS points at it); coalescing goes back to TX_SET/RX_SET values',
  statements: ['net.device.100', 'net.device.102', 'net.device.109', 'net.device.110'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'], transports: ['mmio', 'pci'] },
  run(ctx) {
    if (ctx.ring === 'packed') throw new CheckSkip('the reference driver resets single queues on split rings only');
    const r = rig(ctx, { maxPairs: 2 }, { pairs: 1 });
    const d = r.drv;
    if (!hasFeature(d.features, F.RING_RESET)) throw new CheckSkip('RING_RESET not negotiated');
    // One pair in use: resetting receiveq1 resets every receive queue (net.device.100).
    d.resetQueue(0, () => {
      r.inject(udpTo(d.mac, 20));
      d.run(100_000);
    });
    d.run(200_000);
    expectEqual(r.received().length, 0, ['net.device.100'], 'frames that arrived while every receive queue was being reset');
    r.inject(udpTo(d.mac, 20));
    d.run(200_000);
    expectEqual(r.received().length, 1, ['net.device.100'], 'frames after the queue came back');
    if (hasFeature(d.features, NetF.VQ_NOTF_COAL) && hasFeature(d.features, NetF.NOTF_COAL)) {
      d.setCoalescing('rx', 3, 30);
      d.setQueueCoalescing(0, 9, 90);
      d.resetQueue(0);
      const rx = d.getQueueCoalescing(0);
      expectThat(rx !== null && rx.maxPackets === 3 && rx.maxUsecs === 30, ['net.device.110'], 'receive queue coalescing after reset', 'the RX_SET values 3/30', JSON.stringify(rx));
      d.setQueueCoalescing(1, 9, 90);
      d.flushTx();
      d.resetQueue(1);
      const tx = d.getQueueCoalescing(1);
      expectThat(tx !== null && tx.maxPackets === 0 && tx.maxUsecs === 0, ['net.device.109'], 'transmit queue coalescing after reset (TX_SET never sent)', '0/0', JSON.stringify(tx));
    }
    if (hasFeature(d.features, NetF.RSS)) {
      d.shutdown();
      const d2 = VirtioNetDriver.init(r.dut.platform, transportOf(r.dut), withRing(ctx, { pairs: 2 }));
      const got: RxFrame[] = [];
      d2.onReceive((f) => got.push(f));
      d2.setRss({ hashTypes: HashType.UDPv4 | HashType.IPv4, table: [1, 1], key: DEFAULT_RSS_KEY, unclassified: 0 });
      d2.resetQueue(2, () => {
        r.inject(udpTo(d2.mac, 20));
        d2.run(100_000);
      });
      d2.run(200_000);
      expectEqual(got.length, 0, ['net.device.102'], 'frames RSS steered to a queue being reset');
    }
  },
});

defineCheck({
  id: 'net.driver.mq-setup',
  title: 'MQ: the driver enables queue pairs with VQ_PAIRS_SET only after setting up their virtqueues',
  statements: ['net.driver.89'],
  side: 'driver',
  kind: 'example',
  applies: { devices: ['net'] },
  run(ctx) {
    const r = strictRig(ctx, { maxPairs: 4 }, { pairs: 3 });
    if (!hasFeature(r.drv.features, NetF.MQ)) throw new CheckSkip('MQ not negotiated');
    // The driver enabled its pairs during start-up; the checking device saw which queues were live then.
    expectEqual(r.drv.activePairs, 3, ['net.driver.89'], 'pairs in use after start-up');
    r.drv.setPairs(1);
    r.drv.setPairs(3);
    // Every pair in use carries traffic (its queues really are set up).
    for (let p = 0; p < 3; p++) r.drv.send(tcpTo(PEER, 40 + p, 'full', 3000 + p, r.drv.mac).frame, { pair: p });
    r.run(200_000);
    expectEqual(r.wire.length, 3, ['net.driver.89'], 'frames sent on the three pairs');
    r.verdict(['net.driver.89', 'net.driver.90', 'net.driver.91', 'net.driver.92']);
  },
});
