import type { Argv, CommandModule } from 'yargs';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../../spec-refs/errors.ts';
import { catalog } from '../../spec-refs/catalog.ts';
import { RING_LAYOUTS, TRANSPORTS, registeredChecks, type RingLayout, type TransportName } from '../../conformance/check.ts';
import { getTarget, targetNames } from '../../conformance/target.ts';
import { mergeReports, notApplicable, runConformance, selected, type ResultConfig, type RunConfig, type RunReport } from '../../conformance/runner.ts';
import { consoleReport, REPORTERS, writeReports, type ReporterName } from '../../conformance/report.ts';
import '../../conformance/targets/index.ts';
import { configureQemuTarget } from '../../conformance/targets/qemu.ts';
import { findQemu } from '../../conformance/qemu/find.ts';
import { splitArgs } from './qemu.ts';
import '../../conformance/checks/index.ts';
import { TRACE_OPTION, startCommandTrace } from '../trace-cli.ts';

/** Default property runs per check: keeps the whole default run well under two minutes on 2 cores. */
export const DEFAULT_RUNS = 25;
export const DEFAULT_SEED = 1;
export const DEFAULT_OUT = 'reports/conformance';

interface ConformanceArgs {
  target: string;
  device?: string;
  transport?: string;
  ring?: string;
  seed?: string;
  /** Parsed here, not by yargs: a yargs number option turns `abc` into NaN and the message into "got null". */
  runs: number | string;
  grep?: string;
  check?: string;
  shard?: string;
  reporter: string;
  out: string;
  path?: string;
  verbose: boolean;
  list: boolean;
  trace?: string;
  qemu?: string;
  'qemu-config'?: string;
  'qemu-args'?: string;
}

/** --target qemu: locate QEMU (exit 2 with an install hint when missing) and configure the target. */
function prepareQemu(a: ConformanceArgs): void {
  const qemu = findQemu(a.qemu);
  configureQemuTarget({ qemu, ...(a['qemu-config'] !== undefined ? { config: a['qemu-config'] } : {}), extraArgs: splitArgs(a['qemu-args']) });
}

function usage(msg: string): never {
  throw new UsageError('usage.conformance', msg);
}

function list(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  const items = String(v)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return items.length ? items : undefined;
}

/** One value for a flag: yargs hands an array when a flag is repeated; that is a usage error, not a crash. */
function single(flag: string, v: unknown, expected: string): string {
  if (Array.isArray(v)) usage(`--${flag} given ${v.length} times (${v.map((x) => JSON.stringify(x)).join(', ')}); expected one ${expected}`);
  return String(v);
}

/** --runs: a positive decimal integer (the raw text is named in the error, never NaN/null). */
export function parseRuns(v: number | string | readonly unknown[]): number {
  const s = single('runs', v, 'positive integer').trim();
  const n = Number(s);
  if (!/^[0-9]+$/.test(s) || !Number.isSafeInteger(n) || n < 1) usage(`--runs must be a positive integer, got ${JSON.stringify(s)}`);
  return n;
}

