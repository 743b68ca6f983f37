/**
 * virtio-pci rules (pci.ts, pci-layout.ts) on a hostile driver: common cfg, notifications, the
 * PCI_CFG window, and the transport-independent rules over pci and legacy layouts.
 */
import { describe, expect, it } from 'vitest';
import { Machine } from '../../device-models/machine/machine.ts';
import { ModernLayout } from '../../device-models/virtio/pci.ts';
import { Common, Legacy, PciCap } from '../../spec-refs/abi/virtio-pci.ts';
import { F, Mmio, Split, Status, featureSet } from '../../spec-refs/abi/virtio.ts';
import { attachMonitor, type Monitor } from '../monitor.ts';
import { RawMmio } from '../hostile.ts';
import { ALL, common, findPciCfgCap, pciSim, sim, statements } from './test-support.ts';

describe('monitor: each virtio-pci driver rule fires on a hostile driver', () => {
  it('common cfg: access width (pci.driver.5), read-only fields (pci.driver.15)', () => {
    const s = pciSim();
    const c = common(s);
    c.w(Common.QUEUE_SELECT, 1, 0);
    expect(statements(s.mon)).toEqual(['pci.driver.5']);
    c.w(Common.NUM_QUEUES, 2, 4);
    c.w(Common.QUEUE_NOTIFY_OFF, 2, 1);
    expect(statements(s.mon)).toEqual(['pci.driver.15', 'pci.driver.5']);
    expect(s.mon.of(['pci.driver.15'])).toHaveLength(2);
  });

  it('queue_size 0 (pci.driver.16), not a power of two on a split ring (pci.driver.17), queue_enable 0 (pci.driver.20)', () => {
    const s = pciSim();
    const c = common(s);
    c.negotiate(ALL);
    c.w(Common.QUEUE_SELECT, 2, 0);
    c.w(Common.QUEUE_SIZE, 2, 8);
    expect(statements(s.mon)).toEqual([]);
    c.w(Common.QUEUE_SIZE, 2, 0);
    expect(statements(s.mon)).toEqual(['pci.driver.16']);
    c.w(Common.QUEUE_SIZE, 2, 6);
    expect(statements(s.mon)).toEqual(['pci.driver.16', 'pci.driver.17']);
    c.w(Common.QUEUE_ENABLE, 2, 0);
    expect(statements(s.mon)).toEqual(['pci.driver.16', 'pci.driver.17', 'pci.driver.20']);
  });

  it('notifications: width (pci.driver.38) and value (pci.driver.40)', () => {
    const s = pciSim();
    const c = common(s);
    c.negotiate(ALL);
    c.w(Common.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
    c.w(Common.QUEUE_SELECT, 2, 1);
    const no = c.r(Common.QUEUE_NOTIFY_OFF, 2);
    const mult = 4; // ModernLayout default notify_off_multiplier
    c.notify(no * mult, 2, 1);
    expect(statements(s.mon)).toEqual([]);
    c.notify(no * mult, 4, 1);
    expect(statements(s.mon)).toEqual(['pci.driver.38']);
    c.notify(no * mult, 2, 0);
    expect(statements(s.mon)).toEqual(['pci.driver.38', 'pci.driver.40']);
  });

  it('with VIRTIO_F_NOTIFICATION_DATA: 32-bit (pci.driver.39) carrying vq_index (pci.driver.41)', () => {
    const feats = ALL | featureSet(F.NOTIFICATION_DATA);
    const s = pciSim('modern', feats);
    const c = common(s);
    c.start(feats);
    c.w(Common.QUEUE_SELECT, 2, 1);
    const off = c.r(Common.QUEUE_NOTIFY_OFF, 2) * 4;
    c.notify(off, 4, 1);
    expect(statements(s.mon)).toEqual([]);
    c.notify(off, 2, 1);
    c.notify(off, 4, 0x0001_0000);
    expect(statements(s.mon)).toEqual(['pci.driver.39', 'pci.driver.41']);
  });

  it('with VIRTIO_F_NOTIF_CONFIG_DATA: the value is queue_notif_config_data (pci.driver.42)', () => {
    const feats = ALL | featureSet(F.NOTIF_CONFIG_DATA);
    const s = pciSim('modern', feats);
    const c = common(s);
    c.start(feats);
    c.w(Common.QUEUE_SELECT, 2, 0);
    const off = c.r(Common.QUEUE_NOTIFY_OFF, 2) * 4;
    const data = c.r(Common.QUEUE_NOTIF_CONFIG_DATA, 2);
    c.notify(off, 2, data);
    expect(statements(s.mon)).toEqual([]);
    c.notify(off, 2, 0); // the queue index, not the device's value
    expect(statements(s.mon)).toEqual(['pci.driver.42']);
  });

  it('PCI_CFG window: misaligned (pci.driver.29), outside every structure (pci.driver.31); a good window is decoded like BAR access', () => {
    const s = pciSim();
    const cap = findPciCfgCap(s);
    const cfgW = (reg: number, size: 1 | 2 | 4, v: number) => s.m.platform.mmioWrite(s.ecam + reg, size, v);
    const cfgR = (reg: number, size: 1 | 2 | 4) => s.m.platform.mmioRead(s.ecam + reg, size);
    // a good window onto device_status: write ACKNOWLEDGE|DRIVER without a reset first
    cfgW(cap + PciCap.OFF_BAR, 1, ModernLayout.BAR);
    cfgW(cap + PciCap.OFF_OFFSET, 4, ModernLayout.COMMON + Common.DEVICE_STATUS);
    cfgW(cap + PciCap.OFF_LENGTH, 4, 1);
    cfgW(cap + PciCap.OFF_PCI_CFG_DATA, 1, Status.ACKNOWLEDGE | Status.DRIVER);
    expect(statements(s.mon)).toEqual(['status_init.driver.6']);
    cfgW(cap + PciCap.OFF_OFFSET, 4, ModernLayout.COMMON + Common.QUEUE_SELECT + 1);
    cfgW(cap + PciCap.OFF_LENGTH, 4, 2);
    cfgR(cap + PciCap.OFF_PCI_CFG_DATA, 2);
    expect(statements(s.mon)).toEqual(['pci.driver.29', 'status_init.driver.6']);
    cfgW(cap + PciCap.OFF_OFFSET, 4, 0x800); // inside BAR4, but between structures
    cfgW(cap + PciCap.OFF_LENGTH, 4, 4);
    cfgR(cap + PciCap.OFF_PCI_CFG_DATA, 4);
    expect(statements(s.mon)).toEqual(['pci.driver.29', 'pci.driver.31', 'status_init.driver.6']);
  });

  it('the transport-independent rules apply over pci: features.driver.1, status_init.driver.2 (legacy I/O BAR too)', () => {
    const s = pciSim('modern', featureSet(F.VERSION_1));
    common(s).negotiate(featureSet(F.VERSION_1, F.EVENT_IDX));
    expect(statements(s.mon)).toEqual(['features.driver.1']);
    const l = pciSim('legacy');
    const io = l.bar(0);
    l.m.platform.pioWrite(io + Legacy.STATUS, 1, 0);
    l.m.platform.pioWrite(io + Legacy.STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER);
    l.m.platform.pioWrite(io + Legacy.STATUS, 1, Status.ACKNOWLEDGE);
    expect(statements(l.mon)).toEqual(['status_init.driver.2']);
  });

  it('split ring rules over the legacy PFN layout (pci legacy, mmio legacy): a looping chain (split.driver.4)', () => {
    for (const kind of ['pci', 'mmio'] as const) {
      let m: Machine;
      let mon: Monitor;
      let base: number;
      let size: number;
      let notify: () => void;
      if (kind === 'pci') {
        const l = pciSim('legacy');
        ({ m, mon } = l);
        const io = l.bar(0);
        const P = m.platform;
        P.pioWrite(io + Legacy.STATUS, 1, 0);
        P.pioWrite(io + Legacy.STATUS, 1, Status.ACKNOWLEDGE);
        P.pioWrite(io + Legacy.STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER);
        P.pioWrite(io + Legacy.GUEST_FEATURES, 4, 0);
        P.pioWrite(io + Legacy.QUEUE_SEL, 2, 0);
        size = P.pioRead(io + Legacy.QUEUE_NUM, 2);
        base = P.dma.alloc(0x10000, 4096);
        P.pioWrite(io + Legacy.QUEUE_PFN, 4, base / 4096);
        P.pioWrite(io + Legacy.STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER | Status.DRIVER_OK);
        notify = () => P.pioWrite(io + Legacy.QUEUE_NOTIFY, 2, 0);
      } else {
        const x = sim({ legacy: true, features: featureSet(F.INDIRECT_DESC) });
        m = x.m;
        mon = attachMonitor(m);
        const raw = new RawMmio(m.platform, x.dev.base);
        raw.probe();
        raw.w(Mmio.STATUS, 0);
        raw.w(Mmio.STATUS, Status.ACKNOWLEDGE);
        raw.w(Mmio.STATUS, Status.ACKNOWLEDGE | Status.DRIVER);
        raw.w(Mmio.DRIVER_FEATURES_SEL, 0);
        raw.w(Mmio.DRIVER_FEATURES, 0);
        raw.w(Mmio.GUEST_PAGE_SIZE, 4096);
        raw.w(Mmio.QUEUE_SEL, 0);
        size = 8;
        raw.w(Mmio.QUEUE_NUM, size);
        raw.w(Mmio.QUEUE_ALIGN, 4096);
        base = m.platform.dma.alloc(0x10000, 4096);
        raw.w(Mmio.QUEUE_PFN, base / 4096);
        raw.w(Mmio.STATUS, Status.ACKNOWLEDGE | Status.DRIVER | Status.DRIVER_OK);
        notify = () => raw.w(Mmio.QUEUE_NOTIFY, 0);
      }
      expect(statements(mon)).toEqual([]);
      const buf = m.platform.dma.alloc(64);
      const avail = base + 16 * size;
      // descriptors 0 -> 1 -> 0: a loop
      for (const [i, next] of [[0, 1], [1, 0]] as const) {
        m.mem.write32(base + 16 * i, buf);
        m.mem.write32(base + 16 * i + 4, 0);
        m.mem.write32(base + 16 * i + 8, 16);
        m.mem.write16(base + 16 * i + 12, Split.DESC_F_NEXT);
        m.mem.write16(base + 16 * i + 14, next);
      }
      m.mem.write16(avail + 4, 0);
      m.mem.write16(avail + 2, 1);
      notify();
      expect(statements(mon)).toContain('split.driver.4');
    }
  });
});

describe('monitor: the remaining new rules fire too', () => {
  it('NOTIFICATION_DATA with NOTIF_CONFIG_DATA: the low half is queue_notif_config_data (pci.driver.43)', () => {
    const feats = ALL | featureSet(F.NOTIFICATION_DATA, F.NOTIF_CONFIG_DATA);
    const s = pciSim('modern', feats);
    const c = common(s);
    c.start(feats);
    c.w(Common.QUEUE_SELECT, 2, 0);
    const off = c.r(Common.QUEUE_NOTIFY_OFF, 2) * 4;
    const data = c.r(Common.QUEUE_NOTIF_CONFIG_DATA, 2);
    c.notify(off, 4, data);
    expect(statements(s.mon)).toEqual([]);
    c.notify(off, 4, 0);
    expect(statements(s.mon)).toEqual(['pci.driver.43']);
  });
});
