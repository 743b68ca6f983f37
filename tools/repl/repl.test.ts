/**
 * Drives `pvkit repl` as a person would: in a terminal (tmux), typing, pressing Tab and the up
 * arrow, and reading the screen. Skipped, with a message, where tmux is not installed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { validateTrace } from '../../device-models/machine/trace-format.ts';
import { completeArgument, helpText } from './repl.ts';

const hasTmux = spawnSync('tmux', ['-V']).status === 0;
if (!hasTmux) console.warn('tools/repl/repl.test.ts: tmux is not installed; the terminal-driven REPL test is skipped');

const root = resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'pvkit-repl-'));
const sock = join(dir, 'tmux.sock');
const name = 'pvkit';
const history = join(dir, 'history');
const trace = join(dir, 'trace.json');

function tmux(...args: string[]): string {
  return execFileSync('tmux', ['-S', sock, ...args], { encoding: 'utf8' });
}
function screen(): string {
  return tmux('capture-pane', '-p', '-J', '-S', '-400', '-t', name);
}
function type(text: string): void {
  tmux('send-keys', '-t', name, '-l', text);
}
function key(...keys: string[]): void {
  tmux('send-keys', '-t', name, ...keys);
}
function clear(): void {
  tmux('clear-history', '-t', name);
  key('C-l');
}
async function waitFor(re: RegExp, ms = 8000): Promise<string> {
  const end = Date.now() + ms;
  let s = '';
  while (Date.now() < end) {
    s = screen();
    if (re.test(s)) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`screen never matched ${re}; it shows:\n${s}`);
}
async function enter(cmd: string, until: RegExp): Promise<string> {
  clear();
  await waitFor(/pvkit> $/m);
  type(cmd);
  key('Enter');
  return waitFor(until);
}
function startRepl(): void {
  const cmd = `cd ${root} && PVKIT_HISTORY=${history} node tools/bin/pvkit.js repl --trace ${trace}; echo REPL-EXITED $?; sleep 30`;
  tmux('new-session', '-d', '-s', name, '-x', '200', '-y', '60', cmd);
}

describe.skipIf(!hasTmux)('pvkit repl in a terminal', () => {
  beforeAll(() => startRepl());
  afterAll(() => {
    try {
      tmux('kill-server');
    } catch {
      // already gone
    }
  });

  it('initialises, fills the ring, steps the device, drains the ring, completes, keeps history, writes a valid trace', async () => {
    await waitFor(/Type \.help[\s\S]*pvkit> $/m, 15000);
    // .help lists the helpers
    let s = await enter('.help', /breakRule\('bad-descriptor'\)[\s\S]*pvkit> $/m);
    expect(s).toContain('tick()');
    // tab completion of a helper name
    clear();
    await waitFor(/pvkit> $/m);
    type('breakR');
    await waitFor(/pvkit> breakR$/m);
    key('Tab');
    await waitFor(/pvkit> breakRule$/m);
    key('C-u');
    // and of a statement id argument
    type("spec('status_init.driver.1");
    // readline lists the candidates on a second Tab; on a loaded machine a Tab can arrive early, so press again until they show
    for (let i = 0; ; i++) {
      key('Tab');
      try {
        s = await waitFor(/status_init\.driver\.12/, 1500);
        break;
      } catch (e) {
        if (i >= 5) throw e;
      }
    }
    expect(s).toContain('status_init.driver.10');
    key('C-u');
    // initialisation one status bit at a time
    s = await enter('step()', /step 1\/8: identify the device[\s\S]*pvkit> $/m);
    expect(s).toContain('device id 2 (block)');
    s = await enter('init()', /step 8\/8: set DRIVER_OK[\s\S]*pvkit> $/m);
    expect(s).toMatch(/status now ACKNOWLEDGE\|DRIVER\|DRIVER_OK\|FEATURES_OK/);
    // the ring fills...
    await enter('read(0); read(1); write(2, "hello")', /write: request #3[\s\S]*pvkit> $/m);
    s = await enter('ring()', /outstanding: 3 buffer[\s\S]*pvkit> $/m);
    expect(s).toContain('queue 0 (split, size 16): 7 free, 9 in flight, 0 used');
    // ...the device runs one event at a time...
    s = await enter('tick()', /tick: one device event[\s\S]*pvkit> $/m);
    expect(s).toMatch(/device events run: virtio:virtio-blk\(ram\):notify0/);
    s = await enter('tick()', /interrupts: vector 0x25[\s\S]*pvkit> $/m);
    expect(s).toMatch(/EXTERNAL_INTERRUPT x1 \(\d+ cycles\)/);
    s = await enter('ring()', /used:\s+flags=0 idx=3[\s\S]*pvkit> $/m);
    expect(s).toContain('7 free, 0 in flight, 9 used');
    // ...and drains
    s = await enter('collect()', /#3 write sector 2: status OK[\s\S]*pvkit> $/m);
    s = await enter('ring()', /16 free, 0 in flight, 0 used[\s\S]*pvkit> $/m);
    // a rule broken on purpose is named by the monitor
    s = await enter("breakRule('bad-descriptor')", /monitor: driver broke split\.driver\.2[\s\S]*pvkit> $/m);
    expect(s).toContain('split-ring.tex:151');
    s = await enter('tick()', /device recorded \(set DEVICE_NEEDS_RESET\)[\s\S]*pvkit> $/m);
    // history: the up arrow brings back the last line
    clear();
    await waitFor(/pvkit> $/m);
    key('Up');
    await waitFor(/pvkit> tick\(\)$/m);
    key('C-u');
    type('.exit');
    key('Enter');
    s = await waitFor(/REPL-EXITED 0/);
    expect(s).toContain(`trace written to ${trace}`);
    expect(readFileSync(history, 'utf8')).toMatch(/ring\(\)/);
    const parsed = JSON.parse(readFileSync(trace, 'utf8'));
    expect(validateTrace(parsed)).toEqual([]);
    const names = new Set((parsed.traceEvents as { name: string }[]).map((e) => e.name));
    expect(names.has('EPT_MISCONFIG')).toBe(true);
    expect(names.has('virtio:virtio-blk(ram):notify0')).toBe(true);
    // history is kept between sessions: a new REPL's up arrow brings back the last session's line
    tmux('kill-session', '-t', name);
    startRepl();
    await waitFor(/Type \.help[\s\S]*pvkit> $/m, 15000);
    key('Up');
    await waitFor(/pvkit> \.exit$/m);
    key('Up');
    await waitFor(/pvkit> tick\(\)$/m);
  }, 60_000);
});

describe('repl helpers without a terminal', () => {
  it('completes string arguments of spec, breakRule and want', () => {
    expect(completeArgument("spec('split.driver.1")?.[0]).toEqual(expect.arrayContaining(['split.driver.1', 'split.driver.10', 'split.driver.19']));
    expect(completeArgument("breakRule('b")).toEqual([['bad-descriptor'], 'b']);
    expect(completeArgument("want('EVENT_IDX', 'IND")).toEqual([['INDIRECT_DESC'], 'IND']);
    expect(completeArgument('ring(')).toBeUndefined();
  });
  it('.help text names every helper', () => {
    for (const h of ['step()', 'ring(q = 0, {all})', 'tick()', 'collect(q?)', 'rx(count = 4, {kick})', "spec('split.driver.2')"]) expect(helpText()).toContain(h);
    expect(existsSync(root)).toBe(true);
  });
});
