/**
 * virtio-net driver: device statistics — spec "Control Virtqueue / Device Statistics"
 * (net.driver.106-.108): STATS_QUERY and STATS_GET, with the replies' sizes checked
 * (net.device.117).
 */
import { NetF } from '../../../spec-refs/abi/virtio.ts';
import { NetCtrl, StatsCounters } from '../../../spec-refs/abi/net.ts';
import type { NetDriverState } from './state.ts';
import { mustCommand, need } from './ctrl.ts';

/** Statistics types the device supports (STATS_QUERY), as bit numbers. */
export function statsQuery(drv: NetDriverState): number[] {
  need(drv, NetF.DEVICE_STATS, 'net.driver.106', 'STATS_QUERY');
  const r = mustCommand(drv, NetCtrl.CLASS_STATS, NetCtrl.STATS_QUERY, new Uint8Array(0), 'STATS_QUERY', 8);
  const v = new DataView(r.buffer, r.byteOffset, r.byteLength);
  const out: number[] = [];
  if (r.length < 8) return out;
  const lo = v.getUint32(0, true);
  const hi = v.getUint32(4, true);
  for (let b = 0; b < 64; b++) if ((b < 32 ? lo >>> b : hi >>> (b - 32)) & 1) out.push(b);
  return out;
}

/** Statistics of one queue (net.driver.106-.108); the result buffer is sized for every reply. */
export function statsGet(drv: NetDriverState, vq: number, types: readonly number[]): { type: number; vq: number; counters: number[] }[] {
  need(drv, NetF.DEVICE_STATS, 'net.driver.106', 'STATS_GET');
  const d = new Uint8Array(16);
  const v = new DataView(d.buffer);
  v.setUint16(0, vq, true);
  let lo = 0;
  let hi = 0;
  let room = 0;
  for (const t of types) {
    if (t >= 32) hi |= 1 << (t - 32);
    else lo |= 1 << t;
    room += 8 + 8 * (StatsCounters[t] ?? 0);
  }
  v.setUint32(8, lo >>> 0, true);
  v.setUint32(12, hi >>> 0, true);
  const r = mustCommand(drv, NetCtrl.CLASS_STATS, NetCtrl.STATS_GET, d, 'STATS_GET', room);
  const rv = new DataView(r.buffer, r.byteOffset, r.byteLength);
  const out: { type: number; vq: number; counters: number[] }[] = [];
  for (let off = 0; off + 8 <= r.length; ) {
    const size = rv.getUint16(off + 6, true);
    if (size < 8 || off + size > r.length) {
      drv.deviceError('net.device.117', `stats reply size ${size} at ${off} of ${r.length}`);
      break;
    }
    const counters: number[] = [];
    for (let c = off + 8; c + 8 <= off + size; c += 8) counters.push(Number(rv.getBigUint64(c, true)));
    out.push({ type: r[off]!, vq: rv.getUint16(off + 2, true), counters });
    off += size;
  }
  return out;
}
