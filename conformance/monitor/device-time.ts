/**
 * Interrupts and device time. On the simulated machine device work runs only while the driver
 * waits (platform.irq.wait) or spins (platform.spin): what changed in shared memory between leaving
 * one wait and entering the next was done by the driver, what changed during a wait by the device.
 * These are the synchronisation points where the rings are read and judged.
 *
 * Spec: MMIO-specific Initialization And Device Operation / Notifications From The Device; Device
 * Status Field; Device Initialization.
 * Statements: mmio.driver.30, .32; status_init.device.1, .5 (interrupts before DRIVER_OK).
 */
import { Mmio, Status, statusNames } from '../../spec-refs/abi/virtio.ts';
import type { MonitorCore } from './core.ts';
import { checkSnapshots, guard, scanUsed, syncAvail } from './split-ring.ts';
import { pguard, scanAvailPacked, scanUsedPacked, snapshotsPacked } from './packed-ring.ts';
import { judgeNotifyOwed, judgeOwed } from './notifications.ts';

export function onIrq(m: MonitorCore, vector: number): void {
  if (!m.active) return;
  for (const d of m.allDevs()) {
    if (!d.vectors.has(vector)) continue;
    d.irqsTotal++;
    m.stats.irqs++;
    if (d.kind !== 'mmio') continue;
    const is = m.peek(d, Mmio.INTERRUPT_STATUS);
    if (is & Mmio.INT_VRING && !d.driverOk) {
      const st = m.peek(d, Mmio.STATUS);
      if (!(st & Status.DRIVER_OK)) m.violate(d, st === 0 && d.sawReset ? 'status_init.device.5' : 'status_init.device.1', 'device', 'used buffer notification while DRIVER_OK is not set', 'DRIVER_OK first', statusNames(st));
    }
  }
}

export function taken(m: MonitorCore, vector: number): void {
  if (!m.active) return;
  for (const d of m.allDevs()) if (d.vectors.has(vector)) d.irqsTaken = d.irqsTotal;
}

/** Entering a wait/spin: what changed since the last one was the driver's doing. */
export function enterDeviceTime(m: MonitorCore): void {
  if (!m.active) return;
  for (const d of m.allDevs()) {
    if (d.kind === 'mmio' && d.irqsTaken > d.irqsHandled && d.driverOk) {
      m.violate(d, 'mmio.driver.30', 'driver', 'driver took an interrupt of the device and did not read InterruptStatus before waiting again');
      d.irqsHandled = d.irqsTaken;
    }
    if (d.kind === 'mmio' && d.unacked) {
      m.violate(d, 'mmio.driver.32', 'driver', 'driver waits again without acknowledging the interrupt causes it read', 'InterruptACK of the handled bits', `unacknowledged 0x${d.unacked.toString(16)}`);
      d.unacked = 0;
    }
    if (!m.ringsOn) continue;
    for (const r of d.prings.values()) {
      if (r.broken) continue;
      pguard(r, () => {
        snapshotsPacked(m, d, r, 'driver');
        scanUsedPacked(m, d, r);
        scanAvailPacked(m, d, r);
      });
    }
    for (const r of d.rings.values()) {
      if (r.broken) continue;
      guard(r, () => {
        checkSnapshots(m, d, r, 'driver');
        scanUsed(m, d, r, 'driver');
        syncAvail(m, d, r);
        judgeNotifyOwed(m, d, r);
      });
    }
    d.irqsAtEnter = d.irqsTotal;
  }
}

/** Leaving a wait/spin: what changed during it was the device's doing. */
export function leaveDeviceTime(m: MonitorCore): void {
  if (!m.active || !m.ringsOn) return;
  for (const d of m.allDevs()) {
    for (const r of d.prings.values()) {
      if (r.broken) continue;
      pguard(r, () => {
        snapshotsPacked(m, d, r, 'device');
        scanUsedPacked(m, d, r);
      });
    }
    for (const r of d.rings.values()) {
      if (r.broken) continue;
      guard(r, () => {
        checkSnapshots(m, d, r, 'device');
        scanUsed(m, d, r, 'device');
        judgeOwed(m, d, r, false);
      });
    }
  }
}
