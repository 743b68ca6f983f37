/**
 * `pvkit/devices`: the hardware side. The simulated machine (guest memory, bus, PCI host, vCPU
 * with VM exits, interrupts, scheduler, cost profiles, traces), the device side of virtio (the
 * device-model interface, the core, the virtio-mmio and virtio-pci transports), the virtio-blk
 * and virtio-net devices with their backends, an echo test device, and the hypervisor's MMU.
 */
export * from './machine/index.ts';
export * from './machine/pci.ts';
export * from './machine/tlb.ts';
export * from './machine/trace.ts';
export * from './virtio/model.ts';
export * from './virtio/core.ts';
export * from './virtio/mmio.ts';
export * from './virtio/pci.ts';
export * from './virtio/chain-io.ts';
export * from './virtio/testing/echo.ts';
export * from './blk/backend.ts';
export * from './blk/device.ts';
export * from './blk/zones.ts';
export * from './net/device.ts';
export * from './net/switch.ts';
export * from './net/host-peer.ts';
export * from './net/pcap.ts';
export * from './hypervisor/hypervisor.ts';
export * from './hypervisor/shadow.ts';
export * from './hypervisor/hypercalls.ts';
