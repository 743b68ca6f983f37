/**
 * Generic segmentation offload in software, shared by the driver (offloads the device did not
 * offer) and the device model (receivers that did not negotiate GSO): TCP (GSO_TCPV4/V6) and UDP
 * (GSO_UDP_L4) segmentation, plain or inside a UDP tunnel (VXLAN-style: outer IP/UDP, then an
 * inner packet at `innerNh`). Every segment leaves with correct lengths, IPv4 ids and header
 * checksums, TCP sequence numbers and flags, and complete transport checksums.
 */
import { IpProto, TcpFlag, buildL4Frame, type EthOptions, csumAdd, csumFold, internetChecksum, parseFrame, parseIp, pseudoHeaderSum, readBe16, readBe32, writeBe16, writeBe32, type FrameInfo } from './packet.ts';
import { NetHdr } from './net.ts';

export interface TunnelOffsets {
  /** Offset of the outer UDP header. */
  readonly outerTh: number;
  /** Offset of the inner network header. */
  readonly innerNh: number;
}

export interface GsoRequest {
  /** GSO_TCPV4, GSO_TCPV6 or GSO_UDP_L4 (the inner packet's type when tunnelled). */
  readonly type: number;
  /** Payload bytes per segment. */
  readonly size: number;
  readonly tunnel?: TunnelOffsets;
  /** Tunnel: fill the outer UDP checksum of each segment (else it is left 0). */
  readonly outerCsum?: boolean;
}

/** Maximum number of segments one GSO frame may be cut into (bounds a hostile sender's work). */
export const MAX_SEGMENTS = 65535;

/** The layers a GSO frame is made of: the packet segmented (inner when tunnelled) and, tunnelled, the outer IP/UDP. */
export interface GsoLayers {
  readonly inner: FrameInfo;
  readonly outer?: FrameInfo;
}

/** Check that `data` matches the GSO request; the layers, or a reason. */
export function gsoLayers(data: Uint8Array, req: GsoRequest): GsoLayers | string {
  const tcp = req.type === NetHdr.GSO_TCPV4 || req.type === NetHdr.GSO_TCPV6;
  if (!tcp && req.type !== NetHdr.GSO_UDP_L4) return `gso_type ${req.type} is not TCPV4, TCPV6 or UDP_L4`;
  if (!(req.size > 0)) return 'gso_size 0';
  let outer: FrameInfo | undefined;
  let inner: FrameInfo;
  if (req.tunnel) {
    outer = parseFrame(data);
    if (outer.proto !== IpProto.UDP || outer.l4 !== req.tunnel.outerTh) return `outer_th_offset ${req.tunnel.outerTh} is not the outer UDP header (${outer.l4})`;
    if (req.tunnel.innerNh < outer.l4 + 8 || req.tunnel.innerNh >= outer.ipEnd) return `inner_nh_offset ${req.tunnel.innerNh} outside the outer UDP payload`;
    inner = parseIp(data, req.tunnel.innerNh, outer.ipEnd);
    if (inner.ipEnd !== outer.ipEnd) return 'the inner packet does not end with the outer one';
  } else {
    inner = parseFrame(data);
  }
  if (inner.l4 < 0 || inner.headerLen < 0) return 'no transport header found';
  if (tcp && inner.proto !== IpProto.TCP) return 'TCP GSO on a packet that is not TCP';
  if (!tcp && inner.proto !== IpProto.UDP) return 'UDP GSO on a packet that is not UDP';
  if (req.type === NetHdr.GSO_TCPV4 && inner.ipVersion !== 4) return 'GSO_TCPV4 on a packet that is not IPv4';
  if (req.type === NetHdr.GSO_TCPV6 && inner.ipVersion !== 6) return 'GSO_TCPV6 on a packet that is not IPv6';
  if (Math.ceil((inner.ipEnd - inner.headerLen) / req.size) > MAX_SEGMENTS) return 'too many segments';
  return outer ? { inner, outer } : { inner };
}

function fixIp(s: Uint8Array, ip: FrameInfo, end: number, id: number): void {
  if (ip.ipVersion === 4) {
    writeBe16(s, ip.l3 + 2, end - ip.l3);
    writeBe16(s, ip.l3 + 4, id & 0xffff);
    writeBe16(s, ip.l3 + 10, 0);
    const ihl = (s[ip.l3]! & 0xf) * 4;
    writeBe16(s, ip.l3 + 10, internetChecksum(s, ip.l3, ip.l3 + ihl));
  } else {
    writeBe16(s, ip.l3 + 4, end - ip.l3 - 40);
  }
}

function fullL4(s: Uint8Array, ip: FrameInfo, end: number): void {
  const off = ip.proto === IpProto.TCP ? 16 : 6;
  writeBe16(s, ip.l4 + off, 0);
  const ph = pseudoHeaderSum(s, ip.l3, ip.ipVersion === 6, ip.proto, end - ip.l4);
  let c = internetChecksum(s, ip.l4, end, ph);
  if (c === 0 && ip.proto === IpProto.UDP) c = 0xffff;
  writeBe16(s, ip.l4 + off, c);
}

