/**
 * Cost profiles: cycles per counted event. A simulation counts events by kind; a profile turns
 * counts into cycles and microseconds. Every constant names its source. A constant that was
 * calibrated on a published measurement says which one, so that figures derived from that same
 * measurement are not presented as predictions.
 */
export interface CostConstant {
  readonly cycles: number;
  /** Where the number comes from: a paper, a manual, a measurement (with its table/row). */
  readonly source: string;
  /** Set when the constant was fitted to a published figure: which one (that figure is then not a prediction). */
  readonly calibratedOn?: string;
}

export interface CostProfile {
  readonly name: string;
  readonly description: string;
  /** Core clock used to turn cycles into time. */
  readonly ghz: number;
  readonly ghzSource: string;
  /** Cycles per event kind. Event kinds are strings such as `exit.EPT_MISCONFIG` or `tlb.miss`. */
  readonly constants: Readonly<Record<string, CostConstant>>;
  /** Hardware facts a simulation needs besides costs (added for the paravirtual-MMU model). */
  readonly hardware?: HardwareFacts;
  /**
   * Published figures some constants were calibrated on, as `<mode>/<workload>` keys (e.g.
   * `native/ctxsw-2`): results for these cells are not predictions.
   */
  readonly calibrationPoints?: readonly string[];
}

export interface HardwareFacts {
  /** Data TLB entries (last level). */
  readonly tlbEntries: number;
  /** Whether TLB entries survive VM exits (VPID); without it every exit flushes the TLB. */
  readonly vpid: boolean;
  /** Whether the CPU has EPT/NPT (false: an EPT row is hypothetical). */
  readonly ept: boolean;
  /** VMCS CR3-target slots. */
  readonly cr3TargetSlots: number;
  /** Shadow roots the hypervisor of that era keeps besides the current one (Infinity: all). */
  readonly shadowCacheRoots: number;
  /** Where these facts come from. */
  readonly source: string;
}

/** Counts of events by kind; the machine and the hypervisor add to it. */
export class EventCounts {
  readonly counts = new Map<string, number>();

  add(kind: string, n = 1): void {
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + n);
  }

  get(kind: string): number {
    return this.counts.get(kind) ?? 0;
  }

  /** Sum of the counts whose kind starts with `prefix`. */
  total(prefix = ''): number {
    let n = 0;
    for (const [k, v] of this.counts) if (k.startsWith(prefix)) n += v;
    return n;
  }

  reset(): void {
    this.counts.clear();
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.counts.entries()].sort(([a], [b]) => a.localeCompare(b)));
  }
}

export interface CostBreakdown {
  readonly cycles: number;
  readonly micros: number;
  /** Event kinds counted for which the profile has no constant (costed at 0 cycles). */
  readonly uncosted: string[];
  readonly byKind: Record<string, { count: number; cycles: number }>;
}

export function costOf(counts: EventCounts | Record<string, number>, profile: CostProfile): CostBreakdown {
  const entries = counts instanceof EventCounts ? [...counts.counts.entries()] : Object.entries(counts);
  let cycles = 0;
  const uncosted: string[] = [];
  const byKind: Record<string, { count: number; cycles: number }> = {};
  for (const [kind, count] of entries) {
    const c = profile.constants[kind];
    if (!c) {
      uncosted.push(kind);
      byKind[kind] = { count, cycles: 0 };
      continue;
    }
    cycles += c.cycles * count;
    byKind[kind] = { count, cycles: c.cycles * count };
  }
  return { cycles, micros: cycles / (profile.ghz * 1000), uncosted, byKind };
}
