// docs/examples/monitor.ts — chapter 9: the monitor judges a driver (yours) and names the statement it broke.
import assert from 'node:assert/strict';
import { Machine } from '../../device-models/machine/machine.ts';
import { attachVirtioMmio } from '../../device-models/virtio/mmio.ts';
import { EchoModel } from '../../device-models/virtio/testing/echo.ts';
import { attachMonitor } from '../../conformance/monitor.ts';
import { catalog } from '../../spec-refs/catalog.ts';
import { Mmio, Status } from '../../spec-refs/abi/virtio.ts';

export function run(): string[] {
  const m = new Machine();
  const { base } = attachVirtioMmio(m, new EchoModel());
  const monitor = attachMonitor(m); // watches every register access, interrupt and split ring on the machine
  const p = m.platform;
  // "Your driver": it identifies the device properly, then forgets FEATURES_OK.
  for (const off of [Mmio.MAGIC_VALUE, Mmio.VERSION, Mmio.DEVICE_ID]) p.mmioRead(base + off, 4);
  p.mmioWrite(base + Mmio.STATUS, 4, 0);
  p.mmioWrite(base + Mmio.STATUS, 4, Status.ACKNOWLEDGE);
  p.mmioWrite(base + Mmio.STATUS, 4, Status.ACKNOWLEDGE | Status.DRIVER);
  p.mmioWrite(base + Mmio.STATUS, 4, Status.ACKNOWLEDGE | Status.DRIVER | Status.DRIVER_OK);
  const v = monitor.violations.find((x) => x.statement === 'status_init.driver.6');
  assert.ok(v, 'the monitor names the broken statement');
  assert.equal(v.side, 'driver');
  // And the device reacted as the spec allows: DEVICE_NEEDS_RESET.
  assert.ok(p.mmioRead(base + Mmio.STATUS, 4) & Status.DEVICE_NEEDS_RESET);
  const e = catalog().get(v.statement);
  return [`${v.side} broke ${v.statement}: ${v.message}`, `${e.id} (${e.side} ${e.keyword}) ${e.paraphrase} [${e.location}]`];
}
