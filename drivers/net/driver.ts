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
 */
import type { GuestPlatform } from '../../spec-refs/platform/platform.ts';
import type { VirtioTransport } from '../transport/transport.ts';
import type { DmaBuffer, Virtqueue } from '../core/virtqueue.ts';
import { VirtioDriverDevice } from '../core/device.ts';
import { SplitVirtqueue } from '../core/split.ts';
import { DeviceMisbehaviourError, RequestError, TimeoutError, UsageError } from '../../spec-refs/errors.ts';
import { F, NetF, bit, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { ETH_HLEN, HashTunnel, NetCfg, NetCtrl, NetFx, NetHdr, NetStatus, StatsCounters, netHdrSize, pruneNetFeatures } from '../../spec-refs/abi/net.ts';
import { gsoLayers, gsoSegment, pseudoHeaderFolded, vxlanOffsets, type TunnelOffsets } from '../../spec-refs/abi/gso.ts';
import { IpProto, csumAdd, csumFold, parseFrame, writeBe16, type FrameInfo } from '../../spec-refs/abi/packet.ts';

/** Everything this driver knows how to use. */
export const NET_DRIVER_FEATURES: bigint = [
  NetF.CSUM, NetF.GUEST_CSUM, NetF.CTRL_GUEST_OFFLOADS, NetF.MTU, NetF.MAC, NetF.GUEST_TSO4, NetF.GUEST_TSO6,
  NetF.HOST_TSO4, NetF.HOST_TSO6, NetF.MRG_RXBUF, NetF.STATUS, NetF.CTRL_VQ, NetF.CTRL_RX, NetF.CTRL_VLAN,
  NetF.CTRL_RX_EXTRA, NetF.GUEST_ANNOUNCE, NetF.MQ, NetF.CTRL_MAC_ADDR, NetF.DEVICE_STATS, NetF.VQ_NOTF_COAL,
  NetF.NOTF_COAL, NetF.HASH_REPORT, NetF.RSS, NetF.SPEED_DUPLEX, NetF.GUEST_ECN, NetF.HOST_ECN, NetF.GUEST_HDRLEN,
  NetF.HOST_USO, NetF.GUEST_USO4, NetF.GUEST_USO6, NetFx.HOST_UDP_TUNNEL_GSO, NetFx.HOST_UDP_TUNNEL_GSO_CSUM, NetFx.GUEST_UDP_TUNNEL_GSO, NetFx.GUEST_UDP_TUNNEL_GSO_CSUM,
  F.VERSION_1, F.EVENT_IDX, F.INDIRECT_DESC, F.RING_PACKED, F.RING_RESET,
].reduce((s, b) => s | bit(b), 0n);

export interface NetDriverOptions {
  /** Features the driver may accept (default NET_DRIVER_FEATURES); intersected with the offer. */
  features?: bigint;
  /** Queue pairs to use (default: all the device has, at most 8). */
  pairs?: number;
  queueSize?: number;
  /** Receive buffer size in bytes (header included). Default: what the negotiated features need. */
  rxBufferSize?: number;
  /** Receive buffers to keep posted per queue (default: queue size). */
  rxBuffers?: number;
  /** MAC to use when the device does not provide one (VIRTIO_NET_F_MAC not negotiated). */
  mac?: Uint8Array;
  /** Frames kept for receive() when no callback is set (beyond: dropped). Default 4096. */
  rxQueueLimit?: number;
  /** Frames handled per NAPI poll round before interrupts are reconsidered. Default 64. */
  napiBudget?: number;
  timeoutNs?: number;
  /** Called when the device asks for an announcement (VIRTIO_NET_S_ANNOUNCE): return frames to send (e.g. gratuitous ARP). */
  announce?: () => Uint8Array[];
}

export interface TxOffload {
  /** Let the device complete the checksum from `start`, storing it at start+offset (pseudo-header already in place). */
  csum?: { start: number; offset: number };
  /**
   * Segmentation: gso_type GSO_TCPV4/GSO_TCPV6 (TCP) or GSO_UDP_L4 (UDP) and the payload per segment.
   * `tunnel`: the frame is a UDP tunnel (true: VXLAN, found by parsing; or explicit offsets) and the
   * type is the inner packet's.
   */
  gso?: { type: number; size: number; tunnel?: boolean | TunnelOffsets };
  /** Transmit queue pair (default: by flow hash). */
  pair?: number;
}

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

/** An RSS configuration (RSS_CONFIG or an RSS context): `table` and `unclassified` hold pair numbers. */
export interface RssConfig {
  hashTypes: number;
  table: readonly number[];
  unclassified?: number;
  key: Uint8Array;
  maxTx?: number;
}

export interface DeviceErrorRecord {
  readonly id: string;
  readonly detail: string;
}

interface RxBuf {
  readonly addr: number;
  readonly len: number;
}

interface TxSlot {
  readonly addr: number;
  readonly len: number;
  /** Allocated for this frame only (freed on completion). */
  readonly big: boolean;
}

interface CtrlPending {
  done: boolean;
  ack: number;
  len: number;
  readonly buf: number;
  readonly resultLen: number;
  readonly writableOff: number;
}

export interface CtrlResult {
  readonly ack: number;
  readonly result: Uint8Array;
}

const MAX_DEVICE_ERRORS = 256;

export class VirtioNetDriver {
  readonly dev: VirtioDriverDevice;
  readonly platform: GuestPlatform;
  readonly features: bigint;
  readonly hdrLen: number;
  readonly mac: Uint8Array;
  readonly mtu: number;
  /** HASH_TUNNEL: supported_tunnel_types, with bits the spec does not define cleared (net.driver.80); 0 without the feature. */
  readonly supportedTunnelTypes: number;
  private maxRssCtx = -1;
  private readonly rssCtx = new Set<number>();
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

  private readonly f: { csum: boolean; guestCsum: boolean; tso4: boolean; tso6: boolean; mrg: boolean; status: boolean; ctrl: boolean; mq: boolean; mtu: boolean; announce: boolean; hashReport: boolean; guestTso4: boolean; guestTso6: boolean; hostEcn: boolean; guestEcn: boolean; hostUso: boolean; guestUso4: boolean; guestUso6: boolean; hostTunnel: boolean; hostTunnelCsum: boolean; guestTunnel: boolean; guestTunnelCsum: boolean; outNet: boolean; rscExt: boolean };
  private rxq: Virtqueue<RxBuf>[] = [];
  /** Every receive buffer allocated per pair (reposted after a queue reset). */
  private readonly rxBufs: RxBuf[][] = [];
  private txq: Virtqueue<TxSlot>[] = [];
  private readonly txPool: number[][] = [];
  private readonly txSlotSize: number;
  private ctrlq: Virtqueue<CtrlPending> | null = null;
  private callback: ((f: RxFrame) => void) | null = null;
  private readonly rxQueue: RxFrame[] = [];
  private readonly rxQueueLimit: number;
  private readonly napiBudget: number;
  /** Mergeable receive: a frame being assembled per queue. */
  private readonly partial: ({ parts: Uint8Array[]; need: number; hdr: Uint8Array; lastLen: number; lastPosted: number } | null)[] = [];
  private inPoll = false;
  private announcePending = false;
  private readonly announceFrames: (() => Uint8Array[]) | undefined;
  private broken = false;

  private constructor(dev: VirtioDriverDevice, opts: NetDriverOptions, maxPairs: number, pairs: number) {
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
    dev.onUsed(() => this.onUsedInterrupt());
    dev.onConfigChange(() => this.onConfigInterrupt());
  }

  /** Initialise the device and the driver (status_init.driver.6, net specifics on top). */
  static init(platform: GuestPlatform, transport: VirtioTransport, opts: NetDriverOptions = {}): VirtioNetDriver {
    const wanted = opts.features ?? NET_DRIVER_FEATURES;
    let maxPairs = 1;
    let pairs = 1;
    let queues: number[] = [];
    const initOpts = {
      features: wanted,
      queueSize: opts.queueSize ?? 256,
      timeoutNs: opts.timeoutNs,
      // features.driver.2: never accept a feature without its prerequisites.
      select: (chosen: bigint) => pruneNetFeatures(chosen),
      check: (d: VirtioDriverDevice) => {
        const has = (b: number) => hasFeature(d.features, b);
        if (has(NetF.MQ)) {
          maxPairs = d.config16(NetCfg.MAX_VIRTQUEUE_PAIRS);
          if (maxPairs < 1 || maxPairs > 0x8000) throw new DeviceMisbehaviourError('net.config.pairs', 'max_virtqueue_pairs out of range', { statements: ['net.device.1'], expected: '1..0x8000', seen: `${maxPairs}` });
        }
        if (has(NetF.MTU)) {
          const mtu = d.config16(NetCfg.MTU);
          if (mtu < 68) throw new DeviceMisbehaviourError('net.config.mtu', 'mtu out of range', { statements: ['net.device.2'], expected: '68..65535', seen: `${mtu}` });
        }
        pairs = Math.max(1, Math.min(maxPairs, opts.pairs ?? Math.min(maxPairs, 8)));
        queues = [];
        for (let p = 0; p < pairs; p++) queues.push(2 * p, 2 * p + 1);
        if (has(NetF.CTRL_VQ)) queues.push(has(NetF.MQ) ? 2 * maxPairs : 2);
      },
      // Read after `check` ran (VirtioDriverDevice reads `queues` once the configuration is known).
      get queues(): number[] {
        return queues;
      },
    };
    const dev = VirtioDriverDevice.init(platform, transport, initOpts);
    const drv = new VirtioNetDriver(dev, opts, maxPairs, pairs);
    // net.driver.89/.90: the extra pairs are set up; now enable them.
    if (pairs > 1) drv.setPairs(pairs);
    return drv;
  }

  // ------------------------------------------------------------------ device errors

  private deviceError(id: string, detail: string): void {
    this.deviceErrorCount++;
    if (this.deviceErrors.length < MAX_DEVICE_ERRORS) this.deviceErrors.push({ id, detail });
  }

  private readStatus(): void {
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

  private onConfigInterrupt(): void {
    this.readStatus();
  }

  // ------------------------------------------------------------------ receive

  /** Deliver frames to `fn` as they arrive (frames already queued are delivered first). */
  onReceive(fn: ((f: RxFrame) => void) | null): void {
    this.callback = fn;
    if (fn) while (this.rxQueue.length) fn(this.rxQueue.shift()!);
  }

  private onUsedInterrupt(): void {
    // NAPI: suppress receive interrupts, poll, re-enable when drained.
    for (const q of this.rxq) q.disableInterrupts();
    this.poll();
  }

  /** Handle everything the device completed (receive, transmit, control); returns frames received. */
  poll(): number {
    if (this.inPoll || this.broken) return 0;
    this.inPoll = true;
    let n = 0;
    try {
      this.stats.napiPolls++;
      for (let p = 0; p < this.rxq.length; p++) {
        const q = this.rxq[p]!;
        if (this.resetting.has(2 * p)) continue;
        for (;;) {
          q.disableInterrupts();
          let round = 0;
          let drained = false;
          while (round < this.napiBudget) {
            const got = this.rxOne(p);
            if (got < 0) {
              drained = true;
              break;
            }
            round += got;
          }
          const part = this.partial[p];
          if (drained && part) {
            // net.device.32: all buffers of a frame are used together; a partial frame means some are missing.
            this.deviceError('net.device.32', `frame with num_buffers ${part.need} but only ${part.parts.length} used so far`);
          }
          n += round;
          this.refillKick(p);
          if (round >= this.napiBudget) continue;
          // Drained: interrupts back on, then look once more (a buffer may have slipped in).
          if (q.enableInterrupts()) break;
        }
      }
      for (let p = 0; p < this.txq.length; p++) if (!this.resetting.has(2 * p + 1)) this.reclaimTx(p);
      this.reapCtrl();
    } catch (e) {
      if (e instanceof DeviceMisbehaviourError) {
        this.broken = true;
        this.deviceError(e.statements[0] ?? 'ring', e.message);
      }
      throw e;
    } finally {
      this.inPoll = false;
    }
    if (this.announcePending && !this.ctrlBusy) this.doAnnounce();
    return n;
  }

  private ctrlBusy = false;
  /** Data queues in the middle of a reset (not polled). */
  private readonly resetting = new Set<number>();

  private refillKick(p: number): void {
    this.rxq[p]!.kick();
  }

  /** Take one used receive buffer of pair `p`; returns frames completed (0 or 1) or -1 when none is pending. */
  private rxOne(p: number): number {
    const q = this.rxq[p]!;
    const u = q.getUsed();
    if (!u) return -1;
    const buf = u.token;
    const len = u.len;
    const mem = this.platform.mem;
    let done = 0;
    const part = this.partial[p];
    if (part) {
      // A continuation buffer of a mergeable frame: data only. Every buffer but the last is full (net.device.31).
      if (part.parts.length > 0 && part.lastLen < part.lastPosted) this.deviceError('net.device.31', `mergeable buffer ${part.parts.length} of ${part.need} filled ${part.lastLen} of ${part.lastPosted} bytes`);
      part.lastLen = len;
      part.lastPosted = buf.len;
      part.parts.push(mem.readBytes(buf.addr, len));
      if (part.parts.length >= part.need) {
        this.partial[p] = null;
        done = this.finishFrame(p, part.hdr, part.parts, part.need);
      }
    } else if (len < this.hdrLen) {
      this.deviceError('net.device.27', `used length ${len} shorter than the ${this.hdrLen}-byte header`);
      this.stats.rxDropped++;
    } else {
      const hdr = mem.readBytes(buf.addr, this.hdrLen);
      const nb = this.hdrLen >= NetHdr.SIZE_BASE ? hdr[NetHdr.OFF_NUM_BUFFERS]! | (hdr[NetHdr.OFF_NUM_BUFFERS + 1]! << 8) : 1;
      const data = mem.readBytes(buf.addr + this.hdrLen, len - this.hdrLen);
      if (!this.f.mrg && this.hdrLen >= NetHdr.SIZE_BASE && nb !== 1) {
        this.deviceError('net.device.29', `num_buffers ${nb} without MRG_RXBUF`);
        this.stats.rxDropped++;
      } else if (this.f.mrg && (nb < 1 || nb > q.size)) {
        this.deviceError('net.device.30', `num_buffers ${nb}`);
        this.stats.rxDropped++;
      } else if (this.f.mrg && nb > 1) {
        this.partial[p] = { parts: [data], need: nb, hdr, lastLen: len, lastPosted: buf.len };
      } else {
        done = this.finishFrame(p, hdr, [data], 1);
      }
    }
    // Repost the buffer at once (the ring never runs dry while frames flow).
    q.add([], [{ addr: buf.addr, len: buf.len }], buf);
    this.stats.refills++;
    return done;
  }

  private finishFrame(p: number, hdr: Uint8Array, parts: Uint8Array[], numBuffers: number): number {
    let data: Uint8Array;
    if (parts.length === 1) data = parts[0]!;
    else {
      let total = 0;
      for (const x of parts) total += x.length;
      data = new Uint8Array(total);
      let o = 0;
      for (const x of parts) {
        data.set(x, o);
        o += x.length;
      }
    }
    const hv = new DataView(hdr.buffer, hdr.byteOffset, hdr.byteLength);
    const flags = hdr[NetHdr.OFF_FLAGS]!;
    const gsoType = hdr[NetHdr.OFF_GSO_TYPE]!;
    const gsoSize = hv.getUint16(NetHdr.OFF_GSO_SIZE, true);
    const csumStart = hv.getUint16(NetHdr.OFF_CSUM_START, true);
    const csumOffset = hv.getUint16(NetHdr.OFF_CSUM_OFFSET, true);
    const drop = (id: string, detail: string): number => {
      this.deviceError(id, detail);
      this.stats.rxDropped++;
      return 0;
    };
    // net.driver.68: unknown flag bits ignored.
    if (!this.f.guestCsum && flags & (NetHdr.F_NEEDS_CSUM | NetHdr.F_DATA_VALID)) return drop('net.device.33', `flags ${flags} without GUEST_CSUM`);
    if (flags & NetHdr.F_RSC_INFO && !this.f.rscExt) return drop('net.device.58', 'RSC_INFO without RSC_EXT');
    // RSC_INFO: csum_start/csum_offset carry coalescing counts; the checksum offsets come from the headers.
    // (on a frame that is not GSO the bit means nothing and is ignored, net.driver.68).
    const rsc = (flags & NetHdr.F_RSC_INFO) !== 0 && (gsoType & 0x1f) !== NetHdr.GSO_NONE;
    if (flags & NetHdr.F_UDP_TUNNEL_CSUM && !this.f.guestTunnelCsum) return drop('net.device.40', 'UDP_TUNNEL_CSUM without GUEST_UDP_TUNNEL_GSO_CSUM');
    const tunnel = gsoType & (NetHdr.GSO_UDP_TUNNEL_IPV4 | NetHdr.GSO_UDP_TUNNEL_IPV6);
    if (tunnel === (NetHdr.GSO_UDP_TUNNEL_IPV4 | NetHdr.GSO_UDP_TUNNEL_IPV6)) return drop('net.driver.75', `gso_type ${gsoType} has both tunnel bits`);
    if (tunnel && (!(flags & NetHdr.F_NEEDS_CSUM) || flags & NetHdr.F_DATA_VALID || (gsoType & 0x1f) === NetHdr.GSO_NONE)) return drop('net.driver.77', `tunnel gso_type ${gsoType} with flags ${flags}`);
    if (tunnel && !this.f.guestTunnel) return drop('net.device.39', `gso_type ${gsoType} without GUEST_UDP_TUNNEL_GSO`);
    let outerTh = 0;
    let innerNh = 0;
    if (tunnel) {
      // net.driver.76: the offsets are read only for tunnel GSO, and checked against the frame.
      outerTh = hv.getUint16(NetHdr.OFF_OUTER_TH, true);
      innerNh = hv.getUint16(NetHdr.OFF_INNER_NH, true);
      const l = gsoLayers(data, { type: gsoType & 0x1f, size: Math.max(1, hv.getUint16(NetHdr.OFF_GSO_SIZE, true)), tunnel: { outerTh, innerNh } });
      if (typeof l === 'string') return drop('net.device.51', `tunnel offsets ${outerTh}/${innerNh}: ${l}`);
      if ((tunnel === NetHdr.GSO_UDP_TUNNEL_IPV4) !== (l.inner.ipVersion === 4)) return drop('net.device.50', `tunnel bit does not match the inner IPv${l.inner.ipVersion} header`);
    }
    let outerNh = 0;
    if (this.f.outNet && this.hdrLen >= NetHdr.OFF_OUTER_NH + 2) {
      // net.driver.69/.70: read only with OUT_NET_HEADER, used only when nonzero; then it must name the IP header.
      const onh = hv.getUint16(NetHdr.OFF_OUTER_NH, true);
      if (onh !== 0) {
        const fi = parseFrame(data);
        if (fi.ipVersion === 0 || fi.l3 !== onh) return drop('net.device.44', `outer_nh_offset ${onh}, network header at ${fi.ipVersion === 0 ? 'none' : fi.l3}`);
        outerNh = onh;
      }
    }
    const base = gsoType & 0x1f;
    if (gsoType & NetHdr.GSO_ECN && !this.f.guestEcn) return drop('net.device.41', 'GSO_ECN without GUEST_ECN');
    if (base !== NetHdr.GSO_NONE) {
      if (base === NetHdr.GSO_TCPV4 && !this.f.guestTso4) return drop('net.device.35', 'GSO_TCPV4 without GUEST_TSO4');
      if (base === NetHdr.GSO_TCPV6 && !this.f.guestTso6) return drop('net.device.37', 'GSO_TCPV6 without GUEST_TSO6');
      if (base === NetHdr.GSO_UDP_L4) {
        const v6 = tunnel ? tunnel === NetHdr.GSO_UDP_TUNNEL_IPV6 : parseFrame(data).ipVersion === 6;
        if (!(v6 ? this.f.guestUso6 : this.f.guestUso4)) return drop('net.device.38', 'GSO_UDP_L4 without GUEST_USO');
      }
      if (base !== NetHdr.GSO_TCPV4 && base !== NetHdr.GSO_TCPV6 && base !== NetHdr.GSO_UDP_L4) return drop('net.device.36', `gso_type ${gsoType}`);
      if (!(flags & NetHdr.F_NEEDS_CSUM)) return drop('net.device.55', 'GSO without NEEDS_CSUM');
      if (gsoSize === 0) return drop('net.device.56', 'GSO with gso_size 0');
    }
    // net.driver.71: csum fields only with NEEDS_CSUM, and then inside the frame.
    if (flags & NetHdr.F_NEEDS_CSUM && !rsc && csumStart + csumOffset + 2 > data.length) return drop('net.device.48', `csum_start ${csumStart} + csum_offset ${csumOffset} outside ${data.length} bytes`);
    if (this.f.mtu && base === NetHdr.GSO_NONE && data.length > this.mtu + ETH_HLEN + 4) return drop('net.device.5', `frame of ${data.length} bytes, mtu ${this.mtu}`);
    let rscCsum = { start: 0, offset: 0 };
    if (rsc) {
      const l = gsoLayers(data, { type: base, size: Math.max(1, gsoSize), ...(tunnel ? { tunnel: { outerTh, innerNh } } : {}) });
      if (typeof l === 'string') return drop('net.device.57', `RSC frame: ${l}`);
      if (csumStart === 0) return drop('net.device.57', 'RSC_INFO with 0 coalesced segments');
      rscCsum = { start: l.inner.l4, offset: l.inner.proto === 6 ? 16 : 6 };
    }
    const fr: RxFrame = {
      data,
      pair: p,
      flags,
      gsoType,
      gsoSize,
      csumStart: flags & NetHdr.F_NEEDS_CSUM ? (rsc ? rscCsum.start : csumStart) : 0,
      csumOffset: flags & NetHdr.F_NEEDS_CSUM ? (rsc ? rscCsum.offset : csumOffset) : 0,
      numBuffers,
      hashValue: this.f.hashReport ? hv.getUint32(NetHdr.OFF_HASH_VALUE, true) : 0,
      hashReport: this.f.hashReport ? hv.getUint16(NetHdr.OFF_HASH_REPORT, true) : 0,
      outerTh,
      innerNh,
      outerNh,
      rscSegments: rsc ? csumStart : 0,
      rscDupAcks: rsc ? csumOffset : 0,
    };
    this.stats.rxFrames++;
    if (this.callback) this.callback(fr);
    else if (this.rxQueue.length < this.rxQueueLimit) this.rxQueue.push(fr);
    else this.stats.rxDropped++;
    return 1;
  }

  /** The next received frame, or null (polls the device first). */
  receive(): RxFrame | null {
    if (this.rxQueue.length === 0) this.poll();
    return this.rxQueue.shift() ?? null;
  }

  /** Wait (bounded) for the next received frame. */
  waitReceive(timeoutNs = this.dev.timeoutNs): RxFrame {
    let f: RxFrame | null = this.receive();
    if (f) return f;
    this.dev.waitUntil(() => {
      this.poll();
      return (f = this.rxQueue.shift() ?? null) !== null;
    }, 'a received frame', timeoutNs);
    return f!;
  }

  /** Let `ns` of target time pass while servicing the device (interrupts handled as they come). */
  run(ns: number): void {
    const end = this.platform.now() + ns;
    try {
      this.dev.waitUntil(() => {
        this.poll();
        return this.platform.now() >= end;
      }, 'time to pass', ns + 1);
    } catch (e) {
      if (!(e instanceof TimeoutError)) throw e;
    }
  }

  // ------------------------------------------------------------------ transmit

  private reclaimTx(p: number): number {
    const q = this.txq[p]!;
    let n = 0;
    for (let u = q.getUsed(); u; u = q.getUsed()) {
      n++;
      const s = u.token;
      if (s.big) this.platform.dma.free(s.addr);
      else this.txPool[p]!.push(s.addr);
    }
    return n;
  }

  /** The pair a frame goes out on when the caller does not say (net.driver.91/.92: only pairs in use). */
  private pickPair(frame: Uint8Array): number {
    if (this.activePairs <= 1) return 0;
    const info = parseFrame(frame);
    if (info.srcPort < 0) return 0;
    return ((info.srcPort * 31 + info.dstPort) >>> 0) % this.activePairs;
  }

  /**
   * Transmit one Ethernet frame. With `offload.csum` the checksum at start+offset holds the
   * pseudo-header sum; with `offload.gso` the frame is a TCP super-frame. Offloads the device did
   * not offer are done here. Returns false when the transmit ring is full (nothing sent).
   */
  send(frame: Uint8Array, offload: TxOffload = {}): boolean {
    if (this.broken) throw new DeviceMisbehaviourError('net.broken', 'the device misbehaved; reset needed');
    const p = offload.pair ?? this.pickPair(frame);
    if (p < 0 || p >= this.activePairs) throw new UsageError('net.tx.pair', 'transmit pair not in use', { statements: ['net.driver.92'], expected: `< ${this.activePairs}`, seen: `${p}` });
    if (frame.length < ETH_HLEN) throw new UsageError('net.tx.short', 'frame shorter than an Ethernet header', { seen: `${frame.length}` });
    const gso = offload.gso;
    if (gso) {
      const tunnel = this.tunnelOf(frame, gso.tunnel);
      const l = gsoLayers(frame, { type: gso.type, size: gso.size, ...(tunnel ? { tunnel } : {}) });
      if (typeof l === 'string') throw new UsageError('net.tx.gso', `frame does not match its GSO request: ${l}`);
      const inner = l.inner;
      let hw = (gso.type === NetHdr.GSO_TCPV4 && this.f.tso4) || (gso.type === NetHdr.GSO_TCPV6 && this.f.tso6) || (gso.type === NetHdr.GSO_UDP_L4 && this.f.hostUso);
      // net.driver.31/.56: tunnel GSO only with HOST_UDP_TUNNEL_GSO.
      if (tunnel && !this.f.hostTunnel) hw = false;
      // net.driver.28: ECN (CWR) in a TSO frame needs HOST_ECN; otherwise segment here.
      if (hw && inner.proto === IpProto.TCP && frame[inner.l4 + 13]! & 0x80 && !this.f.hostEcn) hw = false;
      if (!hw) return this.sendSoftwareGso(frame, gso.type, gso.size, tunnel, p);
      return this.post(p, frame, undefined, { type: gso.type, size: gso.size, tunnel, inner });
    }
    if (!gso && frame.length > this.mtu + ETH_HLEN + 4) {
      // net.driver.9: nothing above mtu + link header without GSO.
      throw new UsageError('net.tx.mtu', 'frame larger than the MTU', { statements: ['net.driver.9'], expected: `<= ${this.mtu + ETH_HLEN + 4}`, seen: `${frame.length}` });
    }
    let data = frame;
    let csum = offload.csum;
    if (csum && !this.f.csum) {
      // net.driver.17/.18: no CSUM negotiated, so flags stay 0 and the checksum is finished here.
      data = frame.slice();
      finishChecksum(data, csum.start, csum.offset);
      csum = undefined;
    }
    return this.post(p, data, csum, gso);
  }

  private sendSoftwareGso(frame: Uint8Array, type: number, size: number, tunnel: TunnelOffsets | undefined, p: number): boolean {
    // Segments leave with every checksum complete (outer UDP included), so no offload is asked for.
    const segs = gsoSegment(frame, { type, size, ...(tunnel ? { tunnel, outerCsum: true } : {}) });
    if (!segs) throw new UsageError('net.tx.gso', 'frame does not match its GSO type');
    const q = this.txq[p]!;
    this.reclaimTx(p);
    if (q.numFree < Math.min(segs.length, q.size)) return false;
    for (const s of segs) {
      this.stats.txSegmentsSoftware++;
      // More segments than the ring holds: wait (bounded) for completions between them.
      while (!this.post(p, s, undefined, undefined)) {
        this.dev.waitUntil(() => {
          this.poll();
          return q.numFree > 0;
        }, 'transmit ring space');
      }
    }
    return true;
  }

  /** Tunnel offsets for a send request: explicit, found by parsing (VXLAN), or none. */
  private tunnelOf(frame: Uint8Array, t: boolean | TunnelOffsets | undefined): TunnelOffsets | undefined {
    if (!t) return undefined;
    if (t === true) {
      const v = vxlanOffsets(frame);
      if (!v) throw new UsageError('net.tx.tunnel', 'not a VXLAN frame (outer UDP to port 4789 with an inner IP packet)');
      return { outerTh: v.outerTh, innerNh: v.innerNh };
    }
    return t;
  }

  private post(p: number, data: Uint8Array, csum: { start: number; offset: number } | undefined, gso: { type: number; size: number; tunnel?: TunnelOffsets | undefined; inner: FrameInfo } | undefined): boolean {
    const q = this.txq[p]!;
    if (q.numFree < 1) {
      this.reclaimTx(p);
      if (q.numFree < 1) return false;
    }
    const total = this.hdrLen + data.length;
    let slot: TxSlot;
    if (total <= this.txSlotSize && this.txPool[p]!.length > 0) slot = { addr: this.txPool[p]!.pop()!, len: this.txSlotSize, big: false };
    else slot = { addr: this.platform.dma.alloc(total, 16), len: total, big: true };
    const h = new Uint8Array(this.hdrLen);
    const hv = new DataView(h.buffer);
    // net.driver.15/.16/.17/.45/.46/.47: header per negotiated features, num_buffers 0.
    if (csum) {
      h[NetHdr.OFF_FLAGS] = NetHdr.F_NEEDS_CSUM;
      hv.setUint16(NetHdr.OFF_CSUM_START, csum.start, true);
      hv.setUint16(NetHdr.OFF_CSUM_OFFSET, csum.offset, true);
    }
    if (gso) {
      const info = gso.inner;
      const tcp = info.proto === IpProto.TCP;
      const off = tcp ? 16 : 6;
      h[NetHdr.OFF_FLAGS] = NetHdr.F_NEEDS_CSUM;
      // net.driver.29: GSO_ECN when the segments carry ECN (CWR) and HOST_ECN is negotiated.
      let type = gso.type | (tcp && this.f.hostEcn && data[info.l4 + 13]! & 0x80 ? NetHdr.GSO_ECN : 0);
      // net.driver.48/.49: hdr_len through the (inner) transport header.
      hv.setUint16(NetHdr.OFF_HDR_LEN, info.headerLen, true);
      hv.setUint16(NetHdr.OFF_GSO_SIZE, gso.size, true);
      // net.driver.51: csum_start/csum_offset name the (inner) transport checksum.
      hv.setUint16(NetHdr.OFF_CSUM_START, info.l4, true);
      hv.setUint16(NetHdr.OFF_CSUM_OFFSET, off, true);
      data = data.slice();
      // net.driver.43: the (inner) transport checksum holds the pseudo-header sum.
      writeBe16(data, info.l4 + off, pseudoHeaderFolded(data, info));
      if (gso.tunnel) {
        // net.driver.32/.33: the tunnel bit of the inner IP version; net.driver.51: both offsets.
        type |= info.ipVersion === 6 ? NetHdr.GSO_UDP_TUNNEL_IPV6 : NetHdr.GSO_UDP_TUNNEL_IPV4;
        hv.setUint16(NetHdr.OFF_OUTER_TH, gso.tunnel.outerTh, true);
        hv.setUint16(NetHdr.OFF_INNER_NH, gso.tunnel.innerNh, true);
        const outer = parseFrame(data);
        if (this.f.hostTunnelCsum) {
          // net.driver.35/.53: outer checksum offload: UDP_TUNNEL_CSUM and the outer pseudo-header sum.
          h[NetHdr.OFF_FLAGS] = NetHdr.F_NEEDS_CSUM | NetHdr.F_UDP_TUNNEL_CSUM;
          writeBe16(data, gso.tunnel.outerTh + 6, pseudoHeaderFolded(data, { ...outer, proto: IpProto.UDP, l4: gso.tunnel.outerTh }));
        } else {
          // net.driver.54/.55: without outer checksum offload the outer UDP checksum is 0.
          writeBe16(data, gso.tunnel.outerTh + 6, 0);
        }
      }
      h[NetHdr.OFF_GSO_TYPE] = type;
    }
    const mem = this.platform.mem;
    mem.writeBytes(slot.addr, h);
    mem.writeBytes(slot.addr + this.hdrLen, data);
    if (!q.add([{ addr: slot.addr, len: total }], [], slot)) {
      if (slot.big) this.platform.dma.free(slot.addr);
      else this.txPool[p]!.push(slot.addr);
      return false;
    }
    q.kick();
    this.stats.txFrames++;
    return true;
  }

  /** Wait until every transmitted frame was completed by the device. */
  flushTx(timeoutNs = this.dev.timeoutNs): void {
    this.dev.waitUntil(() => {
      this.poll();
      return this.txq.every((q) => q.inFlight === 0);
    }, 'transmit completions', timeoutNs);
  }

  // ------------------------------------------------------------------ control queue

  /**
   * Send a control command and wait (bounded) for the device's answer. `resultLen` bytes of
   * command-specific result follow the ack.
   */
  command(cls: number, cmd: number, data: Uint8Array = new Uint8Array(0), resultLen = 0): CtrlResult {
    const q = this.ctrlq;
    if (!q) throw new UsageError('net.ctrl.none', 'VIRTIO_NET_F_CTRL_VQ was not negotiated');
    const outLen = 2 + data.length;
    const buf = this.platform.dma.alloc(outLen + 1 + resultLen, 16);
    const mem = this.platform.mem;
    mem.write8(buf, cls);
    mem.write8(buf + 1, cmd);
    if (data.length) mem.writeBytes(buf + 2, data);
    mem.write8(buf + outLen, 0xff);
    const pending: CtrlPending = { done: false, ack: 0xff, len: 0, buf, resultLen, writableOff: outLen };
    const out: DmaBuffer[] = [{ addr: buf, len: outLen }];
    const inp: DmaBuffer[] = [{ addr: buf + outLen, len: 1 + resultLen }];
    if (!q.add(out, inp, pending)) {
      this.platform.dma.free(buf);
      throw new UsageError('net.ctrl.full', 'control queue full');
    }
    this.ctrlBusy = true;
    this.stats.ctrlCommands++;
    try {
      q.kick();
      this.dev.waitUntil(() => {
        this.reapCtrl();
        if (!pending.done) this.poll();
        return pending.done;
      }, `control command ${cls}/${cmd}`);
    } finally {
      this.ctrlBusy = false;
    }
    const ack = pending.ack;
    const result = pending.len > 1 ? mem.readBytes(buf + outLen + 1, Math.min(pending.len - 1, resultLen)) : new Uint8Array(0);
    this.platform.dma.free(buf);
    return { ack, result };
  }

  private reapCtrl(): void {
    const q = this.ctrlq;
    if (!q) return;
    for (let u = q.getUsed(); u; u = q.getUsed()) {
      const p = u.token;
      p.done = true;
      p.len = u.len;
      p.ack = u.len >= 1 ? this.platform.mem.read8(p.buf + p.writableOff) : 0xff;
    }
  }

  /** A command that must succeed: RequestError when the device says VIRTIO_NET_ERR. */
  private mustCommand(cls: number, cmd: number, data: Uint8Array, what: string, resultLen = 0): Uint8Array {
    const r = this.command(cls, cmd, data, resultLen);
    if (r.ack !== NetCtrl.OK) throw new RequestError('net.ctrl.err', `${what} refused by the device`, { expected: 'VIRTIO_NET_OK', seen: `ack ${r.ack}` });
    return r.result;
  }

  private need(feature: number, id: string, what: string): void {
    if (!hasFeature(this.features, feature)) throw new UsageError('net.ctrl.feature', `${what} needs feature bit ${feature}`, { statements: [id] });
  }

  /** VIRTIO_NET_CTRL_RX modes (net.driver.81/.82). */
  setRxMode(cmd: number, on: boolean): void {
    if (cmd <= NetCtrl.RX_ALLMULTI) this.need(NetF.CTRL_RX, 'net.driver.81', 'PROMISC/ALLMULTI');
    else this.need(NetF.CTRL_RX_EXTRA, 'net.driver.82', 'ALLUNI/NOMULTI/NOUNI/NOBCAST');
    this.mustCommand(NetCtrl.CLASS_RX, cmd, new Uint8Array([on ? 1 : 0]), `rx mode ${cmd}`);
  }

  setPromisc(on: boolean): void {
    this.setRxMode(NetCtrl.RX_PROMISC, on);
  }

  setAllMulti(on: boolean): void {
    this.setRxMode(NetCtrl.RX_ALLMULTI, on);
  }

  /** MAC filter table (net.driver.83/.85). */
  setMacTable(unicast: readonly Uint8Array[], multicast: readonly Uint8Array[]): void {
    this.need(NetF.CTRL_RX, 'net.driver.83', 'MAC_TABLE_SET');
    const d = new Uint8Array(8 + 6 * (unicast.length + multicast.length));
    const v = new DataView(d.buffer);
    v.setUint32(0, unicast.length, true);
    unicast.forEach((m, i) => d.set(m.subarray(0, 6), 4 + 6 * i));
    const mo = 4 + 6 * unicast.length;
    v.setUint32(mo, multicast.length, true);
    multicast.forEach((m, i) => d.set(m.subarray(0, 6), mo + 4 + 6 * i));
    this.mustCommand(NetCtrl.CLASS_MAC, NetCtrl.MAC_TABLE_SET, d, 'MAC_TABLE_SET');
  }

  /** Change the MAC address (net.driver.84). */
  setMac(mac: Uint8Array): void {
    this.need(NetF.CTRL_MAC_ADDR, 'net.driver.83', 'MAC_ADDR_SET');
    this.mustCommand(NetCtrl.CLASS_MAC, NetCtrl.MAC_ADDR_SET, mac.slice(0, 6), 'MAC_ADDR_SET');
    this.mac.set(mac.subarray(0, 6));
  }

  vlan(add: boolean, vid: number): void {
    this.need(NetF.CTRL_VLAN, 'net.driver.81', 'VLAN filtering');
    if (vid < 0 || vid > 4095) throw new UsageError('net.vlan', 'VLAN id out of range', { expected: '0..4095', seen: `${vid}` });
    const d = new Uint8Array(2);
    new DataView(d.buffer).setUint16(0, vid, true);
    this.mustCommand(NetCtrl.CLASS_VLAN, add ? NetCtrl.VLAN_ADD : NetCtrl.VLAN_DEL, d, 'VLAN');
  }

  /**
   * Inner-header hashing for these encapsulation types (HashTunnel bits; 0 turns it off). Bits the
   * device does not support, or the spec does not define, are refused here and never sent (net.driver.78/.79/.80).
   */
  setHashTunnel(types: number): void {
    this.need(NetF.HASH_TUNNEL, 'net.driver.78', 'HASH_TUNNEL_SET');
    const extra = (types >>> 0) & ~this.supportedTunnelTypes;
    if (extra !== 0) throw new UsageError('net.hash.tunnel', 'encapsulation types the device does not support', { statements: ['net.driver.79', 'net.driver.80'], expected: `within 0x${this.supportedTunnelTypes.toString(16)}`, seen: `0x${(types >>> 0).toString(16)}` });
    const d = new Uint8Array(4);
    new DataView(d.buffer).setUint32(0, types >>> 0, true);
    this.mustCommand(NetCtrl.CLASS_HASH_TUNNEL, NetCtrl.HASH_TUNNEL_SET, d, 'HASH_TUNNEL_SET');
  }

  /** Use `n` queue pairs (net.driver.89/.90). */
  setPairs(n: number): void {
    this.need(NetF.MQ, 'net.driver.90', 'VQ_PAIRS_SET');
    if (n < 1 || n > this.pairs) throw new UsageError('net.mq.pairs', 'pairs out of range', { statements: ['net.driver.90'], expected: `1..${this.pairs}`, seen: `${n}` });
    // net.driver.100: not while the device holds an RSS context.
    if (this.rssCtx.size > 0) throw new UsageError('net.mq.pairs', 'VQ_PAIRS_SET while RSS contexts are configured', { statements: ['net.driver.100'], expected: 'no RSS context', seen: `contexts ${[...this.rssCtx].join(',')}` });
    const d = new Uint8Array(2);
    new DataView(d.buffer).setUint16(0, n, true);
    this.mustCommand(NetCtrl.CLASS_MQ, NetCtrl.MQ_VQ_PAIRS_SET, d, 'VQ_PAIRS_SET');
    this.activePairs = n;
  }

  /** RSS configuration (net.driver.93-.97): `table` holds pair numbers. */
  setRss(cfg: RssConfig): void {
    this.need(NetF.RSS, 'net.driver.93', 'RSS_CONFIG');
    const d = this.encodeRss(cfg);
    this.mustCommand(NetCtrl.CLASS_MQ, NetCtrl.MQ_RSS_CONFIG, d, 'RSS_CONFIG');
    this.activePairs = cfg.maxTx ?? this.pairs;
  }

  /** A virtio_net_rss_config, checked against the device's limits (net.driver.94-.97). */
  private encodeRss(cfg: RssConfig): Uint8Array {
    const n = cfg.table.length;
    if (n < 1 || (n & (n - 1)) !== 0) throw new UsageError('net.rss.table', 'indirection table length must be a power of two', { statements: ['net.driver.95'], seen: `${n}` });
    const maxLen = this.dev.config16(NetCfg.RSS_MAX_INDIRECTION_TABLE_LENGTH);
    if (n - 1 >= maxLen) throw new UsageError('net.rss.table', 'indirection table too long', { statements: ['net.driver.96'], expected: `mask < ${maxLen}`, seen: `${n - 1}` });
    const supported = this.dev.config32(NetCfg.SUPPORTED_HASH_TYPES);
    if (cfg.hashTypes & ~supported) throw new UsageError('net.rss.types', 'hash types the device does not support', { statements: ['net.driver.97'], seen: `0x${cfg.hashTypes.toString(16)}` });
    for (const q of [...cfg.table, cfg.unclassified ?? 0]) if (q < 0 || q >= this.pairs) throw new UsageError('net.rss.queue', 'RSS queue not set up', { statements: ['net.driver.94'], seen: `${q}` });
    const d = new Uint8Array(8 + 2 * n + 3 + cfg.key.length);
    const v = new DataView(d.buffer);
    v.setUint32(0, cfg.hashTypes, true);
    v.setUint16(4, n - 1, true);
    // rss_rq_id: bits 1..16 of the receive virtqueue index, i.e. the pair number.
    v.setUint16(6, cfg.unclassified ?? 0, true);
    cfg.table.forEach((q, i) => v.setUint16(8 + 2 * i, q, true));
    const maxTx = cfg.maxTx ?? this.pairs;
    v.setUint16(8 + 2 * n, maxTx, true);
    d[8 + 2 * n + 2] = cfg.key.length;
    d.set(cfg.key, 8 + 2 * n + 3);
    return d;
  }

  /** max_rss_contexts (RSS_CONTEXT, VIRTNET_RSS_CTX_CTRL_CAP_GET); asked once. */
  rssContextMax(): number {
    this.need(NetFx.RSS_CONTEXT, 'net.driver.98', 'RSS_CTX_CTRL');
    if (this.maxRssCtx < 0) {
      const r = this.mustCommand(NetCtrl.CLASS_RSS_CTX, NetCtrl.RSS_CTX_CAP_GET, new Uint8Array(0), 'RSS_CTX_CTRL_CAP_GET', 2);
      if (r.length < 2) throw new DeviceMisbehaviourError('net.rss.ctx', 'RSS_CTX_CTRL_CAP_GET result too short', { statements: ['net.device.103'], expected: '2 bytes', seen: `${r.length}` });
      this.maxRssCtx = r[0]! | (r[1]! << 8);
    }
    return this.maxRssCtx;
  }

  /** RSS contexts the device has accepted (cleared by shutdown with the device). */
  get rssContexts(): readonly number[] {
    return [...this.rssCtx];
  }

  /** Add (or, `modify`, change) RSS context `id` (net.driver.99: 1..max_rss_contexts). */
  setRssContext(id: number, cfg: RssConfig, modify = false): void {
    this.checkCtxId(id);
    const body = this.encodeRss(cfg);
    const d = new Uint8Array(8 + body.length);
    new DataView(d.buffer).setUint16(0, id, true);
    d.set(body, 8);
    this.mustCommand(NetCtrl.CLASS_RSS_CTX, modify ? NetCtrl.RSS_CTX_MOD : NetCtrl.RSS_CTX_ADD, d, modify ? 'RSS_CTX_CTRL_MOD' : 'RSS_CTX_CTRL_ADD');
    this.rssCtx.add(id);
  }

  deleteRssContext(id: number): void {
    this.checkCtxId(id);
    const d = new Uint8Array(2);
    new DataView(d.buffer).setUint16(0, id, true);
    this.mustCommand(NetCtrl.CLASS_RSS_CTX, NetCtrl.RSS_CTX_DEL, d, 'RSS_CTX_CTRL_DEL');
    this.rssCtx.delete(id);
  }

  private checkCtxId(id: number): void {
    const max = this.rssContextMax();
    if (!Number.isInteger(id) || id < 1 || id > max) throw new UsageError('net.rss.ctx', 'rss_ctx_id out of range', { statements: ['net.driver.99'], expected: `1..${max}`, seen: `${id}` });
  }

  /** Hash reporting without RSS (MQ_HASH_CONFIG). */
  setHashConfig(hashTypes: number, key: Uint8Array): void {
    this.need(NetF.HASH_REPORT, 'net.driver.93', 'HASH_CONFIG');
    const d = new Uint8Array(13 + key.length);
    new DataView(d.buffer).setUint32(0, hashTypes, true);
    d[12] = key.length;
    d.set(key, 13);
    this.mustCommand(NetCtrl.CLASS_MQ, NetCtrl.MQ_HASH_CONFIG, d, 'HASH_CONFIG');
  }

  /** Enable a subset of the negotiated guest offloads (net.driver.101). */
  setGuestOffloads(features: bigint): void {
    this.need(NetF.CTRL_GUEST_OFFLOADS, 'net.driver.101', 'GUEST_OFFLOADS_SET');
    if (features & ~this.features) throw new UsageError('net.offloads', 'offload not negotiated', { statements: ['net.driver.101'], seen: `0x${features.toString(16)}` });
    const d = new Uint8Array(8);
    new DataView(d.buffer).setBigUint64(0, features, true);
    this.mustCommand(NetCtrl.CLASS_GUEST_OFFLOADS, NetCtrl.GUEST_OFFLOADS_SET, d, 'GUEST_OFFLOADS_SET');
  }

  /** Notification coalescing for all transmit or all receive queues (net.driver.103). */
  setCoalescing(dir: 'tx' | 'rx', maxPackets: number, maxUsecs: number): void {
    this.need(NetF.NOTF_COAL, 'net.driver.103', 'NOTF_COAL');
    const d = new Uint8Array(8);
    const v = new DataView(d.buffer);
    v.setUint32(0, maxPackets, true);
    v.setUint32(4, maxUsecs, true);
    this.mustCommand(NetCtrl.CLASS_NOTF_COAL, dir === 'tx' ? NetCtrl.NOTF_COAL_TX_SET : NetCtrl.NOTF_COAL_RX_SET, d, 'NOTF_COAL');
  }

  /** Per-queue coalescing (net.driver.102/.104). */
  setQueueCoalescing(vq: number, maxPackets: number, maxUsecs: number): void {
    this.need(NetF.VQ_NOTF_COAL, 'net.driver.104', 'NOTF_COAL_VQ_SET');
    if (vq < 0 || vq >= 2 * this.activePairs) throw new UsageError('net.coal.vq', 'not an enabled data queue', { statements: ['net.driver.102'], seen: `${vq}` });
    const d = new Uint8Array(12);
    const v = new DataView(d.buffer);
    v.setUint16(0, vq, true);
    v.setUint32(4, maxPackets, true);
    v.setUint32(8, maxUsecs, true);
    this.mustCommand(NetCtrl.CLASS_NOTF_COAL, NetCtrl.NOTF_COAL_VQ_SET, d, 'NOTF_COAL_VQ_SET');
  }

  /** Read a queue's coalescing parameters; null when the device answers ERR (net.driver.105: values disregarded). */
  getQueueCoalescing(vq: number): { maxPackets: number; maxUsecs: number } | null {
    this.need(NetF.VQ_NOTF_COAL, 'net.driver.104', 'NOTF_COAL_VQ_GET');
    if (vq < 0 || vq >= 2 * this.activePairs) throw new UsageError('net.coal.vq', 'not an enabled data queue', { statements: ['net.driver.102'], seen: `${vq}` });
    const d = new Uint8Array(4);
    new DataView(d.buffer).setUint16(0, vq, true);
    const r = this.command(NetCtrl.CLASS_NOTF_COAL, NetCtrl.NOTF_COAL_VQ_GET, d, 8);
    if (r.ack !== NetCtrl.OK || r.result.length < 8) return null;
    const v = new DataView(r.result.buffer, r.result.byteOffset, 8);
    return { maxPackets: v.getUint32(0, true), maxUsecs: v.getUint32(4, true) };
  }

  /** Statistics types the device supports (STATS_QUERY), as bit numbers. */
  statsQuery(): number[] {
    this.need(NetF.DEVICE_STATS, 'net.driver.106', 'STATS_QUERY');
    const r = this.mustCommand(NetCtrl.CLASS_STATS, NetCtrl.STATS_QUERY, new Uint8Array(0), 'STATS_QUERY', 8);
    const v = new DataView(r.buffer, r.byteOffset, r.byteLength);
    const out: number[] = [];
    if (r.length < 8) return out;
    const lo = v.getUint32(0, true);
    const hi = v.getUint32(4, true);
    for (let b = 0; b < 64; b++) if ((b < 32 ? lo >>> b : hi >>> (b - 32)) & 1) out.push(b);
    return out;
  }

  /** Statistics of one queue (net.driver.106-.108); the result buffer is sized for every reply. */
  statsGet(vq: number, types: readonly number[]): { type: number; vq: number; counters: number[] }[] {
    this.need(NetF.DEVICE_STATS, 'net.driver.106', 'STATS_GET');
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
    const r = this.mustCommand(NetCtrl.CLASS_STATS, NetCtrl.STATS_GET, d, 'STATS_GET', room);
    const rv = new DataView(r.buffer, r.byteOffset, r.byteLength);
    const out: { type: number; vq: number; counters: number[] }[] = [];
    for (let off = 0; off + 8 <= r.length; ) {
      const size = rv.getUint16(off + 6, true);
      if (size < 8 || off + size > r.length) {
        this.deviceError('net.device.117', `stats reply size ${size} at ${off} of ${r.length}`);
        break;
      }
      const counters: number[] = [];
      for (let c = off + 8; c + 8 <= off + size; c += 8) counters.push(Number(rv.getBigUint64(c, true)));
      out.push({ type: r[off]!, vq: rv.getUint16(off + 2, true), counters });
      off += size;
    }
    return out;
  }

  private doAnnounce(): void {
    this.announcePending = false;
    if (!this.f.announce) return;
    // net.driver.87: announce ourselves; net.driver.88: then acknowledge.
    for (const fr of this.announceFrames?.() ?? []) this.send(fr);
    this.stats.announces++;
    this.mustCommand(NetCtrl.CLASS_ANNOUNCE, NetCtrl.ANNOUNCE_ACK, new Uint8Array(0), 'ANNOUNCE_ACK');
  }

  /**
   * Reset one data queue on its own (VIRTIO_F_RING_RESET) and bring it back with a fresh ring:
   * receive buffers are reposted; transmit frames in flight are lost. `during` runs while the
   * queue is reset and not yet re-enabled. Split rings only.
   */
  resetQueue(index: number, during?: () => void): void {
    if (!hasFeature(this.features, F.RING_RESET) || !this.dev.transport.resetQueue) throw new UsageError('net.queue_reset', 'VIRTIO_F_RING_RESET not negotiated or not supported by the transport');
    const pair = index >> 1;
    if (pair >= this.pairs) throw new UsageError('net.queue_reset', 'not a data queue of this driver', { seen: `${index}` });
    const old = this.dev.queue<unknown>(index);
    if (old.layout !== 'split') throw new UsageError('net.queue_reset', 'queue reset is implemented for split rings only');
    const t = this.dev.transport;
    t.resetQueue!(index);
    old.destroy();
    this.resetting.add(index);
    try {
      during?.();
    } finally {
      this.resetting.delete(index);
    }
    const vq = new SplitVirtqueue<unknown>(this.platform.mem, this.platform.dma, {
      index,
      size: old.size,
      eventIdx: hasFeature(this.features, F.EVENT_IDX),
      indirect: hasFeature(this.features, F.INDIRECT_DESC),
      inOrder: hasFeature(this.features, F.IN_ORDER),
      notificationData: hasFeature(this.features, F.NOTIFICATION_DATA),
      notify: (data?: number) => t.notify(index, data),
    });
    t.setupQueue(index, vq.addresses);
    (this.dev.queues as Map<number, unknown>).set(index, vq);
    if (index % 2 === 0) {
      this.partial[pair] = null;
      this.rxq[pair] = vq as unknown as Virtqueue<RxBuf>;
      for (const b of this.rxBufs[pair]!) vq.add([], [{ addr: b.addr, len: b.len }], b);
      vq.kick();
    } else {
      this.txq[pair] = vq as unknown as Virtqueue<TxSlot>;
    }
  }

  /** Reset the device and free the queues. */
  shutdown(): void {
    this.dev.shutdown();
  }
}

/** Complete a checksum in software: ones' complement sum from `start` to the end, stored at start+offset. */
export function finishChecksum(frame: Uint8Array, start: number, offset: number): void {
  let c = ~csumFold(csumAdd(frame, start, frame.length)) & 0xffff;
  if (c === 0) c = 0xffff;
  writeBe16(frame, start + offset, c);
}

/** Complete a received frame's partial checksum (NEEDS_CSUM) in place; returns the frame. */
export function completeReceived(f: RxFrame): Uint8Array {
  if (f.flags & NetHdr.F_NEEDS_CSUM) finishChecksum(f.data, f.csumStart, f.csumOffset);
  return f.data;
}
