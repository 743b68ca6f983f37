/**
 * Vitest setup file: run existing tests with the conformance monitor on every simulated machine
 * that gets a virtio-mmio device or a PCI function, without changing the tests.
 *
 *   PVKIT_MONITOR=strict npx vitest run drivers/blk      (vitest.config.ts adds this setup file)
 *   PVKIT_MONITOR=report npx vitest run
 *
 * strict: a test fails when the monitor recorded a violation during it. report: violations are
 * printed per test (tests that drive devices badly on purpose trip it by design).
 * The monitor attaches when a machine's first virtio-mmio device is added (Machine.addMmioDevice),
 * which is before any driver can touch it.
 */
import { afterEach } from 'vitest';
import { Machine } from '../device-models/machine/machine.ts';
import { PciHost } from '../device-models/machine/pci.ts';
import { attachMonitor, type Monitor } from './monitor.ts';

const mode = process.env['PVKIT_MONITOR'] ?? 'strict';
const live: Monitor[] = [];
const attached = new WeakSet<Machine>();
const add = Machine.prototype.addMmioDevice;
Machine.prototype.addMmioDevice = function (this: Machine, ...args: Parameters<Machine['addMmioDevice']>) {
  if (!attached.has(this)) {
    attached.add(this);
    live.push(attachMonitor(this));
  }
  return add.apply(this, args);
};

// virtio-pci: attach when the machine's first PCI function is plugged in (before enumeration)
const addFn = PciHost.prototype.addFunction;
PciHost.prototype.addFunction = function (this: PciHost, ...args: Parameters<PciHost['addFunction']>) {
  if (!attached.has(this.machine)) {
    attached.add(this.machine);
    live.push(attachMonitor(this.machine));
  }
  return addFn.apply(this, args);
};

afterEach((tc) => {
  const mons = live.splice(0);
  const vs = mons.flatMap((m) => {
    m.detach();
    return m.violations;
  });
  if (vs.length === 0) return;
  const lines = vs.slice(0, 10).map((v) => `  ${v.statement} (${v.side}): ${v.message}`);
  const text = `conformance monitor: ${vs.length} violation(s) in "${tc.task.name}"\n${lines.join('\n')}`;
  if (mode === 'report') process.stderr.write(text + '\n');
  else throw new Error(text);
});
