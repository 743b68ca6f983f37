/**
 * The catalog of VIRTIO 1.4 normative statements pvkit tracks: one entry per census row of
 * `../shared/spec/virtio-1.4-statements.tsv` (relative to the repository root), kept in
 * `spec-refs/catalog/<area>.tsv` with our own paraphrase of each statement.
 *
 * TSV columns (header line required, tab separated, one entry a line):
 *   id  area  side  keyword  file  line  block  paraphrase  na_reason
 * `na_reason` is non-empty only for statements pvkit does not apply (with why).
 *
 * Loading is synchronous and cached: the runner, the traceability tool and the tests all read it.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from './errors.ts';

export type Side = 'driver' | 'device';
export const KEYWORDS = ['MUST', 'MUST NOT', 'SHALL', 'SHALL NOT', 'REQUIRED', 'SHOULD', 'SHOULD NOT', 'RECOMMENDED', 'NOT RECOMMENDED', 'MAY', 'OPTIONAL'] as const;
export type Keyword = (typeof KEYWORDS)[number];

/** The in-scope areas of the census, in document order. */
export const AREAS = ['status_init', 'features', 'config_space', 'vq_reset', 'split', 'packed', 'mmio', 'pci', 'net', 'blk'] as const;
export type Area = (typeof AREAS)[number];

/** Keywords that make a statement a requirement (MUST / MUST NOT and their synonyms). */
export function isMandatory(k: Keyword): boolean {
  return k === 'MUST' || k === 'MUST NOT' || k === 'SHALL' || k === 'SHALL NOT' || k === 'REQUIRED';
}

export interface CensusRow {
  readonly id: string;
  readonly area: string;
  readonly side: Side;
  readonly keyword: Keyword;
  readonly file: string;
  readonly line: number;
  readonly block: string;
}

export interface CatalogEntry extends CensusRow {
  readonly paraphrase: string;
  /** Why pvkit does not apply this statement; undefined when it applies. */
  readonly naReason: string | undefined;
  /** `file:line` in the spec sources at v1.4-cs01. */
  readonly location: string;
  /** Where the entry itself lives (catalog file and line), for error messages. */
  readonly source: string;
}

export const SPEC_NAME = 'virtio-1.4';
export const CENSUS_FILE = 'virtio-1.4-statements.tsv';

/** The repository root: the directory holding package.json above this file. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 10; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), '..');
}

/** Directory of the shared spec facts: $PVKIT_SPEC_DIR, or `<repo root>/../shared/spec`. */
export function specDir(): string {
  return process.env['PVKIT_SPEC_DIR'] ?? resolve(repoRoot(), '..', 'shared', 'spec');
}

export function censusPath(): string {
  return join(specDir(), CENSUS_FILE);
}

/** `catalog/` beside this module: spec-refs/catalog in the sources, dist/spec-refs/catalog in the package. */
export function catalogDir(): string {
  return fileURLToPath(new URL('./catalog', import.meta.url));
}

/** A malformed catalog or census file; the message names the file and line. */
export class CatalogError extends UsageError {}

export interface TsvTable {
  readonly header: readonly string[];
  /** Rows as column-name -> value, with the 1-based line number each came from. */
  readonly rows: readonly { readonly line: number; readonly cells: Readonly<Record<string, string>> }[];
}

/**
 * Parse a TSV file: a header line, then rows. Tolerates CRLF, a BOM, blank lines, `#` comment
 * lines and missing trailing empty cells; rejects rows with more cells than the header.
 * Cells are trimmed of surrounding spaces.
 */
export function parseTsv(text: string, name: string, required: readonly string[]): TsvTable {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  let h = 0;
  while (h < lines.length && (lines[h]!.trim() === '' || lines[h]!.startsWith('#'))) h++;
  if (h >= lines.length) throw new CatalogError('catalog.empty', `${name}: no header line`, { expected: required.join('\\t') });
  const header = lines[h]!.split('\t').map((c) => c.trim());
  for (const col of required) {
    if (!header.includes(col)) throw new CatalogError('catalog.header', `${name}:${h + 1}: header lacks column '${col}'`, { expected: required.join('\\t'), seen: header.join('\\t') });
  }
  const rows: { line: number; cells: Record<string, string> }[] = [];
  for (let i = h + 1; i < lines.length; i++) {
    const raw = lines[i]!;
    if (raw.trim() === '' || raw.startsWith('#')) continue;
    const cells = raw.split('\t');
    if (cells.length > header.length) {
      throw new CatalogError('catalog.columns', `${name}:${i + 1}: ${cells.length} cells, header has ${header.length} (a tab inside a field?)`);
    }
    const rec: Record<string, string> = {};
    header.forEach((col, j) => (rec[col] = (cells[j] ?? '').trim()));
    rows.push({ line: i + 1, cells: rec });
  }
  return { header, rows };
}

