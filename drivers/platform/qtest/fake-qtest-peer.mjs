// A stand-in for QEMU's qtest server, for the protocol tests: it connects to a unix socket (as
// QEMU's `-qtest unix:PATH` does) and answers qtest commands from 1 MiB of RAM at 0, plus a toy
// device at 0xfe000000 and a port at 0x510. Run as: node fake-qtest-peer.mjs SOCKET LOGFILE.
//
// Toy device registers (32-bit):
//   +0x00 COPY   write A: copy 16 bytes RAM[A..A+16) to RAM[A+16..A+32) (a device doing DMA)
//   +0x04 RAISE  write N: send "IRQ raise N" (asynchronously, after 2 ms)
//   +0x08 LOWER  write N: send "IRQ lower N" (synchronously, before the OK, as QEMU does)
//   +0x0c MSI    write A: after 25 ms, store the 32-bit value at +0x10 to RAM[A] (an MSI write)
//   +0x10 DATA   scratch register
//   +0x14 HANG   write: stop answering
//   +0x18 DIE    write: exit at once
//   +0x1c EXTRA  write N: answer this write with N extra "OK" lines (a peer out of step)
//   +0x20 DUP    write: answer the next command twice (a duplicated response)
import net from 'node:net';
import fs from 'node:fs';

const [socketPath, logPath] = process.argv.slice(2);
const RAM = new Uint8Array(1 << 20);
const ramView = new DataView(RAM.buffer);
const DEV = 0xfe000000;
let data = 0;
let hung = false;
let port510 = 0;
let extra = 0;
let dup = false;
const log = fs.openSync(logPath, 'w');

const sock = net.connect(socketPath);
sock.setEncoding('latin1');
let buf = '';
sock.on('data', (chunk) => {
  buf += chunk;
  let nl;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    fs.writeSync(log, line.slice(0, 200) + '\n');
    if (hung) continue;
    const wasDup = dup;
    let out = handle(line.split(' '));
    if (out !== null && extra > 0) {
      out = `${'OK\n'.repeat(extra)}${out}`;
      extra = 0;
    }
    if (out !== null && wasDup) {
      out = `${out}\n${out}`;
      dup = false;
    }
    if (out !== null) sock.write(out + '\n');
  }
});
sock.on('close', () => process.exit(0));
sock.on('error', () => process.exit(0));

function ramRange(a, n) {
  if (a < 0 || a + n > RAM.length) throw new Error(`outside fake RAM: 0x${a.toString(16)}+${n}`);
}
const sizes = { b: 1, w: 2, l: 4, q: 8 };

function readPhys(a, n) {
  if (a >= DEV && a < DEV + 0x100) return a === DEV + 0x10 ? BigInt(data) : 0n;
  ramRange(a, n);
  let v = 0n;
  for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(RAM[a + i]);
  return v;
}

function writePhys(a, n, v) {
  if (a >= DEV && a < DEV + 0x100) return devWrite(a - DEV, Number(v & 0xffffffffn));
  ramRange(a, n);
  for (let i = 0; i < n; i++) {
    RAM[a + i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return null;
}

function devWrite(off, v) {
  switch (off) {
    case 0x00:
      ramRange(v, 32);
      RAM.copyWithin(v + 16, v, v + 16);
      return null;
    case 0x04:
      setTimeout(() => sock.write(`IRQ raise ${v}\n`), 2);
      return null;
    case 0x08:
      return `IRQ lower ${v}`;
    case 0x0c: {
      const d = data;
      setTimeout(() => ramView.setUint32(v, d, true), 25);
      return null;
    }
    case 0x10:
      data = v;
      return null;
    case 0x14:
      hung = true;
      return null;
    case 0x18:
      process.exit(3);
    case 0x1c:
      extra = v;
      return null;
    case 0x20:
      dup = true;
      return null;
  }
  return null;
}

function handle(w) {
  const cmd = w[0];
  try {
    if (cmd === 'endianness') return 'OK little';
    if (cmd === 'irq_intercept_in') return w[1] ? 'OK' : 'FAIL Unknown device';
    if (/^read[bwlq]$/.test(cmd)) {
      const n = sizes[cmd[4]];
      return `OK 0x${readPhys(Number(w[1]), n).toString(16).padStart(16, '0')}`;
    }
    if (/^write[bwlq]$/.test(cmd)) {
      const n = sizes[cmd[5]];
      const pre = writePhys(Number(w[1]), n, BigInt(w[2]));
      return pre ? `${pre}\nOK` : 'OK';
    }
    if (/^in[bwl]$/.test(cmd)) return `OK 0x${(Number(w[1]) === 0x510 ? port510 : 0xffffffff >>> (32 - 8 * sizes[cmd[2]])).toString(16).padStart(4, '0')}`;
    if (/^out[bwl]$/.test(cmd)) {
      if (Number(w[1]) === 0x510) port510 = Number(w[2]);
      return 'OK';
    }
    if (cmd === 'b64read') {
      const a = Number(w[1]);
      const n = Number(w[2]);
      ramRange(a, n);
      return `OK ${Buffer.from(RAM.subarray(a, a + n)).toString('base64')}`;
    }
    if (cmd === 'b64write') {
      const a = Number(w[1]);
      const n = Number(w[2]);
      const b = Buffer.from(w[3], 'base64');
      if (b.length !== n) return 'FAIL length mismatch';
      ramRange(a, n);
      RAM.set(b, a);
      return 'OK';
    }
    if (cmd === 'memset') {
      const a = Number(w[1]);
      const n = Number(w[2]);
      ramRange(a, n);
      RAM.fill(Number(w[3]), a, a + n);
      return 'OK';
    }
    return `FAIL Unknown command '${cmd}'`;
  } catch (e) {
    return `FAIL ${e.message}`;
  }
}
