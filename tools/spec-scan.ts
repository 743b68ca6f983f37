/**
 * The traceability scanner: reads the sources with ts-morph (without running them) and finds
 * which VIRTIO statements the conformance checks cite.
 *
 * What counts as "checked": a catalog statement is checked when its id appears in the
 * `statements: [...]` array literal of a `defineCheck({...})` call in a module that is reachable
 * through static imports from `conformance/checks/index.ts` (that is, a check the runner
 * registers). A check defined in a module nobody imports, a statement id in a comment, in an
 * error's details or in a test file does not make a statement checked.
 *
 * Every string literal shaped like a statement id (`area.side.n`) in non-test sources under
 * conformance/, drivers/, device-models/, spec-refs/ and tools/ is checked against the catalog:
 * unknown ids are reported (and make `pvkit spec coverage` exit 1).
 */
import type { Node, Project, SourceFile } from 'ts-morph';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { AREAS, SPEC_NAME, type Catalog, type CatalogEntry } from '../spec-refs/catalog.ts';

/**
 * ts-morph (a devDependency) is loaded when a scan runs, not when this module is imported: the
 * installed package ships no sources to scan and reads the scan tools/build.mjs made of them.
 */
const tsMorph = (): typeof import('ts-morph') => createRequire(import.meta.url)('ts-morph') as typeof import('ts-morph');

export const CHECKS_INDEX = 'conformance/checks/index.ts';
const SCAN_DIRS = ['conformance', 'drivers', 'device-models', 'spec-refs', 'tools'];
/** Census areas, as the id prefix; ids with another prefix are still looked up (and reported unknown). */
const ID_LITERAL_RE = /^([a-z_]+)\.(driver|device)\.([1-9][0-9]*)$/;

export interface ScannedCheck {
  /** The check id (its literal text, or the expression text when not a literal). */
  readonly id: string;
  readonly statements: readonly string[];
  /** Where the defineCheck call is (repo-relative file:line). */
  readonly location: string;
  /** Reachable from conformance/checks/index.ts. */
  readonly registered: boolean;
}

export interface IdReference {
  readonly id: string;
  readonly location: string;
}

export interface ScanProblem {
  readonly location: string;
  readonly message: string;
}

export interface ScanResult {
  readonly checks: readonly ScannedCheck[];
  /** Every statement-id literal found in non-test sources (checks included). */
  readonly references: readonly IdReference[];
  readonly problems: readonly ScanProblem[];
}

function loc(root: string, node: Node): string {
  return `${relative(root, node.getSourceFile().getFilePath())}:${node.getStartLineNumber()}`;
}

function isTest(path: string): boolean {
  return /\.test\.ts$/.test(path);
}

/** Files reachable from `entry` through relative static imports / re-exports. */
function reachable(project: Project, entry: SourceFile | undefined): Set<string> {
  const seen = new Set<string>();
  const stack: SourceFile[] = entry ? [entry] : [];
  while (stack.length) {
    const sf = stack.pop()!;
    const p = sf.getFilePath();
    if (seen.has(p)) continue;
    seen.add(p);
    const specs = [...sf.getImportDeclarations().map((d) => d.getModuleSpecifierValue()), ...sf.getExportDeclarations().map((d) => d.getModuleSpecifierValue()).filter((s): s is string => s !== undefined)];
    for (const s of specs) {
      if (!s.startsWith('.')) continue;
      const target = resolve(dirname(p), s);
      const next = project.getSourceFile(target) ?? (existsSync(target) ? project.addSourceFileAtPath(target) : undefined);
      if (next) stack.push(next);
    }
  }
  return seen;
}

