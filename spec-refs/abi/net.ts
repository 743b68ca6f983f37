/**
 * virtio-net constants (device-types/net/description.tex at v1.4-cs01): header flags and GSO
 * types, status bits, control-queue classes and commands, hash types, statistics types.
 * Feature bit numbers live in spec-refs/abi/virtio.ts (NetF).
 */

/** virtio_net_config layout (../shared/spec/struct-layouts.tsv). */
export const NetCfg = {
  MAC: 0,
  STATUS: 6,
  MAX_VIRTQUEUE_PAIRS: 8,
  MTU: 10,
  SPEED: 12,
  DUPLEX: 16,
  RSS_MAX_KEY_SIZE: 17,
  RSS_MAX_INDIRECTION_TABLE_LENGTH: 18,
  SUPPORTED_HASH_TYPES: 20,
  SUPPORTED_TUNNEL_TYPES: 24,
  SIZE: 28,
} as const;

/** Encapsulation types for inner-header hashing (supported_tunnel_types / enabled_tunnel_types). */
export const HashTunnel = {
  GRE_2784: 1 << 0,
  GRE_2890: 1 << 1,
  GRE_7676: 1 << 2,
  GRE_UDP: 1 << 3,
  VXLAN: 1 << 4,
  VXLAN_GPE: 1 << 5,
  GENEVE: 1 << 6,
  IPIP: 1 << 7,
  NVGRE: 1 << 8,
  /** Every bit v1.4 defines (net.driver.80: others are ignored). */
  DEFINED: 0x1ff,
} as const;

export const NetStatus = {
  LINK_UP: 1,
  ANNOUNCE: 2,
} as const;

/** virtio_net_hdr flags and gso_type values. */
export const NetHdr = {
  F_NEEDS_CSUM: 1,
  F_DATA_VALID: 2,
  F_RSC_INFO: 4,
  F_UDP_TUNNEL_CSUM: 8,
  F_SECURITY: 16,
  GSO_NONE: 0,
  GSO_TCPV4: 1,
  GSO_UDP: 3,
  GSO_TCPV6: 4,
  GSO_UDP_L4: 5,
  GSO_UDP_TUNNEL_IPV4: 0x20,
  GSO_UDP_TUNNEL_IPV6: 0x40,
  GSO_ECN: 0x80,
  /** Offsets within the header. */
  OFF_FLAGS: 0,
  OFF_GSO_TYPE: 1,
  OFF_HDR_LEN: 2,
  OFF_GSO_SIZE: 4,
  OFF_CSUM_START: 6,
  OFF_CSUM_OFFSET: 8,
  OFF_NUM_BUFFERS: 10,
  OFF_HASH_VALUE: 12,
  OFF_HASH_REPORT: 16,
  OFF_OUTER_TH: 20,
  OFF_INNER_NH: 22,
  /** outer_nh_offset: present with OUT_NET_HEADER (32-byte header). */
  OFF_OUTER_NH: 24,
  /** Sizes: base (with num_buffers, VERSION_1), with hash report. */
  SIZE_BASE: 12,
  SIZE_HASH: 20,
  SIZE_TUNNEL: 24,
} as const;

/** virtio-net feature bits above 63 (device-types/net/description.tex; not in spec-refs/abi/virtio.ts NetF). */
export const NetFx = {
  RSS_CONTEXT: 64,
  GUEST_UDP_TUNNEL_GSO: 65,
  GUEST_UDP_TUNNEL_GSO_CSUM: 66,
  HOST_UDP_TUNNEL_GSO: 67,
  HOST_UDP_TUNNEL_GSO_CSUM: 68,
  OUT_NET_HEADER: 69,
  IPSEC: 70,
} as const;

