/**
 * The conformance monitor (conformance/monitor/): watches both sides of every virtio-mmio device
 * and virtio-pci function on a simulated Machine and records each broken statement with its
 * census id. This file keeps the import path; the code lives in one file per spec area:
 *
 * | file                       | holds                                                        | statements                                  |
 * | -------------------------- | ------------------------------------------------------------ | ------------------------------------------- |
 * | monitor/index.ts           | the Monitor class: listeners, platform wrappers, queries     | (the bus listener's decode failures)        |
 * | monitor/types.ts           | Violation, MonitorOptions, ObservedChain                     |                                             |
 * | monitor/state.ts           | per-device state: registers, rings, in-flight buffers        |                                             |
 * | monitor/core.ts            | shared state, violate(), the monitor's muted reads           |                                             |
 * | monitor/status.ts          | device status and feature negotiation                        | status_init.driver.*, features.*            |
 * | monitor/device-config.ts   | device-specific config space accesses                        | mmio.driver.1, .5, blk.driver.4, status_init.driver.8 |
 * | monitor/mmio.ts            | virtio-mmio registers (v2 and legacy)                        | mmio.driver.*, mmio.device.1, .2            |
 * | monitor/pci-layout.ts      | a virtio-pci function's capabilities, BARs, MSI-X            | pci.device.11, .64                          |
 * | monitor/pci.ts             | config space, PCI_CFG window, common cfg, notify, legacy I/O | pci.driver.*                                |
 * | monitor/split-ring.ts      | split virtqueues                                             | split.driver.*, split.device.* (not notifications) |
 * | monitor/packed-ring.ts     | packed virtqueues                                            | packed.*                                    |
 * | monitor/notifications.ts   | available and used buffer notifications, suppression         | status_init.driver.12, split.driver.22, .24, split.device.11, .13 |
 * | monitor/net-coalescing.ts  | virtio-net notification coalescing                           | net.device.109-112                          |
 * | monitor/device-time.ts     | interrupts and device time (the synchronisation points)      | mmio.driver.30, .32, status_init.device.1, .5 |
 *
 * Each file's header lists the statement ids it judges.
 */
export { Monitor, attachMonitor } from './monitor/index.ts';
export type { MonitorOptions, ObservedChain, Violation } from './monitor/types.ts';
