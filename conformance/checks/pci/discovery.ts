/**
 * virtio-pci device discovery (transport-pci.tex, "PCI Device Discovery"): the PCI identity
 * of the device and how the driver matches it.
 *
 *   pci.device.identity  pci.device.1, .2, .3
 *   pci.driver.matching  pci.driver.1, .2, .3
 */
import fc from 'fast-check';
import { discoverPci } from '../../../drivers/transport/pci.ts';
import { DeviceType } from '../../../spec-refs/abi/virtio.ts';
import { checkProperty, defineCheck, expectEqual, expectThat } from '../../check.ts';
import { PCI, PCI_ANY, openPci, deviceTypeOf, internalsOf } from './raw.ts';

defineCheck({
  id: 'pci.device.identity',
  title: 'vendor 0x1AF4, a modern or transitional device id, a PCI header drivers can size',
  statements: ['pci.device.1', 'pci.device.2', 'pci.device.3'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI_ANY] },
  run(ctx) {
    const d = openPci(ctx);
    expectEqual(d.bus.read(d.a, 0, 2), 0x1af4, ['pci.device.2'], 'PCI vendor id', true);
    const type = deviceTypeOf(d);
    const modern = d.deviceId === 0x1040 + type;
    const transitional = d.deviceId >= 0x1000 && d.deviceId <= 0x103f;
    expectThat(modern || transitional, ['pci.device.3'], 'device id is neither 0x1040 + type nor a transitional id', `0x${(0x1040 + type).toString(16)} or 0x1000..0x103f`, `0x${d.deviceId.toString(16)}`);
    // PCI 3.0: header type 0, BARs size to powers of two (sizeBars throws otherwise), the status
    // register announces the capability list it has
    expectEqual(d.bus.read(d.a, 0x0e, 1) & 0x7f, 0, ['pci.device.1'], 'header type');
    expectThat((d.bus.read(d.a, 6, 2) & 0x10) !== 0, ['pci.device.1'], 'status register does not announce a capability list');
    expectThat(d.bars.length > 0, ['pci.device.1'], 'function implements no BAR');
  },
});

defineCheck({
  id: 'pci.driver.matching',
  title: 'the driver matches vendor 0x1AF4 with a modern id (any revision) or a transitional id, and nothing else',
  statements: ['pci.driver.1', 'pci.driver.2', 'pci.driver.3'],
  side: 'driver',
  kind: 'property',
  applies: { transports: [...PCI] },
  run(ctx) {
    checkProperty(ctx, ['pci.driver.1'], [fc.nat({ max: 255 }), fc.constantFrom('modern', 'transitional', 'other')], (revision, kind) => {
      const dut = ctx.newDevice();
      const { fn } = internalsOf(dut);
      const type = (fn.cfg[0x2e]! | (fn.cfg[0x2f]! << 8)) >= 0x40 ? fn.cfg[2]! + (fn.cfg[3]! << 8) - 0x1040 : fn.cfg[0x2e]!;
      fn.cfg[8] = revision; // pci.driver.3: any revision
      if (kind === 'transitional') {
        const tid = type === DeviceType.NET ? 0x1000 : type === DeviceType.BLOCK ? 0x1001 : -1;
        if (tid < 0) return;
        fn.cfg[2] = tid & 0xff;
        fn.cfg[3] = tid >> 8;
        fn.cfg[0x2e] = type;
        fn.cfg[0x2f] = 0;
      } else if (kind === 'other') {
        fn.cfg[2] = 0x00;
        fn.cfg[3] = 0x11; // 0x1100: outside both ranges
      }
      const found = discoverPci(dut.platform);
      if (kind === 'other') expectEqual(found.transports.length, 0, ['pci.driver.1'], 'driver took a function outside the virtio id ranges');
      else {
        expectEqual(found.transports.length, 1, [kind === 'modern' ? 'pci.driver.1' : 'pci.driver.2', 'pci.driver.3'], `driver did not match a ${kind} device with revision ${revision}`);
        expectEqual(found.transports[0]!.deviceType, type, [kind === 'modern' ? 'pci.driver.1' : 'pci.driver.2'], 'device type the driver derived');
      }
    });
  },
});
