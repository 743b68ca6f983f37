import { describe, expect, it, vi } from 'vitest';
import { runDemo } from './demo.ts';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileDisk, RamDisk } from '../../device-models/blk/backend.ts';
import { main } from '../cli.ts';

describe('pvkit demo', () => {
  it('writes, reads back and verifies over virtio-mmio, and accounts for the exits it caused', () => {
    const s = runDemo();
    expect(s.io.verified).toBe(true);
    expect(s.io.written).toBe(3 * 256 * 1024);
    expect(s.device.transport).toBe('mmio');
    expect(s.device.id).toBe('pvkit-demo');
    expect(s.device.features).toContain('VIRTIO_F_VERSION_1');
    // every register access is an EPT misconfig exit; waiting for completions is a HLT
    expect(s.exits.EPT_MISCONFIG).toBeGreaterThan(0);
    expect(s.exits.HLT).toBeGreaterThan(0);
    expect(s.exitsTotal).toBe(Object.values(s.exits).reduce((a, b) => a + b, 0));
    expect(s.cost.cycles).toBe(Object.values(s.cost.byKind).reduce((a, b) => a + b.cycles, 0));
  });

  it('runs on a raw image file and leaves the data in it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pvkit-demo-'));
    const file = path.join(dir, 'disk.img');
    try {
      const disk = new FileDisk(file, { size: 16 << 20 });
      const s = runDemo(disk);
      disk.close();
      expect(s.io.verified).toBe(true);
      const raw = fs.readFileSync(file);
      expect(raw.length).toBe(16 << 20);
      for (let i = 0; i < 4096; i++) expect(raw[i]).toBe((i * 31 + (i >>> 9)) & 0xff);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a verification failure when the disk returns wrong data', () => {
    class Flaky extends RamDisk {
      override read(offset: number, dst: Uint8Array, dstOffset: number, len: number): void {
        super.read(offset, dst, dstOffset, len);
        dst[dstOffset] = dst[dstOffset]! ^ 0xff;
      }
    }
    const s = runDemo(new Flaky(16 << 20));
    expect(s.io.verified).toBe(false);
    expect(s.io.mismatches).toBeGreaterThan(0);
  });

  it('exits 2 with one line on a usage error', async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => (lines.push(String(s)), true));
    try {
      expect(await main(['demo', '--image', ''])).toBe(2);
      expect(await main(['bench', 'nope'])).toBe(2);
      expect(await main(['bench', 'blk', '--ring', 'twisted'])).toBe(2);
      expect(await main(['bench', 'blk', '--seconds', '0'])).toBe(2);
      expect(await main(['bench', 'blk', '--transport', 'pci-transitional', '--ring', 'packed'])).toBe(2);
    } finally {
      spy.mockRestore();
    }
    expect(lines).toEqual(['pvkit: --image needs a file name\n', "pvkit: unknown bench target 'nope' (known: blk, net)\n", 'pvkit: --ring must be one of split, packed (or a comma-separated list, or all)\n', 'pvkit: --seconds must be a positive number\n', 'pvkit: --ring packed cannot run over pci-transitional: a legacy interface negotiates feature bits 0..31 only\n']);
  });

  it('bad files, values the command would ignore, and invalid choices: exit 2 with one line, no stack trace', async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => (lines.push(String(s)), true));
    try {
      expect(await main(['demo', '--image', '/nonexistent-dir/disk.img'])).toBe(2);
      expect(await main(['bench', 'net', '--depth', '0'])).toBe(2);
      expect(await main(['qemu', 'matrix', '--runs', 'abc', 'microvm-blk'])).toBe(2);
      expect(await main(['qemu', 'matrix', '--seed', 'abc', 'microvm-blk'])).toBe(2);
      expect(await main(['repl', '--trace', '/nonexistent-dir/t.json'])).toBe(2);
      expect(await main(['repl', '--transport', 'nope'])).toBe(2);
    } finally {
      spy.mockRestore();
    }
    expect(lines).toEqual([
      'pvkit: cannot open disk image /nonexistent-dir/disk.img (ENOENT)\n',
      'pvkit: --depth applies to bench blk only (the net scenarios fill their rings)\n',
      'pvkit: --runs must be a positive integer, got NaN\n',
      'pvkit: --seed must be an integer, got NaN\n',
      'pvkit: --trace: directory /nonexistent-dir does not exist\n',
      'pvkit: Invalid values: Argument: transport, Given: "nope", Choices: "mmio", "mmio-legacy", "pci", "pci-transitional", "pci-transitional-modern"\n',
    ]);
  });
});
