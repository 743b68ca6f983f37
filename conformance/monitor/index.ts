/**
 * The conformance monitor: watches both sides of every virtio-mmio device on a simulated Machine
 * and records each broken statement with its census id.
 *
 * It sees
 * - every register access (Machine.bus listener): the driver's status, feature, queue and
 *   interrupt register traffic and what the device answers;
 * - every interrupt the machine delivers (InterruptController listener);
 * - the split rings, which it reads from guest memory at *synchronisation points*. On the simulated
 *   machine device work runs only while the driver waits (platform.irq.wait) or spins
 *   (platform.spin), so the monitor wraps those two calls: what changed in shared memory between
 *   leaving one wait and entering the next was done by the driver; what changed during a wait was
 *   done by the device. That is how it tells a driver modifying an in-flight descriptor
 *   (status_init.driver.13) from a device writing one (split.device.6).
 *
 * It judges only from what it observes, independently of the device model's own validation, so
 * the same rules apply whichever side is under test. It never changes device state: the only
 * accesses it makes itself are reads of side-effect-free registers (MagicValue, QueueSizeMax,
 * Status, InterruptStatus), made with its own listener muted.
 *
 * Packed rings are followed the same way, with the monitor's own copies of both sides' positions
 * and wrap counters (a descriptor is available when AVAIL = the driver's wrap and USED differs; used
 * when both equal the device's wrap).
 *
 * This file holds the Monitor class, which wires the listeners and the platform wrappers and
 * delegates to the rules, one file per spec area (see ../monitor.ts for the map).
 */
import type { Machine } from '../../device-models/machine/machine.ts';
import type { BusAccess } from '../../device-models/machine/bus.ts';
import { Mmio } from '../../spec-refs/abi/virtio.ts';
import { CheckFailure } from '../check.ts';
import type { MonitorOptions, Violation } from './types.ts';
import { MonitorCore } from './core.ts';
import { mmioDev, onRegister } from './mmio.ts';
import { onConfig } from './device-config.ts';
import { onPciAccess } from './pci.ts';
import { guard } from './split-ring.ts';
import { judgeOwed } from './notifications.ts';
import { enterDeviceTime, leaveDeviceTime, onIrq, taken } from './device-time.ts';

export type { MonitorOptions, ObservedChain, Violation } from './types.ts';

export class Monitor {
  /** The rules' shared state (core.ts); the rule files take it as their first argument. */
  private readonly core: MonitorCore;
  readonly violations: Violation[];
  /** What the monitor observed (to show a clean run really watched something). */
  readonly stats: MonitorCore['stats'];
  /** Every device status value a driver wrote, in order, on any transport (for checks of the init sequence). */
  readonly statusLog: MonitorCore['statusLog'];
  private readonly undo: (() => void)[] = [];

  /** Violations seen (including those past `max` or ignored ones are not counted). */
  get count(): number {
    return this.core.count;
  }

  constructor(readonly machine: Machine, opts: MonitorOptions = {}) {
    const core = (this.core = new MonitorCore(machine, opts));
    this.violations = core.violations;
    this.stats = core.stats;
    this.statusLog = core.statusLog;
    this.undo.push(machine.bus.addListener((a) => this.onAccess(a)));
    machine.irq.addListener((vector) => onIrq(core, vector));
    const p = machine.platform;
    const irq = p.irq;
    const wait = irq.wait;
    const spin = p.spin;
    irq.wait = function (timeoutNs: number) {
      enterDeviceTime(core);
      let v: number | null = null;
      try {
        v = wait.call(irq, timeoutNs);
        return v;
      } finally {
        leaveDeviceTime(core);
        if (v !== null) taken(core, v);
      }
    };
    const poll = irq.poll;
    irq.poll = function () {
      const v = poll.call(irq);
      if (v !== null) taken(core, v);
      return v;
    };
    p.spin = function (ns: number) {
      enterDeviceTime(core);
      try {
        spin.call(p, ns);
      } finally {
        leaveDeviceTime(core);
      }
    };
    this.undo.push(() => {
      irq.poll = poll;
      irq.wait = wait;
      p.spin = spin;
    });
  }

  /**
   * Run `fn` as device time, as irq.wait and spin do: for a caller that runs the machine's
   * scheduler itself (the REPL's single step), so that what the device writes is judged as the
   * device's doing.
   */
  deviceTime<T>(fn: () => T): T {
    enterDeviceTime(this.core);
    try {
      return fn();
    } finally {
      leaveDeviceTime(this.core);
    }
  }

  /** Stop watching (restores the wrapped platform calls). Judges notifications still owed. */
  detach(): void {
    if (!this.core.active) return;
    this.finish();
    this.core.active = false;
    for (const u of this.undo.reverse()) u();
  }

  /** Judge what can only be judged at the end (notifications owed by devices). */
  finish(): void {
    const core = this.core;
    for (const d of core.allDevs()) for (const r of d.rings.values()) if (!r.broken) guard(r, () => judgeOwed(core, d, r, true));
  }

  bySide(side: 'driver' | 'device'): Violation[] {
    return this.violations.filter((v) => v.side === side);
  }

  /** Violations citing any of `statements` (all when omitted). */
  of(statements?: readonly string[]): Violation[] {
    return statements ? this.violations.filter((v) => statements.includes(v.statement)) : this.violations;
  }

  /** Throw a CheckFailure listing the violations (of `side`, citing `statements`) if there are any. */
  assertClean(opts: { side?: 'driver' | 'device'; statements?: readonly string[] } = {}): void {
    const vs = this.of(opts.statements).filter((v) => !opts.side || v.side === opts.side);
    if (vs.length === 0) return;
    const first = vs[0]!;
    throw new CheckFailure(`monitor: ${vs.length} violation(s); first (${first.side} side): ${first.message}`, {
      statements: [...new Set(vs.map((v) => v.statement))],
      ...(first.expected !== undefined ? { expected: first.expected } : {}),
      ...(first.seen !== undefined ? { seen: first.seen } : {}),
    });
  }

  // ------------------------------------------------------------------ the bus listener: registers, config space, PCI

  private onAccess(a: BusAccess): void {
    if (this.core.muted || !this.core.active) return;
    if (a.window.startsWith('virtio-pci:') || a.window === 'pci-ecam' || a.window === 'pci-cf8') {
      try {
        onPciAccess(this.core, a);
      } catch (e) {
        this.core.violate(undefined, 'pci.driver.5', 'driver', `monitor could not decode a PCI access at 0x${a.addr.toString(16)}: ${(e as Error).message}`);
      }
      return;
    }
    if (a.space !== 'mmio') return;
    const d = mmioDev(this.core, a.addr);
    if (!d) return;
    this.core.stats.accesses++;
    const off = a.addr - d.pd!.base;
    try {
      if (off >= Mmio.CONFIG) onConfig(this.core, d, a, off - Mmio.CONFIG);
      else onRegister(this.core, d, a, off);
    } catch (e) {
      // the monitor must never break the run it watches
      this.core.violate(d, 'mmio.driver.1', 'driver', `monitor could not decode an access at ${off.toString(16)}: ${(e as Error).message}`);
    }
  }
}

/** Attach a monitor to a machine (call before the driver starts). */
export function attachMonitor(machine: Machine, opts?: MonitorOptions): Monitor {
  return new Monitor(machine, opts);
}
