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

const MAX_MERGED_WRITE = 64 * 1024;
const TWO32 = 0x1_0000_0000;

export interface QtestStats {
  roundTrips: number;
  commands: number;
}

export class QtestClient {
  private queue: string[] = [];
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
    this.push(`memset ${hex(addr)} ${len} ${hex(value & 0xff)}`);
  }

  /** MMIO (or any physical-address) store of 1, 2, 4 or 8 bytes. */
  write(addr: number, size: 1 | 2 | 4 | 8, value: number): void {
    this.push(`write${SUFFIX[size]} ${hex(addr)} ${hexValue(value, size)}`);
  }

  out(port: number, size: 1 | 2 | 4, value: number): void {
    this.push(`out${SUFFIX[size]} ${hex(port & 0xffff)} ${hexValue(value, size)}`);
  }

  // ---------------------------------------------------------------- commands with answers

  read(addr: number, size: 1 | 2 | 4 | 8): number {
    this.push(`read${SUFFIX[size]} ${hex(addr)}`);
    return parseValue(this.flushLast(), size);
  }

  /** Several reads of one size in one round trip. */
  readMany(addrs: readonly number[], size: 1 | 2 | 4 | 8): number[] {
    if (addrs.length === 0) return [];
    for (const a of addrs) this.push(`read${SUFFIX[size]} ${hex(a)}`);
    const lines = this.flush();
    return lines.slice(lines.length - addrs.length).map((l) => parseValue(l, size));
  }

  in(port: number, size: 1 | 2 | 4): number {
    this.push(`in${SUFFIX[size]} ${hex(port & 0xffff)}`);
    return parseValue(this.flushLast(), size);
  }

  /** Read several guest-physical ranges in one round trip. */
  readMem(ranges: readonly (readonly [addr: number, len: number])[]): Uint8Array[] {
    for (const [a, l] of ranges) {
      if (l <= 0) throw new QtestError('qtest.usage', 'b64read needs a positive length', { seen: String(l) });
      this.push(`b64read ${hex(a)} ${l}`);
    }
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
    this.push(line);
    return this.flushLast();
  }

  irqInterceptIn(qomPath: string): void {
    this.command(`irq_intercept_in ${qomPath}`);
  }

  /** Send everything queued and wait for it; returns the responses. Also collects IRQ lines. */
  flush(): string[] {
    this.closePend();
    const q = this.queue;
    this.queue = [];
    this.stats.roundTrips++;
    const rep = this.chan.transact(q.length ? q.join('\n') + '\n' : '', q.length);
    this.takeIrqs(rep.irqs);
    for (let i = 0; i < rep.lines.length; i++) {
      const l = rep.lines[i]!;
      if (l !== 'OK' && !l.startsWith('OK ')) {
        throw new QtestError('qtest.fail', 'QEMU refused a qtest command', { expected: 'OK', seen: `${JSON.stringify(l)} for ${JSON.stringify(abbrev(q[i]!))}` });
      }
    }
    return rep.lines as string[];
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

  private push(cmd: string): void {
    this.closePend();
    this.queue.push(cmd);
    this.stats.commands++;
  }

  private closePend(): void {
    if (this.pendLen === 0) return;
    const b64 = Buffer.from(this.pendBuf.buffer, this.pendBuf.byteOffset, this.pendLen).toString('base64');
    this.queue.push(`b64write ${hex(this.pendAddr)} ${this.pendLen} ${b64}`);
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
