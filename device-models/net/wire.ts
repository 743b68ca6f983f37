/**
 * Frames on the simulated wire, and the offload work a NIC does for a peer that cannot take an
 * offloaded frame: completing a partial checksum (NEEDS_CSUM) and segmenting a TCP or UDP GSO
 * super-frame into MTU-sized frames with correct headers and checksums.
 *
 * A WireFrame is what a device model hands to a backend: the frame bytes plus, when the sender
 * left work to do, the pending checksum and GSO facts. Backends that want on-the-wire frames
 * (pcap, the host peer, a NIC whose driver did not negotiate the offload) call `normalize`.
 */
import { csumAdd, csumFold, writeBe16 } from '../../spec-refs/abi/packet.ts';
import { gsoSegment, type TunnelOffsets } from '../../spec-refs/abi/gso.ts';

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
  /** A UDP-tunnel GSO frame: where the outer UDP and the inner network headers are. */
  readonly tunnel?: TunnelOffsets;
  /** Tunnel: the outer UDP checksum is to be filled in each segment. */
  readonly outerCsum?: boolean;
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

/** Maximum number of segments one GSO frame may be cut into (bounds the work a hostile sender causes). */
export { MAX_SEGMENTS } from '../../spec-refs/abi/gso.ts';

/**
 * Cut a GSO super-frame into segments. The header length is taken from parsing the frame, never
 * from the sender's hdr_len. Returns null when the frame does not match its GSO type.
 */
export function segment(data: Uint8Array, gso: GsoInfo): Uint8Array[] | null {
  return gsoSegment(data, { type: gso.type, size: gso.size, ...(gso.tunnel ? { tunnel: gso.tunnel, outerCsum: gso.outerCsum ?? false } : {}) });
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
