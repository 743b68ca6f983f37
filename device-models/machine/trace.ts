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
import { Machine } from './machine.ts';
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

const exitCode: Record<string, number> = ExitReason;

/** Record events in time order per track (B/E especially): toJSON sorts stably by time. */
export class Tracer {
  private readonly events: TraceEvent[] = [];
  /** Track ids per process: `${pid}/${name}` -> tid. */
  private readonly tids = new Map<string, { pid: number; tid: number; name: string }>();
  private readonly processes = new Map<number, string>();
  private readonly maxEvents: number;
  /** Events not recorded because maxEvents was reached. */
  dropped = 0;
  /** Process (pid) events go to when none is given; one process per traced machine. */
  pid = 1;

  constructor(opts: { maxEvents?: number; processName?: string } = {}) {
    this.maxEvents = opts.maxEvents ?? 1_000_000;
    this.processes.set(1, opts.processName ?? 'pvkit machine');
  }

  /** Number of events recorded (metadata excluded). */
  get count(): number {
    return this.events.length;
  }

  renameProcess(pid: number, name: string): void {
    this.processes.set(pid, name);
  }

  /** A new process (a further machine) in the same trace; returns its pid. */
  addProcess(name: string): number {
    const pid = this.processes.size + 1;
    this.processes.set(pid, name);
    return pid;
  }

