/**
 * virtio-pci device transport (transport-pci.tex): a PCI function on the machine's host bridge
 * that decodes the virtio structures into calls on a VirtioCore and carries the core's interrupts
 * as MSI-X messages or INTx with the ISR status byte.
 *
 * Modes:
 * - modern: device id 0x1040 + type, revision 1, vendor capabilities COMMON / NOTIFY / ISR /
 *   DEVICE / PCI_CFG pointing into a 64-bit memory BAR (BAR4), MSI-X table and PBA in BAR1.
 * - transitional: a transitional device id (0x1000..0x103f), revision 0, subsystem id = device
 *   type, the modern capabilities AND the legacy register block in I/O BAR0. A modern driver uses
 *   the capabilities, a legacy driver BAR0; whichever interface the driver writes to drives the
 *   device (the other one is reset first).
 * - legacy: the legacy register block only (a pre-1.0 device).
 *
 * Never throws for guest input: wrong-width accesses, writes to read-only fields and other driver
 * errors are recorded (badAccesses, core.errors) and ignored; what the core cannot accept sets
 * DEVICE_NEEDS_RESET there.
 *
 * This file holds the modern interface: BAR4 with the common configuration (pci.device.14 to
 * .26, pci.driver.5, .15 to .20), ISR and device-specific regions, notifications (pci.device.29
 * to .39, pci.driver.38 to .43), the PCI_CFG window (pci.device.51 to .53, pci.driver.29, .31),
 * and attachVirtioPci with the vendor capabilities and ids (pci.device.2 to .13). VirtioPciDevice
 * is built in layers, one file per seam:
 *   pci-transport.ts  options, the cores and interface selection, ISR, MSI-X vectors, bad accesses
 *   pci-legacy.ts     the legacy register block in I/O BAR0
 */
import type { AccessSize, RegisterHandler } from '../machine/bus.ts';
import type { Machine } from '../machine/machine.ts';
import { pciHost, type PciFunction } from '../machine/pci.ts';
import { UsageError, hex } from '../../spec-refs/errors.ts';
import { F, hasFeature } from '../../spec-refs/abi/virtio.ts';
import {
  COMMON_FIELD_WIDTH,
  Common,
  Legacy,
  MODERN_DEVICE_ID_BASE,
  PciCap,
  TRANSITIONAL_DEVICE_ID,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI_VENDOR_ID,
} from '../../spec-refs/abi/virtio-pci.ts';
import type { VirtioCore } from './core.ts';
import type { VirtioDeviceModel } from './model.ts';
import { isPow2, type VirtioPciOptions } from './pci-transport.ts';
import { PciLegacyInterface } from './pci-legacy.ts';

export type { BadAccess, VirtioPciMode, VirtioPciOptions } from './pci-transport.ts';

/** Where the modern structures sit in BAR4 (as QEMU lays them out). */
export const ModernLayout = {
  BAR: 4,
  COMMON: 0x0000,
  ISR: 0x1000,
  DEVICE: 0x2000,
  NOTIFY: 0x3000,
  REGION: 0x1000,
  MSIX_BAR: 1,
  LEGACY_BAR: 0,
} as const;

function ceilPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

function classCodeFor(type: number): number {
  if (type === 1) return 0x020000; // network controller
  if (type === 2) return 0x010000; // mass storage (as QEMU's virtio-blk-pci)
  return 0xff0000;
}

/** A virtio-pci function: the modern interface on top of the legacy one and the shared state. */
export class VirtioPciDevice extends PciLegacyInterface {
  // ------------------------------------------------------------------ modern: BAR4

  /** The handler of BAR4 (also used by the PCI_CFG window). */
  readonly modernBar: RegisterHandler = {
    read: (off, size) => this.guard(() => this.modernRead(off, size), 'bar4', 'read', off, size),
    write: (off, size, v) => void this.guard(() => (this.modernWrite(off, size, v >>> 0), 0), 'bar4', 'write', off, size),
  };

  private modernRead(off: number, size: AccessSize): number {
    const L = ModernLayout;
    if (off >= L.COMMON && off < L.COMMON + L.REGION) return this.commonRead(off - L.COMMON, size);
    if (off >= L.ISR && off < L.ISR + L.REGION) {
      if (off !== L.ISR) return 0;
      return this.readIsr();
    }
    if (off >= L.DEVICE && off < L.DEVICE + L.REGION) return this.deviceCfgRead(off - L.DEVICE, size);
    if (off >= L.NOTIFY && off < L.NOTIFY + this.notifyLength) return 0;
    this.bad('bar4', 'read', off, size, 'read outside every virtio structure');
    return 0;
  }

