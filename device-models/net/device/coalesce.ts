/**
 * virtio-net device model: notification coalescing — spec "Control Virtqueue / Notifications
 * Coalescing" (net.device.105-.113; driver breaches of net.driver.102-.105 recorded): the
 * VIRTIO_NET_CTRL_NOTF_COAL commands, and `signal`, through which rx and tx hand their used
 * buffers to the driver (flushed at once, or when max_packets / max_usecs is met). A queue
 * reset's return to the TX_SET / RX_SET values (net.device.109/.110) is in index.ts.
 */
import type { DeviceQueue } from '../../virtio/model.ts';
import { NetCtrl } from '../../../spec-refs/abi/net.ts';
import { add64, type NetState } from './state.ts';

/** `n` more used buffers were pushed on `index`: flush now or when the coalescing condition is met. */
export function signal(dev: NetState, q: DeviceQueue, index: number, n: number): void {
  const c = dev.coal[index]!;
  if (c.maxPackets === 0 || c.maxUsecs === 0) {
    dev.qstats[index]!.interrupts = add64(dev.qstats[index]!.interrupts, 1);
    q.flush();
    return;
  }
  c.count += n;
  if (c.count >= c.maxPackets) {
    fireCoal(dev, q, index);
  } else if (!c.timer && dev.ctx) {
    const epochCtx = dev.ctx;
    c.timer = dev.ctx.scheduler.schedule(c.maxUsecs * 1000, `${dev.name}:coal${index}`, () => {
      c.timer = null;
      if (dev.ctx !== epochCtx) return;
      fireCoal(dev, q, index);
    });
  }
}

function fireCoal(dev: NetState, q: DeviceQueue, index: number): void {
  const c = dev.coal[index]!;
  if (c.timer) {
    c.timer.cancelled = true;
    c.timer = null;
  }
  c.count = 0;
  dev.qstats[index]!.interrupts = add64(dev.qstats[index]!.interrupts, 1);
  q.flush();
}

function setCoal(dev: NetState, index: number, maxPackets: number, maxUsecs: number): void {
  const c = dev.coal[index]!;
  c.maxPackets = maxPackets;
  c.maxUsecs = maxUsecs;
  // A change may meet the condition at once (pending packets already reach the new max).
  if (dev.ctx && (c.count > 0 || c.timer) && (maxPackets === 0 || maxUsecs === 0 || c.count >= maxPackets)) fireCoal(dev, dev.ctx.queue(index), index);
}

function isDataQueue(dev: NetState, vq: number): boolean {
  // An enabled transmit or receive virtqueue: within the pairs in use.
  return vq >= 0 && vq < 2 * Math.max(dev.curPairs, dev.rss ? dev.rss.maxTx : 0);
}

export function coalCommand(dev: NetState, cmd: number, data: Uint8Array, dv: DataView): { ack: number; result?: Uint8Array } {
  const ERR = { ack: NetCtrl.ERR };
  const OK = { ack: NetCtrl.OK };
  if (cmd === NetCtrl.NOTF_COAL_TX_SET || cmd === NetCtrl.NOTF_COAL_RX_SET) {
    if (!dev.f.notfCoal) return dev.refuse('net.driver.103', `NOTF_COAL command ${cmd} without NOTF_COAL`);
    if (data.length !== 8) return ERR;
    const maxPackets = dv.getUint32(0, true);
    const maxUsecs = dv.getUint32(4, true);
    const tx = cmd === NetCtrl.NOTF_COAL_TX_SET;
    const g = tx ? dev.coalTx : dev.coalRx;
    g.maxPackets = maxPackets;
    g.maxUsecs = maxUsecs;
    for (let i = tx ? 1 : 0; i < 2 * dev.maxPairs; i += 2) setCoal(dev, i, maxPackets, maxUsecs);
    return OK;
  }
  if (cmd === NetCtrl.NOTF_COAL_VQ_SET || cmd === NetCtrl.NOTF_COAL_VQ_GET) {
    if (!dev.f.vqNotfCoal) return dev.refuse('net.driver.104', `NOTF_COAL command ${cmd} without VQ_NOTF_COAL`);
    const setLen = 12;
    if (data.length !== (cmd === NetCtrl.NOTF_COAL_VQ_SET ? setLen : 4)) return ERR;
    const vq = dv.getUint16(0, true);
    // net.device.105: reserved ignored. net.device.108: only enabled data queues.
    if (!isDataQueue(dev, vq)) return dev.refuse('net.driver.102', `vq_index ${vq} is not an enabled data queue`);
    if (cmd === NetCtrl.NOTF_COAL_VQ_SET) {
      setCoal(dev, vq, dv.getUint32(4, true), dv.getUint32(8, true));
      return OK;
    }
    const out = new Uint8Array(8);
    const ov = new DataView(out.buffer);
    ov.setUint32(0, dev.coal[vq]!.maxPackets, true);
    ov.setUint32(4, dev.coal[vq]!.maxUsecs, true);
    return { ack: NetCtrl.OK, result: out };
  }
  return ERR;
}
