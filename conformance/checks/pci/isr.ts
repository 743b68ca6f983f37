/**
 * virtio-pci ISR status (transport-pci.tex, "PCI Device Layout / ISR status capability"):
 *
 *   pci.device.isr  pci.device.41, .42, .43, .44
 */
import { ISR_CONFIG, ISR_QUEUE, PciCap } from '../../../spec-refs/abi/virtio-pci.ts';
import { defineCheck, expectEqual, expectThat } from '../../check.ts';
import { requestQueue } from '../requests.ts';
import { PCI, openPci, driverOk, negotiate, rawSplitQueue, postRequest, deviceTypeOf, waitFor, canChangeConfig, changeConfig } from './raw.ts';

defineCheck({
  id: 'pci.device.isr',
  title: 'without MSI-X: queue and config events set their ISR bits, the PCI interrupt status bit and INTx follow the ISR, a read clears it',
  statements: ['pci.device.41', 'pci.device.42', 'pci.device.43', 'pci.device.44'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    negotiate(d, 0n);
    const type = deviceTypeOf(d);
    const qi = requestQueue(type);
    const q = rawSplitQueue(d, qi, 16);
    driverOk(d);
    const req = postRequest(d, qi, q, type);
    expectThat(waitFor(d.p, req.done), ['pci.device.42'], 'device did not complete a request');
    const pciStatus = () => d.bus.read(d.a, 6, 2) & 0x8;
    // The used buffer notification may follow the used idx update: QEMU 7.2's virtio-blk (dataplane
    // code path, taken whenever ioeventfd is on, iothread or not) batches notifications in a bottom
    // half (virtio_blk_data_plane_notify -> notify_guest_bh, hw/block/dataplane/virtio-blk.c), so a
    // read right after used idx moved can see the interrupt not yet sent. Wait for the notification
    // (the PCI Interrupt Status bit; a config read does not clear anything), then judge.
    waitFor(d.p, () => pciStatus() !== 0);
    expectEqual(pciStatus(), 0x8, ['pci.device.43', 'pci.device.42'], 'PCI status Interrupt Status after a used buffer notification (ISR queue bit set)', true);
    const isr = d.r(PciCap.ISR_CFG, 0, 1);
    expectEqual(isr & ISR_QUEUE, ISR_QUEUE, ['pci.device.42'], 'ISR queue bit after a used buffer notification', true);
    expectEqual(d.r(PciCap.ISR_CFG, 0, 1), 0, ['pci.device.44'], 'ISR after it was read', true);
    expectEqual(pciStatus(), 0, ['pci.device.43'], 'PCI status Interrupt Status with the ISR clear', true);
    const vector = d.bus.intxVector(d.a);
    while (d.p.irq.poll() !== null) d.p.irq.eoi(vector);
    if (!canChangeConfig(d.dut)) {
      ctx.note('the target cannot change this device configuration: pci.device.41 not exercised');
      return;
    }
    changeConfig(d.dut);
    d.p.spin(1000);
    expectEqual(d.r(PciCap.ISR_CFG, 0, 1) & ISR_CONFIG, ISR_CONFIG, ['pci.device.41'], 'ISR config bit after a configuration change', true);
  },
});
