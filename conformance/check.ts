/**
 * Conformance check definitions.
 *
 * A check is one executable claim about one side of the virtio interface: it names the census
 * statement ids it covers (`statements: ['split.device.3', ...]`, a literal array so that the
 * traceability scanner can read it without running anything), the side it judges, where it
 * applies, and a `run` function that throws a CheckFailure when the side under test breaks one
 * of those statements. The same definition runs under vitest (conformance/vitest.ts) and under
 * `pvkit conformance` (conformance/runner.ts).
 *
 * Register a check by calling `defineCheck({...})` at the top level of a module imported by
 * conformance/checks/index.ts. Only checks registered this way count as "checked" in
 * `pvkit spec coverage`.
 */
import fc from 'fast-check';
import { PvkitError, type PvkitErrorDetails } from '../spec-refs/errors.ts';
import type { RingLayout, TargetContext, TransportName } from './target.ts';

export { RING_LAYOUTS, TRANSPORTS, type RingLayout, type TransportName } from './target.ts';

/** The side under test: the device (driven by reference or hostile drivers) or the driver (run against a checking device). */
export type JudgedSide = 'device' | 'driver';

export interface Applicability {
  /** Device kinds ('blk', 'net', ...); absent: any virtio device. */
  readonly devices?: readonly string[];
  /** Transports; absent: any. */
  readonly transports?: readonly TransportName[];
  /** Ring layouts; absent: any. */
  readonly rings?: readonly RingLayout[];
  /** Feature bits (numbers) the device must offer for the check to apply. */
  readonly features?: readonly number[];
}

export interface CheckDefinition {
  /** Stable id, lower-case, dotted: `<area>.<side>.<what>` e.g. `status.device.reset-clears`. */
  readonly id: string;
  readonly title: string;
  /** Census ids this check covers. Keep it a literal array of string literals (the scanner reads it). */
  readonly statements: readonly string[];
  readonly side: JudgedSide;
  readonly applies?: Applicability;
  /** property: fast-check over generated inputs (uses ctx.runs); example: fixed scenarios. */
  readonly kind: 'property' | 'example';
  run(ctx: TargetContext): void | Promise<void>;
}

export interface Check extends CheckDefinition {
  /** Area of the check, taken from its first statement id (`split.device.3` -> `split`). */
  readonly area: string;
}

export interface CheckFailureDetails extends PvkitErrorDetails {
  /** fast-check seed of the failing run. */
  readonly seed?: number;
  /** fast-check replay path of the shrunk counterexample. */
  readonly path?: string;
  /** The shrunk counterexample, printed. */
  readonly counterexample?: string;
  readonly numRuns?: number;
}

/** A check found the side under test breaking a statement. */
export class CheckFailure extends PvkitError {
  readonly seed: number | undefined;
  readonly path: string | undefined;
  readonly counterexample: string | undefined;
  /** The message without the expected/seen/statements suffix. */
  readonly summary: string;
  constructor(message: string, details: CheckFailureDetails = {}) {
    super('conformance.fail', message, details);
    this.summary = message;
    this.seed = details.seed;
    this.path = details.path;
    this.counterexample = details.counterexample;
  }
}

/** The check does not apply to this target after all (found at run time, e.g. a feature not offered). */
export class CheckSkip extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'CheckSkip';
  }
}

/** Throw a CheckFailure unless `cond` holds. */
export function expectThat(cond: boolean, statements: readonly string[], message: string, expected?: string, seen?: string): asserts cond {
  if (!cond) throw new CheckFailure(message, { statements, ...(expected !== undefined ? { expected } : {}), ...(seen !== undefined ? { seen } : {}) });
}

/** Throw a CheckFailure unless `seen === expected` (numbers shown in hex when `hex`). */
export function expectEqual<T>(seen: T, expected: T, statements: readonly string[], message: string, hexOut = false): void {
  if (!Object.is(seen, expected)) {
    const show = (v: T) => (hexOut && typeof v === 'number' ? '0x' + v.toString(16) : typeof v === 'bigint' ? '0x' + v.toString(16) : String(v));
    throw new CheckFailure(message, { statements, expected: show(expected), seen: show(seen) });
  }
}