export const NetCtrl = {
  OK: 0,
  ERR: 1,
  CLASS_RX: 0,
  RX_PROMISC: 0,
  RX_ALLMULTI: 1,
  RX_ALLUNI: 2,
  RX_NOMULTI: 3,
  RX_NOUNI: 4,
  RX_NOBCAST: 5,
  CLASS_MAC: 1,
  MAC_TABLE_SET: 0,
  MAC_ADDR_SET: 1,
  CLASS_VLAN: 2,
  VLAN_ADD: 0,
  VLAN_DEL: 1,
  CLASS_ANNOUNCE: 3,
  ANNOUNCE_ACK: 0,
  CLASS_MQ: 4,
  MQ_VQ_PAIRS_SET: 0,
  MQ_RSS_CONFIG: 1,
  MQ_HASH_CONFIG: 2,
  MQ_VQ_PAIRS_MIN: 1,
  MQ_VQ_PAIRS_MAX: 0x8000,
  CLASS_GUEST_OFFLOADS: 5,
  GUEST_OFFLOADS_SET: 0,
  CLASS_NOTF_COAL: 6,
  NOTF_COAL_TX_SET: 0,
  NOTF_COAL_RX_SET: 1,
  NOTF_COAL_VQ_SET: 2,
  NOTF_COAL_VQ_GET: 3,
  CLASS_HASH_TUNNEL: 7,
  HASH_TUNNEL_SET: 0,
  /** VIRTNET_RSS_CTX_CTRL (RSS_CONTEXT) and its commands. */
  CLASS_RSS_CTX: 9,
  RSS_CTX_CAP_GET: 0,
  RSS_CTX_ADD: 1,
  RSS_CTX_MOD: 2,
  RSS_CTX_DEL: 3,
  CLASS_STATS: 8,
  STATS_QUERY: 0,
  STATS_GET: 1,
} as const;

/** Hash types (supported_hash_types / hash_types bits) and hash_report values. */
export const HashType = {
  IPv4: 1 << 0,
  TCPv4: 1 << 1,
  UDPv4: 1 << 2,
  IPv6: 1 << 3,
  TCPv6: 1 << 4,
  UDPv6: 1 << 5,
  IP_EX: 1 << 6,
  TCP_EX: 1 << 7,
  UDP_EX: 1 << 8,
} as const;

export const HashReport = {
  NONE: 0,
  IPv4: 1,
  TCPv4: 2,
  UDPv4: 3,
  IPv6: 4,
  TCPv6: 5,
  UDPv6: 6,
  IPv6_EX: 7,
  TCPv6_EX: 8,
  UDPv6_EX: 9,
} as const;

/** Statistics types: bit numbers in types_bitmap (CVQ is bit 32) and the reply `type` values. */
export const StatsType = {
  RX_BASIC: 0,
  RX_CSUM: 1,
  RX_GSO: 2,
  TX_BASIC: 16,
  TX_CSUM: 17,
  TX_GSO: 18,
  CVQ: 32,
} as const;

/** Number of le64 counters each statistics reply carries after its 8-byte header. */
export const StatsCounters: Record<number, number> = {
  [StatsType.RX_BASIC]: 6,
  [StatsType.RX_CSUM]: 4,
  [StatsType.RX_GSO]: 4,
  [StatsType.TX_BASIC]: 6,
  [StatsType.TX_CSUM]: 2,
  [StatsType.TX_GSO]: 6,
  [StatsType.CVQ]: 2,
};

/** Ethernet header length (the "link-level header" the MTU statements add to mtu). */
export const ETH_HLEN = 14;

import { F, NetF, hasFeature } from './virtio.ts';

/**
 * Feature dependencies ("Feature bit requirements"): each feature with the groups it needs; from
 * every group at least one feature must be present.
 */
