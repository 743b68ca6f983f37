/**
 * Built-in QEMU configurations for `pvkit conformance --target qemu` and `pvkit qemu`.
 *
 * Each names a machine (q35 with virtio-pci, or microvm with virtio-mmio), its devices with
 * their properties, and the platform facts pvkit needs to drive it (RAM map, PCI windows,
 * interrupt routing). Device properties are QEMU 7.2's (hw/virtio/virtio-pci.c,
 * hw/block/virtio-blk.c, hw/net/virtio-net.c, hw/virtio/virtio-mmio.c).
 */
export type MachineKind = 'q35' | 'microvm';
export type DeviceKind = 'blk' | 'net';

export interface DeviceSpec {
  readonly kind: DeviceKind;
  /** Extra QEMU properties, e.g. 'disable-legacy=on,packed=on'. */
  readonly props?: string;
  /** PCI slot on bus 0 (q35 only). */
  readonly slot?: number;
}

export interface QemuConfig {
  readonly name: string;
  readonly description: string;
  readonly machine: MachineKind;
  /** microvm only: virtio-mmio version 2 (modern) or version 1 (legacy). */
  readonly mmioVersion?: 1 | 2;
  readonly devices: readonly DeviceSpec[];
  /** Part of the CI smoke subset. */
  readonly smoke?: boolean;
  /** Open the disk images read-only (virtio-blk then offers VIRTIO_BLK_F_RO). */
  readonly readOnlyDisks?: boolean;
}

export const RAM_SIZE = 128 << 20;
/** First byte the DMA allocator may hand out; the MSI page sits below it. */
export const DMA_BASE = 1 << 20;
export const MSI_AREA = 0x8_0000;
export const Q35 = {
  ECAM_BASE: 0xb000_0000,
  MMIO_BASE: 0xc000_0000,
  MMIO_SIZE: 0x3ec0_0000,
  // QEMU's pc machines put the 64-bit PCI hole above RAM, rounded up to 1 GiB (pc_pci_hole64_start)
  MMIO64_BASE: 0x1_0000_0000,
  MMIO64_SIZE: 0x8_0000_0000,
  IO_BASE: 0xc000,
  IO_SIZE: 0x4000,
} as const;
export const MICROVM = {
  MMIO_BASE: 0xfeb0_0000,
  MMIO_STRIDE: 0x200,
  // with acpi=off microvm has one IOAPIC and 8 transports on GSI 5..12 (hw/i386/microvm.c)
  MMIO_SLOTS: 8,
  GSI_BASE: 5,
} as const;

const blkPci = (props = '', slot = 4): DeviceSpec => ({ kind: 'blk', props, slot });
const netPci = (props = '', slot = 5): DeviceSpec => ({ kind: 'net', props, slot });

export const CONFIGS: readonly QemuConfig[] = [
  { name: 'q35-blk', description: 'q35, virtio-blk-pci transitional (legacy + modern interfaces)', machine: 'q35', devices: [blkPci()], smoke: true },
  { name: 'q35-blk-modern', description: 'q35, virtio-blk-pci modern-only (disable-legacy=on)', machine: 'q35', devices: [blkPci('disable-legacy=on')] },
  { name: 'q35-blk-packed', description: 'q35, virtio-blk-pci modern-only with packed rings', machine: 'q35', devices: [blkPci('disable-legacy=on,packed=on')] },
  { name: 'q35-blk-noevidx', description: 'q35, virtio-blk-pci without VIRTIO_RING_F_EVENT_IDX', machine: 'q35', devices: [blkPci('disable-legacy=on,event_idx=off')] },
  { name: 'q35-blk-noindirect', description: 'q35, virtio-blk-pci without VIRTIO_RING_F_INDIRECT_DESC', machine: 'q35', devices: [blkPci('disable-legacy=on,indirect_desc=off')] },
  { name: 'q35-blk-mq', description: 'q35, virtio-blk-pci with num-queues=4', machine: 'q35', devices: [blkPci('disable-legacy=on,num-queues=4')] },
  { name: 'q35-net', description: 'q35, virtio-net-pci transitional, frames looped back', machine: 'q35', devices: [netPci()], smoke: true },
  { name: 'q35-net-modern', description: 'q35, virtio-net-pci modern-only (disable-legacy=on)', machine: 'q35', devices: [netPci('disable-legacy=on')] },
  { name: 'q35-net-packed', description: 'q35, virtio-net-pci modern-only with packed rings', machine: 'q35', devices: [netPci('disable-legacy=on,packed=on')] },
  { name: 'q35-net-mq', description: 'q35, virtio-net-pci with mq=on and 2 queue pairs', machine: 'q35', devices: [netPci('disable-legacy=on,mq=on,vectors=6')] },
  { name: 'microvm-blk', description: 'microvm, virtio-blk-device over virtio-mmio version 2', machine: 'microvm', mmioVersion: 2, devices: [{ kind: 'blk' }], smoke: true },
  { name: 'microvm-blk-legacy', description: 'microvm, virtio-blk-device over legacy virtio-mmio (version 1)', machine: 'microvm', mmioVersion: 1, devices: [{ kind: 'blk' }] },
  { name: 'microvm-blk-packed', description: 'microvm, virtio-blk-device over virtio-mmio version 2 with packed rings', machine: 'microvm', mmioVersion: 2, devices: [{ kind: 'blk', props: 'packed=on' }] },
  { name: 'microvm-net', description: 'microvm, virtio-net-device over virtio-mmio version 2', machine: 'microvm', mmioVersion: 2, devices: [{ kind: 'net' }], smoke: true },
  { name: 'microvm-net-legacy', description: 'microvm, virtio-net-device over legacy virtio-mmio (version 1)', machine: 'microvm', mmioVersion: 1, devices: [{ kind: 'net' }] },
  { name: 'microvm-net-packed', description: 'microvm, virtio-net-device over virtio-mmio version 2 with packed rings', machine: 'microvm', mmioVersion: 2, devices: [{ kind: 'net', props: 'packed=on' }] },
];

