import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AREAS, Catalog, CatalogError, catalogDir, censusPath, compareWithCensus, loadCatalog, loadCensus, parseCatalogTsv, parseTsv, type CatalogEntry, type CensusRow } from './catalog.ts';

const HEADER = 'id\tarea\tside\tkeyword\tfile\tline\tblock\tparaphrase\tna_reason';

describe('catalog TSV parser', () => {
  it('accepts CRLF, a BOM, blank and comment lines, and a missing trailing na_reason cell', () => {
    const text = `\uFEFF${HEADER}\r\n\r\n# a comment\r\nsplit.driver.1\tsplit\tdriver\tMUST\tsplit-ring.tex\t12\tBlock / X\tthe driver keeps sizes a power of two\r\nsplit.device.2\tsplit\tdevice\tMUST NOT\tsplit-ring.tex\t30\tBlock / Y\tthe device never writes readable buffers\tnot for us\r\n`;
    const es = parseCatalogTsv(text, 't.tsv');
    expect(es.map((e) => e.id)).toEqual(['split.driver.1', 'split.device.2']);
    expect(es[0]!.naReason).toBeUndefined();
    expect(es[0]!.location).toBe('split-ring.tex:12');
    expect(es[0]!.source).toBe('t.tsv:4');
    expect(es[1]!.keyword).toBe('MUST NOT');
    expect(es[1]!.naReason).toBe('not for us');
  });

  it('rejects rows with extra cells, bad keywords, sides, lines and ids, naming file and line', () => {
    const row = (r: string) => `${HEADER}\n${r}\n`;
    expect(() => parseCatalogTsv(row('split.driver.1\tsplit\tdriver\tMUST\tf\t1\tb\tp\t\textra'), 'a.tsv')).toThrow(/a\.tsv:2: 10 cells/);
    expect(() => parseCatalogTsv(row('split.driver.1\tsplit\tdriver\tMUSTN\tf\t1\tb\tp'), 'a.tsv')).toThrow(CatalogError);
    expect(() => parseCatalogTsv(row('split.driver.1\tsplit\tguest\tMUST\tf\t1\tb\tp'), 'a.tsv')).toThrow(/side/);
    expect(() => parseCatalogTsv(row('split.driver.1\tsplit\tdriver\tMUST\tf\t0x1\tb\tp'), 'a.tsv')).toThrow(/line/);
    expect(() => parseCatalogTsv(row('Split-1\tsplit\tdriver\tMUST\tf\t1\tb\tp'), 'a.tsv')).toThrow(/malformed statement id/);
    expect(() => parseTsv('id\tarea\n', 'h.tsv', ['id', 'paraphrase'])).toThrow(/lacks column 'paraphrase'/);
  });

  it('rejects duplicate ids across files', () => {
    const e = parseCatalogTsv(`${HEADER}\nsplit.driver.1\tsplit\tdriver\tMUST\tf\t1\tb\tp\n`, 'x.tsv');
    expect(() => new Catalog([...e, ...e])).toThrow(/duplicate id split\.driver\.1/);
  });
});

describe('census', () => {
  it('fails with a message naming where it looked when the census is missing', () => {
    expect(() => loadCensus('/nonexistent/shared/spec/virtio-1.4-statements.tsv')).toThrow(/census file is missing.*\/nonexistent\/shared\/spec/);
  });

  it('is found next to the repository root and has the 684 in-scope rows', () => {
    const rows = loadCensus();
    expect(rows.length).toBe(684);
    expect(new Set(rows.map((r) => r.area))).toEqual(new Set(AREAS));
  });
});

/** A catalog made from census rows (with a paraphrase), for testing the comparison itself. */
function fromCensus(rows: readonly CensusRow[]): CatalogEntry[] {
  return rows.map((r) => ({ ...r, paraphrase: `para ${r.id}`, naReason: undefined, location: `${r.file}:${r.line}`, source: `fixture:${r.id}` }));
}

describe('compareWithCensus', () => {
  const census = loadCensus();
  const split = census.filter((r) => r.area === 'split');

  it('finds nothing to report for an exact copy', () => {
    expect(compareWithCensus(fromCensus(split), census, ['split'])).toEqual([]);
  });

  it('reports a missing id, an extra id, a wrong keyword/side/line and an empty paraphrase', () => {
    const es = fromCensus(split);
    const broken = es.slice(1).map((e, i) => (i === 0 ? { ...e, keyword: 'MAY' as const } : i === 1 ? { ...e, line: e.line + 1 } : i === 2 ? { ...e, paraphrase: ' ' } : i === 3 ? { ...e, side: (e.side === 'driver' ? 'device' : 'driver') as 'driver' | 'device' } : e));
    broken.push({ ...es[0]!, id: 'split.driver.999', source: 'fixture:extra' });
    const p = compareWithCensus(broken, census, ['split']);
    expect(p.some((m) => m.includes(`census id ${split[0]!.id}`))).toBe(true);
    expect(p.some((m) => m.includes('split.driver.999 is not a census id'))).toBe(true);
    expect(p.some((m) => m.includes(`${split[1]!.id} keyword`))).toBe(true);
    expect(p.some((m) => m.includes(`${split[2]!.id} line`))).toBe(true);
    expect(p.some((m) => m.includes(`${split[3]!.id} has an empty paraphrase`))).toBe(true);
    expect(p.some((m) => m.includes(`${split[4]!.id} side`))).toBe(true);
  });
});

describe('spec-refs/catalog is in step with the census', () => {
  const census = loadCensus();
  const present = AREAS.filter((a) => existsSync(join(catalogDir(), `${a}.tsv`)));
  const cat = loadCatalog();

  it('every catalog file is a known area', () => {
    for (const a of cat.areasLoaded) expect(AREAS as readonly string[]).toContain(a);
  });

  for (const area of present) {
    it(`${area}.tsv has exactly the census rows of ${area}, each with a paraphrase`, () => {
      const problems = compareWithCensus(cat.byArea(area), census, [area]);
      expect(problems, problems.slice(0, 20).join('\n')).toEqual([]);
      expect(cat.byArea(area).length).toBe(census.filter((r) => r.area === area).length);
    });
  }

  it('every area has its catalog file, and the catalog has every census row', () => {
    expect(AREAS.filter((a) => !present.includes(a))).toEqual([]);
    expect(cat.size).toBe(census.length);
    expect(new Set(cat.entries.map((e) => e.id))).toEqual(new Set(census.map((r) => r.id)));
  });

  it('census path is reported for tooling', () => {
    expect(censusPath()).toMatch(/shared\/spec\/virtio-1\.4-statements\.tsv$/);
  });
});
