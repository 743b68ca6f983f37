/**
 * The virtio-mmio register interface (version 2 and legacy version 1): each register's access
 * kind and width, the probing order, and what each driver write means for the monitor's state.
 * virtio-pci maps its common cfg and legacy I/O block onto onRead/onWrite here.
 *
 * Spec: Virtio Over MMIO / MMIO Device Register Layout, MMIO-specific Initialization And Device
 * Operation, Legacy interface.
 * Statements: mmio.driver.1-4, .12-15, .20, .24, .25, .27, .28; mmio.device.1, .2; features.device.6.
 */
import type { BusAccess } from '../../device-models/machine/bus.ts';
import { Mmio } from '../../spec-refs/abi/virtio.ts';
import type { MonitorCore } from './core.ts';
import { queue, type DevState } from './state.ts';
import { negotiatedOf, onStatusRead, onStatusWrite } from './status.ts';
import { legacyPfn, queueEnabled } from './split-ring.ts';
import { onNotify } from './notifications.ts';


/** Register access kinds of the virtio-mmio version 2 table (mmio-registers.tsv). */
const REG_ACCESS: ReadonlyMap<number, 'R' | 'W' | 'RW'> = new Map<number, 'R' | 'W' | 'RW'>([
  [Mmio.MAGIC_VALUE, 'R'],
  [Mmio.VERSION, 'R'],
  [Mmio.DEVICE_ID, 'R'],
  [Mmio.VENDOR_ID, 'R'],
  [Mmio.DEVICE_FEATURES, 'R'],
  [Mmio.DEVICE_FEATURES_SEL, 'W'],
  [Mmio.DRIVER_FEATURES, 'W'],
  [Mmio.DRIVER_FEATURES_SEL, 'W'],
  [Mmio.QUEUE_SEL, 'W'],
  [Mmio.QUEUE_NUM_MAX, 'R'],
  [Mmio.QUEUE_NUM, 'W'],
  [Mmio.QUEUE_READY, 'RW'],
  [Mmio.QUEUE_NOTIFY, 'W'],
  [Mmio.INTERRUPT_STATUS, 'R'],
  [Mmio.INTERRUPT_ACK, 'W'],
  [Mmio.STATUS, 'RW'],
  [Mmio.QUEUE_DESC_LOW, 'W'],
  [Mmio.QUEUE_DESC_HIGH, 'W'],
  [Mmio.QUEUE_DRIVER_LOW, 'W'],
  [Mmio.QUEUE_DRIVER_HIGH, 'W'],
  [Mmio.QUEUE_DEVICE_LOW, 'W'],
  [Mmio.QUEUE_DEVICE_HIGH, 'W'],
  [Mmio.SHM_SEL, 'W'],
  [Mmio.SHM_LEN_LOW, 'R'],
  [Mmio.SHM_LEN_HIGH, 'R'],
  [Mmio.SHM_BASE_LOW, 'R'],
  [Mmio.SHM_BASE_HIGH, 'R'],
  [Mmio.QUEUE_RESET, 'RW'],
  [Mmio.CONFIG_GENERATION, 'R'],
]);
const LEGACY_ONLY = new Set<number>([Mmio.GUEST_PAGE_SIZE, Mmio.QUEUE_ALIGN, Mmio.QUEUE_PFN]);
const SHM_REGS = new Set<number>([Mmio.SHM_SEL, Mmio.SHM_LEN_LOW, Mmio.SHM_LEN_HIGH, Mmio.SHM_BASE_LOW, Mmio.SHM_BASE_HIGH]);

export function mmioDev(m: MonitorCore, addr: number): DevState | undefined {
  for (const [base, d] of m.devs) if (addr >= base && addr < base + d.pd!.size) return d;
  for (const pd of m.machine.platform.devices()) {
    if (pd.kind === 'virtio-mmio' && addr >= pd.base && addr < pd.base + pd.size) {
      const d: DevState = {
        pd,
        kind: 'mmio',
        name: pd.name,
        vectors: new Set([pd.vector]),
        queueVector: new Map(),
        notifyOff: new Map(),
        notifyData: new Map(),
        pageSize: 4096,
        readMagic: false,
        readVersion: false,
        readDeviceId: false,
        deviceId: undefined,
        version: undefined,
        status: 0,
        sawReset: false,
        failedSet: false,
        featuresRefused: false,
        featuresOkWritten: false,
        driverOk: false,
        devFeatSelWritten: false,
        drvFeatSelWritten: false,
        devFeatSel: 0,
        drvFeatSel: 0,
        offered: new Map(),
        accepted: new Map(),
        queueSel: 0,
        queues: new Map(),
        rings: new Map(),
        prings: new Map(),
        negotiated: { indirect: false, eventIdx: false, packed: false, notificationData: false, notifConfigData: false, inOrder: false },
        unacked: 0,
        irqsTotal: 0,
        irqsAtEnter: 0,
        irqsHandled: 0,
        irqsTaken: 0,
        coal: { tx: [0, 0], rx: [0, 0], vq: new Map() },
      };
      m.devs.set(pd.base, d);
      return d;
    }
  }
  return undefined;
}