  private modernWrite(off: number, size: AccessSize, v: number): void {
    const L = ModernLayout;
    if (off >= L.COMMON && off < L.COMMON + L.REGION) return this.commonWrite(off - L.COMMON, size, v);
    if (off >= L.DEVICE && off < L.DEVICE + L.REGION) return this.deviceCfgWrite(off - L.DEVICE, size, v);
    if (off >= L.NOTIFY && off < L.NOTIFY + this.notifyLength) return this.notifyWrite(off - L.NOTIFY, size, v);
    this.bad('bar4', 'write', off, size, off >= L.ISR && off < L.ISR + L.REGION ? 'ISR status is read-only' : 'write outside every virtio structure');
  }

  /** Check a common-config access width (pci.driver.5; 64-bit fields may be accessed as two halves, pci.device.8). */
  private commonWidthOk(off: number, size: number): boolean {
    const w = COMMON_FIELD_WIDTH[off];
    if (w !== undefined) return w === size || (w === 8 && size === 4);
    const base = off - 4;
    return COMMON_FIELD_WIDTH[base] === 8 && size === 4;
  }

  private commonRead(off: number, size: AccessSize): number {
    const core = this.modern!;
    if (!this.commonWidthOk(off, size)) {
      this.bad('common', 'read', off, size, off >= Common.SIZE ? 'beyond virtio_pci_common_cfg' : 'wrong access width (pci.driver.5)');
      return 0;
    }
    const q = core.queueConfig(this.queueSel);
    const hi = (x: number): number => Math.floor(x / 0x1_0000_0000) >>> 0;
    const lo = (x: number): number => x % 0x1_0000_0000 >>> 0;
    switch (off) {
      case Common.DEVICE_FEATURE_SELECT:
        return this.deviceFeatureSel;
      case Common.DEVICE_FEATURE:
        return core.deviceFeatureWord(this.deviceFeatureSel); // pci.device.14
      case Common.DRIVER_FEATURE_SELECT:
        return this.driverFeatureSel;
      case Common.DRIVER_FEATURE:
        return core.driverFeatureWord(this.driverFeatureSel); // pci.device.15
      case Common.CONFIG_MSIX_VECTOR:
        return this.configVector; // pci.device.60
      case Common.NUM_QUEUES:
        return core.numQueues;
      case Common.DEVICE_STATUS:
        return this.active === core ? core.status : 0;
      case Common.CONFIG_GENERATION:
        return core.generation & 0xff;
      case Common.QUEUE_SELECT:
        return this.queueSel;
      case Common.QUEUE_SIZE: {
        if (!q) return 0; // pci.device.25
        // pci.device.26: without RING_PACKED only 0 or a power of two is presented
        if (!hasFeature(core.features, F.RING_PACKED) && !isPow2(q.size) && q.size !== 0) return 1 << Math.floor(Math.log2(q.size));
        return q.size;
      }
      case Common.QUEUE_MSIX_VECTOR:
        return q ? this.queueVectors[q.index]! : VIRTIO_MSI_NO_VECTOR;
      case Common.QUEUE_ENABLE:
        return q?.ready ? 1 : 0; // pci.device.19
      case Common.QUEUE_NOTIFY_OFF:
        return q ? q.index : 0;
      case Common.QUEUE_DESC:
        return q ? lo(q.desc) : 0;
      case Common.QUEUE_DESC + 4:
        return q ? hi(q.desc) : 0;
      case Common.QUEUE_DRIVER:
        return q ? lo(q.driver) : 0;
      case Common.QUEUE_DRIVER + 4:
        return q ? hi(q.driver) : 0;
      case Common.QUEUE_DEVICE:
        return q ? lo(q.device) : 0;
      case Common.QUEUE_DEVICE + 4:
        return q ? hi(q.device) : 0;
      case Common.QUEUE_NOTIF_CONFIG_DATA:
        return q && hasFeature(core.deviceFeatures, F.NOTIF_CONFIG_DATA) ? notifConfigData(q.index) : 0;
      case Common.QUEUE_RESET:
        // pci.device.20 to pci.device.24: 1 only while a reset is in progress (ours completes at once)
        return q?.resetting ? 1 : 0;
      case Common.ADMIN_QUEUE_INDEX:
        return core.numQueues; // no admin queues: ADMIN_VQ is never offered
      case Common.ADMIN_QUEUE_NUM:
        return 0;
      default:
        return 0;
    }
  }

