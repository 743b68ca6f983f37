/**
 * virtio-net (device-types/net/description.tex): configuration, transmit-header handling,
 * receive headers and buffers, filtering, multiqueue/RSS, coalescing and statistics of the
 * device; headers, buffers and control commands of the driver.
 *
 * Device checks drive the device under test with the reference driver (or, for bad input, with
 * the driver-side virtqueue directly) and watch the wire through a switch the check plugs the
 * NIC into (simulated targets only: the NIC's backend is white-box). Driver checks run the
 * reference driver against pvkit's device in strict mode, which records every driver statement
 * it sees broken, or against a device whose receive headers a hook rewrites.
 */
import fc from 'fast-check';
import { VirtioNetDevice, type NetDeviceOptions } from '../../device-models/net/device.ts';
import { L2Switch, plug } from '../../device-models/net/switch.ts';
import { normalize, type WireFrame } from '../../device-models/net/wire.ts';
import { DEFAULT_RSS_KEY, hashPacket } from '../../device-models/net/rss.ts';
import { VirtioNetDriver, NET_DRIVER_FEATURES, completeReceived, type NetDriverOptions, type RxFrame } from '../../drivers/net/driver.ts';
import { GuestIpStack } from '../../drivers/net/stack.ts';
import { buildVxlan, vxlanOffsets } from '../../spec-refs/abi/gso.ts';
import { BROADCAST, EtherType, buildEthernet, buildL4Frame, buildPing, ip4FromString, macFromString, macToString, parseFrame, parseIp, pseudoHeaderSum, csumFold, verifyChecksums } from '../../spec-refs/abi/packet.ts';
import { HashReport, HashTunnel, HashType, NetCfg, NetCtrl, NetFx, NetHdr, NetStatus, StatsType } from '../../spec-refs/abi/net.ts';
import { F, NetF, bit, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { UsageError } from '../../spec-refs/errors.ts';
import { CheckFailure, CheckSkip, checkProperty, defineCheck, expectEqual, expectThat } from '../check.ts';
import type { DeviceUnderTest, TargetContext } from '../target.ts';
import { transportOf } from './support.ts';

const PEER = macFromString('02:00:00:00:00:42');

/** A NIC under test plugged into a switch with a traffic endpoint, and the reference driver on it. */
interface Rig {
  readonly dut: DeviceUnderTest;
  readonly nic: VirtioNetDevice;
  readonly drv: VirtioNetDriver;
  /** Frames the NIC put on the wire. */
  readonly wire: WireFrame[];
  /** Send a frame to the NIC from the wire. */
  inject(wf: WireFrame | Uint8Array): void;
  /** Let `ns` of target time pass with the driver servicing the NIC. */
  run(ns?: number): void;
  received(): RxFrame[];
}

/** Driver options for the configuration under test: the ring layout of ctx.ring. */
function withRing(ctx: TargetContext, o: NetDriverOptions = {}): NetDriverOptions {
  const f = o.features ?? NET_DRIVER_FEATURES;
  return { ...o, features: ctx.ring === 'packed' ? f | bit(F.RING_PACKED) : f & ~bit(F.RING_PACKED) };
}

/** rig(), skipping the check when the driver did not negotiate `feature` (`name` in the skip reason). */
function rigWith(ctx: TargetContext, feature: number, name: string, dev: NetDeviceOptions = {}, drv: NetDriverOptions = {}): Rig {
  const r = rig(ctx, dev, drv);
  if (!hasFeature(r.drv.features, feature)) throw new CheckSkip(`${name} not negotiated`);
  return r;
}

function rig(ctx: TargetContext, dev: NetDeviceOptions = {}, drv: NetDriverOptions = {}): Rig {
  const dut = ctx.newDevice({ params: dev as Record<string, unknown> });
  const nic = dut.internals?.['model'];
  if (!(nic instanceof VirtioNetDevice)) throw new CheckSkip('needs pvkit\'s simulated virtio-net (the check plugs the NIC into its own switch)');
  const sw = new L2Switch();
  plug(sw, nic);
  const wire: WireFrame[] = [];
  const port = sw.attach({ name: 'wire', receive: (wf) => wire.push(wf) });
  const driver = VirtioNetDriver.init(dut.platform, transportOf(dut), withRing(ctx, drv));
  const got: RxFrame[] = [];
  driver.onReceive((f) => got.push(f));
  return {
    dut,
    nic,
    drv: driver,
    wire,
    inject: (wf) => port.send(wf instanceof Uint8Array ? { data: wf } : wf),
    run: (ns = 300_000) => driver.run(ns),
    received: () => got.splice(0),
  };
}

function udpTo(dst: Uint8Array, n: number, srcPort = 1000): Uint8Array {
  return buildL4Frame({ eth: { dst, src: PEER }, src: ip4FromString('10.9.0.2'), dst: ip4FromString('10.9.0.1'), proto: 'udp', srcPort, dstPort: 7 }, new Uint8Array(n).map((_, i) => i)).frame;
}

function tcpTo(dst: Uint8Array, n: number, csum: 'full' | 'partial' = 'full', srcPort = 2000, src: Uint8Array = PEER): ReturnType<typeof buildL4Frame> {
  return buildL4Frame({ eth: { dst, src }, src: ip4FromString('10.9.0.2'), dst: ip4FromString('10.9.0.1'), proto: 'tcp', srcPort, dstPort: 80, seq: 77, csum }, new Uint8Array(n).map((_, i) => (i * 3) & 0xff));
}

/** Post a raw transmit chain (any header bytes) on transmitq1, as a hostile driver would. */
function rawTransmit(r: Rig, hdr: Uint8Array, frame: Uint8Array): void {
  const p = r.drv.platform;
  const buf = p.dma.alloc(hdr.length + frame.length, 16);
  p.mem.writeBytes(buf, hdr);
  p.mem.writeBytes(buf + hdr.length, frame);
  const q = r.drv.dev.queue<unknown>(1);
  if (!q.add([{ addr: buf, len: hdr.length + frame.length }], [], { raw: true })) throw new CheckFailure('transmit ring full');
  q.kick();
  r.run(200_000);
}

function hdr(r: Rig, f: { flags?: number; gsoType?: number; hdrLen?: number; gsoSize?: number; csumStart?: number; csumOffset?: number; outerTh?: number; innerNh?: number } = {}): Uint8Array {
  const h = new Uint8Array(r.drv.hdrLen);
  const v = new DataView(h.buffer);
  h[0] = f.flags ?? 0;
  h[1] = f.gsoType ?? 0;
  v.setUint16(2, f.hdrLen ?? 0, true);
  v.setUint16(4, f.gsoSize ?? 0, true);
  v.setUint16(6, f.csumStart ?? 0, true);
  v.setUint16(8, f.csumOffset ?? 0, true);
  if (h.length >= 24) {
    v.setUint16(20, f.outerTh ?? 0, true);
    v.setUint16(22, f.innerNh ?? 0, true);
  }
  return h;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// ---------------------------------------------------------------------------- device side

defineCheck({
  id: 'net.device.config',
  title: 'config fields are in range: max_virtqueue_pairs, mtu (and constant), RSS limits, speed and duplex',
  statements: ['net.device.1', 'net.device.2', 'net.device.4', 'net.device.7', 'net.device.8', 'net.device.10', 'net.device.11'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'] },
  run(ctx) {
    const r = rig(ctx, { maxPairs: 3, mtu: 1400 });
    const d = r.drv.dev;
    const has = (b: number) => hasFeature(d.features, b);
    if (has(NetF.MQ)) {
      const n = d.config16(NetCfg.MAX_VIRTQUEUE_PAIRS);
      expectThat(n >= 1 && n <= 0x8000, ['net.device.1'], 'max_virtqueue_pairs out of range', '1..0x8000', `${n}`);
    }
    if (has(NetF.MTU)) {
      const mtu = d.config16(NetCfg.MTU);
      expectThat(mtu >= 68 && mtu <= 65535, ['net.device.2'], 'mtu out of range', '68..65535', `${mtu}`);
      r.inject(udpTo(r.drv.mac, 100));
      r.drv.send(buildEthernet({ dst: PEER, src: r.drv.mac }, 0x88b5, new Uint8Array(100)));
      r.run();
      expectEqual(d.config16(NetCfg.MTU), mtu, ['net.device.4'], 'mtu changed after traffic');
      r.drv.shutdown();
      const again = VirtioNetDriver.init(r.dut.platform, transportOf(r.dut), withRing(ctx, {}));
      expectEqual(again.dev.config16(NetCfg.MTU), mtu, ['net.device.4'], 'mtu changed across a reset');
    }
    if (has(NetF.RSS) || has(NetF.HASH_REPORT)) expectThat(d.config8(NetCfg.RSS_MAX_KEY_SIZE) >= 40, ['net.device.7'], 'rss_max_key_size below 40', '>= 40', `${d.config8(NetCfg.RSS_MAX_KEY_SIZE)}`);
    if (has(NetF.RSS)) expectThat(d.config16(NetCfg.RSS_MAX_INDIRECTION_TABLE_LENGTH) >= 128, ['net.device.8'], 'rss_max_indirection_table_length below 128', '>= 128', `${d.config16(NetCfg.RSS_MAX_INDIRECTION_TABLE_LENGTH)}`);
    if (has(NetF.SPEED_DUPLEX)) {
      const sp = d.config32(NetCfg.SPEED) >>> 0;
      expectThat(sp <= 0x7fffffff || sp === 0xffffffff, ['net.device.10'], 'speed out of range', '0..0x7fffffff or 0xffffffff', `0x${sp.toString(16)}`);
      const du = d.config8(NetCfg.DUPLEX);
      expectThat(du === 0 || du === 1 || du === 0xff, ['net.device.11'], 'duplex out of range', '0, 1 or 0xff', `${du}`);
    }
  },
});

defineCheck({
  id: 'net.device.tx-header',
  title: 'transmit: unknown flags ignored, csum fields unused without NEEDS_CSUM, hdr_len not trusted, contradictory tunnel GSO refused, checksums not assumed',
  statements: ['net.device.15', 'net.device.16', 'net.device.21', 'net.device.22', 'net.device.23', 'net.device.24', 'net.device.25'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'] },
  run(ctx) {
    const r = rig(ctx);
    const has = (b: number) => hasFeature(r.drv.features, b);
    // net.device.15: an unknown flag bit alone changes nothing.
    const plain = tcpTo(PEER, 200, 'full', 2000, r.drv.mac).frame;
    rawTransmit(r, hdr(r, { flags: has(NetF.CSUM) ? 0x80 : 0 }), plain);
    expectThat(r.wire.length === 1 && same(normalize(r.wire[0]!)[0]!, plain), ['net.device.15'], 'a frame with an unknown flag bit did not go out unchanged', '1 identical frame', `${r.wire.length} frame(s)`);
    // net.device.16 / .25: garbage csum fields without NEEDS_CSUM, and a wrong checksum: passed on as is, not vouched for.
    r.wire.length = 0;
    const bad = tcpTo(PEER, 200, 'full', 2000, r.drv.mac).frame;
    bad[bad.length - 1]! ^= 0x5a;
    rawTransmit(r, hdr(r, { csumStart: 14, csumOffset: 2 }), bad);
    expectThat(r.wire.length === 1 && same(normalize(r.wire[0]!)[0]!, bad), ['net.device.16'], 'csum_start/csum_offset were used without NEEDS_CSUM (the frame changed)');
    expectThat(!r.wire[0]!.dataValid, ['net.device.25'], 'a frame without NEEDS_CSUM was passed on as checksum-verified');
    if (has(NetF.HOST_TSO4)) {
      // net.device.21: a lying hdr_len must not break segmentation.
      r.wire.length = 0;
      const big = tcpTo(PEER, 6000, 'partial', 2000, r.drv.mac);
      rawTransmit(r, hdr(r, { flags: NetHdr.F_NEEDS_CSUM, gsoType: NetHdr.GSO_TCPV4, gsoSize: 1000, hdrLen: 7, csumStart: big.csumStart, csumOffset: big.csumOffset }), big.frame);
      const segs = r.wire.flatMap((wf) => normalize(wf));
      expectEqual(segs.length, 6, ['net.device.21'], 'segments of a 6000-byte TSO frame with a lying hdr_len');
      for (const s of segs) {
        const ck = verifyChecksums(s);
        expectThat(ck.ip && ck.l4, ['net.device.21'], 'a segment has a bad checksum');
      }
      if (r.drv.hdrLen >= 24) {
        // net.device.23: without a tunnel bit, outer_th_offset / inner_nh_offset are not used.
        r.wire.length = 0;
        rawTransmit(r, hdr(r, { flags: NetHdr.F_NEEDS_CSUM, gsoType: NetHdr.GSO_TCPV4, gsoSize: 1000, csumStart: big.csumStart, csumOffset: big.csumOffset, outerTh: 20, innerNh: 3 }), big.frame);
        const s2 = r.wire.flatMap((wf) => normalize(wf));
        expectThat(s2.length === 6 && s2.every((x) => verifyChecksums(x).l4), ['net.device.23'], 'a TSO frame without tunnel bits was affected by the tunnel offset fields', '6 good segments', `${s2.length}`);
      }
    }
    // net.device.22 / .24: contradictory UDP-tunnel GSO is refused.
    for (const [what, h, id] of [
      ['both tunnel bits', hdr(r, { flags: 1, gsoType: NetHdr.GSO_TCPV4 | NetHdr.GSO_UDP_TUNNEL_IPV4 | NetHdr.GSO_UDP_TUNNEL_IPV6, gsoSize: 1000, csumStart: 34, csumOffset: 16 }), 'net.device.22'],
      ['a tunnel bit without NEEDS_CSUM', hdr(r, { gsoType: NetHdr.GSO_TCPV4 | NetHdr.GSO_UDP_TUNNEL_IPV4, gsoSize: 1000 }), 'net.device.24'],
      ['a tunnel bit with GSO_NONE', hdr(r, { flags: 1, gsoType: NetHdr.GSO_UDP_TUNNEL_IPV4, csumStart: 34, csumOffset: 16 }), 'net.device.24'],
    ] as const) {
      r.wire.length = 0;
      rawTransmit(r, h, tcpTo(PEER, 3000, 'partial', 2000, r.drv.mac).frame);
      expectEqual(r.wire.length, 0, [id], `a packet with ${what} was transmitted`);
    }
  },
});

defineCheck({
  id: 'net.device.mtu',
  title: 'with MTU negotiated: frames up to mtu + Ethernet header go out whole; longer ones are not delivered',
  statements: ['net.device.5', 'net.device.6'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'], features: [NetF.MTU] },
  run(ctx) {
    const r = rigWith(ctx, NetF.MTU, 'MTU', { mtu: 1280 });
    const mtu = r.drv.mtu;
    const f = buildEthernet({ dst: PEER, src: r.drv.mac }, 0x88b5, new Uint8Array(mtu));
    r.drv.send(f);
    r.run();
    expectThat(r.wire.length === 1 && r.wire[0]!.data.length === mtu + 14 && !r.wire[0]!.gso, ['net.device.6'], 'a frame of mtu + 14 bytes did not go out whole', `1 frame of ${mtu + 14} bytes`, r.wire.map((w) => w.data.length).join(',') || 'nothing');
    r.inject(buildEthernet({ dst: r.drv.mac, src: PEER }, 0x88b5, new Uint8Array(mtu + 100)));
    r.inject(buildEthernet({ dst: r.drv.mac, src: PEER }, 0x88b5, new Uint8Array(mtu)));
    r.run();
    const got = r.received();
    const tooLong = got.filter((x) => x.gsoType === 0 && x.data.length > mtu + 14).length + r.drv.deviceErrors.filter((e) => e.id === 'net.device.5').length;
    expectEqual(tooLong, 0, ['net.device.5'], 'frames longer than mtu + 14 delivered');
    expectEqual(got.length, 1, ['net.device.5'], 'frames delivered (the mtu-sized one only)');
  },
});

const rxFeatures = fc.record({ mrg: fc.boolean(), guestCsum: fc.boolean(), guestTso: fc.boolean(), hash: fc.boolean(), ecn: fc.boolean(), tunnel: fc.boolean() });
const rxFrameKind = fc.array(fc.record({ kind: fc.constantFrom('plain', 'partial', 'gso', 'gso-ecn', 'badsum', 'small', 'vxlan'), size: fc.integer({ min: 0, max: 1400 }), gsoSize: fc.integer({ min: 500, max: 1400 }), gsoLen: fc.integer({ min: 1500, max: 30000 }) }), { minLength: 1, maxLength: 8 });

defineCheck({
  id: 'net.device.rx-header',
  title: 'receive headers follow the negotiated features: num_buffers, flags, gso_type, gso_size, checksums, no tunnel/RSC/IPsec bits',
  statements: ['net.device.27', 'net.device.28', 'net.device.29', 'net.device.30', 'net.device.31', 'net.device.32', 'net.device.33', 'net.device.35', 'net.device.42', 'net.device.50', 'net.device.51', 'net.device.52', 'net.device.64', 'net.device.65', 'net.device.68', 'net.device.71', 'net.device.36', 'net.device.37', 'net.device.38', 'net.device.39', 'net.device.40', 'net.device.46', 'net.device.47', 'net.device.48', 'net.device.49', 'net.device.53', 'net.device.54', 'net.device.55', 'net.device.56', 'net.device.58', 'net.device.61', 'net.device.62', 'net.device.67', 'net.device.70'],
  side: 'device',
  kind: 'property',
  applies: { devices: ['net'] },
  run(ctx) {
    type Feat = { mrg: boolean; guestCsum: boolean; guestTso: boolean; hash: boolean; ecn: boolean; tunnel: boolean };
    type Fr = { kind: string; size: number; gsoSize: number; gsoLen: number };
    // A fixed case first (every offload on, one frame of each kind), then random ones.
    const fixed: [Feat, Fr[]] = [
      { mrg: true, guestCsum: true, guestTso: true, hash: true, ecn: true, tunnel: true },
      ['plain', 'partial', 'gso', 'gso-ecn', 'badsum', 'small', 'vxlan'].map((kind) => ({ kind, size: 700, gsoSize: 1000, gsoLen: 7000 })),
    ];
    const one = (feat: Feat, frames: Fr[]) => {
      let f = NET_DRIVER_FEATURES & ~[NetF.MRG_RXBUF, NetF.GUEST_CSUM, NetF.GUEST_TSO4, NetF.GUEST_TSO6, NetF.HASH_REPORT, NetF.GUEST_ECN, NetFx.GUEST_UDP_TUNNEL_GSO].reduce((s, b) => s | bit(b), 0n);
      if (feat.ecn) f |= bit(NetF.GUEST_ECN);
      if (feat.tunnel) f |= bit(NetFx.GUEST_UDP_TUNNEL_GSO);
      if (feat.mrg) f |= bit(NetF.MRG_RXBUF);
      if (feat.guestCsum) f |= bit(NetF.GUEST_CSUM);
      if (feat.guestTso) f |= bit(NetF.GUEST_TSO4) | bit(NetF.GUEST_TSO6);
      if (feat.hash) f |= bit(NetF.HASH_REPORT);
      const r = rig(ctx, {}, { features: f, rxBufferSize: feat.mrg ? 600 : undefined, rxBuffers: 64 });
      const has = (b: number) => hasFeature(r.drv.features, b);
      let expectBytes = 0;
      for (const fr of frames) {
        if (fr.kind === 'vxlan') {
          // a VXLAN super-frame: inner TCP of fr.gsoLen bytes, partial inner checksum, outer UDP checksum 0
          const inner = buildL4Frame({ eth: { dst: macFromString('02:cc:00:00:00:01'), src: macFromString('02:cc:00:00:00:02') }, src: ip4FromString('172.16.1.1'), dst: ip4FromString('172.16.1.2'), proto: 'tcp', srcPort: 1, dstPort: 2, csum: 'partial' }, new Uint8Array(fr.gsoLen).map((_, i) => i & 0xff));
          const data = buildVxlan({ eth: { dst: r.drv.mac, src: PEER }, src: ip4FromString('10.9.0.2'), dst: ip4FromString('10.9.0.1') }, inner.frame);
          const v = vxlanOffsets(data)!;
          const il = parseIp(data, v.innerNh);
          r.inject({ data, csum: { start: il.l4, offset: 16 }, gso: { type: NetHdr.GSO_TCPV4, size: fr.gsoSize, hdrLen: il.headerLen, tunnel: { outerTh: v.outerTh, innerNh: v.innerNh } } });
          expectBytes += fr.gsoLen;
        } else if (fr.kind === 'gso' || fr.kind === 'gso-ecn') {
          const t = tcpTo(r.drv.mac, fr.gsoLen, 'partial');
          if (fr.kind === 'gso-ecn') {
            // CWR set: ECN in use on this flow (the pseudo-header sum does not cover the flags)
            t.frame[t.l4 + 13]! |= 0x80;
          }
          r.inject({ data: t.frame, csum: { start: t.csumStart, offset: t.csumOffset }, gso: { type: NetHdr.GSO_TCPV4, size: fr.gsoSize, hdrLen: t.l4 + 20 } });
          expectBytes += fr.gsoLen;
        } else if (fr.kind === 'partial') {
          const t = tcpTo(r.drv.mac, fr.size, 'partial');
          r.inject({ data: t.frame, csum: { start: t.csumStart, offset: t.csumOffset } });
          expectBytes += fr.size;
        } else if (fr.kind === 'badsum') {
          const t = tcpTo(r.drv.mac, fr.size + 1).frame;
          t[t.length - 1]! ^= 0xff;
          r.inject(t);
          expectBytes += fr.size + 1;
        } else {
          r.inject(tcpTo(r.drv.mac, fr.kind === 'small' ? 0 : fr.size).frame);
          expectBytes += fr.kind === 'small' ? 0 : fr.size;
        }
        r.run(100_000);
      }
      r.run(300_000);
      // The driver checks what it reads (num_buffers vs buffers used, full buffers, flags and GSO types
      // against the negotiated features) and records each breach with the statement it breaks.
      const e = r.drv.deviceErrors[0];
      if (e) throw new CheckFailure(`the driver saw the device break ${e.id}: ${e.detail}`, { statements: [e.id] });
      let payload = 0;
      for (const x of r.received()) {
        if (!has(NetF.MRG_RXBUF)) expectEqual(x.numBuffers, 1, ['net.device.28', 'net.device.29'], 'num_buffers without MRG_RXBUF');
        expectThat(x.numBuffers >= 1, ['net.device.27', 'net.device.30'], 'num_buffers 0');
        if (!has(NetF.GUEST_CSUM)) expectEqual(x.flags, 0, ['net.device.33'], 'receive flags without GUEST_CSUM');
        expectEqual(x.flags & NetHdr.F_RSC_INFO, 0, ['net.device.58'], 'RSC_INFO set');
        expectEqual(x.flags & 112, 0, ['net.device.67', 'net.device.68', 'net.device.70', 'net.device.71'], 'SECURITY / SECURITY_ERR / SA_SOFT_EXPIRY_WARN set without IPsec');
        if (!has(NetFx.GUEST_UDP_TUNNEL_GSO)) expectEqual(x.gsoType & 0x60, 0, ['net.device.39', 'net.device.49', 'net.device.53'], 'UDP tunnel gso_type bits without GUEST_UDP_TUNNEL_GSO');
        if (x.gsoType & 0x60) expectEqual(x.flags & NetHdr.F_DATA_VALID, 0, ['net.device.62'], 'DATA_VALID with a tunnel gso_type');
        if (!has(NetFx.GUEST_UDP_TUNNEL_GSO_CSUM)) expectEqual(x.flags & NetHdr.F_UDP_TUNNEL_CSUM, 0, ['net.device.40'], 'UDP_TUNNEL_CSUM without GUEST_UDP_TUNNEL_GSO_CSUM');
        const base = x.gsoType & 0x1f;
        if (!has(NetF.GUEST_TSO4) && !has(NetF.GUEST_TSO6)) expectEqual(base, NetHdr.GSO_NONE, ['net.device.54'], 'gso_type without guest GSO features');
        if (base === NetHdr.GSO_TCPV4) expectThat(has(NetF.GUEST_TSO4), ['net.device.35'], 'GSO_TCPV4 without GUEST_TSO4');
        if (base === NetHdr.GSO_TCPV6) expectThat(has(NetF.GUEST_TSO6), ['net.device.37'], 'GSO_TCPV6 without GUEST_TSO6');
        expectThat(base !== NetHdr.GSO_UDP, ['net.device.36'], 'GSO_UDP delivered');
        expectThat(base !== NetHdr.GSO_UDP_L4, ['net.device.38'], 'GSO_UDP_L4 delivered');
        if (base !== NetHdr.GSO_NONE) {
          const i0 = parseFrame(x.data);
          if (i0.l4 >= 0 && x.data[i0.l4 + 13]! & 0x80) expectThat(has(NetF.GUEST_ECN) && (x.gsoType & NetHdr.GSO_ECN) !== 0, ['net.device.42'], 'a GSO frame carrying ECN (CWR) without GSO_ECN', 'GUEST_ECN negotiated and GSO_ECN set', `gso_type 0x${x.gsoType.toString(16)}`);
          expectThat((x.flags & NetHdr.F_NEEDS_CSUM) !== 0, ['net.device.55'], 'GSO without NEEDS_CSUM');
          expectThat(x.gsoSize > 0, ['net.device.56'], 'GSO with gso_size 0');
        }
        const tun = x.gsoType & 0x60;
        const vx = vxlanOffsets(x.data);
        if (tun) {
          expectThat(has(NetFx.GUEST_UDP_TUNNEL_GSO), ['net.device.49'], 'UDP-tunnel GSO without GUEST_UDP_TUNNEL_GSO');
          expectThat(vx !== null && x.outerTh === vx.outerTh && x.innerNh === vx.innerNh, ['net.device.51'], 'outer_th_offset / inner_nh_offset do not match the frame', vx ? `${vx.outerTh}/${vx.innerNh}` : 'a VXLAN frame', `${x.outerTh}/${x.innerNh}`);
          expectEqual(tun, vx!.innerIpVersion === 6 ? NetHdr.GSO_UDP_TUNNEL_IPV6 : NetHdr.GSO_UDP_TUNNEL_IPV4, ['net.device.50'], 'tunnel bit of the inner IP version', true);
          const o = parseFrame(x.data);
          const oc = (x.data[o.l4 + 6]! << 8) | x.data[o.l4 + 7]!;
          if (x.flags & NetHdr.F_UDP_TUNNEL_CSUM) {
            const oph = csumFold(pseudoHeaderSum(x.data, o.l3, o.ipVersion === 6, 17, (x.data[o.l4 + 4]! << 8) | x.data[o.l4 + 5]!));
            expectEqual(oc, oph, ['net.device.64'], 'outer UDP checksum with UDP_TUNNEL_CSUM (the pseudo-header sum)', true);
          } else {
            expectThat(oc === 0 || verifyChecksums(x.data, o).l4, ['net.device.52', 'net.device.65'], 'the outer UDP checksum of a tunnel GSO frame needs offload', '0 or complete', `0x${oc.toString(16)}`);
          }
        }
        const innerAt = tun ? x.innerNh : -1;
        const info0 = innerAt >= 0 ? parseIp(x.data, innerAt) : vx ? parseIp(x.data, vx.innerNh) : parseFrame(x.data);
        const data = completeReceived(x);
        if (x.flags & NetHdr.F_NEEDS_CSUM) {
          expectThat(x.csumStart === info0.l4 && x.csumOffset === 16, ['net.device.46'], 'NEEDS_CSUM does not point at the TCP checksum', `${info0.l4}/16`, `${x.csumStart}/${x.csumOffset}`);
          const segs = base !== NetHdr.GSO_NONE ? normalize({ data, gso: { type: base, size: x.gsoSize, hdrLen: 0, ...(tun ? { tunnel: { outerTh: x.outerTh, innerNh: x.innerNh } } : {}) } }) : [data];
          for (const s of segs) {
            const si = vx ? parseIp(s, vx.innerNh) : parseFrame(s);
            expectThat(verifyChecksums(s, si).l4, ['net.device.47', 'net.device.48'], 'completing the partial checksum does not give a valid one');
          }
        }
        if (x.flags & NetHdr.F_DATA_VALID) {
          const si = vx ? parseIp(data, vx.innerNh) : parseFrame(data);
          expectThat(verifyChecksums(data, si).l4 && verifyChecksums(data, si).ip, ['net.device.61'], 'DATA_VALID on a frame whose checksum is wrong');
        }
        const info = vx ? parseIp(data, vx.innerNh) : parseFrame(data);
        payload += info.ipEnd - info.headerLen;
      }
      expectEqual(payload, expectBytes, ['net.device.27', 'net.device.31', 'net.device.32'], 'payload bytes received');
    };
    one(...fixed);
    checkProperty(ctx, ['net.device.27'], [rxFeatures, rxFrameKind], (feat, frames) => one(feat, frames));
  },
});

defineCheck({
  id: 'net.device.rx-filter',
  title: 'CTRL_RX modes, the MAC table (empty after reset, in force before the command completes), MAC_ADDR_SET, VLAN filtering',
  statements: ['net.device.76', 'net.device.80', 'net.device.89', 'net.device.90', 'net.device.91', 'net.device.93', 'net.device.94'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'], features: [NetF.CTRL_RX] },
  run(ctx) {
    const r = rig(ctx);
    const has = (b: number) => hasFeature(r.drv.features, b);
    if (!has(NetF.CTRL_RX)) throw new CheckSkip('CTRL_RX not negotiated');
    const other = macFromString('52:54:00:aa:aa:aa');
    const multi = macFromString('01:00:5e:00:00:07');
    const arrives = (dst: Uint8Array, vlan?: number): boolean => {
      r.received();
      r.inject(buildEthernet({ dst, src: PEER, vlan }, 0x88b5, new Uint8Array(46)));
      r.run(100_000);
      return r.received().length === 1;
    };
    expectThat(!arrives(other), ['net.device.76'], 'a unicast frame for another MAC arrived outside promiscuous mode');
    r.drv.setPromisc(true);
    expectThat(arrives(other), ['net.device.76'], 'PROMISC on: a frame for another MAC did not arrive');
    r.drv.setPromisc(false);
    r.drv.setAllMulti(false);
    expectThat(!arrives(multi), ['net.device.76'], 'ALLMULTI off: a multicast frame not in the table arrived');
    r.drv.setAllMulti(true);
    expectThat(arrives(multi), ['net.device.76'], 'ALLMULTI on: a multicast frame did not arrive');
    if (has(NetF.CTRL_RX_EXTRA)) {
      r.drv.setRxMode(NetCtrl.RX_NOBCAST, true);
      expectThat(!arrives(BROADCAST), ['net.device.80'], 'NOBCAST on: broadcast arrived');
      r.drv.setRxMode(NetCtrl.RX_NOBCAST, false);
      r.drv.setRxMode(NetCtrl.RX_ALLUNI, true);
      expectThat(arrives(other), ['net.device.80'], 'ALLUNI on: unicast for another MAC did not arrive');
      r.drv.setRxMode(NetCtrl.RX_NOUNI, true);
      expectThat(!arrives(r.drv.mac), ['net.device.80'], 'NOUNI on: unicast arrived');
      r.drv.setRxMode(NetCtrl.RX_NOUNI, false);
      r.drv.setRxMode(NetCtrl.RX_ALLUNI, false);
      r.drv.setRxMode(NetCtrl.RX_NOMULTI, true);
      expectThat(!arrives(multi), ['net.device.80'], 'NOMULTI on: multicast arrived');
      r.drv.setRxMode(NetCtrl.RX_NOMULTI, false);
    }
    // net.device.90: the table is in force as soon as the command is used (no time passes in between).
    r.drv.setMacTable([other], []);
    r.received();
    r.inject(buildEthernet({ dst: other, src: PEER }, 0x88b5, new Uint8Array(46)));
    r.run(100_000);
    expectEqual(r.received().length, 1, ['net.device.90'], 'frames for a MAC just put in the table');
    if (has(NetF.CTRL_MAC_ADDR)) {
      const nm = macFromString('52:54:00:bb:bb:01');
      r.drv.setMac(nm);
      const cfg = Array.from({ length: 6 }, (_, i) => r.drv.dev.config8(NetCfg.MAC + i));
      if (has(NetF.MAC)) expectThat(same(new Uint8Array(cfg), nm), ['net.device.91'], 'config mac not updated by MAC_ADDR_SET', macToString(nm), macToString(new Uint8Array(cfg)));
      expectThat(arrives(nm), ['net.device.91'], 'frames to the address set by MAC_ADDR_SET do not arrive');
    }
    if (has(NetF.CTRL_VLAN)) {
      expectThat(!arrives(r.drv.mac, 42), ['net.device.94'], 'a frame of a VLAN not in the table arrived');
      r.drv.vlan(true, 42);
      expectThat(arrives(r.drv.mac, 42), ['net.device.94'], 'a frame of a VLAN in the table did not arrive');
    }
    // net.device.89: after a reset the MAC table is empty again.
    r.drv.shutdown();
    const d2 = VirtioNetDriver.init(r.dut.platform, transportOf(r.dut), withRing(ctx, {}));
    const got: RxFrame[] = [];
    d2.onReceive((f) => got.push(f));
    r.inject(buildEthernet({ dst: other, src: PEER }, 0x88b5, new Uint8Array(46)));
    d2.run(200_000);
    expectEqual(got.length, 0, ['net.device.89'], 'a frame for a MAC of the old table arrived after reset');
    // net.device.93: without CTRL_VLAN every tag passes.
    d2.shutdown();
    const d3 = VirtioNetDriver.init(r.dut.platform, transportOf(r.dut), withRing(ctx, { features: NET_DRIVER_FEATURES & ~bit(NetF.CTRL_VLAN) }));
    const got3: RxFrame[] = [];
    d3.onReceive((f) => got3.push(f));
    r.inject(buildEthernet({ dst: d3.mac, src: PEER, vlan: 77 }, 0x88b5, new Uint8Array(46)));
    d3.run(200_000);
    expectEqual(got3.length, 1, ['net.device.93'], 'VLAN-tagged frames without CTRL_VLAN');
  },
});

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
  id: 'net.device.stats',
  title: 'STATS_QUERY answers; STATS_GET replies carry type, vq_index and their size, fail whole on any bad entry, never overrun the buffer',
  statements: ['net.device.114', 'net.device.115', 'net.device.116', 'net.device.117', 'net.device.118', 'net.device.119'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'], features: [NetF.DEVICE_STATS] },
  run(ctx) {
    const r = rigWith(ctx, NetF.DEVICE_STATS, 'DEVICE_STATS');
    const q = r.drv.command(NetCtrl.CLASS_STATS, NetCtrl.STATS_QUERY, new Uint8Array(0), 8);
    expectThat(q.ack === NetCtrl.OK && q.result.length === 8, ['net.device.114'], 'STATS_QUERY reply', 'OK + 8 bytes', `ack ${q.ack}, ${q.result.length} bytes`);
    const supported = r.drv.statsQuery();
    expectThat(supported.includes(StatsType.RX_BASIC) && supported.includes(StatsType.TX_BASIC), ['net.device.114'], 'basic statistics not reported as supported');
    r.inject(udpTo(r.drv.mac, 50));
    r.run();
    const entry = (vq: number, lo: number, hi = 0) => {
      const b = new Uint8Array(16);
      const v = new DataView(b.buffer);
      v.setUint16(0, vq, true);
      v.setUint32(8, lo, true);
      v.setUint32(12, hi, true);
      return b;
    };
    const two = new Uint8Array([...entry(0, 1 << StatsType.RX_BASIC), ...entry(1, 1 << StatsType.TX_BASIC)]);
    const ok = r.drv.command(NetCtrl.CLASS_STATS, NetCtrl.STATS_GET, two, 200);
    expectEqual(ok.ack, NetCtrl.OK, ['net.device.114'], 'STATS_GET of basic statistics');
    const rv = new DataView(ok.result.buffer, ok.result.byteOffset, ok.result.byteLength);
    expectEqual(ok.result[0], StatsType.RX_BASIC, ['net.device.118'], 'first reply type');
    expectEqual(rv.getUint16(2, true), 0, ['net.device.118'], 'first reply vq_index');
    const s0 = rv.getUint16(6, true);
    expectEqual(s0, 8 + 6 * 8, ['net.device.117'], 'size of an rx basic reply');
    expectEqual(ok.result[s0], StatsType.TX_BASIC, ['net.device.118'], 'second reply type');
    expectEqual(rv.getUint16(s0 + 2, true), 1, ['net.device.118'], 'second reply vq_index');
    expectEqual(Number(rv.getBigUint64(16, true)), 1, ['net.device.114'], 'rx_packets after one frame');
    // A short buffer: only whole valid bytes, nothing past it.
    const short = r.drv.command(NetCtrl.CLASS_STATS, NetCtrl.STATS_GET, two, 20);
    expectThat(short.result.length <= 20 && same(short.result, ok.result.subarray(0, short.result.length)), ['net.device.119'], 'a short result buffer got bytes that are not the reply prefix');
    for (const [what, bad] of [
      ['vq_index out of range', new Uint8Array([...entry(0, 1), ...entry(999, 1)])],
      ['an unknown type', new Uint8Array([...entry(0, 1), ...entry(0, 1 << 12)])],
      ['a type invalid for the queue', new Uint8Array([...entry(0, 1), ...entry(1, 1 << StatsType.RX_BASIC)])],
    ] as const) {
      const res = r.drv.command(NetCtrl.CLASS_STATS, NetCtrl.STATS_GET, bad, 200);
      expectEqual(res.ack, NetCtrl.ERR, ['net.device.115'], `STATS_GET with ${what}`);
      expectEqual(res.result.length, 0, ['net.device.116'], `a failed STATS_GET (${what}) still returned replies`);
    }
  },
});

// ---------------------------------------------------------------------------- driver side

/** The reference driver on a strict (checking) device; returns it and a function that fails on any recorded breach. */
function strictRig(ctx: TargetContext, dev: NetDeviceOptions = {}, drv: NetDriverOptions = {}): Rig & { verdict(ids?: readonly string[]): void } {
  if (!ctx.target.runsDriverChecks) throw new CheckSkip('driver checks need pvkit\'s checking device');
  const r = rig(ctx, { strict: true, ...dev }, drv);
  return Object.assign(r, {
    verdict(ids?: readonly string[]) {
      const v = r.nic.violations.find((x) => !ids || ids.includes(x.id));
      if (v) throw new CheckFailure(`the checking device saw the driver break ${v.id}: ${v.detail}`, { statements: [v.id] });
    },
  });
}

const TX_IDS = ['net.driver.29', 'net.driver.32', 'net.driver.33', 'net.driver.34', 'net.driver.35', 'net.driver.37', 'net.driver.51', 'net.driver.53', 'net.driver.54', 'net.driver.55', 'net.driver.48', 'net.driver.62', 'net.driver.9', 'net.driver.15', 'net.driver.16', 'net.driver.17', 'net.driver.21', 'net.driver.23', 'net.driver.25', 'net.driver.27', 'net.driver.31', 'net.driver.36', 'net.driver.38', 'net.driver.39', 'net.driver.40', 'net.driver.42', 'net.driver.43', 'net.driver.44', 'net.driver.45', 'net.driver.46', 'net.driver.47', 'net.driver.56', 'net.driver.57', 'net.driver.59', 'net.driver.60', 'net.driver.61', 'net.driver.66', 'net.driver.91', 'net.driver.92'] as const;

defineCheck({
  id: 'net.driver.tx-header',
  title: 'transmit headers: size per features, num_buffers 0, flags/gso_type only as negotiated, NEEDS_CSUM with the pseudo-header sum at the right place, GSO with gso_size; MTU respected',
  statements: ['net.driver.29', 'net.driver.32', 'net.driver.33', 'net.driver.34', 'net.driver.35', 'net.driver.37', 'net.driver.51', 'net.driver.53', 'net.driver.54', 'net.driver.55', 'net.driver.48', 'net.driver.62', 'net.driver.9', 'net.driver.15', 'net.driver.16', 'net.driver.17', 'net.driver.21', 'net.driver.23', 'net.driver.25', 'net.driver.27', 'net.driver.31', 'net.driver.36', 'net.driver.38', 'net.driver.39', 'net.driver.40', 'net.driver.42', 'net.driver.43', 'net.driver.44', 'net.driver.45', 'net.driver.46', 'net.driver.47', 'net.driver.56', 'net.driver.57', 'net.driver.59', 'net.driver.60', 'net.driver.61', 'net.driver.66', 'net.driver.91', 'net.driver.92'],
  side: 'driver',
  kind: 'property',
  applies: { devices: ['net'] },
  run(ctx) {
    const feats = fc.record({ csum: fc.boolean(), tso: fc.boolean(), hash: fc.boolean(), mq: fc.boolean(), ecn: fc.boolean() });
    const frames = fc.array(fc.record({ proto: fc.constantFrom('tcp' as const, 'udp' as const), v6: fc.boolean(), size: fc.integer({ min: 0, max: 1400 }), big: fc.integer({ min: 0, max: 40000 }), offload: fc.boolean(), cwr: fc.boolean() }), { minLength: 1, maxLength: 10 });
    // A fixed case first: everything offered, one TSO frame carrying ECN (CWR).
    {
      const r = strictRig(ctx, {}, {});
      const e = buildL4Frame({ eth: { dst: PEER, src: r.drv.mac }, src: ip4FromString('10.9.0.1'), dst: ip4FromString('10.9.0.2'), proto: 'tcp', srcPort: 5, dstPort: 6, csum: 'partial', tcpFlags: 0x80 | 0x10 }, new Uint8Array(5000));
      r.drv.send(e.frame, { gso: { type: NetHdr.GSO_TCPV4, size: 1200 } });
      // UDP-tunnel GSO (VXLAN) with inner TCP over IPv4 and IPv6 and inner UDP, with and without outer checksum offload.
      for (const [v6, proto] of [[false, 'tcp'], [true, 'tcp'], [false, 'udp']] as const) {
        const inner = buildL4Frame({ eth: { dst: macFromString('02:cc:00:00:00:01'), src: macFromString('02:cc:00:00:00:02') }, v6, src: v6 ? new Uint8Array(16).fill(5) : ip4FromString('172.16.2.1'), dst: v6 ? new Uint8Array(16).fill(6) : ip4FromString('172.16.2.2'), proto, srcPort: 9, dstPort: 10, csum: 'partial' }, new Uint8Array(4100));
        const vx = buildVxlan({ eth: { dst: PEER, src: r.drv.mac }, src: ip4FromString('10.9.0.1'), dst: ip4FromString('10.9.0.2') }, inner.frame);
        r.drv.send(vx, { gso: { type: proto === 'udp' ? NetHdr.GSO_UDP_L4 : v6 ? NetHdr.GSO_TCPV6 : NetHdr.GSO_TCPV4, size: 1000, tunnel: true } });
      }
      r.drv.flushTx();
      r.verdict(TX_IDS);
      const noCsum = strictRig(ctx, {}, { features: NET_DRIVER_FEATURES & ~bit(NetFx.HOST_UDP_TUNNEL_GSO_CSUM) });
      const inner = buildL4Frame({ eth: { dst: macFromString('02:cc:00:00:00:01'), src: macFromString('02:cc:00:00:00:02') }, src: ip4FromString('172.16.2.1'), dst: ip4FromString('172.16.2.2'), proto: 'tcp', srcPort: 9, dstPort: 10, csum: 'partial' }, new Uint8Array(3500));
      noCsum.drv.send(buildVxlan({ eth: { dst: PEER, src: noCsum.drv.mac }, src: ip4FromString('10.9.0.1'), dst: ip4FromString('10.9.0.2') }, inner.frame), { gso: { type: NetHdr.GSO_TCPV4, size: 1000, tunnel: true } });
      noCsum.drv.flushTx();
      noCsum.verdict(TX_IDS);
      for (const wf of [...r.wire, ...noCsum.wire]) for (const s of normalize(wf)) {
        const v = vxlanOffsets(s);
        if (v) expectThat(verifyChecksums(s, parseIp(s, v.innerNh)).l4, ['net.driver.51', 'net.driver.43'], 'a tunnelled segment has a bad inner checksum after offload');
      }
    }
    checkProperty(ctx, ['net.driver.15'], [feats, frames], (fe, list) => {
      let f = NET_DRIVER_FEATURES & ~[NetF.CSUM, NetF.HOST_TSO4, NetF.HOST_TSO6, NetF.HASH_REPORT, NetF.MQ, NetF.HOST_ECN].reduce((s, b) => s | bit(b), 0n);
      if (fe.ecn) f |= bit(NetF.HOST_ECN);
      if (fe.csum) f |= bit(NetF.CSUM);
      if (fe.tso) f |= bit(NetF.HOST_TSO4) | bit(NetF.HOST_TSO6);
      if (fe.hash) f |= bit(NetF.HASH_REPORT);
      if (fe.mq) f |= bit(NetF.MQ);
      const r = strictRig(ctx, { maxPairs: 2 }, { features: f });
      for (const x of list) {
        const payload = x.proto === 'tcp' && x.big > 1460 ? x.big : x.size;
        const b = buildL4Frame({ eth: { dst: PEER, src: r.drv.mac }, v6: x.v6, src: x.v6 ? new Uint8Array(16).fill(1) : ip4FromString('10.9.0.1'), dst: x.v6 ? new Uint8Array(16).fill(2) : ip4FromString('10.9.0.2'), proto: x.proto, srcPort: 5, dstPort: 6, csum: x.offload || payload > 1400 ? 'partial' : 'full' }, new Uint8Array(payload));
        const l4 = parseFrame(b.frame).l4;
        if (x.cwr && x.proto === 'tcp' && payload > 1400) b.frame[l4 + 13]! |= 0x80;
        const off = payload > 1400 ? { gso: { type: x.v6 ? NetHdr.GSO_TCPV6 : NetHdr.GSO_TCPV4, size: 1200 } } : x.offload ? { csum: { start: b.csumStart, offset: b.csumOffset } } : {};
        while (!r.drv.send(b.frame, off)) r.run(50_000);
      }
      // Always one TSO frame carrying ECN (CWR), so net.driver.29 is exercised whenever HOST_ECN is on.
      const e = buildL4Frame({ eth: { dst: PEER, src: r.drv.mac }, src: ip4FromString('10.9.0.1'), dst: ip4FromString('10.9.0.2'), proto: 'tcp', srcPort: 5, dstPort: 6, csum: 'partial', tcpFlags: 0x80 | 0x10 }, new Uint8Array(5000));
      while (!r.drv.send(e.frame, { gso: { type: NetHdr.GSO_TCPV4, size: 1200 } })) r.run(50_000);
      r.drv.flushTx();
      r.verdict(TX_IDS);
      // What went out is what was sent: every checksum good once the device finished it.
      for (const wf of r.wire) for (const s of normalize(wf)) expectThat(verifyChecksums(s).l4, ['net.driver.43', 'net.driver.44'], 'a transmitted frame has a bad checksum after offload');
    });
  },
});

defineCheck({
  id: 'net.driver.rx-header',
  title: 'receive: unknown flags ignored, csum fields unused without NEEDS_CSUM, hdr_len not trusted, unchecked checksums not assumed, contradictory tunnel headers dropped',
  statements: ['net.driver.68', 'net.driver.71', 'net.driver.73', 'net.driver.74', 'net.driver.75', 'net.driver.76', 'net.driver.77'],
  side: 'driver',
  kind: 'example',
  applies: { devices: ['net'] },
  run(ctx) {
    if (!ctx.target.runsDriverChecks) throw new CheckSkip('driver checks need pvkit\'s checking device');
    let hook: (h: Uint8Array) => void = () => {};
    const r = rig(ctx, { rxHeaderHook: (h) => hook(h) }, {});
    const frame = () => tcpTo(r.drv.mac, 100).frame;
    const deliver = (rewrite: (h: Uint8Array) => void, f = frame()): RxFrame[] => {
      hook = rewrite;
      r.inject(f);
      r.run(100_000);
      hook = () => {};
      return r.received();
    };
    const f1 = frame();
    const a = deliver((h) => (h[0] = h[0]! | 0x80), f1);
    expectThat(a.length === 1 && same(a[0]!.data, f1), ['net.driver.68'], 'a frame with an unknown receive flag bit was not delivered intact');
    const f2 = frame();
    const b = deliver((h) => {
      h[0] = 0;
      h[6] = 20;
      h[8] = 3;
    }, f2);
    expectThat(b.length === 1 && same(completeReceived(b[0]!), f2), ['net.driver.71'], 'csum_start/csum_offset used without NEEDS_CSUM');
    const f3 = frame();
    const c = deliver((h) => {
      h[2] = 0xff;
      h[3] = 0xff;
    }, f3);
    expectThat(c.length === 1 && same(c[0]!.data, f3), ['net.driver.73'], 'a garbage hdr_len changed what was delivered');
    if (r.drv.hdrLen >= 24) {
      const f4 = frame();
      const t = deliver((h) => {
        h[20] = 14;
        h[22] = 34;
      }, f4);
      expectThat(t.length === 1 && t[0]!.outerTh === 0 && t[0]!.innerNh === 0 && same(t[0]!.data, f4), ['net.driver.76'], 'tunnel offsets of a frame without tunnel bits were used');
    }
    const d = deliver((h) => (h[1] = NetHdr.GSO_TCPV4 | NetHdr.GSO_UDP_TUNNEL_IPV4 | NetHdr.GSO_UDP_TUNNEL_IPV6));
    expectEqual(d.length, 0, ['net.driver.75'], 'frames with both tunnel bits delivered');
    const e = deliver((h) => {
      h[0] = 0;
      h[1] = NetHdr.GSO_TCPV4 | NetHdr.GSO_UDP_TUNNEL_IPV4;
    });
    expectEqual(e.length, 0, ['net.driver.77'], 'a tunnel frame without NEEDS_CSUM delivered');
    // net.driver.74: a frame without NEEDS_CSUM/DATA_VALID and a wrong checksum is not accepted by the stack.
    const stack = new GuestIpStack(r.drv, ip4FromString('10.9.0.1'));
    const ping = buildPing({ dst: r.drv.mac, src: PEER }, ip4FromString('10.9.0.2'), stack.ip, 8, 1, 1, new Uint8Array(8));
    ping[ping.length - 1]! ^= 0xff;
    hook = (h) => (h[0] = 0);
    r.inject(ping);
    r.run(100_000);
    expectThat(stack.badChecksums === 1 && stack.echoRequestsAnswered === 0, ['net.driver.74'], 'a frame with a wrong, unvouched checksum was accepted');
  },
});

defineCheck({
  id: 'net.driver.config-buffers',
  title: 'no config writes; the config MAC is used; speed/duplex out of range read as unknown; receive buffers fit the MTU and, mergeable, the header',
  statements: ['net.driver.1', 'net.driver.3', 'net.driver.8', 'net.driver.11', 'net.driver.65'],
  side: 'driver',
  kind: 'example',
  applies: { devices: ['net'] },
  run(ctx) {
    const r = strictRig(ctx, { mtu: 4000, speed: 0x8000_0000, duplex: 7 }, { features: NET_DRIVER_FEATURES & ~bit(NetF.MRG_RXBUF), rxBuffers: 16 });
    r.inject(buildEthernet({ dst: r.drv.mac, src: PEER }, 0x88b5, new Uint8Array(3000)));
    r.run();
    r.verdict(['net.driver.1', 'net.driver.8']);
    const cfg = new Uint8Array(Array.from({ length: 6 }, (_, i) => r.drv.dev.config8(NetCfg.MAC + i)));
    if (hasFeature(r.drv.features, NetF.MAC)) expectThat(same(r.drv.mac, cfg), ['net.driver.3'], 'the driver does not use the config MAC', macToString(cfg), macToString(r.drv.mac));
    if (hasFeature(r.drv.features, NetF.SPEED_DUPLEX)) {
      expectEqual(r.drv.speed, 0xffffffff, ['net.driver.11'], 'speed above 0x7fffffff not read as unknown', true);
      expectEqual(r.drv.duplex, 0xff, ['net.driver.11'], 'duplex 7 not read as unknown', true);
    }
    const m = strictRig(ctx, {}, { features: NET_DRIVER_FEATURES | bit(NetF.MRG_RXBUF) });
    m.inject(buildEthernet({ dst: m.drv.mac, src: PEER }, 0x88b5, new Uint8Array(1400)));
    m.run();
    m.verdict(['net.driver.65']);
    expectEqual(m.received().length, 1, ['net.driver.65'], 'frame over mergeable buffers');
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
  id: 'net.device.stats-wrap',
  title: 'statistics counters wrap around to 0 past 2^64 - 1',
  statements: ['net.device.120'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'], features: [NetF.DEVICE_STATS] },
  run(ctx) {
    const r = rigWith(ctx, NetF.DEVICE_STATS, 'DEVICE_STATS', { mtu: 9000 });
    // White-box: bring rx_bytes of receiveq1 to 2^64 - 2048 (a value a double holds exactly), then receive 2048 bytes.
    r.nic.qstats[0]!.bytes = 2 ** 64 - 2048;
    r.inject(buildEthernet({ dst: r.drv.mac, src: PEER }, 0x88b5, new Uint8Array(2048 - 14)));
    r.run();
    expectEqual(r.received().length, 1, ['net.device.120'], 'frames received');
    const [rx] = r.drv.statsGet(0, [StatsType.RX_BASIC]);
    expectEqual(rx?.counters[2], 0, ['net.device.120'], 'rx_bytes after passing 2^64 - 1');
    r.inject(buildEthernet({ dst: r.drv.mac, src: PEER }, 0x88b5, new Uint8Array(100 - 14)));
    r.run();
    const [rx2] = r.drv.statsGet(0, [StatsType.RX_BASIC]);
    expectEqual(rx2?.counters[2], 100, ['net.device.120'], 'rx_bytes counting on from 0 after the wrap');
  },
});

// ---------------------------------------------------------------------------- OUT_NET_HEADER

const OUT_NET = bit(NetFx.OUT_NET_HEADER);

/** A 32-byte header with outer_nh_offset set (the rest as hdr() builds it). */
function hdrOuter(r: Rig, outerNh: number, f: Parameters<typeof hdr>[1] = {}): Uint8Array {
  const h = hdr(r, f);
  if (h.length < NetHdr.OFF_OUTER_NH + 2) throw new CheckFailure(`header of ${h.length} bytes with OUT_NET_HEADER negotiated (32 expected)`, { statements: ['net.driver.66'] });
  new DataView(h.buffer).setUint16(NetHdr.OFF_OUTER_NH, outerNh, true);
  return h;
}

defineCheck({
  id: 'net.device.out-net-header',
  title: 'OUT_NET_HEADER: a zero outer_nh_offset on transmit is not used; on receive it is set only for frames with an IP header, and then names it',
  statements: ['net.device.18', 'net.device.44'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'] },
  run(ctx) {
    const r = rigWith(ctx, NetFx.OUT_NET_HEADER, 'OUT_NET_HEADER', {}, { features: NET_DRIVER_FEATURES | OUT_NET });
    // net.device.44: an IP frame (TCP), a non-IP frame and an ARP-typed frame from the wire.
    const ipFrame = tcpTo(r.drv.mac, 300).frame;
    const other = buildEthernet({ dst: r.drv.mac, src: PEER }, 0x88b5, new Uint8Array(60).fill(0x45));
    const arp = buildEthernet({ dst: r.drv.mac, src: PEER }, 0x0806, new Uint8Array(28).fill(0x60));
    for (const f of [ipFrame, other, arp]) r.inject(f);
    r.run(300_000);
    const e = r.drv.deviceErrors.find((x) => x.id === 'net.device.44');
    if (e) throw new CheckFailure(`the driver saw the device break net.device.44: ${e.detail}`, { statements: ['net.device.44'] });
    const got = r.received();
    expectEqual(got.length, 3, ['net.device.44'], 'frames delivered (one IP, two non-IP)');
    for (const g of got) {
      const info = parseFrame(g.data);
      const ok = info.ipVersion === 0 ? g.outerNh === 0 : g.outerNh === 0 || g.outerNh === info.l3;
      expectThat(ok, ['net.device.44'], 'outer_nh_offset does not name a valid network header', info.ipVersion === 0 ? '0 (no IP header)' : `0 or ${info.l3}`, `${g.outerNh}`);
    }
    // net.device.18: with outer_nh_offset 0 the device must not take it as the network header:
    // a plain frame, a checksum-offload frame and a TSO frame all leave intact.
    const plain = tcpTo(PEER, 200, 'full', 2000, r.drv.mac).frame;
    const partial = tcpTo(PEER, 400, 'partial', 2000, r.drv.mac);
    const big = tcpTo(PEER, 3000, 'partial', 2000, r.drv.mac);
    const sends: [string, Uint8Array, Uint8Array][] = [
      ['plain', hdrOuter(r, 0), plain],
      ['NEEDS_CSUM', hdrOuter(r, 0, { flags: NetHdr.F_NEEDS_CSUM, csumStart: partial.csumStart, csumOffset: partial.csumOffset }), partial.frame],
      ['TSO', hdrOuter(r, 0, { flags: NetHdr.F_NEEDS_CSUM, gsoType: NetHdr.GSO_TCPV4, gsoSize: 1000, hdrLen: big.l4 + 20, csumStart: big.csumStart, csumOffset: big.csumOffset }), big.frame],
    ];
    for (const [what, h, f] of sends) {
      r.wire.length = 0;
      rawTransmit(r, h, f);
      const segs = r.wire.flatMap((w) => normalize(w));
      const payload = segs.reduce((s, x) => { const i = parseFrame(x); return s + (i.ipEnd - i.headerLen); }, 0);
      const want = parseFrame(f).ipEnd - parseFrame(f).headerLen;
      expectThat(segs.length >= 1 && payload === want, ['net.device.18'], `${what} frame with outer_nh_offset 0 did not leave whole`, `${want} payload bytes on the wire`, `${segs.length} frame(s), ${payload} payload bytes`);
      for (const x of segs) {
        const c = verifyChecksums(x);
        expectThat(c.ip && c.l4, ['net.device.18'], `${what} frame left with a wrong checksum (${c.what})`);
      }
    }
  },
});

defineCheck({
  id: 'net.driver.out-net-header',
  title: 'OUT_NET_HEADER: the driver reads outer_nh_offset only when negotiated and nonzero',
  statements: ['net.driver.70'],
  side: 'driver',
  kind: 'example',
  applies: { devices: ['net'] },
  run(ctx) {
    if (!ctx.target.runsDriverChecks) throw new CheckSkip('driver checks need pvkit\'s checking device');
    // Not negotiated: the header ends before outer_nh_offset, so nothing may be read there (the
    // bytes after the header are the frame's own).
    const a = rig(ctx, {}, { features: NET_DRIVER_FEATURES & ~OUT_NET });
    const fa = tcpTo(a.drv.mac, 120).frame;
    a.inject(fa);
    a.run(100_000);
    const ga = a.received();
    expectThat(ga.length === 1 && ga[0]!.outerNh === 0 && same(ga[0]!.data, fa), ['net.driver.70'], 'without OUT_NET_HEADER the driver reported an outer network header offset', '1 frame, outerNh 0', ga.map((g) => g.outerNh).join(',') || 'no frame');
    // Negotiated, the device leaves the field 0: the frame is taken as it is, with no offset.
    let zero = false;
    const b = rigWith(ctx, NetFx.OUT_NET_HEADER, 'OUT_NET_HEADER', { rxHeaderHook: (h) => { if (zero && h.length >= NetHdr.OFF_OUTER_NH + 2) h[NetHdr.OFF_OUTER_NH] = h[NetHdr.OFF_OUTER_NH + 1] = 0; } }, { features: NET_DRIVER_FEATURES | OUT_NET });
    zero = true;
    const fb = tcpTo(b.drv.mac, 120).frame;
    const fc2 = buildEthernet({ dst: b.drv.mac, src: PEER }, 0x88b5, new Uint8Array(50).fill(0x46));
    b.inject(fb);
    b.inject(fc2);
    b.run(200_000);
    const gb = b.received();
    expectThat(gb.length === 2 && gb.every((g) => g.outerNh === 0) && same(gb[0]!.data, fb) && same(gb[1]!.data, fc2), ['net.driver.70'], 'a zero outer_nh_offset was used', '2 frames delivered intact, outerNh 0', `${gb.length} frame(s) ${gb.map((g) => g.outerNh).join(',')}`);
  },
});

// ---------------------------------------------------------------------------- RSC_EXT

defineCheck({
  id: 'net.device.rsc-ext',
  title: 'RSC_EXT: a GSO receive frame carries RSC_INFO with the coalesced segment count in csum_start and duplicate ACKs in csum_offset',
  statements: ['net.device.57'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'] },
  run(ctx) {
    const r = rigWith(ctx, NetF.RSC_EXT, 'RSC_EXT', {}, { features: NET_DRIVER_FEATURES | bit(NetF.RSC_EXT) });
    if (!hasFeature(r.drv.features, NetF.GUEST_TSO4)) throw new CheckSkip('GUEST_TSO4 not negotiated (no GSO receive to coalesce)');
    for (const [len, mss] of [[7000, 1000], [4500, 1448], [1200, 1000]] as const) {
      const t = tcpTo(r.drv.mac, len, 'partial');
      r.inject({ data: t.frame, csum: { start: t.csumStart, offset: t.csumOffset }, gso: { type: NetHdr.GSO_TCPV4, size: mss, hdrLen: t.l4 + 20 } });
      r.run(200_000);
      const e = r.drv.deviceErrors[0];
      if (e) throw new CheckFailure(`the driver saw the device break ${e.id}: ${e.detail}`, { statements: [e.id] });
      const got = r.received();
      expectEqual(got.length, 1, ['net.device.57'], `frames for one ${len}-byte GSO packet`);
      const g = got[0]!;
      expectThat(g.gsoType === NetHdr.GSO_TCPV4, ['net.device.57'], 'the GSO packet was not delivered as GSO', `gso_type ${NetHdr.GSO_TCPV4}`, `${g.gsoType}`);
      expectThat((g.flags & NetHdr.F_RSC_INFO) !== 0, ['net.device.57'], 'RSC_INFO clear on a GSO receive frame', 'RSC_INFO set', `flags ${g.flags}`);
      const segs = Math.ceil(len / mss);
      expectEqual(g.rscSegments, segs, ['net.device.57'], `coalesced segments (csum_start) of ${len} bytes at MSS ${mss}`);
      expectEqual(g.rscDupAcks, 0, ['net.device.57'], 'duplicate ACKs (csum_offset) in a packet with no duplicate ACKs');
      const out = completeReceived(g);
      const c = verifyChecksums(out);
      expectThat(c.ip && c.l4, ['net.device.57'], `the coalesced frame's checksum does not complete (${c.what})`);
    }
  },
});

// ---------------------------------------------------------------------------- HASH_TUNNEL

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

// ---------------------------------------------------------------------------- RSS_CONTEXT

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

// ---------------------------------------------------------------------------- multiqueue set-up order

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
