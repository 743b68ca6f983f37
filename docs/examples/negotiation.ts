// docs/examples/negotiation.ts — chapter 2: status bits and feature negotiation.
import assert from 'node:assert/strict';
import { simBlk } from '../../conformance/harness/blk.ts';
import { RamDisk } from '../../device-models/blk/backend.ts';
import { Machine } from '../../device-models/machine/machine.ts';
import { attachVirtioMmio } from '../../device-models/virtio/mmio.ts';
import { EchoModel } from '../../device-models/virtio/testing/echo.ts';
import { VirtioDriverDevice } from '../../drivers/core/device.ts';
import { discoverMmio } from '../../drivers/transport/mmio.ts';
import { NegotiationError } from '../../spec-refs/errors.ts';
import { BlkF, F, Status, bit, featureNames, hasFeature } from '../../spec-refs/abi/virtio.ts';

export function run(): string[] {
  const lines: string[] = [];
  // A virtio-blk device on virtio-mmio, found by probing the platform as a guest would.
  const { machine, transport } = simBlk({ device: { backend: new RamDisk(1 << 20) } });
  // The driver says which bits it understands; init() takes wanted & offered, adds VERSION_1,
  // and walks reset -> ACKNOWLEDGE -> DRIVER -> features -> FEATURES_OK -> queues -> DRIVER_OK.
  const dev = VirtioDriverDevice.init(machine.platform, transport, { features: bit(F.EVENT_IDX) | bit(BlkF.FLUSH), queues: 1 });
  lines.push(`offered:    ${featureNames(dev.offered, BlkF).join(' ')}`);
  lines.push(`negotiated: ${featureNames(dev.features, BlkF).join(' ')}`);
  assert.ok(hasFeature(dev.features, F.VERSION_1) && hasFeature(dev.features, BlkF.FLUSH));
  assert.ok(!hasFeature(dev.features, BlkF.DISCARD), 'offered but not wanted: refused by the driver');
  assert.equal(transport.getStatus(), Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);

  // A device that refuses the driver's choice leaves FEATURES_OK clear; the driver sets FAILED
  // and stops (status_init.driver.9, status_init.driver.10, status_init.driver.11).
  const m2 = new Machine();
  attachVirtioMmio(m2, new EchoModel({ refuse: (f) => hasFeature(f, F.EVENT_IDX) }));
  const [t2] = discoverMmio(m2.platform).transports;
  assert.ok(t2);
  assert.throws(
    () => VirtioDriverDevice.init(m2.platform, t2, { features: bit(F.EVENT_IDX), queues: 1 }),
    (e: unknown) => e instanceof NegotiationError && e.statements.includes('status_init.driver.9'),
  );
  assert.ok(t2.getStatus() & Status.FAILED, 'the driver told the device it gave up');
  lines.push(`refused: status ${t2.getStatus().toString(16)} has FAILED set`);
  return lines;
}
