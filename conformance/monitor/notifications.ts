/**
 * Notifications in both directions: an available buffer notification from the driver (any
 * transport) and whether one was owed; whether a device that added used entries owed a used
 * buffer notification, honouring the driver's suppression, MSI-X without a vector and virtio-net
 * coalescing.
 *
 * Spec: Available Buffer Notification Suppression; Used Buffer Notification Suppression; Device
 * Initialization (no notification before DRIVER_OK).
 * Statements: status_init.driver.12, split.driver.22, .24, split.device.11, .13, net.device.111, .112.
 */
import { Mmio, Split, statusNames } from '../../spec-refs/abi/virtio.ts';
import type { MonitorCore } from './core.ts';
import { needEvent, type DevState, type RingState } from './state.ts';
import { guard, scanUsed, syncAvail } from './split-ring.ts';
import { packedNotifyData, pguard, scanAvailPacked, scanUsedPacked } from './packed-ring.ts';
import { coalescing } from './net-coalescing.ts';
import { pciQueueSilent } from './pci-layout.ts';

/** An available buffer notification for queue `idx` (any transport). */
export function onNotify(m: MonitorCore, d: DevState, idx: number, data?: number): void {
  if (!d.driverOk) m.violate(d, 'status_init.driver.12', 'driver', `notification for queue ${idx} before DRIVER_OK`, 'DRIVER_OK set', statusNames(d.status));
  const pr = d.prings.get(idx);
  if (pr && !pr.broken && m.ringsOn) {
    pguard(pr, () => {
      scanUsedPacked(m, d, pr);
      scanAvailPacked(m, d, pr);
      if (data !== undefined && d.negotiated.notificationData) packedNotifyData(m, d, pr, data);
    });
  }
  const r = d.rings.get(idx);
  if (r && m.ringsOn && !r.broken) {
    guard(r, () => {
      scanUsed(m, d, r, 'driver');
      syncAvail(m, d, r);
      r.notifiedAvail = r.lastAvail;
    });
  }
}

/** The driver must notify about buffers it made available unless the device suppressed it. */
export function judgeNotifyOwed(m: MonitorCore, d: DevState, r: RingState): void {
  if (r.lastAvail === r.notifiedAvail || !d.driverOk) return;
  const mem = m.machine.mem;
  if (d.negotiated.eventIdx) {
    const availEvent = mem.read16(r.used + 4 + 8 * r.size);
    if (needEvent(availEvent, r.lastAvail, r.notifiedAvail)) m.violate(d, 'split.driver.24', 'driver', `queue ${r.index}: avail idx passed avail_event and the driver did not notify`, `a notification (avail_event ${availEvent})`, `avail idx ${r.notifiedAvail} -> ${r.lastAvail}, no notification`);
  } else if (!(mem.read16(r.used) & Split.USED_F_NO_NOTIFY)) {
    m.violate(d, 'split.driver.22', 'driver', `queue ${r.index}: buffers made available without a notification while used flags is 0`, 'a notification', `avail idx ${r.notifiedAvail} -> ${r.lastAvail}`);
  }
  r.notifiedAvail = r.lastAvail;
}

/** A device that added used entries must notify unless the driver suppressed it. */
export function judgeOwed(m: MonitorCore, d: DevState, r: RingState, final: boolean): void {
  const o = r.owed;
  if (!o) return;
  if (d.irqsTotal > o.irqsAt || (d.kind === 'mmio' && m.peek(d, Mmio.INTERRUPT_STATUS) & Mmio.INT_VRING) || (d.kind === 'pci' && pciQueueSilent(m, d, r.index))) {
    r.owed = null;
    return;
  }
  let must = d.negotiated.eventIdx ? needEvent(o.usedEvent, o.to, o.from) : (o.flags & Split.AVAIL_F_NO_INTERRUPT) === 0;
  if (must && coalescing(m, d, r.index)) {
    // net.device.111 / net.device.112: with notification coalescing negotiated and configured for
    // this queue the device holds used buffer notifications back and decides when the coalescing
    // condition is met (a timer: the scheduler is not idle until it fired). It then judges by the
    // driver's suppression fields as they are at that moment: a driver that has already consumed
    // the buffers (polling) and moved used_event past them, or set NO_INTERRUPT, is owed nothing.
    // A driver still asking for them when everything has run is owed a notification as before.
    const mem = m.machine.mem;
    must = d.negotiated.eventIdx ? needEvent(mem.read16(r.avail + 4 + 2 * r.size), o.to, o.from) : (mem.read16(r.avail) & Split.AVAIL_F_NO_INTERRUPT) === 0;
  }
  if (!must) {
    r.owed = null;
    return;
  }
  if (final || m.machine.scheduler.pending === 0) {
    m.violate(d, d.negotiated.eventIdx ? 'split.device.13' : 'split.device.11', 'device', `queue ${r.index}: used entries ${o.from}..${o.to} added without a used buffer notification`, 'a notification', 'none');
    r.owed = null;
  }
}
