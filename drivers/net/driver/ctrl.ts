/**
 * virtio-net driver: the control virtqueue — spec "Device Operation / Control Virtqueue":
 * `command` sends one command and waits (bounded) for the ack and result, `mustCommand` turns
 * VIRTIO_NET_ERR into a RequestError, `need` refuses a command whose feature was not negotiated.
 * Two small classes are here: VIRTIO_NET_CTRL_ANNOUNCE ("Gratuitous Packet Sending",
 * net.driver.87/.88) and VIRTIO_NET_CTRL_GUEST_OFFLOADS ("Offloads State Configuration",
 * net.driver.101). The others are with their concept: filter.ts (RX, MAC, VLAN), steering.ts
 * (MQ, RSS, RSS contexts, hash config, hash tunnel), coalesce.ts (NOTF_COAL), stats.ts (STATS).
 */
import type { DmaBuffer } from '../../core/virtqueue.ts';
import { RequestError, UsageError } from '../../../spec-refs/errors.ts';
import { NetF, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { NetCtrl } from '../../../spec-refs/abi/net.ts';
import type { CtrlPending, NetDriverState } from './state.ts';
import { send } from './tx.ts';

export interface CtrlResult {
  readonly ack: number;
  readonly result: Uint8Array;
}

/**
 * Send a control command and wait (bounded) for the device's answer. `resultLen` bytes of
 * command-specific result follow the ack.
 */
export function command(drv: NetDriverState, cls: number, cmd: number, data: Uint8Array = new Uint8Array(0), resultLen = 0): CtrlResult {
  const q = drv.ctrlq;
  if (!q) throw new UsageError('net.ctrl.none', 'VIRTIO_NET_F_CTRL_VQ was not negotiated');
  const outLen = 2 + data.length;
  const buf = drv.platform.dma.alloc(outLen + 1 + resultLen, 16);
  const mem = drv.platform.mem;
  mem.write8(buf, cls);
  mem.write8(buf + 1, cmd);
  if (data.length) mem.writeBytes(buf + 2, data);
  mem.write8(buf + outLen, 0xff);
  const pending: CtrlPending = { done: false, ack: 0xff, len: 0, buf, resultLen, writableOff: outLen };
  const out: DmaBuffer[] = [{ addr: buf, len: outLen }];
  const inp: DmaBuffer[] = [{ addr: buf + outLen, len: 1 + resultLen }];
  if (!q.add(out, inp, pending)) {
    drv.platform.dma.free(buf);
    throw new UsageError('net.ctrl.full', 'control queue full');
  }
  drv.ctrlBusy = true;
  drv.stats.ctrlCommands++;
  try {
    q.kick();
    drv.dev.waitUntil(() => {
      reapCtrl(drv);
      if (!pending.done) drv.poll();
      return pending.done;
    }, `control command ${cls}/${cmd}`);
  } finally {
    drv.ctrlBusy = false;
  }
  const ack = pending.ack;
  const result = pending.len > 1 ? mem.readBytes(buf + outLen + 1, Math.min(pending.len - 1, resultLen)) : new Uint8Array(0);
  drv.platform.dma.free(buf);
  return { ack, result };
}

export function reapCtrl(drv: NetDriverState): void {
  const q = drv.ctrlq;
  if (!q) return;
  for (let u = q.getUsed(); u; u = q.getUsed()) {
    const p = u.token;
    p.done = true;
    p.len = u.len;
    p.ack = u.len >= 1 ? drv.platform.mem.read8(p.buf + p.writableOff) : 0xff;
  }
}

/** A command that must succeed: RequestError when the device says VIRTIO_NET_ERR. */
export function mustCommand(drv: NetDriverState, cls: number, cmd: number, data: Uint8Array, what: string, resultLen = 0): Uint8Array {
  const r = command(drv, cls, cmd, data, resultLen);
  if (r.ack !== NetCtrl.OK) throw new RequestError('net.ctrl.err', `${what} refused by the device`, { expected: 'VIRTIO_NET_OK', seen: `ack ${r.ack}` });
  return r.result;
}

export function need(drv: NetDriverState, feature: number, id: string, what: string): void {
  if (!hasFeature(drv.features, feature)) throw new UsageError('net.ctrl.feature', `${what} needs feature bit ${feature}`, { statements: [id] });
}

/** Enable a subset of the negotiated guest offloads (net.driver.101). */
export function setGuestOffloads(drv: NetDriverState, features: bigint): void {
  need(drv, NetF.CTRL_GUEST_OFFLOADS, 'net.driver.101', 'GUEST_OFFLOADS_SET');
  if (features & ~drv.features) throw new UsageError('net.offloads', 'offload not negotiated', { statements: ['net.driver.101'], seen: `0x${features.toString(16)}` });
  const d = new Uint8Array(8);
  new DataView(d.buffer).setBigUint64(0, features, true);
  mustCommand(drv, NetCtrl.CLASS_GUEST_OFFLOADS, NetCtrl.GUEST_OFFLOADS_SET, d, 'GUEST_OFFLOADS_SET');
}

export function doAnnounce(drv: NetDriverState): void {
  drv.announcePending = false;
  if (!drv.f.announce) return;
  // net.driver.87: announce ourselves; net.driver.88: then acknowledge.
  for (const fr of drv.announceFrames?.() ?? []) send(drv, fr);
  drv.stats.announces++;
  mustCommand(drv, NetCtrl.CLASS_ANNOUNCE, NetCtrl.ANNOUNCE_ACK, new Uint8Array(0), 'ANNOUNCE_ACK');
}
