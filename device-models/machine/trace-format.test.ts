import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { validateTrace } from './trace-format.ts';
import { Tracer } from './trace.ts';

const ok = (traceEvents: unknown[]) => ({ traceEvents, displayTimeUnit: 'ns' });
const X = { name: 'a', ph: 'X', ts: 1, dur: 2, pid: 1, tid: 1 };

describe('validateTrace (trace-event JSON Object Format)', () => {
  it('accepts the forms pvkit writes', () => {
    expect(
      validateTrace(
        ok([
          { name: 'process_name', ph: 'M', pid: 1, tid: 0, args: { name: 'p' } },
          { name: 'thread_sort_index', ph: 'M', ts: 0, pid: 1, tid: 2, args: { sort_index: 2 } },
          X,
          { name: 'b', ph: 'B', ts: 3, pid: 1, tid: 2 },
          { name: 'c', ph: 'B', ts: 3, pid: 1, tid: 2 },
          { ph: 'E', ts: 4, pid: 1, tid: 2 },
          { name: 'b', ph: 'E', ts: 4, pid: 1, tid: 2 },
          { name: 'irq', ph: 'i', s: 't', ts: 5, pid: 1, tid: 3, args: { vector: 37 } },
          { name: 'q', ph: 'C', ts: 5, pid: 1, tid: 0, args: { inflight: 3 } },
        ]),
      ),
    ).toEqual([]);
  });

  it.each([
    ['not an object', [], /JSON object/],
    ['no traceEvents', { displayTimeUnit: 'ns' }, /traceEvents must be an array/],
    ['bad displayTimeUnit', { traceEvents: [], displayTimeUnit: 'us' }, /displayTimeUnit/],
    ['unknown phase', ok([{ ...X, ph: 'Z' }]), /unknown phase/],
    ['X without dur', ok([{ ...X, dur: undefined }]), /dur must be/],
    ['negative dur', ok([{ ...X, dur: -1 }]), /dur must be/],
    ['ts missing', ok([{ ...X, ts: undefined }]), /ts must be/],
    ['ts NaN as string', ok([{ ...X, ts: '1' }]), /ts must be/],
    ['pid not an integer', ok([{ ...X, pid: 'machine' }]), /pid must be an integer/],
    ['tid fractional', ok([{ ...X, tid: 1.5 }]), /tid must be an integer/],
    ['name missing', ok([{ ...X, name: undefined }]), /name must be a string/],
    ['args not an object', ok([{ ...X, args: [1] }]), /args must be an object/],
    ['instant with bad scope', ok([{ name: 'i', ph: 'i', s: 'x', ts: 0, pid: 1, tid: 1 }]), /scope s/],
    ['E without B', ok([{ name: 'b', ph: 'E', ts: 0, pid: 1, tid: 1 }]), /no open B/],
    ['B never ended', ok([{ name: 'b', ph: 'B', ts: 0, pid: 1, tid: 1 }]), /never ended/],
    ['E before its B', ok([{ name: 'b', ph: 'B', ts: 5, pid: 1, tid: 1 }, { name: 'b', ph: 'E', ts: 4, pid: 1, tid: 1 }]), /before its B/],
    ['E closes another name', ok([{ name: 'b', ph: 'B', ts: 5, pid: 1, tid: 1 }, { name: 'c', ph: 'E', ts: 6, pid: 1, tid: 1 }]), /closes B/],
    ['E on another thread', ok([{ name: 'b', ph: 'B', ts: 5, pid: 1, tid: 1 }, { name: 'b', ph: 'E', ts: 6, pid: 1, tid: 2 }]), /no open B/],
    ['counter with a string', ok([{ name: 'c', ph: 'C', ts: 0, pid: 1, tid: 0, args: { n: 'x' } }]), /counter n/],
    ['unknown metadata', ok([{ name: 'colour', ph: 'M', pid: 1, tid: 0, args: { name: 'x' } }]), /unknown metadata/],
    ['thread_name without args.name', ok([{ name: 'thread_name', ph: 'M', pid: 1, tid: 0, args: {} }]), /args.name/],
  ])('rejects %s', (_what, trace, msg) => {
    const errs = validateTrace(trace);
    expect(errs.length).toBeGreaterThan(0);
    expect(errs.join('\n')).toMatch(msg);
  });

  // Any sequence of tracer calls that nests its B/E properly yields a valid file; dropping one
  // E from it (a classic writer bug) is always caught.
  const op = fc.oneof(
    fc.record({ k: fc.constant('x' as const), track: fc.integer({ min: 0, max: 3 }), dur: fc.nat(5000) }),
    fc.record({ k: fc.constant('i' as const), track: fc.integer({ min: 0, max: 3 }) }),
    fc.record({ k: fc.constant('slice' as const), track: fc.integer({ min: 0, max: 3 }), depth: fc.integer({ min: 1, max: 3 }) }),
    fc.record({ k: fc.constant('c' as const), v: fc.integer() }),
    fc.record({ k: fc.constant('tick' as const), ns: fc.nat(10_000) }),
  );
  it('tracer output is always valid, and losing one E is always caught (property)', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), fc.nat(), (ops, pick) => {
        const t = new Tracer();
        let now = 0;
        for (const o of ops) {
          if (o.k === 'tick') now += o.ns;
          else if (o.k === 'x') t.complete(`t${o.track}`, 'x', now, o.dur);
          else if (o.k === 'i') t.instant(`t${o.track}`, 'i', now);
          else if (o.k === 'c') t.counter('c', now, { v: o.v });
          else {
            for (let d = 0; d < o.depth; d++) t.begin(`t${o.track}`, `s${d}`, now);
            now += 1; // callers record in time order (the machine's clock never goes back)
            for (let d = o.depth - 1; d >= 0; d--) t.end(`t${o.track}`, `s${d}`, now);
          }
        }
        const json = JSON.parse(JSON.stringify(t.toJSON()));
        expect(validateTrace(json)).toEqual([]);
        const ends = json.traceEvents.map((e: { ph: string }, i: number) => (e.ph === 'E' ? i : -1)).filter((i: number) => i >= 0);
        if (ends.length > 0) {
          json.traceEvents.splice(ends[pick % ends.length], 1);
          expect(validateTrace(json).length).toBeGreaterThan(0);
        }
      }),
    );
  });
});
