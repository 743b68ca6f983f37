/**
 * The spec-exploration session behind `pvkit repl`: a simulated machine with one virtio device
 * already attached, the conformance monitor watching it, and helpers that make VIRTIO visible —
 * initialisation one status bit at a time, the feature negotiation with names, the rings as they
 * sit in guest memory, requests posted by hand, the device stepped one scheduler event at a
 * time with the exits and interrupts each step caused, and rules broken on purpose so that the
 * monitor names the statement.
 *
 * Every helper returns a View: text for people (the REPL prints it), data for programs (the
 * guide's examples and the tests use both). Nothing here is REPL-specific; tools/repl/repl.ts
 * puts the helpers into a node:repl context.
 *
 * The Session class is built up in tools/repl/session/: machine.ts (set-up and reporting),
 * init.ts (initialisation, status, features), requests.ts (rings and requests by hand),
 * stepping.ts (tick, run, collect), break-rules.ts; this file adds the inspection helpers and
 * the hand-over to the reference drivers, and binds them all for a REPL (helpers()).
 */
import { VirtioBlkDriver } from '../../drivers/blk/driver.ts';
import { NET_DRIVER_FEATURES, VirtioNetDriver } from '../../drivers/net/driver.ts';
import { catalog } from '../../spec-refs/catalog.ts';
import { PvkitError, UsageError } from '../../spec-refs/errors.ts';
import { F, bit } from '../../spec-refs/abi/virtio.ts';
import { RingWatcher } from './ring-view.ts';
import { RuleBreakingSession } from './session/break-rules.ts';
import { HELPERS } from './session/help.ts';
import { View, formatViolation, hex, preview } from './session/view.ts';

export { View, describeFrame } from './session/view.ts';
export { DEVICES, RINGS, TRANSPORTS, type DeviceKind, type RingKind, type SessionOptions, type TransportKind } from './session/machine.ts';
export { featureBit } from './session/init.ts';
export { HELPERS } from './session/help.ts';

export class Session extends RuleBreakingSession {
  /** Exit counts and modelled cost so far. */
  exits(): View {
    const c = this.machine.cost();
    const rows = Object.entries(c.byKind)
      .filter(([k]) => k.startsWith('exit.'))
      .map(([k, v]) => `  ${k.slice(5).padEnd(20)} ${String(v.count).padStart(6)}  ${String(v.cycles).padStart(10)} cycles`);
    return new View([`exits under cost profile ${this.machine.profile.name}:`, ...rows, `  total ${c.cycles} cycles = ${c.micros.toFixed(2)} us`].join('\n'), c);
  }

  /** Every violation the monitor recorded, with the statement paraphrase. */
  violations(): View {
    const vs = this.monitor.violations;
    this.shownViolations = vs.length;
    return new View(vs.length ? vs.map(formatViolation).join('\n') : 'no violations recorded', vs);
  }

  /** The catalog entry of a statement id: keyword, side, paraphrase, where it is in the spec. */
  spec(id: string): View {
    const e = catalog().byId(id);
    if (!e) {
      const near = catalog()
        .entries.filter((x) => x.id.startsWith(id))
        .slice(0, 10)
        .map((x) => x.id);
      return new View(`no statement ${id}${near.length ? `; ids starting so: ${near.join(', ')}` : ''}`);
    }
    const lines = [`${e.id} (${e.side} ${e.keyword}) ${e.paraphrase}`, `  spec: ${e.location} (v1.4-cs01), ${e.block}`];
    if (e.naReason) lines.push(`  not applicable to pvkit: ${e.naReason}`);
    return new View(lines.join('\n'), e);
  }

  /** Hand the device to its reference driver (drivers/blk/driver.ts or drivers/net/driver.ts): it resets and initialises it itself. */
  driver(): View {
    if (this.device === 'net') {
      return this.report('handing the device to the reference virtio-net driver (VirtioNetDriver.init)', () => {
        this.dropQueues();
        const net = VirtioNetDriver.init(this.machine.platform, this.transport, { queueSize: this.queueSize, pairs: 1, features: NET_DRIVER_FEATURES & ~(this.ringKind === 'packed' ? 0n : bit(F.RING_PACKED)) });
        this.net = net;
        this.stepIndex = this.steps.length;
        this.offered = net.dev.offered;
        this.chosen = net.dev.features;
        for (const [i, q] of net.dev.queues) {
          this.watchers.set(i, new RingWatcher(this.machine.mem, q.layout, q.addresses, () => this.machine.scheduler.now, true));
          this.queues.set(i, q as never);
        }
        return `  ${net.dev.queues.size} queue(s); the driver is the global \`net\` (net.send(frame), net.waitReceive(), net.run(ns)); the host peer is 10.0.2.2`;
      });
    }
    return this.report('handing the device to the reference virtio-blk driver (VirtioBlkDriver.probe)', () => {
      this.dropQueues();
      const blk = VirtioBlkDriver.probe(this.machine.platform, this.transport, { queueSize: this.queueSize, maxQueues: 1, ringFeatures: bit(F.EVENT_IDX) | (this.ringKind === 'packed' ? bit(F.RING_PACKED) : 0n), indirectThreshold: Infinity });
      this.blk = blk;
      this.stepIndex = this.steps.length;
      this.offered = blk.dev.offered;
      this.chosen = blk.features;
      for (const [i, q] of blk.dev.queues) this.watchers.set(i, new RingWatcher(this.machine.mem, q.layout, q.addresses, () => this.machine.scheduler.now, true));
      for (const [i, q] of blk.dev.queues) this.queues.set(i, q as never);
      return `  capacity ${blk.info.capacity} sectors, cache ${blk.info.cache}; the driver is the global \`blk\` (blk.read(sector, buf), blk.write(...), blk.submit(...))`;
    });
  }

  /** Write the Chrome trace recorded so far (needs --trace or {trace:true}). */
  writeTrace(path: string): View {
    if (!this.traceSession) throw new UsageError('usage.repl.trace', 'this session is not traced: start the REPL with --trace FILE');
    this.traceSession.finish(path);
    return new View(`trace written to ${path} (open it in https://ui.perfetto.dev)`);
  }

  /** Bytes of guest memory at `gpa`, as hex and text. */
  mem(gpa: number, len = 64): View {
    const b = this.machine.mem.readBytes(gpa, Math.min(len, 4096));
    const lines: string[] = [];
    for (let i = 0; i < b.length; i += 16) lines.push(`${hex(gpa + i).padStart(12)}  ${preview(b.subarray(i, i + 16))}`);
    return new View(lines.join('\n'), b);
  }
}

/** Bind the helpers to a session, as plain functions (for a REPL context or a script). */
export function helpers(s: Session): Record<string, unknown> {
  const out: Record<string, unknown> = { session: s, machine: s.machine, monitor: s.monitor };
  for (const h of HELPERS) {
    const f = (s as unknown as Record<string, unknown>)[h.name];
    if (typeof f === 'function') {
      const fn = (f as (...a: unknown[]) => unknown).bind(s);
      // A typed error (bad argument, helper of the other device...) is an answer, not a crash: print it in one line.
      out[h.name] = (...a: unknown[]) => {
        try {
          return fn(...a);
        } catch (e) {
          if (e instanceof PvkitError) return new View(`${e.name}: ${e.message}`, e);
          throw e;
        }
      };
    }
  }
  Object.defineProperty(out, 'blk', { get: () => s.blk, enumerable: true });
  Object.defineProperty(out, 'net', { get: () => s.net, enumerable: true });
  return out;
}

export function isPvkitError(e: unknown): e is PvkitError {
  return e instanceof PvkitError;
}
