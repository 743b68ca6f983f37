import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { commands } from './commands/index.ts';
import { PvkitError } from '../spec-refs/errors.ts';
import { CliUsageError } from './commands/usage.ts';

export { CliUsageError };

/**
 * `pvkit`: one yargs program; each command lives in tools/commands/<name>.ts and is listed in
 * tools/commands/index.ts. Usage errors exit 2 with one clear line; a command's own failure
 * (a failing conformance run, say) exits 1.
 */
export async function main(argv: string[]): Promise<number> {
  let exitCode = 0;
  let y: Argv = yargs(argv)
    .scriptName('pvkit')
    .strict()
    .demandCommand(1, 'name a command (pvkit --help lists them)')
    .recommendCommands()
    .help()
    .version(false)
    .fail((msg, err) => {
      if (err) throw err;
      // one line: yargs spreads some messages (invalid choices) over several
      throw new CliUsageError((msg ?? 'bad usage').replace(/\s*\n\s*/g, ' '));
    });
  for (const c of commands) y = y.command(c);
  try {
    await y.parseAsync();
    exitCode = process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    if (e instanceof CliUsageError) {
      process.stderr.write(`pvkit: ${e.message}\n`);
      return 2;
    }
    if (e instanceof PvkitError) {
      process.stderr.write(`pvkit: ${e.message}\n`);
      return e.code.startsWith('usage') ? 2 : 1;
    }
    throw e;
  }
  return exitCode;
}


/** Run `pvkit` as the process: tools/bin/pvkit.js calls this; the exit code goes to process.exitCode. */
export function runCli(argv: string[] = hideBin(process.argv)): void {
  // `pvkit spec list | head`: a closed pipe ends the output, it is not an error
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  main(argv).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`pvkit: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}

// `tsx tools/cli.ts ...` runs it directly
if (import.meta.url === `file://${process.argv[1]}`) runCli();
