// tinyblk on pvkit's simulated machine: the conformance monitor watching it, and a pvkit check
// (a property over random I/O) run by pvkit's runner, as a driver author's own tests would.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { attachMonitor, catalog, checkProperty, createMachine, defineCheck, expectThat, getTarget, runConformance, type Check, type PlatformDevice } from 'pvkit';
import { TinyBlk, TinyBlkError, type TinyBlkOptions } from '../src/tinyblk.ts';

const pattern = (len: number, seed: number) => Uint8Array.from({ length: len }, (_, i) => (i * 7 + seed) & 0xff);

describe('tinyblk under the conformance monitor', () => {
  it('writes, reads back, and breaks no statement', () => {
    const sim = createMachine({ device: 'blk', transport: 'mmio', diskBytes: 1 << 20 });
    const blk = TinyBlk.probe(sim.platform, sim.platform.devices()[0]!);
    expect(blk.capacity).toBe(2048);
    blk.write(100, pattern(4096, 3));
    expect(blk.read(100, 8)).toEqual(pattern(4096, 3));
    expect(blk.read(2047, 1)).toEqual(new Uint8Array(512));
    blk.shutdown();
    expect(sim.monitor!.violations).toEqual([]);
    // the monitor did watch: the chains and the status writes went past it
    expect(sim.monitor!.stats.chains).toBe(3);
    expect(sim.monitor!.statusLog.map((s) => s.value)).toEqual([0, 1, 3, 11, 15, 0]);
  });

  it('names the statement a buggy initialisation breaks', () => {
    const sim = createMachine({ device: 'blk' });
    const dev = sim.platform.devices()[0]!;
    expect(() => TinyBlk.probe(sim.platform, dev, { bug: 'skip-features-ok' }).read(0, 1)).toThrow(TinyBlkError);
    const v = sim.monitor!.violations.find((x) => x.statement === 'status_init.driver.6');
    expect(v?.side).toBe('driver');
    expect(catalog().get('status_init.driver.6').keyword).toBe('MUST');
  });

  it('refuses requests outside the disk before touching the ring', () => {
    const sim = createMachine({ device: 'blk' });
    const blk = TinyBlk.probe(sim.platform, sim.platform.devices()[0]!);
    expect(() => blk.read(2048, 1)).toThrow(/outside the disk/);
    expect(sim.monitor!.stats.chains).toBe(0);
  });
});

/** A driver-side check: random writes and reads by tinyblk, judged by the monitor and by a model of the disk. */
function tinyblkCheck(id: string, opts: TinyBlkOptions = {}): Check {
  const statements = ['status_init.driver.6', 'split.driver.1', 'split.driver.2', 'split.driver.11'];
  return defineCheck({
    id,
    title: 'tinyblk initialises and moves data without breaking a driver-side statement',
    statements,
    side: 'driver',
    kind: 'property',
    applies: { devices: ['blk'], transports: ['mmio'], rings: ['split'] },
    run(ctx) {
      const op = fc.record({ write: fc.boolean(), sector: fc.integer({ min: 0, max: 2000 }), sectors: fc.integer({ min: 1, max: 16 }), seed: fc.nat(255) });
      checkProperty(ctx, statements, [fc.array(op, { minLength: 1, maxLength: 12 })], (ops) => {
        const dut = ctx.newDevice();
        const monitor = attachMonitor(dut.machine!);
        const disk = new Map<number, Uint8Array>();
        try {
          const blk = TinyBlk.probe(dut.platform, dut.location as PlatformDevice, opts);
          for (const o of ops) {
            const n = Math.min(o.sectors, blk.capacity - o.sector);
            if (o.write) {
              const data = pattern(n * 512, o.seed);
              blk.write(o.sector, data);
              for (let s = 0; s < n; s++) disk.set(o.sector + s, data.subarray(s * 512, (s + 1) * 512));
            } else {
              const got = blk.read(o.sector, n);
              for (let s = 0; s < n; s++) expectThat(Buffer.from(got.subarray(s * 512, (s + 1) * 512)).equals(disk.get(o.sector + s) ?? new Uint8Array(512)), ['split.driver.2'], `sector ${o.sector + s} reads back what was written`);
            }
          }
        } catch (e) {
          if (!(e instanceof TinyBlkError)) throw e;
          // a driver that gives up is judged by what it did before: the monitor's findings come first
        }
        const v = monitor.violations;
        expectThat(v.length === 0, [...new Set(v.map((x) => x.statement))], `the monitor saw ${v.length} violation(s)`, 'none', v.map((x) => `${x.statement}: ${x.message}`).join('; '));
      });
    },
  });
}

describe('tinyblk under pvkit conformance checks', () => {
  const sim = getTarget('sim')!;
  const config = { target: 'sim', devices: ['blk'], transports: ['mmio' as const], rings: ['split' as const], seed: 1, runs: 15 };

  it('passes its property check', async () => {
    const report = await runConformance(sim, [tinyblkCheck('tinyblk.driver.io')], config);
    expect(report.results.map((r) => [r.id, r.status, r.message ?? ''])).toEqual([['tinyblk.driver.io', 'pass', '']]);
  });

  it('and the same check fails the buggy build, citing the statement with seed and replay path', async () => {
    const report = await runConformance(sim, [tinyblkCheck('tinyblk.driver.io-buggy', { bug: 'skip-features-ok' })], config);
    const r = report.results[0]!;
    expect(r.status).toBe('fail');
    expect(r.failedStatements).toContain('status_init.driver.6');
    expect(r.seed).toBeTypeOf('number');
  });
});
