/**
 * virtio-net device model: the transmit queues — spec "Device Operation / Packet Transmission"
 * (net.device.15-.26). Every header field the driver wrote is checked against what was
 * negotiated (net.driver.15-.62); a malformed frame is dropped, counted in tx_drop_malformed and
 * recorded with the statement it breaks, never thrown. Accepted frames leave through the backend
 * as WireFrames with any checksum / GSO work still pending (wire.ts does it for the peer).
 */
import type { Chain, DeviceContext } from '../../virtio/model.ts';
import { gatherInto } from '../../virtio/chain-io.ts';
import { ETH_HLEN, NetHdr } from '../../../spec-refs/abi/net.ts';
import { gsoLayers } from '../../../spec-refs/abi/gso.ts';
import { IpProto, csumFold, parseFrame, pseudoHeaderSum, readBe16, verifyChecksums } from '../../../spec-refs/abi/packet.ts';
import { completeChecksum, type WireFrame } from '../wire.ts';
import { add64, type NetState } from './state.ts';
import { signal } from './coalesce.ts';
import { noteFlow } from './steering.ts';

/** Largest Ethernet frame the device handles at all (64 KiB IP packet + Ethernet + VLAN). */
const MAX_FRAME = 65535 + ETH_HLEN + 4;

export function processTx(dev: NetState, index: number): void {
  const ctx = dev.ctx!;
  const q = ctx.queue(index);
  const st = dev.qstats[index]!;
  let done = 0;
  const budget = dev.queueSize;
  for (;;) {
    if (done >= budget) {
      // Bounded work per run: come back for the rest.
      if (!dev.txScheduled[index]) {
        dev.txScheduled[index] = true;
        ctx.scheduler.schedule(0, `${dev.name}:tx${index}`, () => {
          dev.txScheduled[index] = false;
          if (dev.ctx === ctx) processTx(dev, index);
        });
      }
      break;
    }
    const chain = q.pop();
    if (!chain) {
      q.disableNotify();
      if (q.enableNotify()) break;
      continue;
    }
    done++;
    const wf = readTxFrame(dev, ctx, chain, index);
    q.push(chain, 0);
    if (wf) {
      // Remember the flow for automatic receive steering (replies come back on this pair).
      if (dev.f.mq) noteFlow(dev, wf.data, parseFrame(wf.data), (index - 1) / 2);
      st.packets = add64(st.packets, 1);
      st.bytes = add64(st.bytes, wf.data.length);
      if (dev.linkUp && dev.backend) dev.backend.send(wf);
    } else {
      st.drops = add64(st.drops, 1);
    }
  }
  if (done > 0) signal(dev, q, index, done);
}

