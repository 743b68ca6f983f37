import { describe, expect, it, vi } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from './cli.ts';
import { validateTrace } from '../device-models/machine/trace-format.ts';
import type { TraceEvent } from '../device-models/machine/trace.ts';

const dir = mkdtempSync(join(tmpdir(), 'pvkit-trace-cli-'));

function quiet<T>(fn: () => Promise<T>): Promise<T> {
  const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  const log = vi.spyOn(console, 'log').mockImplementation(() => {});
  const elog = vi.spyOn(console, 'error').mockImplementation(() => {});
  return fn().finally(() => {
    out.mockRestore();
    err.mockRestore();
    log.mockRestore();
    elog.mockRestore();
  });
}

function load(path: string): TraceEvent[] {
  const t = JSON.parse(readFileSync(path, 'utf8'));
  expect(validateTrace(t)).toEqual([]);
  expect(t.displayTimeUnit).toBe('ns');
  return t.traceEvents;
}

describe('--trace on pvkit commands', () => {
  it('conformance --trace: one process per check run, with exits and interrupts on virtual time', async () => {
    const f = join(dir, 'conf.json');
    const code = await quiet(() => main(['conformance', '--grep', 'status_init', '--runs', '2', '--reporter', 'json', '--out', dir, '--trace', f]));
    expect(code).toBe(0);
    const ev = load(f);
    const procs = ev.filter((e) => e.ph === 'M' && e.name === 'process_name').map((e) => String(e.args!.name));
    expect(procs.length).toBeGreaterThan(1);
    expect(procs.some((p) => /^status_init\..* \(blk\/mmio\/split\)$/.test(p))).toBe(true);
    expect(ev.some((e) => e.ph === 'X' && e.cat === 'exit' && e.name === 'EPT_MISCONFIG')).toBe(true);
  });

  it('bench --trace: device work and exits of the benchmark run', async () => {
    const f = join(dir, 'bench.json');
    const code = await quiet(() => main(['bench', 'blk', '--seconds', '0.05', '--scenario', '4k-randread', '--trace', f]));
    expect(code).toBe(0);
    const ev = load(f);
    expect(ev.some((e) => e.cat === 'device' && e.ph === 'B')).toBe(true);
    expect(ev.some((e) => e.cat === 'exit')).toBe(true);
    expect(ev.some((e) => e.cat === 'irq')).toBe(true);
  });

  it('a --trace file in a missing directory is a usage error (exit 2)', async () => {
    const code = await quiet(() => main(['bench', 'blk', '--seconds', '0.05', '--trace', join(dir, 'no', 'such', 't.json')]));
    expect(code).toBe(2);
  });
});
