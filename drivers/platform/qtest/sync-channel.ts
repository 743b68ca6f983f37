import { Worker, MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { TimeoutError, PvkitError } from '../../../spec-refs/errors.ts';

/**
 * A synchronous line channel to a qtest peer over a unix socket.
 *
 * GuestPlatform calls are synchronous (a load is a load), but Node's sockets are not. The socket
 * lives in a worker thread (channel-worker.mjs); the caller posts a request on a MessagePort and
 * blocks in Atomics.wait on a shared flag until the worker has the answer, then takes it with
 * receiveMessageOnPort. Each request may carry many pipelined commands and waits for all their
 * responses, which is how the qtest client batches.
 */
export interface ChannelReply {
  readonly lines: readonly string[];
  /** Asynchronous lines (qtest: `IRQ raise N` / `IRQ lower N`) that arrived since the previous reply. */
  readonly irqs: readonly string[];
}

export class QtestChannelError extends PvkitError {}

type WorkerReply = { ok: true; lines: string[]; irqs: string[] } | { ok: false; error: string; irqs: string[] };
type Lifecycle = { type: 'listening' } | { type: 'connected' } | { type: 'closed'; reason: string } | { type: 'error'; error: string };

export interface SyncChannelOptions {
  /** Longest wait for one reply, in milliseconds (default 20000). */
  timeoutMs?: number;
  /** Lines starting with one of these are asynchronous, not responses (default ['IRQ'], qtest's). */
  asyncPrefixes?: readonly string[];
}

export class SyncChannel {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly flag: Int32Array;
  private readonly timeoutMs: number;
  private state: 'listening' | 'connected' | 'closed' = 'listening';
  private closeReason: string | undefined;
  private broken: string | undefined;
  private readonly listeners = new Set<(e: Lifecycle) => void>();
  private readonly listening: Promise<void>;
  /** Round trips made (one per transact). */
  roundTrips = 0;

  constructor(readonly socketPath: string, opts: SyncChannelOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 20_000;
    const sab = new SharedArrayBuffer(4);
    this.flag = new Int32Array(sab);
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(new URL('./channel-worker.mjs', import.meta.url), {
      workerData: { socketPath, signal: sab, port: port2, asyncPrefixes: opts.asyncPrefixes ?? ['IRQ'] },
      transferList: [port2],
    });
    // the worker must not keep the process alive on its own
    this.worker.unref();
    this.listening = new Promise((resolve, reject) => {
      const l = (e: Lifecycle): void => {
        if (e.type === 'listening') {
          this.listeners.delete(l);
          resolve();
        } else if (e.type === 'error') {
          this.listeners.delete(l);
          reject(new QtestChannelError('qtest.listen', `cannot listen on ${socketPath}: ${e.error}`));
        }
      };
      this.listeners.add(l);
    });
    this.worker.on('message', (e: Lifecycle) => {
      if (e.type === 'connected') this.state = 'connected';
      if (e.type === 'closed') {
        this.state = 'closed';
        this.closeReason = e.reason;
      }
      for (const l of [...this.listeners]) l(e);
    });
    this.worker.on('error', (err) => {
      this.broken = `qtest channel worker failed: ${err.message}`;
    });
  }

  /** Resolves once the socket is listening (spawn the peer after this). */
  ready(): Promise<void> {
    return this.listening;
  }

  get connected(): boolean {
    return this.state === 'connected';
  }

  /**
   * Resolves when the peer connects; rejects when `abort` resolves first (the peer died) or after
   * `timeoutMs`. Asynchronous: the caller's event loop must run (QEMU's exit is an event too).
   */
  waitConnected(timeoutMs: number, abort?: Promise<string>): Promise<void> {
    if (this.state === 'connected') return Promise.resolve();
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (err?: Error): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.listeners.delete(l);
        if (err) reject(err);
        else resolve();
      };
      const l = (e: Lifecycle): void => {
        if (e.type === 'connected') finish();
      };
      this.listeners.add(l);
      const timer = setTimeout(() => finish(new TimeoutError('qtest.connect', 'the qtest peer did not connect', { expected: `a connection within ${timeoutMs} ms`, seen: 'none' })), timeoutMs);
      abort?.then((why) => finish(new QtestChannelError('qtest.connect', why)));
      if (this.state === 'connected') finish();
    });
  }

  private request(msg: { op: string; text?: string; n?: number }): WorkerReply {
    if (this.broken) throw new QtestChannelError('qtest.broken', `qtest channel unusable: ${this.broken}`);
    Atomics.store(this.flag, 0, 0);
    this.port.postMessage(msg);
    const r = Atomics.wait(this.flag, 0, 0, this.timeoutMs);
    const m = receiveMessageOnPort(this.port);
    if (r === 'timed-out' && !m) {
      this.broken = `no reply from QEMU within ${this.timeoutMs} ms (the channel is now unusable)`;
      throw new TimeoutError('qtest.timeout', 'qtest peer did not answer', { expected: `a reply within ${this.timeoutMs} ms`, seen: `no reply to ${describe(msg.text)}` });
    }
    if (!m) {
      // the reply would be taken by the next request: one reply out of step from here on
      this.broken = 'woken without a reply (the channel is now unusable)';
      throw new QtestChannelError('qtest.desync', this.broken);
    }
    // exactly one reply per request: a second one queued means replies and requests are paired wrong
    const extra = receiveMessageOnPort(this.port);
    if (extra) {
      this.broken = 'two replies to one request (the channel is now unusable)';
      throw new QtestChannelError('qtest.desync', this.broken);
    }
    return m.message as WorkerReply;
  }

  /**
   * Send `text` (complete lines) and wait for `n` response lines (IRQ lines excluded).
   * n = 0 with empty text just collects the IRQ lines that arrived.
   */
  transact(text: string, n: number): ChannelReply {
    if (n === 0 && text !== '') throw new QtestChannelError('qtest.usage', 'commands need responses to wait for');
    this.roundTrips++;
    const rep = this.request({ op: 'send', text, n });
    if (!rep.ok) {
      this.broken = rep.error;
      throw new QtestChannelError('qtest.closed', rep.error);
    }
    return { lines: rep.lines, irqs: rep.irqs };
  }

  /**
   * Mark the channel unusable (a client found the response stream out of step): every later
   * request throws a QtestChannelError with `reason`.
   */
  poison(reason: string): void {
    this.broken ??= reason;
  }

  /** Where the connection stands, asked of the worker synchronously. */
  status(): 'starting' | 'listening' | 'connected' | string {
    const rep = this.request({ op: 'status' });
    return rep.ok ? rep.lines[0]! : rep.error;
  }

  /**
   * Block until the socket listens (for synchronous launchers; `ready()` is the async form).
   * Throws QtestChannelError when listening failed, TimeoutError after `timeoutMs`.
   */
  readySync(timeoutMs = 10_000): void {
    this.waitStatus((s) => s === 'listening' || s === 'connected', timeoutMs, 'the qtest socket to listen', () => undefined);
  }

  /**
   * Block until the peer connects. `dead()` is asked between polls and returns why the peer can
   * no longer connect (it exited), or undefined.
   */
  waitConnectedSync(timeoutMs: number, dead: () => string | undefined): void {
    this.waitStatus((s) => s === 'connected', timeoutMs, 'the qtest peer to connect', dead);
    this.state = 'connected';
  }

  private waitStatus(ok: (s: string) => boolean, timeoutMs: number, what: string, dead: () => string | undefined): void {
    const end = Date.now() + timeoutMs;
    const cell = new Int32Array(new SharedArrayBuffer(4));
    for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
      const s = this.status();
      if (ok(s)) return;
      if (s.startsWith('error ')) throw new QtestChannelError('qtest.listen', `cannot listen on ${this.socketPath}: ${s.slice(6)}`);
      const why = dead();
      if (why !== undefined) throw new QtestChannelError('qtest.connect', why);
      if (Date.now() >= end) throw new TimeoutError('qtest.connect', `timed out waiting for ${what}`, { expected: `within ${timeoutMs} ms`, seen: s });
      Atomics.wait(cell, 0, 0, delay);
    }
  }

  /** Stop accepting connections (removes the socket path) once the peer is connected. */
  stopListening(): void {
    this.request({ op: 'unlink-listener' });
  }

  /** Why the connection closed, if it did. */
  get closedBecause(): string | undefined {
    return this.closeReason ?? this.broken;
  }

  /** Close the connection and stop the worker (the returned promise settles when it has stopped). */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    try {
      this.port.postMessage({ op: 'close' });
    } catch {
      // already closed
    }
    this.port.close();
    this.closing = this.worker.terminate().then(() => undefined);
    return this.closing;
  }
  private closing: Promise<void> | undefined;
}

function describe(text: string | undefined): string {
  if (!text) return 'an event poll';
  const first = text.split('\n', 1)[0]!;
  return JSON.stringify(first.length > 60 ? first.slice(0, 60) + '...' : first) + (text.indexOf('\n') < text.length - 1 ? ' (and more)' : '');
}
