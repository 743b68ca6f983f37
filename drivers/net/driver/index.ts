/**
 * The reference virtio-net driver (device-types/net/description.tex at v1.4-cs01), over any
 * VirtioTransport and either ring layout, through VirtioDriverDevice.
 *
 * - Transmit: `send(frame, offload?)` writes the header the negotiated features call for, asks
 *   the device for checksum / TCP segmentation offload when negotiated and does the work in
 *   software otherwise.
 * - Receive: frames reach an `onReceive` callback, or wait in a bounded queue for `receive()` /
 *   `waitReceive()`. Interrupts are handled NAPI-style: the receive queues' interrupts are
 *   suppressed while the driver polls, and re-enabled (with a re-check for buffers that slipped
 *   in meanwhile) once the queue is empty. Each used buffer is reposted at once, so the device
 *   never waits long for receive buffers.
 * - Control queue: every command with a bounded wait; typed helpers for each class.
 *
 * The driver never trusts the device: used lengths, num_buffers, header flags and GSO types are
 * checked against what it posted and negotiated; violations drop the frame and are recorded
 * (`deviceErrors`) with the statement they break.
 *
 * This file is the driver's face: init, the public API, per-queue reset. Each method hands over
 * to the file of its part of the spec (each names its statement ids): init.ts (features,
 * options, negotiation), state.ts (the state and the probe), rx.ts (receive, NAPI poll), tx.ts,
 * ctrl.ts (the control queue, ANNOUNCE, GUEST_OFFLOADS), filter.ts (RX modes, MAC and VLAN
 * filters), steering.ts (MQ, RSS, RSS contexts, hashing), coalesce.ts, stats.ts.
 */
