// docs/examples/own-device.ts — chapter 8: run the suite against your own device model, and read a failure.
import assert from 'node:assert/strict';
import { registerSimDevice } from '../../conformance/targets/sim.ts';
import '../../conformance/targets/index.ts';
import '../../conformance/checks/index.ts';
import { registeredChecks } from '../../conformance/check.ts';
import { getTarget } from '../../conformance/target.ts';
import { runConformance } from '../../conformance/runner.ts';
import { VirtioBlkDevice, DEFAULT_BLK_FEATURES } from '../../device-models/blk/device.ts';
import { RamDisk } from '../../device-models/blk/backend.ts';
import { catalog } from '../../spec-refs/catalog.ts';
import { BlkF, F, bit, featureSet, hasFeature } from '../../spec-refs/abi/virtio.ts';

/** "My" device: a virtio-blk model that insists on FLUSH, i.e. refuses some consistent subsets of its own offer. */
class PickyBlk extends VirtioBlkDevice {
  override acceptFeatures(f: bigint): boolean {
    return hasFeature(f, BlkF.FLUSH) && super.acceptFeatures(f);
  }
}

export async function run(): Promise<string[]> {
  const ring = featureSet(F.VERSION_1, F.EVENT_IDX);
  registerSimDevice({
    name: 'picky-blk',
    offeredFeatures: DEFAULT_BLK_FEATURES.reduce((s, b) => s | bit(b), ring),
    create: () => new PickyBlk({ backend: new RamDisk(1 << 20), ringFeatures: ring }),
  });
  const report = await runConformance(getTarget('sim')!, registeredChecks(), {
    target: 'sim',
    devices: ['picky-blk'],
    transports: ['mmio'],
    rings: ['split'],
    seed: 1,
    runs: 10,
    grep: 'features.device',
  });
  const failed = report.results.filter((r) => r.status === 'fail');
  assert.ok(failed.length > 0, 'the picky device fails a device-side feature check');
  const f = failed[0]!;
  // A failure names the check, the statements it covers, what was expected and what was seen,
  // and for property checks the seed and replay path (pvkit conformance --check ID --seed S --path P).
  const lines = [`FAIL ${f.id} [${f.config.device}/${f.config.transport}/${f.config.ring}]: ${f.message}`];
  if (f.expected !== undefined) lines.push(`  expected ${f.expected}; seen ${f.seen}`);
  if (f.path !== undefined) lines.push(`  replay: pvkit conformance --device picky-blk --check ${f.id} --seed ${f.seed} --path ${f.path}`);
  for (const id of f.failedStatements ?? f.statements) {
    const e = catalog().get(id);
    lines.push(`  ${id} (${e.side} ${e.keyword}) ${e.paraphrase} [${e.location}]`);
  }
  assert.ok((f.failedStatements ?? f.statements).includes('features.device.2'));
  return lines;
}
