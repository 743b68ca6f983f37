/**
 * A simulated machine with virtio-blk devices attached, for the demo, the benchmark and tests.
 * The transport and the ring layout are parameters, so a scenario written once runs over every
 * combination that is implemented (virtio-pci and packed rings plug in here when they land).
 */
import { Machine, type MachineOptions } from '../machine/machine.ts';
import { attachVirtioMmio } from '../virtio/mmio.ts';
import type { VirtioCore } from '../virtio/core.ts';
import { discoverMmio } from '../../drivers/transport/mmio.ts';
import type { VirtioTransport } from '../../drivers/transport/transport.ts';
import { F, bit } from '../../spec-refs/virtio.ts';
import { UsageError } from '../../spec-refs/errors.ts';
import { VirtioBlkDevice, type VirtioBlkOptions } from './device.ts';

export type BlkTransportKind = 'mmio' | 'mmio-legacy';
export type BlkRingKind = 'split' | 'packed';
export const BLK_TRANSPORTS: readonly BlkTransportKind[] = ['mmio', 'mmio-legacy'];
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
  const legacy = transportKind === 'mmio-legacy';
  if (!legacy) ringFeatures |= bit(F.VERSION_1);
  const machine = new Machine(opts.machine);
  const device = new VirtioBlkDevice({ ...opts.device, ringFeatures });
  const attached = attachVirtioMmio(machine, device, { legacy, notifyLatencyNs: opts.notifyLatencyNs ?? 0 });
  if (ring === 'packed' && (attached.core.deviceFeatures & bit(F.RING_PACKED)) === 0n) {
    throw new UsageError('usage.blk.ring', 'the packed ring is not implemented yet', { expected: 'split', seen: ring });
  }
  const found = discoverMmio(machine.platform);
  const transport = found.transports.find((t) => t.vectors[0] === attached.vector);
  if (!transport) throw new UsageError('usage.blk.probe', 'virtio-mmio device not found by probing', { seen: found.skipped.map((s) => s.detail).join('; ') });
  return { machine, device, core: attached.core, transport, transportKind, ring };
}
