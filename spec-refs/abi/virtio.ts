/**
 * Numbers defined by VIRTIO 1.4 (tag v1.4-cs01), shared by drivers and device models.
 * Locations refer to the LaTeX sources; see ../shared/spec/ for the tables they come from.
 *
 * Feature sets are bigints: negotiation is not a hot path and VIRTIO 1.4 defines bits past 63.
 * Hot paths cache the booleans they need once negotiation is over.
 */

/** Device status bits (content.tex, "Device Status Field"). */
export const Status = {
  ACKNOWLEDGE: 1,
  DRIVER: 2,
  DRIVER_OK: 4,
  FEATURES_OK: 8,
  /** VIRTIO_F_SUSPEND: the driver asks for / the device reports a suspended device. */
  SUSPEND: 16,
  DEVICE_NEEDS_RESET: 64,
  FAILED: 128,
} as const;

export function statusNames(s: number): string {
  const names: string[] = [];
  for (const [k, v] of Object.entries(Status)) if (s & v) names.push(k);
  return names.length ? names.join('|') : '0';
}

/** Device type ids (content.tex, "Device Types"). */
export const DeviceType = {
  NET: 1,
  BLOCK: 2,
} as const;

/** Reserved feature bits (content.tex, "Reserved Feature Bits"). */
export const F = {
  NOTIFY_ON_EMPTY: 24,
  ANY_LAYOUT: 27,
  INDIRECT_DESC: 28,
  EVENT_IDX: 29,
  VERSION_1: 32,
  ACCESS_PLATFORM: 33,
  RING_PACKED: 34,
  IN_ORDER: 35,
  ORDER_PLATFORM: 36,
  SR_IOV: 37,
  NOTIFICATION_DATA: 38,
  NOTIF_CONFIG_DATA: 39,
  RING_RESET: 40,
  ADMIN_VQ: 41,
  SUSPEND: 43,
} as const;

/** virtio-blk feature bits (device-types/blk/description.tex). */
export const BlkF = {
  SIZE_MAX: 1,
  SEG_MAX: 2,
  GEOMETRY: 4,
  RO: 5,
  BLK_SIZE: 6,
  FLUSH: 9,
  TOPOLOGY: 10,
  CONFIG_WCE: 11,
  MQ: 12,
  DISCARD: 13,
  WRITE_ZEROES: 14,
  LIFETIME: 15,
  SECURE_ERASE: 16,
  ZONED: 17,
} as const;

/** virtio-net feature bits (device-types/net/description.tex). */
export const NetF = {
  CSUM: 0,
  GUEST_CSUM: 1,
  CTRL_GUEST_OFFLOADS: 2,
  MTU: 3,
  MAC: 5,
  GUEST_TSO4: 7,
  GUEST_TSO6: 8,
  GUEST_ECN: 9,
  GUEST_UFO: 10,
  HOST_TSO4: 11,
  HOST_TSO6: 12,
  HOST_ECN: 13,
  HOST_UFO: 14,
  MRG_RXBUF: 15,
  STATUS: 16,
  CTRL_VQ: 17,
  CTRL_RX: 18,
  CTRL_VLAN: 19,
  CTRL_RX_EXTRA: 20,
  GUEST_ANNOUNCE: 21,
  MQ: 22,
  CTRL_MAC_ADDR: 23,
  DEVICE_STATS: 50,
  HASH_TUNNEL: 51,
  VQ_NOTF_COAL: 52,
  NOTF_COAL: 53,
  GUEST_USO4: 54,
  GUEST_USO6: 55,
  HOST_USO: 56,
  HASH_REPORT: 57,
  GUEST_HDRLEN: 59,
  RSS: 60,
  RSC_EXT: 61,
  STANDBY: 62,
  SPEED_DUPLEX: 63,
} as const;

export function bit(n: number): bigint {
  return 1n << BigInt(n);
}

export function hasFeature(set: bigint, n: number): boolean {
  return (set & bit(n)) !== 0n;
}

export function featureSet(...bits: number[]): bigint {
  let s = 0n;
  for (const b of bits) s |= bit(b);
  return s;
}

/** The 32-bit word `sel` of a feature set (the FeaturesSel windows of every transport). */
export function featureWord(set: bigint, sel: number): number {
  return Number((set >> BigInt(32 * sel)) & 0xffffffffn);
}

export function withFeatureWord(set: bigint, sel: number, word: number): bigint {
  const shift = BigInt(32 * sel);
  return (set & ~(0xffffffffn << shift)) | (BigInt(word >>> 0) << shift);
}

