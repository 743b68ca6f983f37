/**
 * The state every rule shares: the machine watched, the options, the violations recorded so far,
 * the devices found (virtio-mmio by base address, virtio-pci by ECAM address) and the monitor's own
 * muted reads. The rule files take it as their first argument; the Monitor class (index.ts) owns
 * one and wires it to the machine.
 */
import type { Machine } from '../../device-models/machine/machine.ts';
import type { MonitorOptions, Violation } from './types.ts';
import type { DevState } from './state.ts';

export class MonitorCore {
  readonly violations: Violation[] = [];
  /** Violations seen (including those past `max` or ignored ones are not counted). */
  count = 0;
  readonly devs = new Map<number, DevState>();
  /** virtio-pci functions, by ECAM address of their config space. */
  readonly pciDevs = new Map<number, DevState>();
  /** BAR windows already resolved to their function and BAR index (key: space:name:base). */
  readonly winCache = new Map<string, { d: DevState; bar: number } | null>();
  /** Last value written to the 0xCF8 configuration address port. */
  cf8 = 0;
  seq = 0;
  readonly ignore: Set<string>;
  readonly max: number;
  readonly ringsOn: boolean;
  readonly snapBytes: number;
  readonly onChain: MonitorOptions['onChain'];
  /** What the monitor observed (to show a clean run really watched something). */
  readonly stats = { accesses: 0, chains: 0, used: 0, irqs: 0 };
  /** Every device status value a driver wrote, in order, on any transport (for checks of the init sequence). */
  readonly statusLog: { readonly device: string; readonly value: number }[] = [];
  /** Set while the monitor makes its own accesses: its bus listener ignores them. */
  muted = false;
  active = true;

  constructor(readonly machine: Machine, opts: MonitorOptions = {}) {
    this.ignore = new Set(opts.ignore ?? []);
    this.max = opts.max ?? 1000;
    this.ringsOn = opts.rings ?? true;
    this.snapBytes = opts.snapshotBytes ?? 512;
    this.onChain = opts.onChain;
  }

  violate(d: DevState | undefined, statement: string, side: 'driver' | 'device', message: string, expected?: string, seen?: string): void {
    if (this.ignore.has(statement)) return;
    this.count++;
    if (this.violations.length >= this.max) return;
    this.violations.push({ statement, side, device: d?.name ?? '?', message, ...(expected !== undefined ? { expected } : {}), ...(seen !== undefined ? { seen } : {}), at: this.machine.scheduler.now });
  }

  peek(d: DevState, off: number): number {
    this.muted = true;
    try {
      return this.machine.bus.mmio.read(d.pd!.base + off, 4);
    } finally {
      this.muted = false;
    }
  }

  /** Side-effect-free configuration-space read through ECAM (muted). */
  cfgPeek(cfg: number, reg: number, size: 1 | 2 | 4): number {
    this.muted = true;
    try {
      return this.machine.bus.mmio.read(cfg + reg, size) >>> 0;
    } finally {
      this.muted = false;
    }
  }

  *allDevs(): Iterable<DevState> {
    yield* this.devs.values();
    yield* this.pciDevs.values();
  }
}