function asSide(v: string, where: string): Side {
  if (v === 'driver' || v === 'device') return v;
  throw new CatalogError('catalog.side', `${where}: side must be driver or device`, { seen: JSON.stringify(v) });
}

function asKeyword(v: string, where: string): Keyword {
  const k = v.replace(/\s+/g, ' ');
  if ((KEYWORDS as readonly string[]).includes(k)) return k as Keyword;
  throw new CatalogError('catalog.keyword', `${where}: unknown keyword`, { expected: KEYWORDS.join('|'), seen: JSON.stringify(v) });
}

function asLine(v: string, where: string): number {
  if (!/^[1-9][0-9]*$/.test(v)) throw new CatalogError('catalog.line', `${where}: line must be a positive integer`, { seen: JSON.stringify(v) });
  return Number(v);
}

const ID_RE = /^[a-z_]+\.(driver|device)\.[1-9][0-9]*$/;

export function parseCensus(text: string, name = CENSUS_FILE): CensusRow[] {
  const t = parseTsv(text, name, ['id', 'area', 'side', 'keyword', 'file', 'line', 'block_label']);
  return t.rows.map(({ line, cells }) => {
    const where = `${name}:${line}`;
    return { id: cells['id']!, area: cells['area']!, side: asSide(cells['side']!, where), keyword: asKeyword(cells['keyword']!, where), file: cells['file']!, line: asLine(cells['line']!, where), block: cells['block_label']! };
  });
}

export const CATALOG_COLUMNS = ['id', 'area', 'side', 'keyword', 'file', 'line', 'block', 'paraphrase', 'na_reason'] as const;

/** Parse one catalog TSV; `name` is used in messages (the file path). */
export function parseCatalogTsv(text: string, name: string): CatalogEntry[] {
  const t = parseTsv(text, name, CATALOG_COLUMNS.slice(0, 8));
  return t.rows.map(({ line, cells }) => {
    const where = `${name}:${line}`;
    const id = cells['id']!;
    if (!ID_RE.test(id)) throw new CatalogError('catalog.id', `${where}: malformed statement id`, { expected: 'area.side.n', seen: JSON.stringify(id) });
    const file = cells['file']!;
    const ln = asLine(cells['line']!, where);
    const na = cells['na_reason'] ?? '';
    return {
      id,
      area: cells['area']!,
      side: asSide(cells['side']!, where),
      keyword: asKeyword(cells['keyword']!, where),
      file,
      line: ln,
      block: cells['block']!,
      paraphrase: cells['paraphrase']!,
      naReason: na === '' ? undefined : na,
      location: `${file}:${ln}`,
      source: where,
    };
  });
}

export interface CatalogQuery {
  area?: string | readonly string[];
  side?: Side;
  keyword?: Keyword | readonly Keyword[];
  /** Only MUST / MUST NOT (and SHALL, REQUIRED...) statements. */
  mandatory?: boolean;
  /** true: only not-applicable entries; false: only applicable ones. */
  notApplicable?: boolean;
}

/** The loaded catalog, indexed by id, with a small query API. */
export class Catalog {
  private readonly byIdMap = new Map<string, CatalogEntry>();
  /** Area files that were found (area names). */
  readonly areasLoaded: readonly string[];

  constructor(readonly entries: readonly CatalogEntry[], areasLoaded?: readonly string[]) {
    for (const e of entries) {
      const prev = this.byIdMap.get(e.id);
      if (prev) throw new CatalogError('catalog.duplicate', `${e.source}: duplicate id ${e.id} (first at ${prev.source})`);
      this.byIdMap.set(e.id, e);
    }
    this.areasLoaded = areasLoaded ?? [...new Set(entries.map((e) => e.area))];
  }

  get size(): number {
    return this.entries.length;
  }

  has(id: string): boolean {
    return this.byIdMap.has(id);
  }

  byId(id: string): CatalogEntry | undefined {
    return this.byIdMap.get(id);
  }

