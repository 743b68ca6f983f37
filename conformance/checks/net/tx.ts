/**
 * virtio-net packet transmission (device-types/net/description.tex, "Packet Transmission"): the
 * transmit header as the device reads it and as the driver writes it.
 *
 *   net.device.tx-header  net.device.15, .16, .21, .22, .23, .24, .25
 *   net.driver.tx-header  net.driver.9, .15-.17, .21, .23, .25, .27, .29, .31-.40, .42-.48, .51,
 *                         .53-.57, .59-.62, .66, .91, .92 (TX_IDS)
 */
import fc from 'fast-check';
import { normalize } from '../../../device-models/net/wire.ts';
import { NET_DRIVER_FEATURES } from '../../../drivers/net/driver.ts';
import { buildVxlan, vxlanOffsets } from '../../../spec-refs/abi/gso.ts';
import { buildL4Frame, ip4FromString, macFromString, parseFrame, parseIp, verifyChecksums } from '../../../spec-refs/abi/packet.ts';
import { NetFx, NetHdr } from '../../../spec-refs/abi/net.ts';
import { NetF, bit, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { checkProperty, defineCheck, expectEqual, expectThat } from '../../check.ts';
import { PEER, rig, tcpTo, rawTransmit, hdr, same, strictRig } from './rig.ts';

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
