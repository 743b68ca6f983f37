import { describe, expect, it } from 'vitest';
import { calibrateCore2, calibrateModern } from './calibrate.ts';
import { CORE2_CAL, MODERN_CAL } from '../../device-models/machine/profile-data.ts';

/**
 * The calibrated constants in profile-data.ts must be what tools/pvmmu/calibrate.ts derives from
 * the named published cells with the current model; a model change that moves them fails here
 * (rerun `npx tsx tools/pvmmu/calibrate.ts` and update profile-data.ts).
 */
const close = (a: number, b: number) => Math.abs(a - b) / Math.abs(b) < 0.01;

describe('calibrations are reproducible', () => {
  it('2007-core2: native ctxsw -> guest.ctxsw, trunk ctxsw -> exit, QEMU ctxsw -> TCG factor, native hackbench-1 -> guest.msg', () => {
    const c = calibrateCore2({ hops: 2000 });
    expect(close(c.ctxsw, CORE2_CAL.ctxsw)).toBe(true);
    expect(close(c.exit, CORE2_CAL.exit)).toBe(true);
    expect(close(c.tcgFactor, CORE2_CAL.tcgFactor)).toBe(true);
    expect(close(c.msg, CORE2_CAL.msg)).toBe(true);
  });

  it('modern: Yong He 2 procs/11 roots -> guest.ctxsw, 3 procs/3 roots -> root miss', () => {
    const c = calibrateModern({ hops: 2000 });
    expect(close(c.ctxsw, MODERN_CAL.ctxsw)).toBe(true);
    expect(close(c.rootMiss, MODERN_CAL.rootMiss)).toBe(true);
  });
});
