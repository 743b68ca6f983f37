import { describe, expect, it } from 'vitest';
import { NET_SCENARIOS, netBench, runNetScenario } from './net.ts';
import { UsageError } from '../../spec-refs/errors.ts';

describe('bench net', () => {
  it('moves real frames between two NICs and reports the figures', () => {
    // a fixed number of bursts: what is checked does not depend on how fast this machine is
    const r = runNetScenario(NET_SCENARIOS[0]!, { transport: 'mmio', seconds: 0, rounds: 4 });
    expect(r.frames).toBe(4 * 64);
    expect(r.framesPerSecond).toBeCloseTo(r.frames / r.seconds, 6);
    expect(r.bitsPerSecond).toBeCloseTo(r.framesPerSecond * 64 * 8, 0);
    // Batches of 64 frames: a few notifications and interrupts per batch, far below one exit per frame.
    expect(r.exitsPerFrame).toBeGreaterThan(0);
    expect(r.exitsPerFrame).toBeLessThan(1);
  });
  it('prints one JSON object per scenario with the agreed fields', () => {
    const lines: string[] = [];
    netBench({ json: true, seconds: 0.05, transport: 'mmio', scenario: '1514' }, (l) => lines.push(l));
    expect(lines).toHaveLength(1);
    const j = JSON.parse(lines[0]!);
    for (const k of ['scenario', 'frames', 'seconds', 'framesPerSecond', 'bitsPerSecond', 'exitsPerFrame']) expect(j).toHaveProperty(k);
    expect(j.scenario).toBe('1514');
  });
  it('rejects a bad transport or scenario with a usage error', () => {
    expect(() => netBench({ json: false, seconds: 1, transport: 'nope' }, () => {})).toThrow(UsageError);
    expect(() => netBench({ json: false, seconds: 1, transport: 'mmio', scenario: '9' }, () => {})).toThrow(UsageError);
  });
});
