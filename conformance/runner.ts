/**
 * The conformance runner: picks the checks that apply to a target configuration, runs each with
 * a seed derived from the run's seed and the check id, and collects pass / fail / skip / xfail
 * results with what is needed to replay a failure.
 *
 * Statuses:
 * - pass: the check ran and found nothing wrong.
 * - fail: the side under test broke a statement (or the check crashed: message says so).
 * - skip: the check does not apply to this configuration (with the reason).
 * - xfail: the target lists the check as an expected failure (with the recorded reason) and it failed.
 *   A check listed as xfail that passes is reported as a failure ("unexpected pass"), so the list
 *   cannot go stale.
 *
 * A failure is *required* when the statements it cites (the failing statements the check names
 * in its CheckFailure, else all the check's statements) include a MUST / MUST NOT / SHALL statement
 * or one the catalog does not know yet. A failure citing only SHOULD / MAY statements is reported
 * (status fail, marked advisory) but does not make the run fail.
 */
import { catalog, isMandatory, SPEC_NAME, type Catalog } from '../spec-refs/catalog.ts';
import { PvkitError } from '../spec-refs/errors.ts';
import { CheckFailure, CheckSkip, RING_LAYOUTS, type Check, type RingLayout, type TransportName } from './check.ts';
import type { DeviceUnderTest, Target, TargetContext } from './target.ts';

export type Status = 'pass' | 'fail' | 'skip' | 'xfail';

export interface ResultConfig {
  readonly device: string;
  readonly transport: TransportName;
  readonly ring: RingLayout;
}

export interface CheckResult {
  readonly id: string;
  readonly title: string;
  readonly area: string;
  readonly side: 'device' | 'driver';
  readonly statements: readonly string[];
  readonly config: ResultConfig;
  readonly status: Status;
  readonly required: boolean;
  readonly durationMs: number;
  /** The run's seed (what to pass to --seed to replay). */
  readonly seed?: number;
  /** fast-check's seed for this check (derived from the run's seed and the check id). */
  readonly fcSeed?: number;
  /** fast-check replay path of the shrunk counterexample. */
  readonly path?: string;
  readonly counterexample?: string;
  /** Failure or skip/xfail reason. */
  readonly message?: string;
  readonly expected?: string;
  readonly seen?: string;
  /** Statements the failure cites (a subset of `statements`, or all of them). */
  readonly failedStatements?: readonly string[];
  /** Command line that replays this result. */
  readonly replay?: string;
  readonly notes?: readonly string[];
}

export interface RunConfig {
  readonly target: string;
  readonly devices: readonly string[];
  readonly transports: readonly TransportName[];
  readonly rings: readonly RingLayout[];
  readonly seed: number;
  readonly runs: number;
  readonly grep?: string;
  readonly check?: string;
  readonly shard?: { readonly index: number; readonly count: number };
  readonly path?: string;
}

export interface Summary {
  passed: number;
  failed: number;
  skipped: number;
  xfail: number;
  /** Failures of required checks (decides the exit code). */
  requiredFailed: number;
}

export interface RunReport {
  readonly target: string;
  readonly spec: string;
  readonly config: RunConfig;
  readonly summary: Summary;
  readonly results: readonly CheckResult[];
  readonly durationMs: number;
  /** Set when this report merges shard reports. */
  readonly merged?: number;
}

/** FNV-1a, 32-bit: a stable hash for shards and seeds. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Deterministic shard of a check: 1-based, by hash of the check id (the same id lands in the same shard on every run). */
export function shardOf(id: string, count: number): number {
  return (fnv1a(id) % count) + 1;
}

export function deriveSeed(runSeed: number, id: string, cfg: ResultConfig): number {
  return fnv1a(`${runSeed >>> 0}:${id}:${cfg.device}/${cfg.transport}/${cfg.ring}`) | 0;
}

export function isRequired(statements: readonly string[], cat: Catalog = catalog()): boolean {
  return statements.some((s) => {
    const e = cat.byId(s);
    return e === undefined || isMandatory(e.keyword);
  });
}

