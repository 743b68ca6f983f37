import type { CostConstant, CostProfile } from '../../device-models/machine/cost.ts';
import { getProfile } from '../../device-models/machine/profiles.ts';
import '../../device-models/machine/profile-data.ts';
import { latCtx, hackbench, type SimOptions } from './sim.ts';
import { MOLNAR07, YONGHE24 } from './published.ts';

/**
 * Reproduce the calibrated constants of device-models/machine/profile-data.ts. Each calibration
 * solves one cell, which is linear in one constant: run the cell with the constant at 0 and at 1,
 * then solve value(x) = target. The order matters (later calibrations use earlier results).
 */
function withConstants(p: CostProfile, set: Record<string, number>): CostProfile {
  const constants: Record<string, CostConstant> = { ...p.constants };
  for (const [k, v] of Object.entries(set)) constants[k] = { cycles: v, source: 'calibration probe' };
  return { ...p, constants };
}

function solve(p: CostProfile, keys: string[], cell: (q: CostProfile) => number, target: number, base: Record<string, number> = {}): number {
  const at = (x: number) => cell(withConstants(p, { ...base, ...Object.fromEntries(keys.map((k) => [k, x])) }));
  const v0 = at(0);
  const v1 = at(1000);
  return ((target - v0) / (v1 - v0)) * 1000;
}

export interface Core2Calibration {
  ctxsw: number;
  exit: number;
  tcgFactor: number;
  msg: number;
}

const EXIT_KEYS = ['exit.EXCEPTION_NMI', 'exit.EXTERNAL_INTERRUPT', 'exit.INTERRUPT_WINDOW', 'exit.CPUID', 'exit.HLT', 'exit.INVLPG', 'exit.VMCALL', 'exit.CR_ACCESS', 'exit.IO_INSTRUCTION', 'exit.MSR_READ', 'exit.MSR_WRITE', 'exit.EPT_VIOLATION', 'exit.EPT_MISCONFIG'];

export function calibrateCore2(opts: SimOptions = {}): Core2Calibration {
  const p = getProfile('2007-core2');
  const m = MOLNAR07;
  const ctxsw = solve(p, ['guest.ctxsw'], (q) => latCtx('native', q, 2, opts).micros, m.native!['ctxsw-2']);
  const b1 = { 'guest.ctxsw': ctxsw };
  const exit = solve(p, EXIT_KEYS, (q) => latCtx('shadow-cache', q, 2, opts).micros, m['shadow-cache']!['ctxsw-2'], b1);
  const tcg = solve(p, ['tcg.ctxsw'], (q) => latCtx('full-emulation', q, 2, opts).micros, m['full-emulation']!['ctxsw-2'], b1);
  const msg = solve(p, ['guest.msg'], (q) => hackbench('native', q, 1, opts).seconds, m.native!['hackbench-1'], b1);
  return { ctxsw, exit, tcgFactor: tcg / ctxsw, msg };
}

export interface ModernCalibration {
  ctxsw: number;
  rootMiss: number;
}

export function calibrateModern(opts: SimOptions = {}): ModernCalibration {
  const p = getProfile('modern');
  const cell = (procs: number, roots: number) => (q: CostProfile) => latCtx('shadow-cache', q, procs, { ...opts, kpti: true, prevRoots: roots }).micros;
  const ctxsw = solve(p, ['guest.ctxsw'], cell(2, 11), YONGHE24[11][0]!);
  const rootMiss = solve(p, ['shadow.root_slow'], cell(3, 3), YONGHE24[3][1]!, { 'guest.ctxsw': ctxsw });
  return { ctxsw, rootMiss };
}

const isMain = import.meta.url === `file://${process.argv[1]}`;
if (isMain) {
  const c = calibrateCore2();
  console.log('2007-core2:', JSON.stringify({ ctxsw: Math.round(c.ctxsw), exit: Math.round(c.exit), tcgFactor: Math.round(c.tcgFactor * 100) / 100, msg: Math.round(c.msg) }));
  const mo = calibrateModern();
  console.log('modern:', JSON.stringify({ ctxsw: Math.round(mo.ctxsw), rootMiss: Math.round(mo.rootMiss) }));
}
