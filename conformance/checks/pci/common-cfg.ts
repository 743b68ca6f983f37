/**
 * virtio-pci common configuration (transport-pci.tex, "PCI Device Layout / Common configuration
 * structure layout"; pci.device.8 from "PCI Device Layout", .61 from "MSI-X Vector
 * Configuration", vq_reset.* from basics.tex "Virtqueue Reset"):
 *
 *   pci.device.feature-windows     pci.device.14, .15, .8
 *   pci.device.config-generation   pci.device.17
 *   pci.device.reset               pci.device.18, .19, .20, .61
 *   pci.device.queue-reset         pci.device.21-.24, vq_reset.device.1, .2, .3
 *   pci.device.queue-size          pci.device.25, .26
 *   pci.driver.register-discipline pci.driver.5, .15-.20
 *   pci.driver.queue-reset         pci.driver.21, vq_reset.driver.1, .3
 */
import fc from 'fast-check';
import { VirtioDriverDevice } from '../../../drivers/core/device.ts';
import { F, Status, bit, featureSet, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { COMMON_FIELD_WIDTH, Common, PciCap, VIRTIO_MSI_NO_VECTOR } from '../../../spec-refs/abi/virtio-pci.ts';
import { CheckSkip, checkProperty, defineCheck, expectEqual, expectThat } from '../../check.ts';
import { requestQueue } from '../requests.ts';
import { PCI, openPci, rc, wc, rq, driverOk, offered, negotiate, rawSplitQueue, postRequest, deviceTypeOf, waitFor, internalsOf, changeConfig } from './raw.ts';
import { watch, driverTransport, refWorkload } from './watch.ts';

defineCheck({
  id: 'pci.device.feature-windows',
  title: 'device_feature shows the offer window by window; driver_feature reads back what the driver wrote of it; 64-bit fields take independent halves',
  statements: ['pci.device.14', 'pci.device.15', 'pci.device.8'],
  side: 'device',
  kind: 'property',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    const off = offered(d);
    checkProperty(ctx, ['pci.device.14'], [fc.nat({ max: 6 }), fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 0xffff_ffff })], (sel, mask, lo, hi) => {
      wc(d, Common.DEVICE_STATUS, 1, 0);
      wc(d, Common.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER);
      wc(d, Common.DEVICE_FEATURE_SELECT, 4, sel);
      const word = sel < 4 ? Number((off >> BigInt(32 * sel)) & 0xffff_ffffn) : 0;
      expectEqual(rc(d, Common.DEVICE_FEATURE, 4), word, ['pci.device.14'], `device_feature window ${sel}`, true);
      if (sel >= 4) expectEqual(word, 0, ['pci.device.14'], `offered features above bit 127 (window ${sel})`, true);
      const valid = (mask & word) >>> 0;
      wc(d, Common.DRIVER_FEATURE_SELECT, 4, sel);
      wc(d, Common.DRIVER_FEATURE, 4, valid);
      expectEqual((rc(d, Common.DRIVER_FEATURE, 4) & word) >>> 0, valid, ['pci.device.15'], `valid driver_feature bits read back (window ${sel})`, true);
      // pci.device.8: queue_desc halves written in either order read back independently
      wc(d, Common.QUEUE_SELECT, 2, 0);
      const l = lo & ~0xf;
      wc(d, Common.QUEUE_DESC + 4, 4, hi & 0x1f);
      wc(d, Common.QUEUE_DESC, 4, l);
      expectEqual(rc(d, Common.QUEUE_DESC, 4), l >>> 0, ['pci.device.8'], 'queue_desc low half', true);
      expectEqual(rc(d, Common.QUEUE_DESC + 4, 4), hi & 0x1f, ['pci.device.8'], 'queue_desc high half', true);
      wc(d, Common.QUEUE_DESC + 4, 4, 0);
      expectEqual(rc(d, Common.QUEUE_DESC, 4), l >>> 0, ['pci.device.8'], 'queue_desc low half after the high half changed', true);
    });
  },
});

