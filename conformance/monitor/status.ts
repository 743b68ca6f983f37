/**
 * Device status and feature negotiation, on any transport: the order of the status bits, what
 * the driver may accept, and what a device must refuse.
 *
 * Spec: Device Status Field; Feature Bits; Device Initialization.
 * Statements: status_init.driver.2, .3, .6, .9, .11; status_init.device.4 (with mmio.device.5);
 * features.driver.1, .5, .9, .18; features.device.3.
 */
import { BlkF, F, Mmio, NetF, Status, DeviceType, statusNames } from '../../spec-refs/abi/virtio.ts';
import { NetFx } from '../../spec-refs/abi/net.ts';
import type { MonitorCore } from './core.ts';
import type { DevState } from './state.ts';

const DRIVER_BITS = Status.ACKNOWLEDGE | Status.DRIVER | Status.DRIVER_OK | Status.FEATURES_OK | Status.FAILED;

/** Feature bits the spec defines, per device type: accepting anything else breaks features.driver.5. */
function definedBits(deviceType: number): Set<number> {
  const s = new Set<number>(Object.values(F));
  const dev = deviceType === DeviceType.BLOCK ? BlkF : deviceType === DeviceType.NET ? NetF : undefined;
  if (dev) for (const b of Object.values(dev)) s.add(b);
  // virtio-net bits above 63 (UDP-tunnel GSO, RSS_CONTEXT, OUT_NET_HEADER, IPSEC) live in spec-refs/abi/net.ts.
  if (deviceType === DeviceType.NET) for (const b of Object.values(NetFx)) s.add(b);
  // blk: bits 0 (BARRIER), 7 (SCSI) are legacy-only and not in BlkF; they are not defined for 1.x either.
  return s;
}

/** The driver read the device status: a device that cleared FEATURES_OK refused the features. */
export function onStatusRead(m: MonitorCore, d: DevState, v: number): void {
  const prevWritten = d.featuresOkWritten;
  if (prevWritten && !(v & Status.FEATURES_OK) && !(d.status & Status.DRIVER_OK) && v !== 0) d.featuresRefused = true;
  if (prevWritten && (v & Status.FEATURES_OK) && offeredViolation(d) !== undefined) {
    m.violate(d, 'features.device.3', 'device', 'device kept FEATURES_OK although the driver accepted features it did not offer', 'FEATURES_OK clear', statusNames(v));
  }
  if (v !== 0 || d.sawReset) d.status = v & DRIVER_BITS;
}

/** The first accepted feature word that has bits the device did not offer, described; or undefined. */
function offeredViolation(d: DevState): string | undefined {
  for (const [sel, word] of d.accepted) {
    const off = d.offered.get(sel);
    if (off === undefined) continue;
    const extra = (word & ~off) >>> 0;
    if (extra) return `word ${sel}: accepted 0x${word.toString(16)}, offered 0x${off.toString(16)}`;
  }
  return undefined;
}

export function negotiatedOf(d: DevState, legacy: boolean): DevState['negotiated'] {
  return {
    indirect: acceptedHas(d, F.INDIRECT_DESC),
    eventIdx: acceptedHas(d, F.EVENT_IDX),
    packed: !legacy && acceptedHas(d, F.RING_PACKED),
    notificationData: !legacy && acceptedHas(d, F.NOTIFICATION_DATA),
    notifConfigData: !legacy && acceptedHas(d, F.NOTIF_CONFIG_DATA),
    inOrder: !legacy && acceptedHas(d, F.IN_ORDER),
  };
}

export function acceptedHas(d: DevState, bitNo: number): boolean {
  return ((d.accepted.get(bitNo >> 5) ?? 0) & (1 << (bitNo & 31))) !== 0;
}

