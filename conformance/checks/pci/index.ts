/**
 * virtio-pci (transport-pci.tex): the device's PCI identity, capabilities, common configuration,
 * notification and ISR structures, PCI_CFG window and MSI-X vector handling; the driver's matching,
 * capability parsing, register discipline, notifications, vector verification and queue reset.
 * One file per section of the spec (its header lists the check ids and the statement ids they
 * cite); raw.ts (the raw driver device-side checks use) and watch.ts (bus watching for driver-side
 * checks) hold what they share. Importing this file registers every virtio-pci check.
 */
import './discovery.ts';
import './capabilities.ts';
import './common-cfg.ts';
import './notify.ts';
import './isr.ts';
import './cfg-window.ts';
import './msix.ts';
