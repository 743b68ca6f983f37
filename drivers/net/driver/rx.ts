/**
 * virtio-net driver: receiving — spec "Device Operation / Processing of Incoming Packets"
 * (net.driver.68-.77), with the device's side checked (net.device.27-.58: used lengths,
 * num_buffers, header flags and GSO types against what was posted and negotiated; a breach drops
 * the frame and is recorded). NAPI-style: a used-buffer interrupt turns the receive queues'
 * interrupts off, `poll` drains them in budgeted rounds, reposting each buffer at once, then turns
 * interrupts back on and looks once more. `poll` also reaps transmit and control completions and
 * runs a pending announcement, so every wait of the driver goes through it.
 */
import { DeviceMisbehaviourError, TimeoutError } from '../../../spec-refs/errors.ts';
import { ETH_HLEN, NetHdr } from '../../../spec-refs/abi/net.ts';
import { gsoLayers } from '../../../spec-refs/abi/gso.ts';
import { parseFrame } from '../../../spec-refs/abi/packet.ts';
import type { NetDriverState, RxFrame } from './state.ts';
import { finishChecksum, reclaimTx } from './tx.ts';
import { doAnnounce, reapCtrl } from './ctrl.ts';

/** Deliver frames to `fn` as they arrive (frames already queued are delivered first). */
export function onReceive(drv: NetDriverState, fn: ((f: RxFrame) => void) | null): void {
  drv.callback = fn;
  if (fn) while (drv.rxQueue.length) fn(drv.rxQueue.shift()!);
}

export function onUsedInterrupt(drv: NetDriverState): void {
  // NAPI: suppress receive interrupts, poll, re-enable when drained.
  for (const q of drv.rxq) q.disableInterrupts();
  poll(drv);
}

/** Handle everything the device completed (receive, transmit, control); returns frames received. */
export function poll(drv: NetDriverState): number {
  if (drv.inPoll || drv.broken) return 0;
  drv.inPoll = true;
  let n = 0;
  try {
    drv.stats.napiPolls++;
    for (let p = 0; p < drv.rxq.length; p++) {
      const q = drv.rxq[p]!;
      if (drv.resetting.has(2 * p)) continue;
      for (;;) {
        q.disableInterrupts();
        let round = 0;
        let drained = false;
        while (round < drv.napiBudget) {
          const got = rxOne(drv, p);
          if (got < 0) {
            drained = true;
            break;
          }
          round += got;
        }
        const part = drv.partial[p];
        if (drained && part) {
          // net.device.32: all buffers of a frame are used together; a partial frame means some are missing.
          drv.deviceError('net.device.32', `frame with num_buffers ${part.need} but only ${part.parts.length} used so far`);
        }
        n += round;
        refillKick(drv, p);
        if (round >= drv.napiBudget) continue;
        // Drained: interrupts back on, then look once more (a buffer may have slipped in).
        if (q.enableInterrupts()) break;
      }
    }
    for (let p = 0; p < drv.txq.length; p++) if (!drv.resetting.has(2 * p + 1)) reclaimTx(drv, p);
    reapCtrl(drv);
  } catch (e) {
    if (e instanceof DeviceMisbehaviourError) {
      drv.broken = true;
      drv.deviceError(e.statements[0] ?? 'ring', e.message);
    }
    throw e;
  } finally {
    drv.inPoll = false;
  }
  if (drv.announcePending && !drv.ctrlBusy) doAnnounce(drv);
  return n;
}

function refillKick(drv: NetDriverState, p: number): void {
  drv.rxq[p]!.kick();
}