export function findConfig(name: string): QemuConfig | undefined {
  return CONFIGS.find((c) => c.name === name);
}

/**
 * The q35 INTx route with no firmware: ICH9's chipset-configuration defaults send INTA..D of a
 * device in slot s (< 25) to PIRQ E..H as ((s + pin - 1) mod 4) + 4, and in APIC mode PIRQ n is
 * GSI 16 + n (hw/isa/lpc_ich9.c: ich9_cc_init, ich9_pirq_to_gsi).
 */
/** -1 where the route is not known (only bus 0, slots below 25). */
export function q35IntxGsi(bus: number, dev: number, _fn: number, pin: number): number {
  if (bus !== 0 || dev >= 25 || pin < 1 || pin > 4) return -1;
  return 16 + (((dev + pin - 1) & 3) + 4);
}

export type Transport = 'mmio' | 'mmio-legacy' | 'pci' | 'pci-legacy';
export type Ring = 'split' | 'packed';

function propsOf(c: QemuConfig): string {
  return c.devices.map((d) => d.props ?? '').join(',');
}

/** The virtio interfaces a configuration's device presents (a transitional PCI device has both). */
export function transportsOf(c: QemuConfig): Transport[] {
  if (c.machine === 'microvm') return [c.mmioVersion === 1 ? 'mmio-legacy' : 'mmio'];
  return /disable-legacy=on/.test(propsOf(c)) ? ['pci'] : ['pci', 'pci-legacy'];
}

/** Ring layouts a configuration is for: packed=on configurations exist to exercise packed rings. */
export function ringsOf(c: QemuConfig): Ring[] {
  return /packed=on/.test(propsOf(c)) ? ['packed'] : ['split'];
}

export function devicesOf(c: QemuConfig): DeviceKind[] {
  return [...new Set(c.devices.map((d) => d.kind))];
}

/**
 * Which built-in configuration the conformance grid (device x transport x ring) runs on by
 * default. Variations (event_idx=off, indirect_desc=off, num-queues, mq) run when named with
 * --qemu-config.
 */
export const DEFAULT_GRID: Readonly<Record<string, string>> = {
  'blk/pci/split': 'q35-blk-modern',
  'blk/pci/packed': 'q35-blk-packed',
  'blk/pci-legacy/split': 'q35-blk',
  'blk/mmio/split': 'microvm-blk',
  'blk/mmio/packed': 'microvm-blk-packed',
  'blk/mmio-legacy/split': 'microvm-blk-legacy',
  'net/pci/split': 'q35-net-modern',
  'net/pci/packed': 'q35-net-packed',
  'net/pci-legacy/split': 'q35-net',
  'net/mmio/split': 'microvm-net',
  'net/mmio/packed': 'microvm-net-packed',
  'net/mmio-legacy/split': 'microvm-net-legacy',
};
