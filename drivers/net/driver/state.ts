/**
 * virtio-net driver: the driver's state, shared by every other file of driver/, and the probe
 * that fills it once the device is set up — spec "Device configuration layout" (the MAC,
 * net.driver.3/.4; status, net.driver.5/.6; speed and duplex, net.driver.11; mtu) and "Setting Up
 * Receive Buffers" (sizes, net.driver.8, .63, .64; buffers posted on every receive queue,
 * net.driver.67). Also `deviceError`: a device breaking a statement is recorded, with its id.
 */
import type { GuestPlatform } from '../../../spec-refs/platform/platform.ts';
import type { Virtqueue } from '../../core/virtqueue.ts';
import type { VirtioDriverDevice } from '../../core/device.ts';
import { NetF, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { ETH_HLEN, HashTunnel, NetCfg, NetFx, NetStatus, netHdrSize } from '../../../spec-refs/abi/net.ts';
import type { NetDriverOptions } from './init.ts';

export interface RxFrame {
  readonly data: Uint8Array;
  /** Receive queue pair it arrived on. */
  readonly pair: number;
  readonly flags: number;
  readonly gsoType: number;
  readonly gsoSize: number;
  /** Valid only with NEEDS_CSUM (net.driver.71). */
  readonly csumStart: number;
  readonly csumOffset: number;
  readonly numBuffers: number;
  /** With HASH_REPORT. */
  readonly hashValue: number;
  readonly hashReport: number;
  /** UDP-tunnel GSO only (net.driver.76: 0 otherwise): outer UDP and inner network header offsets. */
  readonly outerTh: number;
  readonly innerNh: number;
  /** With OUT_NET_HEADER and a nonzero field only (net.driver.70: 0 otherwise): where the outer network header starts. */
  readonly outerNh: number;
  /** With RSC_EXT and RSC_INFO (0 otherwise): TCP segments coalesced into this frame, duplicate ACKs among them. */
  readonly rscSegments: number;
  readonly rscDupAcks: number;
}

export interface DeviceErrorRecord {
  readonly id: string;
  readonly detail: string;
}

export interface RxBuf {
  readonly addr: number;
  readonly len: number;
}

export interface TxSlot {
  readonly addr: number;
  readonly len: number;
  /** Allocated for this frame only (freed on completion). */
  readonly big: boolean;
}

export interface CtrlPending {
  done: boolean;
  ack: number;
  len: number;
  readonly buf: number;
  readonly resultLen: number;
  readonly writableOff: number;
}

const MAX_DEVICE_ERRORS = 256;

export class NetDriverState {
  readonly dev: VirtioDriverDevice;
  readonly platform: GuestPlatform;
  readonly features: bigint;
  readonly hdrLen: number;
  readonly mac: Uint8Array;
  readonly mtu: number;
  /** HASH_TUNNEL: supported_tunnel_types, with bits the spec does not define cleared (net.driver.80); 0 without the feature. */
  readonly supportedTunnelTypes: number;
  maxRssCtx = -1;
  readonly rssCtx = new Set<number>();
  readonly maxPairs: number;
  /** Pairs set up; `activePairs` are in use (VQ_PAIRS_SET). */
  readonly pairs: number;
  activePairs = 1;
  readonly rxBufferSize: number;
  readonly ctrlIndex: number;
  readonly deviceErrors: DeviceErrorRecord[] = [];
  deviceErrorCount = 0;
  /** Counters. */
  readonly stats = { txFrames: 0, txSegmentsSoftware: 0, rxFrames: 0, rxDropped: 0, napiPolls: 0, refills: 0, ctrlCommands: 0, announces: 0 };
  linkUp = true;
  speed = 0xffffffff;
  duplex = 0xff;

  readonly f: { csum: boolean; guestCsum: boolean; tso4: boolean; tso6: boolean; mrg: boolean; status: boolean; ctrl: boolean; mq: boolean; mtu: boolean; announce: boolean; hashReport: boolean; guestTso4: boolean; guestTso6: boolean; hostEcn: boolean; guestEcn: boolean; hostUso: boolean; guestUso4: boolean; guestUso6: boolean; hostTunnel: boolean; hostTunnelCsum: boolean; guestTunnel: boolean; guestTunnelCsum: boolean; outNet: boolean; rscExt: boolean };
  rxq: Virtqueue<RxBuf>[] = [];
  /** Every receive buffer allocated per pair (reposted after a queue reset). */
  readonly rxBufs: RxBuf[][] = [];
  txq: Virtqueue<TxSlot>[] = [];
  readonly txPool: number[][] = [];
  readonly txSlotSize: number;
  ctrlq: Virtqueue<CtrlPending> | null = null;
  callback: ((f: RxFrame) => void) | null = null;
  readonly rxQueue: RxFrame[] = [];
  readonly rxQueueLimit: number;
  readonly napiBudget: number;
  /** Mergeable receive: a frame being assembled per queue. */
  readonly partial: ({ parts: Uint8Array[]; need: number; hdr: Uint8Array; lastLen: number; lastPosted: number } | null)[] = [];
  inPoll = false;
  announcePending = false;
  readonly announceFrames: (() => Uint8Array[]) | undefined;
  broken = false;
  ctrlBusy = false;
  /** Data queues in the middle of a reset (not polled). */
  readonly resetting = new Set<number>();
  /** The NAPI poll (rx.ts), set by VirtioNetDriver: transmit and control waits service the device through it. */
  poll: () => number = () => 0;

  constructor(dev: VirtioDriverDevice, opts: NetDriverOptions, maxPairs: number, pairs: number) {
    this.dev = dev;
    this.platform = dev.platform;
    this.features = dev.features;
    const has = (b: number) => hasFeature(dev.features, b);
    this.f = {
      csum: has(NetF.CSUM), guestCsum: has(NetF.GUEST_CSUM), tso4: has(NetF.HOST_TSO4), tso6: has(NetF.HOST_TSO6), mrg: has(NetF.MRG_RXBUF),
      status: has(NetF.STATUS), ctrl: has(NetF.CTRL_VQ), mq: has(NetF.MQ), mtu: has(NetF.MTU), announce: has(NetF.GUEST_ANNOUNCE),
      hashReport: has(NetF.HASH_REPORT), guestTso4: has(NetF.GUEST_TSO4), guestTso6: has(NetF.GUEST_TSO6),
      hostEcn: has(NetF.HOST_ECN), guestEcn: has(NetF.GUEST_ECN),
      hostUso: has(NetF.HOST_USO), guestUso4: has(NetF.GUEST_USO4), guestUso6: has(NetF.GUEST_USO6),
      hostTunnel: has(NetFx.HOST_UDP_TUNNEL_GSO), hostTunnelCsum: has(NetFx.HOST_UDP_TUNNEL_GSO_CSUM), guestTunnel: has(NetFx.GUEST_UDP_TUNNEL_GSO), outNet: has(NetFx.OUT_NET_HEADER), rscExt: has(NetF.RSC_EXT),
      guestTunnelCsum: has(NetFx.GUEST_UDP_TUNNEL_GSO_CSUM),
    };
    this.hdrLen = netHdrSize(dev.features);
    this.maxPairs = maxPairs;
    this.pairs = pairs;
    this.ctrlIndex = this.f.ctrl ? (this.f.mq ? 2 * maxPairs : 2) : -1;
    // net.driver.3 / net.driver.4: the device's MAC, or a locally administered unicast one.
    if (has(NetF.MAC)) {
      this.mac = new Uint8Array(6);
      for (let i = 0; i < 6; i++) this.mac[i] = dev.config8(NetCfg.MAC + i);
    } else {
      this.mac = (opts.mac ?? new Uint8Array([0x02, 0x00, 0x00, 0x00, 0x00, 0x01])).slice(0, 6);
      this.mac[0] = (this.mac[0]! | 0x02) & ~0x01;
    }
    this.mtu = this.f.mtu ? dev.config16(NetCfg.MTU) : 1500;
    this.supportedTunnelTypes = has(NetF.HASH_TUNNEL) ? dev.config32(NetCfg.SUPPORTED_TUNNEL_TYPES) & HashTunnel.DEFINED : 0;
    this.readStatus();
    // net.driver.8, .63, .64: receive buffers big enough for what the device may deliver.
    const frameMax = Math.max(this.mtu + ETH_HLEN + 4, 1518);
    const gsoRx = this.f.guestTso4 || this.f.guestTso6;
    const need = this.f.mrg ? this.hdrLen + 1518 : gsoRx ? this.hdrLen + 65535 + ETH_HLEN + 4 : this.hdrLen + frameMax;
    this.rxBufferSize = Math.max(opts.rxBufferSize ?? need, this.f.mrg ? this.hdrLen : 0);
    this.txSlotSize = this.hdrLen + frameMax;
    this.rxQueueLimit = opts.rxQueueLimit ?? 4096;
    this.napiBudget = opts.napiBudget ?? 64;
    this.announceFrames = opts.announce;
    for (let p = 0; p < pairs; p++) {
      this.rxq.push(dev.queue<RxBuf>(2 * p));
      this.txq.push(dev.queue<TxSlot>(2 * p + 1));
      this.partial.push(null);
      this.txPool.push([]);
    }
    if (this.ctrlIndex >= 0) this.ctrlq = dev.queue<CtrlPending>(this.ctrlIndex);
    // Post receive buffers (net.driver.67: on every receive queue to be used).
    // Big (non-mergeable GSO) buffers: a smaller pool by default (64 KiB each).
    const want = opts.rxBuffers ?? (this.rxBufferSize > 16384 ? 32 : undefined);
    for (let p = 0; p < pairs; p++) {
      const q = this.rxq[p]!;
      const n = Math.min(want ?? q.size, q.size);
      this.rxBufs.push([]);
      for (let i = 0; i < n; i++) {
        const addr = this.platform.dma.alloc(this.rxBufferSize, 16);
        const b = { addr, len: this.rxBufferSize };
        this.rxBufs[p]!.push(b);
        if (!q.add([], [{ addr, len: this.rxBufferSize }], b)) break;
      }
      q.kick();
      const tq = this.txq[p]!;
      for (let i = 0; i < tq.size; i++) this.txPool[p]!.push(this.platform.dma.alloc(this.txSlotSize, 16));
    }
  }

  deviceError(id: string, detail: string): void {
    this.deviceErrorCount++;
    if (this.deviceErrors.length < MAX_DEVICE_ERRORS) this.deviceErrors.push({ id, detail });
  }

  readStatus(): void {
    // net.driver.5 / net.driver.6: link from bit 0 with STATUS, else up.
    if (this.f.status) {
      const s = this.dev.config16(NetCfg.STATUS);
      this.linkUp = (s & NetStatus.LINK_UP) !== 0;
      if (s & NetStatus.ANNOUNCE && this.f.announce) this.announcePending = true;
    }
    if (hasFeature(this.features, NetF.SPEED_DUPLEX)) {
      // net.driver.11: out-of-range values mean unknown.
      const sp = this.dev.config32(NetCfg.SPEED);
      this.speed = sp > 0x7fffffff ? 0xffffffff : sp;
      const du = this.dev.config8(NetCfg.DUPLEX);
      this.duplex = du === 0 || du === 1 ? du : 0xff;
    }
  }
}
