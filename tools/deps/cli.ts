/**
 * `npm run deps`: check the layering rule (exit 1 on a violation); `--write` also regenerates the
 * README picture and docs/architecture.md's folder graph; `--mermaid 1|2` prints a picture.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkLayering, readGraph } from './graph.ts';
import { PICTURES, mermaid, pictureBlock, replaceReadmeBlock } from './picture.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const g = readGraph(root);
const m = args.indexOf('--mermaid');
if (m >= 0) {
  const depth = args[m + 1] === '2' ? 2 : 1;
  console.log(mermaid(g, depth));
} else {
  if (args.includes('--write')) {
    for (const p of PICTURES) {
      const file = join(root, p.file);
      writeFileSync(file, replaceReadmeBlock(readFileSync(file, 'utf8'), pictureBlock(g, p.depth)));
      console.log(`wrote ${p.file}`);
    }
  }
  const violations = checkLayering(root);
  for (const v of violations) console.log(`${v.kind}: ${v.message}`);
  console.log(`${g.files.length} modules, ${g.edges.length} imports, ${violations.length} violations`);
  process.exitCode = violations.length ? 1 : 0;
}
