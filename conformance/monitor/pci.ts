/**
 * The virtio-pci transport: configuration-space accesses (0xCF8/0xCFC and ECAM) with the
 * PCI_CFG access window, BAR accesses resolved to their function, the common configuration
 * structure, the notify region and the legacy I/O register block.
 *
 * Spec: Virtio Over PCI Bus / PCI Device Layout (common configuration structure layout, PCI
 * configuration access capability), PCI-specific Initialization And Device Operation (Available
 * Buffer Notifications), Legacy Interfaces.
 * Statements: pci.driver.5, .15, .16, .17, .20, .29, .31, .38-43.
 */
import type { AccessSize, BusAccess } from '../../device-models/machine/bus.ts';
import { COMMON_FIELD_WIDTH, Common, Legacy, PciCap } from '../../spec-refs/abi/virtio-pci.ts';
import { Mmio } from '../../spec-refs/abi/virtio.ts';
import type { MonitorCore } from './core.ts';
import { queue, type DevState } from './state.ts';
import { barAddress, msixEnabled, pciDev, structureAt } from './pci-layout.ts';
import { onRead, onWrite } from './mmio.ts';
import { onStatusWrite } from './status.ts';
import { onConfig } from './device-config.ts';
import { legacyPfn, queueEnabled } from './split-ring.ts';
import { onNotify } from './notifications.ts';

export function onPciAccess(m: MonitorCore, a: BusAccess): void {
  const ecam = m.machine.platform.pci?.ecamBase;
  if (ecam === undefined) return;
  if (a.window === 'pci-cf8') {
    if (a.offset === 0 && a.size === 4) {
      if (a.kind === 'write') m.cf8 = a.value >>> 0;
      return;
    }
    if (a.offset < 4 || !(m.cf8 & 0x8000_0000) || ((m.cf8 >>> 16) & 0xff) !== 0) return;
    const dev = (m.cf8 >>> 11) & 0x1f;
    const fn = (m.cf8 >>> 8) & 7;
    onConfigSpace(m, ecam + ((dev << 15) | (fn << 12)), dev, fn, (m.cf8 & 0xfc) + a.offset - 4, a);
    return;
  }
  if (a.window === 'pci-ecam') {
    if (a.offset >>> 20 !== 0) return; // bus 0 only
    const dev = (a.offset >>> 15) & 0x1f;
    const fn = (a.offset >>> 12) & 7;
    onConfigSpace(m, ecam + ((dev << 15) | (fn << 12)), dev, fn, a.offset & 0xfff, a);
    return;
  }
  const w = pciWindow(m, a, ecam);
  if (!w) return;
  m.stats.accesses++;
  onBar(m, w.d, w.bar, a.offset, a.size, a.kind, a.value >>> 0);
}

/** Which function and BAR a virtio-pci window belongs to (found once per placement, from the BAR registers). */
function pciWindow(m: MonitorCore, a: BusAccess, ecam: number): { d: DevState; bar: number } | null {
  const base = a.addr - a.offset;
  const key = `${a.space}:${a.window}:${base}`;
  const hit = m.winCache.get(key);
  if (hit !== undefined) return hit;
  const match = /\.bar(\d)$/.exec(a.window);
  let found: { d: DevState; bar: number } | null = null;
  if (match) {
    const bar = Number(match[1]);
    for (let dev = 0; dev < 32 && !found; dev++) {
      for (let fn = 0; fn < 8 && !found; fn++) {
        const cfg = ecam + ((dev << 15) | (fn << 12));
        const d = pciDev(m, cfg, dev, fn);
        if (!d) continue;
        const b = barAddress(m, d.pci!, bar);
        if (b.addr === base && b.io === (a.space === 'pio')) found = { d, bar };
      }
    }
  }
  m.winCache.set(key, found);
  return found;
}

