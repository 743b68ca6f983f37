/**
 * virtio-net device model: the device's state, shared by every other file of device/ — what the
 * options fixed, what the driver negotiated and set through the control queue, the per-queue
 * backlogs and counters — and what a reset does to it (net.device.75, .89, .104, .113).
 *
 * Also the small things all of them use: `violate` (a driver breaking a statement is recorded,
 * never thrown), `refuse` (a control command answered VIRTIO_NET_ERR), and counter addition
 * modulo 2^64 (net.device.120).
 */
import type { Chain, DeviceContext } from '../../virtio/model.ts';
import type { ScheduledEvent } from '../../machine/scheduler.ts';
import { NetF, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { NetCfg, NetCtrl, NetStatus } from '../../../spec-refs/abi/net.ts';
import type { WireFrame } from '../wire.ts';
import { initialConfig, negotiatedFlags, offerFeatures, type NetDeviceOptions, type NetFlags } from './config.ts';

/** Where a NIC's transmitted frames go (a switch port, a tap...). */
export interface NetBackend {
  send(frame: WireFrame): void;
}

/** Something frames can be delivered to. */
export interface NetEndpoint {
  readonly name: string;
  receive(frame: WireFrame): void;
}

/** A record of a driver breaking a statement, kept for conformance checks. */
export interface NetViolation {
  readonly id: string;
  readonly detail: string;
}

export interface Coal {
  maxPackets: number;
  maxUsecs: number;
  count: number;
  timer: ScheduledEvent | null;
}

export type RssState = { hashTypes: number; mask: number; unclassified: number; table: Uint16Array; key: Uint8Array; maxTx: number };

/** A frame waiting in a receive queue's backlog, with the header it will be delivered with. */
export interface RxItem {
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
export function add64(a: number, n: number): number {
  const v = a + n;
  return v >= TWO64 ? v - TWO64 : v;
}

function newStats(): QueueStats {
  return { notifications: 0, packets: 0, bytes: 0, interrupts: 0, drops: 0, dropsSpecial: 0, csumValid: 0, needsCsum: 0, csumNone: 0, csumBad: 0, gsoPackets: 0, gsoBytes: 0, gsoSegments: 0, gsoSegmentsBytes: 0 };
}

const MAX_VIOLATIONS = 256;

export class NetState {
  readonly name: string;
  readonly numQueues: number;
  readonly offeredFeatures: bigint;
  readonly maxPairs: number;
  readonly mtu: number;
  readonly queueSize: number;
  readonly permanentMac: Uint8Array;
  readonly rxBacklogMax: number;
  readonly macTableSize: number;
  readonly strict: boolean;
  readonly rxHeaderHook: ((hdr: Uint8Array, frame: Uint8Array) => void) | undefined;
  readonly ctrlHook: NetDeviceOptions['ctrlHook'];
  readonly config: Uint8Array;
  readonly cfgView: DataView;
  backend: NetBackend | undefined;
  linkUp: boolean;

  // ---- live state (reset drops it)
  ctx: DeviceContext | null = null;
  hdrLen = 12;
  f: NetFlags = negotiatedFlags(0n);
  /** enabled_tunnel_types (HASH_TUNNEL_SET). */
  tunnelTypes = 0;
  /** Guest offloads currently enabled (CTRL_GUEST_OFFLOADS), as booleans. */
  rxCsum = false;
  rxTso4 = false;
  rxTso6 = false;
  rxEcn = false;
  rxUso4 = false;
  rxUso6 = false;
  rxTunnel = false;
  curPairs = 1;
  ctrlIndex = 2;
  mac = new Uint8Array(6);
  promisc = false;
  allmulti = true;
  alluni = false;
  nomulti = false;
  nouni = false;
  nobcast = false;
  uniTable: number[] = [];
  multiTable: number[] = [];
  uniOverflow = false;
  multiOverflow = false;
  vlans = new Uint8Array(4096 / 8);
  rss: RssState | null = null;
  /** RSS contexts by rss_ctx_id (RSS_CONTEXT). Without flow filters nothing steers into them; they are kept and validated. */
  readonly rssContexts = new Map<number, RssState>();
  readonly maxRssContexts: number;
  hashCfg: { hashTypes: number; key: Uint8Array } | null = null;
  flows = new Map<string, number>();
  backlog: RxItem[][] = [];
  stash: Chain[][] = [];
  drainScheduled: boolean[] = [];
  /** Receive queues reset on their own and not yet used again by the driver (net.device.100/.102: traffic for them is dropped). */
  rxResetting: boolean[] = [];
  txScheduled: boolean[] = [];
  coal: Coal[] = [];
  coalTx = { maxPackets: 0, maxUsecs: 0 };
  coalRx = { maxPackets: 0, maxUsecs: 0 };
  cvqStats = { commands: 0, ok: 0 };
  qstats: QueueStats[] = [];

  /** Driver errors seen (bounded), each with the census id it breaks. */
  readonly violations: NetViolation[] = [];
  violationCount = 0;
  /** Frames the device dropped on receive because of filtering (for tests). */
  filtered = 0;

  constructor(opts: NetDeviceOptions) {
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
    this.offeredFeatures = offerFeatures(opts, this.maxPairs, this.mtu);
    const ctrl = hasFeature(this.offeredFeatures, NetF.CTRL_VQ);
    this.numQueues = 2 * this.maxPairs + (ctrl ? 1 : 0);
    this.config = initialConfig(opts, this.permanentMac, this.linkUp, this.maxPairs, this.mtu);
    this.cfgView = new DataView(this.config.buffer);
    this.mac.set(this.permanentMac);
    // net.device.103: at least one context when RSS_CONTEXT is offered (0 here is a test hook for a broken device).
    this.maxRssContexts = Math.max(0, Math.min(0xffff, opts.maxRssContexts ?? 4));
    this.clearState();
  }

  clearState(): void {
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

  violate(id: string, detail: string): void {
    this.violationCount++;
    if (this.violations.length < MAX_VIOLATIONS) this.violations.push({ id, detail });
  }

  refuse(id: string, detail: string): { ack: number } {
    this.violate(id, detail);
    return { ack: NetCtrl.ERR };
  }
}
