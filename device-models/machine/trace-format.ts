/**
 * A checker for the Chrome trace-event "JSON Object Format" (the format Perfetto and
 * chrome://tracing import), written from the format's public description ("Trace Event Format",
 * Google, the document linked from the Catapult project). No JSON-schema library: the rules are
 * coded here, and each returns a message naming the event index and field.
 *
 * What is checked:
 * - the top level is an object with a `traceEvents` array; `displayTimeUnit`, when present, is
 *   'ms' or 'ns'; `otherData`, when present, is an object;
 * - every event is an object with a known one-character phase `ph`, a string `name` (E may omit
 *   it), integer `pid` and `tid`, a finite non-negative number `ts` (microseconds), and `args`,
 *   when present, an object; `cat`, when present, a string;
 * - complete events (X) carry a finite `dur` >= 0;
 * - instant events (i, and the legacy I) carry a scope `s` in g / p / t when they have one;
 * - B/E pairs balance per (pid, tid) as a stack: an E closes the latest open B of its thread, is
 *   not earlier than it, and (when it has a name) names it; nothing stays open at the end;
 * - counter events (C) have args whose values are all finite numbers;
 * - metadata events (M) are one of process_name / thread_name / process_sort_index /
 *   thread_sort_index / process_labels, with `args.name` (string) or `args.sort_index` (integer).
 */
const PHASES = new Set(['B', 'E', 'X', 'i', 'I', 'C', 'M', 'b', 'n', 'e', 's', 't', 'f', 'P', 'N', 'O', 'D', 'R', 'c', '(', ')']);
const META_NAMES = new Set(['process_name', 'thread_name', 'process_sort_index', 'thread_sort_index', 'process_labels']);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isFiniteNonNeg(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0;
}

/** Problems found in a parsed trace (empty: valid). Stops after `limit` problems. */
export function validateTrace(trace: unknown, limit = 50): string[] {
  const errs: string[] = [];
  const add = (m: string): boolean => {
    errs.push(m);
    return errs.length >= limit;
  };
  if (!isObject(trace)) return ['top level: expected a JSON object with traceEvents (JSON Object Format)'];
  if (!Array.isArray(trace.traceEvents)) return ['top level: traceEvents must be an array'];
  if ('displayTimeUnit' in trace && trace.displayTimeUnit !== 'ms' && trace.displayTimeUnit !== 'ns') {
    if (add(`displayTimeUnit must be "ms" or "ns", seen ${JSON.stringify(trace.displayTimeUnit)}`)) return errs;
  }
  if ('otherData' in trace && !isObject(trace.otherData)) {
    if (add('otherData must be an object')) return errs;
  }
  const open = new Map<string, { name: unknown; ts: number; i: number }[]>();
  const events = trace.traceEvents as unknown[];
  for (let i = 0; i < events.length; i++) {
    const e = events[i];
    const at = `traceEvents[${i}]`;
    if (!isObject(e)) {
      if (add(`${at}: not an object`)) return errs;
      continue;
    }
    const ph = e.ph;
    if (typeof ph !== 'string' || !PHASES.has(ph)) {
      if (add(`${at}: unknown phase ph=${JSON.stringify(ph)}`)) return errs;
      continue;
    }
    if (ph !== 'E' && typeof e.name !== 'string') if (add(`${at} (${ph}): name must be a string`)) return errs;
    if (ph === 'E' && 'name' in e && typeof e.name !== 'string') if (add(`${at} (E): name, when present, must be a string`)) return errs;
    if (!Number.isInteger(e.pid)) if (add(`${at}: pid must be an integer, seen ${JSON.stringify(e.pid)}`)) return errs;
    if (!Number.isInteger(e.tid)) if (add(`${at}: tid must be an integer, seen ${JSON.stringify(e.tid)}`)) return errs;
    if (ph !== 'M' || 'ts' in e) {
      if (!isFiniteNonNeg(e.ts)) if (add(`${at}: ts must be a finite number >= 0 (microseconds), seen ${JSON.stringify(e.ts)}`)) return errs;
    }
    if ('args' in e && !isObject(e.args)) if (add(`${at}: args must be an object`)) return errs;
    if ('cat' in e && typeof e.cat !== 'string') if (add(`${at}: cat must be a string`)) return errs;
    const key = `${String(e.pid)}/${String(e.tid)}`;
    switch (ph) {
      case 'X':
        if (!isFiniteNonNeg(e.dur)) if (add(`${at} (X): dur must be a finite number >= 0, seen ${JSON.stringify(e.dur)}`)) return errs;
        break;
      case 'i':
      case 'I':
        if ('s' in e && e.s !== 'g' && e.s !== 'p' && e.s !== 't') if (add(`${at} (${ph}): scope s must be g, p or t, seen ${JSON.stringify(e.s)}`)) return errs;
        break;
      case 'B': {
        let st = open.get(key);
        if (!st) open.set(key, (st = []));
        st.push({ name: e.name, ts: e.ts as number, i });
        break;
      }
      case 'E': {
        const st = open.get(key);
        const b = st?.pop();
        if (!b) {
          if (add(`${at} (E): no open B on pid/tid ${key}`)) return errs;
        } else {
          if (typeof e.ts === 'number' && e.ts < b.ts) if (add(`${at} (E): ends at ${e.ts} before its B (traceEvents[${b.i}]) at ${b.ts}`)) return errs;
          if (typeof e.name === 'string' && e.name !== b.name) if (add(`${at} (E): name ${JSON.stringify(e.name)} closes B ${JSON.stringify(b.name)} (traceEvents[${b.i}])`)) return errs;
        }
        break;
      }
      case 'C':
        if (!isObject(e.args) || Object.keys(e.args).length === 0) {
          if (add(`${at} (C): a counter needs args with at least one value`)) return errs;
        } else {
          for (const [k, v] of Object.entries(e.args)) if (typeof v !== 'number' || !Number.isFinite(v)) if (add(`${at} (C): counter ${k} must be a finite number, seen ${JSON.stringify(v)}`)) return errs;
        }
        break;
      case 'M': {
        if (typeof e.name !== 'string' || !META_NAMES.has(e.name)) {
          if (add(`${at} (M): unknown metadata name ${JSON.stringify(e.name)}`)) return errs;
          break;
        }
        const a = isObject(e.args) ? e.args : undefined;
        if (e.name.endsWith('_sort_index')) {
          if (!a || !Number.isInteger(a.sort_index)) if (add(`${at} (M ${e.name}): args.sort_index must be an integer`)) return errs;
        } else if (e.name === 'process_labels') {
          if (!a || typeof a.labels !== 'string') if (add(`${at} (M process_labels): args.labels must be a string`)) return errs;
        } else if (!a || typeof a.name !== 'string') {
          if (add(`${at} (M ${e.name}): args.name must be a string`)) return errs;
        }
        break;
      }
      default:
        break;
    }
  }
  for (const [key, st] of open) {
    for (const b of st) if (add(`traceEvents[${b.i}] (B ${JSON.stringify(b.name)}): never ended on pid/tid ${key}`)) return errs;
  }
  return errs;
}
