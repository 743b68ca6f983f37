/**
 * `pvkit/drivers`: the reference guest drivers and the pieces to build one: the virtio transports
 * (virtio-mmio, virtio-pci), device initialisation and split / packed virtqueues, the virtio-blk
 * and virtio-net drivers, the paravirtual-MMU cr3-cache client, and the QEMU qtest platform.
 * Drivers reach hardware only through a GuestPlatform (re-exported here from pvkit/spec-refs).
 */
export * from './transport/transport.ts';
export * from './transport/mmio.ts';
export * from './transport/pci.ts';
export * from './transport/pci-bus.ts';
export * from './core/device.ts';
export * from './core/virtqueue.ts';
export * from './core/split.ts';
export * from './core/packed.ts';
export * from './blk/driver.ts';
export * from './net/driver.ts';
export * from './net/stack.ts';
export * from './paravirt/cr3-cache.ts';
export * from './paravirt/kernel.ts';
export * from './paravirt/workloads.ts';
export { QtestPlatform, type QtestPlatformOptions, type QtestPciConfig } from './platform/qtest/platform.ts';
export { QtestClient, QtestError } from './platform/qtest/client.ts';
export type { AccessSize, CpuServices, DmaAllocator, GuestPlatform, Interrupts, PciInfo, PlatformDevice } from '../spec-refs/platform/platform.ts';
export type { GuestMemoryAccess } from '../spec-refs/platform/guest-memory.ts';