defineCheck({
  id: 'pci.device.config-generation',
  title: 'config_generation changes when the device changes its configuration',
  statements: ['pci.device.17'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    negotiate(d, 0n);
    rawSplitQueue(d, 0, 8);
    driverOk(d);
    const g0 = rc(d, Common.CONFIG_GENERATION, 1);
    const dev0 = d.r(PciCap.DEVICE_CFG, 0, 4);
    changeConfig(d.dut);
    const dev1 = d.r(PciCap.DEVICE_CFG, 0, 4);
    const g1 = rc(d, Common.CONFIG_GENERATION, 1);
    expectThat(dev0 !== dev1, ['pci.device.17'], 'configuration did not change');
    expectThat(g0 !== g1, ['pci.device.17'], 'configuration changed but config_generation did not', `not ${g0}`, String(g1));
  },
});

defineCheck({
  id: 'pci.device.reset',
  title: 'writing 0 to device_status resets: status, queue_enable, queue_reset read 0 and every vector is unmapped',
  statements: ['pci.device.18', 'pci.device.19', 'pci.device.20', 'pci.device.61'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx, { extraFeatures: bit(F.RING_RESET) });
    negotiate(d, bit(F.RING_RESET));
    const nq = rc(d, Common.NUM_QUEUES, 2);
    for (let q = 0; q < nq; q++) {
      rawSplitQueue(d, q, 8);
      wc(d, Common.QUEUE_MSIX_VECTOR, 2, 0);
    }
    wc(d, Common.CONFIG_MSIX_VECTOR, 2, 0);
    driverOk(d);
    wc(d, Common.DEVICE_STATUS, 1, 0);
    expectEqual(rc(d, Common.DEVICE_STATUS, 1), 0, ['pci.device.18'], 'device_status after writing 0');
    expectEqual(rc(d, Common.CONFIG_MSIX_VECTOR, 2), VIRTIO_MSI_NO_VECTOR, ['pci.device.61'], 'config_msix_vector after reset', true);
    for (let q = 0; q < nq; q++) {
      expectEqual(rq(d, q, Common.QUEUE_ENABLE, 2), 0, ['pci.device.19'], `queue ${q} queue_enable after reset`);
      expectEqual(rc(d, Common.QUEUE_RESET, 2), 0, ['pci.device.20'], `queue ${q} queue_reset after reset`);
      expectEqual(rc(d, Common.QUEUE_MSIX_VECTOR, 2), VIRTIO_MSI_NO_VECTOR, ['pci.device.61'], `queue ${q} queue_msix_vector after reset`, true);
    }
  },
});

defineCheck({
  id: 'pci.device.queue-reset',
  title: 'with RING_RESET: queue_reset 0 once enabled; writing 1 resets the queue (no more requests or interrupts for it) and ends with queue_reset and queue_enable 0; the queue works again after re-enabling',
  statements: ['pci.device.21', 'pci.device.22', 'pci.device.23', 'pci.device.24', 'vq_reset.device.1', 'vq_reset.device.2', 'vq_reset.device.3'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx, { extraFeatures: bit(F.RING_RESET), params: { notifyLatencyNs: 50_000 } });
    const acc = negotiate(d, bit(F.RING_RESET));
    if (!hasFeature(acc, F.RING_RESET)) throw new CheckSkip('device does not offer VIRTIO_F_RING_RESET');
    const type = deviceTypeOf(d);
    const qi = requestQueue(type);
    const maxSize = rq(d, qi, Common.QUEUE_SIZE, 2); // before any write: the maximum the device offers
    const q0 = rawSplitQueue(d, qi, 16);
    expectEqual(rc(d, Common.QUEUE_RESET, 2), 0, ['pci.device.21'], 'queue_reset after queue_enable');
    driverOk(d);
    const first = postRequest(d, qi, q0, type);
    expectThat(waitFor(d.p, first.done), ['vq_reset.device.3'], 'device did not complete a request before the reset');
    // a request notified but not yet run (the device's notification latency), then the reset
    postRequest(d, qi, q0, type);
    wc(d, Common.QUEUE_SELECT, 2, qi);
    wc(d, Common.QUEUE_RESET, 2, 1);
    let polls = 0;
    while (rc(d, Common.QUEUE_RESET, 2) !== 0 && polls++ < 1000) d.p.spin(1000); // pci.device.23: 1 while ongoing
    expectEqual(rc(d, Common.QUEUE_RESET, 2), 0, ['pci.device.24'], 'queue_reset once the reset completed');
    expectEqual(rc(d, Common.QUEUE_ENABLE, 2), 0, ['pci.device.24', 'pci.device.22'], 'queue_enable once the reset completed');
    const usedBefore = d.p.mem.read16(q0.used + 2);
    d.p.spin(1_000_000);
    expectEqual(d.p.mem.read16(q0.used + 2), usedBefore, ['vq_reset.device.1'], 'device used a buffer of a reset queue');
    // vq_reset.device.2: the queue starts again from index 0 on a new ring of another size
    expectEqual(rq(d, qi, Common.QUEUE_SIZE, 2), maxSize, ['vq_reset.device.2'], 'queue_size after the queue reset (back to the maximum)');
    const q1 = rawSplitQueue(d, qi, 8);
    const again = postRequest(d, qi, q1, type);
    expectThat(waitFor(d.p, again.done), ['vq_reset.device.2', 'vq_reset.device.3'], 'the re-enabled queue did not process a request from index 0 of its new ring');
  },
});

