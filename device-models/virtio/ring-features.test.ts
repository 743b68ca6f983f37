/**
 * The advanced ring features over both layouts and both transports, through the shared core with
 * the echo model (a model with no code of its own for any of them): IN_ORDER, NOTIFICATION_DATA,
 * RING_RESET (per-queue reset and re-enable). Census ids: vq_reset.*, split.driver.5,
 * split.driver.10, pci.driver.21 to pci.driver.23 (queue reset over PCI) where cited.
 */
import { describe, expect, it } from 'vitest';
import { test as fcTest, fc } from '@fast-check/vitest';
import { Machine } from '../machine/machine.ts';
import { GuestMemory } from '../machine/memory.ts';
import { ExtentAllocator } from '../../spec-refs/platform/dma.ts';
import { attachVirtioMmio } from './mmio.ts';
import { attachVirtioPci } from './pci.ts';
import { EchoModel } from './testing/echo.ts';
import { SplitDeviceQueue } from './split-queue.ts';
import { discoverMmio } from '../../drivers/transport/mmio.ts';
import { discoverPci } from '../../drivers/transport/pci.ts';
import { VirtioDriverDevice, type QueueWithAddresses } from '../../drivers/core/device.ts';
import { SplitVirtqueue } from '../../drivers/core/split.ts';
import { PackedVirtqueue } from '../../drivers/core/packed.ts';
import type { VirtioTransport } from '../../drivers/transport/transport.ts';
import type { VirtioCore } from './core.ts';
import { F, featureSet } from '../../spec-refs/abi/virtio.ts';
import type { DriverMisbehaviourError } from '../../spec-refs/errors.ts';

class NetEcho extends EchoModel {
  override readonly deviceType = 1 as never;
  resetQueues: number[] = [];
  override queueReset(i: number): void {
    this.resetQueues.push(i);
    super.queueReset(i);
  }
}

type Kind = 'mmio' | 'pci';

function setup(kind: Kind, features: bigint, echo: { reverse?: boolean; completionDelayNs?: number; queueMaxSize?: number } = {}) {
  const m = new Machine();
  const model = new NetEcho({ features, queueMaxSize: 32, ...echo });
  let core: VirtioCore;
  let t: VirtioTransport;
  if (kind === 'mmio') {
    core = attachVirtioMmio(m, model, { notifyLatencyNs: 300 }).core;
    t = discoverMmio(m.platform).transports[0]!;
  } else {
    core = attachVirtioPci(m, model, { notifyLatencyNs: 300 }).core;
    t = discoverPci(m.platform).transports[0]!;
  }
  const d = VirtioDriverDevice.init(m.platform, t, { features, queues: 2 });
  return { m, model, core, t, d };
}

function post(m: Machine, d: VirtioDriverDevice, q: number, tokens: number[]): number {
  const vq = d.queue<number>(q);
  const buf = m.dma.alloc(1024);
  for (const tok of tokens) expect(vq.add([{ addr: buf, len: 16 }], [{ addr: buf + 64 * (tok % 15) + 64, len: 16 }], tok)).toBe(true);
  vq.kick();
  return buf;
}

function collect(d: VirtioDriverDevice, q: number, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(d.waitUsed<number>(q).token);
  return out;
}

