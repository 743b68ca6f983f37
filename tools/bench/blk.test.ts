import { describe, expect, it } from 'vitest';
import { BLK_SCENARIOS, runBlkScenario } from './blk.ts';

// A smoke test of the benchmark's accounting, not of its speed (speed is reported by `pvkit bench blk`).
describe('virtio-blk benchmark', () => {
  it('runs every scenario and reports consistent figures', () => {
    for (const sc of BLK_SCENARIOS) {
      const r = runBlkScenario(sc, { transport: 'mmio', ring: 'split', seconds: 0.05, warmupSeconds: 0.01, diskBytes: 4 << 20 });
      expect(r.scenario).toBe(sc.name);
      expect(r.requests).toBeGreaterThan(0);
      expect(r.iops).toBeCloseTo(r.requests / r.seconds, 3);
      expect(r.bytesPerSecond).toBeCloseTo(r.iops * sc.blockSize, 0);
      // with event idx at depth 128: one notify, one HLT and the interrupt ack per batch of completions
      expect(r.exitsPerRequest).toBeLessThan(0.05);
      expect(Object.values(r.exits).reduce((a, b) => a + b, 0) / r.requests).toBeCloseTo(r.exitsPerRequest, 9);
    }
  });

  it('pays four exits per batch (notify, HLT, InterruptStatus read and ack), so exits per request fall with depth', () => {
    const sc = BLK_SCENARIOS[0]!;
    for (const [depth, eventIdx] of [[8, true], [8, false], [128, true]] as const) {
      const r = runBlkScenario(sc, { transport: 'mmio', ring: 'split', seconds: 0.05, warmupSeconds: 0.01, diskBytes: 4 << 20, eventIdx, depth });
      expect(r.depth).toBe(depth);
      expect(r.exitsPerRequest).toBeCloseTo(4 / depth, 3);
      expect(r.exits.HLT! / r.requests).toBeCloseTo(1 / depth, 3);
    }
  });

  it('negotiates the ring layout it reports (packed included)', () => {
    const r = runBlkScenario(BLK_SCENARIOS[0]!, { transport: 'mmio', ring: 'packed', seconds: 0.05, warmupSeconds: 0.01, diskBytes: 4 << 20 });
    expect(r.ring).toBe('packed');
    expect(r.requests).toBeGreaterThan(0);
  });
});
