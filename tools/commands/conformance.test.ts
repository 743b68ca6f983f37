import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../../spec-refs/catalog.ts';
import { main } from '../cli.ts';
import { parseRuns } from './conformance.ts';

/** Run the pvkit CLI in this process (fast), capturing what it prints and its exit code. */
async function pvkit(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  const log = console.log;
  process.stdout.write = ((c: string | Uint8Array) => ((out += String(c)), true)) as typeof process.stdout.write;
  process.stderr.write = ((c: string | Uint8Array) => ((err += String(c)), true)) as typeof process.stderr.write;
  console.log = (...a: unknown[]) => void (out += a.map(String).join(' ') + '\n');
  try {
    const code = await main(args);
    return { code, out, err };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
    console.log = log;
    process.exitCode = undefined;
  }
}

/** The real binary, once: bin wiring and exit status of a usage error. */
function pvkitBin(...args: string[]) {
  const r = spawnSync(process.execPath, [join(repoRoot(), 'tools/bin/pvkit.js'), ...args], { cwd: repoRoot(), encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('pvkit conformance (CLI)', () => {
  it('the binary exits 2 with one line on a usage error', () => {
    const r = pvkitBin('conformance', '--target', 'nope');
    expect(r.code).toBe(2);
    expect(r.err).toBe('pvkit: unknown target "nope" (known: qemu, sim)\n');
  });

  it('usage errors exit 2 with one line', async () => {
    for (const args of [['--target', 'nope'], ['--device', 'floppy'], ['--transport', 'usb'], ['--ring', 'circular'], ['--shard', '3/2'], ['--shard', 'x'], ['--reporter', 'pdf'], ['--check', 'no.such.check'], ['--seed', 'abc']]) {
      const r = await pvkit('conformance', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err.trim().split('\n')).toHaveLength(1);
      expect(r.err).toMatch(/^pvkit: /);
    }
  });

  it('bad --runs/--seed/--shard values: one line, exit 2, naming the flag, what was expected and the raw text', async () => {
    const cases: [string[], RegExp][] = [
      [['--runs', 'abc'], /^pvkit: --runs must be a positive integer, got "abc"\n$/],
      [['--runs', '0'], /^pvkit: --runs must be a positive integer, got "0"\n$/],
      [['--runs', '1.5'], /^pvkit: --runs must be a positive integer, got "1\.5"\n$/],
      [['--runs', '-3'], /^pvkit: --runs must be a positive integer, got "-3"\n$/],
      [['--runs', '2', '--runs', '3'], /^pvkit: --runs given 2 times \("2", "3"\); expected one positive integer\n$/],
      [['--seed', '1.5'], /^pvkit: --seed must be an integer or 'random', got "1\.5"\n$/],
      [['--seed', '1', '--seed', '2'], /^pvkit: --seed given 2 times \("1", "2"\); expected one integer or 'random'\n$/],
      [['--shard', '0/2'], /^pvkit: --shard must be I\/N with 1 <= I <= N \(e\.g\. 1\/4\), got "0\/2"\n$/],
      [['--shard', '1/2', '--shard', '2/2'], /^pvkit: --shard given 2 times \("1\/2", "2\/2"\); expected one I\/N\n$/],
      [['--check', 'a', '--check', 'b'], /^pvkit: --check given 2 times \("a", "b"\); expected one check id\n$/],
    ];
    for (const [args, want] of cases) {
      const r = await pvkit('conformance', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err, args.join(' ')).toMatch(want);
    }
    const bin = pvkitBin('conformance', '--runs', 'abc');
    expect(bin.code).toBe(2);
    expect(bin.err).toBe('pvkit: --runs must be a positive integer, got "abc"\n');
  });

  it('parseRuns accepts positive integers given as text or number', () => {
    expect(parseRuns('7')).toBe(7);
    expect(parseRuns(25)).toBe(25);
    expect(() => parseRuns('abc')).toThrow(/--runs must be a positive integer, got "abc"/);
  });

  it('runs selected checks, writes json/junit/html, and shards merge back into the unsharded result', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvkit-cli-'));
    const sel = ['--grep', 'mmio.device', '--runs', '3'];
    const full = await pvkit('conformance', ...sel, '--reporter', 'console,json,junit,html', '--out', join(dir, 'full'));
    expect(full.code).toBe(0);
    expect(full.out).toMatch(/^mmio\s+44\s+/m);
    const fj = JSON.parse(readFileSync(join(dir, 'full', 'conformance.json'), 'utf8'));
    expect(fj).toMatchObject({ target: 'sim', spec: 'virtio-1.4' });
    expect(fj.results.length).toBeGreaterThan(2);
    expect(existsSync(join(dir, 'full', 'conformance.junit.xml'))).toBe(true);
    expect(readFileSync(join(dir, 'full', 'conformance.html'), 'utf8')).toContain('Traceability');
    for (const i of [1, 2]) expect((await pvkit('conformance', ...sel, '--shard', `${i}/2`, '--reporter', 'json', '--out', join(dir, `s${i}`))).code).toBe(0);
    const merged = await pvkit('conformance', 'merge', join(dir, 's1'), join(dir, 's2'), '--reporter', 'json', '--out', join(dir, 'm'));
    expect(merged.code).toBe(0);
    const mj = JSON.parse(readFileSync(join(dir, 'm', 'conformance.json'), 'utf8'));
    const ids = (j: { results: { id: string; status: string }[] }) => j.results.map((r) => `${r.id}:${r.status}`).sort();
    expect(ids(mj)).toEqual(ids(fj));
  });

  it('merge exits 1 when a merged report has a required failure, 2 when a directory has no report', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvkit-merge-'));
    mkdirSync(join(dir, 'a'));
    const result = { id: 'split.device.x', title: 't', area: 'split', side: 'device', statements: ['split.device.3'], config: { device: 'blk', transport: 'mmio', ring: 'split' }, status: 'fail', required: true, durationMs: 1, message: 'broken' };
    writeFileSync(join(dir, 'a', 'conformance.json'), JSON.stringify({ target: 'sim', spec: 'virtio-1.4', config: { target: 'sim', devices: ['blk'], transports: ['mmio'], rings: ['split'], seed: 1, runs: 1 }, summary: {}, durationMs: 1, results: [result] }));
    const r = await pvkit('conformance', 'merge', join(dir, 'a'), '--reporter', 'console', '--out', join(dir, 'out'));
    expect(r.code).toBe(1);
    expect(r.out).toContain('FAIL split.device.x');
    expect((await pvkit('conformance', 'merge', join(dir, 'nothing-here'))).code).toBe(2);
  });
});

describe('pvkit spec (CLI)', () => {
  it('coverage --json has the documented shape and no unknown ids', async () => {
    const r = await pvkit('spec', 'coverage', '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.spec).toBe('virtio-1.4');
    expect(j.unknownIds).toEqual([]);
    expect(j.total.statements).toBe(684);
    for (const a of ['status_init', 'features', 'config_space', 'split', 'mmio', 'blk']) {
      const c = j.areas[a];
      expect(c.statements).toBe(c.checked + c.notApplicable + c.open);
      expect(c.checked).toBeGreaterThan(0);
    }
  });

  it('show prints one statement with its checks; an unknown id is a usage error', async () => {
    const r = await pvkit('spec', 'show', 'split.device.3');
    expect(r.code).toBe(0);
    expect(r.out).toContain('split-ring.tex');
    expect(r.out).toMatch(/checked by split\.device\.writes/);
    expect((await pvkit('spec', 'show', 'split.device.999')).code).toBe(2);
  });
});
