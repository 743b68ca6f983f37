import { existsSync, readFileSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { UsageError } from '../../spec-refs/errors.ts';
import { catalog, repoRoot } from '../../spec-refs/catalog.ts';
import type { AreaCoverage } from '../spec-scan.ts';

/** ts-morph is heavy: load the scanner only when a spec command runs. */
const scanner = async () => {
  const m = await import('../spec-scan.ts');
  // one scan per process: the sources do not change under a running command
  const scanSources = (root: string) => (scanCache ??= shippedScan() ?? m.scanSources(root));
  return { ...m, scanSources };
};
let scanCache: import('../spec-scan.ts').ScanResult | undefined;

/**
 * The installed package has no TypeScript sources: tools/build.mjs scans them when it builds
 * and writes the result beside the compiled tools/ as spec-scan.json. In the source tree there is
 * no such file, and the sources themselves are scanned.
 */
function shippedScan(): import('../spec-scan.ts').ScanResult | undefined {
  const index = new URL('../spec-scan.json', import.meta.url);
  return existsSync(index) ? (JSON.parse(readFileSync(index, 'utf8')) as import('../spec-scan.ts').ScanResult) : undefined;
}

function pct(n: number, d: number): string {
  return d === 0 ? '-' : `${Math.round((100 * n) / d)}%`;
}

function row(name: string, a: AreaCoverage): string {
  const m = a.mandatory;
  return `${name.padEnd(14)} ${String(a.statements).padStart(10)} ${String(a.checked).padStart(8)} ${String(a.notApplicable).padStart(6)} ${String(a.open).padStart(6)}   ${`${m.checked}/${m.statements - m.notApplicable}`.padStart(9)} ${pct(m.checked, m.statements - m.notApplicable).padStart(5)}`;
}

/** `pvkit spec coverage`: exit 1 when sources cite unknown ids or a check's statements are not a literal array. */
export async function specCoverage(json: boolean): Promise<number> {
  const { coverage, scanSources } = await scanner();
  const cat = catalog();
  const cov = coverage(cat, scanSources(repoRoot()));
  if (json) {
    console.log(JSON.stringify(cov, null, 2));
  } else {
    console.log(`${cov.spec}: statements per area; "checked" = cited by a registered conformance check`);
    console.log(`${'area'.padEnd(14)} ${'statements'.padStart(10)} ${'checked'.padStart(8)} ${'n/a'.padStart(6)} ${'open'.padStart(6)}   ${'MUST ckd'.padStart(9)} ${'%'.padStart(5)}`);
    for (const [a, c] of Object.entries(cov.areas)) console.log(row(a, c));
    console.log(row('total', cov.total));
    if (cov.unregisteredChecks.length) console.log(`\nchecks not reachable from conformance/checks/index.ts (not counted): ${cov.unregisteredChecks.join(', ')}`);
  }
  const bad = cov.unknownRefs.length > 0 || cov.problems.length > 0;
  if (cov.unknownRefs.length) {
    process.stderr.write(`pvkit: ${cov.unknownIds.length} unknown statement id(s) cited:\n`);
    for (const r of cov.unknownRefs) process.stderr.write(`  ${r.id} at ${r.location}\n`);
  }
  for (const p of cov.problems) process.stderr.write(`pvkit: ${p.location}: ${p.message}\n`);
  return bad ? 1 : 0;
}

export async function specList(json: boolean, area?: string, status?: string): Promise<number> {
  const { scanSources, statementInfo } = await scanner();
  const cat = catalog();
  if (area !== undefined && !cat.areas().includes(area)) throw new UsageError('usage.spec', `unknown area ${JSON.stringify(area)} (areas: ${cat.areas().join(', ')})`);
  if (status !== undefined && !['checked', 'notApplicable', 'open'].includes(status)) throw new UsageError('usage.spec', `--status must be checked, notApplicable or open`);
  const infos = statementInfo(cat, scanSources(repoRoot())).filter((i) => (area === undefined || i.entry.area === area) && (status === undefined || i.status === status));
  if (json) {
    console.log(JSON.stringify(infos.map((i) => ({ id: i.entry.id, area: i.entry.area, side: i.entry.side, keyword: i.entry.keyword, location: i.entry.location, status: i.status, checks: i.checks.map((c) => c.id), paraphrase: i.entry.paraphrase, ...(i.entry.naReason ? { naReason: i.entry.naReason } : {}) })), null, 2));
  } else {
    for (const i of infos) console.log(`${i.entry.id.padEnd(22)} ${i.entry.keyword.padEnd(10)} ${i.entry.location.padEnd(40)} ${i.status.padEnd(13)} ${i.checks.map((c) => c.id).join(',')}`);
  }
  return 0;
}

export async function specShow(id: string): Promise<number> {
  const { scanSources, statementInfo } = await scanner();
  const cat = catalog();
  const e = cat.byId(id);
  if (!e) throw new UsageError('usage.spec', `no statement ${JSON.stringify(id)} in the catalog (pvkit spec list shows them)`);
  const info = statementInfo(cat, scanSources(repoRoot())).find((i) => i.entry.id === id)!;
  console.log(`${e.id}  ${e.keyword}  (${e.side} side, area ${e.area})`);
  console.log(`location:   ${e.location} (virtio-spec v1.4-cs01)`);
  console.log(`block:      ${e.block}`);
  console.log(`paraphrase: ${e.paraphrase}`);
  if (e.naReason) console.log(`not applicable: ${e.naReason}`);
  console.log(`status:     ${info.status}`);
  for (const c of info.checks) console.log(`  checked by ${c.id} (${c.location})`);
  return 0;
}

export const specCommand: CommandModule<object, object> = {
  command: 'spec',
  describe: 'the VIRTIO statement catalog: coverage by the conformance checks, list, show',
  builder: (y: Argv) =>
    y
      .command({
        command: 'coverage',
        describe: 'statements per area: checked / not applicable / open (exit 1 on unknown ids)',
        builder: (yy: Argv) => yy.option('json', { type: 'boolean', default: false }),
        handler: async (a: { json: boolean }) => {
          process.exitCode = await specCoverage(a.json);
        },
      })
      .command({
        command: 'list',
        describe: 'every statement with its location, status and citing checks',
        builder: (yy: Argv) => yy.option('json', { type: 'boolean', default: false }).option('area', { type: 'string' }).option('status', { type: 'string', describe: 'checked, notApplicable or open' }),
        handler: async (a: { json: boolean; area?: string; status?: string }) => {
          process.exitCode = await specList(a.json, a.area, a.status);
        },
      })
      .command({
        command: 'show <id>',
        describe: 'one statement: paraphrase, location, citing checks',
        builder: (yy: Argv) => yy.positional('id', { type: 'string', demandOption: true }),
        handler: async (a: { id: string }) => {
          process.exitCode = await specShow(a.id);
        },
      })
      .demandCommand(1, 'name a spec subcommand: coverage, list or show') as never,
  handler: () => {},
};