/** Take one used receive buffer of pair `p`; returns frames completed (0 or 1) or -1 when none is pending. */
function rxOne(drv: NetDriverState, p: number): number {
  const q = drv.rxq[p]!;
  const u = q.getUsed();
  if (!u) return -1;
  const buf = u.token;
  const len = u.len;
  const mem = drv.platform.mem;
  let done = 0;
  const part = drv.partial[p];
  if (part) {
    // A continuation buffer of a mergeable frame: data only. Every buffer but the last is full (net.device.31).
    if (part.parts.length > 0 && part.lastLen < part.lastPosted) drv.deviceError('net.device.31', `mergeable buffer ${part.parts.length} of ${part.need} filled ${part.lastLen} of ${part.lastPosted} bytes`);
    part.lastLen = len;
    part.lastPosted = buf.len;
    part.parts.push(mem.readBytes(buf.addr, len));
    if (part.parts.length >= part.need) {
      drv.partial[p] = null;
      done = finishFrame(drv, p, part.hdr, part.parts, part.need);
    }
  } else if (len < drv.hdrLen) {
    drv.deviceError('net.device.27', `used length ${len} shorter than the ${drv.hdrLen}-byte header`);
    drv.stats.rxDropped++;
  } else {
    const hdr = mem.readBytes(buf.addr, drv.hdrLen);
    const nb = drv.hdrLen >= NetHdr.SIZE_BASE ? hdr[NetHdr.OFF_NUM_BUFFERS]! | (hdr[NetHdr.OFF_NUM_BUFFERS + 1]! << 8) : 1;
    const data = mem.readBytes(buf.addr + drv.hdrLen, len - drv.hdrLen);
    if (!drv.f.mrg && drv.hdrLen >= NetHdr.SIZE_BASE && nb !== 1) {
      drv.deviceError('net.device.29', `num_buffers ${nb} without MRG_RXBUF`);
      drv.stats.rxDropped++;
    } else if (drv.f.mrg && (nb < 1 || nb > q.size)) {
      drv.deviceError('net.device.30', `num_buffers ${nb}`);
      drv.stats.rxDropped++;
    } else if (drv.f.mrg && nb > 1) {
      drv.partial[p] = { parts: [data], need: nb, hdr, lastLen: len, lastPosted: buf.len };
    } else {
      done = finishFrame(drv, p, hdr, [data], 1);
    }
  }
  // Repost the buffer at once (the ring never runs dry while frames flow).
  q.add([], [{ addr: buf.addr, len: buf.len }], buf);
  drv.stats.refills++;
  return done;
}

