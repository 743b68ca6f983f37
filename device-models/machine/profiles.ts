import type { CostProfile } from './cost.ts';
import { UsageError } from '../../spec-refs/errors.ts';

/**
 * Named cost profiles. Each constant cites its source; see cost.ts for the rules.
 *
 * The exit constants here are the cost of one VM exit + VM entry round trip plus the minimal
 * handling in the hypervisor for that reason, in host cycles.
 */
const registry = new Map<string, CostProfile>();

export function registerProfile(p: CostProfile): void {
  registry.set(p.name, p);
}

export function getProfile(name: string): CostProfile {
  const p = registry.get(name);
  if (!p) throw new UsageError('usage.profile', `unknown cost profile '${name}' (known: ${[...registry.keys()].join(', ')})`);
  return p;
}

export function profileNames(): string[] {
  return [...registry.keys()];
}
