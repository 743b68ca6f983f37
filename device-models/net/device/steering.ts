/**
 * virtio-net device model: which receive queue a frame goes to, and its hash — spec "Control
 * Virtqueue / Automatic receive steering in multiqueue mode" (net.device.97-.100, checking
 * net.driver.89-.92), "Receive-side scaling (RSS)" (net.device.101-.102, net.driver.93-.97),
 * "RSS Context" (net.device.103-.104, net.driver.98-.100) and "Inner Header Hash"
 * (net.device.73-.75, net.driver.78-.80): the VIRTIO_NET_CTRL_MQ, _RSS_CTX and _HASH_TUNNEL
 * commands, and `steer`, which every received frame passes. The Toeplitz hash itself is ../rss.ts.
 */
import { ETH_HLEN, HashReport, HashTunnel, HashType, NetCfg, NetCtrl } from '../../../spec-refs/abi/net.ts';
import { vxlanOffsets } from '../../../spec-refs/abi/gso.ts';
import { parseFrame, type FrameInfo } from '../../../spec-refs/abi/packet.ts';
import { DEFAULT_RSS_KEY, hashPacket } from '../rss.ts';
import type { NetState, RssState } from './state.ts';

/** Pick the receive pair (RSS, automatic steering, or receiveq1) and compute the packet hash. */
export function steer(dev: NetState, data: Uint8Array, info: FrameInfo): { pair: number; hash: { value: number; report: number } } {
  if (dev.tunnelTypes & HashTunnel.VXLAN) {
    // Inner-header hash: a VXLAN packet (the one enabled type the model recognises) is hashed on its
    // inner Ethernet frame; anything else on its outer headers (net.device.73).
    const v = vxlanOffsets(data);
    if (v) {
      data = data.subarray(v.innerNh - ETH_HLEN);
      info = parseFrame(data);
    }
  }
  const rss = dev.rss;
  if (rss) {
    const h = hashPacket(data, info, rss.hashTypes, rss.key);
    // net.device.101: no hash -> unclassified_queue; else indirection_table[hash & mask].
    const q = h.report === HashReport.NONE ? rss.unclassified : rss.table[h.value & rss.mask]!;
    return { pair: q >> 1, hash: h };
  }
  const hc = dev.hashCfg;
  const h = hc ? hashPacket(data, info, hc.hashTypes, hc.key) : { value: 0, report: HashReport.NONE };
  if (dev.curPairs <= 1) return { pair: 0, hash: h };
  // net.device.98: never above the pairs in use.
  const known = dev.flows.get(flowKey(data, info, false));
  if (known !== undefined && known < dev.curPairs) return { pair: known, hash: h };
  const ah = hashPacket(data, info, HashType.TCPv4 | HashType.UDPv4 | HashType.IPv4 | HashType.TCPv6 | HashType.UDPv6 | HashType.IPv6, DEFAULT_RSS_KEY);
  return { pair: ah.value % dev.curPairs, hash: h };
}

