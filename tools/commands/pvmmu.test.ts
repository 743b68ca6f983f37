import { describe, expect, it, vi } from 'vitest';
import { main } from '../cli.ts';
import { TABLE_MODES, WORKLOADS } from '../pvmmu/sim.ts';

async function capture(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => {
    out += a.join(' ') + '\n';
  });
  const w = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => {
    err += String(s);
    return true;
  });
  try {
    const code = await main(argv);
    return { code, out, err };
  } finally {
    log.mockRestore();
    w.mockRestore();
  }
}

describe('pvkit pvmmu', () => {
  it('--json prints { profile, results: [ { mode, workload, value, unit, events } ] } for every mode and workload', async () => {
    const { code, out } = await capture(['pvmmu', '--json', '--quick']);
    expect(code).toBe(0);
    const j = JSON.parse(out) as { profile: string; results: { mode: string; workload: string; value: number; unit: string; events: Record<string, number> }[] };
    expect(j.profile).toBe('2007-core2');
    expect(j.results).toHaveLength(TABLE_MODES.length * WORKLOADS.length);
    for (const mode of TABLE_MODES) {
      for (const w of WORKLOADS) {
        const r = j.results.find((x) => x.mode === mode && x.workload === w)!;
        expect(Object.keys(r).sort()).toEqual(['events', 'mode', 'unit', 'value', 'workload']);
        expect(r.unit).toBe(w === 'ctxsw-2' ? 'us' : 's');
        expect(r.value).toBeGreaterThan(0);
        expect(Object.keys(r.events).length).toBeGreaterThan(0);
      }
    }
    const v = (m: string, w: string) => j.results.find((x) => x.mode === m && x.workload === w)!.value;
    // the orderings the 2007 table shows hold in the simulation
    expect(v('shadow-paravirt-cr3', 'ctxsw-2')).toBeLessThan(v('shadow-cache', 'ctxsw-2'));
    expect(v('shadow-cache', 'ctxsw-2')).toBeLessThan(v('shadow-nocache', 'ctxsw-2'));
    expect(v('native', 'ctxsw-2')).toBeLessThan(v('full-emulation', 'ctxsw-2'));
    // exits where the mode says
    const ev = (m: string) => j.results.find((x) => x.mode === m && x.workload === 'ctxsw-2')!.events;
    expect(ev('shadow-cache')['exit.CR_ACCESS']).toBe(1);
    expect(ev('shadow-paravirt-cr3')['exit.CR_ACCESS']).toBeUndefined();
    expect(ev('ept')['exit.CR_ACCESS']).toBeUndefined();
  });

  it('text output marks calibrated cells and shows the modern sweep', async () => {
    const { code, out } = await capture(['pvmmu', '--quick', '--profile', 'modern']);
    expect(code).toBe(0);
    expect(out).toMatch(/profile modern/);
    expect(out).toMatch(/previous-roots sweep/);
    expect(out).toMatch(/Yong He 2024/);
  });

  it('an unknown profile is a usage error (exit 2, one line)', async () => {
    const { code, err } = await capture(['pvmmu', '--profile', '1999']);
    expect(code).toBe(2);
    expect(err.trim().split('\n')).toHaveLength(1);
    expect(err).toMatch(/unknown profile/);
  });
});