defineCheck({
  id: 'pci.device.queue-size',
  title: 'queue_size reads 0 for a queue that does not exist, and 0 or a power of two while RING_PACKED is not negotiated',
  statements: ['pci.device.25', 'pci.device.26'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    negotiate(d, 0n);
    const nq = rc(d, Common.NUM_QUEUES, 2);
    for (const q of [nq, nq + 1, 0xffff]) {
      expectEqual(rq(d, q, Common.QUEUE_SIZE, 2), 0, ['pci.device.25'], `queue_size of absent queue ${q}`);
    }
    for (let q = 0; q < nq; q++) {
      const s = rq(d, q, Common.QUEUE_SIZE, 2);
      expectThat(s === 0 || (s & (s - 1)) === 0, ['pci.device.26'], `queue ${q} presents a size that is not a power of two without RING_PACKED`, 'a power of two', String(s));
    }
  },
});

defineCheck({
  id: 'pci.driver.register-discipline',
  title: 'natural access widths; no writes to read-only fields; queue fields before queue_enable, never 0 to it; valid queue sizes; status read back as 0 after a reset before anything else',
  statements: ['pci.driver.5', 'pci.driver.15', 'pci.driver.16', 'pci.driver.17', 'pci.driver.18', 'pci.driver.19', 'pci.driver.20'],
  side: 'driver',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    for (const packed of ctx.ring === 'packed' ? [false, true] : [false]) {
      const dut = ctx.newDevice({ extraFeatures: packed ? bit(F.RING_PACKED) : 0n });
      const { transport, fn } = internalsOf(dut);
      const base4 = 'bar4';
      const seen = watch(dut, () => refWorkload(ctx, dut, packed ? bit(F.RING_PACKED) : 0n));
      void fn;
      const common = seen.bar.filter((a) => a.window.endsWith(base4) && a.offset < 0x1000);
      const ro = new Set<number>([Common.DEVICE_FEATURE, Common.NUM_QUEUES, Common.CONFIG_GENERATION, Common.QUEUE_NOTIFY_OFF, Common.QUEUE_NOTIF_CONFIG_DATA]);
      let sel = 0;
      const enabled = new Set<number>();
      let awaitZero = false;
      for (const a of common) {
        const w = COMMON_FIELD_WIDTH[a.offset] ?? (COMMON_FIELD_WIDTH[a.offset - 4] === 8 ? 8 : undefined);
        expectThat(w !== undefined && (w === a.size || (w === 8 && a.size === 4)), ['pci.driver.5'], 'access of the wrong width to the common configuration', `field width ${w}`, `${a.size}-byte ${a.kind} at 0x${a.offset.toString(16)}`);
        if (a.kind === 'read') {
          if (a.offset === Common.DEVICE_STATUS && a.value === 0) awaitZero = false;
          continue;
        }
        expectThat(!awaitZero, ['pci.driver.19'], 'driver wrote the common configuration before device_status read back 0 after a reset', 'a read of 0 first', `write at 0x${a.offset.toString(16)}`);
        expectThat(!ro.has(a.offset), ['pci.driver.15'], 'driver wrote a read-only common configuration field', undefined, `0x${a.offset.toString(16)}`);
        if (a.offset === Common.DEVICE_STATUS && a.value === 0) {
          awaitZero = true;
          enabled.clear();
        }
        if (a.offset === Common.QUEUE_SELECT) sel = a.value;
        if (a.offset === Common.QUEUE_ENABLE) {
          expectThat(a.value !== 0, ['pci.driver.20'], 'driver wrote 0 to queue_enable');
          enabled.add(sel);
        }
        if ([Common.QUEUE_SIZE, Common.QUEUE_DESC, Common.QUEUE_DESC + 4, Common.QUEUE_DRIVER, Common.QUEUE_DRIVER + 4, Common.QUEUE_DEVICE, Common.QUEUE_DEVICE + 4].includes(a.offset)) {
          expectThat(!enabled.has(sel), ['pci.driver.18'], `driver configured queue ${sel} after enabling it`, undefined, `write at 0x${a.offset.toString(16)}`);
        }
        if (a.offset === Common.QUEUE_SIZE) {
          if (packed) expectThat(a.value !== 0, ['pci.driver.16'], 'driver wrote queue_size 0 with RING_PACKED');
          else expectThat(a.value !== 0 && (a.value & (a.value - 1)) === 0, ['pci.driver.17'], 'driver wrote a queue_size that is not a power of two without RING_PACKED', 'a power of two', String(a.value));
        }
      }
      expectEqual(transport.badAccesses.length, 0, ['pci.driver.5'], 'accesses the device recorded as malformed');
    }
  },
});

