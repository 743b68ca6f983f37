/**
 * Packet helpers shared by the guest driver, the device model and the backends: the Internet
 * checksum (RFC 1071), Ethernet (with 802.1Q tags), IPv4, IPv6, ARP, ICMP/ICMPv6 echo, TCP and
 * UDP builders, and a parser that locates every layer of a frame without copying it.
 *
 * Everything works on Uint8Array views with explicit offsets; nothing here trusts a length
 * field: a parser that meets a truncated or inconsistent header reports the layer as absent.
 */

import { UsageError } from '../errors.ts';

export const EtherType = { IPV4: 0x0800, ARP: 0x0806, VLAN: 0x8100, QINQ: 0x88a8, IPV6: 0x86dd } as const;
export const IpProto = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58, HOPOPT: 0, ROUTING: 43, FRAGMENT: 44, DSTOPTS: 60 } as const;

export const ETH_HEADER = 14;
export const VLAN_TAG = 4;
export const IPV4_HEADER = 20;
export const IPV6_HEADER = 40;
export const TCP_HEADER = 20;
export const UDP_HEADER = 8;

export type Mac = Uint8Array;
export const BROADCAST: Mac = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

// ------------------------------------------------------------------ checksum (RFC 1071)

/** Ones' complement sum of bytes [start, end) added to `sum` (not folded). */
export function csumAdd(buf: Uint8Array, start: number, end: number, sum = 0): number {
  let i = start;
  // Sum 16-bit big-endian words; fold every 2^16 iterations so the sum stays a safe integer.
  let s = sum;
  for (; i + 1 < end; i += 2) {
    s += (buf[i]! << 8) | buf[i + 1]!;
    if (s > 0x7fff_ffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  }
  if (i < end) s += buf[i]! << 8;
  return s;
}

/** Fold a 32-bit ones' complement sum to 16 bits (not complemented). */
export function csumFold(sum: number): number {
  let s = sum;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

/** The Internet checksum of bytes [start, end): the complement of the folded sum. */
export function internetChecksum(buf: Uint8Array, start = 0, end = buf.length, initial = 0): number {
  return ~csumFold(csumAdd(buf, start, end, initial)) & 0xffff;
}

/** Pseudo-header sum (not folded, not complemented) for TCP/UDP over IPv4 or IPv6. */
export function pseudoHeaderSum(frame: Uint8Array, l3: number, v6: boolean, proto: number, l4len: number): number {
  let s = 0;
  if (v6) {
    s = csumAdd(frame, l3 + 8, l3 + 40, 0);
  } else {
    s = csumAdd(frame, l3 + 12, l3 + 20, 0);
  }
  s += proto;
  s += l4len & 0xffff;
  s += Math.floor(l4len / 0x10000);
  return s;
}

function put16(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 8) & 0xff;
  b[off + 1] = v & 0xff;
}
function get16(b: Uint8Array, off: number): number {
  return (b[off]! << 8) | b[off + 1]!;
}
function put32(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 24) & 0xff;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}
function get32(b: Uint8Array, off: number): number {
  return ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
}
export { get16 as readBe16, put16 as writeBe16, get32 as readBe32, put32 as writeBe32 };

// ------------------------------------------------------------------ MAC addresses

function badAddress(kind: 'mac' | 'ipv4' | 'ipv6', s: string): UsageError {
  const name = { mac: 'MAC', ipv4: 'IPv4', ipv6: 'IPv6' }[kind];
  const form = { mac: 'six hex bytes separated by colons', ipv4: 'four decimal bytes separated by dots', ipv6: 'eight hex groups, or fewer around one ::' }[kind];
  return new UsageError(`usage.net.${kind}`, `bad ${name} address ${JSON.stringify(s)}`, { expected: form, seen: s });
}

export function macFromString(s: string): Mac {
  const parts = s.split(':');
  if (parts.length !== 6) throw badAddress('mac', s);
  return new Uint8Array(parts.map((p) => {
    const v = parseInt(p, 16);
    if (!/^[0-9a-fA-F]{1,2}$/.test(p) || Number.isNaN(v)) throw badAddress('mac', s);
    return v;
  }));
}

