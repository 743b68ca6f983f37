/**
 * virtio-net VIRTIO_NET_F_OUT_NET_HEADER (device-types/net/description.tex, outer_nh_offset in
 * "Packet Transmission" and "Processing of Incoming Packets"):
 *
 *   net.device.out-net-header  net.device.18 (transmit), net.device.44 (receive)
 *   net.driver.out-net-header  net.driver.70
 */
import { normalize } from '../../../device-models/net/wire.ts';
import { NET_DRIVER_FEATURES } from '../../../drivers/net/driver.ts';
import { buildEthernet, parseFrame, verifyChecksums } from '../../../spec-refs/abi/packet.ts';
import { NetFx, NetHdr } from '../../../spec-refs/abi/net.ts';
import { bit } from '../../../spec-refs/abi/virtio.ts';
import { CheckFailure, CheckSkip, defineCheck, expectEqual, expectThat } from '../../check.ts';
import { PEER, type Rig, rigWith, rig, tcpTo, rawTransmit, hdr, same } from './rig.ts';

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
