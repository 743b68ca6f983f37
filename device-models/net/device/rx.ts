/**
 * virtio-net device model: the receive queues — spec "Device Operation / Setting Up Receive
 * Buffers" and "Processing of Incoming Packets" (net.device.27-.72; driver breaches of
 * net.driver.8, .63-.67 recorded). A frame from the network passes the filter (filter.ts) and
 * the steering (steering.ts), is turned into the items the driver's offloads call for (whole
 * with NEEDS_CSUM / GSO, or segmented and checksummed here), waits in its queue's bounded
 * backlog, and is written into the driver's buffers, one chain per frame or merged
 * (MRG_RXBUF). A mergeable buffer smaller than the header is the one error that sets
 * DEVICE_NEEDS_RESET (net.driver.65).
 */
import type { Chain, DeviceContext, DeviceQueue } from '../../virtio/model.ts';
import { scatter } from '../../virtio/chain-io.ts';
import { DriverMisbehaviourError } from '../../../spec-refs/errors.ts';
import { ETH_HLEN, HashReport, NetHdr } from '../../../spec-refs/abi/net.ts';
import { IpProto, parseFrame, verifyChecksums, writeBe16 } from '../../../spec-refs/abi/packet.ts';
import { completeChecksum, segment, type WireFrame } from '../wire.ts';
import { add64, type NetState, type QueueStats, type RxItem } from './state.ts';
import { signal } from './coalesce.ts';
import { accept } from './filter.ts';
import { steer } from './steering.ts';

