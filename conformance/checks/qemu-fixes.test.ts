/**
 * The checks adapted to run on QEMU (docs/qemu.md, "Findings / Ours") still catch a simulated
 * device that breaks the statements they cite: each test breaks pvkit's device (or what the
 * check sees of it) on purpose and expects the check to fail, and runs it unbroken to pass.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { GuestPlatform } from '../../spec-refs/platform/platform.ts';
import type { VirtioDeviceModel } from '../../device-models/virtio/model.ts';
import { CheckFailure, checkProperty, registeredChecks } from '../check.ts';
import { runOne, type CheckResult } from '../runner.ts';
import type { DeviceOptions, DeviceUnderTest, Target } from '../target.ts';
import { getTarget } from '../target.ts';
import { outsideRam } from './split.ts';
import { SharedDevice } from './shared.ts';
import '../targets/index.ts';
import './index.ts';

const sim = getTarget('sim')!;
const check = (id: string) => registeredChecks().find((c) => c.id === id)!;

/** The sim target with a device changed by `wrap` and/or its platform as the check sees it changed by `plat`. */
function broken(opts: { wrap?: (m: VirtioDeviceModel) => Partial<VirtioDeviceModel>; plat?: (p: GuestPlatform) => Partial<GuestPlatform>; dut?: Partial<DeviceUnderTest> }): Target {
  return {
    ...sim,
    name: 'sim',
    newDevice(device: string, transport, o: DeviceOptions = {}, ring) {
      const params = opts.wrap ? { ...(o.params ?? {}), __wrap: opts.wrap } : o.params;
      const d = sim.newDevice(device, transport, { ...o, ...(params ? { params } : {}) }, ring);
      const platform = opts.plat ? (Object.assign(Object.create(d.platform) as GuestPlatform, opts.plat(d.platform)) as GuestPlatform) : d.platform;
      return { ...d, platform, ...(opts.dut ?? {}) };
    },
  };
}

async function run(t: Target, id: string, device: string, transport: 'mmio' | 'mmio-legacy' | 'pci' | 'pci-legacy'): Promise<CheckResult> {
  return runOne(check(id), t, { device, transport, ring: 'split' }, { seed: 1, runs: 10 });
}

describe('features.device.offer: legacy-only device bits', () => {
  const withScsi = broken({ wrap: (m) => ({ offeredFeatures: m.offeredFeatures | (1n << 7n) }) });
  it('blk SCSI (7) is accepted on the legacy interface', async () => {
    expect((await run(withScsi, 'features.device.offer', 'blk', 'mmio-legacy')).status).toBe('pass');
  });
  it('but still flagged through the modern interface (features.device.4)', async () => {
    const r = await run(withScsi, 'features.device.offer', 'blk', 'mmio');
    expect(r.status).toBe('fail');
    expect(r.failedStatements).toEqual(['features.device.4']);
    expect(r.seen).toBe('7');
  });
});

describe('blk.device.config: padding', () => {
  // the device as the driver sees it: byte 57 (unused1[0]) reads 0x01
  const dirty = broken({ plat: (p) => ({ mmioRead: (a: number, s: 1 | 2 | 4) => ((a & 0x1ff) === 0x100 + 57 && s === 1 ? 1 : p.mmioRead(a, s)) }) });
  it('passes on the simulated device', async () => {
    expect((await run(sim, 'blk.device.config', 'blk', 'mmio')).status).toBe('pass');
  });
  it('fails when unused1 is not 0 and the device offers SECURE_ERASE (a field after it)', async () => {
    const r = await run(dirty, 'blk.device.config', 'blk', 'mmio');
    expect(r.status).toBe('fail');
    expect(r.message).toMatch(/padding config byte at 57/);
  });
});

describe('pci.device.cfg-window', () => {
  it('passes on the simulated device', async () => {
    expect((await run(sim, 'pci.device.cfg-window', 'blk', 'pci')).status).toBe('pass');
  });
  it('fails when the window drops 2-byte writes (queue_select never changes through it)', async () => {
    const ecam = 0xb000_0000;
    const t = broken({ plat: (p) => ({ mmioWrite: (a: number, s: 1 | 2 | 4, v: number) => (a >= ecam && a < ecam + (1 << 28) && (a & 0xfff) >= 0x40 && s === 2 ? undefined : p.mmioWrite(a, s, v)) }) });
    const r = await run(t, 'pci.device.cfg-window', 'blk', 'pci');
    expect(r.status).toBe('fail');
    expect(r.failedStatements).toEqual(['pci.device.52']);
  });
});

