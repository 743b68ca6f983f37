/**
 * virtio-net driver: receive filtering — spec "Control Virtqueue / Packet Receive Filtering",
 * "Setting MAC Address Filtering" and "VLAN Filtering" (net.driver.81-.86): the
 * VIRTIO_NET_CTRL_RX, _MAC and _VLAN commands.
 */
import { UsageError } from '../../../spec-refs/errors.ts';
import { NetF } from '../../../spec-refs/abi/virtio.ts';
import { NetCtrl } from '../../../spec-refs/abi/net.ts';
import type { NetDriverState } from './state.ts';
import { mustCommand, need } from './ctrl.ts';

/** VIRTIO_NET_CTRL_RX modes (net.driver.81/.82). */
export function setRxMode(drv: NetDriverState, cmd: number, on: boolean): void {
  if (cmd <= NetCtrl.RX_ALLMULTI) need(drv, NetF.CTRL_RX, 'net.driver.81', 'PROMISC/ALLMULTI');
  else need(drv, NetF.CTRL_RX_EXTRA, 'net.driver.82', 'ALLUNI/NOMULTI/NOUNI/NOBCAST');
  mustCommand(drv, NetCtrl.CLASS_RX, cmd, new Uint8Array([on ? 1 : 0]), `rx mode ${cmd}`);
}

export function setPromisc(drv: NetDriverState, on: boolean): void {
  setRxMode(drv, NetCtrl.RX_PROMISC, on);
}

export function setAllMulti(drv: NetDriverState, on: boolean): void {
  setRxMode(drv, NetCtrl.RX_ALLMULTI, on);
}

/** MAC filter table (net.driver.83/.85). */
export function setMacTable(drv: NetDriverState, unicast: readonly Uint8Array[], multicast: readonly Uint8Array[]): void {
  need(drv, NetF.CTRL_RX, 'net.driver.83', 'MAC_TABLE_SET');
  const d = new Uint8Array(8 + 6 * (unicast.length + multicast.length));
  const v = new DataView(d.buffer);
  v.setUint32(0, unicast.length, true);
  unicast.forEach((m, i) => d.set(m.subarray(0, 6), 4 + 6 * i));
  const mo = 4 + 6 * unicast.length;
  v.setUint32(mo, multicast.length, true);
  multicast.forEach((m, i) => d.set(m.subarray(0, 6), mo + 4 + 6 * i));
  mustCommand(drv, NetCtrl.CLASS_MAC, NetCtrl.MAC_TABLE_SET, d, 'MAC_TABLE_SET');
}

/** Change the MAC address (net.driver.84). */
export function setMac(drv: NetDriverState, mac: Uint8Array): void {
  need(drv, NetF.CTRL_MAC_ADDR, 'net.driver.83', 'MAC_ADDR_SET');
  mustCommand(drv, NetCtrl.CLASS_MAC, NetCtrl.MAC_ADDR_SET, mac.slice(0, 6), 'MAC_ADDR_SET');
  drv.mac.set(mac.subarray(0, 6));
}

export function vlan(drv: NetDriverState, add: boolean, vid: number): void {
  need(drv, NetF.CTRL_VLAN, 'net.driver.81', 'VLAN filtering');
  if (vid < 0 || vid > 4095) throw new UsageError('net.vlan', 'VLAN id out of range', { expected: '0..4095', seen: `${vid}` });
  const d = new Uint8Array(2);
  new DataView(d.buffer).setUint16(0, vid, true);
  mustCommand(drv, NetCtrl.CLASS_VLAN, add ? NetCtrl.VLAN_ADD : NetCtrl.VLAN_DEL, d, 'VLAN');
}