export function onRegister(m: MonitorCore, d: DevState, a: BusAccess, off: number): void {
  const v = a.value >>> 0;
  if (a.size !== 4 || off % 4 !== 0) {
    m.violate(d, 'mmio.driver.4', 'driver', `control register ${a.kind} of ${a.size} bytes at 0x${off.toString(16)}`, 'aligned 32-bit accesses', `${a.size} bytes at 0x${off.toString(16)}`);
    return;
  }
  const legacy = d.version === 1;
  const acc = REG_ACCESS.get(off);
  if (acc === undefined && !(legacy && LEGACY_ONLY.has(off))) {
    m.violate(d, 'mmio.driver.1', 'driver', `${a.kind} of undefined register offset 0x${off.toString(16)}`);
    return;
  }
  if (acc === 'R' && a.kind === 'write') m.violate(d, 'mmio.driver.2', 'driver', `write to read-only register 0x${off.toString(16)}`, 'no write', `0x${v.toString(16)}`);
  if (acc === 'W' && a.kind === 'read') m.violate(d, 'mmio.driver.3', 'driver', `read of write-only register 0x${off.toString(16)}`);
  if (SHM_REGS.has(off)) m.violate(d, 'mmio.driver.28', 'driver', `access to shared memory register 0x${off.toString(16)} on a device without shared memory`);
  if (d.deviceId === 0 && off !== Mmio.DEVICE_ID && off !== Mmio.MAGIC_VALUE && off !== Mmio.VERSION) {
    m.violate(d, 'mmio.driver.27', 'driver', `access to register 0x${off.toString(16)} of a device whose DeviceID is 0`);
  }
  if (a.kind === 'write' && !(d.readMagic && d.readVersion)) {
    m.violate(d, 'mmio.driver.24', 'driver', `write to 0x${off.toString(16)} before reading and checking MagicValue and Version`);
    d.readMagic = d.readVersion = true; // report once
  } else if (a.kind === 'write' && !d.readDeviceId) {
    m.violate(d, 'mmio.driver.25', 'driver', `write to 0x${off.toString(16)} before reading DeviceID`);
    d.readDeviceId = true;
  }
  if (a.kind === 'read') onRead(m, d, off, v);
  else onWrite(m, d, off, v);
}

export function onRead(m: MonitorCore, d: DevState, off: number, v: number): void {
  switch (off) {
    case Mmio.MAGIC_VALUE:
      d.readMagic = true;
      if (v !== Mmio.MAGIC) m.violate(d, 'mmio.device.1', 'device', 'MagicValue is wrong', '0x74726976', `0x${v.toString(16)}`);
      break;
    case Mmio.VERSION:
      d.readVersion = true;
      d.version = v;
      if (v !== 2 && v !== 1) m.violate(d, 'mmio.device.2', 'device', 'Version is neither 2 nor legacy 1', '0x2', `0x${v.toString(16)}`);
      break;
    case Mmio.DEVICE_ID:
      d.readDeviceId = true;
      d.deviceId = v;
      break;
    case Mmio.DEVICE_FEATURES:
      if (d.kind === 'mmio' && !d.devFeatSelWritten) {
        m.violate(d, 'mmio.driver.12', 'driver', 'DeviceFeatures read before DeviceFeaturesSel was written');
        d.devFeatSelWritten = true;
      }
      d.offered.set(d.devFeatSel, v);
      if (d.devFeatSel === 1 && d.version === 2 && !(v & 1)) m.violate(d, 'features.device.6', 'device', 'device does not offer VIRTIO_F_VERSION_1', 'bit 32 set', `word 1 = 0x${v.toString(16)}`);
      break;
    case Mmio.STATUS:
      onStatusRead(m, d, v);
      break;
    case Mmio.INTERRUPT_STATUS:
      d.unacked |= v & 3;
      d.irqsHandled = d.irqsTotal;
      break;
  }
}