  private commonWrite(off: number, size: AccessSize, v: number): void {
    const core = this.modern!;
    if (!this.commonWidthOk(off, size)) {
      this.bad('common', 'write', off, size, off >= Common.SIZE ? 'beyond virtio_pci_common_cfg' : 'wrong access width (pci.driver.5)');
      return;
    }
    const sel = this.queueSel;
    const q = core.queueConfig(sel);
    switch (off) {
      case Common.DEVICE_FEATURE_SELECT:
        this.deviceFeatureSel = v;
        return;
      case Common.DRIVER_FEATURE_SELECT:
        this.driverFeatureSel = v;
        return;
      case Common.DRIVER_FEATURE:
        this.use(core);
        core.writeDriverFeatureWord(this.driverFeatureSel, v);
        return;
      case Common.CONFIG_MSIX_VECTOR:
        this.configVector = this.mapVector(v & 0xffff);
        return;
      case Common.DEVICE_STATUS:
        this.use(core);
        core.writeStatus(v & 0xff); // 0 resets: pci.device.18
        return;
      case Common.QUEUE_SELECT:
        this.queueSel = v & 0xffff;
        return;
      case Common.QUEUE_SIZE:
        this.use(core);
        // the core refuses it while the queue is enabled; packed size 0 / split non-power-of-two
        // are refused when the queue is enabled (pci.driver.16, pci.driver.17)
        core.setQueueSize(sel, v & 0xffff);
        return;
      case Common.QUEUE_MSIX_VECTOR:
        if (q) this.queueVectors[sel] = this.mapVector(v & 0xffff);
        return;
      case Common.QUEUE_ENABLE:
        this.use(core);
        if ((v & 0xffff) === 0) {
          // pci.driver.20: a driver never writes 0 (queue_reset stops a queue)
          this.driverError(core, 'pci.queue_enable_0', 'driver wrote 0 to queue_enable', ['pci.driver.20'], `queue ${sel}`);
          return;
        }
        core.setQueueReady(sel, true);
        return;
      case Common.QUEUE_DESC:
      case Common.QUEUE_DESC + 4:
      case Common.QUEUE_DRIVER:
      case Common.QUEUE_DRIVER + 4:
      case Common.QUEUE_DEVICE:
      case Common.QUEUE_DEVICE + 4: {
        this.use(core);
        const area = off < Common.QUEUE_DRIVER ? 'desc' : off < Common.QUEUE_DEVICE ? 'driver' : 'device';
        core.setQueueAreaHalf(sel, area, off % 8 === 4, v >>> 0);
        return;
      }
      case Common.QUEUE_RESET:
        if (!hasFeature(core.features, F.RING_RESET)) {
          this.driverError(core, 'pci.queue_reset_unneg', 'queue_reset written without VIRTIO_F_RING_RESET', [], `queue ${sel}`);
          return;
        }
        if ((v & 1) && q) {
          core.resetQueue(sel); // vq_reset.device.1, vq_reset.device.2, pci.device.22
          this.queueVectors[sel] = VIRTIO_MSI_NO_VECTOR;
        }
        return;
      default:
        // pci.driver.15: device_feature, num_queues, config_generation, queue_notify_off, queue_notif_config_data
        this.driverError(core, 'pci.ro_write', `driver wrote read-only common config field at ${hex(off)}`, ['pci.driver.15'], hex(v));
    }
  }

  private deviceCfgRead(off: number, size: AccessSize): number {
    const core = this.modern!;
    if (size === 8 || off % size !== 0) {
      this.bad('device', 'read', off, size, 'device config read must be 8/16/32-bit and aligned (pci.driver.5)');
      return 0;
    }
    return core.readConfig(off, size);
  }

  private deviceCfgWrite(off: number, size: AccessSize, v: number): void {
    const core = this.modern!;
    if (size === 8 || off % size !== 0) {
      this.bad('device', 'write', off, size, 'device config write must be 8/16/32-bit and aligned (pci.driver.5)');
      return;
    }
    core.writeConfig(off, size, v);
  }

