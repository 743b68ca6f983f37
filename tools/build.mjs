#!/usr/bin/env node
// `npm run build` (run by `npm pack` through prepack): the package's dist/.
//  1. tsc -p tsconfig.build.json: every non-test module as JavaScript + .d.ts, with the same
//     folder layout as the sources (dist/drivers, dist/device-models, dist/conformance, ...).
//  2. The data files the code reads at run time, beside the compiled modules that read them.
//  3. dist/tools/spec-scan.json: the statement-id scan of the TypeScript sources (ts-morph, a
//     devDependency), which `pvkit spec coverage|list|show` reads in the installed package.
// Plain JavaScript so that it runs before anything is compiled.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');

/** Files read at run time through paths relative to their module (import.meta.url). */
const DATA = [
  { dir: 'spec-refs/catalog', match: /\.tsv$/ }, // spec-refs/catalog.ts: the statement catalog
  { dir: 'spec-refs/census', match: /./ }, // the VIRTIO census, where the tree has it
  { dir: 'drivers/platform/qtest', match: /^channel-worker\.mjs$/ }, // sync-channel.ts: its worker thread
];

function fail(msg) {
  process.stderr.write(`build: ${msg}\n`);
  process.exit(1);
}

const t0 = performance.now();
rmSync(dist, { recursive: true, force: true });
const tscBin = join(root, 'node_modules', '.bin', 'tsc');
const tsc = spawnSync(existsSync(tscBin) ? tscBin : 'tsc', ['-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (tsc.error) fail(`cannot run tsc (${tsc.error.message}); run npm ci first`);
if (tsc.status !== 0) fail('tsc -p tsconfig.build.json failed');

let copied = 0;
for (const { dir, match } of DATA) {
  const from = join(root, dir);
  if (!existsSync(from)) continue;
  for (const f of readdirSync(from, { withFileTypes: true })) {
    if (!f.isFile() || !match.test(f.name)) continue;
    mkdirSync(join(dist, dir), { recursive: true });
    cpSync(join(from, f.name), join(dist, dir, f.name));
    copied++;
  }
}
if (!existsSync(join(dist, 'spec-refs/catalog'))) fail('spec-refs/catalog/*.tsv not found');

const { scanSources } = await import(join(dist, 'tools/spec-scan.js'));
const scan = scanSources(root);
writeFileSync(join(dist, 'tools/spec-scan.json'), JSON.stringify(scan) + '\n');

console.log(`build: dist/ (${relative(process.cwd(), dist) || '.'}) with ${copied} data files and a scan of ${scan.checks.length} checks, in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
