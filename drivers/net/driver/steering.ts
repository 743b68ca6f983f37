/**
 * virtio-net driver: spreading traffic over queue pairs, and hashing — spec "Control Virtqueue /
 * Automatic receive steering in multiqueue mode" (net.driver.89-.92), "Receive-side scaling
 * (RSS)" (net.driver.93-.97), "RSS Context" (net.driver.98-.100) and "Inner Header Hash"
 * (net.driver.78-.80): VQ_PAIRS_SET, RSS_CONFIG, HASH_CONFIG, the RSS context commands and
 * HASH_TUNNEL_SET, each checked against the device's limits before it is sent.
 */
import { DeviceMisbehaviourError, UsageError } from '../../../spec-refs/errors.ts';
import { NetF } from '../../../spec-refs/abi/virtio.ts';
import { NetCfg, NetCtrl, NetFx } from '../../../spec-refs/abi/net.ts';
import type { NetDriverState } from './state.ts';
import { mustCommand, need } from './ctrl.ts';

/** An RSS configuration (RSS_CONFIG or an RSS context): `table` and `unclassified` hold pair numbers. */
export interface RssConfig {
  hashTypes: number;
  table: readonly number[];
  unclassified?: number;
  key: Uint8Array;
  maxTx?: number;
}

/**
 * Inner-header hashing for these encapsulation types (HashTunnel bits; 0 turns it off). Bits the
 * device does not support, or the spec does not define, are refused here and never sent (net.driver.78/.79/.80).
 */
export function setHashTunnel(drv: NetDriverState, types: number): void {
  need(drv, NetF.HASH_TUNNEL, 'net.driver.78', 'HASH_TUNNEL_SET');
  const extra = (types >>> 0) & ~drv.supportedTunnelTypes;
  if (extra !== 0) throw new UsageError('net.hash.tunnel', 'encapsulation types the device does not support', { statements: ['net.driver.79', 'net.driver.80'], expected: `within 0x${drv.supportedTunnelTypes.toString(16)}`, seen: `0x${(types >>> 0).toString(16)}` });
  const d = new Uint8Array(4);
  new DataView(d.buffer).setUint32(0, types >>> 0, true);
  mustCommand(drv, NetCtrl.CLASS_HASH_TUNNEL, NetCtrl.HASH_TUNNEL_SET, d, 'HASH_TUNNEL_SET');
}

/** Use `n` queue pairs (net.driver.89/.90). */
export function setPairs(drv: NetDriverState, n: number): void {
  need(drv, NetF.MQ, 'net.driver.90', 'VQ_PAIRS_SET');
  if (n < 1 || n > drv.pairs) throw new UsageError('net.mq.pairs', 'pairs out of range', { statements: ['net.driver.90'], expected: `1..${drv.pairs}`, seen: `${n}` });
  // net.driver.100: not while the device holds an RSS context.
  if (drv.rssCtx.size > 0) throw new UsageError('net.mq.pairs', 'VQ_PAIRS_SET while RSS contexts are configured', { statements: ['net.driver.100'], expected: 'no RSS context', seen: `contexts ${[...drv.rssCtx].join(',')}` });
  const d = new Uint8Array(2);
  new DataView(d.buffer).setUint16(0, n, true);
  mustCommand(drv, NetCtrl.CLASS_MQ, NetCtrl.MQ_VQ_PAIRS_SET, d, 'VQ_PAIRS_SET');
  drv.activePairs = n;
}

/** RSS configuration (net.driver.93-.97): `table` holds pair numbers. */
export function setRss(drv: NetDriverState, cfg: RssConfig): void {
  need(drv, NetF.RSS, 'net.driver.93', 'RSS_CONFIG');
  const d = encodeRss(drv, cfg);
  mustCommand(drv, NetCtrl.CLASS_MQ, NetCtrl.MQ_RSS_CONFIG, d, 'RSS_CONFIG');
  drv.activePairs = cfg.maxTx ?? drv.pairs;
}