export function macToString(m: Uint8Array, off = 0): string {
  const out: string[] = [];
  for (let i = 0; i < 6; i++) out.push(m[off + i]!.toString(16).padStart(2, '0'));
  return out.join(':');
}

export function macEquals(a: Uint8Array, aOff: number, b: Uint8Array, bOff = 0): boolean {
  for (let i = 0; i < 6; i++) if (a[aOff + i] !== b[bOff + i]) return false;
  return true;
}

/** Group bit (multicast or broadcast). */
export function isMulticast(m: Uint8Array, off = 0): boolean {
  return (m[off]! & 1) === 1;
}

export function isBroadcast(m: Uint8Array, off = 0): boolean {
  for (let i = 0; i < 6; i++) if (m[off + i] !== 0xff) return false;
  return true;
}

/** A 48-bit key for maps (MAC at `off` of `b`). */
export function macKey(b: Uint8Array, off = 0): number {
  return (b[off]! * 0x10000000000) + (b[off + 1]! * 0x100000000) + ((b[off + 2]! << 24) >>> 0) + (b[off + 3]! << 16) + (b[off + 4]! << 8) + b[off + 5]!;
}

// ------------------------------------------------------------------ IPv4/IPv6 addresses

export function ip4FromString(s: string): Uint8Array {
  const p = s.split('.').map((x) => Number(x));
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw badAddress('ipv4', s);
  return new Uint8Array(p);
}

export function ip4ToString(b: Uint8Array, off = 0): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

export function ip6FromString(s: string): Uint8Array {
  const out = new Uint8Array(16);
  const [head, tail] = s.includes('::') ? s.split('::') : [s, undefined];
  const h = head ? head.split(':').filter((x) => x !== '') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  // eight groups, or fewer around one '::'; each group 1..4 hex digits
  const groupsOk = [...h, ...t].every((g) => /^[0-9a-fA-F]{1,4}$/.test(g));
  if (!groupsOk || s.split('::').length > 2 || (tail === undefined ? h.length !== 8 : h.length + t.length > 7)) throw badAddress('ipv6', s);
  h.forEach((g, i) => put16(out, i * 2, parseInt(g, 16)));
  t.forEach((g, i) => put16(out, 16 - (t.length - i) * 2, parseInt(g, 16)));
  return out;
}

// ------------------------------------------------------------------ builders

export interface EthOptions {
  dst: Mac;
  src: Mac;
  /** 802.1Q tag: VLAN id (12 bits) and priority. */
  vlan?: number;
  pcp?: number;
}

/** An Ethernet frame around `payload` (no FCS). */
export function buildEthernet(opts: EthOptions, ethertype: number, payload: Uint8Array): Uint8Array {
  const tag = opts.vlan !== undefined ? VLAN_TAG : 0;
  const f = new Uint8Array(ETH_HEADER + tag + payload.length);
  f.set(opts.dst.subarray(0, 6), 0);
  f.set(opts.src.subarray(0, 6), 6);
  if (opts.vlan !== undefined) {
    put16(f, 12, EtherType.VLAN);
    put16(f, 14, ((opts.pcp ?? 0) << 13) | (opts.vlan & 0xfff));
  }
  put16(f, 12 + tag, ethertype);
  f.set(payload, ETH_HEADER + tag);
  return f;
}

export interface Ip4Options {
  src: Uint8Array;
  dst: Uint8Array;
  ttl?: number;
  id?: number;
  tos?: number;
  /** Don't fragment. */
  df?: boolean;
}

export function buildIpv4(opts: Ip4Options, proto: number, payload: Uint8Array): Uint8Array {
  const p = new Uint8Array(IPV4_HEADER + payload.length);
  p[0] = 0x45;
  p[1] = opts.tos ?? 0;
  put16(p, 2, p.length);
  put16(p, 4, opts.id ?? 0);
  put16(p, 6, opts.df === false ? 0 : 0x4000);
  p[8] = opts.ttl ?? 64;
  p[9] = proto;
  p.set(opts.src, 12);
  p.set(opts.dst, 16);
  put16(p, 10, internetChecksum(p, 0, IPV4_HEADER));
  p.set(payload, IPV4_HEADER);
  return p;
}

