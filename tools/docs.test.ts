/**
 * The guide's examples never rot: every ```ts block in docs/*.md and docs/guide/*.md (the
 * guide's chapters) that starts with `// docs/examples/NAME.ts` must be that file, byte for byte;
 * every docs/examples/*.ts is shown in some chapter and runs here (each asserts what its chapter
 * claims); and every ```pvkit-repl transcript is replayed in a fresh REPL session and must print
 * what the chapter shows. Set PVKIT_UPDATE_DOCS=1 to rewrite the transcripts from a replay (then
 * read the diff).
 */
import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Session, helpers, type SessionOptions } from './repl/session.ts';
import { helpText } from './repl/repl.ts';

const root = resolve(import.meta.dirname, '..');
const docsDir = join(root, 'docs');
/** The guide's chapters, in reading order; the guide is read as one doc, docs/driver-guide.md (its index). */
const GUIDE = 'driver-guide.md';
const guideDir = join(docsDir, 'guide');
const markdown = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.md'))
    .sort();
const docs = [
  ...markdown(docsDir).map((f) => ({ name: f, path: join(docsDir, f) })),
  ...markdown(guideDir).map((f) => ({ name: GUIDE, path: join(guideDir, f) })),
].map((d) => ({ ...d, text: readFileSync(d.path, 'utf8') }));
const examples = readdirSync(join(docsDir, 'examples'))
  .filter((f) => f.endsWith('.ts'))
  .sort();

interface Block {
  /** The doc it belongs to (a chapter of the guide belongs to driver-guide.md), and the file it is in. */
  doc: string;
  path: string;
  info: string;
  body: string;
  start: number;
  end: number;
}

function blocks(doc: { name: string; path: string; text: string }): Block[] {
  const out: Block[] = [];
  const re = /^```([^\n]*)\n([\s\S]*?)^```$/gm;
  for (let m = re.exec(doc.text); m; m = re.exec(doc.text)) out.push({ doc: doc.name, path: doc.path, info: m[1]!.trim(), body: m[2]!, start: m.index, end: m.index + m[0].length });
  return out;
}

const all = docs.flatMap(blocks);

describe('docs/examples', () => {
  const shown = new Map<string, Block>();
  for (const b of all.filter((b) => b.info === 'ts')) {
    const m = /^\/\/ (docs\/examples\/[\w.-]+\.ts)/.exec(b.body);
    if (m) shown.set(m[1]!, b);
  }

  it.each(examples)('%s is shown verbatim in a chapter', (f) => {
    const b = shown.get(`docs/examples/${f}`);
    expect(b, `docs/examples/${f} is not included in any docs/*.md or docs/guide/*.md`).toBeDefined();
    expect(b!.body).toBe(readFileSync(join(docsDir, 'examples', f), 'utf8'));
  });

  it.each(examples)('%s runs', async (f) => {
    const mod = (await import(join(docsDir, 'examples', f))) as { run: () => unknown };
    const lines = await mod.run();
    expect(Array.isArray(lines)).toBe(true);
  });
});

/**
 * Replay a doc's transcripts in one session (chapter 1 continues from block to block): `pvkit> expr`
 * lines are evaluated with the helpers in scope; what follows is the expected output.
 */
function replay(session: Session, body: string): string {
  const scope = helpers(session);
  const names = Object.keys(scope);
  const out: string[] = [];
  for (const line of body.split('\n')) {
    if (!line.startsWith('pvkit> ')) continue;
    const expr = line.slice(7);
    out.push(line);
    const v = new Function(...names, `return (${expr});`)(...names.map((n) => (scope as Record<string, unknown>)[n]));
    if (v !== undefined) out.push(String(v));
  }
  return out.join('\n') + '\n';
}

function maskCosts(text: string): string {
  return text.replace(/\d+(?= cycles)/g, 'N').replace(/[\d.]+ (?:ns|us|ms)\b/g, 'T');
}

function optionsOf(info: string): SessionOptions {
  const o: SessionOptions = {};
  for (const m of info.matchAll(/--(device|transport|ring)[ =](\S+)/g)) (o as Record<string, string>)[m[1]!] = m[2]!;
  return o;
}

describe('REPL transcripts in the docs', () => {
  const byDoc = new Map<string, Block[]>();
  for (const b of all.filter((b) => b.info.startsWith('pvkit-repl'))) byDoc.set(b.doc, [...(byDoc.get(b.doc) ?? []), b]);
  it('there is at least one (chapter 1 of the guide)', () => expect(byDoc.get('driver-guide.md')?.length ?? 0).toBeGreaterThan(0));
  it.each([...byDoc.keys()])('%s: the transcripts replay as shown', (doc) => {
    const bs = byDoc.get(doc)!;
    let session = new Session(optionsOf(bs[0]!.info));
    for (const [i, b] of bs.entries()) {
      // A block whose fence names flags (```pvkit-repl --device net) starts a new session; others continue.
      if (i > 0 && /--/.test(b.info)) session = new Session(optionsOf(b.info));
      const got = replay(session, b.body);
      if (process.env.PVKIT_UPDATE_DOCS) {
        const text = readFileSync(b.path, 'utf8');
        writeFileSync(b.path, text.replace('```' + b.info + '\n' + b.body, '```' + b.info + '\n' + got));
      } else {
        // Modelled cycles and virtual times follow the cost profiles (other engineers' constants);
        // they are compared as numbers-of-some-value, everything else exactly.
        expect(maskCosts(got)).toBe(maskCosts(b.body));
      }
    }
  });
});

describe('the REPL reference in the guide', () => {
  it('lists exactly what .help prints', () => {
    const path = join(guideDir, 'repl-reference.md');
    const text = readFileSync(path, 'utf8');
    const i = text.indexOf('What `.help` prints');
    expect(i).toBeGreaterThan(0);
    const b = /```text\n([\s\S]*?)```/.exec(text.slice(i))!;
    if (process.env.PVKIT_UPDATE_DOCS) {
      writeFileSync(path, text.slice(0, i) + text.slice(i).replace(b[0], '```text\n' + helpText() + '\n```'));
      return;
    }
    expect(b[1]).toBe(helpText() + '\n');
  });
});
