import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchQemu, qemuArgs, QemuStartError } from './launcher.ts';
import { CONFIGS, findConfig, q35IntxGsi } from './configs.ts';
import { findQemu, QemuNotFoundError } from './find.ts';
import { biosImage, BIOS_SIZE } from './bios.ts';
import { skipQemu } from './testing.ts';
import { Mmio } from '../../spec-refs/abi/virtio.ts';

const CHILD = fileURLToPath(new URL('./launch-child.mts', import.meta.url));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    // a zombie is dead for our purposes
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(st);
  } catch {
    return false;
  }
}

async function gone(pid: number, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !alive(pid);
}

/**
 * A private parent directory for one test's launches (LaunchOptions.tmpDir), so that what is left
 * behind is judged for this test's QEMU alone, not for other QEMU runs on the machine.
 */
function privateTmp(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'pvkit-launcher-test-'));
}

/** Live processes whose command line mentions `dir` (QEMU is given its files there). */
function processesUsing(dir: string): number[] {
  const pids: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let cmd: string;
    try {
      cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    if (cmd.includes(dir) && alive(Number(e))) pids.push(Number(e));
  }
  return pids;
}

/** Nothing of this test's launches remains: its directory is empty and no process still uses it. */
async function expectNothingLeft(dir: string): Promise<void> {
  try {
    expect(fs.readdirSync(dir)).toEqual([]);
    // a killed QEMU may need a moment to go (bounded wait, as in gone())
    const end = Date.now() + 5000;
    while (processesUsing(dir).length > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    expect(processesUsing(dir)).toEqual([]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Run launch-child in a way, return QEMU's pid once it is up and the child process. */
async function child(how: string): Promise<{ qemuPid: number; proc: ReturnType<typeof spawn>; exited: Promise<number | null> }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, how], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  const qemuPid = await new Promise<number>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = /pid (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    let err = '';
    proc.stderr!.on('data', (d) => (err += d));
    proc.once('exit', () => reject(new Error(`child ended before QEMU started: ${err}`)));
  });
  return { qemuPid, proc, exited };
}

describe('QEMU configurations (no QEMU needed)', () => {
  it('the BIOS halts at the reset vector', () => {
    const b = biosImage();
    expect(b.length).toBe(BIOS_SIZE);
    expect([...b.subarray(BIOS_SIZE - 16, BIOS_SIZE - 12)]).toEqual([0xfa, 0xf4, 0xeb, 0xfd]);
  });

  it('configurations have unique names and build command lines with their properties', () => {
    expect(new Set(CONFIGS.map((c) => c.name)).size).toBe(CONFIGS.length);
    const files = { bios: '/b', socket: '/s', disks: ['/d0'] };
    const a = qemuArgs(findConfig('q35-blk-packed')!, files).join(' ');
    expect(a).toContain('-M q35,pit=off');
    expect(a).toContain('virtio-blk-pci,drive=disk0,addr=4.0,disable-legacy=on,packed=on');
    expect(a).toContain('file.locking=off');
    const m = qemuArgs(findConfig('microvm-blk-legacy')!, files).join(' ');
    expect(m).toContain('virtio-mmio.force-legacy=true');
    expect(qemuArgs(findConfig('microvm-blk')!, files).join(' ')).toContain('virtio-mmio.force-legacy=false');
    // the CI smoke subset covers blk and net over one PCI and one MMIO configuration
    const smoke = CONFIGS.filter((c) => c.smoke);
    expect(new Set(smoke.map((c) => c.machine))).toEqual(new Set(['q35', 'microvm']));
    expect(new Set(smoke.flatMap((c) => c.devices.map((d) => d.kind)))).toEqual(new Set(['blk', 'net']));
  });

  it('routes q35 INTx as ICH9 does by default (PIRQ E..H, GSI 20..23)', () => {
    expect(q35IntxGsi(0, 4, 0, 1)).toBe(20);
    expect(q35IntxGsi(0, 5, 0, 1)).toBe(21);
    expect(q35IntxGsi(0, 4, 0, 4)).toBe(23);
    expect(q35IntxGsi(0, 7, 0, 2)).toBe(20);
  });

  it('says how to install QEMU when it is missing', () => {
    expect(() => findQemu('/nonexistent/qemu-system-x86_64')).toThrow(QemuNotFoundError);
    expect(() => findQemu('/nonexistent/qemu-system-x86_64')).toThrow(/apt-get install qemu-system-x86/);
  });
});

describe.skipIf(skipQemu)('QEMU launcher (real QEMU)', () => {
  it('starts microvm, lists the virtio-mmio device, and leaves nothing behind on close', async () => {
    const tmp = privateTmp();
    const s = await launchQemu(findConfig('microvm-blk')!, { tmpDir: tmp });
    try {
      const devs = s.platform.devices();
      expect(devs).toHaveLength(1);
      const d = devs[0]!;
      expect(s.platform.mmioRead(d.base + Mmio.MAGIC_VALUE, 4)).toBe(Mmio.MAGIC);
      expect(s.platform.mmioRead(d.base + Mmio.VERSION, 4)).toBe(2);
      expect(s.platform.mmioRead(d.base + Mmio.DEVICE_ID, 4)).toBe(2);
      expect(d.vector).toBe(0x20 + 5 + (d.base - 0xfeb0_0000) / 0x200);
    } finally {
      await s.close();
    }
    expect(await gone(s.pid)).toBe(true);
    await expectNothingLeft(tmp);
  });

  it('legacy virtio-mmio reports version 1', async () => {
    const s = await launchQemu(findConfig('microvm-blk-legacy')!);
    try {
      expect(s.platform.mmioRead(s.platform.devices()[0]!.base + Mmio.VERSION, 4)).toBe(1);
    } finally {
      await s.close();
    }
  });

  it('starts q35 with ECAM mapped and the device where the configuration put it', async () => {
    const s = await launchQemu(findConfig('q35-blk-modern')!);
    try {
      const ecam = s.platform.pci!.ecamBase!;
      expect(s.platform.mmioRead(ecam, 4) >>> 0).toBe(0x29c0_8086); // q35 host bridge
      expect(s.platform.mmioRead(ecam + (4 << 15), 4) >>> 0).toBe(0x1042_1af4); // modern virtio-blk
      // the same through 0xCF8/0xCFC
      s.platform.pioWrite(0xcf8, 4, 0x8000_2000);
      expect(s.platform.pioRead(0xcfc, 4) >>> 0).toBe(0x1042_1af4);
    } finally {
      await s.close();
    }
  });

  it('has a QMP monitor: block_resize changes virtio-blk capacity; errors carry QEMU\'s text', async () => {
    const s = await launchQemu(findConfig('microvm-blk')!);
    try {
      const cfg = s.platform.devices()[0]!.base + Mmio.CONFIG;
      expect(s.platform.mmioRead(cfg, 4)).toBe((8 << 20) / 512);
      expect(s.qmp.execute('query-status')).toMatchObject({ running: true });
      s.qmp.execute('block_resize', { device: 'disk0', size: 16 << 20 });
      expect(s.platform.mmioRead(cfg, 4)).toBe((16 << 20) / 512);
      expect(() => s.qmp.execute('block_resize', { device: 'nope', size: 512 })).toThrow(/nope/);
      // events ({"timestamp": ..., "event": "STOP"}) are not replies: each command still gets its own
      s.qmp.execute('stop');
      expect(s.qmp.execute('query-status')).toMatchObject({ running: false });
      s.qmp.execute('cont');
      expect(s.qmp.execute('query-status')).toMatchObject({ running: true });
    } finally {
      await s.close();
    }
  });

  it("reports QEMU's own error text when it cannot start", async () => {
    const tmp = privateTmp();
    const err = await launchQemu(findConfig('q35-blk')!, { tmpDir: tmp, extraArgs: ['-device', 'virtio-blk-pci,no-such-prop=1'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QemuStartError);
    expect(String((err as Error).message)).toMatch(/no-such-prop/);
    await expectNothingLeft(tmp);
  });

  it('a missing binary is a QemuNotFoundError', async () => {
    await expect(launchQemu(findConfig('q35-blk')!, { qemu: '/nonexistent/qemu' })).rejects.toThrow(QemuNotFoundError);
  });

  it.each(['exit', 'throw'])('QEMU dies with pvkit when pvkit ends by %s', async (how) => {
    const c = await child(how);
    expect(alive(c.qemuPid)).toBe(true);
    c.proc.stdin!.write('go\n');
    await c.exited;
    expect(await gone(c.qemuPid)).toBe(true);
  });

  it.each(['SIGINT', 'SIGTERM', 'SIGKILL'] as const)('QEMU dies with pvkit on %s, even while pvkit is blocked waiting on it', async (sig) => {
    const c = await child('busy');
    expect(alive(c.qemuPid)).toBe(true);
    c.proc.stdin!.write('go\n');
    await new Promise((r) => setTimeout(r, 300));
    c.proc.kill(sig);
    await c.exited;
    expect(await gone(c.qemuPid)).toBe(true);
  });

  it('QEMU dies with pvkit on SIGINT while idle', async () => {
    const c = await child('hang');
    expect(alive(c.qemuPid)).toBe(true);
    c.proc.stdin!.write('go\n');
    await new Promise((r) => setTimeout(r, 100));
    c.proc.kill('SIGINT');
    await c.exited;
    expect(await gone(c.qemuPid)).toBe(true);
  });
});
