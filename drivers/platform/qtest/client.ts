import { PvkitError, GuestMemoryError, hex } from '../../../spec-refs/errors.ts';
import type { SyncChannel } from './sync-channel.ts';

/**
 * A client for QEMU's qtest text protocol (softmmu/qtest.c): one command per line, one response
 * line per command ("OK ...", "FAIL ...", "ERR ..."), plus asynchronous "IRQ raise N" / "IRQ lower N"
 * lines once irq_intercept_in is on.
 *
 * Commands whose result the caller does not need (memory and register writes) are posted: they
 * queue up and go out, in order, with the next command that needs an answer, in one round trip.
 * The peer executes them in the order sent, so a device sees exactly the program order of the
 * driver's stores, as a CPU's posted writes would arrive. Consecutive memory writes to adjacent
 * addresses merge into one b64write (executed atomically by QEMU's main loop).
 */
export class QtestError extends PvkitError {}
/**
 * The response stream no longer matches the commands sent (a line too many, too few, or out of
 * order). The session is unusable afterwards: the channel is marked broken, so every later call
 * fails too instead of returning another command's answer.
 */
export class QtestDesyncError extends QtestError {}

// What a command's response must look like (checked line by line before any value is used).
const R_OK = 0; // exactly "OK" (stores, memset, port writes, irq_intercept_in)
const R_VALUE = 1; // "OK 0x<hex>" (readb/w/l/q, inb/w/l)
const R_B64 = 2; // "OK <base64>" of exactly the requested length
const R_ANY = 3; // "OK" or "OK <anything>" (command())
/**
 * Every batch that waits for answers ends with this fence: its response, "OK little", is one no
 * other command pvkit sends can produce, so a stream that gained a line (or lost one to an earlier
 * batch) shows at the fence before any value of the batch is used.
 */
const FENCE = 'endianness';
const FENCE_REPLY = 'OK little';
const B64_LINE = /^OK [A-Za-z0-9+/]*={0,2}$/;
const VALUE_LINE = /^OK 0x[0-9a-fA-F]+$/;

const MAX_MERGED_WRITE = 64 * 1024;
const TWO32 = 0x1_0000_0000;

export interface QtestStats {
  roundTrips: number;
  commands: number;
}

export class QtestClient {
  private queue: string[] = [];
  // per queued command: the response shape (R_*) and, for b64read, the byte count
  private shapes: number[] = [];
  private b64lens: number[] = [];
  // the tail memory write being merged: [pendAddr, pendAddr + pendLen)
  private pendBuf = new Uint8Array(4096);
  private pendAddr = -1;
  private pendLen = 0;
  readonly stats: QtestStats = { roundTrips: 0, commands: 0 };
  /** Receives every asynchronous IRQ line, in arrival order. */
  onIrq: (raised: boolean, line: number) => void = () => {};

  constructor(private readonly chan: SyncChannel) {}

  /** Commands queued and not yet sent. */
  get queued(): number {
    return this.queue.length + (this.pendLen > 0 ? 1 : 0);
  }

  // ---------------------------------------------------------------- posted commands

  /** Queue a write of `data` (copied) to guest-physical memory. */
  writeMem(addr: number, data: Uint8Array): void {
    const len = data.length;
    if (len === 0) return;
    if (this.pendLen > 0 && addr >= this.pendAddr && addr <= this.pendAddr + this.pendLen && addr + len - this.pendAddr <= MAX_MERGED_WRITE) {
      const off = addr - this.pendAddr;
      this.growPend(off + len);
      this.pendBuf.set(data, off);
      if (off + len > this.pendLen) this.pendLen = off + len;
      return;
    }
    this.closePend();
    this.growPend(len);
    this.pendBuf.set(data, 0);
    this.pendAddr = addr;
    this.pendLen = len;
  }

  memset(addr: number, len: number, value: number): void {
    if (len <= 0) return;
    this.push(`memset ${hex(addr)} ${len} ${hex(value & 0xff)}`, R_OK);
  }

  /** MMIO (or any physical-address) store of 1, 2, 4 or 8 bytes. */
  write(addr: number, size: 1 | 2 | 4 | 8, value: number): void {
    this.push(`write${SUFFIX[size]} ${hex(addr)} ${hexValue(value, size)}`, R_OK);
  }

