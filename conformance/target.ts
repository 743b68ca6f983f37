/**
 * Conformance targets: what a check runs against.
 *
 * A target knows which devices, transports and ring layouts it can provide and makes a fresh
 * device under test on demand: a GuestPlatform plus where the device sits on it. The built-in
 * target `sim` (conformance/targets/sim.ts) builds a simulated Machine with pvkit's own device
 * models; another target (QEMU over qtest) implements the same interface and records its
 * expected failures in `xfail`.
 */
import type { GuestPlatform, PlatformDevice } from '../spec-refs/platform/platform.ts';
import type { Machine } from '../device-models/machine/machine.ts';

/** Ring layouts and transports a configuration names (checks restrict themselves to some of them). */
export type RingLayout = 'split' | 'packed';
export type TransportName = 'mmio' | 'mmio-legacy' | 'pci' | 'pci-legacy';
export const RING_LAYOUTS: readonly RingLayout[] = ['split', 'packed'];
export const TRANSPORTS: readonly TransportName[] = ['mmio', 'mmio-legacy', 'pci', 'pci-legacy'];

export interface DeviceOptions {
  /** Queue size maximum the device should offer (where the target lets us choose). */
  readonly queueMaxSize?: number;
  /** Restrict the features the device offers to these (where the target lets us choose). */
  readonly offerMask?: bigint;
  /** Core feature bits to offer in addition to the defaults (e.g. RING_RESET), where the target lets us choose. */
  readonly extraFeatures?: bigint;
  /** Device-kind specific knobs (e.g. blk: capacitySectors, readOnly). */
  readonly params?: Readonly<Record<string, unknown>>;
}

/** A freshly reset device, ready for a driver (reference or hostile) to initialise. */
export interface DeviceUnderTest {
  readonly platform: GuestPlatform;
  readonly transport: TransportName;
  /** Where the device is: the firmware description of a virtio-mmio device (PCI: found by enumeration). */
  readonly location: PlatformDevice | { readonly kind: 'pci'; readonly bus: number; readonly dev: number; readonly fn: number; readonly name: string };
  /** Guest RAM (guest-physical ranges), where the target knows it: checks pick addresses outside it from this. */
  readonly ram?: readonly { readonly base: number; readonly size: number }[];
  /**
   * What device DMA to an address outside RAM does on this target: 'fault' (the access fails and the
   * device sees the error: pvkit's Machine) or 'discard' (the bus takes the bytes and drops them, reads
   * give all ones: QEMU's unassigned address space, via address_space_map's bounce buffer).
   */
  readonly dmaOutsideRam?: 'fault' | 'discard';
  /** Simulated targets only: the machine, for white-box observation (monitor, irq lines). */
  readonly machine?: Machine;
  /** Simulated targets only: the device-side objects (model, transport) for white-box checks. */
  readonly internals?: Readonly<Record<string, unknown>>;
  dispose(): void;
}

export interface Target {
  readonly name: string;
  readonly description: string;
  readonly devices: readonly string[];
  /** Devices a run covers when --device is not given (default: all of `devices`). */
  readonly defaultDevices?: readonly string[];
  readonly transports: readonly TransportName[];
  /** Transports a run covers when --transport is not given (default: all of `transports`). */
  readonly defaultTransports?: readonly TransportName[];
  readonly rings: readonly RingLayout[];
  /** Expected failures of this target: check id -> the recorded reason (for every configuration; see xfailFor). */
  readonly xfail: Readonly<Record<string, string>>;
  /**
   * Expected failures in one configuration (device, transport, ring), when they differ between
   * configurations (QEMU: per machine and device properties). The runner asks this, with the
   * configuration of the result, before falling back to `xfail`.
   */
  xfailFor?(cfg: { readonly device: string; readonly transport: TransportName; readonly ring: RingLayout }): Readonly<Record<string, string>>;
  /** Whether driver-side checks run here (they need pvkit's simulated checking devices). */
  readonly runsDriverChecks: boolean;
  /** Features the device offers on this target (for applicability), or undefined if unknown without starting it. */
  offeredFeatures?(device: string): bigint | undefined;
  /** `ring`: the layout the check will use (a target whose devices are configured per layout, like QEMU's packed=on, needs it). */
  newDevice(device: string, transport: TransportName, opts?: DeviceOptions, ring?: RingLayout): DeviceUnderTest;
}

/** What a check's run function receives. */
export interface TargetContext {
  readonly target: Target;
  readonly device: string;
  readonly transport: TransportName;
  readonly ring: RingLayout;
  /** Seed for this check (derived from the run's --seed and the check id). */
  readonly seed: number;
  /** Property runs (fast-check numRuns). */
  readonly runs: number;
  /** fast-check replay path (from a failure report), when replaying. */
  readonly path?: string;
  /** A fresh device under test on the target. Disposed by the runner after the check if not before. */
  newDevice(opts?: DeviceOptions): DeviceUnderTest;
  /** Free-form note kept with the result (shown with --verbose and in JSON). */
  note(msg: string): void;
}

const targets = new Map<string, Target>();

export function registerTarget(t: Target): void {
  targets.set(t.name, t);
}

export function getTarget(name: string): Target | undefined {
  return targets.get(name);
}

export function targetNames(): string[] {
  return [...targets.keys()];
}
