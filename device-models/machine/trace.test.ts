import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Machine } from './machine.ts';
import { MachineTracer, TraceSession, type TraceEvent } from './trace.ts';
import { validateTrace } from './trace-format.ts';

/** A tiny device: a write to its doorbell schedules device work that raises its line after 2 us. */
function doorbellMachine(): { m: Machine; base: number } {
  const m = new Machine();
  let line: ReturnType<Machine['addMmioDevice']>['line'] | undefined;
  const { base, line: l } = m.addMmioDevice('doorbell', {
    read: () => (line?.asserted ? 1 : 0),
    write: (off, _size, value) => {
      if (off === 0) m.scheduler.schedule(2000, `doorbell:q${value}#${m.scheduler.eventsRun}`, () => line!.assert());
      if (off === 4) line!.deassert();
    },
  });
  line = l;
  return { m, base };
}

describe('MachineTracer', () => {
  it('records exits, device work and interrupts on virtual time, and the file passes the trace-event checks', () => {
    const { m, base } = doorbellMachine();
    const t = MachineTracer.attach(m);
    for (let q = 0; q < 3; q++) {
      m.platform.mmioWrite(base, 4, q);
      const v = m.platform.irq.wait(1e6);
      expect(v).not.toBeNull();
      m.platform.mmioWrite(base + 4, 4, 1);
      m.platform.irq.eoi(v!);
    }
    const dir = mkdtempSync(join(tmpdir(), 'pvkit-trace-'));
    const path = join(dir, 't.json');
    t.writeFile(path);
    const parsed = JSON.parse(readFileSync(path, 'utf8'));
    expect(validateTrace(parsed)).toEqual([]);
    expect(parsed.displayTimeUnit).toBe('ns');
    const ev = parsed.traceEvents as TraceEvent[];
    const tname = (tid: number) => ev.find((e) => e.ph === 'M' && e.name === 'thread_name' && e.tid === tid)?.args?.name;
    // exits: X slices on the vCPU track, lasting the profile's cost of that exit
    const exits = ev.filter((e) => e.ph === 'X' && e.cat === 'exit');
    expect(exits.map((e) => e.name)).toEqual(Array.from({ length: 3 }, () => ['EPT_MISCONFIG', 'HLT', 'EPT_MISCONFIG']).flat());
    for (const e of exits) {
      expect(tname(e.tid)).toBe('vCPU 0');
      const cycles = m.profile.constants[`exit.${e.name}`]!.cycles;
      expect(e.dur).toBeCloseTo(m.cyclesToNs(cycles) / 1000, 9);
    }
    // device work: B/E on one track per queue (the '#n' suffix is dropped), at the scheduled time
    const work = ev.filter((e) => e.cat === 'device');
    expect(work.map((e) => e.ph)).toEqual(['B', 'E', 'B', 'E', 'B', 'E']);
    expect(new Set(work.map((e) => tname(e.tid)))).toEqual(new Set(['doorbell:q0', 'doorbell:q1', 'doorbell:q2']));
    // each device run starts 2 us after the doorbell write exit ended
    const firstWrite = exits[0]!;
    expect(work[0]!.ts).toBeCloseTo(firstWrite.ts + firstWrite.dur! + 2, 6);
    // interrupts: three deliveries, each at the time its device work ran
    const irqs = ev.filter((e) => e.cat === 'irq');
    expect(irqs.length).toBe(3);
    expect(irqs[0]!.ts).toBeCloseTo(work[0]!.ts, 9);
    expect(tname(irqs[0]!.tid)).toBe('interrupts');
    // register accesses as instants on the vCPU track
    expect(ev.filter((e) => e.cat === 'bus').length).toBe(6);
    // time never goes backwards in the file
    const ts = ev.filter((e) => e.ph !== 'M').map((e) => e.ts);
    expect(ts).toEqual(ts.slice().sort((a, b) => a - b));
  });

  it('stops recording at maxEvents and after detach, and counts what it dropped', () => {
    const { m, base } = doorbellMachine();
    const t = MachineTracer.attach(m, { maxEvents: 4, bus: false });
    // three exits, then a device event (B) that takes an exit (dropped) and ends (E: kept)
    for (let i = 0; i < 3; i++) m.platform.mmioWrite(base + 8, 4, 0);
    m.scheduler.runFor(10_000);
    expect(t.count).toBe(3);
    m.scheduler.schedule(0, 'dev', () => m.platform.mmioWrite(base + 8, 4, 0)); // B, exit, E
    m.scheduler.runFor(10_000);
    expect(t.count).toBe(5); // the exit inside is dropped, the E that closes the B is kept
    expect(t.dropped).toBe(1);
    m.platform.mmioWrite(base + 8, 4, 0);
    expect(t.count).toBe(5);
    expect(t.dropped).toBe(2);
    expect(validateTrace(t.toJSON())).toEqual([]);
    const t2 = MachineTracer.attach(m);
    t2.detach();
    m.platform.mmioWrite(base + 8, 4, 0);
    expect(t2.count).toBe(0);
  });

  it('a TraceSession puts every machine built while it is open in a process of its own', () => {
    let label = 'check A';
    const s = new TraceSession(() => label);
    const a = doorbellMachine();
    a.m.platform.mmioWrite(a.base, 4, 0);
    a.m.platform.irq.wait(1e6);
    label = 'check B';
    const b = doorbellMachine();
    b.m.platform.mmioWrite(b.base, 4, 1);
    b.m.platform.irq.wait(1e6);
    const path = join(mkdtempSync(join(tmpdir(), 'pvkit-trace-')), 's.json');
    s.finish(path);
    doorbellMachine().m.platform.mmioWrite(0xfeb00000, 4, 0); // after finish: not traced
    const parsed = JSON.parse(readFileSync(path, 'utf8'));
    expect(validateTrace(parsed)).toEqual([]);
    const ev = parsed.traceEvents as TraceEvent[];
    const procs = ev.filter((e) => e.ph === 'M' && e.name === 'process_name').map((e) => [e.pid, e.args!.name]);
    expect(procs).toEqual([
      [1, 'check A'],
      [2, 'check B'],
    ]);
    expect(ev.filter((e) => e.cat === 'device').map((e) => `${e.pid}:${e.ph}`)).toEqual(['1:B', '1:E', '2:B', '2:E']);
    expect(ev.filter((e) => e.cat === 'exit' && e.pid === 2).map((e) => e.name)).toEqual(['EPT_MISCONFIG', 'HLT']);
  });
});
