/**
 * virtio-net control virtqueue (device-types/net/description.tex, "Control Virtqueue"): the
 * driver's commands of every class, and "Gratuitous Packet Sending".
 *
 *   net.device.announce  net.device.96
 *   net.driver.ctrl      net.driver.78, .81-.83, .85, .88, .90, .93-.98, .101-.104, .106-.108
 *                        (RX modes, MAC table, MQ pairs, RSS, offloads, coalescing, statistics,
 *                        announce)
 */
import { DEFAULT_RSS_KEY } from '../../../device-models/net/rss.ts';
import { NET_DRIVER_FEATURES } from '../../../drivers/net/driver.ts';
import { EtherType, macFromString } from '../../../spec-refs/abi/packet.ts';
import { HashType, NetCfg, NetCtrl, NetStatus } from '../../../spec-refs/abi/net.ts';
import { NetF, bit, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { UsageError } from '../../../spec-refs/errors.ts';
import { CheckSkip, defineCheck, expectEqual, expectThat } from '../../check.ts';
import { PEER, rig, strictRig } from './rig.ts';

defineCheck({
  id: 'net.device.announce',
  title: 'ANNOUNCE_ACK clears VIRTIO_NET_S_ANNOUNCE before the command is used',
  statements: ['net.device.96'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'], features: [NetF.GUEST_ANNOUNCE] },
  run(ctx) {
    const r = rig(ctx);
    if (!hasFeature(r.drv.features, NetF.GUEST_ANNOUNCE) || !r.nic.requestAnnounce()) throw new CheckSkip('GUEST_ANNOUNCE not negotiated');
    expectThat((r.drv.dev.config16(NetCfg.STATUS) & NetStatus.ANNOUNCE) !== 0, ['net.device.96'], 'ANNOUNCE not shown');
    const res = r.drv.command(NetCtrl.CLASS_ANNOUNCE, NetCtrl.ANNOUNCE_ACK);
    expectEqual(res.ack, NetCtrl.OK, ['net.device.96'], 'ANNOUNCE_ACK ack');
    expectEqual(r.drv.dev.config16(NetCfg.STATUS) & NetStatus.ANNOUNCE, 0, ['net.device.96'], 'ANNOUNCE still set after the ack was used');
  },
});

defineCheck({
  id: 'net.driver.ctrl',
  title: 'control commands only with their features and in their format: RX modes, MAC table, MQ pairs, RSS, offloads, coalescing, statistics, announce',
  statements: ['net.driver.78', 'net.driver.81', 'net.driver.82', 'net.driver.83', 'net.driver.85', 'net.driver.88', 'net.driver.90', 'net.driver.93', 'net.driver.94', 'net.driver.95', 'net.driver.96', 'net.driver.97', 'net.driver.98', 'net.driver.101', 'net.driver.102', 'net.driver.103', 'net.driver.104', 'net.driver.106', 'net.driver.107', 'net.driver.108'],
  side: 'driver',
  kind: 'example',
  applies: { devices: ['net'] },
  run(ctx) {
    const ids = ['net.driver.78', 'net.driver.81', 'net.driver.82', 'net.driver.83', 'net.driver.85', 'net.driver.90', 'net.driver.93', 'net.driver.94', 'net.driver.95', 'net.driver.96', 'net.driver.97', 'net.driver.98', 'net.driver.101', 'net.driver.102', 'net.driver.103', 'net.driver.104', 'net.driver.106', 'net.driver.107', 'net.driver.108'];
    // Everything negotiated: valid use of every command.
    const r = strictRig(ctx, { maxPairs: 4 }, { pairs: 4 });
    const d = r.drv;
    const tryIt = (fn: () => void) => {
      try {
        fn();
      } catch (e) {
        if (!(e instanceof UsageError)) throw e;
      }
    };
    const has = (b: number) => hasFeature(d.features, b);
    d.setPromisc(true);
    d.setAllMulti(false);
    d.setRxMode(NetCtrl.RX_NOBCAST, false);
    d.setMacTable([macFromString('52:54:00:01:02:03')], [macFromString('01:00:5e:00:00:01')]);
    d.setMacTable([], []);
    d.setPairs(3);
    tryIt(() => d.setPairs(0));
    tryIt(() => d.setPairs(9));
    if (has(NetF.RSS)) {
      d.setRss({ hashTypes: HashType.TCPv4, table: [0, 1, 2, 0], key: DEFAULT_RSS_KEY });
      tryIt(() => d.setRss({ hashTypes: HashType.TCPv4, table: [0, 1, 2], key: DEFAULT_RSS_KEY }));
      tryIt(() => d.setRss({ hashTypes: 1 << 20, table: [0], key: DEFAULT_RSS_KEY }));
      tryIt(() => d.setRss({ hashTypes: HashType.TCPv4, table: [7], key: DEFAULT_RSS_KEY }));
      tryIt(() => d.setRss({ hashTypes: HashType.TCPv4, table: new Array(256).fill(0), key: DEFAULT_RSS_KEY }));
    }
    d.setGuestOffloads(bit(NetF.GUEST_CSUM));
    tryIt(() => d.setGuestOffloads(bit(NetF.GUEST_UFO)));
    if (has(NetF.NOTF_COAL)) d.setCoalescing('rx', 4, 10);
    if (has(NetF.VQ_NOTF_COAL)) {
      d.setQueueCoalescing(0, 2, 2);
      tryIt(() => d.setQueueCoalescing(99, 2, 2));
    }
    if (has(NetF.DEVICE_STATS)) {
      const types = d.statsQuery();
      d.statsGet(0, types.filter((t) => t < 16));
      d.statsGet(1, types.filter((t) => t >= 16 && t < 32));
    }
    // net.driver.88: an ANNOUNCE is acknowledged.
    if (r.nic.requestAnnounce()) {
      r.run(300_000);
      expectEqual(d.dev.config16(NetCfg.STATUS) & NetStatus.ANNOUNCE, 0, ['net.driver.88'], 'ANNOUNCE was not acknowledged with ANNOUNCE_ACK');
    }
    r.verdict(ids);
    // Nothing negotiated: the driver must refuse rather than send.
    const bare = strictRig(ctx, {}, { features: NET_DRIVER_FEATURES & ~[NetF.CTRL_RX, NetF.CTRL_RX_EXTRA, NetF.CTRL_MAC_ADDR, NetF.MQ, NetF.RSS, NetF.CTRL_GUEST_OFFLOADS, NetF.NOTF_COAL, NetF.VQ_NOTF_COAL, NetF.DEVICE_STATS, NetF.CTRL_VLAN].reduce((s, b) => s | bit(b), 0n) });
    const b = bare.drv;
    for (const fn of [() => b.setPromisc(true), () => b.setRxMode(NetCtrl.RX_NOUNI, true), () => b.setMacTable([], []), () => b.setMac(PEER), () => b.setPairs(1), () => b.setRss({ hashTypes: 1, table: [0], key: DEFAULT_RSS_KEY }), () => b.setGuestOffloads(0n), () => b.setCoalescing('tx', 1, 1), () => b.setQueueCoalescing(0, 1, 1), () => b.statsQuery()]) tryIt(fn);
    bare.verdict(ids);
    void EtherType;
  },
});
