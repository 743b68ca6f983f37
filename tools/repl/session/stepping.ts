/**
 * Stepping the device: tick() runs one scheduler event, run() runs them until idle, collect()
 * takes the interrupts and the used buffers; each reports what it caused.
 */
import { RequestSession } from './requests.ts';
import { View, fmtNs, hex } from './view.ts';

/** The session's device stepping and used-buffer collection. */
export class SteppingSession extends RequestSession {
  /** Run exactly one scheduler event (the device's next piece of work): Scheduler.runNext, as device time. */
  tick(): View {
    const s = this.machine.scheduler;
    const due = s.nextDue();
    if (due === undefined) return new View('no device work pending (kick a request first)');
    return this.report('tick: one device event', () => {
      this.monitor.deviceTime(() => s.runNext());
      return '';
    });
  }

  /** Run device events until none is left (bounded), as device time. */
  run(maxEvents = 1000): View {
    const s = this.machine.scheduler;
    return this.report('run: device events until idle', () => {
      let n = 0;
      this.monitor.deviceTime(() => {
        while (n < maxEvents && s.runNext()) n++;
      });
      return `  ${n} event(s) run${n >= maxEvents ? ' (stopped at the bound)' : ''}`;
    });
  }

  /** Take pending interrupts (acknowledging them at the device), then collect every used buffer (of `queue`, or of every queue). */
  collect(queue?: number): View {
    const indices = queue === undefined ? [...this.queues.keys()] : [queue];
    for (const i of indices) this.vq(i);
    if (indices.length === 0) this.vq(0);
    const p = this.machine.platform;
    return this.report(`collect ${queue === undefined ? 'every queue' : `queue ${queue}`}`, () => {
      const lines: string[] = [];
      for (let v = p.irq.poll(); v !== null; v = p.irq.poll()) {
        const cause = this.transport.ackInterrupt(v);
        p.irq.eoi(v);
        lines.push(`  interrupt ${hex(v)}: ${cause.used ? 'used buffers' : ''}${cause.used && cause.config ? ' + ' : ''}${cause.config ? 'configuration change' : ''}${!cause.used && !cause.config ? 'nothing (spurious)' : ''}`);
      }
      this.syncWatchers();
      for (const i of indices) {
        const q = this.vq(i);
        for (let u = q.getUsed(); u; u = q.getUsed()) {
          const r = u.token;
          const [first, ...more] = r.done(u.len).split('\n');
          lines.push(`  q${i} ${first}, ${fmtNs(this.machine.scheduler.now - r.postedAt)} after posting`, ...more);
          for (const a of r.allocations) p.dma.free(a);
        }
      }
      if (lines.length === 0) lines.push('  nothing used yet (tick() or run() lets the device work)');
      return lines.join('\n');
    });
  }
}
