/**
 * Per-packet hash for RSS and HASH_REPORT: the Toeplitz hash over the fields the enabled hash
 * types select (device-types/net/description.tex, "Hash calculation for incoming packets").
 */
import { IpProto, type FrameInfo } from '../../spec-refs/abi/packet.ts';
import { HashReport, HashType } from '../../spec-refs/abi/net.ts';

/** The 40-byte key Microsoft's RSS documentation uses in its verification suite (a common default). */
export const DEFAULT_RSS_KEY = new Uint8Array([
  0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb,
  0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
]);

/** Toeplitz hash of `input` under `key` (key must be at least input length + 4 bytes; missing key bytes read as 0). */
export function toeplitz(key: Uint8Array, input: Uint8Array): number {
  let result = 0;
  // The 32-bit window of the key starting at bit i.
  let window = ((key[0] ?? 0) << 24) | ((key[1] ?? 0) << 16) | ((key[2] ?? 0) << 8) | (key[3] ?? 0);
  for (let i = 0; i < input.length; i++) {
    const b = input[i]!;
    const next = key[i + 4] ?? 0;
    for (let bit = 7; bit >= 0; bit--) {
      if ((b >> bit) & 1) result ^= window;
      window = (window << 1) | ((next >> bit) & 1);
    }
  }
  return result >>> 0;
}

export interface PacketHash {
  readonly value: number;
  /** VIRTIO_NET_HASH_REPORT_* */
  readonly report: number;
}

const NONE: PacketHash = { value: 0, report: HashReport.NONE };

/** Hash a frame under the enabled hash types; report NONE when no enabled type applies. */
export function hashPacket(f: Uint8Array, info: FrameInfo, enabled: number, key: Uint8Array): PacketHash {
  if (enabled === 0 || info.l3 < 0) return NONE;
  const l4ok = info.l4 >= 0 && info.srcPort >= 0;
  if (info.ipVersion === 4) {
    const a = f.subarray(info.l3 + 12, info.l3 + 20);
    if (l4ok && info.proto === IpProto.TCP && enabled & HashType.TCPv4) return { value: toeplitz(key, withPorts(a, f, info.l4)), report: HashReport.TCPv4 };
    if (l4ok && info.proto === IpProto.UDP && enabled & HashType.UDPv4) return { value: toeplitz(key, withPorts(a, f, info.l4)), report: HashReport.UDPv4 };
    if (enabled & HashType.IPv4) return { value: toeplitz(key, a), report: HashReport.IPv4 };
    return NONE;
  }
  if (info.ipVersion === 6) {
    const a = f.subarray(info.l3 + 8, info.l3 + 40);
    // Extension headers: the _EX types apply (pvkit does not substitute home/routing addresses).
    const ex = info.ipv6Ext;
    const tcpT = ex ? HashType.TCP_EX : HashType.TCPv6;
    const udpT = ex ? HashType.UDP_EX : HashType.UDPv6;
    const ipT = ex ? HashType.IP_EX : HashType.IPv6;
    if (l4ok && info.proto === IpProto.TCP && (enabled & tcpT || enabled & HashType.TCPv6)) return { value: toeplitz(key, withPorts(a, f, info.l4)), report: ex && enabled & tcpT ? HashReport.TCPv6_EX : HashReport.TCPv6 };
    if (l4ok && info.proto === IpProto.UDP && (enabled & udpT || enabled & HashType.UDPv6)) return { value: toeplitz(key, withPorts(a, f, info.l4)), report: ex && enabled & udpT ? HashReport.UDPv6_EX : HashReport.UDPv6 };
    if (enabled & ipT || enabled & HashType.IPv6) return { value: toeplitz(key, a), report: ex && enabled & ipT ? HashReport.IPv6_EX : HashReport.IPv6 };
  }
  return NONE;
}

function withPorts(addrs: Uint8Array, f: Uint8Array, l4: number): Uint8Array {
  const out = new Uint8Array(addrs.length + 4);
  out.set(addrs, 0);
  out.set(f.subarray(l4, l4 + 4), addrs.length);
  return out;
}
