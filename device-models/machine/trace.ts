/**
 * A Chrome trace-event writer for the simulated machine (the "JSON Object Format" that Perfetto
 * and chrome://tracing open): VM exits on each vCPU's track, device work (scheduler events) on a
 * track per device queue, interrupt deliveries on an interrupts track, register accesses as
 * instants, all on the machine's virtual clock.
 *
 * Timestamps: the format counts microseconds; virtual time is in nanoseconds, so every `ts` and
 * `dur` is ns / 1000 (fractions allowed) and `displayTimeUnit` is 'ns'.
 *
 * Attach with `MachineTracer.attach(machine)`; observation only (it never changes what the
 * machine does, apart from the time spent recording). Events past `maxEvents` are dropped and
 * counted, so a long run cannot exhaust memory.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import type { Machine } from './machine.ts';
import type { BusAccess } from './bus.ts';
import type { ExitInfo, VCpu } from './vcpu.ts';
import type { ScheduledEvent } from './scheduler.ts';
import { ExitReason } from './vcpu.ts';

/** One trace event, as the trace-event format defines it (only the fields pvkit writes). */
export interface TraceEvent {
  name: string;
  ph: 'B' | 'E' | 'X' | 'i' | 'C' | 'M';
  /** Microseconds. */
  ts: number;
  pid: number;
  tid: number;
  cat?: string;
  dur?: number;
  /** Instant scope: thread, process or global. */
  s?: 't' | 'p' | 'g';
  args?: Record<string, unknown>;
}

export interface TraceFile {
  traceEvents: TraceEvent[];
  displayTimeUnit: 'ns' | 'ms';
  otherData?: Record<string, unknown>;
}

export interface TracerOptions {
  /** Record every MMIO / port access as an instant on the vCPU track (default true). */
  bus?: boolean;
  /** Stop recording after this many events (default 1,000,000); the rest are counted in `dropped`. */
  maxEvents?: number;
  /** Track name for a scheduler event (default: its label up to a '#', so per-request suffixes share a track). */
  trackOf?: (label: string) => string;
  /** Process name shown in the viewer (default 'pvkit machine'). */
  processName?: string;
}

const PID = 1;
const exitCode: Record<string, number> = ExitReason;

/** Record events in time order per track (B/E especially): toJSON sorts stably by time. */
export class Tracer {
  private readonly events: TraceEvent[] = [];
  private readonly tids = new Map<string, number>();
  private readonly maxEvents: number;
  /** Events not recorded because maxEvents was reached. */
  dropped = 0;
  readonly processName: string;

  constructor(opts: { maxEvents?: number; processName?: string } = {}) {
    this.maxEvents = opts.maxEvents ?? 1_000_000;
    this.processName = opts.processName ?? 'pvkit machine';
  }

  /** Number of events recorded (metadata excluded). */
  get count(): number {
    return this.events.length;
  }

  /** The thread id of a named track, created (with its metadata) on first use. */
  track(name: string): number {
    let t = this.tids.get(name);
    if (t === undefined) {
      t = this.tids.size + 1;
      this.tids.set(name, t);
    }
    return t;
  }

  /** Open B slices per track, so that truncation never leaves a slice without its end. */
  private readonly openSlices = new Map<number, number>();

  private push(e: TraceEvent): void {
    const open = this.openSlices.get(e.tid) ?? 0;
    if (this.events.length >= this.maxEvents && !(e.ph === 'E' && open > 0)) {
      this.dropped++;
      return;
    }
    if (e.ph === 'B') this.openSlices.set(e.tid, open + 1);
    else if (e.ph === 'E' && open > 0) this.openSlices.set(e.tid, open - 1);
    this.events.push(e);
  }

  /** A slice with a known duration (ns), starting at `startNs`. */
  complete(track: string, name: string, startNs: number, durNs: number, args?: Record<string, unknown>, cat = 'pvkit'): void {
    this.push({ name, cat, ph: 'X', ts: startNs / 1000, dur: Math.max(0, durNs) / 1000, pid: PID, tid: this.track(track), ...(args ? { args } : {}) });
  }

  begin(track: string, name: string, atNs: number, args?: Record<string, unknown>, cat = 'pvkit'): void {
    this.push({ name, cat, ph: 'B', ts: atNs / 1000, pid: PID, tid: this.track(track), ...(args ? { args } : {}) });
  }

  end(track: string, name: string, atNs: number, args?: Record<string, unknown>, cat = 'pvkit'): void {
    this.push({ name, cat, ph: 'E', ts: atNs / 1000, pid: PID, tid: this.track(track), ...(args ? { args } : {}) });
  }

  instant(track: string, name: string, atNs: number, args?: Record<string, unknown>, cat = 'pvkit'): void {
    this.push({ name, cat, ph: 'i', s: 't', ts: atNs / 1000, pid: PID, tid: this.track(track), ...(args ? { args } : {}) });
  }