/** A frame arrives from the network. */
export function receiveFrame(dev: NetState, wf: WireFrame): void {
  const ctx = dev.ctx;
  if (!ctx || !dev.linkUp) return;
  const data = wf.data;
  if (data.length < ETH_HLEN) return;
  const info = parseFrame(data);
  if (!accept(dev, data, info)) {
    dev.filtered++;
    return;
  }
  const { pair, hash } = steer(dev, data, info);
  if (pair < 0) return;
  const index = 2 * pair;
  const st = dev.qstats[index]!;
  if (dev.rxResetting[index]) {
    // net.device.100 / net.device.102: the chosen receive queue is being reset: drop.
    st.drops = add64(st.drops, 1);
    return;
  }
  const hv = hash.value;
  const hr = dev.f.hashReport ? hash.report : HashReport.NONE;
  const items: RxItem[] = [];
  if (wf.gso) {
    const gt = wf.gso.type;
    const tun = wf.gso.tunnel;
    const innerV6 = tun ? (data[tun.innerNh]! >> 4) === 6 : info.ipVersion === 6;
    let canGso = (gt === NetHdr.GSO_TCPV4 && dev.rxTso4) || (gt === NetHdr.GSO_TCPV6 && dev.rxTso6) || (gt === NetHdr.GSO_UDP_L4 && (innerV6 ? dev.rxUso6 : dev.rxUso4));
    // net.device.49: UDP-tunnel GSO only to a driver that negotiated GUEST_UDP_TUNNEL_GSO.
    if (tun && !dev.rxTunnel) canGso = false;
    // A super-frame carrying ECN (CWR): GSO_ECN with GUEST_ECN (net.device.42); without it, segments (net.device.41).
    const cwr = !tun && info.l4 >= 0 && info.proto === IpProto.TCP && (data[info.l4 + 13]! & 0x80) !== 0;
    if (cwr && !dev.rxEcn) canGso = false;
    if (canGso && wf.csum && tun) {
      // net.device.50/.51/.52: tunnel bit of the inner protocol, both offsets, and an outer UDP
      // checksum that needs no offload (0 here; net.device.65).
      const copy = data.slice();
      writeBe16(copy, tun.outerTh + 6, 0);
      items.push({ data: copy, flags: NetHdr.F_NEEDS_CSUM, gsoType: gt | (innerV6 ? NetHdr.GSO_UDP_TUNNEL_IPV6 : NetHdr.GSO_UDP_TUNNEL_IPV4), gsoSize: wf.gso.size, hdrLen: wf.gso.hdrLen, csumStart: wf.csum.start, csumOffset: wf.csum.offset, hashValue: hv, hashReport: hr, outerTh: tun.outerTh, innerNh: tun.innerNh });
      st.gsoPackets = add64(st.gsoPackets, 1);
      st.gsoBytes = add64(st.gsoBytes, data.length);
      st.needsCsum = add64(st.needsCsum, 1);
    } else if (canGso && wf.csum) {
      // net.device.55/.56/.59: GSO delivered with NEEDS_CSUM, gso_size and hdr_len.
      items.push({ data, flags: NetHdr.F_NEEDS_CSUM, gsoType: gt | (cwr ? NetHdr.GSO_ECN : 0), gsoSize: wf.gso.size, hdrLen: wf.gso.hdrLen, csumStart: wf.csum.start, csumOffset: wf.csum.offset, hashValue: hv, hashReport: hr });
      st.gsoPackets = add64(st.gsoPackets, 1);
      st.gsoBytes = add64(st.gsoBytes, data.length);
      st.needsCsum = add64(st.needsCsum, 1);
    } else {
      // net.device.35/.37/.54: the receiver did not take GSO: segment here, checksums complete.
      const segs = segment(data, wf.gso);
      if (!segs) {
        st.drops = add64(st.drops, 1);
        return;
      }
      for (const s of segs) items.push(plainItem(dev, s, st, true, hv, hr));
    }
  } else if (wf.csum) {
    if (dev.rxCsum && wf.csum.start + wf.csum.offset + 2 <= data.length) {
      // net.device.45-.48: the pseudo-header sum sits in the slot; the driver completes it.
      items.push({ data, flags: NetHdr.F_NEEDS_CSUM, gsoType: NetHdr.GSO_NONE, gsoSize: 0, hdrLen: 0, csumStart: wf.csum.start, csumOffset: wf.csum.offset, hashValue: hv, hashReport: hr });
      st.needsCsum = add64(st.needsCsum, 1);
    } else {
      const copy = data.slice();
      if (wf.csum.start + wf.csum.offset + 2 <= copy.length) completeChecksum(copy, wf.csum.start, wf.csum.offset);
      items.push(plainItem(dev, copy, st, true, hv, hr));
    }
  } else {
    items.push(plainItem(dev, data, st, wf.dataValid ?? false, hv, hr));
  }
  const bl = dev.backlog[index]!;
  for (const it of items) {
    // net.device.5: with MTU negotiated, no GSO_NONE frame longer than mtu + link header.
    if (dev.f.mtu && it.gsoType === NetHdr.GSO_NONE && it.data.length > dev.mtu + ETH_HLEN + (info.vlan >= 0 ? 4 : 0)) {
      st.drops = add64(st.drops, 1);
      continue;
    }
    if (bl.length >= dev.rxBacklogMax) {
      st.drops = add64(st.drops, 1);
      st.dropsSpecial = add64(st.dropsSpecial, 1);
      continue;
    }
    bl.push(it);
  }
  scheduleDrain(dev, index);
}

/** A frame with complete checksums: DATA_VALID when GUEST_CSUM is on and the checksums verify (net.device.61). */
function plainItem(dev: NetState, data: Uint8Array, st: QueueStats, knownGood: boolean, hv: number, hr: number): RxItem {
  let flags = 0;
  if (dev.rxCsum) {
    const r = verifyChecksums(data);
    const checked = r.what.includes('tcp') || r.what.includes('udp');
    if (checked && r.ip && r.l4) {
      flags = NetHdr.F_DATA_VALID;
      st.csumValid = add64(st.csumValid, 1);
    } else if (checked) st.csumBad = add64(st.csumBad, 1);
    else st.csumNone = add64(st.csumNone, 1);
  } else {
    st.csumNone = add64(st.csumNone, 1);
  }
  void knownGood;
  // net.device.33: without GUEST_CSUM flags stay 0.
  return { data, flags, gsoType: NetHdr.GSO_NONE, gsoSize: 0, hdrLen: 0, csumStart: 0, csumOffset: 0, hashValue: hv, hashReport: hr };
}

function scheduleDrain(dev: NetState, index: number): void {
  if (dev.drainScheduled[index] || !dev.ctx) return;
  dev.drainScheduled[index] = true;
  const ctx = dev.ctx;
  ctx.scheduler.schedule(0, `${dev.name}:rx${index}`, () => {
    dev.drainScheduled[index] = false;
    if (dev.ctx === ctx) drain(dev, index);
  });
}

