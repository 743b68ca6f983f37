/**
 * virtio-net device model: what the device offers and shows before the driver runs — the options,
 * the feature offer (features.device.1, net.device.2), the flags of what was negotiated, and the
 * config space (spec "Device configuration layout": net.device.1, .2, .7, .8, .10, .11).
 *
 * A leaf of device/: it knows no device state (state.ts builds on it).
 */
import { F, NetF, bit, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { HashTunnel, HashType, NetCfg, NetFx, NetStatus, pruneNetFeatures } from '../../../spec-refs/abi/net.ts';

export interface NetDeviceOptions {
  name?: string;
  mac?: Uint8Array;
  /** max_virtqueue_pairs (MQ offered when > 1 or when `features` says so). Default 1. */
  maxPairs?: number;
  /** Link MTU (config `mtu`); default 1500. */
  mtu?: number;
  /** Mbit/s; default 10000. */
  speed?: number;
  /** 1 full, 0 half, 0xff unknown; default 1. */
  duplex?: number;
  queueSize?: number;
  /** Features to offer (default: everything the model implements). */
  features?: bigint;
  linkUp?: boolean;
  /** Frames held per receive queue while it has no buffers (beyond: dropped). Default 1024. */
  rxBacklog?: number;
  /** Entries of each MAC filter table before the device falls back to accepting all of that kind. */
  macTableSize?: number;
  /**
   * A checking device for driver conformance: also verify what costs time on every frame (the
   * pseudo-header sum under NEEDS_CSUM, csum_start/csum_offset pointing at the L4 checksum,
   * receive buffer sizes against the MTU) and record each breach as a violation.
   */
  strict?: boolean;
  /** Test hook: answer a control command instead of the device (hostile-device checks of drivers); undefined: the device answers. */
  ctrlHook?: (cls: number, cmd: number, data: Uint8Array) => { ack: number; result?: Uint8Array } | undefined;
  /** Test hook: rewrite each receive header just before it is written (hostile-device checks of drivers). */
  rxHeaderHook?: (hdr: Uint8Array, frame: Uint8Array) => void;
  /** supported_tunnel_types in config (HASH_TUNNEL); default VXLAN, the one encapsulation the model parses. Other bits are advertised but never matched. */
  supportedTunnelTypes?: number;
  /** max_rss_contexts reported by RSS_CTX_CTRL_CAP_GET (RSS_CONTEXT); default 4. */
  maxRssContexts?: number;
}

/** Everything the model implements. */
export const NET_SUPPORTED_FEATURES: bigint = [
  NetF.CSUM, NetF.GUEST_CSUM, NetF.CTRL_GUEST_OFFLOADS, NetF.MTU, NetF.MAC, NetF.GUEST_TSO4, NetF.GUEST_TSO6,
  NetF.HOST_TSO4, NetF.HOST_TSO6, NetF.MRG_RXBUF, NetF.STATUS, NetF.CTRL_VQ, NetF.CTRL_RX, NetF.CTRL_VLAN,
  NetF.CTRL_RX_EXTRA, NetF.GUEST_ANNOUNCE, NetF.MQ, NetF.CTRL_MAC_ADDR, NetF.DEVICE_STATS, NetF.VQ_NOTF_COAL,
  NetF.NOTF_COAL, NetF.HASH_REPORT, NetF.RSS, NetF.SPEED_DUPLEX, NetF.GUEST_ECN, NetF.HOST_ECN, NetF.GUEST_HDRLEN,
  NetF.HOST_USO, NetF.GUEST_USO4, NetF.GUEST_USO6, NetFx.HOST_UDP_TUNNEL_GSO, NetFx.HOST_UDP_TUNNEL_GSO_CSUM, NetFx.GUEST_UDP_TUNNEL_GSO, NetFx.GUEST_UDP_TUNNEL_GSO_CSUM,
  NetFx.OUT_NET_HEADER, NetF.RSC_EXT, NetF.HASH_TUNNEL, NetFx.RSS_CONTEXT, F.VERSION_1, F.EVENT_IDX, F.INDIRECT_DESC, F.RING_PACKED, F.RING_RESET,
].reduce((s, b) => s | bit(b), 0n);

/** Core features a caller may add to the offer: the model is indifferent to them (in-order use holds: every queue completes in order). */
const CORE_PASSTHROUGH: bigint = [F.NOTIFICATION_DATA, F.NOTIF_CONFIG_DATA, F.IN_ORDER].reduce((s, b) => s | bit(b), 0n);

/** The features offered for these options (the device's max_virtqueue_pairs and mtu already clamped). */
export function offerFeatures(opts: NetDeviceOptions, maxPairs: number, mtu: number): bigint {
  // Ring and transport features the core implements pass through when asked for (not offered by default).
  let feats = (opts.features ?? NET_SUPPORTED_FEATURES) & (NET_SUPPORTED_FEATURES | CORE_PASSTHROUGH);
  if (maxPairs === 1 && opts.features === undefined) feats &= ~bit(NetF.MQ);
  if (mtu < 68 || mtu > 65535) feats &= ~bit(NetF.MTU); // net.device.2: only a valid mtu is offered
  // features.device.1: never offer a feature without what it depends on.
  return pruneNetFeatures(feats);
}

/** The config space at power-on (net.device.1, .2, .7, .8, .10, .11); `mac` and `status` are kept live by the device. */
export function initialConfig(opts: NetDeviceOptions, permanentMac: Uint8Array, linkUp: boolean, maxPairs: number, mtu: number): Uint8Array {
  const config = new Uint8Array(NetCfg.SIZE);
  const cfgView = new DataView(config.buffer);
  config.set(permanentMac, NetCfg.MAC);
  cfgView.setUint16(NetCfg.STATUS, linkUp ? NetStatus.LINK_UP : 0, true);
  cfgView.setUint16(NetCfg.MAX_VIRTQUEUE_PAIRS, maxPairs, true);
  cfgView.setUint16(NetCfg.MTU, mtu & 0xffff, true);
  const speed = opts.speed ?? 10000;
  cfgView.setUint32(NetCfg.SPEED, speed > 0x7fffffff ? 0xffffffff : speed, true);
  const duplex = opts.duplex ?? 1;
  config[NetCfg.DUPLEX] = duplex === 0 || duplex === 1 ? duplex : 0xff;
  config[NetCfg.RSS_MAX_KEY_SIZE] = 40;
  cfgView.setUint16(NetCfg.RSS_MAX_INDIRECTION_TABLE_LENGTH, 128, true);
  cfgView.setUint32(NetCfg.SUPPORTED_HASH_TYPES, HashType.IPv4 | HashType.TCPv4 | HashType.UDPv4 | HashType.IPv6 | HashType.TCPv6 | HashType.UDPv6 | HashType.IP_EX | HashType.TCP_EX | HashType.UDP_EX, true);
  cfgView.setUint32(NetCfg.SUPPORTED_TUNNEL_TYPES, (opts.supportedTunnelTypes ?? HashTunnel.VXLAN) >>> 0, true);
  return config;
}

/** A config-space read: little-endian, bytes past the end read 0. */
export function readConfigBytes(config: Uint8Array, offset: number, size: 1 | 2 | 4): number {
  let v = 0;
  for (let i = size - 1; i >= 0; i--) {
    const o = offset + i;
    v = v * 256 + (o >= 0 && o < NetCfg.SIZE ? config[o]! : 0);
  }
  return v >>> 0;
}

/** What was negotiated, as booleans (all false before DRIVER_OK). */
export type NetFlags = ReturnType<typeof negotiatedFlags>;

export function negotiatedFlags(features: bigint) {
  const has = (b: number) => hasFeature(features, b);
  return {
    csum: has(NetF.CSUM), guestCsum: has(NetF.GUEST_CSUM), hostTso4: has(NetF.HOST_TSO4), hostTso6: has(NetF.HOST_TSO6),
    guestTso4: has(NetF.GUEST_TSO4), guestTso6: has(NetF.GUEST_TSO6), mrg: has(NetF.MRG_RXBUF), ctrlVq: has(NetF.CTRL_VQ),
    ctrlRx: has(NetF.CTRL_RX), ctrlRxExtra: has(NetF.CTRL_RX_EXTRA), ctrlVlan: has(NetF.CTRL_VLAN), mq: has(NetF.MQ),
    macAddr: has(NetF.CTRL_MAC_ADDR), mtu: has(NetF.MTU), announce: has(NetF.GUEST_ANNOUNCE), guestOffloads: has(NetF.CTRL_GUEST_OFFLOADS),
    stats: has(NetF.DEVICE_STATS), notfCoal: has(NetF.NOTF_COAL), vqNotfCoal: has(NetF.VQ_NOTF_COAL), hashReport: has(NetF.HASH_REPORT),
    rss: has(NetF.RSS), status: has(NetF.STATUS), version1: has(F.VERSION_1),
    hostEcn: has(NetF.HOST_ECN), guestEcn: has(NetF.GUEST_ECN), hdrLen: has(NetF.GUEST_HDRLEN),
    hostUso: has(NetF.HOST_USO), guestUso4: has(NetF.GUEST_USO4), guestUso6: has(NetF.GUEST_USO6),
    hostTunnel: has(NetFx.HOST_UDP_TUNNEL_GSO), hostTunnelCsum: has(NetFx.HOST_UDP_TUNNEL_GSO_CSUM), guestTunnel: has(NetFx.GUEST_UDP_TUNNEL_GSO),
    outNet: has(NetFx.OUT_NET_HEADER), rscExt: has(NetF.RSC_EXT), hashTunnel: has(NetF.HASH_TUNNEL), rssCtx: has(NetFx.RSS_CONTEXT),
  };
}
