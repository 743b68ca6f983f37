/**
 * `createMachine`: a simulated machine with one virtio device attached and the conformance monitor
 * watching it; the starting point for a driver written outside pvkit. The driver gets only
 * `platform` (a GuestPlatform) and finds the device as it would on hardware: a virtio-mmio window
 * in `platform.devices()`, or a function on the PCI bus. Nothing has probed the device yet, so the
 * monitor sees the driver's whole initialisation.
 *
 *   const sim = createMachine({ device: 'blk', transport: 'mmio' });
 *   myDriver(sim.platform, sim.platform.devices()[0]!);
 *   assert.deepEqual(sim.monitor!.violations, []);
 */
import { Machine, type MachineOptions } from '../../device-models/machine/machine.ts';
import { attachVirtioMmio } from '../../device-models/virtio/mmio.ts';
import { attachVirtioPci } from '../../device-models/virtio/pci.ts';
import type { VirtioCore } from '../../device-models/virtio/core.ts';
import type { VirtioDeviceModel } from '../../device-models/virtio/model.ts';
import { EchoModel } from '../../device-models/virtio/testing/echo.ts';
import { RamDisk } from '../../device-models/blk/backend.ts';
import { VirtioBlkDevice, type VirtioBlkOptions } from '../../device-models/blk/device.ts';
import type { GuestPlatform } from '../../spec-refs/platform/platform.ts';
import { F, bit } from '../../spec-refs/abi/virtio.ts';
import { UsageError } from '../../spec-refs/errors.ts';
import { attachMonitor, type Monitor, type MonitorOptions } from '../monitor.ts';

/**
 * mmio: virtio-mmio version 2; mmio-legacy: version 1; pci: a modern virtio-pci function;
 * pci-transitional: a transitional function (modern capabilities and the legacy I/O BAR).
 */
export type MachineTransport = 'mmio' | 'mmio-legacy' | 'pci' | 'pci-transitional';
export const MACHINE_TRANSPORTS: readonly MachineTransport[] = ['mmio', 'mmio-legacy', 'pci', 'pci-transitional'];

export interface CreateMachineOptions {
  /**
   * The device: 'blk' (virtio-blk on a RAM disk), 'echo' (a test device, type 0xec, that copies
   * each chain's readable bytes into its writable buffers), or your own device model. Default 'blk'.
   */
  readonly device?: 'blk' | 'echo' | VirtioDeviceModel;
  /** Default 'mmio'. */
  readonly transport?: MachineTransport;
  /** For 'blk' and 'echo': also offer VIRTIO_F_RING_PACKED. Default 'split'. */
  readonly ring?: 'split' | 'packed';
  /** For 'blk': disk size in bytes (default 1 MiB) and any other device option. */
  readonly diskBytes?: number;
  readonly blk?: Partial<VirtioBlkOptions>;
  /** Attach the conformance monitor (default true), with these options when an object. */
  readonly monitor?: boolean | MonitorOptions;
  /** Delay between a notification and the device's work, in virtual ns (default 0). */
  readonly notifyLatencyNs?: number;
  readonly machine?: MachineOptions;
}

export interface SimulatedMachine {
  readonly machine: Machine;
  /** What a driver sees. */
  readonly platform: GuestPlatform;
  readonly device: VirtioDeviceModel;
  /** The device side's virtio core (status, features, queues as the device holds them). */
  readonly core: VirtioCore;
  readonly transport: MachineTransport;
  /** virtio-mmio: the register window and the interrupt vector its line is routed to. */
  readonly mmio: { readonly base: number; readonly vector: number } | undefined;
  /** virtio-pci: the function's address. */
  readonly pci: { readonly bus: number; readonly device: number; readonly function: number } | undefined;
  /** The conformance monitor, unless `monitor: false`. */
  readonly monitor: Monitor | undefined;
}

export function createMachine(opts: CreateMachineOptions = {}): SimulatedMachine {
  const transport = opts.transport ?? 'mmio';
  if (!MACHINE_TRANSPORTS.includes(transport)) {
    throw new UsageError('usage.machine.transport', `unknown transport ${JSON.stringify(transport)}`, { expected: MACHINE_TRANSPORTS.join(' | '), seen: String(transport) });
  }
  const ring = opts.ring ?? 'split';
  if (ring === 'packed' && transport === 'mmio-legacy') {
    throw new UsageError('usage.machine.ring', 'the packed ring needs VIRTIO_F_VERSION_1, which legacy virtio-mmio cannot negotiate', { expected: 'split', seen: 'packed' });
  }
  let ringFeatures = bit(F.INDIRECT_DESC) | bit(F.EVENT_IDX) | (transport === 'mmio-legacy' ? 0n : bit(F.VERSION_1));
  if (ring === 'packed') ringFeatures |= bit(F.RING_PACKED);
  const machine = new Machine(opts.machine);
  const spec = opts.device ?? 'blk';
  const device: VirtioDeviceModel =
    spec === 'blk' ? new VirtioBlkDevice({ backend: new RamDisk(opts.diskBytes ?? 1 << 20), ringFeatures, ...opts.blk }) : spec === 'echo' ? new EchoModel({ features: ringFeatures }) : spec;
  const notifyLatencyNs = opts.notifyLatencyNs ?? 0;
  let core: VirtioCore;
  let mmio: SimulatedMachine['mmio'];
  let pci: SimulatedMachine['pci'];
  if (transport === 'pci' || transport === 'pci-transitional') {
    const a = attachVirtioPci(machine, device, { mode: transport === 'pci' ? 'modern' : 'transitional', notifyLatencyNs });
    core = a.core;
    pci = { bus: a.fn.bus, device: a.fn.dev, function: a.fn.fn };
  } else {
    const a = attachVirtioMmio(machine, device, { legacy: transport === 'mmio-legacy', notifyLatencyNs });
    core = a.core;
    mmio = { base: a.base, vector: a.vector };
  }
  const monitor = opts.monitor === false ? undefined : attachMonitor(machine, typeof opts.monitor === 'object' ? opts.monitor : undefined);
  return { machine, platform: machine.platform, device, core, transport, mmio, pci, monitor };
}