export const NET_FEATURE_REQUIRES: readonly (readonly [number, readonly (readonly number[])[]])[] = [
  [NetF.GUEST_TSO4, [[NetF.GUEST_CSUM]]],
  [NetF.GUEST_TSO6, [[NetF.GUEST_CSUM]]],
  [NetF.GUEST_ECN, [[NetF.GUEST_TSO4, NetF.GUEST_TSO6]]],
  [NetF.GUEST_UFO, [[NetF.GUEST_CSUM]]],
  [NetF.GUEST_USO4, [[NetF.GUEST_CSUM]]],
  [NetF.GUEST_USO6, [[NetF.GUEST_CSUM]]],
  [NetF.HOST_TSO4, [[NetF.CSUM]]],
  [NetF.HOST_TSO6, [[NetF.CSUM]]],
  [NetF.HOST_ECN, [[NetF.HOST_TSO4, NetF.HOST_TSO6]]],
  [NetF.HOST_UFO, [[NetF.CSUM]]],
  [NetF.HOST_USO, [[NetF.CSUM]]],
  [NetF.CTRL_RX, [[NetF.CTRL_VQ]]],
  [NetF.CTRL_VLAN, [[NetF.CTRL_VQ]]],
  [NetF.GUEST_ANNOUNCE, [[NetF.CTRL_VQ]]],
  [NetF.MQ, [[NetF.CTRL_VQ]]],
  [NetF.CTRL_MAC_ADDR, [[NetF.CTRL_VQ]]],
  [NetF.NOTF_COAL, [[NetF.CTRL_VQ]]],
  [NetF.VQ_NOTF_COAL, [[NetF.CTRL_VQ]]],
  [NetF.RSC_EXT, [[NetF.HOST_TSO4, NetF.HOST_TSO6]]],
  [NetF.RSS, [[NetF.CTRL_VQ]]],
  [NetF.HASH_TUNNEL, [[NetF.CTRL_VQ], [NetF.RSS, NetF.HASH_REPORT]]],
  [NetFx.GUEST_UDP_TUNNEL_GSO, [[NetF.GUEST_TSO4], [NetF.GUEST_TSO6], [NetF.GUEST_USO4], [NetF.GUEST_USO6]]],
  [NetFx.GUEST_UDP_TUNNEL_GSO_CSUM, [[NetFx.GUEST_UDP_TUNNEL_GSO]]],
  [NetFx.HOST_UDP_TUNNEL_GSO, [[NetF.HOST_TSO4], [NetF.HOST_TSO6], [NetF.HOST_USO]]],
  [NetFx.HOST_UDP_TUNNEL_GSO_CSUM, [[NetFx.HOST_UDP_TUNNEL_GSO]]],
  [NetFx.RSS_CONTEXT, [[NetF.CTRL_VQ], [NetF.RSS]]],
];

/** The first dependency `features` breaks, as text, or null. */
export function netFeatureDependencyError(features: bigint): string | null {
  for (const [f, groups] of NET_FEATURE_REQUIRES) {
    if (!hasFeature(features, f)) continue;
    for (const anyOf of groups) if (!anyOf.some((r) => hasFeature(features, r))) return `net feature bit ${f} needs one of bit(s) ${anyOf.join('/')}`;
  }
  return null;
}

/** Drop features whose requirements are missing, until the set is consistent. */
export function pruneNetFeatures(features: bigint): bigint {
  let s = features;
  for (let changed = true; changed; ) {
    changed = false;
    for (const [f, groups] of NET_FEATURE_REQUIRES) {
      if (hasFeature(s, f) && groups.some((g) => !g.some((r) => hasFeature(s, r)))) {
        s &= ~(1n << BigInt(f));
        changed = true;
      }
    }
  }
  return s;
}

/**
 * Size of struct virtio_net_hdr for a negotiated feature set (net.driver.66): 32 bytes with
 * OUT_NET_HEADER or IPSEC, 24 with UDP-tunnel GSO, 20 with HASH_REPORT, else 12 (VERSION_1 or
 * MRG_RXBUF: num_buffers present), else the legacy 10.
 */
export function netHdrSize(features: bigint): number {
  if (hasFeature(features, NetFx.OUT_NET_HEADER) || hasFeature(features, NetFx.IPSEC)) return 32;
  // outer_th_offset / inner_nh_offset: present with either UDP-tunnel GSO feature (the struct's rule)
  if (hasFeature(features, NetFx.HOST_UDP_TUNNEL_GSO) || hasFeature(features, NetFx.GUEST_UDP_TUNNEL_GSO)) return NetHdr.SIZE_TUNNEL;
  if (hasFeature(features, NetF.HASH_REPORT)) return NetHdr.SIZE_HASH;
  if (hasFeature(features, F.VERSION_1) || hasFeature(features, NetF.MRG_RXBUF)) return NetHdr.SIZE_BASE;
  return 10;
}
