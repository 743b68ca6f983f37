/**
 * Conformance reporters: console text, conformance.json, JUnit XML and a self-contained HTML
 * page with the traceability matrix (statement -> checks -> results).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AREAS, type Catalog, type CatalogEntry } from '../spec-refs/catalog.ts';
import type { CheckResult, RunReport, Status } from './runner.ts';

export const REPORTERS = ['console', 'json', 'junit', 'html'] as const;
export type ReporterName = (typeof REPORTERS)[number];

export interface AreaRow {
  area: string;
  /** Statements of the area in the catalog (or cited, when the catalog has no file for it). */
  statements: number;
  /** Distinct statements of the area cited by a check that ran (not skipped). */
  checked: number;
  /** Checked statements whose every check passed (xfail counts as not passed). */
  passed: number;
  /** Statements cited by at least one failing check. */
  failed: number;
  checks: number;
}

function areaOf(id: string): string {
  return id.split('.')[0]!;
}

export function areaTable(report: RunReport, cat: Catalog): AreaRow[] {
  const byStatement = new Map<string, Status[]>();
  const checksByArea = new Map<string, Set<string>>();
  for (const r of report.results) {
    if (r.status === 'skip') continue;
    let set = checksByArea.get(r.area);
    if (!set) checksByArea.set(r.area, (set = new Set()));
    set.add(r.id);
    for (const s of r.statements) {
      const failedHere = r.status === 'fail' && (r.failedStatements ?? r.statements).includes(s);
      const st: Status = r.status === 'fail' && !failedHere ? 'pass' : r.status;
      const l = byStatement.get(s);
      if (l) l.push(st);
      else byStatement.set(s, [st]);
    }
  }
  const areas = new Set<string>([...cat.areas(), ...[...byStatement.keys()].map(areaOf)]);
  const ordered = [...AREAS.filter((a) => areas.has(a)), ...[...areas].filter((a) => !(AREAS as readonly string[]).includes(a))];
  const rows: AreaRow[] = [];
  for (const area of ordered) {
    const cited = [...byStatement.entries()].filter(([s]) => areaOf(s) === area);
    const inCat = cat.byArea(area).length;
    rows.push({
      area,
      statements: inCat || cited.length,
      checked: cited.length,
      passed: cited.filter(([, st]) => st.every((x) => x === 'pass')).length,
      failed: cited.filter(([, st]) => st.includes('fail')).length,
      checks: checksByArea.get(area)?.size ?? 0,
    });
  }
  return rows.filter((r) => r.checked > 0 || r.checks > 0 || report.results.some((x) => x.area === r.area));
}

function pad(s: string | number, n: number, right = false): string {
  const t = String(s);
  return right ? t.padStart(n) : t.padEnd(n);
}

function configLabel(r: CheckResult): string {
  return `${r.config.device}/${r.config.transport}/${r.config.ring}`;
}

/** The console report (no colour codes: it is read in CI logs as often as on a terminal). */
export function consoleReport(report: RunReport, cat: Catalog, opts: { verbose?: boolean } = {}): string {
  const out: string[] = [];
  const c = report.config;
  out.push(`pvkit conformance: target ${report.target}, ${report.spec}, devices ${c.devices.join(',')}, transports ${c.transports.join(',')}, rings ${c.rings.join(',')}, seed ${c.seed}, runs ${c.runs}${c.shard ? `, shard ${c.shard.index}/${c.shard.count}` : ''}${report.merged ? `, merged from ${report.merged} reports` : ''}`);
  out.push('');
  const rows = areaTable(report, cat);
  out.push(`${pad('area', 14)} ${pad('statements', 10, true)} ${pad('checked', 8, true)} ${pad('passed', 7, true)} ${pad('failed', 7, true)} ${pad('checks', 7, true)}`);
  const tot = { statements: 0, checked: 0, passed: 0, failed: 0, checks: 0 };
  for (const r of rows) {
    out.push(`${pad(r.area, 14)} ${pad(r.statements, 10, true)} ${pad(r.checked, 8, true)} ${pad(r.passed, 7, true)} ${pad(r.failed, 7, true)} ${pad(r.checks, 7, true)}`);
    tot.statements += r.statements;
    tot.checked += r.checked;
    tot.passed += r.passed;
    tot.failed += r.failed;
    tot.checks += r.checks;
  }
  out.push(`${pad('total', 14)} ${pad(tot.statements, 10, true)} ${pad(tot.checked, 8, true)} ${pad(tot.passed, 7, true)} ${pad(tot.failed, 7, true)} ${pad(tot.checks, 7, true)}`);
  out.push('');
  if (opts.verbose) {
    for (const r of report.results) out.push(`  ${pad(r.status.toUpperCase(), 5)} ${r.id} [${configLabel(r)}] ${r.durationMs}ms${r.message ? ` - ${r.message}` : ''}`);
    out.push('');
  }
  const xfails = report.results.filter((r) => r.status === 'xfail');
  for (const r of xfails) out.push(`XFAIL ${r.id} [${configLabel(r)}]: ${r.message}`);
  if (xfails.length) out.push('');
  const fails = report.results.filter((r) => r.status === 'fail');
  for (const r of fails) {
    out.push(`FAIL ${r.id} [${configLabel(r)}]${r.required ? '' : ' (advisory: cites only SHOULD/MAY statements)'}: ${r.title}`);
    out.push(`  ${r.message ?? ''}`);
    if (r.expected !== undefined) out.push(`  expected: ${r.expected}`);
    if (r.seen !== undefined) out.push(`  seen:     ${r.seen}`);
    for (const s of r.failedStatements ?? r.statements) {
      const e = cat.byId(s);
      out.push(`  ${s}${e ? ` (${e.keyword}, ${e.location}): ${e.paraphrase}` : ' (not in the catalog yet)'}`);
    }
    if (r.counterexample !== undefined) out.push(`  counterexample (shrunk): ${r.counterexample.length > 600 ? `${r.counterexample.slice(0, 600)}... (${r.counterexample.length} chars; full text in conformance.json)` : r.counterexample}`);
    out.push(`  seed ${r.seed ?? report.config.seed} (fast-check seed ${r.fcSeed ?? '-'}${r.path ? `, path ${r.path}` : ''})`);
    if (r.replay) out.push(`  replay: ${r.replay}`);
    out.push('');
  }
  const s = report.summary;
  out.push(`${s.passed} passed, ${s.failed} failed${s.failed !== s.requiredFailed ? ` (${s.requiredFailed} required)` : ''}, ${s.skipped} skipped, ${s.xfail} xfail in ${(report.durationMs / 1000).toFixed(1)} s`);
  return out.join('\n') + '\n';
}