export interface Ip6Options {
  src: Uint8Array;
  dst: Uint8Array;
  hopLimit?: number;
  flowLabel?: number;
}

export function buildIpv6(opts: Ip6Options, nextHeader: number, payload: Uint8Array): Uint8Array {
  const p = new Uint8Array(IPV6_HEADER + payload.length);
  put32(p, 0, (6 << 28) | ((opts.flowLabel ?? 0) & 0xfffff));
  put16(p, 4, payload.length);
  p[6] = nextHeader;
  p[7] = opts.hopLimit ?? 64;
  p.set(opts.src, 8);
  p.set(opts.dst, 24);
  p.set(payload, IPV6_HEADER);
  return p;
}

export interface TcpOptions {
  srcPort: number;
  dstPort: number;
  seq?: number;
  ack?: number;
  /** TCP flags byte (default ACK|PSH). */
  flags?: number;
  window?: number;
}

export const TcpFlag = { FIN: 1, SYN: 2, RST: 4, PSH: 8, ACK: 16, URG: 32, ECE: 64, CWR: 128 } as const;

/** A TCP segment (checksum left 0; the frame builders fill it). */
export function buildTcp(opts: TcpOptions, payload: Uint8Array): Uint8Array {
  const s = new Uint8Array(TCP_HEADER + payload.length);
  put16(s, 0, opts.srcPort);
  put16(s, 2, opts.dstPort);
  put32(s, 4, opts.seq ?? 0);
  put32(s, 8, opts.ack ?? 0);
  s[12] = 5 << 4;
  s[13] = opts.flags ?? TcpFlag.ACK | TcpFlag.PSH;
  put16(s, 14, opts.window ?? 65535);
  s.set(payload, TCP_HEADER);
  return s;
}

export function buildUdp(srcPort: number, dstPort: number, payload: Uint8Array): Uint8Array {
  const s = new Uint8Array(UDP_HEADER + payload.length);
  put16(s, 0, srcPort);
  put16(s, 2, dstPort);
  put16(s, 4, s.length & 0xffff);
  s.set(payload, UDP_HEADER);
  return s;
}

/** How the L4 checksum of a built frame is left. */
export type CsumMode = 'full' | 'partial' | 'zero';

export interface L4FrameOptions {
  eth: EthOptions;
  v6?: boolean;
  src: Uint8Array;
  dst: Uint8Array;
  proto: 'tcp' | 'udp';
  srcPort: number;
  dstPort: number;
  seq?: number;
  ipId?: number;
  tcpFlags?: number;
  /** 'full': complete checksum; 'partial': pseudo-header sum only (for NEEDS_CSUM offload). */
  csum?: CsumMode;
}

/** A complete Ethernet/IP/TCP-or-UDP frame with `payload`, and where its L4 checksum sits. */
export function buildL4Frame(o: L4FrameOptions, payload: Uint8Array): { frame: Uint8Array; csumStart: number; csumOffset: number; l4: number } {
  const seg = o.proto === 'tcp' ? buildTcp({ srcPort: o.srcPort, dstPort: o.dstPort, seq: o.seq ?? 0, flags: o.tcpFlags ?? TcpFlag.ACK | TcpFlag.PSH }, payload) : buildUdp(o.srcPort, o.dstPort, payload);
  const protoNum = o.proto === 'tcp' ? IpProto.TCP : IpProto.UDP;
  const ip = o.v6 ? buildIpv6({ src: o.src, dst: o.dst }, protoNum, seg) : buildIpv4({ src: o.src, dst: o.dst, id: o.ipId ?? 0 }, protoNum, seg);
  const frame = buildEthernet(o.eth, o.v6 ? EtherType.IPV6 : EtherType.IPV4, ip);
  const l3 = ETH_HEADER + (o.eth.vlan !== undefined ? VLAN_TAG : 0);
  const l4 = l3 + (o.v6 ? IPV6_HEADER : IPV4_HEADER);
  const csumOffset = o.proto === 'tcp' ? 16 : 6;
  fillL4Checksum(frame, l3, o.v6 ?? false, protoNum, l4, csumOffset, o.csum ?? 'full');
  return { frame, csumStart: l4, csumOffset, l4 };
}

