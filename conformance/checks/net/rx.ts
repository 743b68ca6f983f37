/**
 * virtio-net processing of incoming packets (device-types/net/description.tex, "Setting Up Receive
 * Buffers", "Processing of Incoming Packets"): receive headers as the device writes them and as
 * the driver reads them, and RSC_EXT coalescing information.
 *
 *   net.device.rx-header  net.device.27-.33, .35-.40, .42, .46-.56, .58, .61, .62, .64, .65, .67,
 *                         .68, .70, .71
 *   net.driver.rx-header  net.driver.68, .71, .73-.77
 *   net.device.rsc-ext    net.device.57
 */
import fc from 'fast-check';
import { normalize } from '../../../device-models/net/wire.ts';
import { NET_DRIVER_FEATURES, completeReceived, type RxFrame } from '../../../drivers/net/driver.ts';
import { GuestIpStack } from '../../../drivers/net/stack.ts';
import { buildVxlan, vxlanOffsets } from '../../../spec-refs/abi/gso.ts';
import { buildL4Frame, buildPing, ip4FromString, macFromString, parseFrame, parseIp, pseudoHeaderSum, csumFold, verifyChecksums } from '../../../spec-refs/abi/packet.ts';
import { NetFx, NetHdr } from '../../../spec-refs/abi/net.ts';
import { NetF, bit, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { CheckFailure, CheckSkip, checkProperty, defineCheck, expectEqual, expectThat } from '../../check.ts';
import { PEER, rigWith, rig, tcpTo, same } from './rig.ts';

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
