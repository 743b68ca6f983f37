import { describe, expect, it } from 'vitest';
import { launchQemu } from '../../conformance/qemu/launcher.ts';
import { findConfig } from '../../conformance/qemu/configs.ts';
import { driverSmoke } from './smoke.ts';
import { skipQemu } from '../../conformance/qemu/testing.ts';

// The reference drivers, unchanged, on QEMU's own devices (the point of the qemu target).
describe.skipIf(skipQemu)('reference drivers on real QEMU', () => {
  it.each(['microvm-blk', 'microvm-blk-legacy'])('virtio-blk on %s: write, read back, flush, completions by interrupt', async (name) => {
    const s = await launchQemu(findConfig(name)!);
    try {
      const lines = await driverSmoke(s);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^mmio(-legacy)?: virtio-blk 16384 sectors, wrote and read back 192 KiB/);
      // completions came by interrupt: the IOAPIC line of the slot was raised (irq_intercept_in)
      expect(s.platform.irqStats.lineRaises).toBeGreaterThan(0);
    } finally {
      await s.close();
    }
  });

  it.each(['q35-blk', 'q35-net', 'microvm-net'])('%s: the device is driven (or found, while its driver is on another branch)', async (name) => {
    const s = await launchQemu(findConfig(name)!);
    try {
      const lines = await driverSmoke(s);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/wrote and read back|received back intact|not in the tree yet/);
    } finally {
      await s.close();
    }
  });
});