  /** Queue Notify: the address names the queue; the value is checked against what the spec asks of the driver. */
  private notifyWrite(off: number, size: AccessSize, v: number): void {
    const core = this.modern!;
    const mult = this.notifyOffMultiplier;
    const cfgData = hasFeature(core.features, F.NOTIF_CONFIG_DATA);
    const low = v & 0xffff;
    let index: number;
    if (mult === 0) {
      index = cfgData ? notifIndexOf(low) : low;
    } else {
      if (off % mult !== 0) {
        this.bad('notify', 'write', off, size, 'notification between queue notify addresses');
        return;
      }
      index = off / mult;
    }
    const nd = hasFeature(core.features, F.NOTIFICATION_DATA);
    // pci.driver.38 / pci.driver.39: 16-bit without NOTIFICATION_DATA, 32-bit with it
    if (size !== (nd ? 4 : 2)) this.driverError(core, 'pci.notify_width', `notification of ${size} bytes`, [nd ? 'pci.driver.39' : 'pci.driver.38'], `expected ${nd ? 4 : 2}`);
    // pci.driver.40 to pci.driver.43: the queue index, or queue_notif_config_data
    const expected = cfgData ? notifConfigData(index) : index;
    if (low !== expected) this.driverError(core, 'pci.notify_value', 'notification value does not name the queue', cfgData ? ['pci.driver.42', 'pci.driver.43'] : ['pci.driver.40', 'pci.driver.41'], `${hex(low)}, expected ${hex(expected)}`);
    this.stats.notifies++;
    core.notify(index);
  }

  // ------------------------------------------------------------------ PCI_CFG window

  /** Install the PCI_CFG access window's side effects (pci.device.52, pci.device.53). */
  pciCfgHook(capOffset: number): { read(offset: number, size: 1 | 2 | 4): number | undefined; write(offset: number, size: 1 | 2 | 4, value: number): void } {
    const C = capOffset;
    const D = C + PciCap.OFF_PCI_CFG_DATA;
    const window = (): { bar: number; off: number; len: number } | null => {
      const cfg = this.fn.cfg;
      const dv = new DataView(cfg.buffer);
      const bar = cfg[C + PciCap.OFF_BAR]!;
      const off = dv.getUint32(C + PciCap.OFF_OFFSET, true);
      const len = dv.getUint32(C + PciCap.OFF_LENGTH, true);
      // pci.driver.29 / pci.driver.31: an aligned 1/2/4-byte access inside a virtio structure of BAR4
      if (bar !== ModernLayout.BAR || (len !== 1 && len !== 2 && len !== 4) || off % len !== 0 || off + len > this.fn.barSize(ModernLayout.BAR)) {
        this.driverError(this.core, 'pci.cfg_window', 'PCI_CFG window does not address a virtio structure', ['pci.driver.29', 'pci.driver.31'], `bar ${bar} offset ${hex(off)} length ${len}`);
        return null;
      }
      return { bar, off, len };
    };
    return {
      read: (offset, size) => {
        if (offset + size <= D || offset >= D + 4) return undefined;
        const w = window();
        if (!w) return undefined;
        const v = this.modernBar.read(w.off, w.len as AccessSize);
        for (let i = 0; i < w.len; i++) this.fn.cfg[D + i] = (v >>> (8 * i)) & 0xff;
        return undefined; // the stored bytes are read back
      },
      write: (offset, size) => {
        if (offset + size <= D || offset >= D + 4) return;
        const w = window();
        if (!w) return;
        const dv = new DataView(this.fn.cfg.buffer);
        const v = w.len === 1 ? this.fn.cfg[D]! : w.len === 2 ? dv.getUint16(D, true) : dv.getUint32(D, true);
        this.modernBar.write(w.off, w.len as AccessSize, v);
      },
    };
  }
}

/** The value a queue's notifications carry with NOTIF_CONFIG_DATA (device-chosen; here not the index, to catch drivers that send the index). */
export function notifConfigData(index: number): number {
  return (index + 0x4000) & 0xffff;
}

function notifIndexOf(data: number): number {
  return (data - 0x4000) & 0xffff;
}

export interface AttachedPci {
  readonly transport: VirtioPciDevice;
  /** The modern core (modern, transitional), else the legacy one. */
  readonly core: VirtioCore;
  readonly fn: PciFunction;
}