/** Read and validate one transmit chain; null: dropped (malformed, recorded). */
function readTxFrame(dev: NetState, ctx: DeviceContext, chain: Chain, index: number): WireFrame | null {
  const st = dev.qstats[index]!;
  const hl = dev.hdrLen;
  const malformed = (id: string, detail: string): null => {
    st.dropsSpecial = add64(st.dropsSpecial, 1);
    dev.violate(id, detail);
    return null;
  };
  // net.driver.91/92: a transmit queue beyond the pairs in use.
  const pair = (index - 1) / 2;
  const allowed = dev.rss ? dev.rss.maxTx : dev.curPairs;
  if (pair >= allowed) dev.violate(pair >= dev.curPairs && !dev.rss ? 'net.driver.91' : 'net.driver.92', `transmit on transmitq${pair + 1} with ${allowed} pair(s) in use`);
  if (chain.readableLen < hl) {
    dev.violate('net.driver.66', `transmit chain shorter than the ${hl}-byte header`);
    return malformed('net.driver.15', `transmit chain of ${chain.readableLen} readable bytes, header is ${hl}`);
  }
  const total = chain.readableLen - hl;
  if (total < ETH_HLEN) return malformed('net.driver.15', `frame of ${total} bytes after the header`);
  if (total > MAX_FRAME) return malformed('net.driver.9', `frame of ${total} bytes`);
  const hdr = new Uint8Array(hl);
  gatherInto(ctx.mem, chain.readable, 0, hdr);
  const data = new Uint8Array(total);
  gatherInto(ctx.mem, chain.readable, hl, data);
  const hv = new DataView(hdr.buffer);
  const flags = hdr[NetHdr.OFF_FLAGS]!;
  const gsoType = hdr[NetHdr.OFF_GSO_TYPE]!;
  const gsoSize = hv.getUint16(NetHdr.OFF_GSO_SIZE, true);
  const csumStart = hv.getUint16(NetHdr.OFF_CSUM_START, true);
  const csumOffset = hv.getUint16(NetHdr.OFF_CSUM_OFFSET, true);
  if (dev.f.outNet && hl >= NetHdr.OFF_OUTER_NH + 2) {
    // net.device.17/.18: a nonzero outer_nh_offset is used (checked against the headers, a frame whose
    // outer network header is elsewhere is dropped); zero, or without OUT_NET_HEADER, it is not read.
    const onh = hv.getUint16(NetHdr.OFF_OUTER_NH, true);
    if (onh !== 0) {
      const fi = parseFrame(data);
      if (fi.ipVersion === 0 || onh !== fi.l3) return malformed('net.tx.outer_nh', `outer_nh_offset ${onh}, outer network header at ${fi.ipVersion === 0 ? 'none' : fi.l3}`);
    }
  }
  // net.device.15: bits the device does not know are ignored; known ones are checked.
  if (!dev.f.csum && flags !== 0) return malformed('net.driver.17', `flags ${flags} without VIRTIO_NET_F_CSUM`);
  if (flags & NetHdr.F_DATA_VALID && gsoType & (NetHdr.GSO_UDP_TUNNEL_IPV4 | NetHdr.GSO_UDP_TUNNEL_IPV6)) dev.violate('net.driver.60', 'DATA_VALID with a tunnel gso_type');
  if (flags & (NetHdr.F_DATA_VALID | NetHdr.F_RSC_INFO)) return malformed('net.driver.59', `transmit flags ${flags} carry DATA_VALID/RSC_INFO`);
  const T4 = NetHdr.GSO_UDP_TUNNEL_IPV4;
  const T6 = NetHdr.GSO_UDP_TUNNEL_IPV6;
  const tunnel = gsoType & (T4 | T6);
  const tunnelCsum = (flags & NetHdr.F_UDP_TUNNEL_CSUM) !== 0;
  if (tunnelCsum) {
    if (!tunnel) return malformed('net.driver.40', 'UDP_TUNNEL_CSUM without a tunnel gso_type');
    if (!dev.f.hostTunnelCsum) {
      dev.violate('net.driver.34', 'outer checksum offload without HOST_UDP_TUNNEL_GSO_CSUM');
      dev.violate('net.driver.37', 'outer checksum offload without HOST_UDP_TUNNEL_GSO_CSUM');
      dev.violate('net.driver.36', 'UDP_TUNNEL_CSUM set');
      return malformed('net.driver.57', 'UDP_TUNNEL_CSUM without HOST_UDP_TUNNEL_GSO_CSUM');
    }
  }
  if (flags & NetHdr.F_SECURITY) {
    dev.violate('net.driver.62', 'SECURITY flag: no IPsec SA can be named');
    return malformed('net.driver.61', 'SECURITY flag without IPsec');
  }
  if (hl >= NetHdr.SIZE_BASE && (dev.f.version1 || dev.f.mrg)) {
    const nb = hv.getUint16(NetHdr.OFF_NUM_BUFFERS, true);
    if (nb !== 0) return malformed('net.driver.16', `num_buffers ${nb} on transmit`);
  }
  const needsCsum = (flags & NetHdr.F_NEEDS_CSUM) !== 0;
  // net.device.16: csum_start/csum_offset are used only with NEEDS_CSUM.
  if (needsCsum && csumStart + csumOffset + 2 > total) return malformed('net.driver.44', `csum_start ${csumStart} + csum_offset ${csumOffset} outside a ${total}-byte frame`);
  const base = gsoType & 0x1f;
  if (tunnel) {
    // net.device.22 / net.device.24: contradictory UDP-tunnel headers are refused.
    if (!dev.f.hostTunnel) {
      if (tunnel === (T4 | T6)) dev.violate('net.driver.39', 'both UDP tunnel bits');
      if (base === NetHdr.GSO_UDP) dev.violate('net.driver.38', 'UDP tunnel bit with GSO_UDP');
      dev.violate('net.driver.31', `gso_type ${gsoType} without HOST_UDP_TUNNEL_GSO`);
      return malformed('net.driver.56', `gso_type ${gsoType} has UDP tunnel bits`);
    }
    if (tunnel === (T4 | T6)) return malformed('net.driver.39', 'both UDP tunnel bits');
    if (base === NetHdr.GSO_UDP) return malformed('net.driver.38', 'UDP tunnel bit with GSO_UDP');
    if (!needsCsum || base === NetHdr.GSO_NONE) return malformed('net.driver.46', `tunnel gso_type ${gsoType} without NEEDS_CSUM or without a GSO type`);
  }
  const ecn = (gsoType & NetHdr.GSO_ECN) !== 0;
  if (ecn && !dev.f.hostEcn) return malformed('net.driver.28', 'GSO_ECN without VIRTIO_NET_F_HOST_ECN');
  const csumCount: 'none' | 'needs' = needsCsum ? 'needs' : 'none';
  if (needsCsum && dev.strict && !tunnel) {
    const bad = checkPartialCsum(data, csumStart, csumOffset);
    if (bad) return malformed(bad[0], bad[1]);
  }
  if (base !== NetHdr.GSO_NONE && !dev.f.hostTso4 && !dev.f.hostTso6 && !dev.f.hostUso) dev.violate('net.driver.45', `gso_type ${gsoType} with no host GSO feature negotiated`);
  if (base === NetHdr.GSO_NONE) {
    // net.device.6 / net.driver.9: frames up to mtu + Ethernet header (+ a VLAN tag) go out whole.
    const limit = dev.mtu + ETH_HLEN + 4;
    if (total > limit) return malformed(dev.f.mtu ? 'net.driver.9' : 'net.tx.oversize', `frame of ${total} bytes without GSO, link takes ${limit}`);
    st.csumNone = add64(st.csumNone, csumCount === 'none' ? 1 : 0);
    st.needsCsum = add64(st.needsCsum, csumCount === 'needs' ? 1 : 0);
    if (needsCsum) return { data, csum: { start: csumStart, offset: csumOffset } };
    // net.device.25: without NEEDS_CSUM the checksum is passed on unverified (no dataValid).
    return { data };
  }
  if (base === NetHdr.GSO_TCPV4 && !dev.f.hostTso4) return malformed('net.driver.21', 'GSO_TCPV4 without HOST_TSO4');
  if (base === NetHdr.GSO_TCPV6 && !dev.f.hostTso6) return malformed('net.driver.23', 'GSO_TCPV6 without HOST_TSO6');
  if (base === NetHdr.GSO_UDP) return malformed('net.driver.25', 'GSO_UDP without HOST_UFO');
  if (base === NetHdr.GSO_UDP_L4 && !dev.f.hostUso) return malformed('net.driver.27', 'GSO_UDP_L4 without HOST_USO');
  if (base !== NetHdr.GSO_TCPV4 && base !== NetHdr.GSO_TCPV6 && base !== NetHdr.GSO_UDP_L4) return malformed('net.tx.gso_type', `unknown gso_type ${gsoType}`);
  if (!needsCsum) return malformed('net.driver.46', 'GSO without NEEDS_CSUM');
  if (gsoSize === 0) return malformed('net.driver.47', 'GSO with gso_size 0');
  // net.device.21 / net.device.23: hdr_len is not trusted, and the tunnel offsets are read only for tunnel GSO;
  // the headers are found by parsing.
  const tun = tunnel ? { outerTh: hv.getUint16(NetHdr.OFF_OUTER_TH, true), innerNh: hv.getUint16(NetHdr.OFF_INNER_NH, true) } : undefined;
  const layers = gsoLayers(data, { type: base, size: gsoSize, ...(tun ? { tunnel: tun } : {}) });
  if (typeof layers === 'string') return malformed(tun ? 'net.driver.51' : 'net.driver.45', `gso_type ${gsoType}: ${layers}`);
  const info = layers.inner;
  if (tun && (tunnel === T4) !== (info.ipVersion === 4)) return malformed(info.ipVersion === 6 ? 'net.driver.33' : 'net.driver.32', `tunnel bit ${tunnel === T4 ? 'IPV4' : 'IPV6'} with an inner IPv${info.ipVersion} header`);
  const tcp = info.proto === IpProto.TCP;
  const wantOff = tcp ? 16 : 6;
  if (dev.strict && dev.f.hdrLen && hv.getUint16(NetHdr.OFF_HDR_LEN, true) !== info.headerLen) dev.violate('net.driver.48', `hdr_len ${hv.getUint16(NetHdr.OFF_HDR_LEN, true)}, headers are ${info.headerLen} bytes`);
  // net.driver.29: with HOST_ECN, a TSO frame carrying CWR must say GSO_ECN.
  if (tcp && dev.f.hostEcn && !ecn && data[info.l4 + 13]! & 0x80) dev.violate('net.driver.29', 'TSO frame with CWR but no GSO_ECN');
  if (csumStart !== info.l4 || csumOffset !== wantOff) return malformed(tun ? 'net.driver.51' : 'net.driver.44', `csum_start/offset ${csumStart}/${csumOffset} do not point at the ${tcp ? 'TCP' : 'UDP'} checksum (${info.l4}/${wantOff})`);
  if (dev.strict) {
    // net.driver.43: the slot holds the pseudo-header sum (of the whole GSO packet).
    // (with the GSO packet's length, or with length 0 as some stacks do for GSO)
    const slot = readBe16(data, info.l4 + wantOff);
    const ph = csumFold(pseudoHeaderSum(data, info.l3, info.ipVersion === 6, info.proto, info.ipEnd - info.l4));
    const ph0 = csumFold(pseudoHeaderSum(data, info.l3, info.ipVersion === 6, info.proto, 0));
    if (slot !== ph && slot !== ph0) dev.violate('net.driver.43', `checksum slot 0x${slot.toString(16)}, pseudo-header sum 0x${ph.toString(16)}`);
    const outer = layers.outer;
    if (outer) {
      const oc = readBe16(data, outer.l4 + 6);
      const oph = csumFold(pseudoHeaderSum(data, outer.l3, outer.ipVersion === 6, IpProto.UDP, readBe16(data, outer.l4 + 4)));
      if (tunnelCsum && oc !== oph) dev.violate('net.driver.53', `outer UDP checksum 0x${oc.toString(16)}, pseudo-header sum 0x${oph.toString(16)}`);
      if (!tunnelCsum && oc !== 0 && (info.ipEnd - info.headerLen) % gsoSize !== 0) {
        // 0, or a complete checksum precomputed for equal-sized segments, is all that is allowed here.
        if (oc === oph) dev.violate('net.driver.35', 'outer checksum left for offload without UDP_TUNNEL_CSUM');
        dev.violate('net.driver.54', 'outer UDP checksum needs validation');
        dev.violate('net.driver.55', `outer UDP checksum 0x${oc.toString(16)} is neither 0 nor complete`);
      }
    }
  }
  st.needsCsum = add64(st.needsCsum, 1);
  const payload = info.ipEnd - info.headerLen;
  const segs = Math.max(1, Math.ceil(payload / gsoSize));
  if (segs > 1) {
    st.gsoPackets = add64(st.gsoPackets, 1);
    st.gsoBytes = add64(st.gsoBytes, data.length);
    st.gsoSegments = add64(st.gsoSegments, segs);
    st.gsoSegmentsBytes = add64(st.gsoSegmentsBytes, data.length + (segs - 1) * info.headerLen);
  }
  return { data, csum: { start: csumStart, offset: csumOffset }, gso: { type: base, size: gsoSize, hdrLen: info.headerLen, ecn, ...(tun ? { tunnel: tun, outerCsum: tunnelCsum } : {}) } };
}

/** Strict mode: NEEDS_CSUM must point at the TCP/UDP checksum, which holds the pseudo-header sum (net.driver.42-.44). */
function checkPartialCsum(data: Uint8Array, start: number, offset: number): [string, string] | null {
  const info = parseFrame(data);
  if (info.l4 < 0 || (info.proto !== IpProto.TCP && info.proto !== IpProto.UDP)) return null;
  const want = info.proto === IpProto.TCP ? 16 : 6;
  if (start !== info.l4 || offset !== want) return ['net.driver.44', `csum_start/offset ${start}/${offset}, the ${info.proto === IpProto.TCP ? 'TCP' : 'UDP'} checksum is at ${info.l4}/${want}`];
  const copy = data.slice(0, info.ipEnd);
  completeChecksum(copy, start, offset);
  const r = verifyChecksums(copy);
  if (!r.l4) return ['net.driver.43', 'the checksum slot did not hold the pseudo-header sum'];
  return null;
}
