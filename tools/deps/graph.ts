/**
 * The module graph of the repository and the layering rule it must follow.
 *
 * Layers, bottom to top (README "Architecture"):
 *   spec-refs/                      the catalog and the ABI both sides share
 *   drivers/  |  device-models/     guest software | hardware and hypervisor; never import each other
 *   conformance/                    checks, monitor, harnesses, targets, runner
 *   tools/                          the CLI, benchmarks, REPL
 *   docs/                           the guide's runnable examples, which may use all of the above
 *
 * A module may import its own folder and the layers below it. Test files (`*.test.ts`,
 * `*.test-support.ts`) are harnesses, not product: a test of a driver runs it on the simulated
 * machine, so a test may also use anything up to `conformance/` (the other side included), but
 * never `tools/` unless it lives there or above, and no product module may import a test file. No import cycle is allowed, among
 * product modules or tests. There is no exception list.
 *
 * The graph is read with the TypeScript API that ts-morph bundles (`preProcessFile`: static,
 * type-only, re-export and dynamic imports alike), without type-checking anything.
 */
import { ts } from 'ts-morph';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative, sep } from 'node:path';

export const LAYERS = ['spec-refs', 'drivers', 'device-models', 'conformance', 'tools', 'docs'] as const;
export type Layer = (typeof LAYERS)[number];

/** Rank of each layer; drivers and device-models share a rank and may not import each other. */
const RANK: Record<Layer, number> = { 'spec-refs': 0, drivers: 1, 'device-models': 1, conformance: 2, tools: 3, docs: 4 };
/** The highest rank a test file may import, wherever it lives (tests in tools/ and docs/ keep their own). */
const TEST_HARNESS_RANK = RANK.conformance;

const SOURCE_RE = /\.(ts|mts|js|mjs)$/;
const SKIP_DIRS = new Set(['node_modules', 'reports', 'dist', 'coverage', 'out']);

export interface ImportEdge {
  readonly from: string;
  readonly to: string;
  /** The specifier as written. */
  readonly specifier: string;
  readonly line: number;
}

export interface ModuleGraph {
  /** Repo-relative paths with forward slashes, sorted. */
  readonly files: readonly string[];
  /** Edges between files of the graph (relative specifiers that resolve to a file of the repo). */
  readonly edges: readonly ImportEdge[];
}

export interface Violation {
  readonly kind: 'back-edge' | 'sibling' | 'test-import' | 'cycle' | 'unresolved';
  readonly message: string;
}

const posix = (p: string): string => p.split(sep).join('/');

/** Tests and their support modules: `x.test.ts`, `x.test-support.ts`, `test-support.ts`. */
export function isTestFile(file: string): boolean {
  return /\.test\.(ts|mts)$/.test(file) || /(^|\/|\.)test-support\.ts$/.test(file);
}

export function layerOf(file: string): Layer | undefined {
  const top = file.split('/')[0];
  return (LAYERS as readonly string[]).includes(top!) ? (top as Layer) : undefined;
}

function lineAt(text: string, pos: number): number {
  let line = 1;
  for (let i = text.indexOf('\n'); i !== -1 && i < pos; i = text.indexOf('\n', i + 1)) line++;
  return line;
}

function listSources(root: string, dir: string, out: string[]): void {
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    if (e.name.startsWith('.') || SKIP_DIRS.has(e.name)) continue;
    const rel = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory()) listSources(root, rel, out);
    else if (SOURCE_RE.test(e.name) && !e.name.endsWith('.d.ts')) out.push(rel);
  }
}

/**
 * Reads every source file under the layer folders of `root`. A relative specifier that names no
 * file of the graph is returned as an 'unresolved' violation by {@link checkLayering}, so a
 * moved file cannot leave a dangling import unnoticed.
 */
