#!/usr/bin/env node
// The pvkit CLI entry point. In the source tree (tools/cli.ts is here) it runs the TypeScript
// sources through tsx, a devDependency (Node 20 has no type stripping), so no build step is needed;
// the installed package ships no sources and runs the JavaScript that `npm run build` put in dist/.
import { existsSync } from 'node:fs';

const sources = new URL('../cli.ts', import.meta.url);
let cli;
if (existsSync(sources)) {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import(sources.href);
} else {
  cli = await import(new URL('../../dist/tools/cli.js', import.meta.url).href);
}
cli.runCli(process.argv.slice(2));