export function onWrite(m: MonitorCore, d: DevState, off: number, v: number): void {
  switch (off) {
    case Mmio.DEVICE_FEATURES_SEL:
      d.devFeatSelWritten = true;
      d.devFeatSel = v;
      break;
    case Mmio.DRIVER_FEATURES_SEL:
      d.drvFeatSelWritten = true;
      d.drvFeatSel = v;
      break;
    case Mmio.DRIVER_FEATURES:
      if (d.kind === 'mmio' && !d.drvFeatSelWritten) {
        m.violate(d, 'mmio.driver.13', 'driver', 'DriverFeatures written before DriverFeaturesSel');
        d.drvFeatSelWritten = true;
      }
      if (d.featuresOkWritten && !d.featuresRefused) m.violate(d, 'status_init.driver.9', 'driver', 'driver wrote DriverFeatures after setting FEATURES_OK', 'no feature writes after FEATURES_OK', `word ${d.drvFeatSel} = 0x${v.toString(16)}`);
      d.accepted.set(d.drvFeatSel, v);
      if (d.version === 1) d.negotiated = negotiatedOf(d, true);
      break;
    case Mmio.GUEST_PAGE_SIZE:
      if (d.version === 1) d.pageSize = v;
      break;
    case Mmio.QUEUE_ALIGN:
      if (d.version === 1) queue(d, d.queueSel).align = v;
      break;
    case Mmio.QUEUE_PFN:
      if (d.version === 1) legacyPfn(m, d, d.queueSel, v, d.pageSize, queue(d, d.queueSel).align);
      break;
    case Mmio.STATUS:
      onStatusWrite(m, d, v & 0xff);
      break;
    case Mmio.QUEUE_SEL:
      d.queueSel = v;
      break;
    case Mmio.QUEUE_NUM: {
      const q = queue(d, d.queueSel);
      if (q.ready) m.violate(d, 'mmio.driver.15', 'driver', `QueueSize of queue ${d.queueSel} written while QueueReady is 1`);
      const max = m.peek(d, Mmio.QUEUE_NUM_MAX);
      if (v > max) m.violate(d, 'mmio.driver.14', 'driver', `QueueSize above QueueSizeMax for queue ${d.queueSel}`, `<= ${max}`, String(v));
      if (!q.ready) q.size = v;
      break;
    }
    case Mmio.QUEUE_DESC_LOW:
    case Mmio.QUEUE_DESC_HIGH:
    case Mmio.QUEUE_DRIVER_LOW:
    case Mmio.QUEUE_DRIVER_HIGH:
    case Mmio.QUEUE_DEVICE_LOW:
    case Mmio.QUEUE_DEVICE_HIGH: {
      const q = queue(d, d.queueSel);
      if (q.ready) {
        m.violate(d, 'mmio.driver.15', 'driver', `queue ${d.queueSel} address register 0x${off.toString(16)} written while QueueReady is 1`);
        break;
      }
      const key = off < Mmio.QUEUE_DRIVER_LOW ? 'desc' : off < Mmio.QUEUE_DEVICE_LOW ? 'driver' : 'device';
      const high = (off & 4) !== 0;
      const lo = q[key] % 0x1_0000_0000;
      const hi = Math.floor(q[key] / 0x1_0000_0000);
      q[key] = high ? lo + v * 0x1_0000_0000 : hi * 0x1_0000_0000 + v;
      break;
    }
    case Mmio.QUEUE_READY: {
      const q = queue(d, d.queueSel);
      const ready = (v & 1) === 1;
      if (ready && !q.ready) queueEnabled(m, d, d.queueSel, q);
      if (!ready) {
        d.rings.delete(d.queueSel);
        d.prings.delete(d.queueSel);
      }
      q.ready = ready;
      break;
    }
    case Mmio.QUEUE_NOTIFY:
      onNotify(m, d, v & 0xffff, v);
      break;
    case Mmio.QUEUE_RESET:
      // VIRTIO_F_RING_RESET: writing 1 resets the selected queue (it is no longer ready and may be set up again)
      if (v & 1) {
        queue(d, d.queueSel).ready = false;
        d.rings.delete(d.queueSel);
        d.prings.delete(d.queueSel);
      }
      break;
    case Mmio.INTERRUPT_ACK:
      if (v & ~3) m.violate(d, 'mmio.driver.20', 'driver', 'InterruptACK with undefined bits', 'bits 0..1 only', `0x${v.toString(16)}`);
      d.unacked &= ~v;
      break;
  }
}