export function onStatusWrite(m: MonitorCore, d: DevState, v: number): void {
  if (m.statusLog.length < 10_000) m.statusLog.push({ device: d.name, value: v });
  if (v === 0) {
    d.sawReset = true;
    d.status = 0;
    d.failedSet = false;
    d.featuresRefused = false;
    d.featuresOkWritten = false;
    d.driverOk = false;
    d.accepted.clear();
    d.unacked = 0;
    d.rings.clear();
    d.prings.clear();
    for (const q of d.queues.values()) q.ready = false;
    d.devFeatSelWritten = d.drvFeatSelWritten = false;
    d.queueVector.clear();
    d.negotiated = { indirect: false, eventIdx: false, packed: false, notificationData: false, notifConfigData: false, inOrder: false };
    d.coal = { tx: [0, 0], rx: [0, 0], vq: new Map() };
    if (d.kind !== 'mmio') return;
    // mmio.device.5 / status_init.device.4: reset clears InterruptStatus (when the reset has completed)
    const st = m.peek(d, Mmio.STATUS);
    if (st === 0) {
      const is = m.peek(d, Mmio.INTERRUPT_STATUS);
      if (is !== 0) m.violate(d, 'mmio.device.5', 'device', 'InterruptStatus not cleared by reset', '0', `0x${is.toString(16)}`);
    }
    return;
  }
  const prev = d.status;
  if (!d.sawReset) {
    m.violate(d, 'status_init.driver.6', 'driver', 'driver began initialization without resetting the device first', 'status 0 written first', statusNames(v));
    d.sawReset = true;
  }
  if (prev & ~v & DRIVER_BITS) m.violate(d, 'status_init.driver.2', 'driver', 'driver cleared device status bits', `a superset of ${statusNames(prev)}`, statusNames(v));
  if (d.failedSet && v & ~Status.FAILED & ~prev) m.violate(d, 'status_init.driver.3', 'driver', 'driver went on initializing after setting FAILED without a reset', 'reset (status 0) first', statusNames(v));
  const added = v & ~prev;
  if (added & Status.DRIVER && !(v & Status.ACKNOWLEDGE)) m.violate(d, 'status_init.driver.6', 'driver', 'DRIVER set without ACKNOWLEDGE', 'ACKNOWLEDGE before DRIVER', statusNames(v));
  if (added & Status.FEATURES_OK && d.version !== 1) {
    if (!(v & Status.DRIVER)) m.violate(d, 'status_init.driver.6', 'driver', 'FEATURES_OK set without DRIVER', 'ACKNOWLEDGE, DRIVER, then FEATURES_OK', statusNames(v));
    const bad = offeredViolation(d);
    if (bad) m.violate(d, 'features.driver.1', 'driver', 'driver accepted features the device did not offer', 'a subset of the offered features', bad);
    const vOffered = ((d.offered.get(1) ?? 0) & 1) !== 0;
    if (vOffered && !acceptedHas(d, F.VERSION_1)) m.violate(d, 'features.driver.9', 'driver', 'driver did not accept VIRTIO_F_VERSION_1 although offered', 'bit 32 accepted', `word 1 = 0x${(d.accepted.get(1) ?? 0).toString(16)}`);
    if (d.deviceId !== undefined) {
      const defined = definedBits(d.deviceId);
      for (const [sel, word] of d.accepted) {
        for (let b = 0; b < 32; b++) {
          if (word & (1 << b) && !defined.has(sel * 32 + b)) {
            m.violate(d, 'features.driver.5', 'driver', `driver accepted feature bit ${sel * 32 + b}, which the spec does not define for device type ${d.deviceId}`);
          }
        }
      }
    }
    if (d.kind === 'mmio' && acceptedHas(d, F.SR_IOV)) m.violate(d, 'features.driver.18', 'driver', 'driver accepted VIRTIO_F_SR_IOV on a virtio-mmio device (no PCI SR-IOV capability)');
    d.featuresOkWritten = true;
    d.negotiated = negotiatedOf(d, false);
  }
  if (added & Status.DRIVER_OK) {
    if (d.version !== 1 && !(v & Status.FEATURES_OK)) m.violate(d, 'status_init.driver.6', 'driver', 'DRIVER_OK set without FEATURES_OK', 'FEATURES_OK before DRIVER_OK', statusNames(v));
    if (d.featuresRefused) m.violate(d, 'status_init.driver.11', 'driver', 'driver set DRIVER_OK after the device refused FEATURES_OK', 'FAILED or a reset', statusNames(v));
    if (d.failedSet) m.violate(d, 'status_init.driver.11', 'driver', 'driver set DRIVER_OK after setting FAILED', 'a reset first', statusNames(v));
    d.driverOk = true;
    if (d.version === 1) d.negotiated = negotiatedOf(d, true);
  }
  if (v & Status.FAILED) d.failedSet = true;
  d.status = v & DRIVER_BITS;
}
