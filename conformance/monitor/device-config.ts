/**
 * Accesses to the device-specific configuration space (virtio-mmio, virtio-pci device cfg and the
 * legacy I/O block all end here): its size per device type, access widths, and when the driver
 * may read or write it.
 *
 * Spec: Device Configuration Space; MMIO Device Register Layout; Block Device / Device Initialization.
 * Statements: mmio.driver.1 (beyond the config space), mmio.driver.5, blk.driver.4, status_init.driver.8.
 */
import type { BusAccess } from '../../device-models/machine/bus.ts';
import { Status, DeviceType, statusNames } from '../../spec-refs/abi/virtio.ts';
import type { MonitorCore } from './core.ts';
import type { DevState } from './state.ts';

/** Bytes of device-specific config space each device type defines (blk: struct virtio_blk_config). */
const CONFIG_SIZE: Record<number, number> = { [DeviceType.BLOCK]: 96 };

export function onConfig(m: MonitorCore, d: DevState, a: BusAccess, off: number): void {
  const limit = d.deviceId !== undefined ? CONFIG_SIZE[d.deviceId] : undefined;
  if (d.kind === 'mmio' && limit !== undefined && off + a.size > limit) m.violate(d, 'mmio.driver.1', 'driver', `config ${a.kind} at offset ${off} beyond the ${limit} bytes the device type defines`, `< ${limit}`, `${off}+${a.size}`);
  // virtio-blk writeback (config offset 32) is meaningful only once FEATURES_OK is set
  if (a.kind === 'read' && d.deviceId === DeviceType.BLOCK && off <= 32 && off + a.size > 32 && !d.featuresOkWritten && d.version !== 1) {
    m.violate(d, 'blk.driver.4', 'driver', 'driver read the writeback config field before FEATURES_OK', 'FEATURES_OK first', statusNames(d.status));
  }
  if (d.kind === 'mmio' && (a.size === 8 || off % a.size !== 0)) m.violate(d, 'mmio.driver.5', 'driver', `config space ${a.kind} of ${a.size} bytes at offset ${off}`, 'aligned 1-, 2- or 4-byte accesses', `${a.size} bytes at +${off}`);
  if (a.kind === 'write' && d.version !== 1 && (d.status & Status.DRIVER) && !(d.status & Status.FEATURES_OK) && !d.featuresOkWritten) {
    m.violate(d, 'status_init.driver.8', 'driver', 'driver wrote device config during feature negotiation', 'no config writes before FEATURES_OK', `write at +${off} with status ${statusNames(d.status)}`);
  }
}