/** A configuration-space access: MSI-X enable changes nothing here; the PCI_CFG window is decoded as the BAR access it makes. */
function onConfigSpace(m: MonitorCore, cfg: number, dev: number, fn: number, reg: number, a: BusAccess): void {
  const d = m.pciDevs.get(cfg) ?? pciDev(m, cfg, dev, fn);
  if (!d) return;
  m.stats.accesses++;
  const C = d.pci!.pciCfg;
  if (!C) return;
  const D = C + PciCap.OFF_PCI_CFG_DATA;
  if (reg + a.size <= D || reg >= D + 4) return;
  const bar = m.cfgPeek(cfg, C + PciCap.OFF_BAR, 1);
  const off = m.cfgPeek(cfg, C + PciCap.OFF_OFFSET, 4);
  const len = m.cfgPeek(cfg, C + PciCap.OFF_LENGTH, 4);
  // pci.driver.29: cap.offset a multiple of cap.length (the window access is aligned)
  if (len !== 0 && off % len !== 0) {
    m.violate(d, 'pci.driver.29', 'driver', `pci_cfg_data ${a.kind} with cap.offset ${off} not a multiple of cap.length ${len}`, `a multiple of ${len}`, String(off));
    return;
  }
  // pci.driver.31: bar/offset/length must name 1, 2 or 4 bytes inside one of the function's BARs
  const inBar = bar <= 5 && (len === 1 || len === 2 || len === 4) && structureAt(d, bar, off, len);
  if (!inBar) {
    m.violate(d, 'pci.driver.31', 'driver', `pci_cfg_data ${a.kind} while the window does not address ${len} bytes of a BAR structure`, 'cap.bar 0..5 naming a virtio structure, cap.length 1, 2 or 4', `bar ${bar} offset 0x${off.toString(16)} length ${len}`);
    return;
  }
  if (reg !== D) return; // a partial data access: not decoded further
  const v = len === 4 ? a.value >>> 0 : (a.value >>> 0) & ((1 << (8 * len)) - 1);
  onBar(m, d, bar, off, len as AccessSize, a.kind, v);
}

function onBar(m: MonitorCore, d: DevState, bar: number, off: number, size: AccessSize, kind: 'read' | 'write', v: number): void {
  const p = d.pci!;
  if (bar === p.legacyBar && bar === 0 && barAddress(m, p, 0).io) {
    d.version = 1;
    onLegacyPci(m, d, off, size, kind, v);
    return;
  }
  if (p.msix && bar === p.msixBar && off >= p.msixOff && kind === 'write') {
    // MSI-X table entry: message data (offset 8) carries the vector the device will signal
    const e = off - p.msixOff;
    if (e % 16 === 8 && e < 16 * 2048) d.vectors.add(v & 0xff);
  }
  const inS = (s: { bar: number; off: number; len: number } | undefined): s is { bar: number; off: number; len: number } => !!s && s.bar === bar && off >= s.off && off < s.off + s.len;
  if (inS(p.common)) {
    d.version = 2;
    onCommon(m, d, off - p.common.off, size, kind, v);
  } else if (inS(p.notify) && kind === 'write') {
    d.version = 2;
    onPciNotify(m, d, off - p.notify.off, size, v);
  } else if (inS(p.device)) {
    d.version = 2;
    const o = off - p.device.off;
    if (size === 8 || o % size !== 0) m.violate(d, 'pci.driver.5', 'driver', `device config ${kind} of ${size} bytes at offset ${o}`, 'an aligned access of the field width', `${size} bytes at +${o}`);
    onConfig(m, d, { space: 'mmio', kind, addr: 0, size, value: v, window: '', offset: o }, o);
  }
}