describe('pci.device.isr', () => {
  it('passes on the simulated device (the config change now comes from the model on any target)', async () => {
    expect((await run(sim, 'pci.device.isr', 'blk', 'pci')).status).toBe('pass');
  });
  it('fails when the PCI status Interrupt Status bit never follows the ISR', async () => {
    const ecam = 0xb000_0000;
    const t = broken({ plat: (p) => ({ mmioRead: (a: number, s: 1 | 2 | 4) => (a >= ecam && a < ecam + (1 << 28) && (a & 0xfff) === 6 ? p.mmioRead(a, s) & ~0x8 : p.mmioRead(a, s)) }) });
    const r = await run(t, 'pci.device.isr', 'blk', 'pci');
    expect(r.status).toBe('fail');
    expect(r.message).toMatch(/PCI status Interrupt Status/);
  });
});

describe('mmio.device.config-generation', () => {
  it('skips (not fails) on a target with no way to change the configuration', async () => {
    const t = broken({ dut: { internals: {} } });
    const r = await run(t, 'mmio.device.config-generation', 'blk', 'mmio');
    expect(r.status).toBe('skip');
  });
  it('passes on the simulated device, which can be resized', async () => {
    expect((await run(sim, 'mmio.device.config-generation', 'blk', 'mmio')).status).toBe('pass');
  });
});

describe('split.device.hostile-chains: outside RAM', () => {
  it('picks 0xFFF00000 when no RAM is there, else the first MiB above the highest RAM', () => {
    const d = (ram: { base: number; size: number }[]) => ({ ram }) as unknown as DeviceUnderTest;
    expect(outsideRam(d([{ base: 0, size: 128 << 20 }]), 512)).toBe(0xfff0_0000);
    expect(outsideRam(d([{ base: 0, size: 0x1_0000_0000 }, { base: 0x1_0000_0000, size: 0x4000_0000 }]), 512)).toBe(0x1_4000_0000);
    expect(outsideRam(d([{ base: 0xfff0_0000 + 256, size: 4096 }]), 512)).toBe(0x1_0000_0000);
  });
  it('the simulated machine faults such DMA, so the check still asks used.len 0 there', async () => {
    const dut = sim.newDevice('blk', 'mmio');
    expect(dut.dmaOutsideRam).toBe('fault');
    expect(() => dut.platform.mem.read8(outsideRam(dut, 512))).toThrow();
    expect((await run(sim, 'split.device.hostile-chains', 'blk', 'mmio')).status).toBe('pass');
  });
});

describe('SharedDevice: shrinking on a device a failing run broke', () => {
  /** A device that breaks for good on an input >= 10 and from then on fails every run. */
  class Fragile {
    broken = false;
    disposed = false;
    use(x: number): void {
      if (this.broken || x >= 10) {
        this.broken = true;
        throw new CheckFailure(`failed on ${x}`, { statements: ['split.device.1'] });
      }
    }
    dispose(): void {
      this.disposed = true;
    }
  }
  const ctx = { seed: 42, runs: 100 };
  const arb = fc.integer({ min: 0, max: 1000 });

  it('one device for every run: the shrunk counterexample is misleading (0)', () => {
    const dev = new Fragile();
    let err: unknown;
    try {
      checkProperty(ctx, ['split.device.1'], [arb], (x) => dev.use(x));
    } catch (e) {
      err = e;
    }
    expect((err as CheckFailure).counterexample).toBe('[0]');
  });

  it('SharedDevice: fresh devices once a run failed, so it shrinks to the real boundary (10)', () => {
    const made: Fragile[] = [];
    const shared = new SharedDevice(() => {
      const f = new Fragile();
      made.push(f);
      return f;
    });
    let err: unknown;
    try {
      checkProperty(ctx, ['split.device.1'], [arb], (x) => shared.run((d) => d.use(x)));
    } catch (e) {
      err = e;
    }
    expect((err as CheckFailure).counterexample).toBe('[10]');
    expect(made.length).toBeGreaterThan(2);
    expect(made.slice(0, -1).every((f) => f.disposed)).toBe(true);
  });
});
