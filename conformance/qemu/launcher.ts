import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PvkitError } from '../../spec-refs/errors.ts';
import { SyncChannel } from '../../drivers/platform/qtest/sync-channel.ts';
import { QtestPlatform, type QtestPlatformOptions } from '../../drivers/platform/qtest/platform.ts';
import { biosImage } from './bios.ts';
import { DMA_BASE, MICROVM, MSI_AREA, Q35, RAM_SIZE, q35IntxGsi, type QemuConfig } from './configs.ts';
import { findQemu } from './find.ts';
import { QmpClient, QMP_ASYNC_PREFIXES } from './qmp.ts';

/**
 * Starts QEMU for a configuration, with pvkit's halting BIOS and a qtest socket, and hands back
 * a GuestPlatform on it. QEMU never outlives pvkit: it runs under `setpriv --pdeathsig KILL`
 * (the kernel kills it when pvkit dies, even by SIGKILL or Ctrl-C), it is killed on close, on
 * error and at process exit, and every temporary file is unlinked as soon as QEMU has opened it.
 */
export class QemuStartError extends PvkitError {}

export interface LaunchOptions {
  /** QEMU binary (default: $PVKIT_QEMU, else qemu-system-x86_64 on PATH). */
  qemu?: string;
  /** Directory in which the session's own pvkit-qemu-* directory is made (default: the OS temp directory). */
  tmpDir?: string;
  /** Extra arguments appended to QEMU's command line. */
  extraArgs?: readonly string[];
  /** Disk image size for virtio-blk devices (default 8 MiB). */
  diskBytes?: number;
  /** Longest wait for QEMU to connect (default 30 s). */
  startTimeoutMs?: number;
  /** Longest wait for one qtest reply (default 20 s). */
  replyTimeoutMs?: number;
  /** Passed to the platform. */
  minWaitNs?: number;
  /** Passed to the platform (target time = host time / timeScale). */
  timeScale?: number;
}