export function summarize(results: readonly CheckResult[]): Summary {
  const s: Summary = { passed: 0, failed: 0, skipped: 0, xfail: 0, requiredFailed: 0 };
  for (const r of results) {
    if (r.status === 'pass') s.passed++;
    else if (r.status === 'fail') {
      s.failed++;
      if (r.required) s.requiredFailed++;
    } else if (r.status === 'skip') s.skipped++;
    else s.xfail++;
  }
  return s;
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=,@+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function replayCommand(target: string, id: string, cfg: ResultConfig, seed: number, runs: number, path?: string): string {
  const parts = ['pvkit', 'conformance', '--target', target, '--device', cfg.device, '--transport', cfg.transport, '--ring', cfg.ring, '--check', id, '--seed', String(seed), '--runs', String(runs)];
  if (path) parts.push('--path', path);
  return parts.map(shellQuote).join(' ');
}

/** Whether a check is selected by --check / --grep / --shard (applicability is decided per configuration). */
export function selected(c: Check, cfg: Pick<RunConfig, 'grep' | 'check' | 'shard'>): boolean {
  if (cfg.check !== undefined && c.id !== cfg.check) return false;
  if (cfg.grep !== undefined) {
    const g = cfg.grep.toLowerCase();
    const hay = [c.id, c.title, ...c.statements].join(' ').toLowerCase();
    if (!hay.includes(g)) return false;
  }
  if (cfg.shard && shardOf(c.id, cfg.shard.count) !== cfg.shard.index) return false;
  return true;
}

/** Why a check does not apply to a configuration, or undefined when it does. */
export function notApplicable(c: Check, target: Target, cfg: ResultConfig): string | undefined {
  const a = c.applies;
  if (c.side === 'driver' && !target.runsDriverChecks) return `driver-side checks need a simulated checking device; target ${target.name} has none`;
  if (a?.devices && !a.devices.includes(cfg.device)) return `applies to ${a.devices.join('/')} devices only`;
  if (a?.transports && !a.transports.includes(cfg.transport)) return `applies to ${a.transports.join('/')} only`;
  if (a?.rings && !a.rings.includes(cfg.ring)) return `applies to ${a.rings.join('/')} rings only`;
  if (a?.features && target.offeredFeatures) {
    const offered = target.offeredFeatures(cfg.device);
    if (offered !== undefined) {
      const missing = a.features.filter((b) => (offered & (1n << BigInt(b))) === 0n);
      if (missing.length) return `device does not offer feature bit(s) ${missing.join(', ')}`;
    }
  }
  if (cfg.ring === 'packed' && target.offeredFeatures) {
    const offered = target.offeredFeatures(cfg.device);
    if (offered !== undefined && (offered & (1n << 34n)) === 0n) return 'device does not offer VIRTIO_F_RING_PACKED';
  }
  return undefined;
}

export interface RunHooks {
  /** Called before each check runs and after each result. */
  onStart?(c: Check, cfg: ResultConfig, index: number, total: number): void;
  onResult?(r: CheckResult, index: number, total: number): void;
}

/** Run one check in one configuration and classify the outcome. */
export async function runOne(c: Check, target: Target, cfg: ResultConfig, run: Pick<RunConfig, 'seed' | 'runs' | 'path'>, cat: Catalog = catalog()): Promise<CheckResult> {
  const base = { id: c.id, title: c.title, area: c.area, side: c.side, statements: c.statements, config: cfg, required: isRequired(c.statements, cat) };
  const na = notApplicable(c, target, cfg);
  if (na) return { ...base, status: 'skip', durationMs: 0, message: na };
  const fcSeed = deriveSeed(run.seed, c.id, cfg);
  const devices: DeviceUnderTest[] = [];
  const notes: string[] = [];
  const ctx: TargetContext = {
    target,
    device: cfg.device,
    transport: cfg.transport,
    ring: cfg.ring,
    seed: fcSeed,
    runs: c.kind === 'property' ? run.runs : 1,
    ...(run.path !== undefined ? { path: run.path } : {}),
    newDevice: (opts) => {
      const d = target.newDevice(cfg.device, cfg.transport, opts, cfg.ring);
      devices.push(d);
      return d;
    },
    note: (m) => void notes.push(m),
  };
  const t0 = performance.now();
  let outcome: { ok: true } | { ok: false; err: unknown } | { skip: string };
  try {
    await c.run(ctx);
    outcome = { ok: true };
  } catch (e) {
    outcome = e instanceof CheckSkip ? { skip: e.reason } : { ok: false, err: e };
  } finally {
    for (const d of devices) {
      try {
        d.dispose();
      } catch {
        /* a device that fails to dispose must not hide the result */
      }
    }
  }
  const durationMs = Math.round((performance.now() - t0) * 100) / 100;
  const extra = notes.length ? { notes } : {};
  if ('skip' in outcome) return { ...base, status: 'skip', durationMs, message: outcome.skip, ...extra };
  const xfailReason = target.xfail[c.id];
  if (outcome.ok) {
    if (xfailReason !== undefined) {
      return { ...base, status: 'fail', durationMs, seed: run.seed, fcSeed, message: `unexpected pass: target ${target.name} lists this check as an expected failure (${xfailReason}); remove the xfail entry`, replay: replayCommand(target.name, c.id, cfg, run.seed, run.runs), ...extra };
    }
    return { ...base, status: 'pass', durationMs, ...extra };
  }
  const e = outcome.err;
  const f = e instanceof CheckFailure ? e : undefined;
  const pe = e instanceof PvkitError ? e : undefined;
  const message = f ? f.summary : e instanceof Error ? `${pe ? '' : 'check crashed: '}${e.name}: ${e.message}` : `check crashed: ${String(e)}`;
  const failedStatements = pe && pe.statements.length ? pe.statements : c.statements;
  const r: CheckResult = {
    ...base,
    required: isRequired(failedStatements, cat),
    status: xfailReason !== undefined ? 'xfail' : 'fail',
    durationMs,
    seed: run.seed,
    fcSeed: f?.seed ?? fcSeed,
    ...(f?.path ? { path: f.path } : {}),
    ...(f?.counterexample !== undefined ? { counterexample: f.counterexample } : {}),
    message: xfailReason !== undefined ? `expected failure (${xfailReason}): ${message}` : message,
    ...(pe?.expected !== undefined ? { expected: pe.expected } : {}),
    ...(pe?.seen !== undefined ? { seen: pe.seen } : {}),
    failedStatements,
    replay: replayCommand(target.name, c.id, cfg, run.seed, run.runs, f?.path),
    ...extra,
  };
  return r;
}

/** The configurations a run covers, in a stable order. */
export function configurations(target: Target, cfg: Pick<RunConfig, 'devices' | 'transports' | 'rings'>): ResultConfig[] {
  const out: ResultConfig[] = [];
  for (const device of cfg.devices) for (const transport of cfg.transports) for (const ring of RING_LAYOUTS) if (cfg.rings.includes(ring)) out.push({ device, transport, ring });
  return out;
}

export async function runConformance(target: Target, checks: readonly Check[], cfg: RunConfig, hooks: RunHooks = {}, cat: Catalog = catalog()): Promise<RunReport> {
  const t0 = performance.now();
  const chosen = checks.filter((c) => selected(c, cfg));
  const configs = configurations(target, cfg);
  // A check runs in every configuration it applies to. Configurations it cannot apply to (another
  // transport's check, a packed-only rule on a split run) yield no result; a check that applies to
  // none of the run's configurations is reported once, as skipped, with the reason.
  const plan: Array<[ResultConfig, Check]> = [];
  for (const conf of configs) for (const c of chosen) if (notApplicable(c, target, conf) === undefined) plan.push([conf, c]);
  for (const c of chosen) if (configs.length > 0 && !plan.some(([, p]) => p === c)) plan.push([configs[0]!, c]);
  const total = plan.length;
  const results: CheckResult[] = [];
  let i = 0;
  for (const [conf, c] of plan) {
    hooks.onStart?.(c, conf, i, total);
    const r = await runOne(c, target, conf, cfg, cat);
    results.push(r);
    hooks.onResult?.(r, ++i, total);
  }
  return { target: target.name, spec: SPEC_NAME, config: cfg, summary: summarize(results), results, durationMs: Math.round(performance.now() - t0) };
}

/** Merge shard reports (same target) into one; results are keyed by check id and configuration. */
export function mergeReports(reports: readonly RunReport[]): RunReport {
  if (reports.length === 0) throw new PvkitError('usage.merge', 'nothing to merge: no conformance.json found');
  const targetsSeen = new Set(reports.map((r) => r.target));
  if (targetsSeen.size > 1) throw new PvkitError('usage.merge', 'cannot merge reports of different targets', { seen: [...targetsSeen].join(', ') });
  const byKey = new Map<string, CheckResult>();
  for (const rep of reports) {
    for (const r of rep.results) {
      const k = `${r.id}@${r.config.device}/${r.config.transport}/${r.config.ring}`;
      const prev = byKey.get(k);
      // a check that ran in one shard and was filtered out in none should appear once; keep the most informative
      if (!prev || (prev.status === 'skip' && r.status !== 'skip')) byKey.set(k, r);
    }
  }
  const results = [...byKey.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const first = reports[0]!;
  const { shard: _shard, ...rest } = first.config;
  return { target: first.target, spec: first.spec, config: rest, summary: summarize(results), results, durationMs: reports.reduce((n, r) => n + r.durationMs, 0), merged: reports.length };
}
