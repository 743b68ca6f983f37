/**
 * virtio-pci structure capabilities (transport-pci.tex, "Virtio Structure PCI Capabilities",
 * with "Device-specific configuration" and "Vendor data capability" of "PCI Device Layout"):
 *
 *   pci.device.capabilities  pci.device.9, .12, .13, .29, .40, .45, .51 (each structure present)
 *   pci.device.vendor-data   pci.device.48, .49, .50
 *   pci.driver.capabilities  pci.driver.7, .9, .10, .12, .14, .28
 */
import { PciBus } from '../../../drivers/transport/pci-bus.ts';
import { Common, PciCap } from '../../../spec-refs/abi/virtio-pci.ts';
import { CheckFailure, CheckSkip, defineCheck, expectEqual, expectThat } from '../../check.ts';
import { PCI, openPci, C, internalsOf } from './raw.ts';
import { watch, refWorkload } from './watch.ts';

defineCheck({
  id: 'pci.device.capabilities',
  title: 'COMMON, NOTIFY, ISR, DEVICE and PCI_CFG capabilities present, cap_len covers them, offsets aligned, structures inside their BARs',
  statements: ['pci.device.9', 'pci.device.12', 'pci.device.13', 'pci.device.29', 'pci.device.40', 'pci.device.45', 'pci.device.51'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    const need: [number, string, number][] = [
      [PciCap.COMMON_CFG, 'pci.device.13', PciCap.CAP_LEN],
      [PciCap.NOTIFY_CFG, 'pci.device.29', PciCap.NOTIFY_CAP_LEN],
      [PciCap.ISR_CFG, 'pci.device.40', PciCap.CAP_LEN],
      [PciCap.PCI_CFG, 'pci.device.51', PciCap.CFG_CAP_LEN],
    ];
    for (const [type, st, len] of need) {
      const c = d.caps.find((x) => x.type === type);
      expectThat(c !== undefined, [st], `no capability with cfg_type ${type}`);
      expectThat(c.len >= len, ['pci.device.9'], `cap_len of cfg_type ${type} does not cover the structure and its extra fields`, `>= ${len}`, String(c.len));
    }
    const model = internalsOf(d.dut).core.model;
    if (model.configSize > 0) expectThat(d.caps.some((x) => x.type === PciCap.DEVICE_CFG), ['pci.device.45'], 'device has a configuration space but no DEVICE_CFG capability');
    for (const c of d.caps) {
      if (c.type === PciCap.COMMON_CFG) expectEqual(c.offset % 4, 0, ['pci.device.12'], 'common configuration offset modulo 4');
      if (c.type === PciCap.DEVICE_CFG) expectEqual(c.offset % 4, 0, ['pci.device.45'], 'device configuration offset modulo 4');
      if (c.type === PciCap.PCI_CFG || c.type > PciCap.PCI_CFG) continue;
      const b = d.bar(c.bar);
      expectThat(c.offset + Math.min(c.length, 0x1000) <= b.size, ['pci.device.9'], `structure of cfg_type ${c.type} runs past BAR${c.bar}`, `<= ${b.size}`, String(c.offset + c.length));
    }
    expectThat(d.cap(C).length >= Common.SIZE - 4, ['pci.device.13'], 'common configuration structure too short', `>= ${Common.SIZE - 4}`, String(d.cap(C).length));
  },
});

defineCheck({
  id: 'pci.device.vendor-data',
  title: 'a vendor data capability, when present, does not claim vendor 0x1AF4, is a multiple of 4 bytes and reads without side effects',
  statements: ['pci.device.48', 'pci.device.49', 'pci.device.50'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const d = openPci(ctx);
    const vd = d.caps.filter((c) => c.type === PciCap.VENDOR_CFG);
    if (vd.length === 0) throw new CheckSkip('device presents no vendor data capability');
    for (const c of vd) {
      expectThat(d.bus.read(d.a, c.at + 4, 2) !== 0x1af4, ['pci.device.48'], 'vendor data capability with vendor_id 0x1AF4');
      expectEqual(c.len % 4, 0, ['pci.device.49'], 'vendor data capability length modulo 4');
      const a = Array.from({ length: c.len }, (_, i) => d.bus.read(d.a, c.at + i, 1));
      const b = Array.from({ length: c.len }, (_, i) => d.bus.read(d.a, c.at + i, 1));
      expectThat(a.every((x, i) => x === b[i]), ['pci.device.50'], 'reading the vendor data capability changed it');
    }
  },
});

defineCheck({
  id: 'pci.driver.capabilities',
  title: 'the driver skips reserved cfg_type and bar values, accepts a longer cap_len and a huge length, and writes no capability but PCI_CFG',
  statements: ['pci.driver.7', 'pci.driver.9', 'pci.driver.10', 'pci.driver.12', 'pci.driver.14', 'pci.driver.28'],
  side: 'driver',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const dut = ctx.newDevice();
    const { fn } = internalsOf(dut);
    // put decoys first in the list: a reserved cfg_type, a COMMON cap with a reserved bar, a vendor data cap
    const decoy = (cfgType: number, bar: number, len = 16): number => {
      const b = new Uint8Array(len);
      b[2] = len;
      b[3] = cfgType;
      b[4] = bar;
      if (len >= 16) {
        new DataView(b.buffer).setUint32(8, 0x10, true);
        new DataView(b.buffer).setUint32(12, 0x40, true);
      }
      return fn.addCapability(0x09, b);
    };
    const first = fn.cfg[0x34]!;
    const d1 = decoy(0x77, 4);
    const d2 = decoy(PciCap.COMMON_CFG, 7);
    const d3 = decoy(PciCap.VENDOR_CFG, 0, 8);
    fn.cfg[d3 + 4] = 0x34; // vendor_id 0x1234, a vendor this driver does not know
    fn.cfg[d3 + 5] = 0x12;
    // splice: cap_ptr -> d1 -> d2 -> d3 -> the original list (the tail of which is d1: cut it there)
    let p = first;
    while (fn.cfg[p + 1] !== d1) p = fn.cfg[p + 1]!;
    fn.cfg[p + 1] = 0;
    fn.cfg[0x34] = d1;
    fn.cfg[d1 + 1] = d2;
    fn.cfg[d2 + 1] = d3;
    fn.cfg[d3 + 1] = first;
    // the real COMMON cap: cap_len larger than the structure, and a length of 1 GiB
    const { transport } = internalsOf(dut);
    const caps = new PciBus(dut.platform).capabilities({ bus: 0, dev: fn.dev, fn: fn.fn }).map((c) => c.offset);
    const common = caps.find((o) => fn.cfg[o] === 0x09 && fn.cfg[o + 3] === PciCap.COMMON_CFG && fn.cfg[o + 4] !== 7)!;
    new DataView(fn.cfg.buffer).setUint32(common + 12, 0x4000_0000, true);
    void transport;
    const seen = watch(dut, () => refWorkload(ctx, dut));
    const capRanges = caps.concat([d1, d2, d3]).filter((o) => fn.cfg[o] === 0x09 && fn.cfg[o + 3] !== PciCap.PCI_CFG);
    for (const w of seen.cfgWrites) {
      for (const c of capRanges) {
        if (w.off < c + fn.cfg[c + 2]! && c <= w.off + w.size - 1) throw new CheckFailure('driver wrote into a virtio capability other than PCI_CFG', { statements: w.off >= d3 && w.off < d3 + 8 ? ['pci.driver.28', 'pci.driver.14'] : ['pci.driver.14'], seen: `config write at 0x${w.off.toString(16)}` });
      }
    }
  },
});