function finishFrame(drv: NetDriverState, p: number, hdr: Uint8Array, parts: Uint8Array[], numBuffers: number): number {
  let data: Uint8Array;
  if (parts.length === 1) data = parts[0]!;
  else {
    let total = 0;
    for (const x of parts) total += x.length;
    data = new Uint8Array(total);
    let o = 0;
    for (const x of parts) {
      data.set(x, o);
      o += x.length;
    }
  }
  const hv = new DataView(hdr.buffer, hdr.byteOffset, hdr.byteLength);
  const flags = hdr[NetHdr.OFF_FLAGS]!;
  const gsoType = hdr[NetHdr.OFF_GSO_TYPE]!;
  const gsoSize = hv.getUint16(NetHdr.OFF_GSO_SIZE, true);
  const csumStart = hv.getUint16(NetHdr.OFF_CSUM_START, true);
  const csumOffset = hv.getUint16(NetHdr.OFF_CSUM_OFFSET, true);
  const drop = (id: string, detail: string): number => {
    drv.deviceError(id, detail);
    drv.stats.rxDropped++;
    return 0;
  };
  // net.driver.68: unknown flag bits ignored.
  if (!drv.f.guestCsum && flags & (NetHdr.F_NEEDS_CSUM | NetHdr.F_DATA_VALID)) return drop('net.device.33', `flags ${flags} without GUEST_CSUM`);
  if (flags & NetHdr.F_RSC_INFO && !drv.f.rscExt) return drop('net.device.58', 'RSC_INFO without RSC_EXT');
  // RSC_INFO: csum_start/csum_offset carry coalescing counts; the checksum offsets come from the headers.
  // (on a frame that is not GSO the bit means nothing and is ignored, net.driver.68).
  const rsc = (flags & NetHdr.F_RSC_INFO) !== 0 && (gsoType & 0x1f) !== NetHdr.GSO_NONE;
  if (flags & NetHdr.F_UDP_TUNNEL_CSUM && !drv.f.guestTunnelCsum) return drop('net.device.40', 'UDP_TUNNEL_CSUM without GUEST_UDP_TUNNEL_GSO_CSUM');
  const tunnel = gsoType & (NetHdr.GSO_UDP_TUNNEL_IPV4 | NetHdr.GSO_UDP_TUNNEL_IPV6);
  if (tunnel === (NetHdr.GSO_UDP_TUNNEL_IPV4 | NetHdr.GSO_UDP_TUNNEL_IPV6)) return drop('net.driver.75', `gso_type ${gsoType} has both tunnel bits`);
  if (tunnel && (!(flags & NetHdr.F_NEEDS_CSUM) || flags & NetHdr.F_DATA_VALID || (gsoType & 0x1f) === NetHdr.GSO_NONE)) return drop('net.driver.77', `tunnel gso_type ${gsoType} with flags ${flags}`);
  if (tunnel && !drv.f.guestTunnel) return drop('net.device.39', `gso_type ${gsoType} without GUEST_UDP_TUNNEL_GSO`);
  let outerTh = 0;
  let innerNh = 0;
  if (tunnel) {
    // net.driver.76: the offsets are read only for tunnel GSO, and checked against the frame.
    outerTh = hv.getUint16(NetHdr.OFF_OUTER_TH, true);
    innerNh = hv.getUint16(NetHdr.OFF_INNER_NH, true);
    const l = gsoLayers(data, { type: gsoType & 0x1f, size: Math.max(1, hv.getUint16(NetHdr.OFF_GSO_SIZE, true)), tunnel: { outerTh, innerNh } });
    if (typeof l === 'string') return drop('net.device.51', `tunnel offsets ${outerTh}/${innerNh}: ${l}`);
    if ((tunnel === NetHdr.GSO_UDP_TUNNEL_IPV4) !== (l.inner.ipVersion === 4)) return drop('net.device.50', `tunnel bit does not match the inner IPv${l.inner.ipVersion} header`);
  }
  let outerNh = 0;
  if (drv.f.outNet && drv.hdrLen >= NetHdr.OFF_OUTER_NH + 2) {
    // net.driver.69/.70: read only with OUT_NET_HEADER, used only when nonzero; then it must name the IP header.
    const onh = hv.getUint16(NetHdr.OFF_OUTER_NH, true);
    if (onh !== 0) {
      const fi = parseFrame(data);
      if (fi.ipVersion === 0 || fi.l3 !== onh) return drop('net.device.44', `outer_nh_offset ${onh}, network header at ${fi.ipVersion === 0 ? 'none' : fi.l3}`);
      outerNh = onh;
    }
  }
  const base = gsoType & 0x1f;
  if (gsoType & NetHdr.GSO_ECN && !drv.f.guestEcn) return drop('net.device.41', 'GSO_ECN without GUEST_ECN');
  if (base !== NetHdr.GSO_NONE) {
    if (base === NetHdr.GSO_TCPV4 && !drv.f.guestTso4) return drop('net.device.35', 'GSO_TCPV4 without GUEST_TSO4');
    if (base === NetHdr.GSO_TCPV6 && !drv.f.guestTso6) return drop('net.device.37', 'GSO_TCPV6 without GUEST_TSO6');
    if (base === NetHdr.GSO_UDP_L4) {
      const v6 = tunnel ? tunnel === NetHdr.GSO_UDP_TUNNEL_IPV6 : parseFrame(data).ipVersion === 6;
      if (!(v6 ? drv.f.guestUso6 : drv.f.guestUso4)) return drop('net.device.38', 'GSO_UDP_L4 without GUEST_USO');
    }
    if (base !== NetHdr.GSO_TCPV4 && base !== NetHdr.GSO_TCPV6 && base !== NetHdr.GSO_UDP_L4) return drop('net.device.36', `gso_type ${gsoType}`);
    if (!(flags & NetHdr.F_NEEDS_CSUM)) return drop('net.device.55', 'GSO without NEEDS_CSUM');
    if (gsoSize === 0) return drop('net.device.56', 'GSO with gso_size 0');
  }
  // net.driver.71: csum fields only with NEEDS_CSUM, and then inside the frame.
  if (flags & NetHdr.F_NEEDS_CSUM && !rsc && csumStart + csumOffset + 2 > data.length) return drop('net.device.48', `csum_start ${csumStart} + csum_offset ${csumOffset} outside ${data.length} bytes`);
  if (drv.f.mtu && base === NetHdr.GSO_NONE && data.length > drv.mtu + ETH_HLEN + 4) return drop('net.device.5', `frame of ${data.length} bytes, mtu ${drv.mtu}`);
  let rscCsum = { start: 0, offset: 0 };
  if (rsc) {
    const l = gsoLayers(data, { type: base, size: Math.max(1, gsoSize), ...(tunnel ? { tunnel: { outerTh, innerNh } } : {}) });
    if (typeof l === 'string') return drop('net.device.57', `RSC frame: ${l}`);
    if (csumStart === 0) return drop('net.device.57', 'RSC_INFO with 0 coalesced segments');
    rscCsum = { start: l.inner.l4, offset: l.inner.proto === 6 ? 16 : 6 };
  }
  const fr: RxFrame = {
    data,
    pair: p,
    flags,
    gsoType,
    gsoSize,
    csumStart: flags & NetHdr.F_NEEDS_CSUM ? (rsc ? rscCsum.start : csumStart) : 0,
    csumOffset: flags & NetHdr.F_NEEDS_CSUM ? (rsc ? rscCsum.offset : csumOffset) : 0,
    numBuffers,
    hashValue: drv.f.hashReport ? hv.getUint32(NetHdr.OFF_HASH_VALUE, true) : 0,
    hashReport: drv.f.hashReport ? hv.getUint16(NetHdr.OFF_HASH_REPORT, true) : 0,
    outerTh,
    innerNh,
    outerNh,
    rscSegments: rsc ? csumStart : 0,
    rscDupAcks: rsc ? csumOffset : 0,
  };
  drv.stats.rxFrames++;
  if (drv.callback) drv.callback(fr);
  else if (drv.rxQueue.length < drv.rxQueueLimit) drv.rxQueue.push(fr);
  else drv.stats.rxDropped++;
  return 1;
}

