/**
 * The virtio-net device model (device-types/net/description.tex at v1.4-cs01), written against
 * the VirtioDeviceModel seam: it sees validated chains through DeviceQueue and never a ring.
 *
 * Queues: receiveqN = 2(N-1), transmitqN = 2(N-1)+1, then the control queue (index 2 without
 * MQ, 2 * max_virtqueue_pairs with MQ). Frames leave through a NetBackend (a switch port) as
 * WireFrames and arrive through `receive`; offloads the peer cannot take are done here
 * (checksum completion, TCP/UDP segmentation), see wire.ts.
 *
 * Bad driver input never throws: a malformed transmit header drops that frame (counted in
 * tx_drop_malformed and recorded with the statement it breaks), a malformed control command
 * gets VIRTIO_NET_ERR, and only a broken receive-buffer contract (mergeable buffers smaller
 * than the header) makes the device set DEVICE_NEEDS_RESET.
 *
 * This file is the VirtioDeviceModel face: activation, reset, queue reset, notifications, link
 * and announce. The rest, one file per part of the spec (each names its statement ids):
 * config.ts (options, feature offer, config space), state.ts (the state, reset), tx.ts, rx.ts,
 * filter.ts (RX modes, MAC and VLAN filters), steering.ts (MQ, RSS, RSS contexts, hashing),
 * coalesce.ts (notification coalescing), stats.ts (device statistics), ctrl.ts (the control
 * queue and its dispatch).
 */
import type { DeviceContext, VirtioDeviceModel } from '../../virtio/model.ts';
import { DeviceType } from '../../../spec-refs/abi/virtio.ts';
import { netFeatureDependencyError, netHdrSize, NetCfg, NetStatus } from '../../../spec-refs/abi/net.ts';
import type { WireFrame } from '../wire.ts';
import { negotiatedFlags, readConfigBytes, type NetDeviceOptions } from './config.ts';
import { NetState, add64, type NetBackend, type NetEndpoint, type NetViolation, type QueueStats } from './state.ts';
import { processTx } from './tx.ts';
import { drain, receiveFrame } from './rx.ts';
import { processCtrl } from './ctrl.ts';

export { NET_SUPPORTED_FEATURES, type NetDeviceOptions } from './config.ts';
export type { NetBackend, NetEndpoint, NetViolation, QueueStats } from './state.ts';

export class VirtioNetDevice implements VirtioDeviceModel, NetEndpoint {
  readonly deviceType = DeviceType.NET;
  readonly name: string;
  readonly numQueues: number;
  readonly offeredFeatures: bigint;
  readonly configSize = NetCfg.SIZE;
  readonly maxPairs: number;
  readonly mtu: number;
  /** Everything the device knows; the files of device/ work on it. */
  private readonly s: NetState;

  constructor(opts: NetDeviceOptions = {}) {
    const s = new NetState(opts);
    this.s = s;
    this.name = s.name;
    this.numQueues = s.numQueues;
    this.offeredFeatures = s.offeredFeatures;
    this.maxPairs = s.maxPairs;
    this.mtu = s.mtu;
  }

  /** Per-queue counters (what DEVICE_STATS reports). */
  get qstats(): QueueStats[] {
    return this.s.qstats;
  }

  /** Driver errors seen (bounded), each with the census id it breaks. */
  get violations(): NetViolation[] {
    return this.s.violations;
  }

  get violationCount(): number {
    return this.s.violationCount;
  }

  /** Frames the device dropped on receive because of filtering (for tests). */
  get filtered(): number {
    return this.s.filtered;
  }

  /** Attach the NIC to a network (a switch port). */
  connect(backend: NetBackend): void {
    this.s.backend = backend;
  }

  get linkIsUp(): boolean {
    return this.s.linkUp;
  }

  /** Current MAC (config `mac`, or what CTRL_MAC_ADDR_SET installed). */
  get currentMac(): Uint8Array {
    return this.s.mac.slice();
  }

