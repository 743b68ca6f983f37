/**
 * `pvkit repl`: a node:repl with a Session's helpers in its context, a `.help` that lists them,
 * tab completion for helper names (node's own) and for the string arguments of spec(),
 * breakRule(), want() and refuse(), and history kept between sessions in $PVKIT_HISTORY or
 * ~/.pvkit_repl_history.
 */
import repl, { type REPLServer } from 'node:repl';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import type { Readable, Writable } from 'node:stream';
import { HELPERS, Session, View, helpers, type SessionOptions } from './session.ts';
import { catalog } from '../../spec-refs/catalog.ts';
import { BlkF, F, NetF } from '../../spec-refs/abi/virtio.ts';

export interface ReplOptions extends SessionOptions {
  /** Write the Chrome trace here when the REPL exits. */
  traceFile?: string;
  input?: Readable;
  output?: Writable;
  /** History file; '' for none. Default $PVKIT_HISTORY or ~/.pvkit_repl_history. */
  historyPath?: string;
}

export function historyPath(): string {
  return process.env.PVKIT_HISTORY || join(homedir(), '.pvkit_repl_history');
}

export function helpText(): string {
  const w = Math.max(...HELPERS.map((h) => h.usage.length));
  return [
    'pvkit helpers (each prints a report; the value behind it is in .data):',
    ...HELPERS.map((h) => `  ${h.usage.padEnd(w)}  ${h.what}`),
    '',
    'A first walk (blk): step() eight times (or init()), then read(0), read(1), ring(), tick(), tick(), ring(), collect(), ring().',
    'With --device net: init(), rx(2), arp(), run(), collect(), ping(), run(), ring(0), collect().',
    'REPL commands: .help (this list), .exit, .break, .clear, .editor, .load FILE, .save FILE. Tab completes helper names and string arguments.',
  ].join('\n');
}

const BREAK_RULES = ['skip-features-ok', 'bad-descriptor', 'clear-status', 'notify-early'];

/** Completions for the string argument being typed in `spec('`, `breakRule('`, `want('`, `refuse('`. */
export function completeArgument(line: string): [string[], string] | undefined {
  const m = /\b(spec|breakRule|want|refuse)\(\s*(?:[^)]*,\s*)?['"]([^'"]*)$/.exec(line);
  if (!m) return undefined;
  const [, fn, partial] = m;
  let pool: string[];
  if (fn === 'spec') pool = catalog().entries.map((e) => e.id);
  else if (fn === 'breakRule') pool = BREAK_RULES;
  else pool = [...Object.keys(F), ...Object.keys(BlkF), ...Object.keys(NetF)];
  const hits = pool.filter((x) => x.startsWith(partial!));
  return [hits, partial!];
}

export function startRepl(opts: ReplOptions = {}): { server: REPLServer; session: Session } {
  const session = new Session({ ...opts, trace: opts.trace || opts.traceFile !== undefined });
  const output = opts.output ?? process.stdout;
  output.write(
    `pvkit repl: virtio-${session.device} over ${session.transportKind}, ${session.ringKind} ring, queue size up to ${session.queueSize}, monitor attached` +
      (session.transportKind.startsWith('pci') ? ' (it judges virtio-mmio devices; over virtio-pci the device model\'s own checks report what you break)' : '') +
      '.\n' +
      `Type .help for the helpers; start with step().\n`,
  );
  const server = repl.start({
    prompt: 'pvkit> ',
    input: opts.input ?? process.stdin,
    output,
    useGlobal: false,
    ignoreUndefined: true,
    preview: false,
    writer: (v: unknown) => (v instanceof View ? v.text : inspect(v, { colors: false, depth: 3 })),
  });
  const ctx = helpers(session);
  for (const [k, v] of Object.entries(ctx)) {
    if (k === 'blk' || k === 'net') continue;
    Object.defineProperty(server.context, k, { value: v, writable: true, enumerable: true, configurable: true });
  }
  Object.defineProperty(server.context, 'blk', { get: () => session.blk, enumerable: true, configurable: true });
  Object.defineProperty(server.context, 'net', { get: () => session.net, enumerable: true, configurable: true });
  server.defineCommand('help', {
    help: 'List the pvkit helpers and the REPL commands',
    action(this: REPLServer) {
      this.clearBufferedCommand();
      this.output.write(helpText() + '\n');
      this.displayPrompt();
    },
  });
  const dflt = server.completer as (line: string, cb: (err: Error | null, result?: [string[], string]) => void) => void;
  (server as unknown as { completer: typeof dflt }).completer = (line, cb) => {
    const arg = completeArgument(line);
    if (arg) cb(null, arg);
    else dflt.call(server, line, cb);
  };
  const hist = opts.historyPath ?? historyPath();
  if (hist) {
    server.setupHistory(hist, (err) => {
      if (err) output.write(`(history not kept: ${err.message})\n`);
    });
  }
  server.on('exit', () => {
    if (opts.traceFile) {
      try {
        output.write(session.writeTrace(opts.traceFile).text + '\n');
      } catch (e) {
        output.write(`trace not written: ${e instanceof Error ? e.message : String(e)}\n`);
      }
    }
  });
  return { server, session };
}
