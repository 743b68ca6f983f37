// docs/examples/split-ring.ts — chapter 3: a split virtqueue, driver side, against a real device model.
import assert from 'node:assert/strict';
import { Machine } from '../../device-models/machine/machine.ts';
import { attachVirtioMmio } from '../../device-models/virtio/mmio.ts';
import { EchoModel } from '../../device-models/virtio/testing/echo.ts';
import { VirtioDriverDevice } from '../../drivers/core/device.ts';
import { discoverMmio } from '../../drivers/transport/mmio.ts';
import { readSplit } from '../../tools/repl/ring-view.ts';
import { F, bit } from '../../spec-refs/abi/virtio.ts';

export function run(): string[] {
  const m = new Machine();
  // The echo device copies each chain's device-readable bytes into its device-writable buffers.
  attachVirtioMmio(m, new EchoModel({ queueMaxSize: 8 }));
  const [t] = discoverMmio(m.platform).transports;
  assert.ok(t);
  const dev = VirtioDriverDevice.init(m.platform, t, { features: bit(F.EVENT_IDX), queues: 1, queueSize: 8 });
  const vq = dev.queue<string>(0);
  const p = m.platform;
  const src = p.dma.alloc(16);
  const dst = p.dma.alloc(16);
  p.mem.writeBytes(src, new TextEncoder().encode('hello, virtqueue'));
  // One buffer: a device-readable part, then a device-writable part (split.driver.2).
  assert.equal(vq.add([{ addr: src, len: 16 }], [{ addr: dst, len: 16 }], 'first'), true);
  vq.kick(); // publishes avail idx after the ring entry (split.driver.26); notifies unless suppressed
  const used = dev.waitUsed<string>(0); // halts the vCPU until the interrupt; the device runs meanwhile
  assert.deepEqual(used, { token: 'first', len: 16 });
  assert.equal(new TextDecoder().decode(p.mem.readBytes(dst, 16)), 'hello, virtqueue');
  // The same ring, read back from guest memory as the spec lays it out.
  const ring = readSplit(p.mem, dev.queues.get(0)!.addresses);
  assert.equal(ring.avail.idx, 1);
  assert.equal(ring.used.idx, 1);
  assert.deepEqual(ring.used.ring[0], { id: 0, len: 16 });
  return [`avail.idx ${ring.avail.idx}, used.idx ${ring.used.idx}, used[0] = {id ${ring.used.ring[0]!.id}, len ${ring.used.ring[0]!.len}}`];
}
