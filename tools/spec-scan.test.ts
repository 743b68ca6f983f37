import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Catalog, catalog, parseCatalogTsv, repoRoot } from '../spec-refs/catalog.ts';
import { coverage, scanSources, statementInfo } from './spec-scan.ts';

function repo(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'pvkit-scan-'));
  for (const [p, body] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), body);
  }
  return root;
}

const cat = new Catalog(
  parseCatalogTsv(
    'id\tarea\tside\tkeyword\tfile\tline\tblock\tparaphrase\tna_reason\n' +
      ['split.device.1\tsplit\tdevice\tMUST', 'split.device.2\tsplit\tdevice\tSHOULD', 'split.driver.1\tsplit\tdriver\tMUST', 'mmio.device.1\tmmio\tdevice\tMUST', 'mmio.device.2\tmmio\tdevice\tMUST'].map((r, i) => `${r}\tf.tex\t${i + 1}\tb\tp${i}\t${i === 4 ? 'legacy only' : ''}`).join('\n') +
      '\n',
    'fixture.tsv',
  ),
);

describe('spec scanner', () => {
  const root = repo({
    'conformance/checks/index.ts': "import './a.ts';\nexport * from './sub/b.ts';\n",
    'conformance/checks/a.ts': "import { defineCheck } from '../check.ts';\ndefineCheck({ id: 'split.device.one', statements: ['split.device.1', 'split.device.2'], side: 'device' });\n",
    'conformance/checks/sub/b.ts': "import { defineCheck } from '../../check.ts';\nexport const x = defineCheck({ id: 'mmio.device.x', statements: ['mmio.device.1'] });\n",
    'conformance/checks/orphan.ts': "defineCheck({ id: 'split.driver.orphan', statements: ['split.driver.1'] });\n",
    'conformance/checks/bad.test.ts': "defineCheck({ id: 'split.driver.t', statements: ['split.driver.1', 'split.driver.77'] });\n",
    'conformance/checks/dyn.ts': "const ids = ['split.device.1'];\ndefineCheck({ id: 'split.device.dyn', statements: ids });\n",
    'drivers/x.ts': "throw new E('x', 'y', { statements: ['split.driver.1', 'blk.driver.99'] });\n// 'split.device.3' in a comment does not count\n",
  });
  const scan = scanSources(root);

  it('finds defineCheck calls with their literal statements and whether they are registered', () => {
    const by = Object.fromEntries(scan.checks.map((c) => [c.id, c]));
    expect(by['split.device.one']).toMatchObject({ statements: ['split.device.1', 'split.device.2'], registered: true, location: 'conformance/checks/a.ts:2' });
    expect(by['mmio.device.x']!.registered).toBe(true);
    expect(by['split.driver.orphan']!.registered).toBe(false);
    expect(by['split.driver.t']).toBeUndefined();
  });

  it('rejects statements that are not a literal array', () => {
    expect(scan.problems.map((p) => p.location)).toEqual(['conformance/checks/dyn.ts:2']);
  });

  it('counts only registered citations as checked, n/a from the catalog, and reports unknown ids outside tests', () => {
    const cov = coverage(cat, scan);
    expect(cov.areas['split']).toMatchObject({ statements: 3, checked: 2, notApplicable: 0, open: 1, mandatory: { statements: 2, checked: 1, open: 1 } });
    expect(cov.areas['mmio']).toMatchObject({ statements: 2, checked: 1, notApplicable: 1, open: 0 });
    expect(cov.total).toMatchObject({ statements: 5, checked: 3, notApplicable: 1, open: 1 });
    expect(cov.unknownIds).toEqual(['blk.driver.99']);
    expect(cov.unknownRefs[0]!.location).toBe('drivers/x.ts:1');
    expect(cov.unregisteredChecks).toEqual(['split.driver.orphan (conformance/checks/orphan.ts:1)']);
    const info = statementInfo(cat, scan).find((i) => i.entry.id === 'split.device.1')!;
    expect(info.checks.map((c) => c.id)).toEqual(['split.device.one']);
  });

  it('the repository itself cites no unknown statement id and has no malformed check', () => {
    const cov = coverage(catalog(), scanSources(repoRoot()));
    expect(cov.unknownRefs).toEqual([]);
    expect(cov.problems).toEqual([]);
    expect(cov.unregisteredChecks).toEqual([]);
  });
});
