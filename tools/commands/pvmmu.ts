import type { CommandModule } from 'yargs';
import { getProfile, profileNames } from '../../device-models/machine/profiles.ts';
import '../../device-models/machine/profile-data.ts';
import type { CostProfile } from '../../device-models/machine/cost.ts';
import { runTable, rootSweep, TABLE_MODES, WORKLOADS, type CellResult, type SimOptions, type SweepRow } from '../pvmmu/sim.ts';
import { MOLNAR07, YONGHE24 } from '../pvmmu/published.ts';
import { CliUsageError } from './usage.ts';

/**
 * `pvkit pvmmu`: the 2007 kvm-paravirt table reproduced from simulation (counted events x the
 * profile's constants), with the published figures beside it, calibrated cells marked, and the
 * previous-roots sweep under the modern profile.
 */
interface Args {
  profile: string;
  json: boolean;
  quick: boolean;
  sweep: boolean;
}

const ALIASES: Record<string, string> = { '2007': '2007-core2' };

export function resolveProfile(name: string): CostProfile {
  const n = ALIASES[name] ?? name;
  if (!profileNames().includes(n)) throw new CliUsageError(`unknown profile '${name}' (known: 2007, ${profileNames().join(', ')})`);
  return getProfile(n);
}

function fmt(v: number, unit: 'us' | 's'): string {
  if (unit === 's') return v >= 10 ? v.toFixed(1) : v.toFixed(2);
  return v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

function pct(sim: number, pub: number): string {
  const d = ((sim - pub) / pub) * 100;
  return `${d >= 0 ? '+' : ''}${d.toFixed(0)}%`;
}

const LABEL: Record<string, string> = {
  native: 'native',
  'full-emulation': 'full emulation',
  'shadow-nocache': 'shadow, no root cache',
  'shadow-cache': 'shadow, root cache',
  'shadow-paravirt-cr3': 'shadow + paravirt cr3 cache',
  ept: 'EPT',
};
/** The column names of the 2007 table each row stands for. */
const LABEL_2007: Record<string, string> = {
  'full-emulation': ' (QEMU)',
  'shadow-nocache': ' (KVM upstream)',
  'shadow-cache': ' (KVM trunk)',
  'shadow-paravirt-cr3': ' (trunk + pv)',
};

export function renderTable(profile: CostProfile, results: CellResult[]): string {
  const cal = new Set(profile.calibrationPoints ?? []);
  const lines: string[] = [];
  const hw = profile.hardware;
  lines.push(`pvkit pvmmu: profile ${profile.name} (${profile.description}; ${profile.ghz} GHz)`);
  if (hw && !hw.ept) lines.push('  the EPT row is hypothetical under this profile: the CPU it models has no EPT (Nehalem, 2008, was the first)');
  lines.push('');
  const head = ['mode'.padEnd(42), ...WORKLOADS.map((w) => `${w} (${w === 'ctxsw-2' ? 'us' : 's'})`.padEnd(26))].join('');
  lines.push(head);
  lines.push(['', ...WORKLOADS.map(() => 'sim     published  diff'.padEnd(26))].join('').padStart(42 + 26 * 3));
  for (const mode of TABLE_MODES) {
    const cells = WORKLOADS.map((w) => {
      const r = results.find((x) => x.mode === mode && x.workload === w)!;
      const pub = profile.name === '2007-core2' ? MOLNAR07[mode]?.[w] : undefined;
      const tag = cal.has(`${mode}/${w}`) ? 'calib.' : pub !== undefined ? pct(r.value, pub) : '';
      return `${fmt(r.value, r.unit).padStart(7)} ${(pub !== undefined ? fmt(pub, r.unit) : '-').padStart(9)}  ${tag.padEnd(7)}`.padEnd(26);
    });
    const label = LABEL[mode]! + (profile.name === '2007-core2' ? (LABEL_2007[mode] ?? '') : '');
    lines.push([label.padEnd(42), ...cells].join(''));
  }
  lines.push('');
  if (profile.name === '2007-core2') lines.push('published: Molnar, kvm-paravirt announcement, lkml, January 2007. calib. = a profile constant was calibrated on this cell (not a prediction); every other cell is a prediction.');
  else lines.push('published: the 2007 figures are shown only under --profile 2007; no published table exists for this profile, every cell is a model output.');
  lines.push('');
  lines.push('events counted (ctxsw-2: per switch, ring minus lmbench overhead loop; hackbench: totals)');
  for (const r of results) {
    const ev = Object.entries(r.events)
      .filter(([, n]) => n !== 0)
      .map(([k, n]) => `${k}=${Number.isInteger(n) ? n : n.toFixed(2)}`)
      .join(' ');
    lines.push(`  ${r.mode}/${r.workload}: ${ev}`);
    if (r.uncosted.length > 0) lines.push(`    (no constant in this profile for: ${r.uncosted.join(', ')})`);
  }
  return lines.join('\n');
}

export function renderSweep(rows: SweepRow[]): string {
  const lines: string[] = [];
  lines.push('previous-roots sweep (profile modern, shadow paging, lmbench lat_ctx, us per switch)');
  const procs = [2, 3, 4, 5, 6, 7, 8];
  lines.push(['roots  kpti ', ...procs.map((p) => `${p} procs`.padStart(9))].join(''));
  for (const kpti of [false, true]) {
    for (const roots of [0, 3, 11]) {
      const sel = rows.filter((r) => r.kpti === kpti && r.roots === roots);
      lines.push([`${String(roots).padStart(5)}  ${kpti ? 'yes ' : 'no  '} `, ...procs.map((p) => sel.find((r) => r.procs === p)!.micros.toFixed(2).padStart(9))].join(''));
      if (kpti && (roots === 3 || roots === 11)) {
        const pub = YONGHE24[roots];
        lines.push([`  published      `, ...pub.map((v) => v.toFixed(2).padStart(9))].join('').replace(/^ {2}published {6}/, '  (Yong He 2024)'));
        const cal = (p: number) => (roots === 11 && p === 2) || (roots === 3 && p === 3);
        lines.push(['  diff           ', ...procs.map((p, i) => (cal(p) ? 'calib.' : pct(sel.find((r) => r.procs === p)!.micros, pub[i]!)).padStart(9))].join(''));
      }
    }
  }
  lines.push('root misses per switch (net of the overhead loop):');
  for (const kpti of [false, true]) {
    for (const roots of [0, 3, 11]) {
      const sel = rows.filter((r) => r.kpti === kpti && r.roots === roots);
      lines.push([`${String(roots).padStart(5)}  ${kpti ? 'yes ' : 'no  '} `, ...procs.map((p) => String(sel.find((r) => r.procs === p)!.rootMissesPerSwitch).padStart(9))].join(''));
    }
  }
  return lines.join('\n');
}

export const pvmmuCommand: CommandModule<object, Args> = {
  command: 'pvmmu',
  describe: 'reproduce the 2007 kvm-paravirt cr3-cache table from simulation (and the previous-roots sweep)',
  builder: (y) =>
    y
      .option('profile', { type: 'string', default: '2007', describe: 'cost profile: 2007 (2007-core2) or modern' })
      .option('json', { type: 'boolean', default: false, describe: 'print { profile, results: [ { mode, workload, value, unit, events } ] }' })
      .option('quick', { type: 'boolean', default: false, describe: 'shorter runs (smoke test; figures less exact)' })
      .option('sweep', { type: 'boolean', default: true, describe: 'also print the previous-roots sweep (text output only)' }) as never,
  handler: (args) => {
    const profile = resolveProfile(args.profile);
    const opts: SimOptions = args.quick ? { hops: 400, loops: 5 } : {};
    const results = runTable(profile, opts);
    if (args.json) {
      const out = {
        profile: profile.name,
        results: results.map((r) => ({ mode: r.mode, workload: r.workload, value: Number(r.value.toPrecision(6)), unit: r.unit, events: r.events })),
      };
      console.log(JSON.stringify(out));
      return;
    }
    console.log(renderTable(profile, results));
    if (args.sweep) {
      console.log('');
      console.log(renderSweep(rootSweep(getProfile('modern'), args.quick ? { hops: 300 } : {})));
    }
  },
};