/** Fill the TCP/UDP checksum field of `frame` ('partial': the pseudo-header sum, as NEEDS_CSUM expects). */
export function fillL4Checksum(frame: Uint8Array, l3: number, v6: boolean, proto: number, l4: number, csumOffset: number, mode: CsumMode): void {
  const l4len = frame.length - l4;
  put16(frame, l4 + csumOffset, 0);
  if (mode === 'zero') return;
  const ph = pseudoHeaderSum(frame, l3, v6, proto, l4len);
  if (mode === 'partial') {
    put16(frame, l4 + csumOffset, csumFold(ph));
    return;
  }
  let c = internetChecksum(frame, l4, frame.length, ph);
  if (c === 0 && proto === IpProto.UDP) c = 0xffff;
  put16(frame, l4 + csumOffset, c);
}

// ARP (RFC 826), Ethernet + IPv4 only.
export const ArpOp = { REQUEST: 1, REPLY: 2 } as const;

export interface Arp {
  op: number;
  sha: Mac;
  spa: Uint8Array;
  tha: Mac;
  tpa: Uint8Array;
}

export function buildArp(a: Arp): Uint8Array {
  const p = new Uint8Array(28);
  put16(p, 0, 1);
  put16(p, 2, EtherType.IPV4);
  p[4] = 6;
  p[5] = 4;
  put16(p, 6, a.op);
  p.set(a.sha, 8);
  p.set(a.spa, 14);
  p.set(a.tha, 18);
  p.set(a.tpa, 24);
  return p;
}

export function parseArp(frame: Uint8Array, off: number): Arp | null {
  if (frame.length < off + 28) return null;
  if (get16(frame, off) !== 1 || get16(frame, off + 2) !== EtherType.IPV4 || frame[off + 4] !== 6 || frame[off + 5] !== 4) return null;
  return {
    op: get16(frame, off + 6),
    sha: frame.slice(off + 8, off + 14),
    spa: frame.slice(off + 14, off + 18),
    tha: frame.slice(off + 18, off + 24),
    tpa: frame.slice(off + 24, off + 28),
  };
}

export const IcmpType = { ECHO_REPLY: 0, ECHO_REQUEST: 8, V6_ECHO_REQUEST: 128, V6_ECHO_REPLY: 129 } as const;

/** ICMP (v4) echo message with its checksum. */
export function buildIcmpEcho(type: number, id: number, seq: number, data: Uint8Array): Uint8Array {
  const p = new Uint8Array(8 + data.length);
  p[0] = type;
  put16(p, 4, id);
  put16(p, 6, seq);
  p.set(data, 8);
  put16(p, 2, internetChecksum(p));
  return p;
}

/** A whole ICMPv4 echo frame. */
export function buildPing(eth: EthOptions, src: Uint8Array, dst: Uint8Array, type: number, id: number, seq: number, data: Uint8Array, ipId = 0): Uint8Array {
  return buildEthernet(eth, EtherType.IPV4, buildIpv4({ src, dst, id: ipId }, IpProto.ICMP, buildIcmpEcho(type, id, seq, data)));
}

// ------------------------------------------------------------------ parser

/** Where each layer of a frame sits (offsets into the frame; -1: absent). */
export interface FrameInfo {
  /** Destination MAC at 0, source at 6. */
  readonly len: number;
  /** 802.1Q VLAN id, or -1. */
  vlan: number;
  /** The EtherType after any VLAN tag. */
  ethertype: number;
  /** Network header offset, or -1. */
  l3: number;
  /** 4 or 6 when l3 is IP, else 0. */
  ipVersion: 0 | 4 | 6;
  /** IPv6 with extension headers before the transport header. */
  ipv6Ext: boolean;
  /** Transport protocol number, or -1. */
  proto: number;
  /** Transport header offset, or -1 (also -1 for non-first IPv4 fragments). */
  l4: number;
  /** Header bytes through the transport header (TCP: with options), or -1. */
  headerLen: number;
  /** Offset of the end of the IP packet (frames may carry Ethernet padding after it). */
  ipEnd: number;
  srcPort: number;
  dstPort: number;
}

