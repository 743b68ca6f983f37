/**
 * Frames on the simulated wire, and the offload work a NIC does for a peer that cannot take an
 * offloaded frame: completing a partial checksum (NEEDS_CSUM) and segmenting a TCP or UDP GSO
 * super-frame into MTU-sized frames with correct headers and checksums.
 *
 * A WireFrame is what a device model hands to a backend: the frame bytes plus, when the sender
 * left work to do, the pending checksum and GSO facts. Backends that want on-the-wire frames
 * (pcap, the host peer, a NIC whose driver did not negotiate the offload) call `normalize`.
 */
import {
  IpProto,
  TcpFlag,
  csumAdd,
  csumFold,
  internetChecksum,
  parseFrame,
  pseudoHeaderSum,
  readBe16,
  readBe32,
  writeBe16,
  writeBe32,
  type FrameInfo,
} from '../../drivers/net/packet.ts';
import { NetHdr } from '../../spec-refs/net.ts';

export interface PartialCsum {
  /** Offset where the ones' complement sum starts. */
  readonly start: number;
  /** Where, relative to `start`, the 16-bit result goes. */
  readonly offset: number;
}

export interface GsoInfo {
  /** GSO_TCPV4, GSO_TCPV6 or GSO_UDP_L4. */
  readonly type: number;
  /** Payload bytes per segment (MSS). */
  readonly size: number;
  /** Length of the headers replicated in every segment (through the transport header). */
  readonly hdrLen: number;
  /** The TCP segments carry CWR/ECE (GSO_ECN). */
  readonly ecn?: boolean;
}

export interface WireFrame {
  readonly data: Uint8Array;
  /** The checksum at start+offset holds only the pseudo-header sum and must be completed. */
  readonly csum?: PartialCsum;
  /** The frame is a GSO super-frame to be cut into segments of `gso.size`. */
  readonly gso?: GsoInfo;
  /** The sender has verified the frame's checksums. */
  readonly dataValid?: boolean;
}

/** Ones' complement sum from `start` to the end, stored at start+offset (NEEDS_CSUM completion). */
export function completeChecksum(frame: Uint8Array, start: number, offset: number): void {
  const sum = csumAdd(frame, start, frame.length, 0);
  let c = ~csumFold(sum) & 0xffff;
  // UDP transmits a computed 0 as 0xffff (0 means "no checksum"); for TCP both are the same value.
  if (c === 0) c = 0xffff;
  writeBe16(frame, start + offset, c);
}

/** Fill a full TCP/UDP checksum from scratch (ignores what the field holds). */
function fullL4Checksum(f: Uint8Array, info: FrameInfo, end: number): void {
  const off = info.proto === IpProto.TCP ? 16 : 6;
  writeBe16(f, info.l4 + off, 0);
  const ph = pseudoHeaderSum(f, info.l3, info.ipVersion === 6, info.proto, end - info.l4);
  let c = internetChecksum(f, info.l4, end, ph);
  if (c === 0 && info.proto === IpProto.UDP) c = 0xffff;
  writeBe16(f, info.l4 + off, c);
}

/** Maximum number of segments one GSO frame may be cut into (bounds the work a hostile sender causes). */
export const MAX_SEGMENTS = 65535;

/**
 * Cut a GSO super-frame into segments. The header length is taken from parsing the frame, never
 * from the sender's hdr_len. Returns null when the frame does not match its GSO type.
 */
export function segment(data: Uint8Array, gso: GsoInfo): Uint8Array[] | null {
  const info = parseFrame(data);
  if (info.l4 < 0 || info.headerLen < 0) return null;
  const tcp = gso.type === NetHdr.GSO_TCPV4 || gso.type === NetHdr.GSO_TCPV6;
  if (tcp && info.proto !== IpProto.TCP) return null;
  if (gso.type === NetHdr.GSO_UDP_L4 && info.proto !== IpProto.UDP) return null;
  if (gso.type === NetHdr.GSO_TCPV4 && info.ipVersion !== 4) return null;
  if (gso.type === NetHdr.GSO_TCPV6 && info.ipVersion !== 6) return null;
  if (!tcp && gso.type !== NetHdr.GSO_UDP_L4) return null;
  if (gso.size <= 0) return null;
  const hlen = info.headerLen;
  const end = info.ipEnd;
  const payload = end - hlen;
  const n = Math.max(1, Math.ceil(payload / gso.size));
  if (n > MAX_SEGMENTS) return null;
  const out: Uint8Array[] = [];
  const v4 = info.ipVersion === 4;
  const ipId = v4 ? readBe16(data, info.l3 + 4) : 0;
  const seq = tcp ? readBe32(data, info.l4 + 4) : 0;
  const flags = tcp ? data[info.l4 + 13]! : 0;
  for (let i = 0; i < n; i++) {
    const pOff = hlen + i * gso.size;
    const pLen = Math.min(gso.size, end - pOff);
    const s = new Uint8Array(hlen + Math.max(0, pLen));
    s.set(data.subarray(0, hlen), 0);
    if (pLen > 0) s.set(data.subarray(pOff, pOff + pLen), hlen);
    const segEnd = s.length;
    if (v4) {
      writeBe16(s, info.l3 + 2, segEnd - info.l3);
      writeBe16(s, info.l3 + 4, (ipId + i) & 0xffff);
      writeBe16(s, info.l3 + 10, 0);
      const ihl = (s[info.l3]! & 0xf) * 4;
      writeBe16(s, info.l3 + 10, internetChecksum(s, info.l3, info.l3 + ihl));
    } else {
      writeBe16(s, info.l3 + 4, segEnd - info.l3 - 40);
    }
    if (tcp) {
      writeBe32(s, info.l4 + 4, (seq + i * gso.size) >>> 0);
      let f = flags;
      // FIN and PSH belong to the last segment only; CWR to the first only.
      if (i !== n - 1) f &= ~(TcpFlag.FIN | TcpFlag.PSH);
      if (i !== 0) f &= ~TcpFlag.CWR;
      s[info.l4 + 13] = f;
    } else {
      writeBe16(s, info.l4 + 4, segEnd - info.l4);
    }
    fullL4Checksum(s, info, segEnd);
    out.push(s);
  }
  return out;
}

/** On-the-wire frames for a WireFrame: segmented and with every checksum complete. Malformed GSO frames yield []. */
export function normalize(wf: WireFrame): Uint8Array[] {
  if (wf.gso) return segment(wf.data, wf.gso) ?? [];
  if (wf.csum) {
    const copy = wf.data.slice();
    completeChecksum(copy, wf.csum.start, wf.csum.offset);
    return [copy];
  }
  return [wf.data];
}
