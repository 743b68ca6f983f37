/**
 * virtio-blk structures (device-types/blk/description.tex): struct virtio_blk_config (offsets and
 * sizes as in ../shared/spec/struct-layouts.tsv; little-endian; 96 bytes), the request header and
 * the discard / write-zeroes segment. Shared by the device model and the driver.
 */
export const BlkConfig = {
  CAPACITY: 0, // le64, 512-byte sectors
  SIZE_MAX: 8, // le32
  SEG_MAX: 12, // le32
  GEOMETRY_CYLINDERS: 16, // le16
  GEOMETRY_HEADS: 18, // u8
  GEOMETRY_SECTORS: 19, // u8
  BLK_SIZE: 20, // le32
  TOPOLOGY_PHYSICAL_BLOCK_EXP: 24, // u8
  TOPOLOGY_ALIGNMENT_OFFSET: 25, // u8
  TOPOLOGY_MIN_IO_SIZE: 26, // le16
  TOPOLOGY_OPT_IO_SIZE: 28, // le32
  WRITEBACK: 32, // u8
  UNUSED0: 33, // u8
  NUM_QUEUES: 34, // le16
  MAX_DISCARD_SECTORS: 36, // le32
  MAX_DISCARD_SEG: 40, // le32
  DISCARD_SECTOR_ALIGNMENT: 44, // le32
  MAX_WRITE_ZEROES_SECTORS: 48, // le32
  MAX_WRITE_ZEROES_SEG: 52, // le32
  WRITE_ZEROES_MAY_UNMAP: 56, // u8
  UNUSED1: 57, // u8[3]
  MAX_SECURE_ERASE_SECTORS: 60, // le32
  MAX_SECURE_ERASE_SEG: 64, // le32
  SECURE_ERASE_SECTOR_ALIGNMENT: 68, // le32
  ZONED: 72, // struct virtio_blk_zoned_characteristics, 24 bytes
  SIZE: 96,
} as const;

/** struct virtio_blk_req header: le32 type, le32 reserved, le64 sector. */
export const BlkReqHeader = { TYPE: 0, RESERVED: 4, SECTOR: 8, SIZE: 16 } as const;

/** struct virtio_blk_discard_write_zeroes: le64 sector, le32 num_sectors, le32 flags. */
export const BlkDwz = { SECTOR: 0, NUM_SECTORS: 8, FLAGS: 12, SIZE: 16 } as const;

/** Request types of the zoned extension: rejected with UNSUPP unless ZONED is negotiated (blk.device.36). */
export const BLK_ZONE_TYPES: readonly number[] = [15, 16, 18, 20, 22, 24, 26];

/** struct virtio_blk_zoned_characteristics, at BlkConfig.ZONED (offsets relative to it). */
export const BlkZonedConfig = { ZONE_SECTORS: 0, MAX_OPEN_ZONES: 4, MAX_ACTIVE_ZONES: 8, MAX_APPEND_SECTORS: 12, WRITE_GRANULARITY: 16, MODEL: 20, UNUSED2: 21, SIZE: 24 } as const;

/** zoned.model values. */
export const BlkZoneModel = { NONE: 0, HM: 1, HA: 2 } as const;

/** struct virtio_blk_zone_report header (64 bytes) and struct virtio_blk_zone_descriptor (64 bytes). */
export const BlkZoneReport = { NR_ZONES: 0, HEADER_SIZE: 64, DESC_SIZE: 64, Z_CAP: 0, Z_START: 8, Z_WP: 16, Z_TYPE: 24, Z_STATE: 25 } as const;

/** Zone types (z_type). */
export const BlkZoneType = { CONV: 1, SWR: 2, SWP: 3 } as const;

/** Zone states (z_state). */
export const BlkZoneState = { NOT_WP: 0, EMPTY: 1, IOPEN: 2, EOPEN: 3, CLOSED: 4, RDONLY: 13, FULL: 14, OFFLINE: 15 } as const;

/** ZONE_APPEND's device-writable trailer: le64 append_sector, then the status byte. */
export const BLK_APPEND_SECTOR_BYTES = 8;