/** A virtio_net_rss_config (RSS_CONFIG, RSS context ADD/MOD), checked (net.driver.94-.97); ERR or the state. */
function parseRss(dev: NetState, data: Uint8Array): RssState | { ack: number } {
  const ERR = { ack: NetCtrl.ERR };
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data.length < 8) return ERR;
  const hashTypes = dv.getUint32(0, true);
  const mask = dv.getUint16(4, true);
  const unclassified = dv.getUint16(6, true);
  const n = mask + 1;
  // net.driver.95 / .96
  if ((n & mask) !== 0) return dev.refuse('net.driver.95', `indirection table length ${n} not a power of two`);
  if (mask >= dev.cfgView.getUint16(NetCfg.RSS_MAX_INDIRECTION_TABLE_LENGTH, true)) return dev.refuse('net.driver.96', `indirection_table_mask ${mask}`);
  if (data.length < 8 + 2 * n + 3) return ERR;
  // net.driver.97
  if (hashTypes & ~dev.cfgView.getUint32(NetCfg.SUPPORTED_HASH_TYPES, true)) return dev.refuse('net.driver.97', `hash_types 0x${hashTypes.toString(16)}`);
  const table = new Uint16Array(n);
  const rxOk = (id: number): boolean => (id & 0x8000) === 0 && id < dev.maxPairs;
  if (!rxOk(unclassified)) return dev.refuse('net.driver.94', `unclassified_queue ${unclassified}`);
  for (let i = 0; i < n; i++) {
    const id = dv.getUint16(8 + 2 * i, true);
    if (!rxOk(id)) return dev.refuse('net.driver.94', `indirection_table[${i}] = ${id}`);
    table[i] = id * 2;
  }
  const maxTx = dv.getUint16(8 + 2 * n, true);
  const keyLen = data[8 + 2 * n + 2]!;
  if (maxTx < 1 || maxTx > dev.maxPairs) return ERR;
  if (keyLen > dev.config[NetCfg.RSS_MAX_KEY_SIZE]! || data.length < 8 + 2 * n + 3 + keyLen) return ERR;
  const key = data.slice(8 + 2 * n + 3, 8 + 2 * n + 3 + keyLen);
  return { hashTypes, mask, unclassified: unclassified * 2, table, key, maxTx };
}

/** VIRTNET_RSS_CTX_CTRL (RSS_CONTEXT): CAP_GET, ADD, MOD, DEL. */
export function rssCtxCommand(dev: NetState, cmd: number, data: Uint8Array, dv: DataView, room: number): { ack: number; result?: Uint8Array } {
  const ERR = { ack: NetCtrl.ERR };
  if (cmd === NetCtrl.RSS_CTX_CAP_GET) {
    if (data.length !== 0 || room < 2) return ERR;
    const r = new Uint8Array(2);
    new DataView(r.buffer).setUint16(0, dev.maxRssContexts, true);
    return { ack: NetCtrl.OK, result: r };
  }
  if (cmd !== NetCtrl.RSS_CTX_ADD && cmd !== NetCtrl.RSS_CTX_MOD && cmd !== NetCtrl.RSS_CTX_DEL) return ERR;
  if (data.length < 2) return ERR;
  const id = dv.getUint16(0, true);
  // net.driver.99: 1..max_rss_contexts.
  if (id < 1 || id > dev.maxRssContexts) return dev.refuse('net.driver.99', `rss_ctx_id ${id}, max_rss_contexts ${dev.maxRssContexts}`);
  if (cmd === NetCtrl.RSS_CTX_DEL) {
    if (data.length !== 2 || !dev.rssContexts.has(id)) return ERR;
    dev.rssContexts.delete(id);
    return { ack: NetCtrl.OK };
  }
  if (data.length < 8) return ERR;
  if ((cmd === NetCtrl.RSS_CTX_ADD) === dev.rssContexts.has(id)) return ERR;
  const st = parseRss(dev, data.subarray(8));
  if ('ack' in st) return st;
  dev.rssContexts.set(id, st);
  return { ack: NetCtrl.OK };
}

