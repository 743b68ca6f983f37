/**
 * The conformance monitor (conformance/monitor/): watches both sides of every virtio-mmio device
 * and virtio-pci function on a simulated Machine and records each broken statement with its
 * census id. This file keeps the import path; the code lives in one file per spec area:
 *
 *   monitor/index.ts           the Monitor class: listeners, platform wrappers, queries
 *   monitor/types.ts           Violation, MonitorOptions, ObservedChain
 *   monitor/state.ts           per-device state: registers, rings, in-flight buffers
 *   monitor/core.ts            shared state, violate(), the monitor's muted reads
 *   monitor/status.ts          device status and feature negotiation (status_init.*, features.*)
 *   monitor/device-config.ts   device-specific config space (mmio.driver.5, blk.driver.4, ...)
 *   monitor/mmio.ts            virtio-mmio registers, v2 and legacy (mmio.*)
 *   monitor/pci-layout.ts      a virtio-pci function's capabilities, BARs, MSI-X (pci.device.*)
 *   monitor/pci.ts             config space and PCI_CFG, common cfg, notify, legacy I/O (pci.driver.*)
 *   monitor/split-ring.ts      split virtqueues (split.*, notifications aside)
 *   monitor/packed-ring.ts     packed virtqueues (packed.*)
 *   monitor/notifications.ts   available and used buffer notifications and their suppression
 *   monitor/net-coalescing.ts  virtio-net notification coalescing (net.device.109-112)
 *   monitor/device-time.ts     interrupts and device time, the synchronisation points
 *
 * Each file's header lists the statement ids it judges.
 */
export { Monitor, attachMonitor } from './monitor/index.ts';
export type { MonitorOptions, ObservedChain, Violation } from './monitor/types.ts';
