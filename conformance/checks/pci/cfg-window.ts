/**
 * virtio-pci PCI_CFG window (transport-pci.tex, "PCI Device Layout / PCI configuration access
 * capability"):
 *
 *   pci.device.cfg-window  pci.device.52, .53
 *   pci.driver.cfg-window  pci.driver.29, .30, .31
 */
import fc from 'fast-check';
import { VirtioDriverDevice } from '../../../drivers/core/device.ts';
import { F, featureSet } from '../../../spec-refs/abi/virtio.ts';
import { Common, PciCap } from '../../../spec-refs/abi/virtio-pci.ts';
import { checkProperty, defineCheck, expectEqual, expectThat } from '../../check.ts';
import { PCI, openPci, C, rc, wc, internalsOf } from './raw.ts';
import { watch, driverTransport } from './watch.ts';

defineCheck({
  id: 'pci.device.cfg-window',
  title: 'the PCI_CFG window reads and writes the BAR structures it addresses',
  statements: ['pci.device.52', 'pci.device.53'],
  side: 'device',
  kind: 'property',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    const w = d.cap(PciCap.PCI_CFG).at;
    const common = d.cap(C);
    const via = (off: number, size: 1 | 2 | 4, v?: number): number => {
      d.bus.write(d.a, w + 4, 1, common.bar);
      d.bus.write(d.a, w + 12, 4, size);
      d.bus.write(d.a, w + 8, 4, common.offset + off);
      if (v !== undefined) {
        d.bus.write(d.a, w + 16, size, v);
        return 0;
      }
      return d.bus.read(d.a, w + 16, size);
    };
    // queue_select takes any 16-bit value on pvkit's device but a device may keep only values it can
    // select (QEMU: below VIRTIO_QUEUE_MAX, 1024; virtio_pci_common_write). So the window write is
    // compared with the same write through the BAR: what the BAR write leaves behind, the window write
    // must leave too, starting each time from a value different from it (so an ignored window write shows).
    checkProperty(ctx, ['pci.device.52', 'pci.device.53'], [fc.nat({ max: 0xffff }), fc.nat({ max: 3 })], (sel, fsel) => {
      const throughBar = (from: number) => {
        wc(d, Common.QUEUE_SELECT, 2, from);
        wc(d, Common.QUEUE_SELECT, 2, sel);
        return rc(d, Common.QUEUE_SELECT, 2);
      };
      let before = 0;
      let viaBar = throughBar(before);
      if (viaBar === before) viaBar = throughBar((before = 1));
      wc(d, Common.QUEUE_SELECT, 2, before);
      via(Common.QUEUE_SELECT, 2, sel);
      const viaWindow = rc(d, Common.QUEUE_SELECT, 2);
      expectEqual(viaWindow, viaBar, ['pci.device.52'], `queue_select ${sel} written through the window (read through the BAR; from ${before})`);
      wc(d, Common.DEVICE_FEATURE_SELECT, 4, fsel);
      expectEqual(via(Common.DEVICE_FEATURE, 4), rc(d, Common.DEVICE_FEATURE, 4), ['pci.device.53'], 'device_feature read through the window', true);
      expectEqual(via(Common.NUM_QUEUES, 2), rc(d, Common.NUM_QUEUES, 2), ['pci.device.53'], 'num_queues read through the window');
    });
  },
});

defineCheck({
  id: 'pci.driver.cfg-window',
  title: 'through the PCI_CFG window: aligned accesses of 1, 2 or 4 bytes inside a structure another capability describes',
  statements: ['pci.driver.29', 'pci.driver.30', 'pci.driver.31'],
  side: 'driver',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const dut = ctx.newDevice();
    const { transport, core } = internalsOf(dut);
    const t = driverTransport(dut, { access: 'pci-cfg' });
    const c = transport.pciCfgCap;
    const seen = watch(dut, () => {
      const d = VirtioDriverDevice.init(dut.platform, t, { features: featureSet(F.VERSION_1), queues: 1 });
      d.config32(0);
      d.shutdown();
    });
    let len = 0;
    let bar = 0;
    for (const w of seen.cfgWrites) {
      if (w.off === c + 4) bar = w.v & 0xff;
      if (w.off === c + 12) len = w.v;
      if (w.off === c + 8) expectThat([1, 2, 4].includes(len) && w.v % len === 0, ['pci.driver.29', 'pci.driver.30'], 'PCI_CFG offset not a multiple of the length', `a multiple of ${len}`, `0x${w.v.toString(16)}`);
      if (w.off === c + 8) expectEqual(bar, 4, ['pci.driver.31'], 'PCI_CFG window aimed at a BAR no virtio structure is in');
    }
    expectThat(seen.cfgWrites.some((w) => w.off === c + 16), ['pci.driver.31'], 'driver never used the window');
    expectEqual(core.errors.filter((e) => e.error.code === 'pci.cfg_window').length, 0, ['pci.driver.31'], 'PCI_CFG accesses the device refused');
  },
});
