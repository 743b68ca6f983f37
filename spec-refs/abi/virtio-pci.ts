/**
 * virtio-pci numbers (transport-pci.tex at v1.4-cs01; struct offsets as in
 * ../shared/spec/struct-layouts.tsv), shared by the device transport and the driver.
 */

export const VIRTIO_PCI_VENDOR_ID = 0x1af4;
/** Modern PCI device id = 0x1040 + virtio device type (pci.device.3). */
export const MODERN_DEVICE_ID_BASE = 0x1040;

/** Transitional PCI device ids, by virtio device type (transport-pci.tex, "PCI Device Discovery"). */
export const TRANSITIONAL_DEVICE_ID: Readonly<Record<number, number>> = {
  1: 0x1000, // network
  2: 0x1001, // block
  5: 0x1002, // memory balloon (traditional)
  3: 0x1003, // console
  8: 0x1004, // SCSI host
  4: 0x1005, // entropy source
  9: 0x1009, // 9P transport
};

/** cfg_type of a virtio vendor capability. */
export const PciCap = {
  COMMON_CFG: 1,
  NOTIFY_CFG: 2,
  ISR_CFG: 3,
  DEVICE_CFG: 4,
  PCI_CFG: 5,
  SHARED_MEMORY_CFG: 8,
  VENDOR_CFG: 9,
  /** struct virtio_pci_cap */
  CAP_LEN: 16,
  /** struct virtio_pci_notify_cap / virtio_pci_cfg_cap */
  NOTIFY_CAP_LEN: 20,
  CFG_CAP_LEN: 20,
  OFF_CFG_TYPE: 3,
  OFF_BAR: 4,
  OFF_ID: 5,
  OFF_OFFSET: 8,
  OFF_LENGTH: 12,
  OFF_NOTIFY_MULT: 16,
  OFF_PCI_CFG_DATA: 16,
} as const;

/** struct virtio_pci_common_cfg (64 bytes). */
export const Common = {
  DEVICE_FEATURE_SELECT: 0,
  DEVICE_FEATURE: 4,
  DRIVER_FEATURE_SELECT: 8,
  DRIVER_FEATURE: 12,
  CONFIG_MSIX_VECTOR: 16,
  NUM_QUEUES: 18,
  DEVICE_STATUS: 20,
  CONFIG_GENERATION: 21,
  QUEUE_SELECT: 22,
  QUEUE_SIZE: 24,
  QUEUE_MSIX_VECTOR: 26,
  QUEUE_ENABLE: 28,
  QUEUE_NOTIFY_OFF: 30,
  QUEUE_DESC: 32,
  QUEUE_DRIVER: 40,
  QUEUE_DEVICE: 48,
  QUEUE_NOTIF_CONFIG_DATA: 56,
  QUEUE_RESET: 58,
  ADMIN_QUEUE_INDEX: 60,
  ADMIN_QUEUE_NUM: 62,
  SIZE: 64,
} as const;

/** Width of each common configuration field, by offset. */
export const COMMON_FIELD_WIDTH: Readonly<Record<number, 1 | 2 | 4 | 8>> = {
  0: 4, 4: 4, 8: 4, 12: 4, 16: 2, 18: 2, 20: 1, 21: 1, 22: 2, 24: 2, 26: 2, 28: 2, 30: 2,
  32: 8, 40: 8, 48: 8, 56: 2, 58: 2, 60: 2, 62: 2,
};

/** The legacy register block in I/O BAR 0 (transport-pci.tex, "Legacy Interfaces: A Note on PCI Device Layout"). */
export const Legacy = {
  HOST_FEATURES: 0,
  GUEST_FEATURES: 4,
  QUEUE_PFN: 8,
  QUEUE_NUM: 12,
  QUEUE_SEL: 14,
  QUEUE_NOTIFY: 16,
  STATUS: 18,
  ISR: 19,
  /** present only while MSI-X is enabled */
  CONFIG_VECTOR: 20,
  QUEUE_VECTOR: 22,
  CONFIG_OFF: 20,
  CONFIG_OFF_MSIX: 24,
  /** the legacy ring's page size and used-ring alignment */
  PAGE: 4096,
  ALIGN: 4096,
} as const;

export const VIRTIO_MSI_NO_VECTOR = 0xffff;
export const ISR_QUEUE = 1;
export const ISR_CONFIG = 2;