/** struct virtio_pci_common_cfg. */
function onCommon(m: MonitorCore, d: DevState, off: number, size: AccessSize, kind: 'read' | 'write', v: number): void {
  const w = COMMON_FIELD_WIDTH[off];
  const ok = w !== undefined ? w === size || (w === 8 && size === 4) : COMMON_FIELD_WIDTH[off - 4] === 8 && size === 4;
  if (!ok) {
    // pci.driver.5: each field with an access of its own width (64-bit fields also as two 32-bit halves)
    m.violate(d, 'pci.driver.5', 'driver', `common config ${kind} of ${size} bytes at offset ${off}`, w !== undefined ? `${w} bytes` : 'a field offset', `${size} bytes`);
    return;
  }
  const sel = d.queueSel;
  if (kind === 'read') {
    switch (off) {
      case Common.DEVICE_FEATURE:
        onRead(m, d, Mmio.DEVICE_FEATURES, v);
        return;
      case Common.DEVICE_FEATURE_SELECT:
        return;
      case Common.DEVICE_STATUS:
        onRead(m, d, Mmio.STATUS, v);
        return;
      case Common.QUEUE_SIZE: {
        const q = queue(d, sel);
        if (!q.ready) q.size = v; // the device's maximum stays the size unless the driver writes one
        return;
      }
      case Common.QUEUE_NOTIFY_OFF:
        d.notifyOff.set(sel, v);
        return;
      case Common.QUEUE_NOTIF_CONFIG_DATA:
        d.notifyData.set(sel, v);
        return;
    }
    return;
  }
  switch (off) {
    case Common.DEVICE_FEATURE_SELECT:
      onWrite(m, d, Mmio.DEVICE_FEATURES_SEL, v);
      return;
    case Common.DRIVER_FEATURE_SELECT:
      onWrite(m, d, Mmio.DRIVER_FEATURES_SEL, v);
      return;
    case Common.DRIVER_FEATURE:
      onWrite(m, d, Mmio.DRIVER_FEATURES, v);
      return;
    case Common.DEVICE_STATUS:
      onStatusWrite(m, d, v & 0xff);
      return;
    case Common.CONFIG_MSIX_VECTOR:
      return;
    case Common.QUEUE_SELECT:
      d.queueSel = v & 0xffff;
      return;
    case Common.QUEUE_MSIX_VECTOR:
      d.queueVector.set(sel, v & 0xffff);
      return;
    case Common.QUEUE_SIZE: {
      // pci.driver.16: never 0; pci.driver.17: a power of two unless RING_PACKED was negotiated
      if (v === 0) m.violate(d, 'pci.driver.16', 'driver', `queue_size 0 written for queue ${sel}`, 'a non-zero size', '0');
      else if (!d.negotiated.packed && (v & (v - 1)) !== 0) m.violate(d, 'pci.driver.17', 'driver', `queue_size ${v} (not a power of two) for split queue ${sel}`, 'a power of two', String(v));
      const q = queue(d, sel);
      if (!q.ready) q.size = v & 0xffff;
      return;
    }
    case Common.QUEUE_ENABLE: {
      // pci.driver.20: the driver never writes 0 to queue_enable
      if ((v & 0xffff) === 0) {
        m.violate(d, 'pci.driver.20', 'driver', `0 written to queue_enable of queue ${sel}`, '1', '0');
        return;
      }
      const q = queue(d, sel);
      if (!q.ready) queueEnabled(m, d, sel, q);
      q.ready = true;
      return;
    }
    case Common.QUEUE_DESC:
    case Common.QUEUE_DESC + 4:
    case Common.QUEUE_DRIVER:
    case Common.QUEUE_DRIVER + 4:
    case Common.QUEUE_DEVICE:
    case Common.QUEUE_DEVICE + 4: {
      const q = queue(d, sel);
      if (q.ready) return;
      const key = off < Common.QUEUE_DRIVER ? 'desc' : off < Common.QUEUE_DEVICE ? 'driver' : 'device';
      const lo = q[key] % 0x1_0000_0000;
      const hi = Math.floor(q[key] / 0x1_0000_0000);
      q[key] = off % 8 === 4 ? lo + v * 0x1_0000_0000 : size === 8 ? v : hi * 0x1_0000_0000 + v;
      return;
    }
    case Common.QUEUE_RESET:
      if (v & 1) {
        queue(d, sel).ready = false;
        d.rings.delete(sel);
        d.prings.delete(sel);
      }
      return;
    case Common.DEVICE_FEATURE:
    case Common.NUM_QUEUES:
    case Common.CONFIG_GENERATION:
    case Common.QUEUE_NOTIFY_OFF:
    case Common.QUEUE_NOTIF_CONFIG_DATA:
      // pci.driver.15: these fields are the device's
      m.violate(d, 'pci.driver.15', 'driver', `write to read-only common config field at offset ${off}`, 'no write', `0x${v.toString(16)}`);
      return;
  }
}

