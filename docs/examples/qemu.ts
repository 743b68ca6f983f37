// docs/examples/qemu.ts — chapter 8: the same checks against QEMU's own virtio-blk (skipped when QEMU is absent).
import assert from 'node:assert/strict';
import '../../conformance/targets/index.ts';
import '../../conformance/checks/index.ts';
import { configureQemuTarget } from '../../conformance/targets/qemu.ts';
import { registeredChecks } from '../../conformance/check.ts';
import { getTarget } from '../../conformance/target.ts';
import { runConformance } from '../../conformance/runner.ts';
import { locateQemu } from '../../conformance/qemu/find.ts';

export async function run(): Promise<string[]> {
  const qemu = locateQemu();
  if (!qemu) {
    if (process.env.PVKIT_REQUIRE_QEMU) throw new Error('QEMU is required here (PVKIT_REQUIRE_QEMU) but not installed');
    return ['QEMU not installed: skipped (apt-get install qemu-system-x86)'];
  }
  // Pin every check to one configuration: microvm with virtio-blk-device on virtio-mmio version 2.
  configureQemuTarget({ qemu, config: 'microvm-blk' });
  const report = await runConformance(getTarget('qemu')!, registeredChecks(), {
    target: 'qemu',
    devices: ['blk'],
    transports: ['mmio'],
    rings: ['split'],
    seed: 1,
    runs: 3,
    grep: 'mmio.device.identity',
  });
  const r = report.results.find((x) => x.id === 'mmio.device.identity');
  assert.ok(r, 'the check ran against QEMU');
  assert.equal(r.status, 'pass'); // QEMU's virtio-mmio answers MagicValue, Version and DeviceID as the spec says
  return [`qemu ${r.config.device}/${r.config.transport}: ${r.id} ${r.status}`];
}