/** conformance.json */
export function jsonReport(report: RunReport): string {
  const { passed, failed, skipped, xfail } = report.summary;
  return (
    JSON.stringify(
      {
        target: report.target,
        spec: report.spec,
        config: report.config,
        summary: { passed, failed, skipped, xfail, requiredFailed: report.summary.requiredFailed },
        durationMs: report.durationMs,
        ...(report.merged ? { merged: report.merged } : {}),
        results: report.results,
      },
      null,
      2,
    ) + '\n'
  );
}

function xml(s: string): string {
  return s.replace(/[<>&"']/g, (ch) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[ch]!).replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '');
}

/** JUnit XML: one testsuite per area, one testcase per check and configuration. */
export function junitReport(report: RunReport): string {
  const byArea = new Map<string, CheckResult[]>();
  for (const r of report.results) {
    const l = byArea.get(r.area);
    if (l) l.push(r);
    else byArea.set(r.area, [r]);
  }
  const s = report.summary;
  const lines = [`<?xml version="1.0" encoding="UTF-8"?>`, `<testsuites name="pvkit conformance ${xml(report.target)}" tests="${report.results.length}" failures="${s.failed}" skipped="${s.skipped + s.xfail}" time="${(report.durationMs / 1000).toFixed(3)}">`];
  for (const [area, rs] of byArea) {
    const f = rs.filter((r) => r.status === 'fail').length;
    const sk = rs.filter((r) => r.status === 'skip' || r.status === 'xfail').length;
    const t = rs.reduce((n, r) => n + r.durationMs, 0) / 1000;
    lines.push(`  <testsuite name="${xml(area)}" tests="${rs.length}" failures="${f}" skipped="${sk}" time="${t.toFixed(3)}">`);
    for (const r of rs) {
      lines.push(`    <testcase classname="conformance.${xml(area)}" name="${xml(`${r.id} [${configLabel(r)}]`)}" time="${(r.durationMs / 1000).toFixed(3)}">`);
      if (r.status === 'fail') {
        const body = [r.message, r.expected !== undefined ? `expected: ${r.expected}` : '', r.seen !== undefined ? `seen: ${r.seen}` : '', `statements: ${(r.failedStatements ?? r.statements).join(', ')}`, r.counterexample !== undefined ? `counterexample: ${r.counterexample}` : '', r.replay ? `replay: ${r.replay}` : ''].filter(Boolean).join('\n');
        lines.push(`      <failure message="${xml(r.message ?? 'failed')}" type="${xml((r.failedStatements ?? r.statements).join(' '))}">${xml(body)}</failure>`);
      } else if (r.status === 'skip' || r.status === 'xfail') {
        lines.push(`      <skipped message="${xml(`${r.status}: ${r.message ?? ''}`)}"/>`);
      }
      lines.push(`      <properties><property name="statements" value="${xml(r.statements.join(' '))}"/><property name="side" value="${r.side}"/></properties>`);
      lines.push(`    </testcase>`);
    }
    lines.push(`  </testsuite>`);
  }
  lines.push(`</testsuites>`);
  return lines.join('\n') + '\n';
}

function html(s: string): string {
  return s.replace(/[<>&"]/g, (ch) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[ch]!);
}

/** A self-contained HTML page: summary, area table, and the statement -> checks -> results matrix. */
export function htmlReport(report: RunReport, cat: Catalog): string {
  const byStatement = new Map<string, CheckResult[]>();
  for (const r of report.results) for (const s of r.statements) (byStatement.get(s) ?? byStatement.set(s, []).get(s)!).push(r);
  const known = new Set(cat.entries.map((e) => e.id));
  const extra: CatalogEntry[] = [...byStatement.keys()].filter((s) => !known.has(s)).map((id) => ({ id, area: areaOf(id), side: id.includes('.driver.') ? 'driver' : 'device', keyword: 'MUST', file: '?', line: 1, block: '', paraphrase: '(not in the catalog yet)', naReason: undefined, location: '?', source: '' }));
  const entries = [...cat.entries, ...extra];
  const rows = areaTable(report, cat);
  const s = report.summary;
  const cell = (r: CheckResult) => `<span class="st ${r.status}" title="${html(`${configLabel(r)}: ${r.message ?? r.status}`)}">${r.status}</span>`;
  const matrix = entries
    .map((e) => {
      const rs = byStatement.get(e.id) ?? [];
      const state = e.naReason ? 'na' : rs.length === 0 ? 'open' : rs.some((r) => r.status === 'fail') ? 'fail' : rs.every((r) => r.status === 'skip') ? 'skip' : 'pass';
      const checks = rs.length ? rs.map((r) => `<div><code>${html(r.id)}</code> <small>${html(configLabel(r))}</small> ${cell(r)}</div>`).join('') : e.naReason ? `<em>n/a: ${html(e.naReason)}</em>` : '<em>no check yet</em>';
      return `<tr class="${state}" data-area="${html(e.area)}"><td><code>${html(e.id)}</code></td><td>${html(e.keyword)}</td><td>${html(e.side)}</td><td>${html(e.location)}</td><td>${html(e.paraphrase)}</td><td>${checks}</td></tr>`;
    })
    .join('\n');
  const failures = report.results
    .filter((r) => r.status === 'fail')
    .map((r) => `<li><code>${html(r.id)}</code> [${html(configLabel(r))}]: ${html(r.message ?? '')}${r.expected !== undefined ? `<br>expected: ${html(r.expected)}` : ''}${r.seen !== undefined ? `<br>seen: ${html(r.seen)}` : ''}${r.counterexample ? `<br>counterexample: <code>${html(r.counterexample)}</code>` : ''}<br>statements: ${html((r.failedStatements ?? r.statements).join(', '))}<br>replay: <code>${html(r.replay ?? '')}</code></li>`)
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pvkit conformance: ${html(report.target)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}
th{background:#f0f0f0}.st{padding:0 4px;border-radius:3px;font-size:12px}
.st.pass{background:#cfc}.st.fail{background:#f99}.st.skip{background:#eee}.st.xfail{background:#fd9}
tr.fail td:first-child{border-left:4px solid #d00}tr.pass td:first-child{border-left:4px solid #0a0}tr.open td:first-child{border-left:4px solid #bbb}tr.na{color:#888}
code{font-size:12px}
</style></head><body>
<h1>pvkit conformance: target ${html(report.target)}, ${html(report.spec)}</h1>
<p>${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped, ${s.xfail} xfail. Seed ${report.config.seed}, runs ${report.config.runs}; devices ${html(report.config.devices.join(', '))}; transports ${html(report.config.transports.join(', '))}; rings ${html(report.config.rings.join(', '))}.</p>
<h2>By area</h2>
<table><tr><th>area</th><th>statements</th><th>checked</th><th>passed</th><th>failed</th><th>checks</th></tr>
${rows.map((r) => `<tr><td>${html(r.area)}</td><td>${r.statements}</td><td>${r.checked}</td><td>${r.passed}</td><td>${r.failed}</td><td>${r.checks}</td></tr>`).join('\n')}
</table>
${failures ? `<h2>Failures</h2><ul>${failures}</ul>` : ''}
<h2>Traceability: statement &rarr; checks &rarr; results</h2>
<p>Filter by area: <select id="area" onchange="for(const tr of document.querySelectorAll('tr[data-area]'))tr.style.display=!this.value||tr.dataset.area===this.value?'':'none'"><option value="">all</option>${[...new Set(entries.map((e) => e.area))].map((a) => `<option>${html(a)}</option>`).join('')}</select></p>
<table><tr><th>statement</th><th>keyword</th><th>side</th><th>location</th><th>paraphrase</th><th>checks and results</th></tr>
${matrix}
</table>
</body></html>
`;
}

/** Write the file reporters' output into `dir`; returns the files written. */
export function writeReports(report: RunReport, cat: Catalog, reporters: readonly ReporterName[], dir: string): string[] {
  const files: string[] = [];
  const want = reporters.filter((r) => r !== 'console');
  if (want.length === 0) return files;
  mkdirSync(dir, { recursive: true });
  for (const r of want) {
    const [name, body] = r === 'json' ? ['conformance.json', jsonReport(report)] : r === 'junit' ? ['conformance.junit.xml', junitReport(report)] : ['conformance.html', htmlReport(report, cat)];
    const p = join(dir, name);
    writeFileSync(p, body);
    files.push(p);
  }
  return files;
}
