/**
 * The built-in target `sim`: pvkit's own device models on a fresh simulated Machine per device.
 *
 * Device kinds and transports are plugged in by name (registerSimDevice / registerSimTransport),
 * so a new device model or transport joins the conformance run by registering itself here.
 */
import { Machine } from '../../device-models/machine/machine.ts';
import type { VirtioDeviceModel } from '../../device-models/virtio/model.ts';
import { ringLayout } from '../../device-models/virtio/core.ts';
import type { RingLayout, TransportName } from '../check.ts';
import { registerTarget, type DeviceOptions, type DeviceUnderTest, type Target } from '../target.ts';

export interface SimDeviceKind {
  readonly name: string;
  /** Test-only models (e.g. echo) run only when named with --device. */
  readonly hidden?: boolean;
  /** Make a device model on `machine` (its backing store included). */
  create(machine: Machine, opts: DeviceOptions): VirtioDeviceModel;
  /** Features a default instance offers (for applicability filtering). */
  readonly offeredFeatures: bigint;
}

export interface SimTransport {
  readonly name: TransportName;
  /** Attach `model` to `machine` over this transport; returns the device's location and device-side internals. */
  attach(machine: Machine, model: VirtioDeviceModel, opts: DeviceOptions): { location: DeviceUnderTest['location']; internals: Record<string, unknown> };
}

const kinds = new Map<string, SimDeviceKind>();
const transports = new Map<TransportName, SimTransport>();
const rings = new Set<RingLayout>(['split']);

export function registerSimDevice(k: SimDeviceKind): void {
  kinds.set(k.name, k);
}

export function registerSimTransport(t: SimTransport): void {
  transports.set(t.name, t);
}

/** Declare that the simulated core handles this ring layout (split always; packed once implemented). */
export function registerSimRing(r: RingLayout): void {
  rings.add(r);
}

/** Expected failures of the built-in devices: check id -> reason. Each entry is a known bug, reported; the run fails when one starts passing (remove it then). */
export const SIM_XFAIL: Record<string, string> = {
};

export const simTarget: Target = {
  name: 'sim',
  description: "pvkit's built-in device models on the simulated machine",
  get devices() {
    return [...kinds.keys()];
  },
  get defaultDevices() {
    return [...kinds.values()].filter((k) => !k.hidden).map((k) => k.name);
  },
  get transports() {
    return [...transports.keys()];
  },
  get defaultTransports() {
    // every interface the built-in devices have, legacy ones included: the main job checks them all
    return [...transports.keys()];
  },
  get rings() {
    // the packed ring joins as soon as the core has an implementation registered
    return ringLayout('packed') ? [...new Set([...rings, 'packed' as const])] : [...rings];
  },
  xfail: SIM_XFAIL,
  runsDriverChecks: true,
  offeredFeatures(device: string): bigint | undefined {
    return kinds.get(device)?.offeredFeatures;
  },
  newDevice(device: string, transport: TransportName, opts: DeviceOptions = {}): DeviceUnderTest {
    const k = kinds.get(device);
    const t = transports.get(transport);
    if (!k || !t) throw new Error(`sim target: no ${!k ? `device ${device}` : `transport ${transport}`}`);
    const machine = new Machine({ ram: [{ base: 0, size: 16 << 20, name: 'ram-low' }, { base: 0x1_0000_0000, size: 1 << 20, name: 'ram-high' }] });
    let model = k.create(machine, opts);
    // driver-side checks may swap in a device that behaves in a chosen way (params.__wrap)
    const wrap = opts.params?.['__wrap'];
    if (typeof wrap === 'function') model = Object.assign(Object.create(model) as VirtioDeviceModel, (wrap as (m: VirtioDeviceModel) => Partial<VirtioDeviceModel>)(model));
    const { location, internals } = t.attach(machine, model, opts);
    const ram = machine.mem.regions.map((r) => ({ base: r.base, size: r.size }));
    return { platform: machine.platform, transport, location, machine, ram, dmaOutsideRam: 'fault', internals: { model, ...internals }, dispose() {} };
  },
};

registerTarget(simTarget);