defineCheck({
  id: 'pci.driver.queue-reset',
  title: 'after writing 1 to queue_reset the driver waits for 0 and checks the queue is disabled before reusing it',
  statements: ['pci.driver.21', 'vq_reset.driver.1', 'vq_reset.driver.3'],
  side: 'driver',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const dut = ctx.newDevice({ extraFeatures: bit(F.RING_RESET) });
    const { transport } = internalsOf(dut);
    // a device whose queue reset takes a few reads to complete
    const dev = transport as unknown as { commonRead(off: number, size: number): number };
    const orig = dev.commonRead.bind(transport);
    let pending = 0;
    dev.commonRead = (off: number, size: number) => {
      if (off === Common.QUEUE_RESET && pending > 0) {
        pending--;
        return 1;
      }
      return orig(off, size);
    };
    const t = driverTransport(dut);
    const d = VirtioDriverDevice.init(dut.platform, t, { features: featureSet(F.VERSION_1, F.RING_RESET), queues: 1 });
    if (!hasFeature(d.features, F.RING_RESET)) throw new CheckSkip('device does not offer VIRTIO_F_RING_RESET');
    pending = 5;
    const seen = watch(dut, () => t.resetQueue(0));
    const resetReads = seen.bar.filter((a) => a.kind === 'read' && a.offset === Common.QUEUE_RESET);
    expectThat(resetReads.length > 0 && resetReads.at(-1)!.value === 0, ['pci.driver.21', 'vq_reset.driver.1'], 'driver considered the queue reset complete before queue_reset read back 0', 'a final read of 0', resetReads.length ? String(resetReads.at(-1)!.value) : 'no read');
    expectThat(seen.bar.some((a) => a.kind === 'read' && a.offset === Common.QUEUE_ENABLE && a.value === 0), ['vq_reset.driver.1'], 'driver did not verify that the reset queue is disabled');
    expectEqual(pending, 0, ['pci.driver.21'], 'reads of queue_reset left when the driver stopped polling');
    // vq_reset.driver.3: re-enabling goes through the full queue setup again (size, areas, enable)
    const vq = d.queues.get(0)!;
    const again = watch(dut, () => t.setupQueue(0, vq.addresses));
    const offs = new Set(again.bar.filter((a) => a.kind === 'write').map((a) => a.offset));
    for (const o of [Common.QUEUE_SIZE, Common.QUEUE_DESC, Common.QUEUE_DRIVER, Common.QUEUE_DEVICE, Common.QUEUE_ENABLE]) expectThat(offs.has(o), ['vq_reset.driver.3'], `re-enable skipped the queue field at 0x${o.toString(16)}`);
  },
});