export function mqCommand(dev: NetState, cmd: number, data: Uint8Array, dv: DataView): { ack: number } {
  const ERR = { ack: NetCtrl.ERR };
  if (cmd === NetCtrl.MQ_VQ_PAIRS_SET) {
    if (!dev.f.mq) return dev.refuse('net.ctrl.mq', 'VQ_PAIRS_SET without MQ');
    if (data.length !== 2) return ERR;
    const n = dv.getUint16(0, true);
    // net.driver.90: 1..max_virtqueue_pairs.
    if (n < NetCtrl.MQ_VQ_PAIRS_MIN || n > dev.maxPairs) return dev.refuse('net.driver.90', `virtqueue_pairs ${n}, max ${dev.maxPairs}`);
    // net.driver.89: the pairs being enabled must have been set up (both queues enabled) first.
    const qe = dev.ctx?.queueEnabled;
    if (qe) {
      for (let p = 0; p < n; p++) {
        if (!qe.call(dev.ctx, 2 * p) || !qe.call(dev.ctx, 2 * p + 1)) return dev.refuse('net.driver.89', `VQ_PAIRS_SET ${n} with receiveq${p + 1}/transmitq${p + 1} not set up`);
      }
    }
    // net.driver.100: not while an RSS context is configured.
    if (dev.rssContexts.size > 0) return dev.refuse('net.driver.100', `VQ_PAIRS_SET with ${dev.rssContexts.size} RSS context(s) configured`);
    dev.curPairs = n;
    dev.rss = null;
    dev.flows.clear();
    return { ack: NetCtrl.OK };
  }
  if (cmd === NetCtrl.MQ_RSS_CONFIG) {
    if (!dev.f.rss) return dev.refuse('net.driver.93', 'RSS_CONFIG without RSS');
    const st = parseRss(dev, data);
    if ('ack' in st) return st;
    dev.rss = st;
    return { ack: NetCtrl.OK };
  }
  if (cmd === NetCtrl.MQ_HASH_CONFIG) {
    if (!dev.f.hashReport || dev.f.rss) return ERR;
    if (data.length < 13) return ERR;
    const hashTypes = dv.getUint32(0, true);
    if (hashTypes & ~dev.cfgView.getUint32(NetCfg.SUPPORTED_HASH_TYPES, true)) return ERR;
    const keyLen = data[12]!;
    if (keyLen > dev.config[NetCfg.RSS_MAX_KEY_SIZE]! || data.length < 13 + keyLen) return ERR;
    dev.hashCfg = { hashTypes, key: data.slice(13, 13 + keyLen) };
    return { ack: NetCtrl.OK };
  }
  return ERR;
}

/** VIRTIO_NET_CTRL_HASH_TUNNEL: HASH_TUNNEL_SET (HASH_TUNNEL). */
export function hashTunnelCommand(dev: NetState, cmd: number, data: Uint8Array, dv: DataView): { ack: number } {
  const OK = { ack: NetCtrl.OK };
  const ERR = { ack: NetCtrl.ERR };
  if (!dev.f.hashTunnel) return dev.refuse('net.driver.78', 'HASH_TUNNEL_SET without VIRTIO_NET_F_HASH_TUNNEL');
  if (cmd !== NetCtrl.HASH_TUNNEL_SET || data.length !== 4) return ERR;
  const types = dv.getUint32(0, true);
  const supported = dev.cfgView.getUint32(NetCfg.SUPPORTED_TUNNEL_TYPES, true);
  // net.driver.79 broken; net.device.74: such a command gets VIRTIO_NET_ERR and changes nothing.
  if (types & ~supported) return dev.refuse('net.driver.79', `enabled_tunnel_types 0x${types.toString(16)}, supported 0x${supported.toString(16)}`);
  dev.tunnelTypes = types;
  return OK;
}

/** Remember a transmitted flow for automatic receive steering: its replies come back on `pair`. */
export function noteFlow(dev: NetState, data: Uint8Array, info: FrameInfo, pair: number): void {
  if (dev.flows.size > 4096) dev.flows.clear();
  dev.flows.set(flowKey(data, info, true), pair);
}

/** A flow key; `reverse` swaps the ends so a transmitted flow matches its replies. */
function flowKey(f: Uint8Array, info: FrameInfo, reverse: boolean): string {
  if (info.l3 < 0) return '';
  const alen = info.ipVersion === 4 ? 4 : 16;
  const sOff = info.l3 + (info.ipVersion === 4 ? 12 : 8);
  const dOff = sOff + alen;
  const a = Array.from(f.subarray(sOff, sOff + alen)).join('.');
  const b = Array.from(f.subarray(dOff, dOff + alen)).join('.');
  const sp = info.srcPort;
  const dp = info.dstPort;
  return reverse ? `${info.proto}|${b}|${a}|${dp}|${sp}` : `${info.proto}|${a}|${b}|${sp}|${dp}`;
}
