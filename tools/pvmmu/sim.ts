import { Machine } from '../../device-models/machine/machine.ts';
import { costOf, EventCounts, type CostProfile } from '../../device-models/machine/cost.ts';
import { Hypervisor, type MmuMode } from '../../device-models/hypervisor/hypervisor.ts';
import { GuestKernel } from '../../drivers/paravirt/kernel.ts';
import { LatCtx, Hackbench } from '../../drivers/paravirt/workloads.ts';

/**
 * The simulation behind `pvkit pvmmu`: one machine, one hypervisor mode, one guest kernel and
 * one workload per cell; the figure is the counted events times the profile's constants.
 */
export const TABLE_MODES = ['native', 'full-emulation', 'shadow-nocache', 'shadow-cache', 'shadow-paravirt-cr3', 'ept'] as const;
export type TableMode = (typeof TABLE_MODES)[number];
export const WORKLOADS = ['ctxsw-2', 'hackbench-1', 'hackbench-5'] as const;
export type Workload = (typeof WORKLOADS)[number];

export interface CellResult {
  mode: TableMode;
  workload: Workload;
  value: number;
  unit: 'us' | 's';
  /** ctxsw: net events per context switch (ring minus lmbench's overhead loop); hackbench: totals. */
  events: Record<string, number>;
  /** Events the profile has no constant for (should be empty). */
  uncosted: string[];
}

export interface SimOptions {
  /** lat_ctx hops measured (default 4000). */
  hops?: number;
  /** hackbench loops (default 100, hackbench's own default). */
  loops?: number;
  kpti?: boolean;
}

export function hardwareOf(profile: CostProfile) {
  const h = profile.hardware;
  return {
    tlbEntries: h?.tlbEntries ?? 512,
    vpid: h?.vpid ?? true,
    cacheRoots: h?.shadowCacheRoots ?? 3,
    cr3TargetSlots: h?.cr3TargetSlots ?? 4,
  };
}

function modeOf(m: TableMode): MmuMode {
  if (m === 'shadow-nocache' || m === 'shadow-cache') return 'shadow';
  return m;
}

/** A booted machine + hypervisor + guest kernel for one table mode under a profile's hardware. */
export function bootCell(mode: TableMode, profile: CostProfile, opts: { kpti?: boolean; prevRoots?: number } = {}) {
  const hw = hardwareOf(profile);
  const m = new Machine({ profile: profile.name, exitsTakeTime: false });
  const prevRoots = opts.prevRoots ?? (mode === 'shadow-nocache' ? 0 : hw.cacheRoots);
  const hv = Hypervisor.attach(m, {
    mode: modeOf(mode),
    prevRoots,
    keepShadowPages: mode !== 'shadow-nocache',
    tlbEntries: hw.tlbEntries,
    vpid: hw.vpid,
    cr3TargetSlots: hw.cr3TargetSlots,
  });
  const k = new GuestKernel(m.platform, { kpti: opts.kpti ?? false, frames: 8192 });
  k.boot();
  return { m, hv, k };
}

function diffPer(a: Record<string, number>, b: Record<string, number>, n: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const v = ((a[key] ?? 0) - (b[key] ?? 0)) / n;
    if (v !== 0) out[key] = Math.round(v * 1000) / 1000;
  }
  return Object.fromEntries(Object.entries(out).sort(([x], [y]) => x.localeCompare(y)));
}

/** lat_ctx with `procs` processes: net cost per switch in µs and the net events per switch. */
export function latCtx(mode: TableMode, profile: CostProfile, procs: number, opts: SimOptions & { prevRoots?: number } = {}): { micros: number; events: Record<string, number>; uncosted: string[] } {
  const hops = opts.hops ?? 4000;
  const { m, k } = bootCell(mode, profile, opts);
  const lc = new LatCtx(k, procs);
  lc.ring(Math.max(200, procs * 20)); // warm up
  m.events.reset();
  lc.ring(hops);
  const ring = m.events.snapshot();
  const ringCost = costOf(m.events, profile);
  m.events.reset();
  lc.overhead(hops);
  const over = m.events.snapshot();
  const overCost = costOf(m.events, profile);
  const micros = (ringCost.micros - overCost.micros) / hops;
  return { micros, events: diffPer(ring, over, hops), uncosted: [...new Set([...ringCost.uncosted, ...overCost.uncosted])] };
}

export function hackbench(mode: TableMode, profile: CostProfile, groups: number, opts: SimOptions = {}): { seconds: number; events: Record<string, number>; uncosted: string[]; switches: number; messages: number } {
  const { m, k } = bootCell(mode, profile, opts);
  const hb = new Hackbench(k, { groups, loops: opts.loops ?? 100 });
  m.events.reset();
  const r = hb.run();
  const c = costOf(m.events, profile);
  return { seconds: c.micros / 1e6, events: m.events.snapshot(), uncosted: c.uncosted, switches: r.switches, messages: r.messages };
}

export function runCell(mode: TableMode, workload: Workload, profile: CostProfile, opts: SimOptions = {}): CellResult {
  if (workload === 'ctxsw-2') {
    const r = latCtx(mode, profile, 2, opts);
    return { mode, workload, value: r.micros, unit: 'us', events: r.events, uncosted: r.uncosted };
  }
  const r = hackbench(mode, profile, workload === 'hackbench-1' ? 1 : 5, opts);
  return { mode, workload, value: r.seconds, unit: 's', events: r.events, uncosted: r.uncosted };
}

export function runTable(profile: CostProfile, opts: SimOptions = {}): CellResult[] {
  const out: CellResult[] = [];
  for (const mode of TABLE_MODES) for (const w of WORKLOADS) out.push(runCell(mode, w, profile, opts));
  return out;
}

/** The previous-roots sweep (shadow paging, lat_ctx with 2..8 processes). */
export interface SweepRow {
  roots: number;
  kpti: boolean;
  procs: number;
  micros: number;
  rootMissesPerSwitch: number;
}

export function rootSweep(profile: CostProfile, opts: SimOptions = {}): SweepRow[] {
  const rows: SweepRow[] = [];
  for (const kpti of [false, true]) {
    for (const roots of [0, 3, 11]) {
      for (let procs = 2; procs <= 8; procs++) {
        const r = latCtx('shadow-cache', profile, procs, { ...opts, kpti, prevRoots: roots, hops: opts.hops ?? 2000 });
        rows.push({ roots, kpti, procs, micros: r.micros, rootMissesPerSwitch: (r.events['shadow.root_slow'] ?? 0) + (r.events['shadow.root_new'] ?? 0) });
      }
    }
  }
  return rows;
}

export { EventCounts };