  out(port: number, size: 1 | 2 | 4, value: number): void {
    this.push(`out${SUFFIX[size]} ${hex(port & 0xffff)} ${hexValue(value, size)}`, R_OK);
  }

  // ---------------------------------------------------------------- commands with answers

  read(addr: number, size: 1 | 2 | 4 | 8): number {
    this.push(`read${SUFFIX[size]} ${hex(addr)}`, R_VALUE);
    return parseValue(this.flushLast(), size);
  }

  /** Several reads of one size in one round trip. */
  readMany(addrs: readonly number[], size: 1 | 2 | 4 | 8): number[] {
    if (addrs.length === 0) return [];
    for (const a of addrs) this.push(`read${SUFFIX[size]} ${hex(a)}`, R_VALUE);
    const lines = this.flush();
    return lines.slice(lines.length - addrs.length).map((l) => parseValue(l, size));
  }

  in(port: number, size: 1 | 2 | 4): number {
    this.push(`in${SUFFIX[size]} ${hex(port & 0xffff)}`, R_VALUE);
    return parseValue(this.flushLast(), size);
  }

  /** Read several guest-physical ranges in one round trip. */
  readMem(ranges: readonly (readonly [addr: number, len: number])[]): Uint8Array[] {
    for (const [, l] of ranges) {
      if (!Number.isSafeInteger(l) || l <= 0) throw new QtestError('qtest.usage', 'b64read needs a positive length', { seen: String(l) });
    }
    for (const [a, l] of ranges) this.push(`b64read ${hex(a)} ${l}`, R_B64, l);
    const lines = this.flush();
    const res: Uint8Array[] = [];
    const first = lines.length - ranges.length;
    for (let i = 0; i < ranges.length; i++) {
      const line = lines[first + i]!;
      const b = Buffer.from(line.slice(3), 'base64');
      if (b.length !== ranges[i]![1]) {
        throw new QtestError('qtest.protocol', 'b64read returned the wrong length', { expected: String(ranges[i]![1]), seen: String(b.length) });
      }
      res.push(new Uint8Array(b.buffer, b.byteOffset, b.length));
    }
    return res;
  }

  /** A command whose response is returned verbatim (after the OK check), e.g. `endianness`. */
  command(line: string): string {
    if (/[\n\r]/.test(line)) throw new QtestError('qtest.usage', 'a qtest command is one line');
    this.push(line, R_ANY);
    return this.flushLast();
  }

  irqInterceptIn(qomPath: string): void {
    this.push(`irq_intercept_in ${qomPath}`, R_OK);
    this.flush();
  }

  /**
   * Send everything queued and wait for it; returns the responses (one per queued command, in
   * order). Also collects IRQ lines. Every response is checked against its command before any is
   * used: a refusal ("FAIL ..."/"ERR ...") is a QtestError (the stream is still in step), a
   * response of the wrong shape or a missing fence a QtestDesyncError (the session is over).
   */
  flush(): string[] {
    this.closePend();
    const q = this.queue;
    const shapes = this.shapes;
    const b64lens = this.b64lens;
    this.queue = [];
    this.shapes = [];
    this.b64lens = [];
    this.stats.roundTrips++;
    if (q.length === 0) {
      const rep = this.chan.transact('', 0);
      this.takeIrqs(rep.irqs);
      return [];
    }
    const rep = this.chan.transact(q.join('\n') + '\n' + FENCE + '\n', q.length + 1);
    this.takeIrqs(rep.irqs);
    const lines = rep.lines;
    if (lines.length !== q.length + 1 || lines[q.length] !== FENCE_REPLY) {
      this.desync('the batch did not end with the fence\'s answer', FENCE_REPLY, lines[lines.length - 1], q[q.length - 1]);
    }
    let refused: QtestError | undefined;
    for (let i = 0; i < q.length; i++) {
      const l = lines[i]!;
      if (l.startsWith('FAIL') || l.startsWith('ERR')) {
        refused ??= new QtestError('qtest.fail', 'QEMU refused a qtest command', { expected: 'OK', seen: `${JSON.stringify(l)} for ${JSON.stringify(abbrev(q[i]!))}` });
        continue;
      }
      const shape = shapes[i]!;
      let ok: boolean;
      if (shape === R_OK) ok = l === 'OK';
      else if (shape === R_VALUE) ok = VALUE_LINE.test(l);
      else if (shape === R_B64) ok = B64_LINE.test(l) && l.length - 3 === 4 * Math.ceil(b64lens[i]! / 3);
      else ok = l === 'OK' || l.startsWith('OK ');
      if (!ok) this.desync(`response ${i + 1} of ${q.length} does not fit its command`, SHAPE_NAMES[shape]!, l, q[i]);
    }
    if (refused) throw refused;
    return lines.slice(0, q.length) as string[];
  }

