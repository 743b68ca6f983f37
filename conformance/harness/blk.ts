/**
 * A simulated machine with virtio-blk devices attached, for the demo, the benchmark and tests.
 * The transport and the ring layout are parameters, so a scenario written once runs over every
 * combination that is implemented (virtio-pci and packed rings plug in here when they land).
 */
import { Machine, type MachineOptions } from '../../device-models/machine/machine.ts';
import { attachVirtioMmio } from '../../device-models/virtio/mmio.ts';
import type { VirtioCore } from '../../device-models/virtio/core.ts';
import { discoverMmio } from '../../drivers/transport/mmio.ts';
import { attachVirtioPci } from '../../device-models/virtio/pci.ts';
import { discoverPci } from '../../drivers/transport/pci.ts';
import type { VirtioTransport } from '../../drivers/transport/transport.ts';
import { F, bit } from '../../spec-refs/abi/virtio.ts';
import { UsageError } from '../../spec-refs/errors.ts';
import { VirtioBlkDevice, type VirtioBlkOptions } from '../../device-models/blk/device.ts';

/**
 * mmio: virtio-mmio version 2; mmio-legacy: version 1; pci: a modern virtio-pci function;
 * pci-transitional: a transitional virtio-pci function driven through its legacy interface
 * (a legacy driver); pci-transitional-modern: the same device driven by a modern driver.
 */
export type BlkTransportKind = 'mmio' | 'mmio-legacy' | 'pci' | 'pci-transitional' | 'pci-transitional-modern';
export type BlkRingKind = 'split' | 'packed';
export const BLK_TRANSPORTS: readonly BlkTransportKind[] = ['mmio', 'mmio-legacy', 'pci', 'pci-transitional', 'pci-transitional-modern'];

/** Whether a transport kind drives the device through a legacy interface (no VERSION_1, no packed ring). */
export function isLegacyTransport(t: BlkTransportKind): boolean {
  return t === 'mmio-legacy' || t === 'pci-transitional';
}
export const BLK_RINGS: readonly BlkRingKind[] = ['split', 'packed'];

export interface SimBlkOptions {
  readonly transport?: BlkTransportKind;
  readonly ring?: BlkRingKind;
  /** Device options (the backend is required). */
  readonly device: VirtioBlkOptions;
  readonly machine?: MachineOptions;
  /** Delay between a notification and the device's work (virtual ns). Default 0. */
  readonly notifyLatencyNs?: number;
  /** Ring features the device offers (default INDIRECT_DESC | EVENT_IDX, plus RING_PACKED for ring 'packed'). */
  readonly ringFeatures?: bigint;
}

export interface SimBlk {
  readonly machine: Machine;
  readonly device: VirtioBlkDevice;
  readonly core: VirtioCore;
  /** The driver's view: the transport found by probing the platform. */
  readonly transport: VirtioTransport;
  readonly transportKind: BlkTransportKind;
  readonly ring: BlkRingKind;
}

export function simBlk(opts: SimBlkOptions): SimBlk {
  const transportKind = opts.transport ?? 'mmio';
  const ring = opts.ring ?? 'split';
  let ringFeatures = opts.ringFeatures ?? bit(F.INDIRECT_DESC) | bit(F.EVENT_IDX);
  if (ring === 'packed') ringFeatures |= bit(F.RING_PACKED);
  const legacy = isLegacyTransport(transportKind);
  if (ring === 'packed' && legacy) {
    throw new UsageError('usage.blk.ring', 'the packed ring needs VIRTIO_F_VERSION_1, which a legacy interface cannot negotiate', { expected: 'split with a legacy transport', seen: `${ring} over ${transportKind}` });
  }
  if (transportKind !== 'mmio-legacy') ringFeatures |= bit(F.VERSION_1);
  const machine = new Machine(opts.machine);
  const device = new VirtioBlkDevice({ ...opts.device, ringFeatures });
  if (transportKind.startsWith('pci')) {
    const mode = transportKind === 'pci' ? 'modern' : 'transitional';
    const attachedPci = attachVirtioPci(machine, device, { mode, notifyLatencyNs: opts.notifyLatencyNs ?? 0 });
    const core = transportKind === 'pci-transitional' ? attachedPci.transport.legacyCore! : attachedPci.core;
    const foundPci = discoverPci(machine.platform, { legacy: transportKind === 'pci-transitional' });
    const t = foundPci.transports.find((x) => x.addr.dev === attachedPci.fn.dev);
    if (!t) throw new UsageError('usage.blk.probe', 'virtio-pci device not found by enumeration', { seen: foundPci.skipped.map((s) => s.reason).join('; ') });
    return { machine, device, core, transport: t, transportKind, ring };
  }
  const attached = attachVirtioMmio(machine, device, { legacy, notifyLatencyNs: opts.notifyLatencyNs ?? 0 });
  const found = discoverMmio(machine.platform);
  const transport = found.transports.find((t) => t.vectors[0] === attached.vector);
  if (!transport) throw new UsageError('usage.blk.probe', 'virtio-mmio device not found by probing', { seen: found.skipped.map((s) => s.detail).join('; ') });
  return { machine, device, core: attached.core, transport, transportKind, ring };
}
