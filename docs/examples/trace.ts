// docs/examples/trace.ts — chapter 10: a Chrome trace of a run (open the file in https://ui.perfetto.dev).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MachineTracer } from '../../device-models/machine/trace.ts';
import { simBlk } from '../../conformance/harness/blk.ts';
import { RamDisk } from '../../device-models/blk/backend.ts';
import { VirtioBlkDriver } from '../../drivers/blk/driver.ts';
import { validateTrace } from '../../device-models/machine/trace-format.ts';

export function run(): string[] {
  const sim = simBlk({ device: { backend: new RamDisk(1 << 20), latencyNs: 10_000 }, notifyLatencyNs: 1000 });
  const tracer = MachineTracer.attach(sim.machine); // exits, register accesses, interrupts, device work
  const blk = VirtioBlkDriver.probe(sim.machine.platform, sim.transport);
  blk.read(0, new Uint8Array(4096));
  const file = join(mkdtempSync(join(tmpdir(), 'pvkit-guide-')), 'blk.json');
  tracer.writeFile(file);
  const trace = JSON.parse(readFileSync(file, 'utf8'));
  assert.deepEqual(validateTrace(trace), []);
  const tracks = trace.traceEvents.filter((e: { ph: string; name: string }) => e.ph === 'M' && e.name === 'thread_name').map((e: { args: { name: string } }) => e.args.name);
  assert.ok(tracks.includes('vCPU 0') && tracks.includes('interrupts'));
  return [`${tracer.count} events on tracks: ${tracks.join(', ')}`];
}
