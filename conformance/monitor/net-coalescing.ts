/**
 * virtio-net notification coalescing as the driver configured it: the NOTF_COAL_TX_SET / RX_SET /
 * VQ_SET commands seen on the control queue, so that a device holding used buffer notifications
 * back is not taken for one that forgot them (see judgeOwed in notifications.ts).
 *
 * Spec: Network Device / Device Operation / Control Virtqueue / Notifications Coalescing.
 * Statements: net.device.109, .110 (per-queue values back to the group's), .111, .112.
 */
import { NetF, DeviceType } from '../../spec-refs/abi/virtio.ts';
import { NetCtrl } from '../../spec-refs/abi/net.ts';
import type { MonitorCore } from './core.ts';
import type { DevState } from './state.ts';
import { acceptedHas } from './status.ts';
import { config32 } from './pci-layout.ts';

/** virtio-net: the control queue's index (after the receive/transmit pairs). */
function netCtrlQueue(m: MonitorCore, d: DevState): number {
  if (!acceptedHas(d, NetF.MQ)) return 2;
  const pairs = config32(m, d, 4) & 0xffff; // max_virtqueue_pairs
  return 2 * Math.max(1, pairs);
}

/** Record a NOTF_COAL_{TX,RX,VQ}_SET command the driver made available on a virtio-net control queue. */
export function noteCoalescing(m: MonitorCore, d: DevState, queue: number, rsegs: readonly { addr: number; len: number }[]): void {
  if (!acceptedHas(d, NetF.CTRL_VQ) || !(acceptedHas(d, NetF.NOTF_COAL) || acceptedHas(d, NetF.VQ_NOTF_COAL))) return;
  if (queue !== netCtrlQueue(m, d)) return;
  const mem = m.machine.mem;
  const b = new Uint8Array(14);
  let n = 0;
  for (const sg of rsegs) {
    for (let k = 0; k < sg.len && n < b.length; k++) if (mem.isRam(sg.addr + k, 1)) b[n++] = mem.read8(sg.addr + k);
    if (n >= b.length) break;
  }
  if (n < 2 || b[0] !== NetCtrl.CLASS_NOTF_COAL) return;
  const le32 = (o: number) => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
  const cmd = b[1]!;
  if ((cmd === NetCtrl.NOTF_COAL_TX_SET || cmd === NetCtrl.NOTF_COAL_RX_SET) && n >= 10) {
    const tx = cmd === NetCtrl.NOTF_COAL_TX_SET;
    const v = [le32(2), le32(6)] as const;
    if (tx) d.coal.tx = v;
    else d.coal.rx = v;
    // the group command sets every queue of the group
    for (const q of [...d.coal.vq.keys()]) if ((q % 2 === 1) === tx) d.coal.vq.delete(q);
  } else if (cmd === NetCtrl.NOTF_COAL_VQ_SET && n >= 14) {
    d.coal.vq.set(b[2]! | (b[3]! << 8), [le32(6), le32(10)]);
  }
}

/** virtio-net queue `index` has notification coalescing configured (the device may hold notifications back). */
export function coalescing(m: MonitorCore, d: DevState, index: number): boolean {
  if (d.deviceId !== DeviceType.NET || index >= netCtrlQueue(m, d)) return false;
  const v = d.coal.vq.get(index) ?? (index % 2 === 1 ? d.coal.tx : d.coal.rx);
  return v[0] > 1 || v[1] > 0;
}
