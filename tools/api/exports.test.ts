// The package's entry points (package.json "exports") name modules that exist in the sources and
// export what the README promises; tools/ci/pack-test.sh checks the same through the built tarball.
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  exports: Record<string, string | { types: string; default: string }>;
  bin: Record<string, string>;
  files: string[];
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

/** What each entry must export (a few names each, the ones the README and the example use). */
const PROMISED: Record<string, string[]> = {
  '.': ['createMachine', 'attachMonitor', 'defineCheck', 'runConformance', 'getTarget', 'catalog', 'VirtioBlkDriver', 'Status'],
  './drivers': ['VirtioBlkDriver', 'VirtioNetDriver', 'discoverMmio', 'discoverPci', 'SplitVirtqueue', 'PackedVirtqueue', 'VirtioDriverDevice', 'QtestPlatform'],
  './devices': ['Machine', 'GuestMemory', 'VirtioBlkDevice', 'RamDisk', 'VirtioNetDevice', 'EchoModel', 'attachVirtioMmio', 'attachVirtioPci'],
  './conformance': ['defineCheck', 'registeredChecks', 'runConformance', 'getTarget', 'registerSimDevice', 'attachMonitor', 'createMachine', 'simBlk', 'writeReports'],
  './conformance/vitest': ['checkTests', 'monitorMachine'],
  './spec-refs': ['Status', 'F', 'Mmio', 'featureSet', 'PvkitError', 'catalog', 'ExtentAllocator'],
};

const entries = Object.entries(pkg.exports).filter(([k]) => k !== './package.json');

describe('package.json exports', () => {
  it('lists exactly the promised entry points', () => {
    expect(entries.map(([k]) => k).sort()).toEqual(Object.keys(PROMISED).sort());
  });

  it.each(entries)('%s: types and code of one built module, whose source exists and exports what is promised', async (name, target) => {
    if (typeof target === 'string') throw new Error(`${name}: give types and default`);
    const m = /^\.\/dist\/(.+)\.js$/.exec(target.default);
    expect(m, `${target.default} is a module under dist/`).not.toBeNull();
    expect(target.types).toBe(`./dist/${m![1]}.d.ts`);
    const source = join(root, `${m![1]}.ts`);
    expect(existsSync(source), source).toBe(true);
    const mod = (await import(source)) as Record<string, unknown>;
    const missing = PROMISED[name]!.filter((n) => mod[n] === undefined);
    expect(missing).toEqual([]);
  });

  it('ships the bin and dist/ only, and the runtime packages are dependencies', () => {
    expect(pkg.files.sort()).toEqual(['dist', 'tools/bin/pvkit.js']);
    expect(Object.values(pkg.bin)).toEqual(['./tools/bin/pvkit.js']);
    // imported by the code the CLI and the API load; tsx and ts-morph are for the source tree only
    for (const d of ['yargs', 'fast-check']) expect(pkg.dependencies[d], d).toBeDefined();
    for (const d of ['tsx', 'ts-morph', 'typescript']) expect(pkg.devDependencies[d], d).toBeDefined();
  });
});