export interface QemuSession {
  readonly config: QemuConfig;
  readonly platform: QtestPlatform;
  readonly pid: number;
  readonly args: readonly string[];
  /** What QEMU wrote to stdout/stderr so far. */
  output(): string;
  /** False once QEMU has exited or the session was closed. */
  readonly alive: boolean;
  /** QEMU's monitor (QMP), for host-side actions such as block_resize. */
  readonly qmp: QmpClient;
  /** Kill QEMU and release everything (idempotent; the promise settles when the channel has stopped). */
  close(): Promise<void>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const p of live) {
      try {
        p.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

/** QEMU's command line for a configuration (without the launcher's own files). */
export function qemuArgs(cfg: QemuConfig, files: { bios: string; socket: string; disks: readonly string[]; qmp?: string }): string[] {
  const a: string[] = ['-nodefaults', '-no-user-config', '-display', 'none', '-accel', 'tcg', '-m', `${RAM_SIZE >> 20}M`, '-bios', files.bios, '-qtest', `unix:${files.socket}`, '-qtest-log', 'none'];
  if (files.qmp) a.push('-chardev', `socket,id=pvkit-qmp,path=${files.qmp}`, '-mon', 'chardev=pvkit-qmp,mode=control');
  // no PIT (nor RTC on microvm): nothing but the devices under test raises interrupt lines
  if (cfg.machine === 'q35') a.push('-M', 'q35,pit=off');
  else {
    a.push('-M', 'microvm,acpi=off,pit=off,rtc=off');
    a.push('-global', `virtio-mmio.force-legacy=${cfg.mmioVersion === 1 ? 'true' : 'false'}`);
  }
  let disk = 0;
  let nic = 0;
  for (const d of cfg.devices) {
    const bus = cfg.machine === 'q35' ? 'pci' : 'device';
    const props = d.props ? `,${d.props}` : '';
    const addr = cfg.machine === 'q35' && d.slot !== undefined ? `,addr=${d.slot}.0` : '';
    if (d.kind === 'blk') {
      const id = `disk${disk}`;
      a.push('-drive', `if=none,id=${id},file=${files.disks[disk]},format=raw,file.locking=off${cfg.readOnlyDisks ? ',read-only=on' : ''}`);
      a.push('-device', `virtio-blk-${bus},drive=${id}${addr}${props}`);
      disk++;
    } else {
      // loop frames back: a UDP socket netdev whose peer is its own address
      const id = `net${nic}`;
      a.push('-netdev', `socket,id=${id},udp=127.0.0.1:0`);
      // romfile= : no option ROM (nothing boots; and ipxe need not be installed)
      const rom = cfg.machine === 'q35' ? ',romfile=' : '';
      a.push('-device', `virtio-net-${bus},netdev=${id},mac=52:54:00:12:34:${(0x56 + nic).toString(16)}${addr}${rom}${props}`);
      nic++;
    }
  }
  return a;
}

export function platformOptions(cfg: QemuConfig): QtestPlatformOptions {
  const ram = [{ base: 0, size: 0xa_0000 }, { base: 0x10_0000, size: RAM_SIZE - 0x10_0000 }];
  const dma = [{ base: DMA_BASE, size: RAM_SIZE - DMA_BASE }];
  if (cfg.machine === 'q35') {
    return {
      name: `qemu:${cfg.name}`,
      ram,
      dma,
      msiArea: MSI_AREA,
      irqIntercept: 'ioapic',
      pci: {
        ecamBase: Q35.ECAM_BASE,
        mmioWindow: { base: Q35.MMIO_BASE, size: Q35.MMIO_SIZE },
        mmio64Window: { base: Q35.MMIO64_BASE, size: Q35.MMIO64_SIZE },
        ioWindow: { base: Q35.IO_BASE, size: Q35.IO_SIZE },
        intxGsi: q35IntxGsi,
      },
    };
  }
  return {
    name: `qemu:${cfg.name}`,
    ram,
    dma,
    irqIntercept: 'ioapic',
    mmioSlots: Array.from({ length: MICROVM.MMIO_SLOTS }, (_, i) => ({ base: MICROVM.MMIO_BASE + i * MICROVM.MMIO_STRIDE, size: MICROVM.MMIO_STRIDE, gsi: MICROVM.GSI_BASE + i })),
  };
}

/** q35 firmware duty: map ECAM (MCH PCIEXBAR, config offset 0x60: base | enable, 256 buses). */
function enableQ35Ecam(p: QtestPlatform): void {
  p.pioWrite(0xcf8, 4, 0x8000_0060);
  p.pioWrite(0xcfc, 4, (Q35.ECAM_BASE | 1) >>> 0);
  p.pioWrite(0xcf8, 4, 0x8000_0064);
  p.pioWrite(0xcfc, 4, 0);
  const id = p.mmioRead(Q35.ECAM_BASE, 4);
  if ((id & 0xffff) !== 0x8086) throw new QemuStartError('qemu.ecam', 'ECAM did not appear after programming PCIEXBAR', { expected: 'Intel vendor id 0x8086 at 00:00.0', seen: `0x${id.toString(16)}` });
}

/** True when `pid` has exited (a zombie counts: it is only waiting to be reaped). */
function exitedPid(pid: number): boolean {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return / [ZX] /.test(st.slice(st.lastIndexOf(')')));
  } catch {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  }
}

/**
 * Start QEMU and connect, synchronously (the qtest socket lives in a worker thread, so this
 * thread may block): usable where the caller cannot await, such as a conformance target's
 * newDevice. Throws QemuNotFoundError (no binary) or QemuStartError (with QEMU's own output).
 */
export function launchQemuSync(cfg: QemuConfig, opts: LaunchOptions = {}): QemuSession {
  // a UDP port picked for a looped-back NIC may be taken by someone else meanwhile: try others
  for (let attempt = 1; ; attempt++) {
    try {
      return launchOnce(cfg, opts);
    } catch (e) {
      if (attempt >= 3 || !(e instanceof QemuStartError) || !/Address already in use/.test(e.message)) throw e;
    }
  }
}

function launchOnce(cfg: QemuConfig, opts: LaunchOptions): QemuSession {
  const qemu = findQemu(opts.qemu);
  const dir = fs.mkdtempSync(path.join(opts.tmpDir ?? os.tmpdir(), 'pvkit-qemu-'));
  const cleanupDir = (): void => fs.rmSync(dir, { recursive: true, force: true });
  let chan: SyncChannel | undefined;
  let qmpChan: SyncChannel | undefined;
  let proc: ChildProcess | undefined;
  let outFd: number | undefined;
  const readOutput = (): string => {
    if (outFd === undefined) return '';
    try {
      const st = fs.fstatSync(outFd);
      const n = Math.min(st.size, 64 * 1024);
      const b = Buffer.alloc(n);
      fs.readSync(outFd, b, 0, n, Math.max(0, st.size - n));
      return b.toString('utf8');
    } catch {
      return '';
    }
  };
  const kill = (): void => {
    if (proc?.pid !== undefined && !exitedPid(proc.pid)) {
      try {
        proc.kill('SIGKILL');
      } catch {
        // gone
      }
    }
  };
  const sleepCell = new Int32Array(new SharedArrayBuffer(4));
  /** Wait (blocking, at most `ms`) for QEMU to exit, so that its last words are in the file. */
  const awaitExit = (ms: number): void => {
    const end = Date.now() + ms;
    while (proc?.pid !== undefined && !exitedPid(proc.pid) && Date.now() < end) Atomics.wait(sleepCell, 0, 0, 10);
  };
  let cmdline = '';
  try {
    const bios = path.join(dir, 'bios.bin');
    fs.writeFileSync(bios, biosImage());
    const disks: string[] = [];
    cfg.devices.forEach((d, i) => {
      if (d.kind !== 'blk') return;
      const f = path.join(dir, `disk${i}.img`);
      fs.writeFileSync(f, '');
      fs.truncateSync(f, opts.diskBytes ?? 8 << 20);
      disks.push(f);
    });
    const socket = path.join(dir, 'qtest.sock');
    chan = new SyncChannel(socket, opts.replyTimeoutMs !== undefined ? { timeoutMs: opts.replyTimeoutMs } : {});
    chan.readySync();
    const qmpSocket = path.join(dir, 'qmp.sock');
    qmpChan = new SyncChannel(qmpSocket, { asyncPrefixes: QMP_ASYNC_PREFIXES, ...(opts.replyTimeoutMs !== undefined ? { timeoutMs: opts.replyTimeoutMs } : {}) });
    qmpChan.readySync();
    const args = withLoopbackPorts([...qemuArgs(cfg, { bios, socket, disks, qmp: qmpSocket }), ...(opts.extraArgs ?? [])]);
    cmdline = `${qemu} ${args.join(' ')}`;
    outFd = fs.openSync(path.join(dir, 'qemu.out'), 'w+');
    const usePdeath = fs.existsSync('/usr/bin/setpriv') || fs.existsSync('/bin/setpriv');
    const [cmd, argv] = usePdeath ? ['setpriv', ['--pdeathsig', 'KILL', '--', qemu, ...args]] : [qemu, args];
    installExitHook();
    proc = spawn(cmd, argv, { stdio: ['ignore', outFd, outFd] });
    const p = proc;
    live.add(p);
    p.once('exit', () => live.delete(p));
    p.once('error', () => live.delete(p));
    if (p.pid === undefined) throw new QemuStartError('qemu.start', `cannot run ${cmd}`, { seen: cmdline });
    const pid = p.pid;
    let platform: QtestPlatform;
    try {
      // QEMU connects the monitor's chardev first, then qtest's (both during start-up)
      qmpChan.waitConnectedSync(opts.startTimeoutMs ?? 30_000, () => (exitedPid(pid) ? 'QEMU exited before pvkit could connect' : undefined));
      qmpChan.stopListening();
      chan.waitConnectedSync(opts.startTimeoutMs ?? 30_000, () => (exitedPid(pid) ? 'QEMU exited before pvkit could connect' : undefined));
      chan.stopListening();
      // the first answer comes from QEMU's main loop, i.e. after every device is realized
      platform = new QtestPlatform(chan, {
        ...platformOptions(cfg),
        ...(opts.minWaitNs !== undefined ? { minWaitNs: opts.minWaitNs } : {}),
        ...(opts.timeScale !== undefined ? { timeScale: opts.timeScale } : {}),
      });
    } catch (e) {
      awaitExit(2000);
      const out = readOutput().trim();
      throw new QemuStartError('qemu.start', out ? `QEMU failed to start: ${out}` : `QEMU failed to start: ${(e as Error).message}`, { seen: cmdline });
    }
    // QEMU has opened everything it needs: nothing is left behind even if pvkit is killed
    cleanupDir();
    if (cfg.machine === 'q35') enableQ35Ecam(platform);
    let closed = false;
    const c = chan;
    const qc = qmpChan;
    const fd = outFd;
    const qmp = new QmpClient(qc);
    return {
      config: cfg,
      platform,
      pid,
      args,
      qmp,
      output: readOutput,
      get alive() {
        return !closed && !exitedPid(pid);
      },
      close() {
        if (closed) return Promise.resolve();
        closed = true;
        kill();
        live.delete(p);
        try {
          fs.closeSync(fd);
        } catch {
          // closed
        }
        return Promise.all([c.close(), qc.close()]).then(() => undefined);
      },
    };
  } catch (e) {
    kill();
    if (proc) live.delete(proc);
    void chan?.close();
    void qmpChan?.close();
    if (outFd !== undefined) fs.closeSync(outFd);
    cleanupDir();
    if (e instanceof PvkitError) throw e;
    throw new QemuStartError('qemu.start', `cannot start QEMU: ${(e as Error).message}`, { seen: cmdline });
  }
}

/** launchQemuSync for callers that can await (lets the event loop reap and log in between). */
export async function launchQemu(cfg: QemuConfig, opts: LaunchOptions = {}): Promise<QemuSession> {
  return launchQemuSync(cfg, opts);
}

/** Give every `udp=127.0.0.1:0` netdev a port of its own, looped back to itself. */
function withLoopbackPorts(args: readonly string[]): string[] {
  return args.map((a) => {
    if (!/^socket,id=[^,]+,udp=127\.0\.0\.1:0$/.test(a)) return a;
    const port = pickUdpPort();
    return a.replace(/udp=127\.0\.0\.1:0$/, `udp=127.0.0.1:${port},localaddr=127.0.0.1:${port}`);
  });
}

let nextPort = 0;
/** A UDP port for a loopback netdev: spread over a high range by pid, then sequential. */
function pickUdpPort(): number {
  if (nextPort === 0) nextPort = 20000 + ((process.pid * 7919) % 20000);
  const p = nextPort;
  nextPort = nextPort >= 39999 ? 20000 : nextPort + 1;
  return p;
}
