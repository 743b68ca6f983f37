/**
 * Property: random virtio-blk workloads over random queue sizes and feature sets keep the disk
 * equal to a plain Uint8Array model, and every request completes exactly once with the status
 * and used length it should have (the workload and its checks: workload.test-support.ts).
 */
import { describe, expect } from 'vitest';
import { test as fcTest, fc } from '@fast-check/vitest';
import { simBlk } from '../../conformance/harness/blk.ts';
import { RamDisk } from '../../device-models/blk/backend.ts';
import { VirtioBlkDriver } from './driver.ts';
import { F, bit } from '../../spec-refs/abi/virtio.ts';
import { blkOpArb, runBlkWorkload } from './workload.test-support.ts';

const SECTORS = 256; // a 128 KiB disk keeps ranges colliding often

const configArb = fc.record({
  queueSize: fc.constantFrom(4, 8, 16, 32, 256),
  indirect: fc.boolean(),
  eventIdx: fc.boolean(),
  numQueues: fc.integer({ min: 1, max: 4 }),
  reorder: fc.boolean(),
  latencyNs: fc.constantFrom(0, 0, 2000),
  notifyLatencyNs: fc.constantFrom(0, 500),
  legacy: fc.boolean(),
  packed: fc.boolean(),
  seed: fc.nat(),
});

describe('virtio-blk driver + device, random workloads', () => {
  fcTest.prop([configArb, fc.array(blkOpArb(SECTORS), { minLength: 1, maxLength: 60 })], { numRuns: 150 })(
    'the disk equals the model and every request completes exactly once with the right status and used length',
    (cfg, ops) => {
      let ring = 0n;
      if (cfg.indirect) ring |= bit(F.INDIRECT_DESC);
      if (cfg.eventIdx) ring |= bit(F.EVENT_IDX);
      const packed = cfg.packed && !cfg.legacy; // the legacy interface has no packed ring
      if (packed) ring |= bit(F.RING_PACKED);
      const sim = simBlk({
        transport: cfg.legacy ? 'mmio-legacy' : 'mmio',
        ring: packed ? 'packed' : 'split',
        device: { backend: new RamDisk(SECTORS * 512), queueSize: cfg.queueSize, numQueues: cfg.numQueues, reorder: cfg.reorder, latencyNs: cfg.latencyNs, id: 'prop' },
        ringFeatures: ring,
        notifyLatencyNs: cfg.notifyLatencyNs,
        machine: { ram: [{ base: 0, size: 8 << 20 }], scheduler: { seed: cfg.seed, jitterNs: 300 } },
      });
      const blk = VirtioBlkDriver.probe(sim.machine.platform, sim.transport, { ringFeatures: ring, maxQueues: 4 });
      expect(blk.numQueues).toBe(cfg.numQueues);
      expect(blk.queue(0).layout).toBe(packed ? 'packed' : 'split');
      runBlkWorkload(sim, blk, ops, { sectors: SECTORS, queueSize: cfg.queueSize, numQueues: cfg.numQueues, id: 'prop' });
    },
  );
});