/** Scan the repository at `root`. */
export function scanSources(root: string): ScanResult {
  const { Node, Project, SyntaxKind } = tsMorph();
  const project = new Project({ skipAddingFilesFromTsConfig: true, skipFileDependencyResolution: true, compilerOptions: { allowJs: false } });
  for (const d of SCAN_DIRS) if (existsSync(join(root, d))) project.addSourceFilesAtPaths(join(root, d, '**/*.ts'));
  const entryPath = join(root, CHECKS_INDEX);
  const registeredFiles = reachable(project, project.getSourceFile(entryPath));
  const checks: ScannedCheck[] = [];
  const references: IdReference[] = [];
  const problems: ScanProblem[] = [];
  for (const sf of project.getSourceFiles()) {
    const path = sf.getFilePath();
    if (isTest(path)) continue;
    for (const lit of sf.getDescendantsOfKind(SyntaxKind.StringLiteral)) {
      const v = lit.getLiteralValue();
      if (ID_LITERAL_RE.test(v)) references.push({ id: v, location: loc(root, lit) });
    }
    for (const lit of sf.getDescendantsOfKind(SyntaxKind.NoSubstitutionTemplateLiteral)) {
      const v = lit.getLiteralValue();
      if (ID_LITERAL_RE.test(v)) references.push({ id: v, location: loc(root, lit) });
    }
    for (const call of sf.getDescendantsOfKind(SyntaxKind.CallExpression)) {
      const callee = call.getExpression();
      const name = Node.isIdentifier(callee) ? callee.getText() : Node.isPropertyAccessExpression(callee) ? callee.getName() : '';
      if (name !== 'defineCheck') continue;
      const arg = call.getArguments()[0];
      if (!arg || !Node.isObjectLiteralExpression(arg)) {
        problems.push({ location: loc(root, call), message: 'defineCheck must be called with an object literal' });
        continue;
      }
      const idProp = arg.getProperty('id');
      const stProp = arg.getProperty('statements');
      const idInit = idProp && Node.isPropertyAssignment(idProp) ? idProp.getInitializer() : undefined;
      const id = idInit && (Node.isStringLiteral(idInit) || Node.isNoSubstitutionTemplateLiteral(idInit)) ? idInit.getLiteralValue() : (idInit?.getText() ?? '?');
      const stInit = stProp && Node.isPropertyAssignment(stProp) ? stProp.getInitializer() : undefined;
      if (!stInit || !Node.isArrayLiteralExpression(stInit)) {
        problems.push({ location: loc(root, call), message: `check ${id}: statements must be an array literal of string literals` });
        continue;
      }
      const statements: string[] = [];
      for (const el of stInit.getElements()) {
        if (Node.isStringLiteral(el) || Node.isNoSubstitutionTemplateLiteral(el)) statements.push(el.getLiteralValue());
        else problems.push({ location: loc(root, el), message: `check ${id}: statement ${el.getText()} is not a string literal` });
      }
      checks.push({ id, statements, location: loc(root, call), registered: registeredFiles.has(path) });
    }
  }
  return { checks, references, problems };
}

export type StatementStatus = 'checked' | 'notApplicable' | 'open';

export interface AreaCoverage {
  statements: number;
  checked: number;
  notApplicable: number;
  open: number;
  /** The same counts for MUST / MUST NOT (SHALL...) statements only. */
  mandatory: { statements: number; checked: number; notApplicable: number; open: number };
}

export interface CoverageReport {
  readonly spec: string;
  readonly areas: Record<string, AreaCoverage>;
  readonly total: AreaCoverage;
  /** Statement ids cited in sources that the catalog does not have, with where. */
  readonly unknownIds: readonly string[];
  readonly unknownRefs: readonly IdReference[];
  readonly problems: readonly ScanProblem[];
  /** defineCheck calls not reachable from conformance/checks/index.ts (their citations do not count). */
  readonly unregisteredChecks: readonly string[];
}

export interface StatementInfo {
  readonly entry: CatalogEntry;
  readonly status: StatementStatus;
  /** Registered checks citing it (id and location). */
  readonly checks: readonly { id: string; location: string }[];
}

function mandatoryKw(k: string): boolean {
  return k === 'MUST' || k === 'MUST NOT' || k === 'SHALL' || k === 'SHALL NOT' || k === 'REQUIRED';
}

export function statementInfo(cat: Catalog, scan: ScanResult): StatementInfo[] {
  const citing = new Map<string, { id: string; location: string }[]>();
  for (const c of scan.checks) {
    if (!c.registered) continue;
    for (const s of c.statements) (citing.get(s) ?? citing.set(s, []).get(s)!).push({ id: c.id, location: c.location });
  }
  return cat.entries.map((entry) => {
    const checks = citing.get(entry.id) ?? [];
    const status: StatementStatus = checks.length ? 'checked' : entry.naReason !== undefined ? 'notApplicable' : 'open';
    return { entry, status, checks };
  });
}

function emptyArea(): AreaCoverage {
  return { statements: 0, checked: 0, notApplicable: 0, open: 0, mandatory: { statements: 0, checked: 0, notApplicable: 0, open: 0 } };
}

export function coverage(cat: Catalog, scan: ScanResult): CoverageReport {
  const infos = statementInfo(cat, scan);
  const areas: Record<string, AreaCoverage> = {};
  for (const a of [...AREAS, ...cat.areas()]) if (cat.byArea(a).length && !areas[a]) areas[a] = emptyArea();
  const total = emptyArea();
  for (const i of infos) {
    const a = (areas[i.entry.area] ??= emptyArea());
    for (const t of [a, total]) {
      t.statements++;
      t[i.status]++;
      if (mandatoryKw(i.entry.keyword)) {
        t.mandatory.statements++;
        t.mandatory[i.status]++;
      }
    }
  }
  const unknownRefs = scan.references.filter((r) => !cat.has(r.id));
  return {
    spec: SPEC_NAME,
    areas,
    total,
    unknownIds: [...new Set(unknownRefs.map((r) => r.id))].sort(),
    unknownRefs,
    problems: scan.problems,
    unregisteredChecks: scan.checks.filter((c) => !c.registered).map((c) => `${c.id} (${c.location})`),
  };
}
