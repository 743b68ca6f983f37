// The I/O half of SyncChannel (sync-channel.ts), run in a worker thread. Plain JavaScript so that
// it loads in a worker without the TypeScript loader.
//
// It listens on a unix socket, accepts one connection (QEMU's qtest chardev connects as a client),
// and serves requests from the blocked main thread: each request is some text to send and the
// number of response lines to wait for. Lines that begin with one of `asyncPrefixes` (qtest:
// "IRQ", the asynchronous interrupt notifications; QMP: events and the greeting) are collected
// apart and handed back with the next response. The reply goes
// over `port`, then the shared flag is set and notified, so the main thread (in Atomics.wait)
// wakes and takes it with receiveMessageOnPort.
import { parentPort, workerData } from 'node:worker_threads';
import net from 'node:net';

const { socketPath, signal, port } = workerData;
const asyncPrefixes = workerData.asyncPrefixes ?? ['IRQ'];
const flag = new Int32Array(signal);

let sock = null;
let listening = false;
let closedReason = null;
let inbuf = '';
/** @type {{ n: number, lines: string[] } | null} */
let pending = null;
/** @type {string[]} */
let irqs = [];

function reply(msg) {
  port.postMessage(msg);
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
}

function fail(reason) {
  if (pending) {
    pending = null;
    reply({ ok: false, error: reason, irqs: takeIrqs() });
  }
}

function takeIrqs() {
  const r = irqs;
  irqs = [];
  return r;
}

function onData(chunk) {
  inbuf += chunk;
  let nl;
  while ((nl = inbuf.indexOf('\n')) >= 0) {
    const line = inbuf.slice(0, nl);
    inbuf = inbuf.slice(nl + 1);
    if (asyncPrefixes.some((p) => line.startsWith(p))) {
      irqs.push(line);
      continue;
    }
    if (!pending) {
      // A response nobody asked for: protocol desynchronised. Remember it for the next request.
      closedReason = closedReason ?? `qtest response stream out of step: a line nobody asked for: ${JSON.stringify(line.slice(0, 80))}`;
      continue;
    }
    pending.lines.push(line);
    if (pending.lines.length === pending.n) {
      const lines = pending.lines;
      pending = null;
      reply({ ok: true, lines, irqs: takeIrqs() });
    }
  }
}

const server = net.createServer((s) => {
  if (sock) {
    s.destroy();
    return;
  }
  sock = s;
  s.setEncoding('latin1');
  s.setNoDelay?.(true);
  s.on('data', onData);
  s.on('error', (e) => {
    closedReason = closedReason ?? `qtest connection error: ${e.message}`;
  });
  s.on('close', () => {
    closedReason = closedReason ?? 'QEMU closed the qtest connection';
    fail(closedReason);
    parentPort.postMessage({ type: 'closed', reason: closedReason });
  });
  parentPort.postMessage({ type: 'connected' });
});
let listenError = null;
server.on('error', (e) => {
  listenError = e.message;
  parentPort.postMessage({ type: 'error', error: e.message });
});
server.listen(socketPath, () => {
  listening = true;
  parentPort.postMessage({ type: 'listening' });
});

port.on('message', (m) => {
  if (m.op === 'close') {
    server.close();
    if (sock) sock.destroy();
    port.close();
    return;
  }
  if (m.op === 'status') {
    // for callers that wait synchronously: where the connection stands
    reply({ ok: true, lines: [listenError ? `error ${listenError}` : sock ? 'connected' : listening ? 'listening' : 'starting'], irqs: [] });
    return;
  }
  if (m.op === 'unlink-listener') {
    // the connection is established; stop accepting (unlinks the socket path)
    server.close();
    reply({ ok: true, lines: [], irqs: [] });
    return;
  }
  // op: 'send'
  if (closedReason) {
    reply({ ok: false, error: closedReason, irqs: takeIrqs() });
    return;
  }
  if (!sock) {
    reply({ ok: false, error: 'no qtest connection yet', irqs: [] });
    return;
  }
  if (m.n === 0) {
    // only collects the interrupt lines that arrived (text without responses would desynchronise)
    reply({ ok: true, lines: [], irqs: takeIrqs() });
    return;
  }
  pending = { n: m.n, lines: [] };
  sock.write(m.text);
});
