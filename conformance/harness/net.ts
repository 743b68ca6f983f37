/**
 * Test and benchmark bed for virtio-net: machines with virtio-net NICs on an L2 switch, each NIC
 * driven by the reference driver over a chosen transport, plus host peers and pcap taps.
 *
 * Transports: virtio-mmio (v2) and legacy virtio-mmio (v1) here; virtio-pci when a PCI attach
 * helper is registered with `registerNetTransport` (the pci branch adds it).
 */
import { Machine } from '../../device-models/machine/machine.ts';
import { Scheduler } from '../../device-models/machine/scheduler.ts';
import { attachVirtioMmio } from '../../device-models/virtio/mmio.ts';
import { ringLayout, type VirtioCore } from '../../device-models/virtio/core.ts';
import { F, bit } from '../../spec-refs/abi/virtio.ts';
import { BusError, UsageError, hex } from '../../spec-refs/errors.ts';
import type { VirtioDeviceModel } from '../../device-models/virtio/model.ts';
import { MmioTransport } from '../../drivers/transport/mmio.ts';
import { attachVirtioPci } from '../../device-models/virtio/pci.ts';
import { discoverPci } from '../../drivers/transport/pci.ts';
import type { VirtioTransport } from '../../drivers/transport/transport.ts';
import { NET_DRIVER_FEATURES, VirtioNetDriver, type NetDriverOptions } from '../../drivers/net/driver.ts';
import { VirtioNetDevice, type NetDeviceOptions } from '../../device-models/net/device.ts';
import { L2Switch, plug, type SwitchPort } from '../../device-models/net/switch.ts';

/** Puts a device model on a machine and finds the driver-side transport for it. */
export interface NetTransportKind {
  readonly name: string;
  attach(m: Machine, model: VirtioDeviceModel): { core: VirtioCore; transport: VirtioTransport };
}

function mmioKind(legacy: boolean): NetTransportKind {
  return {
    name: legacy ? 'mmio-legacy' : 'mmio',
    attach(m, model) {
      const a = attachVirtioMmio(m, model, { legacy, notifyLatencyNs: 200 });
      const pd = m.platform.devices().find((d) => d.base === a.base);
      const r = pd ? MmioTransport.probe(m.platform, pd) : null;
      if (!r || !r.ok) throw new BusError('testbed.mmio_probe', 'virtio-mmio device not found by the driver', { seen: pd ? `probe failed at ${hex(pd.base)}` : 'no device at the attached base' });
      return { core: a.core, transport: r.transport };
    },
  };
}

/** virtio-pci: 'pci' a modern function; 'pci-legacy' a transitional one driven through its legacy interface. */
function pciKind(legacy: boolean): NetTransportKind {
  return {
    name: legacy ? 'pci-legacy' : 'pci',
    attach(m, model) {
      const a = attachVirtioPci(m, model, { mode: legacy ? 'transitional' : 'modern', notifyLatencyNs: 200 });
      const core = legacy ? a.transport.legacyCore! : a.core;
      const t = discoverPci(m.platform, { legacy }).transports.find((x) => x.addr.dev === a.fn.dev && x.addr.fn === a.fn.fn);
      if (!t) throw new BusError('testbed.pci_probe', 'virtio-pci device not found by enumeration', { expected: `function ${a.fn.dev}.${a.fn.fn}` });
      return { core, transport: t };
    },
  };
}

const kinds = new Map<string, NetTransportKind>([
  ['mmio', mmioKind(false)],
  ['mmio-legacy', mmioKind(true)],
  ['pci', pciKind(false)],
  ['pci-legacy', pciKind(true)],
]);

export function registerNetTransport(k: NetTransportKind): void {
  kinds.set(k.name, k);
}

export function netTransports(): string[] {
  return [...kinds.keys()];
}

export function netTransport(name: string): NetTransportKind {
  const k = kinds.get(name);
  if (!k) throw new UsageError('usage.net.transport', `unknown transport ${name}; known: ${netTransports().join(', ')}`);
  return k;
}

/** Ring layouts the core implements (split always; packed once registered). */
export function netRings(): ('split' | 'packed')[] {
  return ringLayout('packed') ? ['split', 'packed'] : ['split'];
}

/** Every transport x ring combination available, as [transport, ring] pairs. */
export function netConfigs(): [string, 'split' | 'packed'][] {
  const out: [string, 'split' | 'packed'][] = [];
  for (const t of netTransports()) for (const r of netRings()) if (!(r === 'packed' && t.endsWith('legacy'))) out.push([t, r]);
  return out;
}

export interface Guest {
  readonly machine: Machine;
  readonly device: VirtioNetDevice;
  readonly core: VirtioCore;
  readonly transport: VirtioTransport;
  readonly driver: VirtioNetDriver;
  readonly port: SwitchPort;
}

export interface GuestOptions {
  transport?: string;
  device?: NetDeviceOptions;
  driver?: NetDriverOptions;
  /** Put the NIC on this machine instead of a new one. */
  machine?: Machine;
  /** RAM of a new machine in MiB (default 32, one region at 0). */
  ramMiB?: number;
  /** Ring layout (default split; packed when the core has it). */
  ring?: 'split' | 'packed';
}

export class NetTestbed {
  readonly scheduler: Scheduler;
  readonly sw = new L2Switch();
  readonly guests: Guest[] = [];

  constructor(seed = 1) {
    this.scheduler = new Scheduler({ seed });
  }

  /** A new machine (sharing the testbed's clock) with one virtio-net NIC on the switch, driven by the reference driver. */
  addGuest(opts: GuestOptions = {}): Guest {
    const machine = opts.machine ?? new Machine({ sharedScheduler: this.scheduler, ram: [{ base: 0, size: (opts.ramMiB ?? 32) << 20, name: 'ram' }] });
    const n = this.guests.length + 1;
    const device = new VirtioNetDevice({ name: `nic${n}`, mac: new Uint8Array([0x52, 0x54, 0x00, 0x00, 0x00, n]), ...opts.device });
    const port = plug(this.sw, device);
    const { core, transport } = netTransport(opts.transport ?? 'mmio').attach(machine, device);
    const ring = opts.ring ?? 'split';
    const base = opts.driver?.features ?? NET_DRIVER_FEATURES;
    const features = ring === 'packed' ? base | bit(F.RING_PACKED) : base & ~bit(F.RING_PACKED);
    const driver = VirtioNetDriver.init(machine.platform, transport, { ...opts.driver, features });
    const g = { machine, device, core, transport, driver, port };
    this.guests.push(g);
    return g;
  }

  /** Let every guest service its NIC for `ns` (in small steps, so they interleave). */
  runAll(ns: number, stepNs = 20_000): void {
    const end = this.scheduler.now + ns;
    while (this.scheduler.now < end) this.step(stepNs);
  }

  /** One round: each guest services interrupts for `stepNs`. */
  step(stepNs = 20_000): void {
    for (const g of this.guests) g.driver.run(stepNs / Math.max(1, this.guests.length));
  }
}
