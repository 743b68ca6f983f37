/**
 * Where a virtio-pci function keeps its structures, learnt the way a driver would from its
 * capability list, and the monitor's own side-effect-free reads through that layout: BAR
 * addresses, MSI-X enable, device config.
 *
 * Spec: Virtio Over PCI Bus / Virtio Structure PCI Capabilities; PCI-specific Initialization And
 * Device Operation / Used Buffer Notifications.
 * Statements: pci.device.11 (the first capability of a type is the one used), pci.device.64.
 */
import { PciCfg } from '../../device-models/machine/pci.ts';
import { Legacy, MODERN_DEVICE_ID_BASE, PciCap, VIRTIO_MSI_NO_VECTOR, VIRTIO_PCI_VENDOR_ID } from '../../spec-refs/abi/virtio-pci.ts';
import { Mmio } from '../../spec-refs/abi/virtio.ts';
import type { MonitorCore } from './core.ts';
import type { DevState, PciLayout } from './state.ts';

/** Device config read for judges (side-effect free, muted). */
export function config32(m: MonitorCore, d: DevState, o: number): number {
  if (d.kind === 'mmio') return m.peek(d, Mmio.CONFIG + o);
  const p = d.pci!;
  m.muted = true;
  try {
    if (d.version === 1 && p.legacyBar >= 0) {
      const base = barAddress(m, p, p.legacyBar);
      return m.machine.bus.pio.read(base.addr + (msixEnabled(m, d) ? Legacy.CONFIG_OFF_MSIX : Legacy.CONFIG_OFF) + o, 4) >>> 0;
    }
    if (!p.device) return 0;
    return m.machine.bus.mmio.read(barAddress(m, p, p.device.bar).addr + p.device.off + o, 4) >>> 0;
  } finally {
    m.muted = false;
  }
}

export function barAddress(m: MonitorCore, p: PciLayout, bar: number): { io: boolean; addr: number } {
  const lo = m.cfgPeek(p.cfg, PciCfg.BAR0 + 4 * bar, 4);
  if (lo & PciCfg.BAR_IO) return { io: true, addr: (lo & ~3) >>> 0 };
  const hi = (lo & 6) === PciCfg.BAR_MEM_64 && bar < 5 ? m.cfgPeek(p.cfg, PciCfg.BAR0 + 4 * bar + 4, 4) : 0;
  return { io: false, addr: ((lo & ~0xf) >>> 0) + hi * 0x1_0000_0000 };
}

export function msixEnabled(m: MonitorCore, d: DevState): boolean {
  const p = d.pci!;
  return p.msix !== 0 && (m.cfgPeek(p.cfg, p.msix + 2, 2) & 0x8000) !== 0;
}

/** With MSI-X on and no vector mapped for a queue, the device sends no used buffer notification for it (pci.device.64). */
export function pciQueueSilent(m: MonitorCore, d: DevState, index: number): boolean {
  return msixEnabled(m, d) && (d.queueVector.get(index) ?? VIRTIO_MSI_NO_VECTOR) === VIRTIO_MSI_NO_VECTOR;
}

/** The virtio-pci function at an ECAM address (vendor 0x1af4), its capabilities parsed once. */
export function pciDev(m: MonitorCore, cfg: number, dev: number, fn: number): DevState | undefined {
  const known = m.pciDevs.get(cfg);
  if (known) return known;
  if (m.cfgPeek(cfg, PciCfg.VENDOR_ID, 2) !== VIRTIO_PCI_VENDOR_ID) return undefined;
  const pciId = m.cfgPeek(cfg, PciCfg.DEVICE_ID, 2);
  const legacyId = pciId < MODERN_DEVICE_ID_BASE;
  const deviceId = legacyId ? m.cfgPeek(cfg, PciCfg.SUBSYS_ID, 2) : pciId - MODERN_DEVICE_ID_BASE;
  let common, notify, isr, device;
  let pciCfg = 0;
  let msix = 0;
  let at = m.cfgPeek(cfg, PciCfg.CAP_PTR, 1) & 0xfc;
  for (let n = 0; at >= 0x40 && n < 48; n++) {
    const id = m.cfgPeek(cfg, at, 1);
    if (id === PciCfg.CAP_ID_VNDR) {
      const type = m.cfgPeek(cfg, at + PciCap.OFF_CFG_TYPE, 1);
      const s = { bar: m.cfgPeek(cfg, at + PciCap.OFF_BAR, 1), off: m.cfgPeek(cfg, at + PciCap.OFF_OFFSET, 4), len: m.cfgPeek(cfg, at + PciCap.OFF_LENGTH, 4) };
      // the first capability of each type is the one a driver uses (pci.device.11)
      if (type === PciCap.COMMON_CFG) common ??= s;
      else if (type === PciCap.NOTIFY_CFG) notify ??= { ...s, mult: m.cfgPeek(cfg, at + PciCap.OFF_NOTIFY_MULT, 4) };
      else if (type === PciCap.ISR_CFG) isr ??= s;
      else if (type === PciCap.DEVICE_CFG) device ??= s;
      else if (type === PciCap.PCI_CFG && !pciCfg) pciCfg = at;
    } else if (id === PciCfg.CAP_ID_MSIX && !msix) msix = at;
    at = m.cfgPeek(cfg, at + 1, 1) & 0xfc;
  }
  const table = msix ? m.cfgPeek(cfg, msix + 4, 4) : 0;
  const pin = m.cfgPeek(cfg, PciCfg.INTERRUPT_PIN, 1);
  const vectors = new Set<number>();
  const info = m.machine.platform.pci;
  if (pin && info) vectors.add(info.intxVector(0, dev, fn, pin));
  const layout: PciLayout = {
    dev, fn, cfg, pciCfg, msix, msixBar: table & 7, msixOff: (table & ~7) >>> 0,
    legacyBar: legacyId ? 0 : -1,
    ...(common ? { common } : {}), ...(notify ? { notify } : {}), ...(isr ? { isr } : {}), ...(device ? { device } : {}),
  };
  const d: DevState = {
    pd: undefined, kind: 'pci', name: `virtio-pci 00:${dev.toString(16).padStart(2, '0')}.${fn}`, pci: layout, vectors,
    queueVector: new Map(), notifyOff: new Map(), notifyData: new Map(), pageSize: Legacy.PAGE,
    // PCI identification is in config space: the virtio-mmio probing rules do not apply
    readMagic: true, readVersion: true, readDeviceId: true, deviceId, version: undefined,
    status: 0, sawReset: false, failedSet: false, featuresRefused: false, featuresOkWritten: false, driverOk: false,
    devFeatSelWritten: true, drvFeatSelWritten: true, devFeatSel: 0, drvFeatSel: 0, offered: new Map(), accepted: new Map(),
    queueSel: 0, queues: new Map(), rings: new Map(), prings: new Map(),
    negotiated: { indirect: false, eventIdx: false, packed: false, notificationData: false, notifConfigData: false, inOrder: false },
    unacked: 0, irqsTotal: 0, irqsAtEnter: 0, irqsHandled: 0, irqsTaken: 0,
    coal: { tx: [0, 0], rx: [0, 0], vq: new Map() },
  };
  m.pciDevs.set(cfg, d);
  return d;
}

export function structureAt(d: DevState, bar: number, off: number, len: number): boolean {
  const p = d.pci!;
  for (const s of [p.common, p.notify, p.isr, p.device]) if (s && s.bar === bar && off >= s.off && off + len <= s.off + s.len) return true;
  return false;
}
