/**
 * virtio-net device model: device statistics — spec "Control Virtqueue / Device Statistics"
 * (net.device.114-.120; driver breaches of net.driver.106-.108 recorded): the
 * VIRTIO_NET_CTRL_STATS commands, answered from the per-queue counters of state.ts.
 */
import { NetCtrl, StatsCounters, StatsType } from '../../../spec-refs/abi/net.ts';
import type { NetState } from './state.ts';

/** Statistics types this device supports given the negotiated features. */
function supportedStats(dev: NetState): number[] {
  const t: number[] = [StatsType.RX_BASIC, StatsType.TX_BASIC, StatsType.CVQ];
  if (dev.f.guestCsum) t.push(StatsType.RX_CSUM);
  if (dev.f.csum) t.push(StatsType.TX_CSUM);
  if (dev.f.guestTso4 || dev.f.guestTso6) t.push(StatsType.RX_GSO);
  if (dev.f.hostTso4 || dev.f.hostTso6) t.push(StatsType.TX_GSO);
  return t.sort((a, b) => a - b);
}

export function statsCommand(dev: NetState, cmd: number, data: Uint8Array, dv: DataView, room: number): { ack: number; result?: Uint8Array } {
  const ERR = { ack: NetCtrl.ERR };
  if (!dev.f.stats) return ERR;
  const supported = supportedStats(dev);
  if (cmd === NetCtrl.STATS_QUERY) {
    if (data.length !== 0) return ERR;
    // net.device.114: le64 supported_stats_types[1].
    const out = new Uint8Array(8);
    const ov = new DataView(out.buffer);
    let lo = 0;
    let hi = 0;
    for (const t of supported) t >= 32 ? (hi |= 1 << (t - 32)) : (lo |= 1 << t);
    ov.setUint32(0, lo >>> 0, true);
    ov.setUint32(4, hi >>> 0, true);
    return { ack: NetCtrl.OK, result: out };
  }
  if (cmd !== NetCtrl.STATS_GET) return ERR;
  if (data.length === 0 || data.length % 16 !== 0) return ERR;
  const replies: Uint8Array[] = [];
  for (let e = 0; e < data.length / 16; e++) {
    const vq = dv.getUint16(e * 16, true);
    const lo = dv.getUint32(e * 16 + 8, true);
    const hi = dv.getUint32(e * 16 + 12, true);
    const kind = vq === dev.ctrlIndex ? 'cvq' : vq < 2 * dev.maxPairs ? (vq % 2 === 0 ? 'rx' : 'tx') : null;
    // net.device.115/.116: any bad entry fails the whole command.
    if (kind === null) return dev.refuse('net.driver.107', `stats vq_index ${vq}`);
    const types: number[] = [];
    for (let b = 0; b < 64; b++) {
      const set = b < 32 ? (lo >>> b) & 1 : (hi >>> (b - 32)) & 1;
      if (!set) continue;
      if (!supported.includes(b)) return dev.refuse('net.driver.106', `stats type ${b} not reported by STATS_QUERY`);
      const valid = kind === 'cvq' ? b === StatsType.CVQ : kind === 'rx' ? b < 16 : b >= 16 && b < 32;
      if (!valid) return dev.refuse('net.driver.107', `stats type ${b} for ${kind} queue ${vq}`);
      types.push(b);
    }
    for (const t of types) replies.push(statsReply(dev, t, vq));
  }
  let total = 0;
  for (const r of replies) total += r.length;
  if (total > room) dev.violate('net.driver.108', `STATS_GET result buffer of ${room} bytes for ${total} bytes of replies`);
  // net.device.119: write only whole, valid bytes (a short buffer gets a prefix).
  const out = new Uint8Array(Math.min(total, Math.max(0, room)));
  let off = 0;
  for (const r of replies) {
    if (off >= out.length) break;
    out.set(r.subarray(0, out.length - off), off);
    off += r.length;
  }
  return { ack: NetCtrl.OK, result: out };
}

function statsReply(dev: NetState, type: number, vq: number): Uint8Array {
  const n = StatsCounters[type]!;
  const out = new Uint8Array(8 + 8 * n);
  const v = new DataView(out.buffer);
  // net.device.117/.118: type, vq_index and the real size.
  out[0] = type;
  v.setUint16(2, vq, true);
  v.setUint16(6, out.length, true);
  const s = dev.qstats[vq];
  let vals: number[];
  switch (type) {
    case StatsType.CVQ: vals = [dev.cvqStats.commands, dev.cvqStats.ok]; break;
    case StatsType.RX_BASIC: vals = [s!.notifications, s!.packets, s!.bytes, s!.interrupts, s!.drops, s!.dropsSpecial]; break;
    case StatsType.TX_BASIC: vals = [s!.notifications, s!.packets, s!.bytes, s!.interrupts, s!.drops, s!.dropsSpecial]; break;
    case StatsType.RX_CSUM: vals = [s!.csumValid, s!.needsCsum, s!.csumNone, s!.csumBad]; break;
    case StatsType.TX_CSUM: vals = [s!.csumNone, s!.needsCsum]; break;
    case StatsType.RX_GSO: vals = [s!.gsoPackets, s!.gsoBytes, 0, 0]; break;
    case StatsType.TX_GSO: vals = [s!.gsoPackets, s!.gsoBytes, s!.gsoSegments, s!.gsoSegmentsBytes, 0, 0]; break;
    default: vals = [];
  }
  // net.device.120: counters wrap modulo 2^64 (JS numbers stay exact up to 2^53, far beyond any run).
  vals.forEach((x, i) => v.setBigUint64(8 + 8 * i, BigInt(Math.floor(x)) & 0xffff_ffff_ffff_ffffn, true));
  return out;
}