/** Locate the layers of an Ethernet frame. Never reads past the frame; inconsistent layers are reported absent. */
export function parseFrame(f: Uint8Array): FrameInfo {
  const info: FrameInfo = { len: f.length, vlan: -1, ethertype: -1, l3: -1, ipVersion: 0, ipv6Ext: false, proto: -1, l4: -1, headerLen: -1, ipEnd: f.length, srcPort: -1, dstPort: -1 };
  if (f.length < ETH_HEADER) return info;
  let off = 12;
  let et = get16(f, off);
  if (et === EtherType.VLAN || et === EtherType.QINQ) {
    if (f.length < ETH_HEADER + VLAN_TAG) return info;
    info.vlan = get16(f, 14) & 0xfff;
    off += 4;
    et = get16(f, off);
  }
  info.ethertype = et;
  parseIpInto(f, off + 2, et, info, f.length);
  return info;
}

/** Locate the IP and transport layers of a packet whose network header starts at `l3` (e.g. an inner packet of a tunnel). */
export function parseIp(f: Uint8Array, l3: number, end: number = f.length): FrameInfo {
  const info: FrameInfo = { len: f.length, vlan: -1, ethertype: -1, l3: -1, ipVersion: 0, ipv6Ext: false, proto: -1, l4: -1, headerLen: -1, ipEnd: end, srcPort: -1, dstPort: -1 };
  if (l3 < 0 || l3 >= end) return info;
  const v = f[l3]! >> 4;
  parseIpInto(f, l3, v === 4 ? EtherType.IPV4 : v === 6 ? EtherType.IPV6 : -1, info, end);
  return info;
}

function parseIpInto(f: Uint8Array, l3: number, et: number, info: FrameInfo, limit: number): void {
  if (et === EtherType.IPV4) {
    if (limit < l3 + IPV4_HEADER || f[l3]! >> 4 !== 4) return;
    const ihl = (f[l3]! & 0xf) * 4;
    const total = get16(f, l3 + 2);
    if (ihl < IPV4_HEADER || total < ihl || l3 + total > limit) return;
    info.l3 = l3;
    info.ipVersion = 4;
    info.ipEnd = l3 + total;
    info.proto = f[l3 + 9]!;
    const fragOff = get16(f, l3 + 6) & 0x1fff;
    if (fragOff !== 0) return;
    info.l4 = l3 + ihl;
  } else if (et === EtherType.IPV6) {
    if (limit < l3 + IPV6_HEADER || f[l3]! >> 4 !== 6) return;
    const plen = get16(f, l3 + 4);
    if (l3 + IPV6_HEADER + plen > limit) return;
    info.l3 = l3;
    info.ipVersion = 6;
    info.ipEnd = l3 + IPV6_HEADER + plen;
    let nh = f[l3 + 6]!;
    let p = l3 + IPV6_HEADER;
    // Walk a bounded number of extension headers.
    for (let i = 0; i < 8 && (nh === IpProto.HOPOPT || nh === IpProto.ROUTING || nh === IpProto.DSTOPTS || nh === IpProto.FRAGMENT); i++) {
      if (p + 8 > info.ipEnd) return;
      info.ipv6Ext = true;
      const next = f[p]!;
      const len = nh === IpProto.FRAGMENT ? 8 : (f[p + 1]! + 1) * 8;
      if (nh === IpProto.FRAGMENT && (get16(f, p + 2) & 0xfff8) !== 0) {
        info.proto = next;
        return;
      }
      nh = next;
      p += len;
    }
    info.proto = nh;
    if (p > info.ipEnd) return;
    info.l4 = p;
  } else {
    return;
  }
  const l4 = info.l4;
  if (info.proto === IpProto.TCP) {
    if (l4 + TCP_HEADER > info.ipEnd) {
      info.l4 = -1;
      return;
    }
    const doff = (f[l4 + 12]! >> 4) * 4;
    if (doff < TCP_HEADER || l4 + doff > info.ipEnd) {
      info.l4 = -1;
      return;
    }
    info.headerLen = l4 + doff;
    info.srcPort = get16(f, l4);
    info.dstPort = get16(f, l4 + 2);
  } else if (info.proto === IpProto.UDP) {
    if (l4 + UDP_HEADER > info.ipEnd) {
      info.l4 = -1;
      return;
    }
    info.headerLen = l4 + UDP_HEADER;
    info.srcPort = get16(f, l4);
    info.dstPort = get16(f, l4 + 2);
  } else if (info.proto === IpProto.ICMP || info.proto === IpProto.ICMPV6) {
    info.headerLen = Math.min(l4 + 8, info.ipEnd);
  }
}

