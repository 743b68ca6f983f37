import { Rng } from './rng.ts';

/**
 * A deterministic discrete-event scheduler on virtual time (nanoseconds).
 *
 * Device work (the "iothread"), completions and interrupt delivery are events. Events at the
 * same instant run in insertion order, unless `jitterNs` is set: then each event's due time is
 * pushed back by a seeded random amount, which lets property tests reorder device work and
 * interrupt delivery while staying reproducible from the seed.
 */
export interface SchedulerOptions {
  seed?: number;
  /** Upper bound of a random delay added to every scheduled event (0: none). */
  jitterNs?: number;
}

export interface ScheduledEvent {
  readonly due: number;
  readonly seq: number;
  readonly label: string;
  readonly fn: () => void;
  cancelled: boolean;
}

/** Sees each event start and end (`now` is virtual time at that point). */
export type SchedulerListener = (phase: 'start' | 'end', ev: ScheduledEvent, now: number) => void;

export class Scheduler {
  private heap: ScheduledEvent[] = [];
  private seq = 0;
  private _now = 0;
  readonly rng: Rng;
  readonly seed: number;
  private jitterNs: number;
  /** Number of events run so far. */
  eventsRun = 0;
  private readonly listeners: SchedulerListener[] = [];

  constructor(opts: SchedulerOptions = {}) {
    this.seed = opts.seed ?? 1;
    this.rng = new Rng(this.seed);
    this.jitterNs = opts.jitterNs ?? 0;
  }

  /**
   * Observe each event as it runs: `start` just before its function, `end` just after (also
   * when it throws). For traces; costs nothing when no one listens.
   */
  addListener(l: SchedulerListener): () => void {
    this.listeners.push(l);
    return () => {
      const i = this.listeners.indexOf(l);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  get now(): number {
    return this._now;
  }

  get pending(): number {
    return this.heap.length;
  }

  /** Advance virtual time without running events (time spent by the CPU itself). */
  advance(ns: number): void {
    if (ns > 0) this._now += ns;
  }

  schedule(delayNs: number, label: string, fn: () => void): ScheduledEvent {
    const jitter = this.jitterNs > 0 ? this.rng.below(this.jitterNs + 1) : 0;
    const ev: ScheduledEvent = { due: this._now + Math.max(0, delayNs) + jitter, seq: this.seq++, label, fn, cancelled: false };
    this.push(ev);
    return ev;
  }

  cancel(ev: ScheduledEvent): void {
    ev.cancelled = true;
  }

  /** Due time of the next live event, or undefined. */
  nextDue(): number | undefined {
    while (this.heap.length > 0 && this.heap[0]!.cancelled) this.pop();
    return this.heap[0]?.due;
  }

  /** Run the next event (advancing time to it). False when there is none. */
  runNext(): boolean {
    for (;;) {
      const ev = this.pop();
      if (!ev) return false;
      if (ev.cancelled) continue;
      if (ev.due > this._now) this._now = ev.due;
      this.eventsRun++;
      if (this.listeners.length === 0) {
        ev.fn();
        return true;
      }
      for (const l of this.listeners) l('start', ev, this._now);
      try {
        ev.fn();
      } finally {
        for (const l of this.listeners) l('end', ev, this._now);
      }
      return true;
    }
  }

  /**
   * Run events until `done()` is true, no event is left, or virtual time would pass
   * `deadline`. Returns whether `done()` became true. Time is left at the deadline
   * when it is reached with nothing done.
   */
  runUntil(done: () => boolean, deadline = Infinity, maxEvents = 10_000_000): boolean {
    let n = 0;
    while (!done()) {
      const due = this.nextDue();
      if (due === undefined || due > deadline) {
        if (deadline !== Infinity && deadline > this._now) this._now = deadline;
        return done();
      }
      if (++n > maxEvents) return false;
      this.runNext();
    }
    return true;
  }

  /** Run every event due at or before now + ns, then set time to now + ns. */
  runFor(ns: number): void {
    const end = this._now + ns;
    this.runUntil(() => false, end);
    if (this._now < end) this._now = end;
  }

  private push(ev: ScheduledEvent): void {
    const h = this.heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): ScheduledEvent | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

function before(a: ScheduledEvent, b: ScheduledEvent): boolean {
  return a.due < b.due || (a.due === b.due && a.seq < b.seq);
}
