/**
 * virtio-net driver: transmitting — spec "Device Operation / Packet Transmission"
 * (net.driver.15-.62). `send` writes the header the negotiated features call for (flags only
 * with CSUM, num_buffers 0, GSO fields and tunnel offsets per the request), asks the device for
 * checksum / segmentation offload where it was negotiated and does the work in software
 * otherwise. The pair a frame leaves on is one in use (net.driver.91/.92).
 */
import { DeviceMisbehaviourError, UsageError } from '../../../spec-refs/errors.ts';
import { ETH_HLEN, NetHdr } from '../../../spec-refs/abi/net.ts';
import { gsoLayers, gsoSegment, pseudoHeaderFolded, vxlanOffsets, type TunnelOffsets } from '../../../spec-refs/abi/gso.ts';
import { IpProto, csumAdd, csumFold, parseFrame, writeBe16, type FrameInfo } from '../../../spec-refs/abi/packet.ts';
import type { NetDriverState, TxSlot } from './state.ts';

export interface TxOffload {
  /** Let the device complete the checksum from `start`, storing it at start+offset (pseudo-header already in place). */
  csum?: { start: number; offset: number };
  /**
   * Segmentation: gso_type GSO_TCPV4/GSO_TCPV6 (TCP) or GSO_UDP_L4 (UDP) and the payload per segment.
   * `tunnel`: the frame is a UDP tunnel (true: VXLAN, found by parsing; or explicit offsets) and the
   * type is the inner packet's.
   */
  gso?: { type: number; size: number; tunnel?: boolean | TunnelOffsets };
  /** Transmit queue pair (default: by flow hash). */
  pair?: number;
}

export function reclaimTx(drv: NetDriverState, p: number): number {
  const q = drv.txq[p]!;
  let n = 0;
  for (let u = q.getUsed(); u; u = q.getUsed()) {
    n++;
    const s = u.token;
    if (s.big) drv.platform.dma.free(s.addr);
    else drv.txPool[p]!.push(s.addr);
  }
  return n;
}

/** The pair a frame goes out on when the caller does not say (net.driver.91/.92: only pairs in use). */
function pickPair(drv: NetDriverState, frame: Uint8Array): number {
  if (drv.activePairs <= 1) return 0;
  const info = parseFrame(frame);
  if (info.srcPort < 0) return 0;
  return ((info.srcPort * 31 + info.dstPort) >>> 0) % drv.activePairs;
}

/**
 * Transmit one Ethernet frame. With `offload.csum` the checksum at start+offset holds the
 * pseudo-header sum; with `offload.gso` the frame is a TCP super-frame. Offloads the device did
 * not offer are done here. Returns false when the transmit ring is full (nothing sent).
 */