  /** The thread id of a named track of process `pid`, created on first use. */
  track(name: string, pid = this.pid): number {
    const key = `${pid}/${name}`;
    let t = this.tids.get(key);
    if (t === undefined) {
      t = { pid, tid: this.tids.size + 1, name };
      this.tids.set(key, t);
    }
    return t.tid;
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
  complete(track: string, name: string, startNs: number, durNs: number, args?: Record<string, unknown>, cat = 'pvkit', pid = this.pid): void {
    this.push({ name, cat, ph: 'X', ts: startNs / 1000, dur: Math.max(0, durNs) / 1000, pid, tid: this.track(track, pid), ...(args ? { args } : {}) });
  }

  begin(track: string, name: string, atNs: number, args?: Record<string, unknown>, cat = 'pvkit', pid = this.pid): void {
    this.push({ name, cat, ph: 'B', ts: atNs / 1000, pid, tid: this.track(track, pid), ...(args ? { args } : {}) });
  }

  end(track: string, name: string, atNs: number, args?: Record<string, unknown>, cat = 'pvkit', pid = this.pid): void {
    this.push({ name, cat, ph: 'E', ts: atNs / 1000, pid, tid: this.track(track, pid), ...(args ? { args } : {}) });
  }

  instant(track: string, name: string, atNs: number, args?: Record<string, unknown>, cat = 'pvkit', pid = this.pid): void {
    this.push({ name, cat, ph: 'i', s: 't', ts: atNs / 1000, pid, tid: this.track(track, pid), ...(args ? { args } : {}) });
  }

  /** A counter track (e.g. buffers in flight); values must be numbers. */
  counter(name: string, atNs: number, values: Record<string, number>, pid = this.pid): void {
    this.push({ name, cat: 'pvkit', ph: 'C', ts: atNs / 1000, pid, tid: 0, args: values });
  }

  /** The trace as a JSON-ready object: metadata (process and track names) first, then events in time order. */
  toJSON(): TraceFile {
    const meta: TraceEvent[] = [];
    for (const [pid, name] of this.processes) {
      meta.push({ name: 'process_name', ph: 'M', ts: 0, pid, tid: 0, args: { name } });
      meta.push({ name: 'process_sort_index', ph: 'M', ts: 0, pid, tid: 0, args: { sort_index: pid } });
    }
    for (const { pid, tid, name } of this.tids.values()) {
      meta.push({ name: 'thread_name', ph: 'M', ts: 0, pid, tid, args: { name } });
      meta.push({ name: 'thread_sort_index', ph: 'M', ts: 0, pid, tid, args: { sort_index: tid } });
    }
    // A stable sort on ts keeps B before E at equal times (they were pushed in that order).
    const sorted = this.events.slice().sort((a, b) => a.ts - b.ts);
    return {
      traceEvents: [...meta, ...sorted],
      displayTimeUnit: 'ns',
      otherData: { clock: 'virtual time of the simulated machine(s), ns / 1000', dropped: this.dropped },
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

  /** A tracer of its own for one machine. */
  static attach(machine: Machine, opts: TracerOptions = {}): MachineTracer {
    const t = new MachineTracer(machine, opts);
    t.removers.push(observe(t, machine, t.pid, opts, () => t.active));
    return t;
  }

  /** Stop recording. */
  detach(): void {
    this.active = false;
    for (const r of this.removers) r();
    this.removers.length = 0;
  }
}

/**
 * Feed `t` from a machine's observation points, as process `pid`. Returns a function that stops
 * recording (listeners without a remover stay registered but inert).
 */
export function observe(t: Tracer, m: Machine, pid: number, opts: TracerOptions = {}, enabled: () => boolean = () => true): () => void {
  let on = true;
  const live = () => on && enabled();
  const removers: (() => void)[] = [];
  {
    const trackOf = opts.trackOf ?? defaultTrackOf;
    const vcpuTrack = (v: VCpu): string => `vCPU ${v.id}`;
    t.track(vcpuTrack(m.vcpu), pid);
    m.vcpu.addExitListener((v: VCpu, e: ExitInfo) => {
      if (!live()) return;
      const cycles = m.profile.constants[`exit.${e.reason}`]?.cycles ?? 0;
      const durNs = m.cyclesToNs(cycles);
      // The machine's own listener (registered first) has already advanced time by the cost.
      const start = m.exitsTakeTime ? m.scheduler.now - durNs : m.scheduler.now;
      const args: Record<string, unknown> = { exit_reason: exitCode[e.reason], cycles, profile: m.profile.name };
      if (e.qualification !== undefined) args.qualification = '0x' + e.qualification.toString(16);
      if (e.detail !== undefined) args.detail = e.detail;
      t.complete(vcpuTrack(v), e.reason, start, durNs, args, 'exit', pid);
    });
    if (opts.bus ?? true) {
      removers.push(
        m.bus.addListener((a: BusAccess) => {
          if (!live()) return;
          const where = a.window ? `${a.window}+0x${a.offset.toString(16)}` : `0x${a.addr.toString(16)}`;
          t.instant(vcpuTrack(m.vcpu), `${a.space} ${a.kind} ${where}`, m.scheduler.now, { size: a.size, value: '0x' + (a.value >>> 0).toString(16) }, 'bus', pid);
        }),
      );
    }
    m.irq.addListener((vector: number, source: string) => {
      if (!live()) return;
      t.instant('interrupts', `irq 0x${vector.toString(16)} (${source})`, m.scheduler.now, { vector, source }, 'irq', pid);
    });
    removers.push(
      m.scheduler.addListener((phase: 'start' | 'end', ev: ScheduledEvent, now: number) => {
        if (!live()) return;
        const track = trackOf(ev.label);
        if (phase === 'start') t.begin(track, ev.label, now, { due_ns: ev.due, seq: ev.seq }, 'device', pid);
        else t.end(track, ev.label, now, undefined, 'device', pid);
      }),
    );
  }
  return () => {
    on = false;
    for (const r of removers) r();
  };
}

/**
 * One trace file for a whole command: every Machine constructed while the session is open
 * becomes a process of its own (named by `label()` at that moment, e.g. the check being run),
 * with its own virtual clock starting at 0. What `--trace FILE` uses.
 */
export class TraceSession {
  readonly tracer: Tracer;
  private readonly stopCreate: () => void;
  private readonly stops: (() => void)[] = [];
  private machines = 0;

  /** Machines traced so far. */
  get machineCount(): number {
    return this.machines;
  }

  constructor(private readonly label: () => string = () => 'machine', opts: TracerOptions = {}) {
    this.tracer = new Tracer({ maxEvents: opts.maxEvents, processName: 'pvkit' });
    this.stopCreate = Machine.addCreateListener((m) => this.add(m, this.label(), opts));
  }

  /** Trace a machine that already exists (the REPL's). */
  add(m: Machine, name: string, opts: TracerOptions = {}): number {
    const pid = this.machines++ === 0 ? 1 : this.tracer.addProcess(name);
    if (pid === 1) this.tracer.renameProcess(1, name);
    this.stops.push(observe(this.tracer, m, pid, opts));
    return pid;
  }

  /** Stop tracing and write the file. */
  finish(path: string): void {
    this.stopCreate();
    for (const s of this.stops) s();
    this.tracer.writeFile(path);
  }
}
