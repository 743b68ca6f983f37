import type { EventCounts } from '../machine/cost.ts';
import { HC_ENOSYS } from '../../spec-refs/abi/pvmmu.ts';

export type HypercallHandler = (a0: number, a1: number, a2: number, a3: number) => number;

/**
 * The hypercall table: number -> handler. Unknown numbers return HC_ENOSYS in rax (the guest
 * sees an error, the host does not fault it), as KVM does with -KVM_ENOSYS. Each dispatched
 * call is counted as `hypercall.<name>` (or `hypercall.unknown`).
 */
export class HypercallTable {
  private readonly table = new Map<number, { name: string; fn: HypercallHandler }>();

  register(nr: number, name: string, fn: HypercallHandler): void {
    this.table.set(nr, { name, fn });
  }

  has(nr: number): boolean {
    return this.table.has(nr);
  }

  names(): Record<number, string> {
    return Object.fromEntries([...this.table.entries()].map(([k, v]) => [k, v.name]));
  }

  dispatch(nr: number, args: readonly [number, number, number, number], events: EventCounts): number {
    const h = this.table.get(nr);
    if (!h) {
      events.add('hypercall.unknown');
      return HC_ENOSYS;
    }
    events.add(`hypercall.${h.name}`);
    return h.fn(args[0], args[1], args[2], args[3]);
  }
}