  private desync(what: string, expected: string, seen: string | undefined, cmd: string | undefined): never {
    const err = new QtestDesyncError('qtest.desync', `qtest response stream out of step: ${what} (the session is unusable)`, {
      expected: `${expected} for ${JSON.stringify(abbrev(cmd ?? ''))}`,
      seen: seen === undefined ? 'no line' : JSON.stringify(abbrev(seen)),
    });
    this.chan.poison(err.message);
    throw err;
  }

  /** Collect asynchronous IRQ lines (flushing queued commands too). */
  pollEvents(): void {
    this.flush();
  }

  private flushLast(): string {
    const lines = this.flush();
    return lines[lines.length - 1]!;
  }

  private takeIrqs(irqs: readonly string[]): void {
    for (const l of irqs) {
      const m = /^IRQ (raise|lower) (\d+)$/.exec(l);
      if (m) this.onIrq(m[1] === 'raise', Number(m[2]));
    }
  }

  private push(cmd: string, shape: number, b64len = 0): void {
    this.closePend();
    this.queue.push(cmd);
    this.shapes.push(shape);
    this.b64lens.push(b64len);
    this.stats.commands++;
  }

  private closePend(): void {
    if (this.pendLen === 0) return;
    const b64 = Buffer.from(this.pendBuf.buffer, this.pendBuf.byteOffset, this.pendLen).toString('base64');
    this.queue.push(`b64write ${hex(this.pendAddr)} ${this.pendLen} ${b64}`);
    this.shapes.push(R_OK);
    this.b64lens.push(0);
    this.stats.commands++;
    this.pendLen = 0;
    this.pendAddr = -1;
  }

  private growPend(n: number): void {
    if (n <= this.pendBuf.length) return;
    let cap = this.pendBuf.length;
    while (cap < n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.pendBuf.subarray(0, this.pendLen));
    this.pendBuf = nb;
  }
}

const SUFFIX = { 1: 'b', 2: 'w', 4: 'l', 8: 'q' } as const;
const SHAPE_NAMES = ['"OK"', '"OK 0x<hex>"', '"OK <base64 of the requested length>"', '"OK ..."'];

function hexValue(v: number, size: number): string {
  if (!Number.isSafeInteger(v) || v < 0) {
    // accept negative 32-bit values as their unsigned form
    if (Number.isInteger(v) && v < 0 && v >= -0x8000_0000 && size <= 4) v = v >>> 0;
    else throw new QtestError('qtest.usage', 'register value must be a non-negative safe integer', { seen: String(v) });
  }
  if (size < 8) v = size === 4 ? v >>> 0 : v & (size === 2 ? 0xffff : 0xff);
  return hex(v);
}

/** Parse "OK 0x..." into a number; 64-bit values above 2^53 throw (as GuestMemory.read64 does). */
export function parseValue(line: string, size: number): number {
  const m = /^OK 0x([0-9a-fA-F]+)$/.exec(line);
  if (!m) throw new QtestError('qtest.protocol', 'malformed qtest value response', { expected: 'OK 0x<hex>', seen: JSON.stringify(line) });
  const digits = m[1]!;
  if (digits.length <= 8) return parseInt(digits, 16);
  const lo = parseInt(digits.slice(-8), 16);
  const hi = parseInt(digits.slice(0, -8), 16);
  if (size < 8 && hi !== 0) {
    // readb/w/l zero-extend; a high half means the peer is not QEMU's qtest
    throw new QtestError('qtest.protocol', 'value wider than the access', { seen: line });
  }
  if (hi >= 0x20_0000) throw new GuestMemoryError('mem.u64_range', '64-bit value does not fit a JS number exactly', { expected: '< 2^53', seen: `0x${digits}` });
  return hi * TWO32 + lo;
}

function abbrev(cmd: string): string {
  return cmd.length > 80 ? cmd.slice(0, 77) + '...' : cmd;
}