describe('IN_ORDER through the core: a model completing out of order still yields in-order used buffers', () => {
  for (const kind of ['mmio', 'pci'] as const) {
    for (const packed of [false, true]) {
      it(`${kind} / ${packed ? 'packed' : 'split'}`, () => {
        const features = featureSet(F.VERSION_1, F.IN_ORDER, F.EVENT_IDX, ...(packed ? [F.RING_PACKED] : []));
        const { m, d, core } = setup(kind, features, { reverse: true });
        for (let round = 0; round < 20; round++) {
          const toks = [0, 1, 2, 3, 4].map((i) => round * 5 + i);
          post(m, d, 0, toks);
          expect(collect(d, 0, 5)).toEqual(toks);
        }
        expect(core.errors).toEqual([]);
      });
    }
  }

  it('split device: an IN_ORDER chain whose next is not the following descriptor needs a reset (split.driver.5)', () => {
    const mem = new GuestMemory([{ base: 0, size: 1 << 20 }]);
    const errors: DriverMisbehaviourError[] = [];
    const cfg = { index: 0, maxSize: 8, size: 8, ready: true, desc: 0x1000, driver: 0x2000, device: 0x3000, resetting: false };
    const q = new SplitDeviceQueue({ mem, driverError: (e) => void errors.push(e), signalUsed: () => {} }, cfg, { eventIdx: false, indirect: false, inOrder: true, legacy: false });
    // head 0 -> next 2 (should be 1)
    mem.write64(0x1000, 0x9000);
    mem.write32(0x1008, 8);
    mem.write16(0x100c, 1);
    mem.write16(0x100e, 2);
    mem.write64(0x1020, 0x9000);
    mem.write32(0x1028, 8);
    mem.write16(0x2004, 0);
    mem.write16(0x2002, 1);
    expect(q.pop()).toBeNull();
    expect(errors.map((e) => e.code)).toEqual(['split.in_order_next']);
    expect(errors[0]!.statements).toEqual(['split.driver.5']);
  });

  it('split driver: an IN_ORDER used id that skips no outstanding buffer but is not outstanding is refused', () => {
    const mem = new GuestMemory([{ base: 0, size: 1 << 20 }]);
    const dma = new ExtentAllocator([{ base: 0x1000, size: 0xf000 }], () => {});
    const vq = new SplitVirtqueue<number>(mem, dma, { index: 0, size: 4, eventIdx: false, indirect: false, inOrder: true, notify: () => {} });
    vq.add([{ addr: 0x8_0000, len: 4 }], [], 1);
    vq.add([{ addr: 0x8_0000, len: 4 }], [], 2);
    vq.kick();
    const used = vq.addresses.device;
    // a batch entry naming head 1 (the second buffer) with idx += 2: both come back, the first fully used
    mem.write32(used + 4, 1);
    mem.write32(used + 8, 0);
    mem.write16(used + 2, 2);
    expect([vq.getUsed()?.token, vq.getUsed()?.token, vq.getUsed()]).toEqual([1, 2, null]);
    // then an id that is not the next outstanding head
    vq.add([{ addr: 0x8_0000, len: 4 }], [], 3);
    vq.kick();
    mem.write32(used + 4 + 8 * 2, 3); // head 2 is outstanding (ring order), 3 is not
    mem.write16(used + 2, 3);
    expect(() => vq.getUsed()).toThrow(/IN_ORDER used id/);
  });
});

describe('split IN_ORDER, driver against device', () => {
  fcTest.prop([fc.constantFrom(2, 4, 8, 16), fc.boolean(), fc.array(fc.record({ op: fc.constantFrom('add', 'pop', 'complete', 'flush', 'reap'), n: fc.nat(7), w: fc.nat() }), { minLength: 10, maxLength: 120 })], { numRuns: 150 })(
    'buffers come back in the order they were posted, each with its own length or (inside a batch) its full length',
    (size, indirect, ops) => {
      const mem = new GuestMemory([{ base: 0, size: 1 << 20 }]);
      const dma = new ExtentAllocator([{ base: 0x1000, size: 0x7_0000 }], (g, l) => mem.fill(g, l, 0));
      const errors: DriverMisbehaviourError[] = [];
      const vq = new SplitVirtqueue<number>(mem, dma, { index: 0, size, eventIdx: false, indirect, inOrder: true, notify: () => {} });
      const a = vq.addresses;
      const dev = new SplitDeviceQueue({ mem, driverError: (e) => void errors.push(e), signalUsed: () => {} }, { index: 0, maxSize: size, size, ready: true, desc: a.desc, driver: a.driver, device: a.device, resetting: false }, { eventIdx: false, indirect, inOrder: true, legacy: false });
      let tok = 0;
      const written = new Map<number, number>();
      const taken: { c: ReturnType<typeof dev.pop> & object; t: number }[] = [];
      const order: number[] = [];
      let next = 0;
      for (const o of ops) {
        if (o.op === 'add') {
          const nIn = Math.min(1 + (o.n % 2), size - 1);
          const inp = Array.from({ length: nIn }, (_, k) => ({ addr: 0x8_0000 + 64 * k, len: 8 + o.n }));
          if (vq.add([{ addr: 0x9_0000, len: 4 }], inp, tok)) tok++;
          vq.kick();
        } else if (o.op === 'pop') {
          const c = dev.pop();
          // in order: the k-th buffer taken is the k-th posted
          if (c) taken.push({ c, t: order.length }), order.push(c.id);
        } else if (o.op === 'complete' && taken.length) {
          // the model completes in any order; the ring releases in order
          const { c, t } = taken.splice(o.n % taken.length, 1)[0]!;
          const w = o.w % (c.writableLen + 1);
          dev.push(c, w);
          written.set(t, w);
        } else if (o.op === 'flush') dev.flush();
        else {
          for (let u = vq.getUsed(); u; u = vq.getUsed()) {
            expect(u.token).toBe(next++);
            // exact: a buffer folded into a batch is reported as fully written, so the device may
            // fold only buffers it wrote completely
            expect(u.len).toBe(written.get(u.token));
          }
        }
      }
      for (const { c, t } of taken) dev.push(c, c.writableLen), written.set(t, c.writableLen);
      dev.flush();
      for (let u = vq.getUsed(); u; u = vq.getUsed()) {
        expect(u.token).toBe(next++);
        expect(u.len).toBe(written.get(u.token));
      }
      expect(errors).toEqual([]);
    },
  );
});

