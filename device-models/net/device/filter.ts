/**
 * virtio-net device model: receive filtering — spec "Control Virtqueue / Packet Receive
 * Filtering", "Setting MAC Address Filtering" and "VLAN Filtering" (net.device.76-.95; driver
 * breaches of net.driver.81-.86 recorded): the VIRTIO_NET_CTRL_RX, _MAC and _VLAN commands and
 * the filter every received frame passes (`accept`).
 */
import { NetCfg, NetCtrl } from '../../../spec-refs/abi/net.ts';
import { isBroadcast, isMulticast, macEquals, macKey, type FrameInfo } from '../../../spec-refs/abi/packet.ts';
import type { NetState } from './state.ts';

/** Receive filtering: rx modes, MAC tables, VLAN table (net.device.93/.94, SHOULDs .77-.92, .95). */
export function accept(dev: NetState, data: Uint8Array, info: FrameInfo): boolean {
  if (dev.promisc) return true;
  if (dev.f.ctrlVlan && info.vlan >= 0 && !(dev.vlans[info.vlan >> 3]! & (1 << (info.vlan & 7)))) return false;
  if (isBroadcast(data, 0)) return !dev.nobcast;
  if (isMulticast(data, 0)) {
    if (dev.nomulti) return false;
    if (dev.allmulti || dev.multiOverflow) return true;
    return dev.multiTable.includes(macKey(data, 0));
  }
  if (dev.nouni) return false;
  if (dev.alluni || dev.uniOverflow) return true;
  if (macEquals(data, 0, dev.mac)) return true;
  return dev.uniTable.includes(macKey(data, 0));
}

/** VIRTIO_NET_CTRL_RX: PROMISC, ALLMULTI (CTRL_RX) and ALLUNI, NOMULTI, NOUNI, NOBCAST (CTRL_RX_EXTRA). */
export function rxModeCommand(dev: NetState, cmd: number, data: Uint8Array): { ack: number } {
  const OK = { ack: NetCtrl.OK };
  const ERR = { ack: NetCtrl.ERR };
  const bool = (): boolean | null => (data.length >= 1 && (data[0] === 0 || data[0] === 1) ? data[0] === 1 : null);
  const extra = cmd >= NetCtrl.RX_ALLUNI && cmd <= NetCtrl.RX_NOBCAST;
  if (cmd <= NetCtrl.RX_ALLMULTI && !dev.f.ctrlRx) return dev.refuse('net.driver.81', `RX command ${cmd} without CTRL_RX`);
  if (extra && !dev.f.ctrlRxExtra) return dev.refuse('net.driver.82', `RX command ${cmd} without CTRL_RX_EXTRA`);
  const on = bool();
  if (on === null) return ERR;
  // net.device.76 / net.device.80
  switch (cmd) {
    case NetCtrl.RX_PROMISC: dev.promisc = on; return OK;
    case NetCtrl.RX_ALLMULTI: dev.allmulti = on; return OK;
    case NetCtrl.RX_ALLUNI: dev.alluni = on; return OK;
    case NetCtrl.RX_NOMULTI: dev.nomulti = on; return OK;
    case NetCtrl.RX_NOUNI: dev.nouni = on; return OK;
    case NetCtrl.RX_NOBCAST: dev.nobcast = on; return OK;
  }
  return ERR;
}

/** VIRTIO_NET_CTRL_MAC: MAC_TABLE_SET (CTRL_RX) and MAC_ADDR_SET (CTRL_MAC_ADDR). */
export function macCommand(dev: NetState, cmd: number, data: Uint8Array, dv: DataView): { ack: number } {
  const OK = { ack: NetCtrl.OK };
  const ERR = { ack: NetCtrl.ERR };
  if (cmd === NetCtrl.MAC_TABLE_SET) {
    if (!dev.f.ctrlRx) return dev.refuse('net.driver.83', 'MAC_TABLE_SET without CTRL_RX');
    // net.driver.85: le32 n, n MACs, le32 m, m MACs, nothing more.
    if (data.length < 4) return dev.refuse('net.driver.85', 'MAC table shorter than its count');
    const nu = dv.getUint32(0, true);
    const uEnd = 4 + nu * 6;
    if (nu > 0x10000 || data.length < uEnd + 4) return dev.refuse('net.driver.85', `unicast count ${nu} does not fit ${data.length} bytes`);
    const nm = dv.getUint32(uEnd, true);
    if (nm > 0x10000 || data.length !== uEnd + 4 + nm * 6) return dev.refuse('net.driver.85', `multicast count ${nm} does not fit ${data.length} bytes`);
    const uni: number[] = [];
    const multi: number[] = [];
    for (let i = 0; i < nu; i++) uni.push(macKey(data, 4 + i * 6));
    for (let i = 0; i < nm; i++) multi.push(macKey(data, uEnd + 4 + i * 6));
    // net.device.90: the table is in force before the command is used.
    dev.uniOverflow = uni.length > dev.macTableSize;
    dev.multiOverflow = multi.length > dev.macTableSize;
    dev.uniTable = dev.uniOverflow ? [] : uni;
    dev.multiTable = dev.multiOverflow ? [] : multi;
    return OK;
  }
  if (cmd === NetCtrl.MAC_ADDR_SET) {
    if (!dev.f.macAddr) return dev.refuse('net.driver.83', 'MAC_ADDR_SET without CTRL_MAC_ADDR');
    if (data.length !== 6) return ERR;
    dev.mac.set(data.subarray(0, 6));
    // net.device.91: config mac shows the new address before the command is used.
    dev.config.set(dev.mac, NetCfg.MAC);
    return OK;
  }
  return ERR;
}

/** VIRTIO_NET_CTRL_VLAN: VLAN_ADD, VLAN_DEL. */
export function vlanCommand(dev: NetState, cmd: number, data: Uint8Array, dv: DataView): { ack: number } {
  const OK = { ack: NetCtrl.OK };
  const ERR = { ack: NetCtrl.ERR };
  if (!dev.f.ctrlVlan) return dev.refuse('net.ctrl.vlan', 'VLAN command without CTRL_VLAN');
  if (data.length !== 2) return ERR;
  const vid = dv.getUint16(0, true);
  if (vid > 4095) return ERR;
  if (cmd === NetCtrl.VLAN_ADD) dev.vlans[vid >> 3]! |= 1 << (vid & 7);
  else if (cmd === NetCtrl.VLAN_DEL) dev.vlans[vid >> 3]! &= ~(1 << (vid & 7));
  else return ERR;
  return OK;
}
