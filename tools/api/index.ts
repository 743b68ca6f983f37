/**
 * `pvkit`: the package's front door, the names a driver author reaches for first. Everything
 * else is under the sub-paths, one per layer: pvkit/spec-refs (constants, layouts, GuestPlatform,
 * errors, catalog), pvkit/drivers, pvkit/devices, pvkit/conformance (and pvkit/conformance/vitest).
 *
 *   import { createMachine } from 'pvkit';
 *   const sim = createMachine({ device: 'blk' });   // virtio-blk over virtio-mmio, monitor attached
 *   myDriver(sim.platform);                          // your driver, over the GuestPlatform
 *   console.log(sim.monitor!.violations);            // each with the statement id it breaks
 *
 * Importing it registers pvkit's conformance targets and checks, as pvkit/conformance does.
 */
export {
  createMachine,
  MACHINE_TRANSPORTS,
  attachMonitor,
  Monitor,
  defineCheck,
  registeredChecks,
  expectThat,
  expectEqual,
  expectThrows,
  checkProperty,
  runConformance,
  getTarget,
  registerSimDevice,
  type CreateMachineOptions,
  type MachineTransport,
  type SimulatedMachine,
  type MonitorOptions,
  type Violation,
  type Check,
  type CheckDefinition,
  type RunConfig,
  type RunReport,
  type CheckResult,
  type Target,
} from '../../conformance/index.ts';
export { Machine, type MachineOptions } from '../../device-models/machine/machine.ts';
export type { VirtioDeviceModel } from '../../device-models/virtio/model.ts';
export { VirtioBlkDriver } from '../../drivers/blk/driver.ts';
export { VirtioNetDriver } from '../../drivers/net/driver.ts';
export { discoverMmio, MmioTransport } from '../../drivers/transport/mmio.ts';
export { discoverPci, PciTransport } from '../../drivers/transport/pci.ts';
export type { VirtioTransport } from '../../drivers/transport/transport.ts';
export type { GuestPlatform, PlatformDevice } from '../../spec-refs/platform/platform.ts';
export { DeviceType, F, BlkF, NetF, Mmio, Split, Status, bit, featureSet, hasFeature, featureNames } from '../../spec-refs/abi/virtio.ts';
export { PvkitError, UsageError, DeviceMisbehaviourError, DriverMisbehaviourError, TimeoutError } from '../../spec-refs/errors.ts';
export { catalog, type CatalogEntry } from '../../spec-refs/catalog.ts';