/** A virtio_net_rss_config, checked against the device's limits (net.driver.94-.97). */
function encodeRss(drv: NetDriverState, cfg: RssConfig): Uint8Array {
  const n = cfg.table.length;
  if (n < 1 || (n & (n - 1)) !== 0) throw new UsageError('net.rss.table', 'indirection table length must be a power of two', { statements: ['net.driver.95'], seen: `${n}` });
  const maxLen = drv.dev.config16(NetCfg.RSS_MAX_INDIRECTION_TABLE_LENGTH);
  if (n - 1 >= maxLen) throw new UsageError('net.rss.table', 'indirection table too long', { statements: ['net.driver.96'], expected: `mask < ${maxLen}`, seen: `${n - 1}` });
  const supported = drv.dev.config32(NetCfg.SUPPORTED_HASH_TYPES);
  if (cfg.hashTypes & ~supported) throw new UsageError('net.rss.types', 'hash types the device does not support', { statements: ['net.driver.97'], seen: `0x${cfg.hashTypes.toString(16)}` });
  for (const q of [...cfg.table, cfg.unclassified ?? 0]) if (q < 0 || q >= drv.pairs) throw new UsageError('net.rss.queue', 'RSS queue not set up', { statements: ['net.driver.94'], seen: `${q}` });
  const d = new Uint8Array(8 + 2 * n + 3 + cfg.key.length);
  const v = new DataView(d.buffer);
  v.setUint32(0, cfg.hashTypes, true);
  v.setUint16(4, n - 1, true);
  // rss_rq_id: bits 1..16 of the receive virtqueue index, i.e. the pair number.
  v.setUint16(6, cfg.unclassified ?? 0, true);
  cfg.table.forEach((q, i) => v.setUint16(8 + 2 * i, q, true));
  const maxTx = cfg.maxTx ?? drv.pairs;
  v.setUint16(8 + 2 * n, maxTx, true);
  d[8 + 2 * n + 2] = cfg.key.length;
  d.set(cfg.key, 8 + 2 * n + 3);
  return d;
}

/** max_rss_contexts (RSS_CONTEXT, VIRTNET_RSS_CTX_CTRL_CAP_GET); asked once. */
export function rssContextMax(drv: NetDriverState): number {
  need(drv, NetFx.RSS_CONTEXT, 'net.driver.98', 'RSS_CTX_CTRL');
  if (drv.maxRssCtx < 0) {
    const r = mustCommand(drv, NetCtrl.CLASS_RSS_CTX, NetCtrl.RSS_CTX_CAP_GET, new Uint8Array(0), 'RSS_CTX_CTRL_CAP_GET', 2);
    if (r.length < 2) throw new DeviceMisbehaviourError('net.rss.ctx', 'RSS_CTX_CTRL_CAP_GET result too short', { statements: ['net.device.103'], expected: '2 bytes', seen: `${r.length}` });
    drv.maxRssCtx = r[0]! | (r[1]! << 8);
  }
  return drv.maxRssCtx;
}

/** Add (or, `modify`, change) RSS context `id` (net.driver.99: 1..max_rss_contexts). */
export function setRssContext(drv: NetDriverState, id: number, cfg: RssConfig, modify = false): void {
  checkCtxId(drv, id);
  const body = encodeRss(drv, cfg);
  const d = new Uint8Array(8 + body.length);
  new DataView(d.buffer).setUint16(0, id, true);
  d.set(body, 8);
  mustCommand(drv, NetCtrl.CLASS_RSS_CTX, modify ? NetCtrl.RSS_CTX_MOD : NetCtrl.RSS_CTX_ADD, d, modify ? 'RSS_CTX_CTRL_MOD' : 'RSS_CTX_CTRL_ADD');
  drv.rssCtx.add(id);
}

export function deleteRssContext(drv: NetDriverState, id: number): void {
  checkCtxId(drv, id);
  const d = new Uint8Array(2);
  new DataView(d.buffer).setUint16(0, id, true);
  mustCommand(drv, NetCtrl.CLASS_RSS_CTX, NetCtrl.RSS_CTX_DEL, d, 'RSS_CTX_CTRL_DEL');
  drv.rssCtx.delete(id);
}

function checkCtxId(drv: NetDriverState, id: number): void {
  const max = rssContextMax(drv);
  if (!Number.isInteger(id) || id < 1 || id > max) throw new UsageError('net.rss.ctx', 'rss_ctx_id out of range', { statements: ['net.driver.99'], expected: `1..${max}`, seen: `${id}` });
}

/** Hash reporting without RSS (MQ_HASH_CONFIG). */
export function setHashConfig(drv: NetDriverState, hashTypes: number, key: Uint8Array): void {
  need(drv, NetF.HASH_REPORT, 'net.driver.93', 'HASH_CONFIG');
  const d = new Uint8Array(13 + key.length);
  new DataView(d.buffer).setUint32(0, hashTypes, true);
  d[12] = key.length;
  d.set(key, 13);
  mustCommand(drv, NetCtrl.CLASS_MQ, NetCtrl.MQ_HASH_CONFIG, d, 'HASH_CONFIG');
}