/** Names of the set bits, using the tables above (core names first, then the device's). */
export function featureNames(set: bigint, device?: Record<string, number>): string[] {
  const out: string[] = [];
  for (let b = 0; b < 128; b++) {
    if (!hasFeature(set, b)) continue;
    const core = Object.entries(F).find(([, v]) => v === b);
    const dev = device ? Object.entries(device).find(([, v]) => v === b) : undefined;
    out.push(dev ? dev[0] : core ? `VIRTIO_F_${core[0]}` : `bit${b}`);
  }
  return out;
}

/** Split virtqueue layout (split-ring.tex). */
export const Split = {
  DESC_SIZE: 16,
  DESC_F_NEXT: 1,
  DESC_F_WRITE: 2,
  DESC_F_INDIRECT: 4,
  AVAIL_F_NO_INTERRUPT: 1,
  USED_F_NO_NOTIFY: 1,
  /** Alignment of the three areas for modern (1.x) devices. */
  DESC_ALIGN: 16,
  AVAIL_ALIGN: 2,
  USED_ALIGN: 4,
  MAX_SIZE: 32768,
} as const;

/** Packed virtqueue layout (packed-ring.tex). */
export const Packed = {
  DESC_SIZE: 16,
  DESC_F_NEXT: 1,
  DESC_F_WRITE: 2,
  DESC_F_INDIRECT: 4,
  DESC_F_AVAIL: 1 << 7,
  DESC_F_USED: 1 << 15,
  EVENT_FLAGS_ENABLE: 0,
  EVENT_FLAGS_DISABLE: 1,
  EVENT_FLAGS_DESC: 2,
  MAX_SIZE: 32768,
} as const;

/** virtio-mmio register offsets (transport-mmio.tex; ../shared/spec/mmio-registers.tsv). */
export const Mmio = {
  MAGIC_VALUE: 0x000,
  VERSION: 0x004,
  DEVICE_ID: 0x008,
  VENDOR_ID: 0x00c,
  DEVICE_FEATURES: 0x010,
  DEVICE_FEATURES_SEL: 0x014,
  DRIVER_FEATURES: 0x020,
  DRIVER_FEATURES_SEL: 0x024,
  /** legacy (version 1) only */
  GUEST_PAGE_SIZE: 0x028,
  QUEUE_SEL: 0x030,
  QUEUE_NUM_MAX: 0x034,
  QUEUE_NUM: 0x038,
  /** legacy only */
  QUEUE_ALIGN: 0x03c,
  /** legacy only */
  QUEUE_PFN: 0x040,
  QUEUE_READY: 0x044,
  QUEUE_NOTIFY: 0x050,
  INTERRUPT_STATUS: 0x060,
  INTERRUPT_ACK: 0x064,
  STATUS: 0x070,
  QUEUE_DESC_LOW: 0x080,
  QUEUE_DESC_HIGH: 0x084,
  QUEUE_DRIVER_LOW: 0x090,
  QUEUE_DRIVER_HIGH: 0x094,
  QUEUE_DEVICE_LOW: 0x0a0,
  QUEUE_DEVICE_HIGH: 0x0a4,
  SHM_SEL: 0x0ac,
  SHM_LEN_LOW: 0x0b0,
  SHM_LEN_HIGH: 0x0b4,
  SHM_BASE_LOW: 0x0b8,
  SHM_BASE_HIGH: 0x0bc,
  QUEUE_RESET: 0x0c0,
  CONFIG_GENERATION: 0x0fc,
  CONFIG: 0x100,
  /** "virt" in little endian */
  MAGIC: 0x74726976,
  INT_VRING: 1,
  INT_CONFIG: 2,
} as const;

/** virtio-blk request types and status values (device-types/blk/description.tex). */
export const Blk = {
  T_IN: 0,
  T_OUT: 1,
  T_FLUSH: 4,
  T_GET_ID: 8,
  T_GET_LIFETIME: 10,
  T_DISCARD: 11,
  T_WRITE_ZEROES: 13,
  T_SECURE_ERASE: 14,
  T_ZONE_APPEND: 15,
  T_ZONE_REPORT: 16,
  T_ZONE_OPEN: 18,
  T_ZONE_CLOSE: 20,
  T_ZONE_FINISH: 22,
  T_ZONE_RESET: 24,
  T_ZONE_RESET_ALL: 26,
  S_OK: 0,
  S_IOERR: 1,
  S_UNSUPP: 2,
  S_ZONE_INVALID_CMD: 3,
  S_ZONE_UNALIGNED_WP: 4,
  S_ZONE_OPEN_RESOURCE: 5,
  S_ZONE_ACTIVE_RESOURCE: 6,
  SECTOR_SIZE: 512,
  ID_BYTES: 20,
  /** flag in virtio_blk_discard_write_zeroes.flags */
  WRITE_ZEROES_FLAG_UNMAP: 1,
  CONFIG_SIZE: 96,
} as const;