export function send(drv: NetDriverState, frame: Uint8Array, offload: TxOffload = {}): boolean {
  if (drv.broken) throw new DeviceMisbehaviourError('net.broken', 'the device misbehaved; reset needed');
  const p = offload.pair ?? pickPair(drv, frame);
  if (p < 0 || p >= drv.activePairs) throw new UsageError('net.tx.pair', 'transmit pair not in use', { statements: ['net.driver.92'], expected: `< ${drv.activePairs}`, seen: `${p}` });
  if (frame.length < ETH_HLEN) throw new UsageError('net.tx.short', 'frame shorter than an Ethernet header', { seen: `${frame.length}` });
  const gso = offload.gso;
  if (gso) {
    const tunnel = tunnelOf(frame, gso.tunnel);
    const l = gsoLayers(frame, { type: gso.type, size: gso.size, ...(tunnel ? { tunnel } : {}) });
    if (typeof l === 'string') throw new UsageError('net.tx.gso', `frame does not match its GSO request: ${l}`);
    const inner = l.inner;
    let hw = (gso.type === NetHdr.GSO_TCPV4 && drv.f.tso4) || (gso.type === NetHdr.GSO_TCPV6 && drv.f.tso6) || (gso.type === NetHdr.GSO_UDP_L4 && drv.f.hostUso);
    // net.driver.31/.56: tunnel GSO only with HOST_UDP_TUNNEL_GSO.
    if (tunnel && !drv.f.hostTunnel) hw = false;
    // net.driver.28: ECN (CWR) in a TSO frame needs HOST_ECN; otherwise segment here.
    if (hw && inner.proto === IpProto.TCP && frame[inner.l4 + 13]! & 0x80 && !drv.f.hostEcn) hw = false;
    if (!hw) return sendSoftwareGso(drv, frame, gso.type, gso.size, tunnel, p);
    return post(drv, p, frame, undefined, { type: gso.type, size: gso.size, tunnel, inner });
  }
  if (!gso && frame.length > drv.mtu + ETH_HLEN + 4) {
    // net.driver.9: nothing above mtu + link header without GSO.
    throw new UsageError('net.tx.mtu', 'frame larger than the MTU', { statements: ['net.driver.9'], expected: `<= ${drv.mtu + ETH_HLEN + 4}`, seen: `${frame.length}` });
  }
  let data = frame;
  let csum = offload.csum;
  if (csum && !drv.f.csum) {
    // net.driver.17/.18: no CSUM negotiated, so flags stay 0 and the checksum is finished here.
    data = frame.slice();
    finishChecksum(data, csum.start, csum.offset);
    csum = undefined;
  }
  return post(drv, p, data, csum, gso);
}

function sendSoftwareGso(drv: NetDriverState, frame: Uint8Array, type: number, size: number, tunnel: TunnelOffsets | undefined, p: number): boolean {
  // Segments leave with every checksum complete (outer UDP included), so no offload is asked for.
  const segs = gsoSegment(frame, { type, size, ...(tunnel ? { tunnel, outerCsum: true } : {}) });
  if (!segs) throw new UsageError('net.tx.gso', 'frame does not match its GSO type');
  const q = drv.txq[p]!;
  reclaimTx(drv, p);
  if (q.numFree < Math.min(segs.length, q.size)) return false;
  for (const s of segs) {
    drv.stats.txSegmentsSoftware++;
    // More segments than the ring holds: wait (bounded) for completions between them.
    while (!post(drv, p, s, undefined, undefined)) {
      drv.dev.waitUntil(() => {
        drv.poll();
        return q.numFree > 0;
      }, 'transmit ring space');
    }
  }
  return true;
}

/** Tunnel offsets for a send request: explicit, found by parsing (VXLAN), or none. */
function tunnelOf(frame: Uint8Array, t: boolean | TunnelOffsets | undefined): TunnelOffsets | undefined {
  if (!t) return undefined;
  if (t === true) {
    const v = vxlanOffsets(frame);
    if (!v) throw new UsageError('net.tx.tunnel', 'not a VXLAN frame (outer UDP to port 4789 with an inner IP packet)');
    return { outerTh: v.outerTh, innerNh: v.innerNh };
  }
  return t;
}