export function parseShard(raw: string): { index: number; count: number } {
  const s = single('shard', raw, 'I/N');
  const m = /^([1-9][0-9]*)\/([1-9][0-9]*)$/.exec(s.trim());
  if (!m) usage(`--shard must be I/N with 1 <= I <= N (e.g. 1/4), got ${JSON.stringify(s)}`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (index > count) usage(`--shard ${s}: shard index ${index} is above the shard count ${count}`);
  return { index, count };
}

function parseReporters(s: string): ReporterName[] {
  const rs = list(s) ?? [];
  for (const r of rs) if (!(REPORTERS as readonly string[]).includes(r)) usage(`unknown reporter ${JSON.stringify(r)} (choose from ${REPORTERS.join(', ')})`);
  return rs as ReporterName[];
}

/** Validate flags against the target; returns the run configuration. Throws UsageError (exit 2). */
export function buildRunConfig(a: Omit<ConformanceArgs, 'reporter' | 'out' | 'verbose' | 'list'>): RunConfig {
  const target = getTarget(a.target);
  if (!target) usage(`unknown target ${JSON.stringify(a.target)} (known: ${targetNames().join(', ')})`);
  const devices = list(a.device) ?? [...(target.defaultDevices ?? target.devices)];
  for (const d of devices) if (!target.devices.includes(d)) usage(`target ${target.name} has no device ${JSON.stringify(d)} (it has: ${target.devices.join(', ') || 'none'})`);
  const transports = (list(a.transport) ?? [...(target.defaultTransports ?? target.transports)]) as TransportName[];
  for (const t of transports) {
    if (!(TRANSPORTS as readonly string[]).includes(t)) usage(`unknown transport ${JSON.stringify(t)} (choose from ${TRANSPORTS.join(', ')})`);
    if (!target.transports.includes(t)) usage(`target ${target.name} does not provide transport ${t} (it provides: ${target.transports.join(', ')})`);
  }
  const rings = (list(a.ring) ?? [...target.rings]) as RingLayout[];
  for (const r of rings) {
    if (!(RING_LAYOUTS as readonly string[]).includes(r)) usage(`unknown ring layout ${JSON.stringify(r)} (choose from split, packed)`);
    if (!target.rings.includes(r)) usage(`target ${target.name} does not provide ${r} rings (it provides: ${target.rings.join(', ')})`);
  }
  let seed = DEFAULT_SEED;
  if (a.seed !== undefined) {
    single('seed', a.seed, "integer or 'random'");
    if (a.seed === 'random') seed = (Math.random() * 0x7fff_ffff) | 0;
    else if (/^-?[0-9]+$/.test(String(a.seed)) && Number.isSafeInteger(Number(a.seed))) seed = Number(a.seed) | 0;
    else usage(`--seed must be an integer or 'random', got ${JSON.stringify(a.seed)}`);
  }
  const runs = parseRuns(a.runs);
  if (a.check !== undefined) single('check', a.check, 'check id');
  if (a.check !== undefined && !registeredChecks().some((c) => c.id === a.check)) usage(`no check with id ${JSON.stringify(a.check)} (pvkit conformance --list shows them)`);
  return {
    target: target.name,
    devices,
    transports,
    rings,
    seed,
    runs,
    ...(a.grep !== undefined ? { grep: a.grep } : {}),
    ...(a.check !== undefined ? { check: a.check } : {}),
    ...(a.shard !== undefined ? { shard: parseShard(a.shard) } : {}),
    ...(a.path !== undefined ? { path: a.path } : {}),
  };
}

function progress(enabled: boolean) {
  let last = 0;
  return {
    onStart(c: { id: string }, _cfg: unknown, i: number, total: number) {
      if (!enabled) return;
      const now = Date.now();
      if (now - last < 50 && i > 0) return;
      last = now;
      process.stderr.write(`\r\x1b[K[${i + 1}/${total}] ${c.id}`);
    },
    done() {
      if (enabled) process.stderr.write('\r\x1b[K');
    },
  };
}

export async function conformanceMain(a: ConformanceArgs): Promise<number> {
  const reporters = parseReporters(a.reporter);
  if (a.target === 'qemu') prepareQemu(a);
  else if (a.qemu !== undefined || a['qemu-config'] !== undefined || a['qemu-args'] !== undefined) usage('--qemu, --qemu-config and --qemu-args need --target qemu');
  const cfg = buildRunConfig(a);
  const target = getTarget(cfg.target)!;
  const checks = registeredChecks();
  if (a.list) {
    for (const c of checks.filter((x) => selected(x, cfg))) {
      const why = cfg.devices.flatMap((device) => cfg.transports.flatMap((transport) => cfg.rings.map((ring) => notApplicable(c, target, { device, transport, ring })))).filter((x) => x === undefined).length;
      console.log(`${c.id}\t${c.side}\t${c.kind}\t${c.statements.join(',')}\t${why ? 'applies' : 'n/a here'}\t${c.title}`);
    }
    return 0;
  }
  const p = progress(process.stderr.isTTY === true && reporters.includes('console'));
  const trace = startCommandTrace(a.trace);
  const onStart: typeof p.onStart = (c, conf, ...rest) => (trace?.label(`${c.id} (${(conf as ResultConfig).device}/${(conf as ResultConfig).transport}/${(conf as ResultConfig).ring})`), p.onStart(c, conf, ...rest));
  const report = await runConformance(target, checks, cfg, { onStart });
  p.done();
  if (trace) console.error(trace.finish());
  return emit(report, reporters, a.out, a.verbose);
}

function emit(report: RunReport, reporters: readonly ReporterName[], out: string, verbose: boolean): number {
  const cat = catalog();
  if (reporters.includes('console')) process.stdout.write(consoleReport(report, cat, { verbose }));
  const files = writeReports(report, cat, reporters, out);
  if (files.length && reporters.includes('console')) console.log(`reports: ${files.join(', ')}`);
  return report.summary.requiredFailed > 0 ? 1 : 0;
}

/** `pvkit conformance merge DIR...`: merge shard reports (each DIR holds a conformance.json). */
export function mergeMain(dirs: readonly string[], reporter: string, out: string, verbose: boolean): number {
  const reporters = parseReporters(reporter);
  const reports: RunReport[] = [];
  for (const d of dirs) {
    const f = existsSync(d) && statSync(d).isDirectory() ? join(d, 'conformance.json') : d;
    if (!existsSync(f)) usage(`no conformance report at ${f}`);
    let parsed: RunReport;
    try {
      parsed = JSON.parse(readFileSync(f, 'utf8')) as RunReport;
    } catch (e) {
      usage(`${f} is not a conformance.json: ${(e as Error).message}`);
    }
    if (!parsed || !Array.isArray(parsed.results) || typeof parsed.target !== 'string') usage(`${f} is not a conformance.json (no target/results)`);
    reports.push(parsed);
  }
  return emit(mergeReports(reports), reporters, out, verbose);
}

const common = (y: Argv) =>
  y
    .option('reporter', { type: 'string', default: 'console,json,junit,html', describe: `comma list of ${REPORTERS.join(', ')}` })
    .option('out', { type: 'string', default: DEFAULT_OUT, describe: 'directory for conformance.json / .junit.xml / .html' })
    .option('verbose', { type: 'boolean', default: false, describe: 'list every result' });

export const conformanceCommand: CommandModule<object, ConformanceArgs & { dirs?: string[] }> = {
  command: 'conformance',
  describe: 'run the VIRTIO conformance checks against a target (merge: combine shard reports)',
  builder: (y) =>
    y
      .command({
        command: 'merge <dirs..>',
        describe: 'merge conformance.json reports (e.g. from --shard runs) into one report',
        builder: (yy: Argv) => common(yy).positional('dirs', { type: 'string', array: true, describe: 'directories (or files) holding conformance.json' }),
        handler: (args: { dirs?: string[]; reporter: string; out: string; verbose: boolean }) => {
          process.exitCode = mergeMain(args.dirs ?? [], args.reporter, args.out, args.verbose);
        },
      })
      .command({
        command: '$0',
        describe: 'run the conformance checks',
        builder: (yy: Argv) =>
          common(yy)
            .option('target', { type: 'string', default: 'sim', describe: 'target to check (sim: the built-in simulated devices)' })
            .option('device', { type: 'string', describe: 'comma list of device kinds (default: all the target has)' })
            .option('transport', { type: 'string', describe: `comma list of ${TRANSPORTS.join(', ')} (default: all the target has)` })
            .option('ring', { type: 'string', describe: 'comma list of split, packed (default: all the target has)' })
            .option('seed', { type: 'string', describe: `run seed: an integer or 'random' (default ${DEFAULT_SEED})` })
            .option('runs', { type: 'string', default: String(DEFAULT_RUNS), describe: 'fast-check runs per property check' })
            .option('grep', { type: 'string', describe: 'only checks whose id, title or statement ids contain TEXT' })
            .option('check', { type: 'string', describe: 'only the check with this exact id (replay)' })
            .option('shard', { type: 'string', describe: 'I/N: run the I-th of N deterministic shards (by check id hash)' })
            .option('path', { type: 'string', describe: 'fast-check replay path of a reported counterexample (with --check and --seed)' })
            .option('list', { type: 'boolean', default: false, describe: 'list the selected checks instead of running them' })
            .option('qemu', { type: 'string', describe: 'target qemu: QEMU binary (default $PVKIT_QEMU or qemu-system-x86_64)' })
            .option('qemu-config', { type: 'string', describe: 'target qemu: run every check on this built-in configuration (pvkit qemu list)' })
            .option('qemu-args', { type: 'string', describe: "target qemu: extra arguments for QEMU's command line" })
            .option('trace', TRACE_OPTION),
        handler: async (args: ConformanceArgs) => {
          process.exitCode = await conformanceMain(args);
        },
      }) as never,
  handler: () => {},
};