export function readGraph(root: string): ModuleGraph & { readonly unresolved: readonly ImportEdge[] } {
  const files: string[] = [];
  for (const layer of LAYERS) if (existsSync(join(root, layer))) listSources(root, layer, files);
  files.sort();
  const known = new Set(files);
  const edges: ImportEdge[] = [];
  const unresolved: ImportEdge[] = [];
  for (const from of files) {
    const text = readFileSync(join(root, from), 'utf8');
    const info = ts.preProcessFile(text, true, true);
    for (const ref of info.importedFiles) {
      const spec = ref.fileName;
      if (!spec.startsWith('.')) continue;
      const line = lineAt(text, ref.pos);
      const target = posix(normalize(join(dirname(from), spec)));
      const to = [target, `${target}.ts`, `${target}/index.ts`].find((c) => known.has(c));
      if (to) edges.push({ from, to, specifier: spec, line });
      else unresolved.push({ from, to: target, specifier: spec, line });
    }
  }
  return { files, edges, unresolved };
}

/** Is an import from `from` to `to` allowed by the layering rule? Returns the violation, if any. */
export function judgeEdge(e: ImportEdge): Violation | undefined {
  const a = layerOf(e.from);
  const b = layerOf(e.to);
  if (!a || !b) return undefined;
  const where = `${e.from}:${e.line} imports ${e.to}`;
  if (isTestFile(e.to) && !isTestFile(e.from)) {
    return { kind: 'test-import', message: `${where}: product code may not import a test file` };
  }
  if (a === b) return undefined;
  if (RANK[a] === RANK[b] && !isTestFile(e.from)) {
    return { kind: 'sibling', message: `${where}: ${a}/ and ${b}/ sit beside each other and never import each other` };
  }
  const limit = isTestFile(e.from) ? Math.max(RANK[a], TEST_HARNESS_RANK) : RANK[a];
  if (RANK[b] > limit) {
    return { kind: 'back-edge', message: `${where}: ${a}/ sits below ${b}/ (a test may use up to conformance/)` };
  }
  return undefined;
}

/** Strongly connected components with more than one file (Tarjan), each sorted, in file order. */
export function findCycles(g: ModuleGraph): string[][] {
  const adj = new Map<string, string[]>();
  for (const f of g.files) adj.set(f, []);
  for (const e of g.edges) adj.get(e.from)!.push(e.to);
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const out: string[][] = [];
  const strong = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of adj.get(v)!) {
      if (!index.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || adj.get(v)!.includes(v)) out.push(comp.sort());
    }
  };
  for (const f of g.files) if (!index.has(f)) strong(f);
  return out.sort((x, y) => x[0]!.localeCompare(y[0]!));
}

/** Every violation of the layering rule and every import cycle in the repository at `root`. */
export function checkLayering(root: string): Violation[] {
  const g = readGraph(root);
  const out: Violation[] = [];
  for (const e of g.unresolved) out.push({ kind: 'unresolved', message: `${e.from}:${e.line} imports ${e.specifier}, which names no file` });
  for (const e of g.edges) {
    const v = judgeEdge(e);
    if (v) out.push(v);
  }
  for (const c of findCycles(g)) out.push({ kind: 'cycle', message: `import cycle: ${c.join(' -> ')}` });
  return out;
}

/** Folder-level edges (product modules only), for the picture: `spec-refs/abi` -> count. */
export function folderEdges(g: ModuleGraph, depth = 1): Map<string, Map<string, number>> {
  const folder = (f: string): string => {
    const parts = f.split('/');
    return parts.slice(0, Math.min(depth, parts.length - 1)).join('/') || parts[0]!;
  };
  const out = new Map<string, Map<string, number>>();
  for (const e of g.edges) {
    if (isTestFile(e.from)) continue;
    const a = folder(e.from);
    const b = folder(e.to);
    if (a === b) continue;
    const m = out.get(a) ?? new Map<string, number>();
    m.set(b, (m.get(b) ?? 0) + 1);
    out.set(a, m);
  }
  return out;
}

export function repoRelative(root: string, abs: string): string {
  return posix(relative(root, abs));
}