/** Where the checksum of the transport protocol sits, relative to the transport header; -1: none known. */
export function l4CsumOffset(proto: number): number {
  if (proto === IpProto.TCP) return 16;
  if (proto === IpProto.UDP) return 6;
  if (proto === IpProto.ICMP || proto === IpProto.ICMPV6) return 2;
  return -1;
}

export interface ChecksumReport {
  /** IPv4 header checksum correct (true for IPv6, which has none). */
  ip: boolean;
  /** Transport checksum correct (true when there is nothing to check, or UDP/IPv4 with checksum 0). */
  l4: boolean;
  /** What was checked, for messages. */
  what: string;
}

/** Verify IPv4 header and TCP/UDP/ICMP checksums of a complete frame. */
export function verifyChecksums(f: Uint8Array, info: FrameInfo = parseFrame(f)): ChecksumReport {
  let ip = true;
  let l4 = true;
  const what: string[] = [];
  if (info.ipVersion === 4) {
    const ihl = (f[info.l3]! & 0xf) * 4;
    ip = internetChecksum(f, info.l3, info.l3 + ihl) === 0;
    what.push('ipv4');
  }
  if (info.l4 >= 0) {
    const end = info.ipEnd;
    const v6 = info.ipVersion === 6;
    if (info.proto === IpProto.TCP || info.proto === IpProto.UDP) {
      if (info.proto === IpProto.UDP && !v6 && get16(f, info.l4 + 6) === 0) {
        l4 = true;
      } else {
        const ph = pseudoHeaderSum(f, info.l3, v6, info.proto, end - info.l4);
        l4 = internetChecksum(f, info.l4, end, ph) === 0;
      }
      what.push(info.proto === IpProto.TCP ? 'tcp' : 'udp');
    } else if (info.proto === IpProto.ICMP) {
      l4 = internetChecksum(f, info.l4, end) === 0;
      what.push('icmp');
    } else if (info.proto === IpProto.ICMPV6) {
      const ph = pseudoHeaderSum(f, info.l3, true, IpProto.ICMPV6, end - info.l4);
      l4 = internetChecksum(f, info.l4, end, ph) === 0;
      what.push('icmpv6');
    }
  }
  return { ip, l4, what: what.join('+') };
}

/** Convenience: IPv4 ICMP echo fields of a frame, or null. */
export function parseIcmpEcho(f: Uint8Array, info: FrameInfo = parseFrame(f)): { type: number; id: number; seq: number; data: Uint8Array; src: Uint8Array; dst: Uint8Array } | null {
  if (info.ipVersion !== 4 || info.proto !== IpProto.ICMP || info.l4 < 0 || info.l4 + 8 > info.ipEnd) return null;
  const t = f[info.l4]!;
  if (t !== IcmpType.ECHO_REQUEST && t !== IcmpType.ECHO_REPLY) return null;
  return {
    type: t,
    id: get16(f, info.l4 + 4),
    seq: get16(f, info.l4 + 6),
    data: f.slice(info.l4 + 8, info.ipEnd),
    src: f.slice(info.l3 + 12, info.l3 + 16),
    dst: f.slice(info.l3 + 16, info.l3 + 20),
  };
}
