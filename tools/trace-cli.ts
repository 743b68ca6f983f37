/**
 * `--trace FILE` for pvkit commands: open a TraceSession (every simulated Machine the command
 * builds becomes a process of the trace, on its own virtual clock) and write the Chrome
 * trace-event JSON when the command ends. One call at the start, one at the end, so that a
 * command's own file changes by a few lines.
 */
import { accessSync, constants, existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { TraceSession, type TracerOptions } from '../device-models/machine/trace.ts';
import { UsageError } from '../spec-refs/errors.ts';

export const TRACE_OPTION = {
  type: 'string',
  describe: 'write a Chrome trace-event JSON (exits, device work, interrupts on virtual time; opens in Perfetto) to FILE',
} as const;

export interface CommandTrace {
  /** Name the machines built from now on (e.g. the check about to run). */
  label(name: string): void;
  /** Stop tracing and write the file; returns a one-line note for the user. */
  finish(): string;
}

/** A --trace FILE that cannot be written is a usage error (exit 2), found before any work is done. */
export function checkTracePath(path: string): void {
  if (path === '') throw new UsageError('usage.trace', '--trace needs a file name');
  const dir = dirname(resolve(path));
  if (!existsSync(dir)) throw new UsageError('usage.trace', `--trace: directory ${dir} does not exist`);
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new UsageError('usage.trace', `--trace: directory ${dir} is not writable`);
  }
}

/** Start tracing to `path`, or return undefined when no path was given. A path whose directory is missing is a usage error (exit 2). */
export function startCommandTrace(path: string | undefined, opts: TracerOptions = {}): CommandTrace | undefined {
  if (path === undefined) return undefined;
  checkTracePath(path);
  let current = 'machine';
  const session = new TraceSession(() => current, opts);
  return {
    label(name: string) {
      current = name;
    },
    finish() {
      session.finish(path);
      const t = session.tracer;
      if (session.machineCount === 0) return `trace: no simulated machine ran, so ${path} holds no events (a QEMU target has no virtual clock to trace)`;
      return `trace: ${session.machineCount} machine(s), ${t.count} events${t.dropped ? ` (${t.dropped} more dropped past the limit)` : ''} written to ${path}; open it in https://ui.perfetto.dev`;
    },
  };
}