/** Run `fn`; fail citing `statements` unless it throws an error of class `cls` (or any error when cls is omitted). */
export function expectThrows(fn: () => unknown, statements: readonly string[], message: string, cls?: abstract new (...a: never[]) => Error): Error {
  try {
    fn();
  } catch (e) {
    if (!cls || e instanceof cls) return e as Error;
    throw new CheckFailure(message, { statements, expected: cls.name, seen: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
  }
  throw new CheckFailure(message, { statements, expected: cls ? `a ${cls.name}` : 'an error', seen: 'no error' });
}

/**
 * Run a fast-check property with the context's seed and runs. On failure throw a CheckFailure
 * carrying the seed, the replay path and the shrunk counterexample, and the statements of the
 * inner CheckFailure (or `statements` when the property failed some other way).
 */
export function checkProperty<Ts extends [unknown, ...unknown[]]>(ctx: Pick<TargetContext, 'seed' | 'runs' | 'path'>, statements: readonly string[], arbs: { [K in keyof Ts]: fc.Arbitrary<Ts[K]> }, predicate: (...args: Ts) => void): void {
  const prop = fc.property(...(arbs as unknown as [fc.Arbitrary<unknown>]), predicate as unknown as (...a: unknown[]) => void);
  const params: fc.Parameters<unknown> = { seed: ctx.seed, numRuns: ctx.runs };
  if (ctx.path !== undefined) Object.assign(params, { path: ctx.path, endOnFailure: true });
  const r = fc.check(prop as fc.IProperty<unknown>, params);
  if (!r.failed) return;
  const inner = r.errorInstance;
  // a property that finds the check does not apply (e.g. it drives registers this transport lacks) skips, it does not fail
  if (inner instanceof CheckSkip) throw inner;
  const cx = r.counterexample ? fc.stringify(r.counterexample) : undefined;
  const innerStatements = inner instanceof PvkitError && inner.statements.length > 0 ? inner.statements : statements;
  const base = inner instanceof CheckFailure ? inner.summary : inner instanceof Error ? inner.message : `property failed: ${String(inner)}`;
  throw new CheckFailure(base, {
    statements: innerStatements,
    ...(inner instanceof PvkitError && inner.expected !== undefined ? { expected: inner.expected } : {}),
    ...(inner instanceof PvkitError && inner.seen !== undefined ? { seen: inner.seen } : {}),
    seed: r.seed,
    path: r.counterexamplePath ?? undefined,
    ...(cx !== undefined ? { counterexample: cx } : {}),
    numRuns: r.numRuns,
  });
}

const registry: Check[] = [];
const ID_RE = /^[a-z0-9_]+(\.[a-z0-9_-]+)+$/;
const STATEMENT_RE = /^[a-z_]+\.(driver|device)\.[1-9][0-9]*$/;

/** Define and register a check. Throws on a malformed or duplicate id (a programming error). */
export function defineCheck(def: CheckDefinition): Check {
  if (!ID_RE.test(def.id)) throw new Error(`check id ${JSON.stringify(def.id)} is not lower-case dotted`);
  if (registry.some((c) => c.id === def.id)) throw new Error(`check id ${def.id} is defined twice`);
  if (def.statements.length === 0) throw new Error(`check ${def.id} cites no statements`);
  for (const s of def.statements) if (!STATEMENT_RE.test(s)) throw new Error(`check ${def.id} cites malformed statement id ${JSON.stringify(s)}`);
  const check: Check = { ...def, area: def.statements[0]!.split('.')[0]! };
  registry.push(check);
  return check;
}

/** Every registered check, in registration order. Import conformance/checks/index.ts first. */
export function registeredChecks(): readonly Check[] {
  return registry;
}

/** For tests of the framework itself: define a check without registering it. */
export function makeCheck(def: CheckDefinition): Check {
  return { ...def, area: def.statements[0]?.split('.')[0] ?? 'none' };
}