/** The next received frame, or null (polls the device first). */
export function receive(drv: NetDriverState): RxFrame | null {
  if (drv.rxQueue.length === 0) poll(drv);
  return drv.rxQueue.shift() ?? null;
}

/** Wait (bounded) for the next received frame. */
export function waitReceive(drv: NetDriverState, timeoutNs = drv.dev.timeoutNs): RxFrame {
  let f: RxFrame | null = receive(drv);
  if (f) return f;
  drv.dev.waitUntil(() => {
    poll(drv);
    return (f = drv.rxQueue.shift() ?? null) !== null;
  }, 'a received frame', timeoutNs);
  return f!;
}

/** Let `ns` of target time pass while servicing the device (interrupts handled as they come). */
export function run(drv: NetDriverState, ns: number): void {
  const end = drv.platform.now() + ns;
  try {
    drv.dev.waitUntil(() => {
      poll(drv);
      return drv.platform.now() >= end;
    }, 'time to pass', ns + 1);
  } catch (e) {
    if (!(e instanceof TimeoutError)) throw e;
  }
}

/** Complete a received frame's partial checksum (NEEDS_CSUM) in place; returns the frame. */
export function completeReceived(f: RxFrame): Uint8Array {
  if (f.flags & NetHdr.F_NEEDS_CSUM) finishChecksum(f.data, f.csumStart, f.csumOffset);
  return f.data;
}
