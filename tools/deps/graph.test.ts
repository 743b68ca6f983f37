import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkLayering, findCycles, isTestFile, readGraph } from './graph.ts';
import { PICTURES, pictureBlock } from './picture.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A throw-away tree with the layer folders and the given files. */
function tree(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'pvkit-deps-'));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

function violationsOf(files: Record<string, string>): string[] {
  const dir = tree(files);
  try {
    return checkLayering(dir).map((v) => `${v.kind}: ${v.message}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('the layering rule', () => {
  it('holds for this repository, with no exception list', () => {
    expect(checkLayering(root).map((v) => `${v.kind}: ${v.message}`)).toEqual([]);
  });

  it('reads every kind of import: static, type-only, re-export, dynamic', () => {
    const dir = tree({
      'spec-refs/a.ts': 'export const a = 1;',
      'spec-refs/b.ts': 'export type B = 1;',
      'spec-refs/c.ts': 'export const c = 1;',
      'spec-refs/d.ts': 'export const d = 1;',
      'drivers/x.ts':
        "import { a } from '../spec-refs/a.ts';\nimport type { B } from '../spec-refs/b.ts';\nexport { c } from '../spec-refs/c.ts';\nconst d = await import('../spec-refs/d.ts');\n",
    });
    try {
      const g = readGraph(dir);
      expect(g.edges.map((e) => `${e.from} -> ${e.to}:${e.line}`)).toEqual([
        'drivers/x.ts -> spec-refs/a.ts:1',
        'drivers/x.ts -> spec-refs/b.ts:2',
        'drivers/x.ts -> spec-refs/c.ts:3',
        'drivers/x.ts -> spec-refs/d.ts:4',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects a back-edge: a lower layer importing a higher one', () => {
    expect(violationsOf({ 'spec-refs/a.ts': "import '../drivers/d.ts';", 'drivers/d.ts': '' })).toEqual([
      'back-edge: spec-refs/a.ts:1 imports drivers/d.ts: spec-refs/ sits below drivers/ (a test may use up to conformance/)',
    ]);
    expect(violationsOf({ 'conformance/c.ts': "import '../tools/t.ts';", 'tools/t.ts': '' })[0]).toMatch(/^back-edge: conformance\/c\.ts:1/);
  });

  it('rejects drivers and device-models importing each other, in either direction', () => {
    expect(violationsOf({ 'drivers/d.ts': "import '../device-models/m.ts';", 'device-models/m.ts': '' })[0]).toMatch(/^sibling: drivers\/d\.ts:1/);
    expect(violationsOf({ 'device-models/m.ts': "import type { X } from '../drivers/d.ts';", 'drivers/d.ts': '' })[0]).toMatch(/^sibling: device-models\/m\.ts:1/);
  });

  it('lets a test use the other side and conformance harnesses, but not tools/', () => {
    expect(
      violationsOf({ 'drivers/d.test.ts': "import '../device-models/m.ts';\nimport '../conformance/h.ts';", 'device-models/m.ts': '', 'conformance/h.ts': '' }),
    ).toEqual([]);
    expect(violationsOf({ 'drivers/d.test.ts': "import '../tools/t.ts';", 'tools/t.ts': '' })[0]).toMatch(/^back-edge: drivers\/d\.test\.ts:1/);
  });

  it('rejects product code importing a test file', () => {
    expect(violationsOf({ 'drivers/d.ts': "import './w.test-support.ts';", 'drivers/w.test-support.ts': '' })).toEqual([
      'test-import: drivers/d.ts:1 imports drivers/w.test-support.ts: product code may not import a test file',
    ]);
  });

  it('rejects an import cycle, of any length, type-only imports included', () => {
    const v = violationsOf({
      'conformance/a.ts': "import type { B } from './b.ts';",
      'conformance/b.ts': "import { c } from './c.ts';",
      'conformance/c.ts': "import './a.ts';",
      'conformance/d.ts': "import './a.ts';",
    });
    expect(v).toEqual(['cycle: import cycle: conformance/a.ts -> conformance/b.ts -> conformance/c.ts']);
    const dir = tree({ 'tools/x.ts': "import './x.ts';" });
    try {
      expect(findCycles(readGraph(dir))).toEqual([['tools/x.ts']]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects an import of a file that does not exist (a move that left an import behind)', () => {
    expect(violationsOf({ 'drivers/d.ts': "import '../spec-refs/gone.ts';" })).toEqual([
      'unresolved: drivers/d.ts:1 imports ../spec-refs/gone.ts, which names no file',
    ]);
  });

  it('knows test files from product modules', () => {
    for (const f of ['a/b.test.ts', 'a/b.test.mts', 'a/w.test-support.ts', 'device-models/blk/test-support.ts']) expect(isTestFile(f), f).toBe(true);
    for (const f of ['a/b.ts', 'a/testing/echo.ts', 'a/contest-support.ts']) expect(isTestFile(f), f).toBe(false);
  });
});

describe('the dependency pictures', () => {
  const g = readGraph(root);
  for (const p of PICTURES) {
    it(`${p.file} shows the graph as it is (regenerate with npm run deps -- --write)`, () => {
      const text = readFileSync(join(root, p.file), 'utf8');
      const a = text.indexOf('<!-- deps:begin');
      const b = text.indexOf('<!-- deps:end -->') + '<!-- deps:end -->'.length;
      expect(a).toBeGreaterThanOrEqual(0);
      expect(text.slice(a, b)).toBe(pictureBlock(g, p.depth));
    });
  }

  it('draws only allowed arrows between layers', () => {
    const block = pictureBlock(g, 1);
    expect(block).toContain('drivers -->|');
    expect(block).not.toMatch(/drivers -->\|\d+\| device_models|device_models -->\|\d+\| drivers/);
    expect(block).not.toMatch(/spec_refs -->/);
  });
});
