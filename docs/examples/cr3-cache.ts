// docs/examples/cr3-cache.ts — chapter 7: the paravirtual cr3-cache client on a shadow-paging hypervisor.
import assert from 'node:assert/strict';
import { Machine } from '../../device-models/machine/machine.ts';
import { Hypervisor, type MmuMode } from '../../device-models/hypervisor/hypervisor.ts';
import { GuestKernel } from '../../drivers/paravirt/kernel.ts';
import { LatCtx } from '../../drivers/paravirt/workloads.ts';

/** Boot a guest kernel on a hypervisor in `mode`; its context switches load CR3 through the client. */
function switches(mode: MmuMode, count: number): { exits: number; crAccess: number; path: string } {
  const m = new Machine({ ram: [{ base: 0, size: 16 << 20 }] });
  Hypervisor.attach(m, { mode, vpid: false });
  const k = new GuestKernel(m.platform, { frames: 1024 });
  k.boot(); // detects the feature by CPUID, registers the para-state page by MSR (or stays with mov cr3)
  const two = new LatCtx(k, 2); // two processes, switching back and forth (lmbench lat_ctx)
  two.ring(4); // warm up: both page directories reach the cache
  m.events.reset();
  two.ring(count);
  return { exits: m.exits(), crAccess: m.exits('CR_ACCESS'), path: k.cr3.lastPath };
}

export function run(): string[] {
  // Plain shadow paging: every `mov cr3` exits (CR_ACCESS) so the host can switch shadow roots.
  const shadow = switches('shadow', 100);
  assert.equal(shadow.crAccess, 100);
  assert.equal(shadow.path, 'mov');
  // With the cache, the host made the cached roots CR3-target values: a hit loads without an exit.
  const cached = switches('shadow-paravirt-cr3', 100);
  assert.equal(cached.exits, 0);
  assert.equal(cached.path, 'hit');
  return [`100 switches: shadow ${shadow.exits} exits (${shadow.crAccess} CR_ACCESS); shadow + cr3 cache ${cached.exits} exits`];
}