  /** A counter track (e.g. buffers in flight); values must be numbers. */
  counter(name: string, atNs: number, values: Record<string, number>): void {
    this.push({ name, cat: 'pvkit', ph: 'C', ts: atNs / 1000, pid: PID, tid: 0, args: values });
  }

  /** The trace as a JSON-ready object: metadata (process and track names) first, then events in time order. */
  toJSON(): TraceFile {
    const meta: TraceEvent[] = [{ name: 'process_name', ph: 'M', ts: 0, pid: PID, tid: 0, args: { name: this.processName } }];
    for (const [name, tid] of this.tids) {
      meta.push({ name: 'thread_name', ph: 'M', ts: 0, pid: PID, tid, args: { name } });
      meta.push({ name: 'thread_sort_index', ph: 'M', ts: 0, pid: PID, tid, args: { sort_index: tid } });
    }
    // A stable sort on ts keeps B before E at equal times (they were pushed in that order).
    const sorted = this.events.slice().sort((a, b) => a.ts - b.ts);
    return {
      traceEvents: [...meta, ...sorted],
      displayTimeUnit: 'ns',
      otherData: { clock: 'virtual (simulated machine)', dropped: this.dropped },
    };
  }

  /** Write the trace to `path`, one event per line (streamed: no single giant string). */
  writeFile(path: string): void {
    const t = this.toJSON();
    const fd = openSync(path, 'w');
    try {
      writeSync(fd, '{"displayTimeUnit":"ns","otherData":' + JSON.stringify(t.otherData) + ',"traceEvents":[\n');
      const ev = t.traceEvents;
      let buf = '';
      for (let i = 0; i < ev.length; i++) {
        buf += JSON.stringify(ev[i]) + (i + 1 < ev.length ? ',\n' : '\n');
        if (buf.length > 1 << 16) {
          writeSync(fd, buf);
          buf = '';
        }
      }
      writeSync(fd, buf + ']}\n');
    } finally {
      closeSync(fd);
    }
  }
}

function defaultTrackOf(label: string): string {
  const i = label.indexOf('#');
  return i >= 0 ? label.slice(0, i) : label;
}

/**
 * A Tracer fed by a Machine's observation points: `vcpu.addExitListener` (exits as slices of
 * their modelled duration), `bus.addListener` (register accesses), `irq.addListener`
 * (deliveries) and `scheduler.addListener` (device work as B/E slices on per-label tracks).
 */
export class MachineTracer extends Tracer {
  private active = true;
  private readonly removers: (() => void)[] = [];

  private constructor(readonly machine: Machine, opts: TracerOptions) {
    super(opts);
  }

  static attach(machine: Machine, opts: TracerOptions = {}): MachineTracer {
    const t = new MachineTracer(machine, opts);
    const m = machine;
    const trackOf = opts.trackOf ?? defaultTrackOf;
    const vcpuTrack = (v: VCpu): string => `vCPU ${v.id}`;
    t.track(vcpuTrack(m.vcpu));
    m.vcpu.addExitListener((v: VCpu, e: ExitInfo) => {
      if (!t.active) return;
      const cycles = m.profile.constants[`exit.${e.reason}`]?.cycles ?? 0;
      const durNs = m.cyclesToNs(cycles);
      // The machine's own listener (registered first) has already advanced time by the cost.
      const start = m.exitsTakeTime ? m.scheduler.now - durNs : m.scheduler.now;
      const args: Record<string, unknown> = { exit_reason: exitCode[e.reason], cycles, profile: m.profile.name };
      if (e.qualification !== undefined) args.qualification = '0x' + e.qualification.toString(16);
      if (e.detail !== undefined) args.detail = e.detail;
      t.complete(vcpuTrack(v), e.reason, start, durNs, args, 'exit');
    });
    if (opts.bus ?? true) {
      t.removers.push(
        m.bus.addListener((a: BusAccess) => {
          if (!t.active) return;
          const where = a.window ? `${a.window}+0x${a.offset.toString(16)}` : `0x${a.addr.toString(16)}`;
          t.instant(vcpuTrack(m.vcpu), `${a.space} ${a.kind} ${where}`, m.scheduler.now, { size: a.size, value: '0x' + (a.value >>> 0).toString(16) }, 'bus');
        }),
      );
    }
    m.irq.addListener((vector: number, source: string) => {
      if (!t.active) return;
      t.instant('interrupts', `irq 0x${vector.toString(16)} (${source})`, m.scheduler.now, { vector, source }, 'irq');
    });
    t.removers.push(
      m.scheduler.addListener((phase: 'start' | 'end', ev: ScheduledEvent, now: number) => {
        if (!t.active) return;
        const track = trackOf(ev.label);
        if (phase === 'start') t.begin(track, ev.label, now, { due_ns: ev.due, seq: ev.seq }, 'device');
        else t.end(track, ev.label, now, undefined, 'device');
      }),
    );
    return t;
  }

  /** Stop recording (listeners without a remover stay registered but inert). */
  detach(): void {
    this.active = false;
    for (const r of this.removers) r();
    this.removers.length = 0;
  }
}
