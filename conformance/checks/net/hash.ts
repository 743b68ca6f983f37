/**
 * virtio-net inner header hash (device-types/net/description.tex, "Control Virtqueue / Inner Header
 * Hash", VIRTIO_NET_F_HASH_TUNNEL): which headers of an encapsulated packet RSS and hash reports use.
 *
 *   net.device.hash-outer   net.device.73, .75 (never enabled, and after reset)
 *   net.driver.hash-tunnel  net.driver.79, .80
 *   net.device.hash-inner   net.device.73, .75 (enabled, disabled again, reset)
 */
import { DEFAULT_RSS_KEY, hashPacket } from '../../../device-models/net/rss.ts';
import { VirtioNetDriver, NET_DRIVER_FEATURES, type RxFrame } from '../../../drivers/net/driver.ts';
import { buildL4Frame, ip4FromString, macFromString, parseFrame } from '../../../spec-refs/abi/packet.ts';
import { HashTunnel, HashType } from '../../../spec-refs/abi/net.ts';
import { NetF, bit, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { UsageError } from '../../../spec-refs/errors.ts';
import { CheckFailure, CheckSkip, defineCheck, expectEqual, expectThat } from '../../check.ts';
import { transportOf } from '../support.ts';
import { PEER, withRing, rigWith, udpTo, same } from './rig.ts';

/** A VXLAN frame: outer Ethernet/IPv4/UDP to port 4789 around an inner Ethernet/IPv4/TCP frame. */
function vxlan(dst: Uint8Array, innerPort: number): Uint8Array {
  const inner = buildL4Frame({ eth: { dst: macFromString('02:aa:00:00:00:01'), src: macFromString('02:aa:00:00:00:02') }, src: ip4FromString(`172.16.${innerPort & 0xff}.1`), dst: ip4FromString('172.16.0.2'), proto: 'tcp', srcPort: innerPort, dstPort: 443 }, new Uint8Array(16)).frame;
  const payload = new Uint8Array(8 + inner.length);
  payload[0] = 0x08; // VNI valid
  payload[6] = 1; // VNI 1 (bytes 4..6)
  payload.set(inner, 8);
  return buildL4Frame({ eth: { dst, src: PEER }, src: ip4FromString('10.7.0.1'), dst: ip4FromString('10.9.0.1'), proto: 'udp', srcPort: 5555, dstPort: 4789 }, payload).frame;
}

defineCheck({
  id: 'net.device.hash-outer',
  title: 'with no inner-header hashing enabled (never, and after reset), encapsulated packets are hashed on their outer headers',
  statements: ['net.device.73', 'net.device.75'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'], features: [NetF.RSS] },
  run(ctx) {
    const r = rigWith(ctx, NetF.RSS, 'RSS', { maxPairs: 4 }, { pairs: 4 });
    const types = HashType.UDPv4 | HashType.TCPv4 | HashType.IPv4;
    const table = [0, 1, 2, 3, 3, 2, 1, 0];
    const once = (d: VirtioNetDriver, id: string, got: () => RxFrame[]) => {
      d.setRss({ hashTypes: types, table, key: DEFAULT_RSS_KEY });
      for (let i = 0; i < 12; i++) r.inject(vxlan(d.mac, 1000 + 37 * i));
      d.run(300_000);
      const fr = got();
      expectEqual(fr.length, 12, [id], 'VXLAN frames received');
      const outer = hashPacket(fr[0]!.data, parseFrame(fr[0]!.data), types, DEFAULT_RSS_KEY);
      for (const x of fr) {
        expectEqual(x.pair, table[outer.value & 7]!, [id], 'queue of a VXLAN frame (its outer UDP header hashes to one queue)');
        if (hasFeature(d.features, NetF.HASH_REPORT)) expectEqual(x.hashValue, outer.value, [id], 'reported hash of a VXLAN frame', true);
      }
    };
    once(r.drv, 'net.device.73', () => r.received());
    r.drv.shutdown();
    const d2 = VirtioNetDriver.init(r.dut.platform, transportOf(r.dut), withRing(ctx, { pairs: 4 }));
    const got: RxFrame[] = [];
    d2.onReceive((f) => got.push(f));
    once(d2, 'net.device.75', () => got.splice(0));
  },
});

defineCheck({
  id: 'net.driver.hash-tunnel',
  title: 'HASH_TUNNEL: the driver enables only encapsulation types the device supports, and ignores supported_tunnel_types bits the spec does not define',
  statements: ['net.driver.79', 'net.driver.80'],
  side: 'driver',
  kind: 'example',
  applies: { devices: ['net'] },
  run(ctx) {
    if (!ctx.target.runsDriverChecks) throw new CheckSkip('driver checks need pvkit\'s checking device');
    // The device advertises VXLAN plus two bits v1.4 does not define.
    const undefinedBits = (1 << 12) | (1 << 31);
    const r = rigWith(ctx, NetF.HASH_TUNNEL, 'HASH_TUNNEL', { strict: true, supportedTunnelTypes: HashTunnel.VXLAN | undefinedBits }, { features: NET_DRIVER_FEATURES | bit(NetF.HASH_TUNNEL) });
    expectEqual(r.drv.supportedTunnelTypes, HashTunnel.VXLAN, ['net.driver.80'], 'supported tunnel types the driver will use (undefined bits ignored)');
    r.drv.setHashTunnel(HashTunnel.VXLAN);
    r.drv.setHashTunnel(0);
    // Requests beyond what the device supports (a defined type it lacks, an undefined bit it advertises)
    // must not reach the device.
    for (const [types, id] of [[HashTunnel.GENEVE, 'net.driver.79'], [HashTunnel.VXLAN | HashTunnel.GRE_UDP, 'net.driver.79'], [1 << 12, 'net.driver.80']] as const) {
      const before = r.drv.stats.ctrlCommands;
      let refused = false;
      try {
        r.drv.setHashTunnel(types);
      } catch (e) {
        refused = e instanceof UsageError;
        if (!refused && !(e instanceof Error && /refused by the device/.test(e.message))) throw e;
      }
      expectThat(refused && r.drv.stats.ctrlCommands === before, [id], `enabled_tunnel_types 0x${(types >>> 0).toString(16)} went to a device supporting only VXLAN and undefined bits`, 'refused by the driver', refused ? 'refused after sending' : 'sent');
    }
    const v = r.nic.violations.find((x) => x.id === 'net.driver.79' || x.id === 'net.driver.78');
    if (v) throw new CheckFailure(`the checking device saw the driver break ${v.id}: ${v.detail}`, { statements: [v.id] });
  },
});

/** vxlan() with the outer UDP destination port changed (6081: GENEVE, a type the model never matches). */
function udpEncap(dst: Uint8Array, innerPort: number, port: number): Uint8Array {
  const f = vxlan(dst, innerPort);
  const info = parseFrame(f);
  f[info.l4 + 2] = port >> 8;
  f[info.l4 + 3] = port & 0xff;
  f[info.l4 + 6] = f[info.l4 + 7] = 0; // UDP checksum 0 (IPv4: none)
  return f;
}

defineCheck({
  id: 'net.device.hash-inner',
  title: 'HASH_TUNNEL: with VXLAN enabled, VXLAN packets hash on the inner headers and everything else on the outer; after HASH_TUNNEL_SET(0) and after reset, on the outer',
  statements: ['net.device.73', 'net.device.75'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'], features: [NetF.RSS] },
  run(ctx) {
    const feats = NET_DRIVER_FEATURES | bit(NetF.HASH_TUNNEL);
    const r = rigWith(ctx, NetF.HASH_TUNNEL, 'HASH_TUNNEL', { maxPairs: 4 }, { pairs: 4, features: feats });
    if (!hasFeature(r.drv.features, NetF.RSS)) throw new CheckSkip('RSS not negotiated');
    if (!(r.drv.supportedTunnelTypes & HashTunnel.VXLAN)) throw new CheckSkip('the device does not support inner hashing for VXLAN');
    const types = HashType.UDPv4 | HashType.TCPv4 | HashType.IPv4;
    const table = [0, 1, 2, 3, 3, 2, 1, 0];
    const innerOf = (f: Uint8Array): Uint8Array => {
      const i = parseFrame(f);
      return f.subarray(i.l4 + 16);
    };
    const hashOf = (f: Uint8Array) => hashPacket(f, parseFrame(f), types, DEFAULT_RSS_KEY).value;
    /** Inject frames; each must land on table[expected hash & 7] and, with HASH_REPORT, report that hash. */
    const expectHashes = (d: VirtioNetDriver, got: () => RxFrame[], frames: [Uint8Array, number, string, string][]) => {
      for (const [f] of frames) r.inject(f);
      d.run(300_000);
      const fr = got();
      expectEqual(fr.length, frames.length, [frames[0]![3]], 'frames received');
      // Queues are serviced in turn, so frames are matched by content, not arrival order.
      fr.forEach((x) => {
        const m = frames.find(([f]) => same(f, x.data));
        if (!m) throw new CheckFailure('a received frame matches none injected', { statements: [frames[0]![3]] });
        const [, want, what, id] = m;
        expectEqual(x.pair, table[want & 7]!, [id], `queue of ${what}`);
        if (hasFeature(d.features, NetF.HASH_REPORT)) expectEqual(x.hashValue, want, [id], `reported hash of ${what}`, true);
      });
    };
    const ports = [1000, 1037, 1074, 1111, 1148, 1185, 1222, 1259];
    r.drv.setRss({ hashTypes: types, table, key: DEFAULT_RSS_KEY });
    r.drv.setHashTunnel(HashTunnel.VXLAN);
    // Enabled: VXLAN on the inner frame; GENEVE-like (not enabled) and plain UDP on the outer headers.
    expectHashes(r.drv, () => r.received(), [
      ...ports.map((p) => { const f = vxlan(r.drv.mac, p); return [f, hashOf(innerOf(f)), `VXLAN (inner port ${p}) with VXLAN enabled`, 'net.device.73'] as [Uint8Array, number, string, string]; }),
      ...ports.map((p) => { const f = udpEncap(r.drv.mac, p, 6081); return [f, hashOf(f), `a UDP-6081 encapsulation (not an enabled type), inner port ${p}`, 'net.device.73'] as [Uint8Array, number, string, string]; }),
      ...ports.slice(0, 4).map((p) => { const f = udpTo(r.drv.mac, 64, p); return [f, hashOf(f), `plain UDP from port ${p}`, 'net.device.73'] as [Uint8Array, number, string, string]; }),
    ]);
    // HASH_TUNNEL_SET(0): VXLAN back on the outer headers.
    r.drv.setHashTunnel(0);
    expectHashes(r.drv, () => r.received(), ports.map((p) => { const f = vxlan(r.drv.mac, p); return [f, hashOf(f), `VXLAN (inner port ${p}) after HASH_TUNNEL_SET(0)`, 'net.device.75'] as [Uint8Array, number, string, string]; }));
    // Enabled again, then a device reset: a new driver that never enables it sees outer hashing.
    r.drv.setHashTunnel(HashTunnel.VXLAN);
    r.drv.shutdown();
    const d2 = VirtioNetDriver.init(r.dut.platform, transportOf(r.dut), withRing(ctx, { pairs: 4, features: feats }));
    const got: RxFrame[] = [];
    d2.onReceive((f) => got.push(f));
    d2.setRss({ hashTypes: types, table, key: DEFAULT_RSS_KEY });
    expectHashes(d2, () => got.splice(0), ports.map((p) => { const f = vxlan(d2.mac, p); return [f, hashOf(f), `VXLAN (inner port ${p}) after a reset`, 'net.device.75'] as [Uint8Array, number, string, string]; }));
  },
});
