/**
 * virtio-pci MSI-X and interrupt delivery (transport-pci.tex, "PCI-specific Initialization And
 * Device Operation": "MSI-X Vector Configuration", "Used Buffer Notifications", "Notification of
 * Device Configuration Changes"):
 *
 *   pci.device.msix-vectors      pci.device.56, .58, .59, .60, .63
 *   pci.device.msix-no-vector    pci.device.64, .65
 *   pci.driver.msix              pci.driver.32, .35, .36
 *   pci.driver.shared-interrupt  pci.driver.44
 *
 * pci.device.61 (a reset unmaps every vector) is checked by pci.device.reset in common-cfg.ts.
 */
import fc from 'fast-check';
import { VirtioDriverDevice } from '../../../drivers/core/device.ts';
import { F, featureSet } from '../../../spec-refs/abi/virtio.ts';
import { Common, VIRTIO_MSI_NO_VECTOR } from '../../../spec-refs/abi/virtio-pci.ts';
import { CheckSkip, checkProperty, defineCheck, expectEqual, expectThat } from '../../check.ts';
import { requestQueue, validRequest } from '../requests.ts';
import { PCI, PCI_ANY, openPci, rc, wc, rq, driverOk, negotiate, rawSplitQueue, postRequest, deviceTypeOf, msixOf, waitFor, internalsOf, changeConfig } from './raw.ts';
import { watch, driverTransport, refWorkload } from './watch.ts';

defineCheck({
  id: 'pci.device.msix-vectors',
  title: 'MSI-X Table Size reports the vectors; any event maps to any vector in the table and reads back; NO_VECTOR unmaps; a vector outside the table reads back NO_VECTOR',
  statements: ['pci.device.56', 'pci.device.58', 'pci.device.59', 'pci.device.60', 'pci.device.63'],
  side: 'device',
  kind: 'property',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    const msix = msixOf(d);
    const f = internalsOf(d.dut).fn;
    expectEqual(msix.tableSize, f.msixVectors, ['pci.device.56'], 'Table Size + 1 against the vectors the device implements');
    const nq = rc(d, Common.NUM_QUEUES, 2);
    checkProperty(ctx, ['pci.device.58'], [fc.nat({ max: nq }), fc.nat({ max: msix.tableSize + 3 })], (event, v) => {
      const write = (x: number) => {
        if (event === nq) wc(d, Common.CONFIG_MSIX_VECTOR, 2, x);
        else {
          wc(d, Common.QUEUE_SELECT, 2, event);
          wc(d, Common.QUEUE_MSIX_VECTOR, 2, x);
        }
      };
      const read = () => (event === nq ? rc(d, Common.CONFIG_MSIX_VECTOR, 2) : rq(d, event, Common.QUEUE_MSIX_VECTOR, 2));
      write(v);
      if (v < msix.tableSize) expectEqual(read(), v, ['pci.device.58', 'pci.device.60'], `event ${event} mapped to vector ${v}`);
      else expectEqual(read(), VIRTIO_MSI_NO_VECTOR, ['pci.device.63'], `event ${event} mapped outside the table (${v})`, true);
      write(VIRTIO_MSI_NO_VECTOR);
      expectEqual(read(), VIRTIO_MSI_NO_VECTOR, ['pci.device.59', 'pci.device.60'], `event ${event} unmapped`, true);
    });
  },
});

defineCheck({
  id: 'pci.device.msix-no-vector',
  title: 'with MSI-X enabled, NO_VECTOR means no interrupt for that queue or for configuration changes',
  statements: ['pci.device.64', 'pci.device.65'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    const msix = msixOf(d);
    const vectors = Array.from({ length: Math.min(msix.tableSize, 4) }, () => d.bus.allocVector());
    d.bus.enableMsix(d.a, msix, d.bars, vectors);
    negotiate(d, 0n);
    const type = deviceTypeOf(d);
    const qi = requestQueue(type);
    const q = rawSplitQueue(d, qi, 16, false);
    wc(d, Common.QUEUE_MSIX_VECTOR, 2, VIRTIO_MSI_NO_VECTOR);
    wc(d, Common.QUEUE_ENABLE, 2, 1);
    wc(d, Common.CONFIG_MSIX_VECTOR, 2, VIRTIO_MSI_NO_VECTOR);
    driverOk(d);
    const m = d.dut.machine;
    if (!m) throw new CheckSkip('needs the simulated machine to count interrupts');
    const before = m.irq.delivered;
    const req = postRequest(d, qi, q, type);
    expectThat(waitFor(d.p, req.done), ['pci.device.64'], 'device did not complete the request');
    expectEqual(m.irq.delivered, before, ['pci.device.64'], 'interrupts delivered for a queue mapped to NO_VECTOR');
    changeConfig(d.dut);
    d.p.spin(10_000);
    expectEqual(m.irq.delivered, before, ['pci.device.65'], 'interrupts delivered for a configuration change with config_msix_vector NO_VECTOR');
  },
});

defineCheck({
  id: 'pci.driver.msix',
  title: 'the driver works with any MSI-X table size, maps only vectors inside the table, and checks every mapping (falling back when refused)',
  statements: ['pci.driver.32', 'pci.driver.35', 'pci.driver.36'],
  side: 'driver',
  kind: 'property',
  applies: { transports: [...PCI_ANY] },
  run(ctx) {
    checkProperty(ctx, ['pci.driver.32'], [fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 8 })], (vectors, mappable) => {
      const dut = ctx.newDevice({ params: { msixVectors: vectors, mappableVectors: mappable } });
      const seen = watch(dut, () => refWorkload(ctx, dut));
      const legacy = dut.transport === 'pci-legacy';
      for (const a of seen.bar) {
        if (a.kind !== 'write') continue;
        const isVec = legacy ? a.window.endsWith('bar0') && (a.offset === 20 || a.offset === 22) : a.window.endsWith('bar4') && (a.offset === Common.CONFIG_MSIX_VECTOR || a.offset === Common.QUEUE_MSIX_VECTOR);
        if (!isVec) continue;
        expectThat(a.value === VIRTIO_MSI_NO_VECTOR || a.value < vectors, ['pci.driver.35'], 'driver mapped an event to a vector outside the MSI-X table', `< ${vectors}`, String(a.value));
      }
      // the workload completing proves interrupts reached the driver: a driver that trusted a
      // refused mapping would have waited for an interrupt that never comes (pci.driver.36)
    });
  },
});

defineCheck({
  id: 'pci.driver.shared-interrupt',
  title: 'one interrupt carrying both a configuration change and used buffers is handled as both',
  statements: ['pci.driver.44'],
  side: 'driver',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    for (const params of [{ mappableVectors: 1 }, { msixVectors: 0 }]) {
      const dut = ctx.newDevice({ params });
      const t = driverTransport(dut);
      const dev = VirtioDriverDevice.init(dut.platform, t, { features: featureSet(F.VERSION_1), queues: 1 });
      let configSeen = 0;
      dev.onConfigChange(() => configSeen++);
      const type = t.deviceType;
      const vq = dev.queue<number>(0);
      const req = validRequest(dut.platform, type);
      vq.add(req.segs.filter((s) => !s.write), req.segs.filter((s) => s.write), 1);
      // the config change lands while the request is in flight: one interrupt line / vector for both
      changeConfig(dut);
      vq.kick();
      const u = dev.waitUsed<number>(0);
      expectEqual(u.token, 1, ['pci.driver.44'], 'used buffer token');
      dev.poll();
      expectThat(configSeen > 0, ['pci.driver.44'], 'driver missed the configuration change that shared the interrupt with a used buffer');
    }
  },
});