describe('NOTIFICATION_DATA over virtio-mmio', () => {
  it('NOTIF_CONFIG_DATA is offered over virtio-pci only', () => {
    const features = featureSet(F.VERSION_1, F.NOTIFICATION_DATA, F.NOTIF_CONFIG_DATA);
    const m = new Machine();
    const mm = attachVirtioMmio(m, new NetEcho({ features }));
    const pc = attachVirtioPci(m, new NetEcho({ features }));
    expect(mm.core.deviceFeatures).toBe(featureSet(F.VERSION_1, F.NOTIFICATION_DATA));
    expect(pc.core.deviceFeatures).toBe(features);
  });

  for (const packed of [false, true]) {
    it(`${packed ? 'packed' : 'split'}: QueueNotify carries the queue index and the next position`, () => {
      const features = featureSet(F.VERSION_1, F.NOTIFICATION_DATA, ...(packed ? [F.RING_PACKED] : []));
      const m = new Machine();
      const model = new NetEcho({ features, queueMaxSize: 32 });
      const att = attachVirtioMmio(m, model, { notifyLatencyNs: 300 });
      const t = discoverMmio(m.platform).transports[0]!;
      const d = VirtioDriverDevice.init(m.platform, t, { features, queues: 2 });
      const seen: number[] = [];
      m.bus.addListener((a) => {
        if (a.kind === 'write' && a.addr === att.base + 0x50) seen.push(a.value);
      });
      post(m, d, 1, [7, 8, 9]);
      expect(collect(d, 1, 3).sort()).toEqual([7, 8, 9]);
      expect(seen[0]! & 0xffff).toBe(1);
      expect(seen[0]! >>> 16).toBe(packed ? 6 | 0x8000 : 3);
      expect(att.core.errors).toEqual([]);
    });
  }
});

describe('RING_RESET: per-queue reset and re-enable (vq_reset.*)', () => {
  for (const kind of ['mmio', 'pci'] as const) {
    for (const packed of [false, true]) {
      it(`${kind} / ${packed ? 'packed' : 'split'}`, () => {
        const features = featureSet(F.VERSION_1, F.RING_RESET, F.EVENT_IDX, ...(packed ? [F.RING_PACKED] : []));
        const { m, d, core, t, model } = setup(kind, features, { completionDelayNs: 50_000 });
        // queue 0 has requests in flight inside the device when it is reset
        post(m, d, 0, [1, 2]);
        post(m, d, 1, [3]);
        m.platform.spin(1000); // the device has taken the chains; completions are 50 us away
        const before = m.mem.readBytes(d.queue<number>(0) instanceof PackedVirtqueue ? (d.queue(0) as PackedVirtqueue).descAddr : (d.queue(0) as SplitVirtqueue).addresses.device, 64);
        t.resetQueue!(0); // vq_reset.driver.1: returns only once the device reads back 0
        expect(model.resetQueues).toEqual([0]);
        expect(core.queueConfig(0)).toMatchObject({ ready: false, desc: 0, driver: 0, device: 0, size: 32 }); // vq_reset.device.2
        m.platform.spin(200_000);
        // vq_reset.device.1: nothing was completed or signalled for the reset queue
        const after = m.mem.readBytes(d.queue<number>(0) instanceof PackedVirtqueue ? (d.queue(0) as PackedVirtqueue).descAddr : (d.queue(0) as SplitVirtqueue).addresses.device, 64);
        expect(after).toEqual(before);
        expect(d.queue(0).getUsed()).toBeNull();
        // the other queue is unaffected
        expect(collect(d, 1, 1)).toEqual([3]);
        // re-enable with a different size (vq_reset.device.3, vq_reset.driver.3)
        d.queue(0).destroy();
        const size = 8;
        const nq: QueueWithAddresses = packed
          ? new PackedVirtqueue(m.platform.mem, m.platform.dma, 0, size, (_i, data) => t.notify(0, data), { eventIdx: true })
          : new SplitVirtqueue(m.platform.mem, m.platform.dma, { index: 0, size, eventIdx: true, indirect: false, notify: (data) => t.notify(0, data) });
        t.setupQueue(0, nq.addresses);
        d.queues.set(0, nq);
        expect(core.queueConfig(0)).toMatchObject({ ready: true, size });
        post(m, d, 0, [10, 11, 12]);
        expect(collect(d, 0, 3).sort()).toEqual([10, 11, 12]);
        expect(core.errors.filter((e) => e.fatal)).toEqual([]);
      });
    }
  }
});
