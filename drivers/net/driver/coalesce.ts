/**
 * virtio-net driver: notification coalescing — spec "Control Virtqueue / Notifications
 * Coalescing" (net.driver.102-.105): NOTF_COAL_TX_SET / RX_SET and the per-queue VQ_SET / VQ_GET.
 */
import { UsageError } from '../../../spec-refs/errors.ts';
import { NetF } from '../../../spec-refs/abi/virtio.ts';
import { NetCtrl } from '../../../spec-refs/abi/net.ts';
import type { NetDriverState } from './state.ts';
import { command, mustCommand, need } from './ctrl.ts';

/** Notification coalescing for all transmit or all receive queues (net.driver.103). */
export function setCoalescing(drv: NetDriverState, dir: 'tx' | 'rx', maxPackets: number, maxUsecs: number): void {
  need(drv, NetF.NOTF_COAL, 'net.driver.103', 'NOTF_COAL');
  const d = new Uint8Array(8);
  const v = new DataView(d.buffer);
  v.setUint32(0, maxPackets, true);
  v.setUint32(4, maxUsecs, true);
  mustCommand(drv, NetCtrl.CLASS_NOTF_COAL, dir === 'tx' ? NetCtrl.NOTF_COAL_TX_SET : NetCtrl.NOTF_COAL_RX_SET, d, 'NOTF_COAL');
}

/** Per-queue coalescing (net.driver.102/.104). */
export function setQueueCoalescing(drv: NetDriverState, vq: number, maxPackets: number, maxUsecs: number): void {
  need(drv, NetF.VQ_NOTF_COAL, 'net.driver.104', 'NOTF_COAL_VQ_SET');
  if (vq < 0 || vq >= 2 * drv.activePairs) throw new UsageError('net.coal.vq', 'not an enabled data queue', { statements: ['net.driver.102'], seen: `${vq}` });
  const d = new Uint8Array(12);
  const v = new DataView(d.buffer);
  v.setUint16(0, vq, true);
  v.setUint32(4, maxPackets, true);
  v.setUint32(8, maxUsecs, true);
  mustCommand(drv, NetCtrl.CLASS_NOTF_COAL, NetCtrl.NOTF_COAL_VQ_SET, d, 'NOTF_COAL_VQ_SET');
}

/** Read a queue's coalescing parameters; null when the device answers ERR (net.driver.105: values disregarded). */
export function getQueueCoalescing(drv: NetDriverState, vq: number): { maxPackets: number; maxUsecs: number } | null {
  need(drv, NetF.VQ_NOTF_COAL, 'net.driver.104', 'NOTF_COAL_VQ_GET');
  if (vq < 0 || vq >= 2 * drv.activePairs) throw new UsageError('net.coal.vq', 'not an enabled data queue', { statements: ['net.driver.102'], seen: `${vq}` });
  const d = new Uint8Array(4);
  new DataView(d.buffer).setUint16(0, vq, true);
  const r = command(drv, NetCtrl.CLASS_NOTF_COAL, NetCtrl.NOTF_COAL_VQ_GET, d, 8);
  if (r.ack !== NetCtrl.OK || r.result.length < 8) return null;
  const v = new DataView(r.result.buffer, r.result.byteOffset, 8);
  return { maxPackets: v.getUint32(0, true), maxUsecs: v.getUint32(4, true) };
}