/** A write to the notify region: the address names the queue, the value must too. */
function onPciNotify(m: MonitorCore, d: DevState, off: number, size: AccessSize, v: number): void {
  const mult = d.pci!.notify!.mult;
  let index = -1;
  if (mult === 0) index = d.negotiated.notifConfigData ? -1 : v & 0xffff;
  else for (const [q, no] of d.notifyOff) if (no * mult === off) index = q;
  if (index < 0 && mult !== 0 && off % mult === 0) index = off / mult;
  const nd = d.negotiated.notificationData;
  // pci.driver.38 / pci.driver.39: 16-bit notifications without NOTIFICATION_DATA, 32-bit with it
  if (size !== (nd ? 4 : 2)) m.violate(d, nd ? 'pci.driver.39' : 'pci.driver.38', 'driver', `notification of ${size} bytes`, `${nd ? 4 : 2} bytes`, `${size} bytes`);
  if (index >= 0) {
    const low = v & 0xffff;
    if (d.negotiated.notifConfigData) {
      const want = d.notifyData.get(index);
      // pci.driver.42 / pci.driver.43: the value the device gave in queue_notif_config_data
      if (want !== undefined && low !== want) m.violate(d, nd ? 'pci.driver.43' : 'pci.driver.42', 'driver', `notification for queue ${index} does not carry queue_notif_config_data`, `0x${want.toString(16)}`, `0x${low.toString(16)}`);
    } else if (low !== index) {
      // pci.driver.40 / pci.driver.41: the value (or vq_index) is the queue index
      m.violate(d, nd ? 'pci.driver.41' : 'pci.driver.40', 'driver', `notification at the address of queue ${index} names queue ${low}`, String(index), String(low));
    }
  }
  onNotify(m, d, index >= 0 ? index : v & 0xffff, v);
}

/** The legacy register block (I/O BAR0 of a transitional or legacy function). */
function onLegacyPci(m: MonitorCore, d: DevState, off: number, size: AccessSize, kind: 'read' | 'write', v: number): void {
  const cfgOff = msixEnabled(m, d) ? Legacy.CONFIG_OFF_MSIX : Legacy.CONFIG_OFF;
  if (off >= cfgOff) {
    onConfig(m, d, { space: 'pio', kind, addr: 0, size, value: v, window: '', offset: off - cfgOff }, off - cfgOff);
    return;
  }
  const sel = d.queueSel;
  if (kind === 'read') {
    if (off === Legacy.HOST_FEATURES) d.offered.set(0, v);
    else if (off === Legacy.STATUS) onRead(m, d, Mmio.STATUS, v);
    else if (off === Legacy.QUEUE_NUM) {
      const q = queue(d, sel);
      if (!q.ready) q.size = v;
    }
    return;
  }
  switch (off) {
    case Legacy.GUEST_FEATURES:
      d.drvFeatSel = 0;
      onWrite(m, d, Mmio.DRIVER_FEATURES, v);
      return;
    case Legacy.QUEUE_SEL:
      d.queueSel = v & 0xffff;
      return;
    case Legacy.QUEUE_PFN:
      legacyPfn(m, d, sel, v, Legacy.PAGE, Legacy.ALIGN);
      return;
    case Legacy.QUEUE_NOTIFY:
      onNotify(m, d, v & 0xffff);
      return;
    case Legacy.STATUS:
      onStatusWrite(m, d, v & 0xff);
      return;
    case Legacy.QUEUE_VECTOR:
      if (cfgOff === Legacy.CONFIG_OFF_MSIX) d.queueVector.set(sel, v & 0xffff);
      return;
  }
}