  /** Set the link state; with STATUS negotiated the driver sees it with a config interrupt. */
  setLink(up: boolean): void {
    const d = this.s;
    if (up === d.linkUp) return;
    d.linkUp = up;
    const s = d.cfgView.getUint16(NetCfg.STATUS, true);
    d.cfgView.setUint16(NetCfg.STATUS, up ? s | NetStatus.LINK_UP : s & ~NetStatus.LINK_UP, true);
    if (d.ctx && d.f.status) d.ctx.configChanged();
  }

  /** Ask the driver to announce itself (after a migration); only with GUEST_ANNOUNCE negotiated. Returns whether it was asked. */
  requestAnnounce(): boolean {
    const d = this.s;
    if (!d.ctx || !d.f.announce || !d.f.status) return false;
    const s = d.cfgView.getUint16(NetCfg.STATUS, true);
    d.cfgView.setUint16(NetCfg.STATUS, s | NetStatus.ANNOUNCE, true);
    d.ctx.configChanged();
    return true;
  }

  get activePairs(): number {
    return this.s.curPairs;
  }

  /** A frame arrives from the network (rx.ts). */
  receive(wf: WireFrame): void {
    receiveFrame(this.s, wf);
  }

  // ------------------------------------------------------------------ VirtioDeviceModel

  queueMaxSize(index: number): number {
    return index >= 0 && index < this.numQueues ? this.s.queueSize : 0;
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    return readConfigBytes(this.s.config, offset, size);
  }

  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    // net.driver.1: the net config space is read-only for the driver; the write is ignored.
    this.s.violate('net.driver.1', `config write of ${size} bytes at ${offset} (value ${value >>> 0})`);
  }

  acceptFeatures(features: bigint): boolean {
    const dep = netFeatureDependencyError(features);
    if (dep) {
      this.s.violate('features.driver.2', dep);
      return false;
    }
    return true;
  }

  activate(ctx: DeviceContext): void {
    const d = this.s;
    d.ctx = ctx;
    d.f = negotiatedFlags(ctx.features);
    d.hdrLen = netHdrSize(ctx.features);
    d.rxCsum = d.f.guestCsum;
    d.rxTso4 = d.f.guestTso4 && d.f.guestCsum;
    d.rxTso6 = d.f.guestTso6 && d.f.guestCsum;
    d.rxEcn = d.f.guestEcn;
    d.rxUso4 = d.f.guestUso4 && d.f.guestCsum;
    d.rxUso6 = d.f.guestUso6 && d.f.guestCsum;
    d.rxTunnel = d.f.guestTunnel;
    d.ctrlIndex = d.f.ctrlVq ? (d.f.mq ? 2 * d.maxPairs : 2) : -1;
    // net.device.97: receiveq1 only until the driver enables more pairs.
    d.curPairs = 1;
  }

  reset(): void {
    this.s.ctx = null;
    this.s.clearState();
  }

  queueReset(index: number): void {
    const d = this.s;
    // The core detached the ring: chains we hold are gone with it.
    if (d.stash[index]) d.stash[index] = [];
    if (d.backlog[index]) d.backlog[index] = [];
    if (index % 2 === 0 && index < 2 * d.maxPairs) d.rxResetting[index] = true;
    const c = d.coal[index];
    if (c) {
      if (c.timer) c.timer.cancelled = true;
      // net.device.109 / net.device.110: back to the TX_SET / RX_SET values (0 when never set).
      const g = index % 2 === 1 ? d.coalTx : d.coalRx;
      d.coal[index] = { maxPackets: g.maxPackets, maxUsecs: g.maxUsecs, count: 0, timer: null };
    }
  }

  queueNotify(index: number): void {
    const d = this.s;
    const ctx = d.ctx;
    if (!ctx) return;
    if (index === d.ctrlIndex) {
      processCtrl(d, ctx.queue(index));
      return;
    }
    if (index < 0 || index >= 2 * d.maxPairs) return;
    d.rxResetting[index] = false;
    d.qstats[index]!.notifications = add64(d.qstats[index]!.notifications, 1);
    if (index % 2 === 1) processTx(d, index);
    else drain(d, index);
  }
}
