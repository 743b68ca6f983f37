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
});
