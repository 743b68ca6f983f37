/**
 * virtio-net receive-side scaling (device-types/net/description.tex, "Control Virtqueue /
 * Receive-side scaling (RSS) / RSS processing", "RSS Context"):
 *
 *   net.device.rss          net.device.101
 *   net.device.rss-context  net.device.103, .104
 *   net.driver.rss-context  net.driver.99, .100
 */
import fc from 'fast-check';
import { DEFAULT_RSS_KEY, hashPacket } from '../../../device-models/net/rss.ts';
import { VirtioNetDriver, NET_DRIVER_FEATURES } from '../../../drivers/net/driver.ts';
import { buildEthernet, buildL4Frame, ip4FromString, parseFrame } from '../../../spec-refs/abi/packet.ts';
import { HashReport, HashType, NetFx } from '../../../spec-refs/abi/net.ts';
import { NetF, bit, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { UsageError } from '../../../spec-refs/errors.ts';
import { CheckSkip, checkProperty, defineCheck, expectEqual, expectThat } from '../../check.ts';
import { transportOf } from '../support.ts';
import { PEER, type Rig, withRing, rigWith, strictRig } from './rig.ts';

defineCheck({
  id: 'net.device.rss',
  title: 'RSS: unclassified packets to unclassified_queue, the rest by indirection_table[hash & mask]',
  statements: ['net.device.101'],
  side: 'device',
  kind: 'property',
  applies: { devices: ['net'], features: [NetF.RSS] },
  run(ctx) {
    if (ctx.transport.endsWith('legacy')) throw new CheckSkip('VIRTIO_NET_F_RSS (bit 60) does not exist on the legacy interface');
    checkProperty(ctx, ['net.device.101'], [fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 8, maxLength: 8 }), fc.integer({ min: 0, max: 3 }), fc.array(fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 65535 }), fc.boolean()), { minLength: 1, maxLength: 16 })], (table, unclassified, flows) => {
      const r = rigWith(ctx, NetF.RSS, 'RSS', { maxPairs: 4 }, { pairs: 4 });
      const types = HashType.TCPv4 | HashType.UDPv4 | HashType.IPv4;
      r.drv.setRss({ hashTypes: types, table, key: DEFAULT_RSS_KEY, unclassified });
      for (const [host, port, tcp] of flows) {
        const f = buildL4Frame({ eth: { dst: r.drv.mac, src: PEER }, src: ip4FromString(`10.8.0.${host}`), dst: ip4FromString('10.9.0.1'), proto: tcp ? 'tcp' : 'udp', srcPort: port, dstPort: 80 }, new Uint8Array(8)).frame;
        r.inject(f);
      }
      r.inject(buildEthernet({ dst: r.drv.mac, src: PEER }, 0x88b5, new Uint8Array(46)));
      r.run(300_000);
      const got = r.received();
      expectEqual(got.length, flows.length + 1, ['net.device.101'], 'frames received');
      for (const x of got) {
        const h = hashPacket(x.data, parseFrame(x.data), types, DEFAULT_RSS_KEY);
        const want = h.report === HashReport.NONE ? unclassified : table[h.value & 7]!;
        expectEqual(x.pair, want, ['net.device.101'], `receive queue pair of a frame with hash 0x${h.value.toString(16)}`);
      }
    });
  },
});

const RSS_CTX = bit(NetFx.RSS_CONTEXT);
const CTX_CFG = { hashTypes: HashType.TCPv4 | HashType.UDPv4 | HashType.IPv4, table: [1, 0, 1, 0], key: DEFAULT_RSS_KEY };

/** Run `f`; true when it threw `cls`, with no control command sent meanwhile. */
function refusedLocally(r: Rig, f: () => void): boolean {
  const before = r.drv.stats.ctrlCommands;
  try {
    f();
  } catch (e) {
    if (e instanceof UsageError) return r.drv.stats.ctrlCommands === before;
    if (e instanceof Error && /refused by the device/.test(e.message)) return false;
    throw e;
  }
  return false;
}

defineCheck({
  id: 'net.device.rss-context',
  title: 'RSS_CONTEXT: max_rss_contexts is at least 1, and a reset discards every configured context',
  statements: ['net.device.103', 'net.device.104'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'], features: [NetF.RSS] },
  run(ctx) {
    const feats = NET_DRIVER_FEATURES | RSS_CTX;
    const r = rigWith(ctx, NetFx.RSS_CONTEXT, 'RSS_CONTEXT', { maxPairs: 2 }, { pairs: 2, features: feats });
    const max = r.drv.rssContextMax();
    expectThat(max >= 1, ['net.device.103'], 'max_rss_contexts with RSS_CONTEXT offered', '>= 1', `${max}`);
    const ids = [...new Set([1, max])];
    for (const id of ids) r.drv.setRssContext(id, CTX_CFG);
    // The device holds them: adding the same id again is refused.
    let dup = false;
    try {
      r.drv.setRssContext(1, CTX_CFG);
    } catch (e) {
      dup = e instanceof Error && /refused by the device/.test(e.message);
    }
    expectThat(dup, ['net.device.104'], 'a second ADD of a configured RSS context id was accepted (the device keeps no contexts to clear)');
    r.drv.shutdown();
    // One pair: the new driver sends no VQ_PAIRS_SET, which leftover contexts would make the device refuse.
    const d2 = VirtioNetDriver.init(r.dut.platform, transportOf(r.dut), withRing(ctx, { pairs: 1, features: feats }));
    for (const id of ids) {
      let ok = true;
      try {
        d2.setRssContext(id, { ...CTX_CFG, table: [0] });
      } catch (e) {
        if (!(e instanceof Error && /refused by the device/.test(e.message))) throw e;
        ok = false;
      }
      expectThat(ok, ['net.device.104'], `RSS context ${id} survived a device reset (ADD of its id refused)`);
    }
  },
});

defineCheck({
  id: 'net.driver.rss-context',
  title: 'RSS_CONTEXT: the driver uses rss_ctx_id 1..max_rss_contexts and sends no VQ_PAIRS_SET while a context is configured',
  statements: ['net.driver.99', 'net.driver.100'],
  side: 'driver',
  kind: 'example',
  applies: { devices: ['net'], features: [NetF.RSS] },
  run(ctx) {
    const r = strictRig(ctx, { maxPairs: 2, maxRssContexts: 3 }, { pairs: 2, features: NET_DRIVER_FEATURES | RSS_CTX });
    if (!hasFeature(r.drv.features, NetFx.RSS_CONTEXT)) throw new CheckSkip('RSS_CONTEXT not negotiated');
    const max = r.drv.rssContextMax();
    for (const id of [0, max + 1, 0xffff]) expectThat(refusedLocally(r, () => r.drv.setRssContext(id, CTX_CFG)), ['net.driver.99'], `rss_ctx_id ${id} (max ${max}) went to the device`, 'refused by the driver', 'sent');
    expectThat(refusedLocally(r, () => r.drv.deleteRssContext(0)), ['net.driver.99'], 'RSS_CTX_CTRL_DEL with rss_ctx_id 0 went to the device', 'refused by the driver', 'sent');
    r.drv.setRssContext(max, CTX_CFG);
    expectThat(refusedLocally(r, () => r.drv.setPairs(1)), ['net.driver.100'], 'VQ_PAIRS_SET sent while an RSS context is configured', 'refused by the driver', 'sent');
    r.drv.deleteRssContext(max);
    r.drv.setPairs(1);
    r.verdict(['net.driver.98', 'net.driver.99', 'net.driver.100']);
  },
});