import type { GuestPlatform } from '../../../spec-refs/platform/platform.ts';
import type { VirtioTransport } from '../../transport/transport.ts';
import type { Virtqueue } from '../../core/virtqueue.ts';
import type { VirtioDriverDevice } from '../../core/device.ts';
import { SplitVirtqueue } from '../../core/split.ts';
import { UsageError } from '../../../spec-refs/errors.ts';
import { F, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { negotiate, type NetDriverOptions } from './init.ts';
import { NetDriverState, type DeviceErrorRecord, type RxBuf, type RxFrame, type TxSlot } from './state.ts';
import * as rx from './rx.ts';
import * as tx from './tx.ts';
import * as ctrl from './ctrl.ts';
import * as filter from './filter.ts';
import * as steering from './steering.ts';
import * as coalesce from './coalesce.ts';
import * as stats from './stats.ts';
import type { TxOffload } from './tx.ts';
import type { CtrlResult } from './ctrl.ts';
import type { RssConfig } from './steering.ts';

export { NET_DRIVER_FEATURES, type NetDriverOptions } from './init.ts';
export type { DeviceErrorRecord, RxFrame } from './state.ts';
export { completeReceived } from './rx.ts';
export { finishChecksum, type TxOffload } from './tx.ts';
export type { CtrlResult } from './ctrl.ts';
export type { RssConfig } from './steering.ts';

export class VirtioNetDriver {
  readonly dev: VirtioDriverDevice;
  readonly platform: GuestPlatform;
  readonly features: bigint;
  readonly hdrLen: number;
  readonly mac: Uint8Array;
  readonly mtu: number;
  /** HASH_TUNNEL: supported_tunnel_types, with bits the spec does not define cleared (net.driver.80); 0 without the feature. */
  readonly supportedTunnelTypes: number;
  readonly maxPairs: number;
  /** Pairs set up; `activePairs` are in use (VQ_PAIRS_SET). */
  readonly pairs: number;
  readonly rxBufferSize: number;
  readonly ctrlIndex: number;
  readonly deviceErrors: DeviceErrorRecord[];
  /** Counters. */
  readonly stats: NetDriverState['stats'];
  /** Everything the driver knows; the files of driver/ work on it. */
  private readonly s: NetDriverState;

  private constructor(dev: VirtioDriverDevice, opts: NetDriverOptions, maxPairs: number, pairs: number) {
    const s = new NetDriverState(dev, opts, maxPairs, pairs);
    this.s = s;
    this.dev = s.dev;
    this.platform = s.platform;
    this.features = s.features;
    this.hdrLen = s.hdrLen;
    this.mac = s.mac;
    this.mtu = s.mtu;
    this.supportedTunnelTypes = s.supportedTunnelTypes;
    this.maxPairs = s.maxPairs;
    this.pairs = s.pairs;
    this.rxBufferSize = s.rxBufferSize;
    this.ctrlIndex = s.ctrlIndex;
    this.deviceErrors = s.deviceErrors;
    this.stats = s.stats;
    s.poll = () => rx.poll(s);
    dev.onUsed(() => rx.onUsedInterrupt(s));
    dev.onConfigChange(() => s.readStatus());
  }

  /** Initialise the device and the driver (status_init.driver.6, net specifics on top). */
  static init(platform: GuestPlatform, transport: VirtioTransport, opts: NetDriverOptions = {}): VirtioNetDriver {
    const { dev, maxPairs, pairs } = negotiate(platform, transport, opts);
    const drv = new VirtioNetDriver(dev, opts, maxPairs, pairs);
    // net.driver.89/.90: the extra pairs are set up; now enable them.
    if (pairs > 1) drv.setPairs(pairs);
    return drv;
  }

  /** Pairs in use (VQ_PAIRS_SET, or max_tx of RSS_CONFIG). */
  get activePairs(): number {
    return this.s.activePairs;
  }

  get deviceErrorCount(): number {
    return this.s.deviceErrorCount;
  }

  get linkUp(): boolean {
    return this.s.linkUp;
  }

  get speed(): number {
    return this.s.speed;
  }

  get duplex(): number {
    return this.s.duplex;
  }

  // ------------------------------------------------------------------ receive (rx.ts)

  /** Deliver frames to `fn` as they arrive (frames already queued are delivered first). */
  onReceive(fn: ((f: RxFrame) => void) | null): void {
    rx.onReceive(this.s, fn);
  }

  /** Handle everything the device completed (receive, transmit, control); returns frames received. */
  poll(): number {
    return rx.poll(this.s);
  }

  /** The next received frame, or null (polls the device first). */
  receive(): RxFrame | null {
    return rx.receive(this.s);
  }

  /** Wait (bounded) for the next received frame. */
  waitReceive(timeoutNs?: number): RxFrame {
    return rx.waitReceive(this.s, timeoutNs);
  }

  /** Let `ns` of target time pass while servicing the device (interrupts handled as they come). */
  run(ns: number): void {
    rx.run(this.s, ns);
  }

  // ------------------------------------------------------------------ transmit (tx.ts)

  /**
   * Transmit one Ethernet frame. With `offload.csum` the checksum at start+offset holds the
   * pseudo-header sum; with `offload.gso` the frame is a TCP super-frame. Offloads the device did
   * not offer are done here. Returns false when the transmit ring is full (nothing sent).
   */
  send(frame: Uint8Array, offload?: TxOffload): boolean {
    return tx.send(this.s, frame, offload);
  }

  /** Wait until every transmitted frame was completed by the device. */
  flushTx(timeoutNs?: number): void {
    tx.flushTx(this.s, timeoutNs);
  }

  // ------------------------------------------------------------------ control queue (ctrl.ts and the files of each class)

  /**
   * Send a control command and wait (bounded) for the device's answer. `resultLen` bytes of
   * command-specific result follow the ack.
   */
  command(cls: number, cmd: number, data?: Uint8Array, resultLen?: number): CtrlResult {
    return ctrl.command(this.s, cls, cmd, data, resultLen);
  }

  /** A command that must succeed: RequestError when the device says VIRTIO_NET_ERR. Kept on the class (protected: tests reach it as `driver['mustCommand']` to play a driver going around the checks). */
  protected mustCommand(cls: number, cmd: number, data: Uint8Array, what: string, resultLen = 0): Uint8Array {
    return ctrl.mustCommand(this.s, cls, cmd, data, what, resultLen);
  }

  /** VIRTIO_NET_CTRL_RX modes (net.driver.81/.82). */
  setRxMode(cmd: number, on: boolean): void {
    filter.setRxMode(this.s, cmd, on);
  }

  setPromisc(on: boolean): void {
    filter.setPromisc(this.s, on);
  }

  setAllMulti(on: boolean): void {
    filter.setAllMulti(this.s, on);
  }

  /** MAC filter table (net.driver.83/.85). */
  setMacTable(unicast: readonly Uint8Array[], multicast: readonly Uint8Array[]): void {
    filter.setMacTable(this.s, unicast, multicast);
  }

  /** Change the MAC address (net.driver.84). */
  setMac(mac: Uint8Array): void {
    filter.setMac(this.s, mac);
  }

  vlan(add: boolean, vid: number): void {
    filter.vlan(this.s, add, vid);
  }

  /**
   * Inner-header hashing for these encapsulation types (HashTunnel bits; 0 turns it off). Bits the
   * device does not support, or the spec does not define, are refused here and never sent (net.driver.78/.79/.80).
   */
  setHashTunnel(types: number): void {
    steering.setHashTunnel(this.s, types);
  }

  /** Use `n` queue pairs (net.driver.89/.90). */
  setPairs(n: number): void {
    steering.setPairs(this.s, n);
  }

  /** RSS configuration (net.driver.93-.97): `table` holds pair numbers. */
  setRss(cfg: RssConfig): void {
    steering.setRss(this.s, cfg);
  }

  /** max_rss_contexts (RSS_CONTEXT, VIRTNET_RSS_CTX_CTRL_CAP_GET); asked once. */
  rssContextMax(): number {
    return steering.rssContextMax(this.s);
  }

  /** RSS contexts the device has accepted (cleared by shutdown with the device). */
  get rssContexts(): readonly number[] {
    return [...this.s.rssCtx];
  }

  /** Add (or, `modify`, change) RSS context `id` (net.driver.99: 1..max_rss_contexts). */
  setRssContext(id: number, cfg: RssConfig, modify = false): void {
    steering.setRssContext(this.s, id, cfg, modify);
  }

  deleteRssContext(id: number): void {
    steering.deleteRssContext(this.s, id);
  }

  /** Hash reporting without RSS (MQ_HASH_CONFIG). */
  setHashConfig(hashTypes: number, key: Uint8Array): void {
    steering.setHashConfig(this.s, hashTypes, key);
  }

  /** Enable a subset of the negotiated guest offloads (net.driver.101). */
  setGuestOffloads(features: bigint): void {
    ctrl.setGuestOffloads(this.s, features);
  }

  /** Notification coalescing for all transmit or all receive queues (net.driver.103). */
  setCoalescing(dir: 'tx' | 'rx', maxPackets: number, maxUsecs: number): void {
    coalesce.setCoalescing(this.s, dir, maxPackets, maxUsecs);
  }

  /** Per-queue coalescing (net.driver.102/.104). */
  setQueueCoalescing(vq: number, maxPackets: number, maxUsecs: number): void {
    coalesce.setQueueCoalescing(this.s, vq, maxPackets, maxUsecs);
  }

  /** Read a queue's coalescing parameters; null when the device answers ERR (net.driver.105: values disregarded). */
  getQueueCoalescing(vq: number): { maxPackets: number; maxUsecs: number } | null {
    return coalesce.getQueueCoalescing(this.s, vq);
  }

  /** Statistics types the device supports (STATS_QUERY), as bit numbers. */
  statsQuery(): number[] {
    return stats.statsQuery(this.s);
  }

  /** Statistics of one queue (net.driver.106-.108); the result buffer is sized for every reply. */
  statsGet(vq: number, types: readonly number[]): { type: number; vq: number; counters: number[] }[] {
    return stats.statsGet(this.s, vq, types);
  }

  // ------------------------------------------------------------------ queue reset, shutdown

  /**
   * Reset one data queue on its own (VIRTIO_F_RING_RESET) and bring it back with a fresh ring:
   * receive buffers are reposted; transmit frames in flight are lost. `during` runs while the
   * queue is reset and not yet re-enabled. Split rings only.
   */
  resetQueue(index: number, during?: () => void): void {
    const drv = this.s;
    if (!hasFeature(drv.features, F.RING_RESET) || !drv.dev.transport.resetQueue) throw new UsageError('net.queue_reset', 'VIRTIO_F_RING_RESET not negotiated or not supported by the transport');
    const pair = index >> 1;
    if (pair >= drv.pairs) throw new UsageError('net.queue_reset', 'not a data queue of this driver', { seen: `${index}` });
    const old = drv.dev.queue<unknown>(index);
    if (old.layout !== 'split') throw new UsageError('net.queue_reset', 'queue reset is implemented for split rings only');
    const t = drv.dev.transport;
    t.resetQueue!(index);
    old.destroy();
    drv.resetting.add(index);
    try {
      during?.();
    } finally {
      drv.resetting.delete(index);
    }
    const vq = new SplitVirtqueue<unknown>(drv.platform.mem, drv.platform.dma, {
      index,
      size: old.size,
      eventIdx: hasFeature(drv.features, F.EVENT_IDX),
      indirect: hasFeature(drv.features, F.INDIRECT_DESC),
      inOrder: hasFeature(drv.features, F.IN_ORDER),
      notificationData: hasFeature(drv.features, F.NOTIFICATION_DATA),
      notify: (data?: number) => t.notify(index, data),
    });
    t.setupQueue(index, vq.addresses);
    (drv.dev.queues as Map<number, unknown>).set(index, vq);
    if (index % 2 === 0) {
      drv.partial[pair] = null;
      drv.rxq[pair] = vq as unknown as Virtqueue<RxBuf>;
      for (const b of drv.rxBufs[pair]!) vq.add([], [{ addr: b.addr, len: b.len }], b);
      vq.kick();
    } else {
      drv.txq[pair] = vq as unknown as Virtqueue<TxSlot>;
    }
  }

  /** Reset the device and free the queues. */
  shutdown(): void {
    this.dev.shutdown();
  }
}
