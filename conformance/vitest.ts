/**
 * Vitest glue: run registered conformance checks as vitest tests, and run any test with the
 * conformance monitor on.
 *
 *   // conformance/checks/status.test.ts
 *   import { checkTests } from '../vitest.ts';
 *   import './status.ts';
 *   checkTests({ area: 'status_init' });
 *
 *   // any e2e test
 *   const m = new Machine(); const mon = monitorMachine(m); ... // fails the test on any violation
 */
import { describe, it, onTestFinished } from 'vitest';
import type { Machine } from '../device-models/machine/machine.ts';
import { registeredChecks, type Check, type RingLayout, type TransportName } from './check.ts';
import { getTarget } from './target.ts';
import { notApplicable, runOne } from './runner.ts';
import { attachMonitor, type Monitor, type MonitorOptions } from './monitor.ts';
import './targets/index.ts';

export interface CheckTestOptions {
  /** Only checks of this area (the first statement's area) / whose id starts with this prefix. */
  area?: string;
  prefix?: string;
  /** Only checks whose area is not one of these (a catch-all test file). */
  notAreas?: readonly string[];
  /** Or an explicit list. */
  checks?: readonly Check[];
  target?: string;
  device?: string;
  transport?: TransportName;
  ring?: RingLayout;
  seed?: number;
  /** fast-check runs per property (default: PVKIT_RUNS or 20). */
  runs?: number;
}

/** One vitest test per check; a failure shows the runner's message, statements and replay line. */
export function checkTests(opts: CheckTestOptions = {}): void {
  const target = getTarget(opts.target ?? 'sim');
  if (!target) throw new Error(`no conformance target ${opts.target}`);
  const list = (opts.checks ?? registeredChecks()).filter((c) => (!opts.area || c.area === opts.area) && (!opts.prefix || c.id.startsWith(opts.prefix)) && (!opts.notAreas || !opts.notAreas.includes(c.area)));
  const device = opts.device ?? target.defaultDevices?.[0] ?? target.devices[0] ?? 'blk';
  const transport = opts.transport ?? target.transports[0] ?? 'mmio';
  const ring = opts.ring ?? 'split';
  const runs = opts.runs ?? Number(process.env['PVKIT_RUNS'] ?? 20);
  // a check that cannot apply to this cell (another transport's, another ring's) is left to the
  // test file of that cell rather than reported here as skipped
  const applicable = list.filter((c) => notApplicable(c, target, { device, transport, ring }) === undefined);
  describe(`conformance ${opts.area ?? opts.prefix ?? (opts.notAreas ? 'other areas' : 'checks')} [${target.name} ${device}/${transport}/${ring}]`, () => {
    if (applicable.length === 0) it.skip('no checks apply to this configuration', () => {});
    for (const c of applicable) {
      it(`${c.id}: ${c.title}`, async (tc) => {
        const r = await runOne(c, target, { device, transport, ring }, { seed: opts.seed ?? 1, runs });
        if (r.status === 'skip') {
          tc.skip(r.message);
          return;
        }
        if (r.status === 'fail') {
          const lines = [r.message ?? 'failed', r.expected !== undefined ? `expected: ${r.expected}` : '', r.seen !== undefined ? `seen: ${r.seen}` : '', `statements: ${(r.failedStatements ?? r.statements).join(', ')}`, r.counterexample !== undefined ? `counterexample: ${r.counterexample}` : '', r.replay ? `replay: ${r.replay}` : ''];
          throw new Error(lines.filter(Boolean).join('\n'));
        }
      });
    }
  });
}

/**
 * Attach the conformance monitor to `machine` for the current test; when the test finishes the
 * monitor is detached and the test fails if it recorded any violation (of `side`, when given).
 */
export function monitorMachine(machine: Machine, opts: MonitorOptions & { side?: 'driver' | 'device' } = {}): Monitor {
  const mon = attachMonitor(machine, opts);
  onTestFinished(() => {
    mon.detach();
    mon.assertClean(opts.side ? { side: opts.side } : {});
  });
  return mon;
}