/** Deliver backlogged frames of receive queue `index` while buffers last. */
export function drain(dev: NetState, index: number): void {
  const ctx = dev.ctx!;
  const q = ctx.queue(index);
  const bl = dev.backlog[index]!;
  let delivered = 0;
  let head = 0;
  let budget = dev.queueSize * 4;
  while (head < bl.length && budget-- > 0) {
    const r = dev.f.mrg ? deliverMerged(dev, ctx, q, index, bl[head]!) : deliverOne(dev, ctx, q, index, bl[head]!);
    if (r === 'wait') {
      // Out of buffers: ask to be notified when the driver adds some (no lost wake-up).
      if (!q.enableNotify()) continue;
      break;
    }
    if (r === 'dead') break;
    head++;
    if (r > 0) delivered += r;
  }
  bl.splice(0, head);
  if (delivered > 0) signal(dev, q, index, delivered);
  if (bl.length > 0 && budget <= 0) scheduleDrain(dev, index);
}

function nextChain(dev: NetState, q: DeviceQueue, index: number): Chain | null {
  const s = dev.stash[index]!;
  if (s.length > 0) return s.shift()!;
  return q.pop();
}

function writeHeader(dev: NetState, ctx: DeviceContext, chain: Chain, it: RxItem, numBuffers: number): void {
  const h = new Uint8Array(dev.hdrLen);
  const v = new DataView(h.buffer);
  h[NetHdr.OFF_FLAGS] = it.flags;
  h[NetHdr.OFF_GSO_TYPE] = it.gsoType;
  v.setUint16(NetHdr.OFF_HDR_LEN, it.hdrLen, true);
  v.setUint16(NetHdr.OFF_GSO_SIZE, it.gsoSize, true);
  if (dev.f.rscExt && (it.gsoType & 0x1f) !== NetHdr.GSO_NONE && it.gsoSize > 0) {
    // net.device.57: a coalesced frame says so (RSC_INFO), with csum_start = the segments it
    // stands for and csum_offset = duplicate ACKs folded into it (the model merges none).
    h[NetHdr.OFF_FLAGS] = it.flags | NetHdr.F_RSC_INFO;
    v.setUint16(NetHdr.OFF_CSUM_START, Math.min(0xffff, Math.max(1, Math.ceil((it.data.length - it.hdrLen) / it.gsoSize))), true);
    v.setUint16(NetHdr.OFF_CSUM_OFFSET, 0, true);
  } else {
    v.setUint16(NetHdr.OFF_CSUM_START, it.csumStart, true);
    v.setUint16(NetHdr.OFF_CSUM_OFFSET, it.csumOffset, true);
  }
  if (dev.hdrLen >= NetHdr.SIZE_BASE) v.setUint16(NetHdr.OFF_NUM_BUFFERS, numBuffers, true);
  if (dev.hdrLen >= NetHdr.SIZE_HASH && dev.f.hashReport) {
    v.setUint32(NetHdr.OFF_HASH_VALUE, it.hashReport === HashReport.NONE ? 0 : it.hashValue, true);
    v.setUint16(NetHdr.OFF_HASH_REPORT, it.hashReport, true);
  }
  if (dev.hdrLen >= NetHdr.SIZE_TUNNEL) {
    // net.device.51: tunnel offsets only for tunnel GSO (0 otherwise).
    v.setUint16(NetHdr.OFF_OUTER_TH, it.outerTh ?? 0, true);
    v.setUint16(NetHdr.OFF_INNER_NH, it.innerNh ?? 0, true);
  }
  if (dev.hdrLen >= NetHdr.OFF_OUTER_NH + 2 && dev.f.outNet) {
    // net.device.43/.44: outer_nh_offset only for a frame with a valid (outer) IP header, else 0.
    const fi = parseFrame(it.data);
    v.setUint16(NetHdr.OFF_OUTER_NH, fi.l3 > 0 && fi.ipVersion !== 0 ? fi.l3 : 0, true);
  }
  dev.rxHeaderHook?.(h, it.data);
  scatter(ctx.mem, chain.writable, 0, h);
}

