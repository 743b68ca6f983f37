/**
 * virtio-net device model: the control virtqueue — spec "Device Operation / Control Virtqueue":
 * reading each command, answering it (ack and result written only once its effect is in place,
 * net.device.90/.91/.96), and dispatching by class. Two small classes are answered here:
 * VIRTIO_NET_CTRL_ANNOUNCE ("Gratuitous Packet Sending", net.device.96) and
 * VIRTIO_NET_CTRL_GUEST_OFFLOADS ("Offloads State Configuration", net.driver.101). The others
 * live with the concept they configure: filter.ts (RX, MAC, VLAN), steering.ts (MQ, RSS_CTX,
 * HASH_TUNNEL), coalesce.ts (NOTF_COAL), stats.ts (STATS). A malformed command gets
 * VIRTIO_NET_ERR (and a recorded violation), never an exception.
 */
import type { DeviceQueue } from '../../virtio/model.ts';
import { gatherInto, scatter } from '../../virtio/chain-io.ts';
import { NetF, bit, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { NetCfg, NetCtrl, NetFx, NetStatus } from '../../../spec-refs/abi/net.ts';
import { add64, type NetState } from './state.ts';
import { macCommand, rxModeCommand, vlanCommand } from './filter.ts';
import { hashTunnelCommand, mqCommand, rssCtxCommand } from './steering.ts';
import { coalCommand } from './coalesce.ts';
import { statsCommand } from './stats.ts';

const GUEST_OFFLOAD_BITS = [NetF.GUEST_CSUM, NetF.GUEST_TSO4, NetF.GUEST_TSO6, NetF.GUEST_ECN, NetF.GUEST_UFO, 46, 47, NetF.GUEST_USO4, NetF.GUEST_USO6];

export function processCtrl(dev: NetState, q: DeviceQueue): void {
  const ctx = dev.ctx!;
  let n = 0;
  for (let budget = dev.queueSize; budget > 0; budget--) {
    const chain = q.pop();
    if (!chain) break;
    n++;
    dev.cvqStats.commands = add64(dev.cvqStats.commands, 1);
    if (chain.writableLen < 1) {
      // No room for the ack: nothing to answer with.
      dev.violate('net.ctrl.noack', `control command without a writable ack byte`);
      q.push(chain, 0);
      continue;
    }
    let ack: number = NetCtrl.ERR;
    let result: Uint8Array | null = null;
    if (chain.readableLen < 2) {
      dev.violate('net.ctrl.short', `control command of ${chain.readableLen} readable bytes`);
    } else {
      const len = Math.min(chain.readableLen, 1 << 16);
      const cmd = new Uint8Array(len);
      gatherInto(ctx.mem, chain.readable, 0, cmd);
      const r = dev.ctrlHook?.(cmd[0]!, cmd[1]!, cmd.subarray(2)) ?? command(dev, cmd[0]!, cmd[1]!, cmd.subarray(2), chain.writableLen - 1);
      ack = r.ack;
      result = r.result ?? null;
    }
    if (ack === NetCtrl.OK) dev.cvqStats.ok = add64(dev.cvqStats.ok, 1);
    // The command's effect is in place before the buffer is used (net.device.90/.91/.96).
    scatter(ctx.mem, chain.writable, 0, new Uint8Array([ack]));
    let written = 1;
    if (result) written += scatter(ctx.mem, chain.writable, 1, result.subarray(0, Math.max(0, chain.writableLen - 1)));
    q.push(chain, written);
  }
  if (n > 0) q.flush();
}

function command(dev: NetState, cls: number, cmd: number, data: Uint8Array, resultRoom: number): { ack: number; result?: Uint8Array } {
  const OK = { ack: NetCtrl.OK };
  const ERR = { ack: NetCtrl.ERR };
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  switch (cls) {
    case NetCtrl.CLASS_RX:
      return rxModeCommand(dev, cmd, data);
    case NetCtrl.CLASS_MAC:
      return macCommand(dev, cmd, data, dv);
    case NetCtrl.CLASS_VLAN:
      return vlanCommand(dev, cmd, data, dv);
    case NetCtrl.CLASS_ANNOUNCE: {
      if (!dev.f.announce || cmd !== NetCtrl.ANNOUNCE_ACK) return ERR;
      // net.device.96: ANNOUNCE cleared before the ack is used.
      const s = dev.cfgView.getUint16(NetCfg.STATUS, true);
      if (s & NetStatus.ANNOUNCE) {
        dev.cfgView.setUint16(NetCfg.STATUS, s & ~NetStatus.ANNOUNCE, true);
        dev.ctx?.configChanged();
      }
      return OK;
    }
    case NetCtrl.CLASS_MQ:
      return mqCommand(dev, cmd, data, dv);
    case NetCtrl.CLASS_GUEST_OFFLOADS: {
      if (!dev.f.guestOffloads || cmd !== NetCtrl.GUEST_OFFLOADS_SET) return ERR;
      if (data.length !== 8) return ERR;
      const lo = dv.getUint32(0, true);
      const hi = dv.getUint32(4, true);
      const want = (BigInt(hi) << 32n) | BigInt(lo);
      const features = dev.ctx!.features;
      // In the offloads bitmask GUEST_UDP_TUNNEL_GSO(_CSUM) take bits 46/47 (their feature bits are 65/66).
      const featureOf = (b: number): number => (b === 46 ? NetFx.GUEST_UDP_TUNNEL_GSO : b === 47 ? NetFx.GUEST_UDP_TUNNEL_GSO_CSUM : b);
      const allowed = GUEST_OFFLOAD_BITS.reduce((s, b) => (hasFeature(features, featureOf(b)) ? s | bit(b) : s), 0n);
      // net.driver.101: only negotiated guest offloads may be set.
      if (want & ~allowed) return dev.refuse('net.driver.101', `offloads 0x${want.toString(16)} beyond negotiated 0x${allowed.toString(16)}`);
      dev.rxCsum = hasFeature(want, NetF.GUEST_CSUM);
      dev.rxTso4 = hasFeature(want, NetF.GUEST_TSO4) && dev.rxCsum;
      dev.rxTso6 = hasFeature(want, NetF.GUEST_TSO6) && dev.rxCsum;
      dev.rxEcn = hasFeature(want, NetF.GUEST_ECN);
      dev.rxUso4 = hasFeature(want, NetF.GUEST_USO4) && dev.rxCsum;
      dev.rxUso6 = hasFeature(want, NetF.GUEST_USO6) && dev.rxCsum;
      dev.rxTunnel = hasFeature(want, 46);
      return OK;
    }
    case NetCtrl.CLASS_NOTF_COAL:
      return coalCommand(dev, cmd, data, dv);
    case NetCtrl.CLASS_STATS:
      return statsCommand(dev, cmd, data, dv, resultRoom);
    case NetCtrl.CLASS_RSS_CTX:
      if (!dev.f.rssCtx) return dev.refuse('net.driver.98', 'RSS context command without VIRTIO_NET_F_RSS_CONTEXT');
      return rssCtxCommand(dev, cmd, data, dv, resultRoom);
    case NetCtrl.CLASS_HASH_TUNNEL:
      return hashTunnelCommand(dev, cmd, data, dv);
  }
  return ERR;
}
