import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Machine } from '../device-models/machine/machine.ts';
import { Catalog, parseCatalogTsv } from '../spec-refs/catalog.ts';
import { CheckFailure, CheckSkip, checkProperty, expectEqual, makeCheck, type Check } from './check.ts';
import { mergeReports, runConformance, shardOf, type RunConfig, type RunReport } from './runner.ts';
import { consoleReport, htmlReport, jsonReport, junitReport, writeReports } from './report.ts';
import type { Target } from './target.ts';

/** A target with one fake device: just a machine, so the runner's own logic is what is tested here. */
function fakeTarget(xfail: Record<string, string> = {}): Target {
  return {
    name: 'fake',
    description: 'test target',
    devices: ['blk', 'net'],
    transports: ['mmio'],
    rings: ['split', 'packed'],
    xfail,
    runsDriverChecks: false,
    offeredFeatures: () => 1n << 34n,
    newDevice(_d, transport) {
      const machine = new Machine({ ram: [{ base: 0, size: 2 << 20 }] });
      return { platform: machine.platform, transport, machine, location: { kind: 'virtio-mmio', base: 0xfeb00000, size: 0x200, vector: 0x25, name: 'x' }, dispose() {} };
    },
  };
}

/** A property that fails for x >= 1000 (so fast-check must find and shrink to exactly 1000). */
const propCheck = makeCheck({
  id: 'split.device.fake-prop',
  title: 'fake property',
  statements: ['split.device.1', 'split.device.2'],
  side: 'device',
  kind: 'property',
  applies: { devices: ['blk'] },
  run(ctx) {
    const dut = ctx.newDevice();
    checkProperty(ctx, ['split.device.1'], [fc.integer({ min: 0, max: 5000 })], (x) => {
      dut.machine!.mem.write32(0x100, x);
      if (dut.machine!.mem.read32(0x100) >= 1000) throw new CheckFailure('value too big', { statements: ['split.device.2'], expected: '< 1000', seen: String(x) });
    });
  },
});
const passCheck = makeCheck({ id: 'status_init.device.fake-pass', title: 'passes', statements: ['status_init.device.1'], side: 'device', kind: 'example', run: () => {} });
const failCheck = makeCheck({
  id: 'status_init.device.fake-fail',
  title: 'fails',
  statements: ['status_init.device.2'],
  side: 'device',
  kind: 'example',
  run: () => expectEqual(3, 4, ['status_init.device.2'], 'status read back wrong'),
});
const skipCheck = makeCheck({ id: 'features.device.fake-skip', title: 'skips', statements: ['features.device.1'], side: 'device', kind: 'example', run: () => { throw new CheckSkip('not offered'); } });
const driverCheck = makeCheck({ id: 'split.driver.fake', title: 'driver side', statements: ['split.driver.1'], side: 'driver', kind: 'example', run: () => {} });
const crashCheck = makeCheck({ id: 'mmio.device.fake-crash', title: 'crashes', statements: ['mmio.device.1'], side: 'device', kind: 'example', run: () => { throw new TypeError('oops'); } });

const ALL: Check[] = [propCheck, passCheck, failCheck, skipCheck, driverCheck, crashCheck];
const baseCfg: RunConfig = { target: 'fake', devices: ['blk'], transports: ['mmio'], rings: ['split'], seed: 7, runs: 200 };

const cat = new Catalog(
  parseCatalogTsv(
    'id\tarea\tside\tkeyword\tfile\tline\tblock\tparaphrase\tna_reason\n' +
      'split.device.1\tsplit\tdevice\tMUST\tsplit-ring.tex\t10\tb\tthe device keeps values small\t\n' +
      'split.device.2\tsplit\tdevice\tSHOULD\tsplit-ring.tex\t11\tb\tthe device reports values below a thousand\t\n' +
      'status_init.device.2\tstatus_init\tdevice\tMUST\tcontent.tex\t5\tb\tstatus reads back as written\t\n',
    'fixture.tsv',
  ),
);

