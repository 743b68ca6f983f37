// docs/examples/packed-ring.ts — chapter 4: the packed ring, its wrap counters and AVAIL/USED bits.
import assert from 'node:assert/strict';
import { Machine } from '../../device-models/machine/machine.ts';
import { attachVirtioMmio } from '../../device-models/virtio/mmio.ts';
import { EchoModel } from '../../device-models/virtio/testing/echo.ts';
import { VirtioDriverDevice } from '../../drivers/core/device.ts';
import { discoverMmio } from '../../drivers/transport/mmio.ts';
import { RingWatcher, readPacked } from '../../tools/repl/ring-view.ts';
import { F, bit, featureSet } from '../../spec-refs/abi/virtio.ts';

export function run(): string[] {
  const m = new Machine();
  attachVirtioMmio(m, new EchoModel({ queueMaxSize: 4, features: featureSet(F.VERSION_1, F.RING_PACKED) }));
  const [t] = discoverMmio(m.platform).transports;
  assert.ok(t);
  // Asking for RING_PACKED is all it takes: the core and the driver pick the layout from the negotiated bit.
  const dev = VirtioDriverDevice.init(m.platform, t, { features: bit(F.RING_PACKED), queues: 1, queueSize: 4 });
  const q = dev.queues.get(0)!;
  assert.equal(q.layout, 'packed');
  const w = new RingWatcher(m.mem, 'packed', q.addresses);
  const p = m.platform;
  const buf = p.dma.alloc(8);
  // Six one-descriptor buffers through a ring of four slots: the ring wraps, and both wrap counters flip.
  for (let i = 0; i < 6; i++) {
    assert.ok(q.add([{ addr: buf, len: 4 }], [{ addr: buf + 4, len: 4 }], i));
    q.kick();
    w.sync();
    assert.deepEqual(dev.waitUsed(0), { token: i, len: 4 });
    w.sync();
  }
  // The ring holds 2 descriptors per buffer: 12 slots used in all, i.e. three laps of 4 slots.
  assert.equal(w.availWrap, 0); // three laps: 1 -> 0 -> 1 -> 0
  assert.equal(w.usedWrap, 0);
  const slot0 = readPacked(m.mem, q.addresses).desc[0]!;
  // A used descriptor has AVAIL == USED == the device's wrap counter when it wrote it (lap 3: 1).
  assert.equal(slot0.avail, slot0.used);
  return [`after 6 buffers: driver next slot ${w.nextAvail} wrap ${w.availWrap}, device next slot ${w.nextUsed} wrap ${w.usedWrap}`];
}