/** Without MRG_RXBUF: one chain per frame (net.device.28/.29). Returns frames delivered, or 'wait'. */
function deliverOne(dev: NetState, ctx: DeviceContext, q: DeviceQueue, index: number, it: RxItem): number | 'wait' | 'dead' {
  const st = dev.qstats[index]!;
  for (let tries = 0; tries < dev.queueSize + 1; tries++) {
    const chain = nextChain(dev, q, index);
    if (!chain) return 'wait';
    if (chain.writableLen < dev.hdrLen + ETH_HLEN) {
      // A buffer that can never hold a frame: hand it back empty (used.len 0).
      dev.violate('net.driver.64', `receive buffer of ${chain.writableLen} bytes`);
      q.push(chain, 0);
      continue;
    }
    if (dev.strict && dev.f.mtu && chain.writableLen < dev.hdrLen + dev.mtu + ETH_HLEN) dev.violate('net.driver.8', `receive buffer of ${chain.writableLen} bytes, mtu ${dev.mtu}`);
    const need = dev.hdrLen + it.data.length;
    if (chain.writableLen < need) {
      // Too small for this frame: drop the frame, keep the buffer for the next one.
      dev.stash[index]!.unshift(chain);
      st.drops = add64(st.drops, 1);
      st.dropsSpecial = add64(st.dropsSpecial, 1);
      return 0;
    }
    writeHeader(dev, ctx, chain, it, 1);
    scatter(ctx.mem, chain.writable, dev.hdrLen, it.data);
    q.push(chain, need);
    st.packets = add64(st.packets, 1);
    st.bytes = add64(st.bytes, it.data.length);
    return 1;
  }
  return 'wait';
}

/** With MRG_RXBUF: spread the frame over as many chains as needed (net.device.27/.30/.31/.32). */
function deliverMerged(dev: NetState, ctx: DeviceContext, q: DeviceQueue, index: number, it: RxItem): number | 'wait' | 'dead' {
  const st = dev.qstats[index]!;
  const need = dev.hdrLen + it.data.length;
  const s = dev.stash[index]!;
  // Gather chains (already held ones first) until they hold the frame.
  let have = 0;
  for (const c of s) have += c.writableLen;
  while (have < need) {
    if (s.length >= Math.min(dev.queueSize, 0xffff)) {
      // Every buffer the ring can hold is not enough: drop the frame, keep the buffers.
      st.drops = add64(st.drops, 1);
      st.dropsSpecial = add64(st.dropsSpecial, 1);
      return 0;
    }
    const c = q.pop();
    if (!c) return 'wait';
    if (c.writableLen < dev.hdrLen) {
      // net.driver.65: each mergeable buffer must hold at least the header.
      const err = new DriverMisbehaviourError('net.rx.buffer', 'mergeable receive buffer smaller than virtio_net_hdr', { statements: ['net.driver.65'], expected: `>= ${dev.hdrLen} bytes`, seen: `${c.writableLen}` });
      dev.violate('net.driver.65', err.message);
      q.push(c, 0);
      dev.stash[index] = [];
      for (const held of s) q.push(held, 0);
      q.flush();
      ctx.needsReset(err);
      return 'dead';
    }
    s.push(c);
    have += c.writableLen;
  }
  // Count the chains actually used; the rest stay held for the next frame.
  let used = 0;
  let acc = 0;
  while (acc < need) acc += s[used++]!.writableLen;
  const chains = s.splice(0, used);
  let off = 0; // offset into the frame
  for (let i = 0; i < chains.length; i++) {
    const c = chains[i]!;
    let room = c.writableLen;
    let w = 0;
    if (i === 0) {
      writeHeader(dev, ctx, c, it, chains.length);
      room -= dev.hdrLen;
      w = dev.hdrLen;
    }
    const n = Math.min(room, it.data.length - off);
    scatter(ctx.mem, c.writable, w, it.data.subarray(off, off + n));
    off += n;
    c === chains[0] ? q.push(c, dev.hdrLen + n) : q.push(c, n);
  }
  st.packets = add64(st.packets, 1);
  st.bytes = add64(st.bytes, it.data.length);
  return chains.length;
}