/** Put `model` on the machine's PCI bus as a virtio-pci function. */
export function attachVirtioPci(machine: Machine, model: VirtioDeviceModel, opts: VirtioPciOptions = {}): AttachedPci {
  const mode = opts.mode ?? 'modern';
  const type = model.deviceType;
  const transitionalId = TRANSITIONAL_DEVICE_ID[type];
  if (mode !== 'modern' && transitionalId === undefined) {
    throw new UsageError('pci.no_transitional_id', `device type ${type} has no transitional PCI device id, so it cannot be ${mode}`, { statements: ['pci.device.3'], expected: `one of ${Object.keys(TRANSITIONAL_DEVICE_ID).join(', ')}`, seen: String(type) });
  }
  const dev = new VirtioPciDevice(model, machine, opts);
  const bars: { index: number; kind: 'io' | 'mem32' | 'mem64'; size: number; prefetchable?: boolean; handler?: RegisterHandler }[] = [];
  if (mode !== 'modern') bars.push({ index: ModernLayout.LEGACY_BAR, kind: 'io', size: ceilPow2(Legacy.CONFIG_OFF_MSIX + model.configSize), handler: dev.legacyBar });
  const n = dev.msixVectors;
  const pbaOffset = Math.max(0x800, Math.ceil((n * 16) / 0x800) * 0x800);
  if (n > 0) bars.push({ index: ModernLayout.MSIX_BAR, kind: 'mem32', size: Math.max(0x1000, ceilPow2(pbaOffset + Math.ceil(n / 64) * 8)) });
  if (mode !== 'legacy') bars.push({ index: ModernLayout.BAR, kind: 'mem64', size: ceilPow2(ModernLayout.NOTIFY + dev.notifyLength), prefetchable: true, handler: dev.modernBar });
  const fn = pciHost(machine).addFunction({
    name: `virtio-pci:${model.name}`,
    vendorId: VIRTIO_PCI_VENDOR_ID, // pci.device.2
    deviceId: mode === 'modern' ? MODERN_DEVICE_ID_BASE + type : transitionalId!, // pci.device.3
    revision: mode === 'modern' ? 1 : 0, // pci.device.6; transitional devices have revision 0
    classCode: classCodeFor(type),
    subsystemVendorId: VIRTIO_PCI_VENDOR_ID,
    subsystemId: mode === 'modern' ? 0x1100 : type, // pci.device.7; transitional: the virtio device type
    interruptPin: 1,
    bars,
    msix: n > 0 ? { vectors: n, tableBar: ModernLayout.MSIX_BAR, tableOffset: 0, pbaBar: ModernLayout.MSIX_BAR, pbaOffset } : undefined,
    device: opts.device,
  });
  dev.fn = fn;
  if (mode !== 'legacy') {
    const cap = (cfgType: number, offset: number, length: number, extra = 0): Uint8Array => {
      // pci.device.9: cap_len covers the whole structure including its extra field
      const b = new Uint8Array(PciCap.CAP_LEN + extra);
      const v = new DataView(b.buffer);
      b[2] = b.length;
      b[PciCap.OFF_CFG_TYPE] = cfgType;
      b[PciCap.OFF_BAR] = cfgType === PciCap.PCI_CFG ? 0 : ModernLayout.BAR;
      v.setUint32(PciCap.OFF_OFFSET, offset, true);
      v.setUint32(PciCap.OFF_LENGTH, length, true);
      return b;
    };
    // Order of preference: one of each type (pci.device.11 applies to duplicates only).
    fn.addCapability(0x09, cap(PciCap.COMMON_CFG, ModernLayout.COMMON, Common.SIZE)); // pci.device.12, pci.device.13
    const notify = cap(PciCap.NOTIFY_CFG, ModernLayout.NOTIFY, dev.notifyLength, 4); // pci.device.29..39
    new DataView(notify.buffer).setUint32(PciCap.OFF_NOTIFY_MULT, dev.notifyOffMultiplier, true);
    fn.addCapability(0x09, notify);
    fn.addCapability(0x09, cap(PciCap.ISR_CFG, ModernLayout.ISR, 1)); // pci.device.40
    if (model.configSize > 0) fn.addCapability(0x09, cap(PciCap.DEVICE_CFG, ModernLayout.DEVICE, model.configSize)); // pci.device.45
    // pci.device.51: the PCI configuration access capability; bar, offset, length and data are the driver's
    let window: ReturnType<VirtioPciDevice['pciCfgHook']> | undefined;
    const capOffset = fn.addCapability(0x09, cap(PciCap.PCI_CFG, 0, 0, 4), {
      writable: [[PciCap.OFF_BAR, PciCap.OFF_BAR + 1], [PciCap.OFF_OFFSET, PciCap.OFF_PCI_CFG_DATA + 4]],
      hook: { read: (o, s) => window?.read(o, s), write: (o, s, v) => window?.write(o, s, v) },
    });
    window = dev.pciCfgHook(capOffset);
    dev.pciCfgCap = capOffset;
  }
  return { transport: dev, core: dev.core, fn };
}