function post(drv: NetDriverState, p: number, data: Uint8Array, csum: { start: number; offset: number } | undefined, gso: { type: number; size: number; tunnel?: TunnelOffsets | undefined; inner: FrameInfo } | undefined): boolean {
  const q = drv.txq[p]!;
  if (q.numFree < 1) {
    reclaimTx(drv, p);
    if (q.numFree < 1) return false;
  }
  const total = drv.hdrLen + data.length;
  let slot: TxSlot;
  if (total <= drv.txSlotSize && drv.txPool[p]!.length > 0) slot = { addr: drv.txPool[p]!.pop()!, len: drv.txSlotSize, big: false };
  else slot = { addr: drv.platform.dma.alloc(total, 16), len: total, big: true };
  const h = new Uint8Array(drv.hdrLen);
  const hv = new DataView(h.buffer);
  // net.driver.15/.16/.17/.45/.46/.47: header per negotiated features, num_buffers 0.
  if (csum) {
    h[NetHdr.OFF_FLAGS] = NetHdr.F_NEEDS_CSUM;
    hv.setUint16(NetHdr.OFF_CSUM_START, csum.start, true);
    hv.setUint16(NetHdr.OFF_CSUM_OFFSET, csum.offset, true);
  }
  if (gso) {
    const info = gso.inner;
    const tcp = info.proto === IpProto.TCP;
    const off = tcp ? 16 : 6;
    h[NetHdr.OFF_FLAGS] = NetHdr.F_NEEDS_CSUM;
    // net.driver.29: GSO_ECN when the segments carry ECN (CWR) and HOST_ECN is negotiated.
    let type = gso.type | (tcp && drv.f.hostEcn && data[info.l4 + 13]! & 0x80 ? NetHdr.GSO_ECN : 0);
    // net.driver.48/.49: hdr_len through the (inner) transport header.
    hv.setUint16(NetHdr.OFF_HDR_LEN, info.headerLen, true);
    hv.setUint16(NetHdr.OFF_GSO_SIZE, gso.size, true);
    // net.driver.51: csum_start/csum_offset name the (inner) transport checksum.
    hv.setUint16(NetHdr.OFF_CSUM_START, info.l4, true);
    hv.setUint16(NetHdr.OFF_CSUM_OFFSET, off, true);
    data = data.slice();
    // net.driver.43: the (inner) transport checksum holds the pseudo-header sum.
    writeBe16(data, info.l4 + off, pseudoHeaderFolded(data, info));
    if (gso.tunnel) {
      // net.driver.32/.33: the tunnel bit of the inner IP version; net.driver.51: both offsets.
      type |= info.ipVersion === 6 ? NetHdr.GSO_UDP_TUNNEL_IPV6 : NetHdr.GSO_UDP_TUNNEL_IPV4;
      hv.setUint16(NetHdr.OFF_OUTER_TH, gso.tunnel.outerTh, true);
      hv.setUint16(NetHdr.OFF_INNER_NH, gso.tunnel.innerNh, true);
      const outer = parseFrame(data);
      if (drv.f.hostTunnelCsum) {
        // net.driver.35/.53: outer checksum offload: UDP_TUNNEL_CSUM and the outer pseudo-header sum.
        h[NetHdr.OFF_FLAGS] = NetHdr.F_NEEDS_CSUM | NetHdr.F_UDP_TUNNEL_CSUM;
        writeBe16(data, gso.tunnel.outerTh + 6, pseudoHeaderFolded(data, { ...outer, proto: IpProto.UDP, l4: gso.tunnel.outerTh }));
      } else {
        // net.driver.54/.55: without outer checksum offload the outer UDP checksum is 0.
        writeBe16(data, gso.tunnel.outerTh + 6, 0);
      }
    }
    h[NetHdr.OFF_GSO_TYPE] = type;
  }
  const mem = drv.platform.mem;
  mem.writeBytes(slot.addr, h);
  mem.writeBytes(slot.addr + drv.hdrLen, data);
  if (!q.add([{ addr: slot.addr, len: total }], [], slot)) {
    if (slot.big) drv.platform.dma.free(slot.addr);
    else drv.txPool[p]!.push(slot.addr);
    return false;
  }
  q.kick();
  drv.stats.txFrames++;
  return true;
}

/** Wait until every transmitted frame was completed by the device. */
export function flushTx(drv: NetDriverState, timeoutNs = drv.dev.timeoutNs): void {
  drv.dev.waitUntil(() => {
    drv.poll();
    return drv.txq.every((q) => q.inFlight === 0);
  }, 'transmit completions', timeoutNs);
}

/** Complete a checksum in software: ones' complement sum from `start` to the end, stored at start+offset. */
export function finishChecksum(frame: Uint8Array, start: number, offset: number): void {
  let c = ~csumFold(csumAdd(frame, start, frame.length)) & 0xffff;
  if (c === 0) c = 0xffff;
  writeBe16(frame, start + offset, c);
}
