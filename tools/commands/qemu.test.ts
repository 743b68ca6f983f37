import { describe, expect, it, vi } from 'vitest';
import { main } from '../cli.ts';
import { CONFIGS } from '../../conformance/qemu/configs.ts';
import { splitArgs, resolveConfigs } from './qemu.ts';
import { skipQemu } from '../../conformance/qemu/testing.ts';

function capture(stream: 'stdout' | 'stderr') {
  const out: string[] = [];
  const spy = vi.spyOn(process[stream], 'write').mockImplementation((s: string | Uint8Array) => (out.push(String(s)), true));
  const log = stream === 'stdout' ? vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ') + '\n')) : undefined;
  return {
    text: () => out.join(''),
    restore: () => {
      spy.mockRestore();
      log?.mockRestore();
    },
  };
}

describe('pvkit qemu', () => {
  it('list prints every built-in configuration, smoke ones marked', async () => {
    const c = capture('stdout');
    try {
      expect(await main(['qemu', 'list'])).toBe(0);
    } finally {
      c.restore();
    }
    const lines = c.text().trim().split('\n');
    expect(lines).toHaveLength(CONFIGS.length);
    expect(lines.filter((l) => / smoke /.test(l)).map((l) => l.split(/\s+/)[0])).toEqual(CONFIGS.filter((x) => x.smoke).map((x) => x.name));
  });

  it('says how to install QEMU and exits 2 when it is missing; unknown configurations exit 2', async () => {
    const e = capture('stderr');
    try {
      expect(await main(['qemu', 'probe', 'q35-blk', '--qemu', '/nonexistent/qemu-system-x86_64'])).toBe(2);
      expect(await main(['conformance', '--target', 'qemu', '--qemu', '/nonexistent/qemu-system-x86_64'])).toBe(2);
      expect(await main(['qemu', 'probe', 'no-such-config'])).toBe(2);
      expect(await main(['conformance', '--target', 'sim', '--qemu-config', 'q35-blk'])).toBe(2);
    } finally {
      e.restore();
    }
    const lines = e.text().trim().split('\n');
    expect(lines[0]).toMatch(/QEMU not found .*apt-get install qemu-system-x86/);
    expect(lines[1]).toMatch(/apt-get install qemu-system-x86/);
    expect(lines[2]).toMatch(/unknown QEMU configuration "no-such-config"/);
    expect(lines[3]).toMatch(/need --target qemu/);
  });

  it('parses --qemu-args like a shell and resolves configuration names', () => {
    expect(splitArgs(`-trace 'virtio_*' -global "virtio-mmio.force-legacy=false"`)).toEqual(['-trace', 'virtio_*', '-global', 'virtio-mmio.force-legacy=false']);
    expect(resolveConfigs(undefined, true).map((c) => c.name)).toEqual(['q35-blk', 'q35-net', 'microvm-blk', 'microvm-net']);
  });

  it.skipIf(skipQemu)('probe starts a configuration and shows its device', async () => {
    const c = capture('stdout');
    try {
      expect(await main(['qemu', 'probe', 'microvm-blk-legacy'])).toBe(0);
    } finally {
      c.restore();
    }
    expect(c.text()).toMatch(/virtio-mmio@0xfeb00e00: virtio-mmio version 1, device id 2/);
  });
});