  /** The entry for `id`; throws a CatalogError naming the id when there is none. */
  get(id: string): CatalogEntry {
    const e = this.byIdMap.get(id);
    if (!e) throw new CatalogError('catalog.unknown_id', `no catalog entry for statement id ${id}`);
    return e;
  }

  byArea(area: string): CatalogEntry[] {
    return this.entries.filter((e) => e.area === area);
  }

  query(q: CatalogQuery = {}): CatalogEntry[] {
    const areas = q.area === undefined ? undefined : typeof q.area === 'string' ? [q.area] : q.area;
    const kws = q.keyword === undefined ? undefined : typeof q.keyword === 'string' ? [q.keyword] : q.keyword;
    return this.entries.filter(
      (e) =>
        (!areas || areas.includes(e.area)) &&
        (!q.side || e.side === q.side) &&
        (!kws || kws.includes(e.keyword)) &&
        (q.mandatory === undefined || isMandatory(e.keyword) === q.mandatory) &&
        (q.notApplicable === undefined || (e.naReason !== undefined) === q.notApplicable),
    );
  }

  /** Areas present, in census order first, then any others. */
  areas(): string[] {
    const present = new Set(this.entries.map((e) => e.area));
    const ordered: string[] = AREAS.filter((a) => present.has(a));
    for (const a of present) if (!ordered.includes(a)) ordered.push(a);
    return ordered;
  }
}

/** Load every `<area>.tsv` in `dir` (default spec-refs/catalog). A missing directory gives an empty catalog. */
export function loadCatalog(dir: string = catalogDir()): Catalog {
  if (!existsSync(dir)) return new Catalog([], []);
  const files = readdirSync(dir).filter((f) => f.endsWith('.tsv')).sort();
  const all: CatalogEntry[] = [];
  const areas: string[] = [];
  for (const f of files) {
    const area = f.slice(0, -4);
    const path = join(dir, f);
    const entries = parseCatalogTsv(readFileSync(path, 'utf8'), `spec-refs/catalog/${f}`);
    for (const e of entries) {
      if (e.area !== area) throw new CatalogError('catalog.area', `${e.source}: entry ${e.id} has area ${e.area} in the file for ${area}`);
    }
    all.push(...entries);
    areas.push(area);
  }
  return new Catalog(all, areas);
}

let cached: Catalog | undefined;
/** The repository's catalog, loaded once. */
export function catalog(): Catalog {
  return (cached ??= loadCatalog());
}

/** The census rows; throws a CatalogError saying where it looked when the file is missing. */
export function loadCensus(path: string = censusPath()): CensusRow[] {
  if (!existsSync(path)) {
    throw new CatalogError('catalog.census_missing', `the VIRTIO census file is missing`, {
      expected: `${path} (the shared spec facts, ../shared/spec/ next to the repository root, or set PVKIT_SPEC_DIR)`,
      seen: 'no such file',
    });
  }
  return parseCensus(readFileSync(path, 'utf8'), path);
}

/**
 * Differences between the catalog entries of the given areas and the census rows of the same
 * areas: missing or extra ids, and any id whose area, side, keyword or file:line disagree, or
 * whose paraphrase is empty. An empty list means they are in step.
 */
export function compareWithCensus(entries: readonly CatalogEntry[], census: readonly CensusRow[], areas: readonly string[]): string[] {
  const problems: string[] = [];
  const want = new Map(census.filter((r) => areas.includes(r.area)).map((r) => [r.id, r]));
  const seen = new Set<string>();
  for (const e of entries) {
    if (!areas.includes(e.area)) continue;
    seen.add(e.id);
    const r = want.get(e.id);
    if (!r) {
      problems.push(`${e.source}: ${e.id} is not a census id of area ${e.area}`);
      continue;
    }
    for (const k of ['area', 'side', 'keyword', 'file', 'line'] as const) {
      if (e[k] !== r[k]) problems.push(`${e.source}: ${e.id} ${k} is ${JSON.stringify(e[k])}, census says ${JSON.stringify(r[k])}`);
    }
    if (e.paraphrase.trim() === '') problems.push(`${e.source}: ${e.id} has an empty paraphrase`);
  }
  for (const id of want.keys()) if (!seen.has(id)) problems.push(`census id ${id} (${want.get(id)!.file}:${want.get(id)!.line}) has no catalog entry`);
  return problems;
}
