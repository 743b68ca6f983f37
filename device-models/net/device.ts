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
 */
import type { Chain, DeviceContext, DeviceQueue, VirtioDeviceModel } from '../virtio/model.ts';
import { gatherInto, scatter } from '../virtio/chain-io.ts';
import type { ScheduledEvent } from '../machine/scheduler.ts';
import { DriverMisbehaviourError } from '../../spec-refs/errors.ts';
import { DeviceType, F, NetF, bit, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { netFeatureDependencyError, netHdrSize, pruneNetFeatures } from '../../spec-refs/abi/net.ts';
import { NetFx } from '../../spec-refs/abi/net.ts';
import { HashTunnel } from '../../spec-refs/abi/net.ts';
import { vxlanOffsets } from '../../spec-refs/abi/gso.ts';
import { ETH_HLEN, HashReport, HashType, NetCfg, NetCtrl, NetHdr, NetStatus, StatsCounters, StatsType } from '../../spec-refs/abi/net.ts';
import { IpProto, csumFold, isBroadcast, isMulticast, macEquals, macKey, parseFrame, pseudoHeaderSum, readBe16, verifyChecksums, writeBe16, type FrameInfo } from '../../spec-refs/abi/packet.ts';
import { completeChecksum, segment, type WireFrame } from './wire.ts';
import { gsoLayers } from '../../spec-refs/abi/gso.ts';
import { DEFAULT_RSS_KEY, hashPacket } from './rss.ts';

/** Where a NIC's transmitted frames go (a switch port, a tap...). */
export interface NetBackend {
  send(frame: WireFrame): void;
}

/** Something frames can be delivered to. */
export interface NetEndpoint {
  readonly name: string;
  receive(frame: WireFrame): void;
}

export interface NetDeviceOptions {
  name?: string;
  mac?: Uint8Array;
  /** max_virtqueue_pairs (MQ offered when > 1 or when `features` says so). Default 1. */
  maxPairs?: number;
  /** Link MTU (config `mtu`); default 1500. */
  mtu?: number;
  /** Mbit/s; default 10000. */
  speed?: number;
  /** 1 full, 0 half, 0xff unknown; default 1. */
  duplex?: number;
  queueSize?: number;
  /** Features to offer (default: everything the model implements). */
  features?: bigint;
  linkUp?: boolean;
  /** Frames held per receive queue while it has no buffers (beyond: dropped). Default 1024. */
  rxBacklog?: number;
  /** Entries of each MAC filter table before the device falls back to accepting all of that kind. */
  macTableSize?: number;
  /**
   * A checking device for driver conformance: also verify what costs time on every frame (the
   * pseudo-header sum under NEEDS_CSUM, csum_start/csum_offset pointing at the L4 checksum,
   * receive buffer sizes against the MTU) and record each breach as a violation.
   */
  strict?: boolean;
  /** Test hook: answer a control command instead of the device (hostile-device checks of drivers); undefined: the device answers. */
  ctrlHook?: (cls: number, cmd: number, data: Uint8Array) => { ack: number; result?: Uint8Array } | undefined;
  /** Test hook: rewrite each receive header just before it is written (hostile-device checks of drivers). */
  rxHeaderHook?: (hdr: Uint8Array, frame: Uint8Array) => void;
  /** supported_tunnel_types in config (HASH_TUNNEL); default VXLAN, the one encapsulation the model parses. Other bits are advertised but never matched. */
  supportedTunnelTypes?: number;
  /** max_rss_contexts reported by RSS_CTX_CTRL_CAP_GET (RSS_CONTEXT); default 4. */
  maxRssContexts?: number;
}

/** Everything the model implements. */
export const NET_SUPPORTED_FEATURES: bigint = [
  NetF.CSUM, NetF.GUEST_CSUM, NetF.CTRL_GUEST_OFFLOADS, NetF.MTU, NetF.MAC, NetF.GUEST_TSO4, NetF.GUEST_TSO6,
  NetF.HOST_TSO4, NetF.HOST_TSO6, NetF.MRG_RXBUF, NetF.STATUS, NetF.CTRL_VQ, NetF.CTRL_RX, NetF.CTRL_VLAN,
  NetF.CTRL_RX_EXTRA, NetF.GUEST_ANNOUNCE, NetF.MQ, NetF.CTRL_MAC_ADDR, NetF.DEVICE_STATS, NetF.VQ_NOTF_COAL,
  NetF.NOTF_COAL, NetF.HASH_REPORT, NetF.RSS, NetF.SPEED_DUPLEX, NetF.GUEST_ECN, NetF.HOST_ECN, NetF.GUEST_HDRLEN,
  NetF.HOST_USO, NetF.GUEST_USO4, NetF.GUEST_USO6, NetFx.HOST_UDP_TUNNEL_GSO, NetFx.HOST_UDP_TUNNEL_GSO_CSUM, NetFx.GUEST_UDP_TUNNEL_GSO, NetFx.GUEST_UDP_TUNNEL_GSO_CSUM,
  NetFx.OUT_NET_HEADER, NetF.RSC_EXT, NetF.HASH_TUNNEL, NetFx.RSS_CONTEXT, F.VERSION_1, F.EVENT_IDX, F.INDIRECT_DESC, F.RING_PACKED, F.RING_RESET,
].reduce((s, b) => s | bit(b), 0n);

/** Core features a caller may add to the offer: the model is indifferent to them (in-order use holds: every queue completes in order). */
const CORE_PASSTHROUGH: bigint = [F.NOTIFICATION_DATA, F.NOTIF_CONFIG_DATA, F.IN_ORDER].reduce((s, b) => s | bit(b), 0n);

/** A record of a driver breaking a statement, kept for conformance checks. */
export interface NetViolation {
  readonly id: string;
  readonly detail: string;
}

interface Coal {
  maxPackets: number;
  maxUsecs: number;
  count: number;
  timer: ScheduledEvent | null;
}

type RssState = { hashTypes: number; mask: number; unclassified: number; table: Uint16Array; key: Uint8Array; maxTx: number };

interface RxItem {
  readonly data: Uint8Array;
  readonly flags: number;
  readonly gsoType: number;
  readonly gsoSize: number;
  readonly hdrLen: number;
  readonly csumStart: number;
  readonly csumOffset: number;
  readonly hashValue: number;
  readonly hashReport: number;
  /** UDP-tunnel GSO: outer UDP and inner network header offsets (0 otherwise). */
  readonly outerTh?: number;
  readonly innerNh?: number;
}

/** Per-queue counters (the DEVICE_STATS replies are built from these). */
export interface QueueStats {
  notifications: number;
  packets: number;
  bytes: number;
  interrupts: number;
  drops: number;
  /** rx: drop_overruns; tx: drop_malformed */
  dropsSpecial: number;
  csumValid: number;
  needsCsum: number;
  csumNone: number;
  csumBad: number;
  gsoPackets: number;
  gsoBytes: number;
  gsoSegments: number;
  gsoSegmentsBytes: number;
}

const TWO64 = 2 ** 64;

/** Counter addition modulo 2^64 (net.device.120); exact while counters stay below 2^53. */
function add64(a: number, n: number): number {
  const v = a + n;
  return v >= TWO64 ? v - TWO64 : v;
}

function newStats(): QueueStats {
  return { notifications: 0, packets: 0, bytes: 0, interrupts: 0, drops: 0, dropsSpecial: 0, csumValid: 0, needsCsum: 0, csumNone: 0, csumBad: 0, gsoPackets: 0, gsoBytes: 0, gsoSegments: 0, gsoSegmentsBytes: 0 };
}

const MAX_VIOLATIONS = 256;
/** Largest Ethernet frame the device handles at all (64 KiB IP packet + Ethernet + VLAN). */
const MAX_FRAME = 65535 + ETH_HLEN + 4;
const GUEST_OFFLOAD_BITS = [NetF.GUEST_CSUM, NetF.GUEST_TSO4, NetF.GUEST_TSO6, NetF.GUEST_ECN, NetF.GUEST_UFO, 46, 47, NetF.GUEST_USO4, NetF.GUEST_USO6];

export class VirtioNetDevice implements VirtioDeviceModel, NetEndpoint {
  readonly deviceType = DeviceType.NET;
  readonly name: string;
  readonly numQueues: number;
  readonly offeredFeatures: bigint;
  readonly configSize = NetCfg.SIZE;
  readonly maxPairs: number;
  readonly mtu: number;
  private readonly queueSize: number;
  private readonly permanentMac: Uint8Array;
  private readonly rxBacklogMax: number;
  private readonly macTableSize: number;
  private readonly strict: boolean;
  private readonly rxHeaderHook: ((hdr: Uint8Array, frame: Uint8Array) => void) | undefined;
  private readonly ctrlHook: NetDeviceOptions['ctrlHook'];
  private readonly config = new Uint8Array(NetCfg.SIZE);
  private readonly cfgView = new DataView(this.config.buffer);
  private backend: NetBackend | undefined;
  private linkUp: boolean;

  // ---- live state (reset drops it)
  private ctx: DeviceContext | null = null;
  private hdrLen = 12;
  private f = {
    csum: false, guestCsum: false, hostTso4: false, hostTso6: false, guestTso4: false, guestTso6: false, mrg: false,
    ctrlVq: false, ctrlRx: false, ctrlRxExtra: false, ctrlVlan: false, mq: false, macAddr: false, mtu: false,
    announce: false, guestOffloads: false, stats: false, notfCoal: false, vqNotfCoal: false, hashReport: false, rss: false,
    status: false, version1: false, hostEcn: false, guestEcn: false, hdrLen: false,
    hostUso: false, guestUso4: false, guestUso6: false, hostTunnel: false, hostTunnelCsum: false, guestTunnel: false, outNet: false, rscExt: false, hashTunnel: false, rssCtx: false,
  };
  /** enabled_tunnel_types (HASH_TUNNEL_SET). */
  private tunnelTypes = 0;
  /** Guest offloads currently enabled (CTRL_GUEST_OFFLOADS), as booleans. */
  private rxCsum = false;
  private rxTso4 = false;
  private rxTso6 = false;
  private rxEcn = false;
  private rxUso4 = false;
  private rxUso6 = false;
  private rxTunnel = false;
  private curPairs = 1;
  private ctrlIndex = 2;
  private mac = new Uint8Array(6);
  private promisc = false;
  private allmulti = true;
  private alluni = false;
  private nomulti = false;
  private nouni = false;
  private nobcast = false;
  private uniTable: number[] = [];
  private multiTable: number[] = [];
  private uniOverflow = false;
  private multiOverflow = false;
  private vlans = new Uint8Array(4096 / 8);
  private rss: RssState | null = null;
  /** RSS contexts by rss_ctx_id (RSS_CONTEXT). Without flow filters nothing steers into them; they are kept and validated. */
  private readonly rssContexts = new Map<number, RssState>();
  private readonly maxRssContexts: number;
  private hashCfg: { hashTypes: number; key: Uint8Array } | null = null;
  private flows = new Map<string, number>();
  private backlog: RxItem[][] = [];
  private stash: Chain[][] = [];
  private drainScheduled: boolean[] = [];
  /** Receive queues reset on their own and not yet used again by the driver (net.device.100/.102: traffic for them is dropped). */
  private rxResetting: boolean[] = [];
  private txScheduled: boolean[] = [];
  private coal: Coal[] = [];
  private coalTx = { maxPackets: 0, maxUsecs: 0 };
  private coalRx = { maxPackets: 0, maxUsecs: 0 };
  private cvqStats = { commands: 0, ok: 0 };
  qstats: QueueStats[] = [];

  /** Driver errors seen (bounded), each with the census id it breaks. */
  readonly violations: NetViolation[] = [];
  violationCount = 0;
  /** Frames the device dropped on receive because of filtering (for tests). */
  filtered = 0;

  constructor(opts: NetDeviceOptions = {}) {
    this.name = opts.name ?? 'virtio-net';
    this.maxPairs = Math.max(1, Math.min(0x8000, opts.maxPairs ?? 1));
    this.mtu = opts.mtu ?? 1500;
    this.queueSize = opts.queueSize ?? 256;
    this.rxBacklogMax = opts.rxBacklog ?? 1024;
    this.macTableSize = opts.macTableSize ?? 64;
    this.strict = opts.strict ?? false;
    this.rxHeaderHook = opts.rxHeaderHook;
    this.ctrlHook = opts.ctrlHook;
    this.permanentMac = (opts.mac ?? new Uint8Array([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])).slice(0, 6);
    this.linkUp = opts.linkUp ?? true;
    // Ring and transport features the core implements pass through when asked for (not offered by default).
    let feats = (opts.features ?? NET_SUPPORTED_FEATURES) & (NET_SUPPORTED_FEATURES | CORE_PASSTHROUGH);
    if (this.maxPairs === 1 && opts.features === undefined) feats &= ~bit(NetF.MQ);
    if (this.mtu < 68 || this.mtu > 65535) feats &= ~bit(NetF.MTU); // net.device.2: only a valid mtu is offered
    // features.device.1: never offer a feature without what it depends on.
    this.offeredFeatures = pruneNetFeatures(feats);
    feats = this.offeredFeatures;
    const ctrl = hasFeature(feats, NetF.CTRL_VQ);
    this.numQueues = 2 * this.maxPairs + (ctrl ? 1 : 0);
    // config space (net.device.1, .2, .7, .8, .10, .11)
    this.config.set(this.permanentMac, NetCfg.MAC);
    this.mac.set(this.permanentMac);
    this.cfgView.setUint16(NetCfg.STATUS, this.linkUp ? NetStatus.LINK_UP : 0, true);
    this.cfgView.setUint16(NetCfg.MAX_VIRTQUEUE_PAIRS, this.maxPairs, true);
    this.cfgView.setUint16(NetCfg.MTU, this.mtu & 0xffff, true);
    const speed = opts.speed ?? 10000;
    this.cfgView.setUint32(NetCfg.SPEED, speed > 0x7fffffff ? 0xffffffff : speed, true);
    const duplex = opts.duplex ?? 1;
    this.config[NetCfg.DUPLEX] = duplex === 0 || duplex === 1 ? duplex : 0xff;
    this.config[NetCfg.RSS_MAX_KEY_SIZE] = 40;
    this.cfgView.setUint16(NetCfg.RSS_MAX_INDIRECTION_TABLE_LENGTH, 128, true);
    this.cfgView.setUint32(NetCfg.SUPPORTED_HASH_TYPES, HashType.IPv4 | HashType.TCPv4 | HashType.UDPv4 | HashType.IPv6 | HashType.TCPv6 | HashType.UDPv6 | HashType.IP_EX | HashType.TCP_EX | HashType.UDP_EX, true);
    this.cfgView.setUint32(NetCfg.SUPPORTED_TUNNEL_TYPES, (opts.supportedTunnelTypes ?? HashTunnel.VXLAN) >>> 0, true);
    // net.device.103: at least one context when RSS_CONTEXT is offered (0 here is a test hook for a broken device).
    this.maxRssContexts = Math.max(0, Math.min(0xffff, opts.maxRssContexts ?? 4));
    this.clearState();
  }

  /** Attach the NIC to a network (a switch port). */
  connect(backend: NetBackend): void {
    this.backend = backend;
  }

  get linkIsUp(): boolean {
    return this.linkUp;
  }

  /** Current MAC (config `mac`, or what CTRL_MAC_ADDR_SET installed). */
  get currentMac(): Uint8Array {
    return this.mac.slice();
  }

  /** Set the link state; with STATUS negotiated the driver sees it with a config interrupt. */
  setLink(up: boolean): void {
    if (up === this.linkUp) return;
    this.linkUp = up;
    const s = this.cfgView.getUint16(NetCfg.STATUS, true);
    this.cfgView.setUint16(NetCfg.STATUS, up ? s | NetStatus.LINK_UP : s & ~NetStatus.LINK_UP, true);
    if (this.ctx && this.f.status) this.ctx.configChanged();
  }

  /** Ask the driver to announce itself (after a migration); only with GUEST_ANNOUNCE negotiated. Returns whether it was asked. */
  requestAnnounce(): boolean {
    if (!this.ctx || !this.f.announce || !this.f.status) return false;
    const s = this.cfgView.getUint16(NetCfg.STATUS, true);
    this.cfgView.setUint16(NetCfg.STATUS, s | NetStatus.ANNOUNCE, true);
    this.ctx.configChanged();
    return true;
  }

  get activePairs(): number {
    return this.curPairs;
  }

  // ------------------------------------------------------------------ VirtioDeviceModel

  queueMaxSize(index: number): number {
    return index >= 0 && index < this.numQueues ? this.queueSize : 0;
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    let v = 0;
    for (let i = size - 1; i >= 0; i--) {
      const o = offset + i;
      v = v * 256 + (o >= 0 && o < NetCfg.SIZE ? this.config[o]! : 0);
    }
    return v >>> 0;
  }

  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    // net.driver.1: the net config space is read-only for the driver; the write is ignored.
    this.violate('net.driver.1', `config write of ${size} bytes at ${offset} (value ${value >>> 0})`);
  }

  acceptFeatures(features: bigint): boolean {
    const dep = netFeatureDependencyError(features);
    if (dep) {
      this.violate('features.driver.2', dep);
      return false;
    }
    return true;
  }

  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
    const has = (b: number) => hasFeature(ctx.features, b);
    this.f = {
      csum: has(NetF.CSUM), guestCsum: has(NetF.GUEST_CSUM), hostTso4: has(NetF.HOST_TSO4), hostTso6: has(NetF.HOST_TSO6),
      guestTso4: has(NetF.GUEST_TSO4), guestTso6: has(NetF.GUEST_TSO6), mrg: has(NetF.MRG_RXBUF), ctrlVq: has(NetF.CTRL_VQ),
      ctrlRx: has(NetF.CTRL_RX), ctrlRxExtra: has(NetF.CTRL_RX_EXTRA), ctrlVlan: has(NetF.CTRL_VLAN), mq: has(NetF.MQ),
      macAddr: has(NetF.CTRL_MAC_ADDR), mtu: has(NetF.MTU), announce: has(NetF.GUEST_ANNOUNCE), guestOffloads: has(NetF.CTRL_GUEST_OFFLOADS),
      stats: has(NetF.DEVICE_STATS), notfCoal: has(NetF.NOTF_COAL), vqNotfCoal: has(NetF.VQ_NOTF_COAL), hashReport: has(NetF.HASH_REPORT),
      rss: has(NetF.RSS), status: has(NetF.STATUS), version1: has(F.VERSION_1),
      hostEcn: has(NetF.HOST_ECN), guestEcn: has(NetF.GUEST_ECN), hdrLen: has(NetF.GUEST_HDRLEN),
      hostUso: has(NetF.HOST_USO), guestUso4: has(NetF.GUEST_USO4), guestUso6: has(NetF.GUEST_USO6),
      hostTunnel: has(NetFx.HOST_UDP_TUNNEL_GSO), hostTunnelCsum: has(NetFx.HOST_UDP_TUNNEL_GSO_CSUM), guestTunnel: has(NetFx.GUEST_UDP_TUNNEL_GSO),
      outNet: has(NetFx.OUT_NET_HEADER), rscExt: has(NetF.RSC_EXT), hashTunnel: has(NetF.HASH_TUNNEL), rssCtx: has(NetFx.RSS_CONTEXT),
    };
    this.hdrLen = netHdrSize(ctx.features);
    this.rxCsum = this.f.guestCsum;
    this.rxTso4 = this.f.guestTso4 && this.f.guestCsum;
    this.rxTso6 = this.f.guestTso6 && this.f.guestCsum;
    this.rxEcn = this.f.guestEcn;
    this.rxUso4 = this.f.guestUso4 && this.f.guestCsum;
    this.rxUso6 = this.f.guestUso6 && this.f.guestCsum;
    this.rxTunnel = this.f.guestTunnel;
    this.ctrlIndex = this.f.ctrlVq ? (this.f.mq ? 2 * this.maxPairs : 2) : -1;
    // net.device.97: receiveq1 only until the driver enables more pairs.
    this.curPairs = 1;
  }

  reset(): void {
    this.ctx = null;
    this.clearState();
  }

  queueReset(index: number): void {
    // The core detached the ring: chains we hold are gone with it.
    if (this.stash[index]) this.stash[index] = [];
    if (this.backlog[index]) this.backlog[index] = [];
    if (index % 2 === 0 && index < 2 * this.maxPairs) this.rxResetting[index] = true;
    const c = this.coal[index];
    if (c) {
      if (c.timer) c.timer.cancelled = true;
      // net.device.109 / net.device.110: back to the TX_SET / RX_SET values (0 when never set).
      const g = index % 2 === 1 ? this.coalTx : this.coalRx;
      this.coal[index] = { maxPackets: g.maxPackets, maxUsecs: g.maxUsecs, count: 0, timer: null };
    }
  }

  queueNotify(index: number): void {
    const ctx = this.ctx;
    if (!ctx) return;
    if (index === this.ctrlIndex) {
      this.processCtrl(ctx.queue(index));
      return;
    }
    if (index < 0 || index >= 2 * this.maxPairs) return;
    this.rxResetting[index] = false;
    this.qstats[index]!.notifications = add64(this.qstats[index]!.notifications, 1);
    if (index % 2 === 1) this.processTx(index);
    else this.drain(index);
  }

  private clearState(): void {
    // net.device.75: inner-header hashing off until HASH_TUNNEL_SET, and again after reset.
    this.tunnelTypes = 0;
    // net.device.104: contexts do not survive a reset.
    this.rssContexts?.clear();
    // net.device.89 (empty MAC table), net.device.113 (coalescing 0), VLAN table empty, rx modes default.
    this.mac.set(this.permanentMac);
    this.config.set(this.permanentMac, NetCfg.MAC);
    const s = this.cfgView.getUint16(NetCfg.STATUS, true);
    this.cfgView.setUint16(NetCfg.STATUS, s & ~NetStatus.ANNOUNCE, true);
    this.promisc = false;
    this.allmulti = true;
    this.alluni = this.nomulti = this.nouni = this.nobcast = false;
    this.uniTable = [];
    this.multiTable = [];
    this.uniOverflow = this.multiOverflow = false;
    this.vlans.fill(0);
    this.rss = null;
    this.hashCfg = null;
    this.flows.clear();
    for (const c of this.coal) if (c?.timer) c.timer.cancelled = true;
    const n = this.numQueues;
    this.backlog = Array.from({ length: n }, () => []);
    this.stash = Array.from({ length: n }, () => []);
    this.drainScheduled = new Array<boolean>(n).fill(false);
    this.rxResetting = new Array<boolean>(n).fill(false);
    this.txScheduled = new Array<boolean>(n).fill(false);
    this.coal = Array.from({ length: n }, () => ({ maxPackets: 0, maxUsecs: 0, count: 0, timer: null }));
    this.coalTx = { maxPackets: 0, maxUsecs: 0 };
    this.coalRx = { maxPackets: 0, maxUsecs: 0 };
    this.cvqStats = { commands: 0, ok: 0 };
    this.qstats = Array.from({ length: n }, newStats);
    this.curPairs = 1;
  }

  private violate(id: string, detail: string): void {
    this.violationCount++;
    if (this.violations.length < MAX_VIOLATIONS) this.violations.push({ id, detail });
  }

  // ------------------------------------------------------------------ notification coalescing

  /** `n` more used buffers were pushed on `index`: flush now or when the coalescing condition is met. */
  private signal(q: DeviceQueue, index: number, n: number): void {
    const c = this.coal[index]!;
    if (c.maxPackets === 0 || c.maxUsecs === 0) {
      this.qstats[index]!.interrupts = add64(this.qstats[index]!.interrupts, 1);
      q.flush();
      return;
    }
    c.count += n;
    if (c.count >= c.maxPackets) {
      this.fireCoal(q, index);
    } else if (!c.timer && this.ctx) {
      const epochCtx = this.ctx;
      c.timer = this.ctx.scheduler.schedule(c.maxUsecs * 1000, `${this.name}:coal${index}`, () => {
        c.timer = null;
        if (this.ctx !== epochCtx) return;
        this.fireCoal(q, index);
      });
    }
  }

  private fireCoal(q: DeviceQueue, index: number): void {
    const c = this.coal[index]!;
    if (c.timer) {
      c.timer.cancelled = true;
      c.timer = null;
    }
    c.count = 0;
    this.qstats[index]!.interrupts = add64(this.qstats[index]!.interrupts, 1);
    q.flush();
  }

  private setCoal(index: number, maxPackets: number, maxUsecs: number): void {
    const c = this.coal[index]!;
    c.maxPackets = maxPackets;
    c.maxUsecs = maxUsecs;
    // A change may meet the condition at once (pending packets already reach the new max).
    if (this.ctx && (c.count > 0 || c.timer) && (maxPackets === 0 || maxUsecs === 0 || c.count >= maxPackets)) this.fireCoal(this.ctx.queue(index), index);
  }

  // ------------------------------------------------------------------ transmit

  private processTx(index: number): void {
    const ctx = this.ctx!;
    const q = ctx.queue(index);
    const st = this.qstats[index]!;
    let done = 0;
    const budget = this.queueSize;
    for (;;) {
      if (done >= budget) {
        // Bounded work per run: come back for the rest.
        if (!this.txScheduled[index]) {
          this.txScheduled[index] = true;
          ctx.scheduler.schedule(0, `${this.name}:tx${index}`, () => {
            this.txScheduled[index] = false;
            if (this.ctx === ctx) this.processTx(index);
          });
        }
        break;
      }
      const chain = q.pop();
      if (!chain) {
        q.disableNotify();
        if (q.enableNotify()) break;
        continue;
      }
      done++;
      const wf = this.readTxFrame(ctx, chain, index);
      q.push(chain, 0);
      if (wf) {
        // Remember the flow for automatic receive steering (replies come back on this pair).
        if (this.f.mq) this.noteFlow(wf.data, parseFrame(wf.data), (index - 1) / 2);
        st.packets = add64(st.packets, 1);
        st.bytes = add64(st.bytes, wf.data.length);
        if (this.linkUp && this.backend) this.backend.send(wf);
      } else {
        st.drops = add64(st.drops, 1);
      }
    }
    if (done > 0) this.signal(q, index, done);
  }

  /** Read and validate one transmit chain; null: dropped (malformed, recorded). */
  private readTxFrame(ctx: DeviceContext, chain: Chain, index: number): WireFrame | null {
    const st = this.qstats[index]!;
    const hl = this.hdrLen;
    const malformed = (id: string, detail: string): null => {
      st.dropsSpecial = add64(st.dropsSpecial, 1);
      this.violate(id, detail);
      return null;
    };
    // net.driver.91/92: a transmit queue beyond the pairs in use.
    const pair = (index - 1) / 2;
    const allowed = this.rss ? this.rss.maxTx : this.curPairs;
    if (pair >= allowed) this.violate(pair >= this.curPairs && !this.rss ? 'net.driver.91' : 'net.driver.92', `transmit on transmitq${pair + 1} with ${allowed} pair(s) in use`);
    if (chain.readableLen < hl) {
      this.violate('net.driver.66', `transmit chain shorter than the ${hl}-byte header`);
      return malformed('net.driver.15', `transmit chain of ${chain.readableLen} readable bytes, header is ${hl}`);
    }
    const total = chain.readableLen - hl;
    if (total < ETH_HLEN) return malformed('net.driver.15', `frame of ${total} bytes after the header`);
    if (total > MAX_FRAME) return malformed('net.driver.9', `frame of ${total} bytes`);
    const hdr = new Uint8Array(hl);
    gatherInto(ctx.mem, chain.readable, 0, hdr);
    const data = new Uint8Array(total);
    gatherInto(ctx.mem, chain.readable, hl, data);
    const hv = new DataView(hdr.buffer);
    const flags = hdr[NetHdr.OFF_FLAGS]!;
    const gsoType = hdr[NetHdr.OFF_GSO_TYPE]!;
    const gsoSize = hv.getUint16(NetHdr.OFF_GSO_SIZE, true);
    const csumStart = hv.getUint16(NetHdr.OFF_CSUM_START, true);
    const csumOffset = hv.getUint16(NetHdr.OFF_CSUM_OFFSET, true);
    if (this.f.outNet && hl >= NetHdr.OFF_OUTER_NH + 2) {
      // net.device.17/.18: a nonzero outer_nh_offset is used (checked against the headers, a frame whose
      // outer network header is elsewhere is dropped); zero, or without OUT_NET_HEADER, it is not read.
      const onh = hv.getUint16(NetHdr.OFF_OUTER_NH, true);
      if (onh !== 0) {
        const fi = parseFrame(data);
        if (fi.ipVersion === 0 || onh !== fi.l3) return malformed('net.tx.outer_nh', `outer_nh_offset ${onh}, outer network header at ${fi.ipVersion === 0 ? 'none' : fi.l3}`);
      }
    }
    // net.device.15: bits the device does not know are ignored; known ones are checked.
    if (!this.f.csum && flags !== 0) return malformed('net.driver.17', `flags ${flags} without VIRTIO_NET_F_CSUM`);
    if (flags & NetHdr.F_DATA_VALID && gsoType & (NetHdr.GSO_UDP_TUNNEL_IPV4 | NetHdr.GSO_UDP_TUNNEL_IPV6)) this.violate('net.driver.60', 'DATA_VALID with a tunnel gso_type');
    if (flags & (NetHdr.F_DATA_VALID | NetHdr.F_RSC_INFO)) return malformed('net.driver.59', `transmit flags ${flags} carry DATA_VALID/RSC_INFO`);
    const T4 = NetHdr.GSO_UDP_TUNNEL_IPV4;
    const T6 = NetHdr.GSO_UDP_TUNNEL_IPV6;
    const tunnel = gsoType & (T4 | T6);
    const tunnelCsum = (flags & NetHdr.F_UDP_TUNNEL_CSUM) !== 0;
    if (tunnelCsum) {
      if (!tunnel) return malformed('net.driver.40', 'UDP_TUNNEL_CSUM without a tunnel gso_type');
      if (!this.f.hostTunnelCsum) {
        this.violate('net.driver.34', 'outer checksum offload without HOST_UDP_TUNNEL_GSO_CSUM');
        this.violate('net.driver.37', 'outer checksum offload without HOST_UDP_TUNNEL_GSO_CSUM');
        this.violate('net.driver.36', 'UDP_TUNNEL_CSUM set');
        return malformed('net.driver.57', 'UDP_TUNNEL_CSUM without HOST_UDP_TUNNEL_GSO_CSUM');
      }
    }
    if (flags & NetHdr.F_SECURITY) {
      this.violate('net.driver.62', 'SECURITY flag: no IPsec SA can be named');
      return malformed('net.driver.61', 'SECURITY flag without IPsec');
    }
    if (hl >= NetHdr.SIZE_BASE && (this.f.version1 || this.f.mrg)) {
      const nb = hv.getUint16(NetHdr.OFF_NUM_BUFFERS, true);
      if (nb !== 0) return malformed('net.driver.16', `num_buffers ${nb} on transmit`);
    }
    const needsCsum = (flags & NetHdr.F_NEEDS_CSUM) !== 0;
    // net.device.16: csum_start/csum_offset are used only with NEEDS_CSUM.
    if (needsCsum && csumStart + csumOffset + 2 > total) return malformed('net.driver.44', `csum_start ${csumStart} + csum_offset ${csumOffset} outside a ${total}-byte frame`);
    const base = gsoType & 0x1f;
    if (tunnel) {
      // net.device.22 / net.device.24: contradictory UDP-tunnel headers are refused.
      if (!this.f.hostTunnel) {
        if (tunnel === (T4 | T6)) this.violate('net.driver.39', 'both UDP tunnel bits');
        if (base === NetHdr.GSO_UDP) this.violate('net.driver.38', 'UDP tunnel bit with GSO_UDP');
        this.violate('net.driver.31', `gso_type ${gsoType} without HOST_UDP_TUNNEL_GSO`);
        return malformed('net.driver.56', `gso_type ${gsoType} has UDP tunnel bits`);
      }
      if (tunnel === (T4 | T6)) return malformed('net.driver.39', 'both UDP tunnel bits');
      if (base === NetHdr.GSO_UDP) return malformed('net.driver.38', 'UDP tunnel bit with GSO_UDP');
      if (!needsCsum || base === NetHdr.GSO_NONE) return malformed('net.driver.46', `tunnel gso_type ${gsoType} without NEEDS_CSUM or without a GSO type`);
    }
    const ecn = (gsoType & NetHdr.GSO_ECN) !== 0;
    if (ecn && !this.f.hostEcn) return malformed('net.driver.28', 'GSO_ECN without VIRTIO_NET_F_HOST_ECN');
    const csumCount: 'none' | 'needs' = needsCsum ? 'needs' : 'none';
    if (needsCsum && this.strict && !tunnel) {
      const bad = this.checkPartialCsum(data, csumStart, csumOffset);
      if (bad) return malformed(bad[0], bad[1]);
    }
    if (base !== NetHdr.GSO_NONE && !this.f.hostTso4 && !this.f.hostTso6 && !this.f.hostUso) this.violate('net.driver.45', `gso_type ${gsoType} with no host GSO feature negotiated`);
    if (base === NetHdr.GSO_NONE) {
      // net.device.6 / net.driver.9: frames up to mtu + Ethernet header (+ a VLAN tag) go out whole.
      const limit = this.mtu + ETH_HLEN + 4;
      if (total > limit) return malformed(this.f.mtu ? 'net.driver.9' : 'net.tx.oversize', `frame of ${total} bytes without GSO, link takes ${limit}`);
      st.csumNone = add64(st.csumNone, csumCount === 'none' ? 1 : 0);
      st.needsCsum = add64(st.needsCsum, csumCount === 'needs' ? 1 : 0);
      if (needsCsum) return { data, csum: { start: csumStart, offset: csumOffset } };
      // net.device.25: without NEEDS_CSUM the checksum is passed on unverified (no dataValid).
      return { data };
    }
    if (base === NetHdr.GSO_TCPV4 && !this.f.hostTso4) return malformed('net.driver.21', 'GSO_TCPV4 without HOST_TSO4');
    if (base === NetHdr.GSO_TCPV6 && !this.f.hostTso6) return malformed('net.driver.23', 'GSO_TCPV6 without HOST_TSO6');
    if (base === NetHdr.GSO_UDP) return malformed('net.driver.25', 'GSO_UDP without HOST_UFO');
    if (base === NetHdr.GSO_UDP_L4 && !this.f.hostUso) return malformed('net.driver.27', 'GSO_UDP_L4 without HOST_USO');
    if (base !== NetHdr.GSO_TCPV4 && base !== NetHdr.GSO_TCPV6 && base !== NetHdr.GSO_UDP_L4) return malformed('net.tx.gso_type', `unknown gso_type ${gsoType}`);
    if (!needsCsum) return malformed('net.driver.46', 'GSO without NEEDS_CSUM');
    if (gsoSize === 0) return malformed('net.driver.47', 'GSO with gso_size 0');
    // net.device.21 / net.device.23: hdr_len is not trusted, and the tunnel offsets are read only for tunnel GSO;
    // the headers are found by parsing.
    const tun = tunnel ? { outerTh: hv.getUint16(NetHdr.OFF_OUTER_TH, true), innerNh: hv.getUint16(NetHdr.OFF_INNER_NH, true) } : undefined;
    const layers = gsoLayers(data, { type: base, size: gsoSize, ...(tun ? { tunnel: tun } : {}) });
    if (typeof layers === 'string') return malformed(tun ? 'net.driver.51' : 'net.driver.45', `gso_type ${gsoType}: ${layers}`);
    const info = layers.inner;
    if (tun && (tunnel === T4) !== (info.ipVersion === 4)) return malformed(info.ipVersion === 6 ? 'net.driver.33' : 'net.driver.32', `tunnel bit ${tunnel === T4 ? 'IPV4' : 'IPV6'} with an inner IPv${info.ipVersion} header`);
    const tcp = info.proto === IpProto.TCP;
    const wantOff = tcp ? 16 : 6;
    if (this.strict && this.f.hdrLen && hv.getUint16(NetHdr.OFF_HDR_LEN, true) !== info.headerLen) this.violate('net.driver.48', `hdr_len ${hv.getUint16(NetHdr.OFF_HDR_LEN, true)}, headers are ${info.headerLen} bytes`);
    // net.driver.29: with HOST_ECN, a TSO frame carrying CWR must say GSO_ECN.
    if (tcp && this.f.hostEcn && !ecn && data[info.l4 + 13]! & 0x80) this.violate('net.driver.29', 'TSO frame with CWR but no GSO_ECN');
    if (csumStart !== info.l4 || csumOffset !== wantOff) return malformed(tun ? 'net.driver.51' : 'net.driver.44', `csum_start/offset ${csumStart}/${csumOffset} do not point at the ${tcp ? 'TCP' : 'UDP'} checksum (${info.l4}/${wantOff})`);
    if (this.strict) {
      // net.driver.43: the slot holds the pseudo-header sum (of the whole GSO packet).
      // (with the GSO packet's length, or with length 0 as some stacks do for GSO)
      const slot = readBe16(data, info.l4 + wantOff);
      const ph = csumFold(pseudoHeaderSum(data, info.l3, info.ipVersion === 6, info.proto, info.ipEnd - info.l4));
      const ph0 = csumFold(pseudoHeaderSum(data, info.l3, info.ipVersion === 6, info.proto, 0));
      if (slot !== ph && slot !== ph0) this.violate('net.driver.43', `checksum slot 0x${slot.toString(16)}, pseudo-header sum 0x${ph.toString(16)}`);
      const outer = layers.outer;
      if (outer) {
        const oc = readBe16(data, outer.l4 + 6);
        const oph = csumFold(pseudoHeaderSum(data, outer.l3, outer.ipVersion === 6, IpProto.UDP, readBe16(data, outer.l4 + 4)));
        if (tunnelCsum && oc !== oph) this.violate('net.driver.53', `outer UDP checksum 0x${oc.toString(16)}, pseudo-header sum 0x${oph.toString(16)}`);
        if (!tunnelCsum && oc !== 0 && (info.ipEnd - info.headerLen) % gsoSize !== 0) {
          // 0, or a complete checksum precomputed for equal-sized segments, is all that is allowed here.
          if (oc === oph) this.violate('net.driver.35', 'outer checksum left for offload without UDP_TUNNEL_CSUM');
          this.violate('net.driver.54', 'outer UDP checksum needs validation');
          this.violate('net.driver.55', `outer UDP checksum 0x${oc.toString(16)} is neither 0 nor complete`);
        }
      }
    }
    st.needsCsum = add64(st.needsCsum, 1);
    const payload = info.ipEnd - info.headerLen;
    const segs = Math.max(1, Math.ceil(payload / gsoSize));
    if (segs > 1) {
      st.gsoPackets = add64(st.gsoPackets, 1);
      st.gsoBytes = add64(st.gsoBytes, data.length);
      st.gsoSegments = add64(st.gsoSegments, segs);
      st.gsoSegmentsBytes = add64(st.gsoSegmentsBytes, data.length + (segs - 1) * info.headerLen);
    }
    return { data, csum: { start: csumStart, offset: csumOffset }, gso: { type: base, size: gsoSize, hdrLen: info.headerLen, ecn, ...(tun ? { tunnel: tun, outerCsum: tunnelCsum } : {}) } };
  }

  /** Strict mode: NEEDS_CSUM must point at the TCP/UDP checksum, which holds the pseudo-header sum (net.driver.42-.44). */
  private checkPartialCsum(data: Uint8Array, start: number, offset: number): [string, string] | null {
    const info = parseFrame(data);
    if (info.l4 < 0 || (info.proto !== IpProto.TCP && info.proto !== IpProto.UDP)) return null;
    const want = info.proto === IpProto.TCP ? 16 : 6;
    if (start !== info.l4 || offset !== want) return ['net.driver.44', `csum_start/offset ${start}/${offset}, the ${info.proto === IpProto.TCP ? 'TCP' : 'UDP'} checksum is at ${info.l4}/${want}`];
    const copy = data.slice(0, info.ipEnd);
    completeChecksum(copy, start, offset);
    const r = verifyChecksums(copy);
    if (!r.l4) return ['net.driver.43', 'the checksum slot did not hold the pseudo-header sum'];
    return null;
  }

  private noteFlow(data: Uint8Array, info: FrameInfo, pair: number): void {
    if (this.flows.size > 4096) this.flows.clear();
    this.flows.set(flowKey(data, info, true), pair);
  }

  // ------------------------------------------------------------------ receive

  /** A frame arrives from the network. */
  receive(wf: WireFrame): void {
    const ctx = this.ctx;
    if (!ctx || !this.linkUp) return;
    const data = wf.data;
    if (data.length < ETH_HLEN) return;
    const info = parseFrame(data);
    if (!this.accept(data, info)) {
      this.filtered++;
      return;
    }
    const { pair, hash } = this.steer(data, info);
    if (pair < 0) return;
    const index = 2 * pair;
    const st = this.qstats[index]!;
    if (this.rxResetting[index]) {
      // net.device.100 / net.device.102: the chosen receive queue is being reset: drop.
      st.drops = add64(st.drops, 1);
      return;
    }
    const hv = hash.value;
    const hr = this.f.hashReport ? hash.report : HashReport.NONE;
    const items: RxItem[] = [];
    if (wf.gso) {
      const gt = wf.gso.type;
      const tun = wf.gso.tunnel;
      const innerV6 = tun ? (data[tun.innerNh]! >> 4) === 6 : info.ipVersion === 6;
      let canGso = (gt === NetHdr.GSO_TCPV4 && this.rxTso4) || (gt === NetHdr.GSO_TCPV6 && this.rxTso6) || (gt === NetHdr.GSO_UDP_L4 && (innerV6 ? this.rxUso6 : this.rxUso4));
      // net.device.49: UDP-tunnel GSO only to a driver that negotiated GUEST_UDP_TUNNEL_GSO.
      if (tun && !this.rxTunnel) canGso = false;
      // A super-frame carrying ECN (CWR): GSO_ECN with GUEST_ECN (net.device.42); without it, segments (net.device.41).
      const cwr = !tun && info.l4 >= 0 && info.proto === IpProto.TCP && (data[info.l4 + 13]! & 0x80) !== 0;
      if (cwr && !this.rxEcn) canGso = false;
      if (canGso && wf.csum && tun) {
        // net.device.50/.51/.52: tunnel bit of the inner protocol, both offsets, and an outer UDP
        // checksum that needs no offload (0 here; net.device.65).
        const copy = data.slice();
        writeBe16(copy, tun.outerTh + 6, 0);
        items.push({ data: copy, flags: NetHdr.F_NEEDS_CSUM, gsoType: gt | (innerV6 ? NetHdr.GSO_UDP_TUNNEL_IPV6 : NetHdr.GSO_UDP_TUNNEL_IPV4), gsoSize: wf.gso.size, hdrLen: wf.gso.hdrLen, csumStart: wf.csum.start, csumOffset: wf.csum.offset, hashValue: hv, hashReport: hr, outerTh: tun.outerTh, innerNh: tun.innerNh });
        st.gsoPackets = add64(st.gsoPackets, 1);
        st.gsoBytes = add64(st.gsoBytes, data.length);
        st.needsCsum = add64(st.needsCsum, 1);
      } else if (canGso && wf.csum) {
        // net.device.55/.56/.59: GSO delivered with NEEDS_CSUM, gso_size and hdr_len.
        items.push({ data, flags: NetHdr.F_NEEDS_CSUM, gsoType: gt | (cwr ? NetHdr.GSO_ECN : 0), gsoSize: wf.gso.size, hdrLen: wf.gso.hdrLen, csumStart: wf.csum.start, csumOffset: wf.csum.offset, hashValue: hv, hashReport: hr });
        st.gsoPackets = add64(st.gsoPackets, 1);
        st.gsoBytes = add64(st.gsoBytes, data.length);
        st.needsCsum = add64(st.needsCsum, 1);
      } else {
        // net.device.35/.37/.54: the receiver did not take GSO: segment here, checksums complete.
        const segs = segment(data, wf.gso);
        if (!segs) {
          st.drops = add64(st.drops, 1);
          return;
        }
        for (const s of segs) items.push(this.plainItem(s, st, true, hv, hr));
      }
    } else if (wf.csum) {
      if (this.rxCsum && wf.csum.start + wf.csum.offset + 2 <= data.length) {
        // net.device.45-.48: the pseudo-header sum sits in the slot; the driver completes it.
        items.push({ data, flags: NetHdr.F_NEEDS_CSUM, gsoType: NetHdr.GSO_NONE, gsoSize: 0, hdrLen: 0, csumStart: wf.csum.start, csumOffset: wf.csum.offset, hashValue: hv, hashReport: hr });
        st.needsCsum = add64(st.needsCsum, 1);
      } else {
        const copy = data.slice();
        if (wf.csum.start + wf.csum.offset + 2 <= copy.length) completeChecksum(copy, wf.csum.start, wf.csum.offset);
        items.push(this.plainItem(copy, st, true, hv, hr));
      }
    } else {
      items.push(this.plainItem(data, st, wf.dataValid ?? false, hv, hr));
    }
    const bl = this.backlog[index]!;
    for (const it of items) {
      // net.device.5: with MTU negotiated, no GSO_NONE frame longer than mtu + link header.
      if (this.f.mtu && it.gsoType === NetHdr.GSO_NONE && it.data.length > this.mtu + ETH_HLEN + (info.vlan >= 0 ? 4 : 0)) {
        st.drops = add64(st.drops, 1);
        continue;
      }
      if (bl.length >= this.rxBacklogMax) {
        st.drops = add64(st.drops, 1);
        st.dropsSpecial = add64(st.dropsSpecial, 1);
        continue;
      }
      bl.push(it);
    }
    this.scheduleDrain(index);
  }

  /** A frame with complete checksums: DATA_VALID when GUEST_CSUM is on and the checksums verify (net.device.61). */
  private plainItem(data: Uint8Array, st: QueueStats, knownGood: boolean, hv: number, hr: number): RxItem {
    let flags = 0;
    if (this.rxCsum) {
      const r = verifyChecksums(data);
      const checked = r.what.includes('tcp') || r.what.includes('udp');
      if (checked && r.ip && r.l4) {
        flags = NetHdr.F_DATA_VALID;
        st.csumValid = add64(st.csumValid, 1);
      } else if (checked) st.csumBad = add64(st.csumBad, 1);
      else st.csumNone = add64(st.csumNone, 1);
    } else {
      st.csumNone = add64(st.csumNone, 1);
    }
    void knownGood;
    // net.device.33: without GUEST_CSUM flags stay 0.
    return { data, flags, gsoType: NetHdr.GSO_NONE, gsoSize: 0, hdrLen: 0, csumStart: 0, csumOffset: 0, hashValue: hv, hashReport: hr };
  }

  /** Receive filtering: rx modes, MAC tables, VLAN table (net.device.93/.94, SHOULDs .77-.92, .95). */
  private accept(data: Uint8Array, info: FrameInfo): boolean {
    if (this.promisc) return true;
    if (this.f.ctrlVlan && info.vlan >= 0 && !(this.vlans[info.vlan >> 3]! & (1 << (info.vlan & 7)))) return false;
    if (isBroadcast(data, 0)) return !this.nobcast;
    if (isMulticast(data, 0)) {
      if (this.nomulti) return false;
      if (this.allmulti || this.multiOverflow) return true;
      return this.multiTable.includes(macKey(data, 0));
    }
    if (this.nouni) return false;
    if (this.alluni || this.uniOverflow) return true;
    if (macEquals(data, 0, this.mac)) return true;
    return this.uniTable.includes(macKey(data, 0));
  }

  /** Pick the receive pair (RSS, automatic steering, or receiveq1) and compute the packet hash. */
  private steer(data: Uint8Array, info: FrameInfo): { pair: number; hash: { value: number; report: number } } {
    if (this.tunnelTypes & HashTunnel.VXLAN) {
      // Inner-header hash: a VXLAN packet (the one enabled type the model recognises) is hashed on its
      // inner Ethernet frame; anything else on its outer headers (net.device.73).
      const v = vxlanOffsets(data);
      if (v) {
        data = data.subarray(v.innerNh - ETH_HLEN);
        info = parseFrame(data);
      }
    }
    const rss = this.rss;
    if (rss) {
      const h = hashPacket(data, info, rss.hashTypes, rss.key);
      // net.device.101: no hash -> unclassified_queue; else indirection_table[hash & mask].
      const q = h.report === HashReport.NONE ? rss.unclassified : rss.table[h.value & rss.mask]!;
      return { pair: q >> 1, hash: h };
    }
    const hc = this.hashCfg;
    const h = hc ? hashPacket(data, info, hc.hashTypes, hc.key) : { value: 0, report: HashReport.NONE };
    if (this.curPairs <= 1) return { pair: 0, hash: h };
    // net.device.98: never above the pairs in use.
    const known = this.flows.get(flowKey(data, info, false));
    if (known !== undefined && known < this.curPairs) return { pair: known, hash: h };
    const ah = hashPacket(data, info, HashType.TCPv4 | HashType.UDPv4 | HashType.IPv4 | HashType.TCPv6 | HashType.UDPv6 | HashType.IPv6, DEFAULT_RSS_KEY);
    return { pair: ah.value % this.curPairs, hash: h };
  }

  private scheduleDrain(index: number): void {
    if (this.drainScheduled[index] || !this.ctx) return;
    this.drainScheduled[index] = true;
    const ctx = this.ctx;
    ctx.scheduler.schedule(0, `${this.name}:rx${index}`, () => {
      this.drainScheduled[index] = false;
      if (this.ctx === ctx) this.drain(index);
    });
  }

  /** Deliver backlogged frames of receive queue `index` while buffers last. */
  private drain(index: number): void {
    const ctx = this.ctx!;
    const q = ctx.queue(index);
    const bl = this.backlog[index]!;
    let delivered = 0;
    let head = 0;
    let budget = this.queueSize * 4;
    while (head < bl.length && budget-- > 0) {
      const r = this.f.mrg ? this.deliverMerged(ctx, q, index, bl[head]!) : this.deliverOne(ctx, q, index, bl[head]!);
      if (r === 'wait') {
        // Out of buffers: ask to be notified when the driver adds some (no lost wake-up).
        if (!q.enableNotify()) continue;
        break;
      }
      if (r === 'dead') break;
      head++;
      if (r > 0) delivered += r;
    }
    bl.splice(0, head);
    if (delivered > 0) this.signal(q, index, delivered);
    if (bl.length > 0 && budget <= 0) this.scheduleDrain(index);
  }

  private nextChain(q: DeviceQueue, index: number): Chain | null {
    const s = this.stash[index]!;
    if (s.length > 0) return s.shift()!;
    return q.pop();
  }

  private writeHeader(ctx: DeviceContext, chain: Chain, it: RxItem, numBuffers: number): void {
    const h = new Uint8Array(this.hdrLen);
    const v = new DataView(h.buffer);
    h[NetHdr.OFF_FLAGS] = it.flags;
    h[NetHdr.OFF_GSO_TYPE] = it.gsoType;
    v.setUint16(NetHdr.OFF_HDR_LEN, it.hdrLen, true);
    v.setUint16(NetHdr.OFF_GSO_SIZE, it.gsoSize, true);
    if (this.f.rscExt && (it.gsoType & 0x1f) !== NetHdr.GSO_NONE && it.gsoSize > 0) {
      // net.device.57: a coalesced frame says so (RSC_INFO), with csum_start = the segments it
      // stands for and csum_offset = duplicate ACKs folded into it (the model merges none).
      h[NetHdr.OFF_FLAGS] = it.flags | NetHdr.F_RSC_INFO;
      v.setUint16(NetHdr.OFF_CSUM_START, Math.min(0xffff, Math.max(1, Math.ceil((it.data.length - it.hdrLen) / it.gsoSize))), true);
      v.setUint16(NetHdr.OFF_CSUM_OFFSET, 0, true);
    } else {
      v.setUint16(NetHdr.OFF_CSUM_START, it.csumStart, true);
      v.setUint16(NetHdr.OFF_CSUM_OFFSET, it.csumOffset, true);
    }
    if (this.hdrLen >= NetHdr.SIZE_BASE) v.setUint16(NetHdr.OFF_NUM_BUFFERS, numBuffers, true);
    if (this.hdrLen >= NetHdr.SIZE_HASH && this.f.hashReport) {
      v.setUint32(NetHdr.OFF_HASH_VALUE, it.hashReport === HashReport.NONE ? 0 : it.hashValue, true);
      v.setUint16(NetHdr.OFF_HASH_REPORT, it.hashReport, true);
    }
    if (this.hdrLen >= NetHdr.SIZE_TUNNEL) {
      // net.device.51: tunnel offsets only for tunnel GSO (0 otherwise).
      v.setUint16(NetHdr.OFF_OUTER_TH, it.outerTh ?? 0, true);
      v.setUint16(NetHdr.OFF_INNER_NH, it.innerNh ?? 0, true);
    }
    if (this.hdrLen >= NetHdr.OFF_OUTER_NH + 2 && this.f.outNet) {
      // net.device.43/.44: outer_nh_offset only for a frame with a valid (outer) IP header, else 0.
      const fi = parseFrame(it.data);
      v.setUint16(NetHdr.OFF_OUTER_NH, fi.l3 > 0 && fi.ipVersion !== 0 ? fi.l3 : 0, true);
    }
    this.rxHeaderHook?.(h, it.data);
    scatter(ctx.mem, chain.writable, 0, h);
  }

  /** Without MRG_RXBUF: one chain per frame (net.device.28/.29). Returns frames delivered, or 'wait'. */
  private deliverOne(ctx: DeviceContext, q: DeviceQueue, index: number, it: RxItem): number | 'wait' | 'dead' {
    const st = this.qstats[index]!;
    for (let tries = 0; tries < this.queueSize + 1; tries++) {
      const chain = this.nextChain(q, index);
      if (!chain) return 'wait';
      if (chain.writableLen < this.hdrLen + ETH_HLEN) {
        // A buffer that can never hold a frame: hand it back empty (used.len 0).
        this.violate('net.driver.64', `receive buffer of ${chain.writableLen} bytes`);
        q.push(chain, 0);
        continue;
      }
      if (this.strict && this.f.mtu && chain.writableLen < this.hdrLen + this.mtu + ETH_HLEN) this.violate('net.driver.8', `receive buffer of ${chain.writableLen} bytes, mtu ${this.mtu}`);
      const need = this.hdrLen + it.data.length;
      if (chain.writableLen < need) {
        // Too small for this frame: drop the frame, keep the buffer for the next one.
        this.stash[index]!.unshift(chain);
        st.drops = add64(st.drops, 1);
        st.dropsSpecial = add64(st.dropsSpecial, 1);
        return 0;
      }
      this.writeHeader(ctx, chain, it, 1);
      scatter(ctx.mem, chain.writable, this.hdrLen, it.data);
      q.push(chain, need);
      st.packets = add64(st.packets, 1);
      st.bytes = add64(st.bytes, it.data.length);
      return 1;
    }
    return 'wait';
  }

  /** With MRG_RXBUF: spread the frame over as many chains as needed (net.device.27/.30/.31/.32). */
  private deliverMerged(ctx: DeviceContext, q: DeviceQueue, index: number, it: RxItem): number | 'wait' | 'dead' {
    const st = this.qstats[index]!;
    const need = this.hdrLen + it.data.length;
    const s = this.stash[index]!;
    // Gather chains (already held ones first) until they hold the frame.
    let have = 0;
    for (const c of s) have += c.writableLen;
    while (have < need) {
      if (s.length >= Math.min(this.queueSize, 0xffff)) {
        // Every buffer the ring can hold is not enough: drop the frame, keep the buffers.
        st.drops = add64(st.drops, 1);
        st.dropsSpecial = add64(st.dropsSpecial, 1);
        return 0;
      }
      const c = q.pop();
      if (!c) return 'wait';
      if (c.writableLen < this.hdrLen) {
        // net.driver.65: each mergeable buffer must hold at least the header.
        const err = new DriverMisbehaviourError('net.rx.buffer', 'mergeable receive buffer smaller than virtio_net_hdr', { statements: ['net.driver.65'], expected: `>= ${this.hdrLen} bytes`, seen: `${c.writableLen}` });
        this.violate('net.driver.65', err.message);
        q.push(c, 0);
        this.stash[index] = [];
        for (const held of s) q.push(held, 0);
        q.flush();
        ctx.needsReset(err);
        return 'dead';
      }
      s.push(c);
      have += c.writableLen;
    }
    // Count the chains actually used; the rest stay held for the next frame.
    let used = 0;
    let acc = 0;
    while (acc < need) acc += s[used++]!.writableLen;
    const chains = s.splice(0, used);
    let off = 0; // offset into the frame
    for (let i = 0; i < chains.length; i++) {
      const c = chains[i]!;
      let room = c.writableLen;
      let w = 0;
      if (i === 0) {
        this.writeHeader(ctx, c, it, chains.length);
        room -= this.hdrLen;
        w = this.hdrLen;
      }
      const n = Math.min(room, it.data.length - off);
      scatter(ctx.mem, c.writable, w, it.data.subarray(off, off + n));
      off += n;
      c === chains[0] ? q.push(c, this.hdrLen + n) : q.push(c, n);
    }
    st.packets = add64(st.packets, 1);
    st.bytes = add64(st.bytes, it.data.length);
    return chains.length;
  }

  // ------------------------------------------------------------------ control queue

  private processCtrl(q: DeviceQueue): void {
    const ctx = this.ctx!;
    let n = 0;
    for (let budget = this.queueSize; budget > 0; budget--) {
      const chain = q.pop();
      if (!chain) break;
      n++;
      this.cvqStats.commands = add64(this.cvqStats.commands, 1);
      if (chain.writableLen < 1) {
        // No room for the ack: nothing to answer with.
        this.violate('net.ctrl.noack', `control command without a writable ack byte`);
        q.push(chain, 0);
        continue;
      }
      let ack: number = NetCtrl.ERR;
      let result: Uint8Array | null = null;
      if (chain.readableLen < 2) {
        this.violate('net.ctrl.short', `control command of ${chain.readableLen} readable bytes`);
      } else {
        const len = Math.min(chain.readableLen, 1 << 16);
        const cmd = new Uint8Array(len);
        gatherInto(ctx.mem, chain.readable, 0, cmd);
        const r = this.ctrlHook?.(cmd[0]!, cmd[1]!, cmd.subarray(2)) ?? this.command(cmd[0]!, cmd[1]!, cmd.subarray(2), chain.writableLen - 1);
        ack = r.ack;
        result = r.result ?? null;
      }
      if (ack === NetCtrl.OK) this.cvqStats.ok = add64(this.cvqStats.ok, 1);
      // The command's effect is in place before the buffer is used (net.device.90/.91/.96).
      scatter(ctx.mem, chain.writable, 0, new Uint8Array([ack]));
      let written = 1;
      if (result) written += scatter(ctx.mem, chain.writable, 1, result.subarray(0, Math.max(0, chain.writableLen - 1)));
      q.push(chain, written);
    }
    if (n > 0) q.flush();
  }

  private command(cls: number, cmd: number, data: Uint8Array, resultRoom: number): { ack: number; result?: Uint8Array } {
    const OK = { ack: NetCtrl.OK };
    const ERR = { ack: NetCtrl.ERR };
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const bool = (): boolean | null => (data.length >= 1 && (data[0] === 0 || data[0] === 1) ? data[0] === 1 : null);
    switch (cls) {
      case NetCtrl.CLASS_RX: {
        const extra = cmd >= NetCtrl.RX_ALLUNI && cmd <= NetCtrl.RX_NOBCAST;
        if (cmd <= NetCtrl.RX_ALLMULTI && !this.f.ctrlRx) return this.refuse('net.driver.81', `RX command ${cmd} without CTRL_RX`);
        if (extra && !this.f.ctrlRxExtra) return this.refuse('net.driver.82', `RX command ${cmd} without CTRL_RX_EXTRA`);
        const on = bool();
        if (on === null) return ERR;
        // net.device.76 / net.device.80
        switch (cmd) {
          case NetCtrl.RX_PROMISC: this.promisc = on; return OK;
          case NetCtrl.RX_ALLMULTI: this.allmulti = on; return OK;
          case NetCtrl.RX_ALLUNI: this.alluni = on; return OK;
          case NetCtrl.RX_NOMULTI: this.nomulti = on; return OK;
          case NetCtrl.RX_NOUNI: this.nouni = on; return OK;
          case NetCtrl.RX_NOBCAST: this.nobcast = on; return OK;
        }
        return ERR;
      }
      case NetCtrl.CLASS_MAC: {
        if (cmd === NetCtrl.MAC_TABLE_SET) {
          if (!this.f.ctrlRx) return this.refuse('net.driver.83', 'MAC_TABLE_SET without CTRL_RX');
          // net.driver.85: le32 n, n MACs, le32 m, m MACs, nothing more.
          if (data.length < 4) return this.refuse('net.driver.85', 'MAC table shorter than its count');
          const nu = dv.getUint32(0, true);
          const uEnd = 4 + nu * 6;
          if (nu > 0x10000 || data.length < uEnd + 4) return this.refuse('net.driver.85', `unicast count ${nu} does not fit ${data.length} bytes`);
          const nm = dv.getUint32(uEnd, true);
          if (nm > 0x10000 || data.length !== uEnd + 4 + nm * 6) return this.refuse('net.driver.85', `multicast count ${nm} does not fit ${data.length} bytes`);
          const uni: number[] = [];
          const multi: number[] = [];
          for (let i = 0; i < nu; i++) uni.push(macKey(data, 4 + i * 6));
          for (let i = 0; i < nm; i++) multi.push(macKey(data, uEnd + 4 + i * 6));
          // net.device.90: the table is in force before the command is used.
          this.uniOverflow = uni.length > this.macTableSize;
          this.multiOverflow = multi.length > this.macTableSize;
          this.uniTable = this.uniOverflow ? [] : uni;
          this.multiTable = this.multiOverflow ? [] : multi;
          return OK;
        }
        if (cmd === NetCtrl.MAC_ADDR_SET) {
          if (!this.f.macAddr) return this.refuse('net.driver.83', 'MAC_ADDR_SET without CTRL_MAC_ADDR');
          if (data.length !== 6) return ERR;
          this.mac.set(data.subarray(0, 6));
          // net.device.91: config mac shows the new address before the command is used.
          this.config.set(this.mac, NetCfg.MAC);
          return OK;
        }
        return ERR;
      }
      case NetCtrl.CLASS_VLAN: {
        if (!this.f.ctrlVlan) return this.refuse('net.ctrl.vlan', 'VLAN command without CTRL_VLAN');
        if (data.length !== 2) return ERR;
        const vid = dv.getUint16(0, true);
        if (vid > 4095) return ERR;
        if (cmd === NetCtrl.VLAN_ADD) this.vlans[vid >> 3]! |= 1 << (vid & 7);
        else if (cmd === NetCtrl.VLAN_DEL) this.vlans[vid >> 3]! &= ~(1 << (vid & 7));
        else return ERR;
        return OK;
      }
      case NetCtrl.CLASS_ANNOUNCE: {
        if (!this.f.announce || cmd !== NetCtrl.ANNOUNCE_ACK) return ERR;
        // net.device.96: ANNOUNCE cleared before the ack is used.
        const s = this.cfgView.getUint16(NetCfg.STATUS, true);
        if (s & NetStatus.ANNOUNCE) {
          this.cfgView.setUint16(NetCfg.STATUS, s & ~NetStatus.ANNOUNCE, true);
          this.ctx?.configChanged();
        }
        return OK;
      }
      case NetCtrl.CLASS_MQ:
        return this.mqCommand(cmd, data, dv);
      case NetCtrl.CLASS_GUEST_OFFLOADS: {
        if (!this.f.guestOffloads || cmd !== NetCtrl.GUEST_OFFLOADS_SET) return ERR;
        if (data.length !== 8) return ERR;
        const lo = dv.getUint32(0, true);
        const hi = dv.getUint32(4, true);
        const want = (BigInt(hi) << 32n) | BigInt(lo);
        const features = this.ctx!.features;
        // In the offloads bitmask GUEST_UDP_TUNNEL_GSO(_CSUM) take bits 46/47 (their feature bits are 65/66).
        const featureOf = (b: number): number => (b === 46 ? NetFx.GUEST_UDP_TUNNEL_GSO : b === 47 ? NetFx.GUEST_UDP_TUNNEL_GSO_CSUM : b);
        const allowed = GUEST_OFFLOAD_BITS.reduce((s, b) => (hasFeature(features, featureOf(b)) ? s | bit(b) : s), 0n);
        // net.driver.101: only negotiated guest offloads may be set.
        if (want & ~allowed) return this.refuse('net.driver.101', `offloads 0x${want.toString(16)} beyond negotiated 0x${allowed.toString(16)}`);
        this.rxCsum = hasFeature(want, NetF.GUEST_CSUM);
        this.rxTso4 = hasFeature(want, NetF.GUEST_TSO4) && this.rxCsum;
        this.rxTso6 = hasFeature(want, NetF.GUEST_TSO6) && this.rxCsum;
        this.rxEcn = hasFeature(want, NetF.GUEST_ECN);
        this.rxUso4 = hasFeature(want, NetF.GUEST_USO4) && this.rxCsum;
        this.rxUso6 = hasFeature(want, NetF.GUEST_USO6) && this.rxCsum;
        this.rxTunnel = hasFeature(want, 46);
        return OK;
      }
      case NetCtrl.CLASS_NOTF_COAL:
        return this.coalCommand(cmd, data, dv);
      case NetCtrl.CLASS_STATS:
        return this.statsCommand(cmd, data, dv, resultRoom);
      case NetCtrl.CLASS_RSS_CTX:
        if (!this.f.rssCtx) return this.refuse('net.driver.98', 'RSS context command without VIRTIO_NET_F_RSS_CONTEXT');
        return this.rssCtxCommand(cmd, data, dv, resultRoom);
      case NetCtrl.CLASS_HASH_TUNNEL: {
        if (!this.f.hashTunnel) return this.refuse('net.driver.78', 'HASH_TUNNEL_SET without VIRTIO_NET_F_HASH_TUNNEL');
        if (cmd !== NetCtrl.HASH_TUNNEL_SET || data.length !== 4) return ERR;
        const types = dv.getUint32(0, true);
        const supported = this.cfgView.getUint32(NetCfg.SUPPORTED_TUNNEL_TYPES, true);
        // net.driver.79 broken; net.device.74: such a command gets VIRTIO_NET_ERR and changes nothing.
        if (types & ~supported) return this.refuse('net.driver.79', `enabled_tunnel_types 0x${types.toString(16)}, supported 0x${supported.toString(16)}`);
        this.tunnelTypes = types;
        return OK;
      }
    }
    return ERR;
  }

  private refuse(id: string, detail: string): { ack: number } {
    this.violate(id, detail);
    return { ack: NetCtrl.ERR };
  }

  /** A virtio_net_rss_config (RSS_CONFIG, RSS context ADD/MOD), checked (net.driver.94-.97); ERR or the state. */
  private parseRss(data: Uint8Array): RssState | { ack: number } {
    const ERR = { ack: NetCtrl.ERR };
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    if (data.length < 8) return ERR;
    const hashTypes = dv.getUint32(0, true);
    const mask = dv.getUint16(4, true);
    const unclassified = dv.getUint16(6, true);
    const n = mask + 1;
    // net.driver.95 / .96
    if ((n & mask) !== 0) return this.refuse('net.driver.95', `indirection table length ${n} not a power of two`);
    if (mask >= this.cfgView.getUint16(NetCfg.RSS_MAX_INDIRECTION_TABLE_LENGTH, true)) return this.refuse('net.driver.96', `indirection_table_mask ${mask}`);
    if (data.length < 8 + 2 * n + 3) return ERR;
    // net.driver.97
    if (hashTypes & ~this.cfgView.getUint32(NetCfg.SUPPORTED_HASH_TYPES, true)) return this.refuse('net.driver.97', `hash_types 0x${hashTypes.toString(16)}`);
    const table = new Uint16Array(n);
    const rxOk = (id: number): boolean => (id & 0x8000) === 0 && id < this.maxPairs;
    if (!rxOk(unclassified)) return this.refuse('net.driver.94', `unclassified_queue ${unclassified}`);
    for (let i = 0; i < n; i++) {
      const id = dv.getUint16(8 + 2 * i, true);
      if (!rxOk(id)) return this.refuse('net.driver.94', `indirection_table[${i}] = ${id}`);
      table[i] = id * 2;
    }
    const maxTx = dv.getUint16(8 + 2 * n, true);
    const keyLen = data[8 + 2 * n + 2]!;
    if (maxTx < 1 || maxTx > this.maxPairs) return ERR;
    if (keyLen > this.config[NetCfg.RSS_MAX_KEY_SIZE]! || data.length < 8 + 2 * n + 3 + keyLen) return ERR;
    const key = data.slice(8 + 2 * n + 3, 8 + 2 * n + 3 + keyLen);
    return { hashTypes, mask, unclassified: unclassified * 2, table, key, maxTx };
  }

  /** VIRTNET_RSS_CTX_CTRL (RSS_CONTEXT): CAP_GET, ADD, MOD, DEL. */
  private rssCtxCommand(cmd: number, data: Uint8Array, dv: DataView, room: number): { ack: number; result?: Uint8Array } {
    const ERR = { ack: NetCtrl.ERR };
    if (cmd === NetCtrl.RSS_CTX_CAP_GET) {
      if (data.length !== 0 || room < 2) return ERR;
      const r = new Uint8Array(2);
      new DataView(r.buffer).setUint16(0, this.maxRssContexts, true);
      return { ack: NetCtrl.OK, result: r };
    }
    if (cmd !== NetCtrl.RSS_CTX_ADD && cmd !== NetCtrl.RSS_CTX_MOD && cmd !== NetCtrl.RSS_CTX_DEL) return ERR;
    if (data.length < 2) return ERR;
    const id = dv.getUint16(0, true);
    // net.driver.99: 1..max_rss_contexts.
    if (id < 1 || id > this.maxRssContexts) return this.refuse('net.driver.99', `rss_ctx_id ${id}, max_rss_contexts ${this.maxRssContexts}`);
    if (cmd === NetCtrl.RSS_CTX_DEL) {
      if (data.length !== 2 || !this.rssContexts.has(id)) return ERR;
      this.rssContexts.delete(id);
      return { ack: NetCtrl.OK };
    }
    if (data.length < 8) return ERR;
    if ((cmd === NetCtrl.RSS_CTX_ADD) === this.rssContexts.has(id)) return ERR;
    const st = this.parseRss(data.subarray(8));
    if ('ack' in st) return st;
    this.rssContexts.set(id, st);
    return { ack: NetCtrl.OK };
  }

  private mqCommand(cmd: number, data: Uint8Array, dv: DataView): { ack: number } {
    const ERR = { ack: NetCtrl.ERR };
    if (cmd === NetCtrl.MQ_VQ_PAIRS_SET) {
      if (!this.f.mq) return this.refuse('net.ctrl.mq', 'VQ_PAIRS_SET without MQ');
      if (data.length !== 2) return ERR;
      const n = dv.getUint16(0, true);
      // net.driver.90: 1..max_virtqueue_pairs.
      if (n < NetCtrl.MQ_VQ_PAIRS_MIN || n > this.maxPairs) return this.refuse('net.driver.90', `virtqueue_pairs ${n}, max ${this.maxPairs}`);
      // net.driver.89: the pairs being enabled must have been set up (both queues enabled) first.
      const qe = this.ctx?.queueEnabled;
      if (qe) {
        for (let p = 0; p < n; p++) {
          if (!qe.call(this.ctx, 2 * p) || !qe.call(this.ctx, 2 * p + 1)) return this.refuse('net.driver.89', `VQ_PAIRS_SET ${n} with receiveq${p + 1}/transmitq${p + 1} not set up`);
        }
      }
      // net.driver.100: not while an RSS context is configured.
      if (this.rssContexts.size > 0) return this.refuse('net.driver.100', `VQ_PAIRS_SET with ${this.rssContexts.size} RSS context(s) configured`);
      this.curPairs = n;
      this.rss = null;
      this.flows.clear();
      return { ack: NetCtrl.OK };
    }
    if (cmd === NetCtrl.MQ_RSS_CONFIG) {
      if (!this.f.rss) return this.refuse('net.driver.93', 'RSS_CONFIG without RSS');
      const st = this.parseRss(data);
      if ('ack' in st) return st;
      this.rss = st;
      return { ack: NetCtrl.OK };
    }
    if (cmd === NetCtrl.MQ_HASH_CONFIG) {
      if (!this.f.hashReport || this.f.rss) return ERR;
      if (data.length < 13) return ERR;
      const hashTypes = dv.getUint32(0, true);
      if (hashTypes & ~this.cfgView.getUint32(NetCfg.SUPPORTED_HASH_TYPES, true)) return ERR;
      const keyLen = data[12]!;
      if (keyLen > this.config[NetCfg.RSS_MAX_KEY_SIZE]! || data.length < 13 + keyLen) return ERR;
      this.hashCfg = { hashTypes, key: data.slice(13, 13 + keyLen) };
      return { ack: NetCtrl.OK };
    }
    return ERR;
  }

  private isDataQueue(vq: number): boolean {
    // An enabled transmit or receive virtqueue: within the pairs in use.
    return vq >= 0 && vq < 2 * Math.max(this.curPairs, this.rss ? this.rss.maxTx : 0);
  }

  private coalCommand(cmd: number, data: Uint8Array, dv: DataView): { ack: number; result?: Uint8Array } {
    const ERR = { ack: NetCtrl.ERR };
    const OK = { ack: NetCtrl.OK };
    if (cmd === NetCtrl.NOTF_COAL_TX_SET || cmd === NetCtrl.NOTF_COAL_RX_SET) {
      if (!this.f.notfCoal) return this.refuse('net.driver.103', `NOTF_COAL command ${cmd} without NOTF_COAL`);
      if (data.length !== 8) return ERR;
      const maxPackets = dv.getUint32(0, true);
      const maxUsecs = dv.getUint32(4, true);
      const tx = cmd === NetCtrl.NOTF_COAL_TX_SET;
      const g = tx ? this.coalTx : this.coalRx;
      g.maxPackets = maxPackets;
      g.maxUsecs = maxUsecs;
      for (let i = tx ? 1 : 0; i < 2 * this.maxPairs; i += 2) this.setCoal(i, maxPackets, maxUsecs);
      return OK;
    }
    if (cmd === NetCtrl.NOTF_COAL_VQ_SET || cmd === NetCtrl.NOTF_COAL_VQ_GET) {
      if (!this.f.vqNotfCoal) return this.refuse('net.driver.104', `NOTF_COAL command ${cmd} without VQ_NOTF_COAL`);
      const setLen = 12;
      if (data.length !== (cmd === NetCtrl.NOTF_COAL_VQ_SET ? setLen : 4)) return ERR;
      const vq = dv.getUint16(0, true);
      // net.device.105: reserved ignored. net.device.108: only enabled data queues.
      if (!this.isDataQueue(vq)) return this.refuse('net.driver.102', `vq_index ${vq} is not an enabled data queue`);
      if (cmd === NetCtrl.NOTF_COAL_VQ_SET) {
        this.setCoal(vq, dv.getUint32(4, true), dv.getUint32(8, true));
        return OK;
      }
      const out = new Uint8Array(8);
      const ov = new DataView(out.buffer);
      ov.setUint32(0, this.coal[vq]!.maxPackets, true);
      ov.setUint32(4, this.coal[vq]!.maxUsecs, true);
      return { ack: NetCtrl.OK, result: out };
    }
    return ERR;
  }

  /** Statistics types this device supports given the negotiated features. */
  private supportedStats(): number[] {
    const t: number[] = [StatsType.RX_BASIC, StatsType.TX_BASIC, StatsType.CVQ];
    if (this.f.guestCsum) t.push(StatsType.RX_CSUM);
    if (this.f.csum) t.push(StatsType.TX_CSUM);
    if (this.f.guestTso4 || this.f.guestTso6) t.push(StatsType.RX_GSO);
    if (this.f.hostTso4 || this.f.hostTso6) t.push(StatsType.TX_GSO);
    return t.sort((a, b) => a - b);
  }

  private statsCommand(cmd: number, data: Uint8Array, dv: DataView, room: number): { ack: number; result?: Uint8Array } {
    const ERR = { ack: NetCtrl.ERR };
    if (!this.f.stats) return ERR;
    const supported = this.supportedStats();
    if (cmd === NetCtrl.STATS_QUERY) {
      if (data.length !== 0) return ERR;
      // net.device.114: le64 supported_stats_types[1].
      const out = new Uint8Array(8);
      const ov = new DataView(out.buffer);
      let lo = 0;
      let hi = 0;
      for (const t of supported) t >= 32 ? (hi |= 1 << (t - 32)) : (lo |= 1 << t);
      ov.setUint32(0, lo >>> 0, true);
      ov.setUint32(4, hi >>> 0, true);
      return { ack: NetCtrl.OK, result: out };
    }
    if (cmd !== NetCtrl.STATS_GET) return ERR;
    if (data.length === 0 || data.length % 16 !== 0) return ERR;
    const replies: Uint8Array[] = [];
    for (let e = 0; e < data.length / 16; e++) {
      const vq = dv.getUint16(e * 16, true);
      const lo = dv.getUint32(e * 16 + 8, true);
      const hi = dv.getUint32(e * 16 + 12, true);
      const kind = vq === this.ctrlIndex ? 'cvq' : vq < 2 * this.maxPairs ? (vq % 2 === 0 ? 'rx' : 'tx') : null;
      // net.device.115/.116: any bad entry fails the whole command.
      if (kind === null) return this.refuse('net.driver.107', `stats vq_index ${vq}`);
      const types: number[] = [];
      for (let b = 0; b < 64; b++) {
        const set = b < 32 ? (lo >>> b) & 1 : (hi >>> (b - 32)) & 1;
        if (!set) continue;
        if (!supported.includes(b)) return this.refuse('net.driver.106', `stats type ${b} not reported by STATS_QUERY`);
        const valid = kind === 'cvq' ? b === StatsType.CVQ : kind === 'rx' ? b < 16 : b >= 16 && b < 32;
        if (!valid) return this.refuse('net.driver.107', `stats type ${b} for ${kind} queue ${vq}`);
        types.push(b);
      }
      for (const t of types) replies.push(this.statsReply(t, vq));
    }
    let total = 0;
    for (const r of replies) total += r.length;
    if (total > room) this.violate('net.driver.108', `STATS_GET result buffer of ${room} bytes for ${total} bytes of replies`);
    // net.device.119: write only whole, valid bytes (a short buffer gets a prefix).
    const out = new Uint8Array(Math.min(total, Math.max(0, room)));
    let off = 0;
    for (const r of replies) {
      if (off >= out.length) break;
      out.set(r.subarray(0, out.length - off), off);
      off += r.length;
    }
    return { ack: NetCtrl.OK, result: out };
  }

  private statsReply(type: number, vq: number): Uint8Array {
    const n = StatsCounters[type]!;
    const out = new Uint8Array(8 + 8 * n);
    const v = new DataView(out.buffer);
    // net.device.117/.118: type, vq_index and the real size.
    out[0] = type;
    v.setUint16(2, vq, true);
    v.setUint16(6, out.length, true);
    const s = this.qstats[vq];
    let vals: number[];
    switch (type) {
      case StatsType.CVQ: vals = [this.cvqStats.commands, this.cvqStats.ok]; break;
      case StatsType.RX_BASIC: vals = [s!.notifications, s!.packets, s!.bytes, s!.interrupts, s!.drops, s!.dropsSpecial]; break;
      case StatsType.TX_BASIC: vals = [s!.notifications, s!.packets, s!.bytes, s!.interrupts, s!.drops, s!.dropsSpecial]; break;
      case StatsType.RX_CSUM: vals = [s!.csumValid, s!.needsCsum, s!.csumNone, s!.csumBad]; break;
      case StatsType.TX_CSUM: vals = [s!.csumNone, s!.needsCsum]; break;
      case StatsType.RX_GSO: vals = [s!.gsoPackets, s!.gsoBytes, 0, 0]; break;
      case StatsType.TX_GSO: vals = [s!.gsoPackets, s!.gsoBytes, s!.gsoSegments, s!.gsoSegmentsBytes, 0, 0]; break;
      default: vals = [];
    }
    // net.device.120: counters wrap modulo 2^64 (JS numbers stay exact up to 2^53, far beyond any run).
    vals.forEach((x, i) => v.setBigUint64(8 + 8 * i, BigInt(Math.floor(x)) & 0xffff_ffff_ffff_ffffn, true));
    return out;
  }
}

/** A flow key; `reverse` swaps the ends so a transmitted flow matches its replies. */
function flowKey(f: Uint8Array, info: FrameInfo, reverse: boolean): string {
  if (info.l3 < 0) return '';
  const alen = info.ipVersion === 4 ? 4 : 16;
  const sOff = info.l3 + (info.ipVersion === 4 ? 12 : 8);
  const dOff = sOff + alen;
  const a = Array.from(f.subarray(sOff, sOff + alen)).join('.');
  const b = Array.from(f.subarray(dOff, dOff + alen)).join('.');
  const sp = info.srcPort;
  const dp = info.dstPort;
  return reverse ? `${info.proto}|${b}|${a}|${dp}|${sp}` : `${info.proto}|${a}|${b}|${sp}|${dp}`;
}