/** Cut a GSO frame into segments with every header and checksum fixed; null when it does not match its GSO request. */
export function gsoSegment(data: Uint8Array, req: GsoRequest): Uint8Array[] | null {
  const l = gsoLayers(data, req);
  if (typeof l === 'string') return null;
  const { inner, outer } = l;
  const tcp = inner.proto === IpProto.TCP;
  const hlen = inner.headerLen;
  const end = inner.ipEnd;
  const n = Math.max(1, Math.ceil((end - hlen) / req.size));
  const innerId = inner.ipVersion === 4 ? readBe16(data, inner.l3 + 4) : 0;
  const outerId = outer && outer.ipVersion === 4 ? readBe16(data, outer.l3 + 4) : 0;
  const seq = tcp ? readBe32(data, inner.l4 + 4) : 0;
  const flags = tcp ? data[inner.l4 + 13]! : 0;
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const pOff = hlen + i * req.size;
    const pLen = Math.max(0, Math.min(req.size, end - pOff));
    const s = new Uint8Array(hlen + pLen);
    s.set(data.subarray(0, hlen), 0);
    if (pLen > 0) s.set(data.subarray(pOff, pOff + pLen), hlen);
    const segEnd = s.length;
    fixIp(s, inner, segEnd, innerId + i);
    if (tcp) {
      writeBe32(s, inner.l4 + 4, (seq + i * req.size) >>> 0);
      let f = flags;
      // FIN and PSH belong to the last segment only; CWR to the first only.
      if (i !== n - 1) f &= ~(TcpFlag.FIN | TcpFlag.PSH);
      if (i !== 0) f &= ~TcpFlag.CWR;
      s[inner.l4 + 13] = f;
    } else {
      writeBe16(s, inner.l4 + 4, segEnd - inner.l4);
    }
    fullL4(s, inner, segEnd);
    if (outer) {
      fixIp(s, outer, segEnd, outerId + i);
      writeBe16(s, outer.l4 + 4, segEnd - outer.l4);
      if (req.outerCsum) fullL4(s, outer, segEnd);
      else writeBe16(s, outer.l4 + 6, 0);
    }
    out.push(s);
  }
  return out;
}

/** The folded pseudo-header sum of a TCP/UDP packet (what NEEDS_CSUM expects in its checksum slot). */
export function pseudoHeaderFolded(f: Uint8Array, ip: FrameInfo, end: number = ip.ipEnd): number {
  return csumFold(pseudoHeaderSum(f, ip.l3, ip.ipVersion === 6, ip.proto, end - ip.l4));
}

/** Ones' complement sum from `start` to `end`, stored at start+offset. */
export function finishChecksumAt(f: Uint8Array, start: number, offset: number, end: number = f.length): void {
  let c = ~csumFold(csumAdd(f, start, end)) & 0xffff;
  if (c === 0) c = 0xffff;
  writeBe16(f, start + offset, c);
}

/** VXLAN (RFC 7348): the UDP destination port that marks a VXLAN tunnel, and its header length. */
export const VXLAN_PORT = 4789;
export const VXLAN_HEADER = 8;

/** Tunnel offsets of a VXLAN frame (outer Ethernet/IP/UDP to port 4789, VXLAN header, inner Ethernet), or null. */
export function vxlanOffsets(data: Uint8Array): (TunnelOffsets & { innerIpVersion: 4 | 6 }) | null {
  const o = parseFrame(data);
  if (o.proto !== IpProto.UDP || o.l4 < 0 || o.dstPort !== VXLAN_PORT) return null;
  const innerEth = o.l4 + 8 + VXLAN_HEADER;
  if (innerEth + 14 > o.ipEnd) return null;
  const et = readBe16(data, innerEth + 12);
  const innerNh = innerEth + 14;
  const ii = parseIp(data, innerNh, o.ipEnd);
  if (ii.ipVersion === 0 || (et !== 0x0800 && et !== 0x86dd)) return null;
  return { outerTh: o.l4, innerNh, innerIpVersion: ii.ipVersion };
}

/** A VXLAN frame around `inner` (an Ethernet frame): outer IPv4/IPv6 + UDP to port 4789 (checksum 0) + VXLAN header (VNI `vni`). */
export function buildVxlan(o: { eth: EthOptions; v6?: boolean; src: Uint8Array; dst: Uint8Array; srcPort?: number; vni?: number }, inner: Uint8Array): Uint8Array {
  const payload = new Uint8Array(VXLAN_HEADER + inner.length);
  payload[0] = 0x08; // I flag: the VNI is valid
  const vni = o.vni ?? 1;
  payload[4] = (vni >>> 16) & 0xff;
  payload[5] = (vni >>> 8) & 0xff;
  payload[6] = vni & 0xff;
  payload.set(inner, VXLAN_HEADER);
  return buildL4Frame({ eth: o.eth, v6: o.v6 ?? false, src: o.src, dst: o.dst, proto: 'udp', srcPort: o.srcPort ?? 49152, dstPort: VXLAN_PORT, csum: 'zero' }, payload).frame;
}