describe('runner', () => {
  it('classifies pass, fail (with statements, expected/seen), skip, crash, and driver checks on a target without a checking device', async () => {
    const rep = await runConformance(fakeTarget(), ALL, baseCfg);
    const by = Object.fromEntries(rep.results.map((r) => [r.id, r]));
    expect(by['status_init.device.fake-pass']!.status).toBe('pass');
    const f = by['status_init.device.fake-fail']!;
    expect(f.status).toBe('fail');
    expect(f.expected).toBe('4');
    expect(f.seen).toBe('3');
    expect(f.failedStatements).toEqual(['status_init.device.2']);
    expect(f.replay).toBe('pvkit conformance --target fake --device blk --transport mmio --ring split --check status_init.device.fake-fail --seed 7 --runs 200');
    expect(by['features.device.fake-skip']!.status).toBe('skip');
    expect(by['split.driver.fake']!.status).toBe('skip');
    expect(by['split.driver.fake']!.message).toMatch(/checking device/);
    expect(by['mmio.device.fake-crash']!.status).toBe('fail');
    expect(by['mmio.device.fake-crash']!.message).toMatch(/check crashed: TypeError: oops/);
    expect(rep.summary).toMatchObject({ passed: 1, failed: 3, skipped: 2, xfail: 0 });
  });

  it('reports a property failure with the shrunk counterexample, seed and path, and the path replays it', async () => {
    const rep = await runConformance(fakeTarget(), [propCheck], baseCfg);
    const r = rep.results[0]!;
    expect(r.status).toBe('fail');
    expect(r.counterexample).toBe('[1000]');
    expect(r.failedStatements).toEqual(['split.device.2']);
    expect(r.path).toBeTruthy();
    expect(r.replay).toContain(`--path ${r.path}`);
    // replaying with the reported path runs just the shrunk case
    const again = await runConformance(fakeTarget(), [propCheck], { ...baseCfg, check: propCheck.id, path: r.path! });
    expect(again.results[0]!.counterexample).toBe('[1000]');
    // the same seed gives the same outcome
    const same = await runConformance(fakeTarget(), [propCheck], baseCfg);
    expect(same.results[0]!.fcSeed).toBe(r.fcSeed);
  });

  it('applies applicability per configuration: a blk-only check runs only for blk, on every ring offered', async () => {
    const rep = await runConformance(fakeTarget(), [propCheck, passCheck], { ...baseCfg, devices: ['blk', 'net'], rings: ['split', 'packed'] });
    // passCheck in all 4 configurations, propCheck in the 2 blk ones, nothing for net
    expect(rep.results.length).toBe(6);
    expect(rep.results.filter((r) => r.id === propCheck.id).map((r) => `${r.config.device}/${r.config.ring}`).sort()).toEqual(['blk/packed', 'blk/split']);
    expect(rep.results.filter((r) => r.id === passCheck.id).length).toBe(4);
    expect(rep.results.some((r) => r.status === 'skip')).toBe(false);
  });

  it('a check that applies to none of the configurations is reported once, as skipped with the reason', async () => {
    const rep = await runConformance(fakeTarget(), [propCheck, passCheck], { ...baseCfg, devices: ['net'], rings: ['split'] });
    const prop = rep.results.filter((r) => r.id === propCheck.id);
    expect(prop.length).toBe(1);
    expect(prop[0]!.status).toBe('skip');
    expect(prop[0]!.message).toMatch(/blk devices only/);
    expect(rep.summary.skipped).toBe(1);
  });

  it('xfail: an expected failure is xfail, an unexpected pass is a failure', async () => {
    const t = fakeTarget({ 'status_init.device.fake-fail': 'known QEMU bug', 'status_init.device.fake-pass': 'stale entry' });
    const rep = await runConformance(t, [failCheck, passCheck], baseCfg);
    expect(rep.results[0]!.status).toBe('xfail');
    expect(rep.results[0]!.message).toContain('known QEMU bug');
    expect(rep.results[1]!.status).toBe('fail');
    expect(rep.results[1]!.message).toMatch(/unexpected pass/);
  });

  it('shards are deterministic, disjoint and together cover every check; merge gives the unsharded result', async () => {
    const many = Array.from({ length: 40 }, (_, i) => makeCheck({ id: `split.device.c${i}`, title: `c${i}`, statements: ['split.device.1'], side: 'device', kind: 'example', run: () => {} }));
    const shards: RunReport[] = [];
    for (let i = 1; i <= 3; i++) shards.push(await runConformance(fakeTarget(), many, { ...baseCfg, shard: { index: i, count: 3 } }));
    const ids = shards.flatMap((s) => s.results.map((r) => r.id));
    expect(new Set(ids).size).toBe(40);
    expect(ids.length).toBe(40);
    expect(shards.every((s) => s.results.length > 0)).toBe(true);
    for (const c of many) expect(shardOf(c.id, 3)).toBe(shardOf(c.id, 3));
    const merged = mergeReports(shards);
    expect(merged.summary.passed).toBe(40);
    expect(merged.merged).toBe(3);
    expect(merged.config.shard).toBeUndefined();
    expect(() => mergeReports([shards[0]!, { ...shards[1]!, target: 'other' }])).toThrow(/different targets/);
  });
});

describe('reporters', () => {
  it('console: area table, failures with statement paraphrase, counterexample and replay line', async () => {
    const rep = await runConformance(fakeTarget(), [propCheck, passCheck, failCheck], baseCfg, {}, cat);
    const text = consoleReport(rep, cat);
    expect(text).toMatch(/^split\s+2\s+2\s+1\s+1\s+1$/m);
    expect(text).toMatch(/^status_init\s+1\s+2\s+1\s+1\s+2$/m);
    expect(text).toContain('split.device.2 (SHOULD, split-ring.tex:11): the device reports values below a thousand');
    expect(text).toContain('counterexample (shrunk): [1000]');
    expect(text).toContain('replay: pvkit conformance --target fake');
    expect(text).toMatch(/1 passed, 2 failed \(1 required\), 0 skipped, 0 xfail/);
  });

  it('json, junit and html carry the results; files are written', async () => {
    const rep = await runConformance(fakeTarget(), [propCheck, passCheck, failCheck, skipCheck], baseCfg);
    const j = JSON.parse(jsonReport(rep));
    expect(j).toMatchObject({ target: 'fake', spec: 'virtio-1.4', summary: { passed: 1, failed: 2, skipped: 1, xfail: 0 } });
    expect(j.results[0]).toMatchObject({ id: propCheck.id, status: 'fail', counterexample: '[1000]', seed: 7 });
    const x = junitReport(rep);
    expect(x).toContain('<testsuite name="split" tests="1" failures="1"');
    expect(x).toContain('<skipped message="skip: not offered"/>');
    const h = htmlReport(rep, cat);
    expect(h).toContain('<code>status_init.device.2</code>');
    expect(h).toContain('status reads back as written');
    expect(h).not.toMatch(/<script src|<link /);
    const dir = mkdtempSync(join(tmpdir(), 'pvkit-conf-'));
    const files = writeReports(rep, cat, ['console', 'json', 'junit', 'html'], dir);
    expect(files.map((f) => f.slice(dir.length + 1))).toEqual(['conformance.json', 'conformance.junit.xml', 'conformance.html']);
    expect(JSON.parse(readFileSync(files[0]!, 'utf8')).results.length).toBe(4);
  });
});
