/**
 * The spec-exploration session behind `pvkit repl`: a simulated machine with one virtio device
 * already attached, the conformance monitor watching it, and helpers that make VIRTIO visible —
 * initialisation one status bit at a time, the feature negotiation with names, the rings as they
 * sit in guest memory, requests posted by hand, the device stepped one scheduler event at a
 * time with the exits and interrupts each step caused, and rules broken on purpose so that the
 * monitor names the statement.
 *
 * Every helper returns a View: text for people (the REPL prints it), data for programs (the
 * guide's examples and the tests use both). Nothing here is REPL-specific; tools/repl/repl.ts
 * puts the helpers into a node:repl context.
 */
import { inspect } from 'node:util';
import type { ExitInfo, VCpu } from '../../device-models/machine/vcpu.ts';
import type { BusAccess } from '../../device-models/machine/bus.ts';
import type { ScheduledEvent } from '../../device-models/machine/scheduler.ts';
import { TraceSession } from '../../device-models/machine/trace.ts';
import { BLK_TRANSPORTS, isLegacyTransport, simBlk, type BlkTransportKind, type SimBlk } from '../../conformance/harness/blk.ts';
import { PciTransport, identifyVirtioPci } from '../../drivers/transport/pci.ts';
import { RamDisk } from '../../device-models/blk/backend.ts';
import { BlkReqHeader } from '../../spec-refs/abi/blk-layout.ts';
import type { VirtioCore } from '../../device-models/virtio/core.ts';
import type { VirtioTransport, QueueAddresses } from '../../drivers/transport/transport.ts';
import type { Virtqueue } from '../../drivers/core/virtqueue.ts';
import { SplitVirtqueue } from '../../drivers/core/split.ts';
import { PackedVirtqueue } from '../../drivers/core/packed.ts';
import { VirtioBlkDriver } from '../../drivers/blk/driver.ts';
import { Machine } from '../../device-models/machine/machine.ts';
import { VirtioNetDevice } from '../../device-models/net/device.ts';
import { L2Switch, plug } from '../../device-models/net/switch.ts';
import { HostPeer } from '../../device-models/net/host-peer.ts';
import { netTransport, netTransports } from '../../conformance/harness/net.ts';
import { NET_DRIVER_FEATURES, VirtioNetDriver } from '../../drivers/net/driver.ts';
import { ArpOp, BROADCAST, EtherType, IcmpType, IpProto, buildArp, buildEthernet, buildPing, ip4FromString, ip4ToString, macFromString, macToString, parseArp, parseFrame } from '../../spec-refs/abi/packet.ts';
import { netHdrSize } from '../../spec-refs/abi/net.ts';
import { attachMonitor, type Monitor, type Violation } from '../../conformance/monitor.ts';
import { catalog } from '../../spec-refs/catalog.ts';
import { PvkitError, UsageError } from '../../spec-refs/errors.ts';
import { Blk, BlkF, F, Mmio, NetF, Status, bit, featureNames, hasFeature, statusNames } from '../../spec-refs/abi/virtio.ts';
import { RingWatcher, readPacked, readSplit, renderPacked, renderSplit } from './ring-view.ts';

/** What a helper returns: printable text and the data behind it. */
export class View<T = unknown> {
  constructor(
    readonly text: string,
    readonly data?: T,
  ) {}
  toString(): string {
    return this.text;
  }
  [inspect.custom](): string {
    return this.text;
  }
}

export type DeviceKind = 'blk' | 'net';
export type TransportKind = BlkTransportKind;
export type RingKind = 'split' | 'packed';

export const DEVICES: readonly DeviceKind[] = ['blk', 'net'];
/** mmio, mmio-legacy, pci (modern), pci-transitional (its legacy interface), pci-transitional-modern. */
export const TRANSPORTS: readonly TransportKind[] = BLK_TRANSPORTS;
export const RINGS: readonly RingKind[] = ['split', 'packed'];

export interface SessionOptions {
  device?: DeviceKind;
  transport?: TransportKind;
  ring?: RingKind;
  /** Largest queue size the session's driver uses (default 16: the ring fits on a screen). */
  queueSize?: number;
  /** Disk size in bytes for blk (default 1 MiB). */
  diskBytes?: number;
  /** Delay between a notification and the device's work, virtual ns (default 1000). */
  notifyLatencyNs?: number;
  /** Delay between the device taking requests and completing them, virtual ns (default 20000). */
  deviceLatencyNs?: number;
  /** Machine scheduler seed (default 1). */
  seed?: number;
  /** Record a Chrome trace of the session's machine (write it with trace(path) or at exit). */
  trace?: boolean;
}

/** One thing that happened during a helper call, for its report. */
type Happening =
  | { kind: 'exit'; at: number; reason: string; qualification?: number; cycles: number }
  | { kind: 'irq'; at: number; vector: number; source: string }
  | { kind: 'event'; at: number; label: string }
  | { kind: 'bus'; at: number; access: BusAccess };

interface InitStep {
  readonly name: string;
  readonly statements: readonly string[];
  run(): string;
}

/** What the session's driver posts with each buffer: how to report it once used, and what to free. */
interface Token {
  readonly n: number;
  readonly kind: string;
  readonly postedAt: number;
  /** Describe the completed buffer, given the length the device reported. */
  done(len: number): string;
  /** DMA allocations to free once the buffer is collected. */
  readonly allocations: readonly number[];
}

type Seg = { addr: number; len: number };

const MMIO_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Mmio).filter(([k]) => !['MAGIC', 'INT_VRING', 'INT_CONFIG'].includes(k)).map(([k, v]) => [v, k]));

const hex = (n: number) => '0x' + n.toString(16);

function featureTable(device: DeviceKind): Record<string, number> {
  return device === 'blk' ? BlkF : NetF;
}

/** Resolve feature names ('EVENT_IDX', 'VIRTIO_F_EVENT_IDX', 'FLUSH', 'VIRTIO_BLK_F_FLUSH') or bit numbers. */
export function featureBit(name: string | number, device: DeviceKind): number {
  if (typeof name === 'number') return name;
  const n = name.toUpperCase().replace(/^VIRTIO_(F_|BLK_F_|NET_F_)/, '');
  const core = (F as Record<string, number>)[n];
  if (core !== undefined) return core;
  const dev = featureTable(device)[n];
  if (dev !== undefined) return dev;
  throw new UsageError('usage.repl.feature', `unknown feature name ${name}`, { expected: `one of ${[...Object.keys(F), ...Object.keys(featureTable(device))].join(', ')}` });
}

export class Session {
  readonly device: DeviceKind;
  readonly transportKind: TransportKind;
  readonly ringKind: RingKind;
  readonly machine: Machine;
  readonly monitor: Monitor;
  /** Device side: the virtio core of the device (status, features, queues as the device sees them). */
  readonly core: VirtioCore;
  /** Driver side: the transport ops the session's driver uses. */
  readonly transport: VirtioTransport;
  /** blk sessions: the harness's objects (device model, core, transport). */
  readonly sim: SimBlk | undefined;
  /** net sessions: the NIC model, the switch it is plugged into and the host peer behind it. */
  readonly netSim: { device: VirtioNetDevice; sw: L2Switch; peer: HostPeer; guestMac: Uint8Array; guestIp: Uint8Array } | undefined;
  /** The reference virtio-net driver, after driver() handed the device to it. */
  net: VirtioNetDriver | undefined;
  readonly queueSize: number;
  /** Features the session's driver would like (what it chooses = wanted & offered). */
  wanted: bigint;
  offered = 0n;
  chosen = 0n;
  /** Driver-side queues, by index, once set up. */
  readonly queues = new Map<number, Virtqueue<Token> & { readonly addresses: QueueAddresses }>();
  readonly watchers = new Map<number, RingWatcher>();
  /** The reference driver, after driver() handed the device to it. */
  blk: VirtioBlkDriver | undefined;
  private stepIndex = 0;
  /** Buffers added per queue and not yet published by a kick. */
  private readonly unpublished = new Map<number, number>();
  private steps: InitStep[];
  private log: Happening[] | null = null;
  private shownViolations = 0;
  private shownDeviceErrors = 0;
  private reqs = 0;
  private readonly traceSession: TraceSession | undefined;
  private tracePid = 1;

  constructor(opts: SessionOptions = {}) {
    this.device = opts.device ?? 'blk';
    this.transportKind = opts.transport ?? 'mmio';
    this.ringKind = opts.ring ?? 'split';
    this.queueSize = opts.queueSize ?? 16;
    if (!(DEVICES as readonly string[]).includes(this.device)) {
      throw new UsageError('usage.repl.device', `unknown device ${this.device}`, { expected: DEVICES.join(' | '), seen: this.device });
    }
    if (this.device === 'net' && !netTransports().includes(this.transportKind)) {
      throw new UsageError('usage.repl.transport', `virtio-net runs over ${netTransports().join(', ')} here`, { expected: netTransports().join(' | '), seen: this.transportKind });
    }
    if (!(BLK_TRANSPORTS as readonly string[]).includes(this.transportKind)) {
      throw new UsageError('usage.repl.transport', `unknown transport ${this.transportKind}`, { expected: BLK_TRANSPORTS.join(' | '), seen: this.transportKind });
    }
    if (this.ringKind === 'packed' && isLegacyTransport(this.transportKind)) {
      throw new UsageError('usage.repl.ring', 'the legacy interface has no packed ring (RING_PACKED is feature bit 34, beyond the 32 legacy bits)', { expected: 'split', seen: 'packed' });
    }
    if (this.device === 'blk') {
      this.sim = simBlk({
        transport: this.transportKind,
        ring: this.ringKind,
        device: { backend: new RamDisk(opts.diskBytes ?? 1 << 20), latencyNs: opts.deviceLatencyNs ?? 20_000, queueSize: 256, id: 'pvkit-repl' },
        notifyLatencyNs: opts.notifyLatencyNs ?? 1000,
        machine: { scheduler: { seed: opts.seed ?? 1 } },
      });
      this.netSim = undefined;
      this.machine = this.sim.machine;
      this.core = this.sim.core;
      this.transport = this.sim.transport;
    } else {
      // A NIC on an L2 switch with a host peer behind it that answers ARP and ping.
      this.sim = undefined;
      this.machine = new Machine({ scheduler: { seed: opts.seed ?? 1 } });
      const device = new VirtioNetDevice({ name: 'net0', mac: macFromString('52:54:00:12:34:56'), queueSize: 256 });
      const sw = new L2Switch();
      plug(sw, device);
      const peer = new HostPeer(this.machine.scheduler, { name: 'host', mac: macFromString('52:54:00:00:00:01'), ip: ip4FromString('10.0.2.2') });
      plug(sw, peer);
      const { core, transport } = netTransport(this.transportKind).attach(this.machine, device);
      this.core = core;
      this.transport = transport;
      this.netSim = { device, sw, peer, guestMac: macFromString('52:54:00:12:34:56'), guestIp: ip4FromString('10.0.2.15') };
    }
    // Registered before the monitor's listener, so that the monitor's own (muted, exit-less) peeks,
    // made from inside its listener, come after the guest access they follow.
    // Guest register accesses exit first (platform.mmioRead/Write); accesses without an exit are the monitor's own peeks.
    let guestAccess = false;
    this.machine.vcpu.addExitListener((_v: VCpu, e: ExitInfo) => {
      guestAccess = e.reason === 'EPT_MISCONFIG' || e.reason === 'EPT_VIOLATION' || e.reason === 'IO_INSTRUCTION';
      if (this.log) this.log.push({ kind: 'exit', at: this.machine.scheduler.now, reason: e.reason, ...(e.qualification !== undefined ? { qualification: e.qualification } : {}), cycles: this.machine.profile.constants[`exit.${e.reason}`]?.cycles ?? 0 });
    });
    this.machine.irq.addListener((vector, source) => {
      if (this.log) this.log.push({ kind: 'irq', at: this.machine.scheduler.now, vector, source });
    });
    this.machine.scheduler.addListener((phase, ev: ScheduledEvent, now) => {
      if (this.log && phase === 'start') this.log.push({ kind: 'event', at: now, label: ev.label });
    });
    this.machine.bus.addListener((a) => {
      const mine = guestAccess;
      guestAccess = false;
      if (this.log && mine) this.log.push({ kind: 'bus', at: this.machine.scheduler.now, access: a });
    });
    this.monitor = attachMonitor(this.machine);
    // The firmware probe (simBlk's discovery) ran before the monitor was watching; identify the
    // device again in its sight, as a driver starts (mmio.driver.24, mmio.driver.25).
    const dev = this.machine.platform.devices()[0];
    if (dev) for (const off of [Mmio.MAGIC_VALUE, Mmio.VERSION, Mmio.DEVICE_ID]) this.machine.platform.mmioRead(dev.base + off, 4);
    if (opts.trace) {
      this.traceSession = new TraceSession(() => 'repl');
      this.tracePid = this.traceSession.add(this.machine, `pvkit repl (${this.device}, ${this.transportKind}, ${this.ringKind})`);
    }
    const ringBits = bit(F.EVENT_IDX) | (this.ringKind === 'packed' ? bit(F.RING_PACKED) : 0n);
    this.wanted = ringBits | (this.transport.legacy ? 0n : bit(F.VERSION_1)) | (this.device === 'blk' ? bit(BlkF.FLUSH) | bit(BlkF.BLK_SIZE) | bit(BlkF.SEG_MAX) | bit(BlkF.SIZE_MAX) : bit(NetF.MAC));
    this.steps = this.initSteps();
    // Everything the machine does is logged while a helper runs.
  }

  // ------------------------------------------------------------------ reporting

  /** Run `fn`, then report what it made the machine do: register accesses, exits, events, interrupts, violations. */
  private report<T>(title: string, fn: () => string, opts: { bus?: boolean } = {}): View<T | undefined> {
    const t0 = this.machine.scheduler.now;
    const log: Happening[] = [];
    this.log = log;
    let body = '';
    let error: unknown;
    try {
      body = fn();
    } catch (e) {
      error = e;
    } finally {
      this.log = null;
    }
    this.syncWatchers();
    const out: string[] = [title];
    if (body) out.push(body);
    if (opts.bus ?? true) {
      const regs = log.filter((h): h is Extract<Happening, { kind: 'bus' }> => h.kind === 'bus').map((h) => this.describeAccess(h.access));
      if (regs.length) out.push(`  registers: ${compress(regs).join(', ')}`);
    }
    const exits = log.filter((h): h is Extract<Happening, { kind: 'exit' }> => h.kind === 'exit');
    if (exits.length) {
      const by = new Map<string, { n: number; cycles: number }>();
      for (const e of exits) {
        const s = by.get(e.reason) ?? { n: 0, cycles: 0 };
        s.n++;
        s.cycles += e.cycles;
        by.set(e.reason, s);
      }
      const total = exits.reduce((a, e) => a + e.cycles, 0);
      out.push(`  exits: ${[...by].map(([r, s]) => `${r} x${s.n} (${s.cycles} cycles)`).join(', ')}; ${total} cycles under profile ${this.machine.profile.name}`);
    }
    const events = log.filter((h): h is Extract<Happening, { kind: 'event' }> => h.kind === 'event');
    if (events.length) out.push(`  device events run: ${events.map((e) => `${e.label} @${fmtNs(e.at)}`).join(', ')}`);
    const irqs = log.filter((h): h is Extract<Happening, { kind: 'irq' }> => h.kind === 'irq');
    if (irqs.length) out.push(`  interrupts: ${irqs.map((i) => `vector ${hex(i.vector)} (${i.source}) @${fmtNs(i.at)}`).join(', ')}`);
    const dt = this.machine.scheduler.now - t0;
    out.push(`  virtual time +${fmtNs(dt)} (now ${fmtNs(this.machine.scheduler.now)}), ${this.machine.scheduler.pending} event(s) pending`);
    const news = this.newViolations();
    if (news) out.push(news);
    if (error !== undefined) out.push(`  error: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
    return new View(out.join('\n'));
  }

  private describeAccess(a: BusAccess): string {
    const reg = a.window.startsWith('virtio-mmio') ? (a.offset >= Mmio.CONFIG ? `config+${hex(a.offset - Mmio.CONFIG)}` : (MMIO_NAMES[a.offset] ?? hex(a.offset))) : `${a.window || '?'}+${hex(a.offset)}`;
    return a.kind === 'write' ? `${reg}<-${hex(a.value >>> 0)}` : `${reg}->${hex(a.value >>> 0)}`;
  }

  /** Violations recorded since last shown, with the statement paraphrase; and errors the device recorded. */
  private newViolations(): string {
    const out: string[] = [];
    const vs = this.monitor.violations.slice(this.shownViolations);
    this.shownViolations = this.monitor.violations.length;
    for (const v of vs) out.push(formatViolation(v));
    const errs = this.core.errors.slice(this.shownDeviceErrors);
    this.shownDeviceErrors = this.core.errors.length;
    for (const e of errs) out.push(`  device recorded${e.fatal ? ' (set DEVICE_NEEDS_RESET)' : ''}: ${e.error.message}`);
    return out.join('\n');
  }

  /**
   * Bring every ring watcher up to date with guest memory, then tell it how many used buffers
   * the driver has taken back: the driver's own count of buffers in flight (Virtqueue.inFlight:
   * added and not yet collected) minus the buffers still available or unpublished is the number
   * of used buffers not collected yet; drivers collect in used-ring order.
   */
  private syncWatchers(): void {
    for (const [i, w] of this.watchers) {
      w.sync();
      const q = this.queues.get(i);
      if (!q) continue;
      let avail = 0;
      let used = 0;
      for (const b of w.buffers.values()) if (b.state === 'in-flight') avail++;
      else used++;
      const uncollected = Math.max(0, Math.min(used, q.inFlight - (this.unpublished.get(i) ?? 0) - avail));
      if (used > uncollected) w.collected(used - uncollected);
      // In a trace, each queue's descriptors by state: the ring filling and draining, as a counter track.
      if (this.traceSession) {
        const c = w.counts();
        this.traceSession.tracer.counter(`queue ${i} descriptors`, this.machine.scheduler.now, { free: c.free, 'in flight': c['in-flight'], used: c.used }, this.tracePid);
      }
    }
  }

  // ------------------------------------------------------------------ initialisation

  private initSteps(): InitStep[] {
    const t = this.transport;
    const legacy = t.legacy;
    const p = this.machine.platform;
    const base = this.machine.platform.devices()[0]?.base ?? 0;
    const identify: InitStep =
      t instanceof PciTransport
        ? {
            name: 'identify the device: PCI vendor and device id (virtio-pci; found by enumerating the bus)',
            statements: ['pci.driver.1', 'pci.driver.2', 'pci.driver.3'],
            run: () => {
              const i = t.info;
              const id = identifyVirtioPci(i);
              return `  ${i.bus}:${i.dev}.${i.fn} vendor ${hex(i.vendorId)}, device ${hex(i.deviceId)}, subsystem ${hex(i.subsystemId)}: ${id ? `${id.transitional ? 'transitional' : 'modern'} virtio device type ${id.deviceType}${id.deviceType === 2 ? ' (block)' : ''}` : 'not virtio'}; driven through its ${t.legacy ? 'legacy (I/O BAR)' : 'modern (capabilities)'} interface`;
            },
          }
        : {
        name: 'identify the device: MagicValue, Version, DeviceID (virtio-mmio)',
        statements: ['mmio.driver.24', 'mmio.driver.25'],
        run: () => {
          const magic = p.mmioRead(base + Mmio.MAGIC_VALUE, 4) >>> 0;
          const version = p.mmioRead(base + Mmio.VERSION, 4) >>> 0;
          const id = p.mmioRead(base + Mmio.DEVICE_ID, 4) >>> 0;
          const ok = magic === Mmio.MAGIC && (version === 1 || version === 2);
          return `  magic ${hex(magic)}${magic === Mmio.MAGIC ? ' ("virt")' : ' (WRONG)'}, version ${version}${version === 2 ? ' (modern)' : version === 1 ? ' (legacy)' : ' (unknown)'}, device id ${id}${id === 2 ? ' (block)' : id === 1 ? ' (network)' : ''}${ok ? '' : ': not a device to drive'}`;
        },
      };
    const steps: InitStep[] = [
      identify,
      {
        name: 'reset the device (write 0 to status, wait until it reads 0)',
        statements: ['status_init.driver.6', 'status_init.driver.5', 'status_init.device.4'],
        run: () => {
          this.dropQueues();
          t.reset();
          return `  status now ${statusNames(t.getStatus())}`;
        },
      },
      {
        name: 'set ACKNOWLEDGE: the guest has noticed the device',
        statements: ['status_init.driver.6', 'status_init.driver.1'],
        run: () => {
          t.setStatus(Status.ACKNOWLEDGE);
          return `  status now ${statusNames(t.getStatus())}`;
        },
      },
      {
        name: 'set DRIVER: the guest knows how to drive it',
        statements: ['status_init.driver.6', 'status_init.driver.1'],
        run: () => {
          t.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
          return `  status now ${statusNames(t.getStatus())}`;
        },
      },
      {
        name: 'read the device features and write the subset the driver understands',
        statements: ['status_init.driver.6', 'features.driver.1', 'features.driver.5', 'features.driver.9'],
        run: () => {
          this.offered = t.deviceFeatures();
          let chosen = this.wanted & this.offered;
          if (legacy) chosen &= 0xffff_ffffn;
          else chosen |= bit(F.VERSION_1);
          t.setDriverFeatures(chosen);
          this.chosen = chosen;
          return this.featureText();
        },
      },
    ];
    if (!legacy) {
      steps.push({
        name: 'set FEATURES_OK, then re-read status: the device says yes by keeping the bit',
        statements: ['status_init.driver.6', 'status_init.driver.9', 'features.device.3'],
        run: () => {
          t.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
          const back = t.getStatus();
          return back & Status.FEATURES_OK ? `  status now ${statusNames(back)}: features accepted` : `  status now ${statusNames(back)}: the device REFUSED these features (FEATURES_OK stayed clear); reset() and choose again`;
        },
      });
    }
    steps.push(
      {
        name: this.device === 'net' ? 'set up queues 0 (receiveq1) and 1 (transmitq1): size, ring addresses, then enable each' : 'set up queue 0: size, ring addresses, then enable it',
        statements: ['status_init.driver.6', ...(t instanceof PciTransport ? [] : ['mmio.driver.14']), this.ringKind === 'packed' ? 'packed.driver.1' : 'split.driver.1', ...(this.ringKind === 'packed' ? [] : ['split.driver.19'])],
        run: () => (this.device === 'net' ? [0, 1] : [0]).map((i) => this.setupQueue(i)).join('\n'),
      },
      {
        name: 'set DRIVER_OK: the device is live',
        statements: ['status_init.driver.6', 'status_init.driver.12'],
        run: () => {
          const st = legacy ? Status.ACKNOWLEDGE | Status.DRIVER : Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK;
          t.setStatus(st | Status.DRIVER_OK);
          return `  status now ${statusNames(t.getStatus())}`;
        },
      },
    );
    return steps;
  }

  private setupQueue(index: number): string {
    const t = this.transport;
    const max = t.queueMaxSize(index);
    if (max === 0) return `  the device has no queue ${index}`;
    const packed = hasFeature(this.chosen, F.RING_PACKED);
    const eventIdx = hasFeature(this.chosen, F.EVENT_IDX);
    const indirect = hasFeature(this.chosen, F.INDIRECT_DESC);
    let size = Math.min(max, this.queueSize);
    if (!packed) while (size & (size - 1)) size &= size - 1; // split rings: a power of two
    if (t.kind === 'pci-legacy') size = max; // legacy virtio-pci has no queue size register the driver may write
    const p = this.machine.platform;
    const vq = packed
      ? new PackedVirtqueue<Token>(p.mem, p.dma, index, size, (i, data) => t.notify(i, data), { eventIdx, indirect, indirectThreshold: Infinity })
      : new SplitVirtqueue<Token>(p.mem, p.dma, { index, size, eventIdx, indirect, indirectThreshold: Infinity, legacyAlign: t.legacy ? t.legacyAlign : undefined, notify: () => t.notify(index) });
    t.setupQueue(index, vq.addresses);
    this.queues.set(index, vq);
    this.watchers.set(index, new RingWatcher(p.mem, packed ? 'packed' : 'split', vq.addresses, () => this.machine.scheduler.now));
    const a = vq.addresses;
    return `  queue ${index}: device max ${max}, using ${size} (${packed ? 'packed' : 'split'}); ${packed ? 'descriptor ring' : 'descriptor table'} ${hex(a.desc)}, ${packed ? 'driver event suppression' : 'available ring'} ${hex(a.driver)}, ${packed ? 'device event suppression' : 'used ring'} ${hex(a.device)}`;
  }

  private dropQueues(): void {
    this.unpublished.clear();
    for (const q of this.queues.values()) q.destroy();
    this.queues.clear();
    this.watchers.clear();
    this.blk = undefined;
    this.net = undefined;
  }

  /** Do the next initialisation step (one status bit at a time). */
  step(): View {
    if (this.stepIndex >= this.steps.length) return new View('initialisation is complete (status ' + statusNames(this.transport.getStatus()) + '); reset() starts again');
    const i = this.stepIndex++;
    const s = this.steps[i]!;
    return this.report(`step ${i + 1}/${this.steps.length}: ${s.name}  [${s.statements.join(', ')}]`, () => s.run());
  }

  /** Do every remaining initialisation step. */
  init(): View {
    const parts: string[] = [];
    while (this.stepIndex < this.steps.length) parts.push(this.step().text);
    return new View(parts.length ? parts.join('\n') : 'initialisation is already complete; reset() starts again');
  }

  /** Reset the device and start initialisation again (queues are dropped: status_init.driver.14). */
  reset(): View {
    this.stepIndex = 0;
    this.steps = this.initSteps();
    return this.report('reset: status 0 written; initialisation starts again at step 1', () => {
      this.dropQueues();
      this.transport.reset();
      return '';
    });
  }

  /** Device status, as both sides see it. */
  status(): View {
    const st = this.core.status;
    const lines = [`device status ${hex(st)} = ${statusNames(st)}`, `  next init step: ${this.stepIndex < this.steps.length ? `${this.stepIndex + 1}/${this.steps.length} ${this.steps[this.stepIndex]!.name}` : 'none (done)'}`];
    if (this.core.needsResetReason) lines.push(`  DEVICE_NEEDS_RESET because: ${this.core.needsResetReason.message}`);
    return new View(lines.join('\n'), { status: st, names: statusNames(st) });
  }

  private featureText(): string {
    const names = featureTable(this.device);
    const fmt = (s: bigint) => featureNames(s, names).join(' ') || '(none)';
    const refused = this.offered & ~this.chosen;
    const missing = this.wanted & ~this.offered;
    return [`  offered: ${fmt(this.offered)}`, `  chosen:  ${fmt(this.chosen)}`, `  refused (offered, not taken): ${fmt(refused)}`, `  wanted but not offered: ${fmt(missing)}`].join('\n');
  }

  /** Features offered, chosen and refused, with their names. */
  features(): View {
    if (this.offered === 0n) this.offered = this.core.deviceFeatures;
    return new View(`features (${this.device}):\n${this.featureText()}`, { offered: this.offered, chosen: this.chosen, wanted: this.wanted });
  }

  /** Add features to what the driver wants (before the feature step), by name or bit number. */
  want(...names: (string | number)[]): View {
    for (const n of names) this.wanted |= bit(featureBit(n, this.device));
    return this.features();
  }

  /** Remove features from what the driver wants (before the feature step). */
  refuse(...names: (string | number)[]): View {
    for (const n of names) this.wanted &= ~bit(featureBit(n, this.device));
    return this.features();
  }

  // ------------------------------------------------------------------ rings and requests

  private vq(index: number) {
    const q = this.queues.get(index);
    if (!q) throw new UsageError('usage.repl.queue', `queue ${index} is not set up yet: step() through initialisation (or init()) first`);
    return q;
  }

  /** Pretty-print a virtqueue from guest memory: descriptors, rings, event positions, which descriptors are free / in flight / used. */
  ring(index = 0, opts: { all?: boolean } = {}): View {
    const q = this.vq(index);
    const w = this.watchers.get(index)!;
    this.syncWatchers();
    const mem = this.machine.mem;
    const title = `queue ${index}`;
    const pending = this.unpublished.get(index) ?? 0;
    let text = w.layout === 'packed' ? renderPacked(readPacked(mem, q.addresses), w, { ...opts, title }) : renderSplit(readSplit(mem, q.addresses), w, { ...opts, title, added: w.unpublished(pending) });
    if (pending && w.layout === 'split') text += `\n  ${pending} buffer(s) added but not published: descriptors and ring entry written, avail idx not moved yet; kick() publishes`;
    return new View(text, { counts: w.counts(), buffers: [...w.buffers.values()] });
  }

  /** A virtio-blk request: header (device-readable), data, status byte (device-writable). */
  private blkRequest(kind: string, type: number, sector: number, dataLen: number, dataWritable: boolean, fill?: Uint8Array): { out: Seg[]; inp: Seg[]; token: Token; parts: string[] } {
    const dma = this.machine.platform.dma;
    const mem = this.machine.mem;
    const hdr = dma.alloc(BlkReqHeader.SIZE, 16);
    mem.write32(hdr + BlkReqHeader.TYPE, type);
    mem.write32(hdr + BlkReqHeader.RESERVED, 0);
    mem.write64(hdr + BlkReqHeader.SECTOR, sector);
    const data = dataLen ? dma.alloc(dataLen, 16) : 0;
    if (fill) mem.writeBytes(data, fill);
    const status = dma.alloc(1, 1);
    mem.write8(status, 0xff);
    const n = ++this.reqs;
    const token: Token = {
      n,
      kind,
      postedAt: this.machine.scheduler.now,
      allocations: data ? [hdr, status, data] : [hdr, status],
      done: (len: number) => {
        const st = mem.read8(status);
        const stName = st === Blk.S_OK ? 'OK' : st === Blk.S_IOERR ? 'IOERR' : st === Blk.S_UNSUPP ? 'UNSUPP' : `?${st}`;
        let line = `#${n} ${kind} sector ${sector}: status ${stName}, device wrote ${len} byte(s)`;
        if (kind === 'read' && dataLen) line += `\n     data: ${preview(mem.readBytes(data, Math.min(32, dataLen)))}`;
        return line;
      },
    };
    const out: Seg[] = [{ addr: hdr, len: BlkReqHeader.SIZE }];
    const inp: Seg[] = [];
    if (dataLen) (dataWritable ? inp : out).push({ addr: data, len: dataLen });
    inp.push({ addr: status, len: 1 });
    const parts = [`header ${hex(hdr)} (16 bytes, device-readable)`];
    if (dataLen) parts.push(`data ${hex(data)} (${dataLen} bytes, device-${dataWritable ? 'writable' : 'readable'})`);
    parts.push(`status ${hex(status)} (1 byte, device-writable)`);
    return { out, inp, token, parts };
  }

  /** Add one buffer to `queue` by hand, and kick unless told not to. */
  private postBuffer(queue: number, title: string, make: () => { out: Seg[]; inp: Seg[]; token: Token; parts: string[] }, kick: boolean): View {
    const q = this.vq(queue);
    return this.report(`${title} on queue ${queue}${kick ? '' : ' (not kicked: kick() publishes and notifies)'}`, () => {
      const { out, inp, token, parts } = make();
      if (!q.add(out, inp, token)) {
        for (const a of token.allocations) this.machine.platform.dma.free(a);
        return '  no room in the ring: collect() used buffers first';
      }
      let text = '  ' + parts.join(', ');
      this.unpublished.set(queue, (this.unpublished.get(queue) ?? 0) + 1);
      if (kick) {
        this.unpublished.set(queue, 0);
        text += q.kick() ? '\n  kicked: the device asked to be notified, so the driver wrote its notification register' : `\n  published; no notification: ${this.whySuppressed(queue)}`;
      }
      return text;
    });
  }

  private post(kind: string, type: number, sector: number, dataLen: number, dataWritable: boolean, fill: Uint8Array | undefined, kick: boolean, queue: number): View {
    this.needDevice('blk', kind);
    return this.postBuffer(queue, `${kind}: request #${this.reqs + 1}`, () => this.blkRequest(kind, type, sector, dataLen, dataWritable, fill), kick);
  }

  private needDevice(d: DeviceKind, what: string): void {
    if (this.device !== d) throw new UsageError('usage.repl.device', `${what}() is a virtio-${d} helper; this session drives virtio-${this.device}`);
  }

  /** Post a blk read (VIRTIO_BLK_T_IN) of `sectors` 512-byte sectors at `sector`; kicks unless {kick:false}. */
  read(sector = 0, sectors = 1, opts: { kick?: boolean; queue?: number } = {}): View {
    return this.post('read', Blk.T_IN, sector, sectors * Blk.SECTOR_SIZE, true, undefined, opts.kick ?? true, opts.queue ?? 0);
  }

  /** Post a blk write (VIRTIO_BLK_T_OUT) of `data` (a string or bytes, padded to whole sectors) at `sector`. */
  write(sector: number, data: string | Uint8Array, opts: { kick?: boolean; queue?: number } = {}): View {
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    const len = Math.max(1, Math.ceil(bytes.length / Blk.SECTOR_SIZE)) * Blk.SECTOR_SIZE;
    const buf = new Uint8Array(len);
    buf.set(bytes);
    return this.post('write', Blk.T_OUT, sector, len, false, buf, opts.kick ?? true, opts.queue ?? 0);
  }

  /** Post a blk FLUSH. */
  flush(opts: { kick?: boolean; queue?: number } = {}): View {
    return this.post('flush', Blk.T_FLUSH, 0, 0, false, undefined, opts.kick ?? true, opts.queue ?? 0);
  }

  // ------------------------------------------------------------------ virtio-net by hand

  private netHdrBytes(): number {
    return netHdrSize(this.chosen);
  }

  /** A transmit buffer: the virtio-net header (all zero: no offloads asked) and the frame, both device-readable. */
  private txFrame(frame: Uint8Array): { out: Seg[]; inp: Seg[]; token: Token; parts: string[] } {
    const dma = this.machine.platform.dma;
    const mem = this.machine.mem;
    const hl = this.netHdrBytes();
    const hdr = dma.alloc(hl, 16);
    const data = dma.alloc(frame.length, 16);
    mem.writeBytes(data, frame);
    const n = ++this.reqs;
    const what = describeFrame(frame);
    const token: Token = { n, kind: 'tx', postedAt: this.machine.scheduler.now, allocations: [hdr, data], done: (len) => `#${n} tx ${what}: sent (device reports ${len} byte(s) written, as it should for a transmit buffer)` };
    return { out: [{ addr: hdr, len: hl }, { addr: data, len: frame.length }], inp: [], token, parts: [`virtio-net header ${hex(hdr)} (${hl} bytes, device-readable)`, `frame ${hex(data)} (${frame.length} bytes, device-readable): ${what}`] };
  }

  /** A receive buffer: one device-writable descriptor for the header and a whole frame. */
  private rxBuffer(): { out: Seg[]; inp: Seg[]; token: Token; parts: string[] } {
    const dma = this.machine.platform.dma;
    const mem = this.machine.mem;
    const hl = this.netHdrBytes();
    const size = hl + 1514;
    const buf = dma.alloc(size, 16);
    const n = ++this.reqs;
    const token: Token = {
      n,
      kind: 'rx',
      postedAt: this.machine.scheduler.now,
      allocations: [buf],
      done: (len) => {
        if (len < hl) return `#${n} rx: only ${len} byte(s), shorter than the ${hl}-byte header`;
        const frame = mem.readBytes(buf + hl, len - hl);
        return `#${n} rx ${len} byte(s) = ${hl}-byte header + ${describeFrame(frame)}`;
      },
    };
    return { out: [], inp: [{ addr: buf, len: size }], token, parts: [`receive buffer ${hex(buf)} (${size} bytes, device-writable: ${hl}-byte header + a 1514-byte frame)`] };
  }

  private arpFrame(ip: string): Uint8Array {
    const n = this.netSim!;
    return buildEthernet({ dst: BROADCAST, src: n.guestMac }, EtherType.ARP, buildArp({ op: ArpOp.REQUEST, sha: n.guestMac, spa: n.guestIp, tha: new Uint8Array(6), tpa: ip4FromString(ip) }));
  }

  /** Post `count` receive buffers on receiveq1 (queue 0) and kick: frames for the guest land in them. */
  rx(count = 4, opts: { kick?: boolean } = {}): View {
    this.needDevice('net', 'rx');
    const views: string[] = [];
    for (let i = 0; i < count; i++) views.push(this.postBuffer(0, `rx: buffer #${this.reqs + 1}`, () => this.rxBuffer(), (opts.kick ?? true) && i === count - 1).text);
    return new View(views.join('\n'));
  }

  /** Transmit a frame (bytes) on transmitq1 (queue 1). */
  send(frame: Uint8Array, opts: { kick?: boolean } = {}): View {
    this.needDevice('net', 'send');
    return this.postBuffer(1, `send: buffer #${this.reqs + 1}`, () => this.txFrame(frame), opts.kick ?? true);
  }

  /** Transmit an ARP request for `ip` (the host peer is 10.0.2.2 and answers). */
  arp(ip = '10.0.2.2', opts: { kick?: boolean } = {}): View {
    this.needDevice('net', 'arp');
    return this.send(this.arpFrame(ip), opts);
  }

  /** Transmit an ICMP echo request to the host peer (10.0.2.2), which answers with an echo reply. */
  ping(seq = 1, opts: { kick?: boolean } = {}): View {
    this.needDevice('net', 'ping');
    const n = this.netSim!;
    const frame = buildPing({ dst: n.peer.mac, src: n.guestMac }, n.guestIp, n.peer.ip, IcmpType.ECHO_REQUEST, 0x7076, seq, new TextEncoder().encode('pvkit repl ping'));
    return this.send(frame, opts);
  }

  /** Publish what was added and notify the device if it wants a notification. */
  kick(queue = 0): View {
    const q = this.vq(queue);
    const pending = this.unpublished.get(queue) ?? 0;
    this.unpublished.set(queue, 0);
    return this.report(`kick queue ${queue}`, () => {
      const notified = q.kick();
      const lines = [pending ? `  published ${pending} buffer(s)` : '  nothing new to publish'];
      lines.push(notified ? '  notified the device (QueueNotify)' : `  no notification: ${this.whySuppressed(queue)}`);
      return lines.join('\n');
    });
  }

  /** Why the last kick did not notify, from what the device wrote in shared memory. */
  private whySuppressed(queue: number): string {
    const q = this.vq(queue);
    const mem = this.machine.mem;
    const a = q.addresses;
    if (q.layout === 'packed') {
      const flags = mem.read16(a.device + 2) & 3;
      return flags === 1 ? 'the device event suppression says DISABLE' : flags === 2 ? 'the device event suppression names a later descriptor (event idx)' : 'nothing was published';
    }
    if (hasFeature(this.chosen, F.EVENT_IDX)) {
      const ev = mem.read16(a.device + 4 + 8 * q.size);
      return `avail_event is ${ev} and no new entry went in at that index, so the driver does not notify (split.driver.24, split.driver.25): the device has not caught up with what it was already told about and will find these buffers when it runs`;
    }
    return 'the used ring flags say NO_NOTIFY (split.driver.21)';
  }

  /** Run exactly one scheduler event (the device's next piece of work): Scheduler.runNext, as device time. */
  tick(): View {
    const s = this.machine.scheduler;
    const due = s.nextDue();
    if (due === undefined) return new View('no device work pending (kick a request first)');
    return this.report('tick: one device event', () => {
      this.monitor.deviceTime(() => s.runNext());
      return '';
    });
  }

  /** Run device events until none is left (bounded), as device time. */
  run(maxEvents = 1000): View {
    const s = this.machine.scheduler;
    return this.report('run: device events until idle', () => {
      let n = 0;
      this.monitor.deviceTime(() => {
        while (n < maxEvents && s.runNext()) n++;
      });
      return `  ${n} event(s) run${n >= maxEvents ? ' (stopped at the bound)' : ''}`;
    });
  }

  /** Take pending interrupts (acknowledging them at the device), then collect every used buffer (of `queue`, or of every queue). */
  collect(queue?: number): View {
    const indices = queue === undefined ? [...this.queues.keys()] : [queue];
    for (const i of indices) this.vq(i);
    if (indices.length === 0) this.vq(0);
    const p = this.machine.platform;
    return this.report(`collect ${queue === undefined ? 'every queue' : `queue ${queue}`}`, () => {
      const lines: string[] = [];
      for (let v = p.irq.poll(); v !== null; v = p.irq.poll()) {
        const cause = this.transport.ackInterrupt(v);
        p.irq.eoi(v);
        lines.push(`  interrupt ${hex(v)}: ${cause.used ? 'used buffers' : ''}${cause.used && cause.config ? ' + ' : ''}${cause.config ? 'configuration change' : ''}${!cause.used && !cause.config ? 'nothing (spurious)' : ''}`);
      }
      this.syncWatchers();
      for (const i of indices) {
        const q = this.vq(i);
        for (let u = q.getUsed(); u; u = q.getUsed()) {
          const r = u.token;
          const [first, ...more] = r.done(u.len).split('\n');
          lines.push(`  q${i} ${first}, ${fmtNs(this.machine.scheduler.now - r.postedAt)} after posting`, ...more);
          for (const a of r.allocations) p.dma.free(a);
        }
      }
      if (lines.length === 0) lines.push('  nothing used yet (tick() or run() lets the device work)');
      return lines.join('\n');
    });
  }

  /** Exit counts and modelled cost so far. */
  exits(): View {
    const c = this.machine.cost();
    const rows = Object.entries(c.byKind)
      .filter(([k]) => k.startsWith('exit.'))
      .map(([k, v]) => `  ${k.slice(5).padEnd(20)} ${String(v.count).padStart(6)}  ${String(v.cycles).padStart(10)} cycles`);
    return new View([`exits under cost profile ${this.machine.profile.name}:`, ...rows, `  total ${c.cycles} cycles = ${c.micros.toFixed(2)} us`].join('\n'), c);
  }

  /** Every violation the monitor recorded, with the statement paraphrase. */
  violations(): View {
    const vs = this.monitor.violations;
    this.shownViolations = vs.length;
    return new View(vs.length ? vs.map(formatViolation).join('\n') : 'no violations recorded', vs);
  }

  /** The catalog entry of a statement id: keyword, side, paraphrase, where it is in the spec. */
  spec(id: string): View {
    const e = catalog().byId(id);
    if (!e) {
      const near = catalog()
        .entries.filter((x) => x.id.startsWith(id))
        .slice(0, 10)
        .map((x) => x.id);
      return new View(`no statement ${id}${near.length ? `; ids starting so: ${near.join(', ')}` : ''}`);
    }
    const lines = [`${e.id} (${e.side} ${e.keyword}) ${e.paraphrase}`, `  spec: ${e.location} (v1.4-cs01), ${e.block}`];
    if (e.naReason) lines.push(`  not applicable to pvkit: ${e.naReason}`);
    return new View(lines.join('\n'), e);
  }

  /**
   * Break a rule on purpose and watch the monitor (and the device) react:
   * 'skip-features-ok' (DRIVER_OK without FEATURES_OK), 'bad-descriptor' (a writable descriptor
   * before a readable one), 'clear-status' (clear a status bit without a reset),
   * 'notify-early' (QueueNotify before DRIVER_OK).
   */
  breakRule(rule: string): View {
    const t = this.transport;
    switch (rule) {
      case 'skip-features-ok':
        this.stepIndex = this.steps.length;
        return this.report('breaking status_init.driver.6 on purpose: DRIVER_OK without FEATURES_OK', () => {
          this.dropQueues();
          t.reset();
          t.setStatus(Status.ACKNOWLEDGE);
          t.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
          this.offered = t.deviceFeatures();
          this.chosen = (this.wanted & this.offered) | bit(F.VERSION_1);
          t.setDriverFeatures(this.chosen);
          t.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.DRIVER_OK);
          return `  status now ${statusNames(t.getStatus())}`;
        });
      case 'bad-descriptor': {
        const bq = this.device === 'net' ? 1 : 0;
        const q = this.vq(bq);
        if (q.layout !== 'split') throw new UsageError('usage.repl.break', 'bad-descriptor is written for the split ring; start the REPL with --ring split');
        return this.report('breaking split.driver.2 on purpose: a device-writable descriptor before a device-readable one', () => {
          const { out, inp, token } = this.device === 'net' ? this.txFrame(this.arpFrame('10.0.2.2')) : this.blkRequest('write', Blk.T_OUT, 0, 512, false, undefined);
          // Post a well-formed chain, then swap the direction flags of its first two descriptors before publishing it.
          q.add(out, inp, token);
          const mem = this.machine.mem;
          const a = q.addresses;
          const availShadow = mem.read16(a.driver + 2); // published idx; the new entry sits at this position
          const head = mem.read16(a.driver + 4 + 2 * (availShadow % q.size));
          const second = mem.read16(a.desc + 16 * head + 14);
          mem.write16(a.desc + 16 * head + 12, mem.read16(a.desc + 16 * head + 12) | 2); // header: WRITE
          mem.write16(a.desc + 16 * second + 12, mem.read16(a.desc + 16 * second + 12) & ~2); // data: not WRITE
          q.kick();
          return `  chain at descriptor ${head}: descriptor ${head} now WRITE, ${second} readable; published and notified. tick() lets the device see it.`;
        });
      }
      case 'clear-status':
        return this.report('breaking status_init.driver.2 on purpose: clearing a status bit without a reset', () => {
          const st = t.getStatus();
          t.setStatus(st & ~Status.ACKNOWLEDGE);
          return `  wrote ${statusNames(st & ~Status.ACKNOWLEDGE)} over ${statusNames(st)}; status reads ${statusNames(t.getStatus())}`;
        });
      case 'notify-early':
        return this.report('breaking status_init.driver.12 on purpose: a notification before DRIVER_OK', () => {
          this.dropQueues();
          t.reset();
          this.stepIndex = 0;
          t.notify(0);
          return '  reset, then QueueNotify for queue 0';
        });
      default:
        throw new UsageError('usage.repl.break', `no rule-breaking scenario named ${rule}`, { expected: 'skip-features-ok | bad-descriptor | clear-status | notify-early' });
    }
  }

  /** Hand the device to its reference driver (drivers/blk/driver.ts or drivers/net/driver.ts): it resets and initialises it itself. */
  driver(): View {
    if (this.device === 'net') {
      return this.report('handing the device to the reference virtio-net driver (VirtioNetDriver.init)', () => {
        this.dropQueues();
        const net = VirtioNetDriver.init(this.machine.platform, this.transport, { queueSize: this.queueSize, pairs: 1, features: NET_DRIVER_FEATURES & ~(this.ringKind === 'packed' ? 0n : bit(F.RING_PACKED)) });
        this.net = net;
        this.stepIndex = this.steps.length;
        this.offered = net.dev.offered;
        this.chosen = net.dev.features;
        for (const [i, q] of net.dev.queues) {
          this.watchers.set(i, new RingWatcher(this.machine.mem, q.layout, q.addresses, () => this.machine.scheduler.now, true));
          this.queues.set(i, q as never);
        }
        return `  ${net.dev.queues.size} queue(s); the driver is the global \`net\` (net.send(frame), net.waitReceive(), net.run(ns)); the host peer is 10.0.2.2`;
      });
    }
    return this.report('handing the device to the reference virtio-blk driver (VirtioBlkDriver.probe)', () => {
      this.dropQueues();
      const blk = VirtioBlkDriver.probe(this.machine.platform, this.transport, { queueSize: this.queueSize, maxQueues: 1, ringFeatures: bit(F.EVENT_IDX) | (this.ringKind === 'packed' ? bit(F.RING_PACKED) : 0n), indirectThreshold: Infinity });
      this.blk = blk;
      this.stepIndex = this.steps.length;
      this.offered = blk.dev.offered;
      this.chosen = blk.features;
      for (const [i, q] of blk.dev.queues) this.watchers.set(i, new RingWatcher(this.machine.mem, q.layout, q.addresses, () => this.machine.scheduler.now, true));
      for (const [i, q] of blk.dev.queues) this.queues.set(i, q as never);
      return `  capacity ${blk.info.capacity} sectors, cache ${blk.info.cache}; the driver is the global \`blk\` (blk.read(sector, buf), blk.write(...), blk.submit(...))`;
    });
  }

  /** Write the Chrome trace recorded so far (needs --trace or {trace:true}). */
  writeTrace(path: string): View {
    if (!this.traceSession) throw new UsageError('usage.repl.trace', 'this session is not traced: start the REPL with --trace FILE');
    this.traceSession.finish(path);
    return new View(`trace written to ${path} (open it in https://ui.perfetto.dev)`);
  }

  /** Bytes of guest memory at `gpa`, as hex and text. */
  mem(gpa: number, len = 64): View {
    const b = this.machine.mem.readBytes(gpa, Math.min(len, 4096));
    const lines: string[] = [];
    for (let i = 0; i < b.length; i += 16) lines.push(`${hex(gpa + i).padStart(12)}  ${preview(b.subarray(i, i + 16))}`);
    return new View(lines.join('\n'), b);
  }
}

/** A one-line description of an Ethernet frame (ARP and ICMP echo decoded). */
export function describeFrame(f: Uint8Array): string {
  if (f.length < 14) return `a runt frame of ${f.length} bytes`;
  const info = parseFrame(f);
  const head = `${f.length}-byte frame ${macToString(f, 6)} -> ${macToString(f, 0)}`;
  if (info.ethertype === EtherType.ARP) {
    const a = parseArp(f, 14);
    if (a) return `${head}, ARP ${a.op === ArpOp.REQUEST ? `who-has ${ip4ToString(a.tpa)} tell ${ip4ToString(a.spa)}` : `${ip4ToString(a.spa)} is-at ${macToString(a.sha)}`}`;
  }
  if (info.ipVersion === 4 && info.proto === IpProto.ICMP && info.l4 >= 0) {
    const type = f[info.l4]!;
    const seq = (f[info.l4 + 6]! << 8) | f[info.l4 + 7]!;
    const name = type === IcmpType.ECHO_REQUEST ? 'echo request' : type === IcmpType.ECHO_REPLY ? 'echo reply' : `type ${type}`;
    return `${head}, ICMP ${name} ${ip4ToString(f, info.l3 + 12)} -> ${ip4ToString(f, info.l3 + 16)} seq ${seq}`;
  }
  return `${head}, ethertype 0x${info.ethertype.toString(16)}`;
}

function formatViolation(v: Violation): string {
  const e = catalog().byId(v.statement);
  const lines = [`  monitor: ${v.side} broke ${v.statement}: ${v.message}${v.expected !== undefined ? `; expected ${v.expected}` : ''}${v.seen !== undefined ? `; seen ${v.seen}` : ''}`];
  if (e) lines.push(`           ${e.id} (${e.side} ${e.keyword}) ${e.paraphrase} [${e.location}]`);
  return lines.join('\n');
}

function fmtNs(ns: number): string {
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(3)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(3)} us`;
  return `${Math.round(ns)} ns`;
}

function preview(b: Uint8Array): string {
  const hx = [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');
  const txt = [...b].map((x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : '.')).join('');
  return `${hx}  |${txt}|`;
}

/** Collapse runs of the same item: ['a','a','b'] -> ['a x2','b']. */
function compress(items: string[]): string[] {
  const out: string[] = [];
  let prev = '';
  let n = 0;
  for (const it of [...items, '\u0000']) {
    if (it === prev) {
      n++;
      continue;
    }
    if (n) out.push(n > 1 ? `${prev} x${n}` : prev);
    prev = it;
    n = 1;
  }
  return out;
}

/** Names of the helpers the REPL exposes, with one line each (for .help and tab completion). */
export const HELPERS: readonly { name: string; usage: string; what: string }[] = [
  { name: 'step', usage: 'step()', what: 'next initialisation step, one status bit at a time' },
  { name: 'init', usage: 'init()', what: 'every remaining initialisation step' },
  { name: 'reset', usage: 'reset()', what: 'reset the device; initialisation starts again' },
  { name: 'status', usage: 'status()', what: 'device status with bit names, and the next init step' },
  { name: 'features', usage: 'features()', what: 'features offered, chosen, refused, with names' },
  { name: 'want', usage: "want('INDIRECT_DESC', ...)", what: 'add features to what the driver takes (before the feature step)' },
  { name: 'refuse', usage: "refuse('EVENT_IDX', ...)", what: 'drop features from what the driver takes' },
  { name: 'ring', usage: 'ring(q = 0, {all})', what: 'the virtqueue as it is in guest memory: descriptors, rings, event idx, free / in flight / used' },
  { name: 'read', usage: 'read(sector, sectors = 1, {kick})', what: 'virtio-blk: post a read by hand (kicks unless {kick:false})' },
  { name: 'write', usage: "write(sector, 'text' | bytes, {kick})", what: 'virtio-blk: post a write by hand' },
  { name: 'flush', usage: 'flush({kick})', what: 'virtio-blk: post a flush' },
  { name: 'rx', usage: 'rx(count = 4, {kick})', what: 'virtio-net: post receive buffers on receiveq1 (queue 0)' },
  { name: 'arp', usage: "arp('10.0.2.2', {kick})", what: 'virtio-net: transmit an ARP request (the host peer 10.0.2.2 answers)' },
  { name: 'ping', usage: 'ping(seq = 1, {kick})', what: 'virtio-net: transmit an ICMP echo request to the host peer' },
  { name: 'send', usage: 'send(frameBytes, {kick})', what: 'virtio-net: transmit any Ethernet frame on transmitq1 (queue 1)' },
  { name: 'kick', usage: 'kick(q = 0)', what: 'publish added buffers and notify the device if it wants it' },
  { name: 'tick', usage: 'tick()', what: 'run ONE device event (Scheduler.runNext) and show what it caused' },
  { name: 'run', usage: 'run()', what: 'run device events until idle' },
  { name: 'collect', usage: 'collect(q?)', what: 'take interrupts (ack them) and collect used buffers (of q, or every queue): the ring drains' },
  { name: 'exits', usage: 'exits()', what: 'VM exits so far and their modelled cycles' },
  { name: 'violations', usage: 'violations()', what: 'what the conformance monitor recorded, with the spec paraphrase' },
  { name: 'spec', usage: "spec('split.driver.2')", what: 'a statement: keyword, paraphrase, spec file:line' },
  { name: 'breakRule', usage: "breakRule('bad-descriptor')", what: 'break a rule on purpose: skip-features-ok | bad-descriptor | clear-status | notify-early' },
  { name: 'driver', usage: 'driver()', what: 'hand the device to its reference driver (global `blk` or `net`)' },
  { name: 'mem', usage: 'mem(gpa, len = 64)', what: 'hex dump of guest memory' },
  { name: 'writeTrace', usage: "writeTrace('t.json')", what: 'write the Chrome trace now (with --trace)' },
  { name: 'session', usage: 'session', what: 'the Session object: machine, core, transport, monitor, queues' },
];

/** Bind the helpers to a session, as plain functions (for a REPL context or a script). */
export function helpers(s: Session): Record<string, unknown> {
  const out: Record<string, unknown> = { session: s, machine: s.machine, monitor: s.monitor };
  for (const h of HELPERS) {
    const f = (s as unknown as Record<string, unknown>)[h.name];
    if (typeof f === 'function') {
      const fn = (f as (...a: unknown[]) => unknown).bind(s);
      // A typed error (bad argument, helper of the other device...) is an answer, not a crash: print it in one line.
      out[h.name] = (...a: unknown[]) => {
        try {
          return fn(...a);
        } catch (e) {
          if (e instanceof PvkitError) return new View(`${e.name}: ${e.message}`, e);
          throw e;
        }
      };
    }
  }
  Object.defineProperty(out, 'blk', { get: () => s.blk, enumerable: true });
  Object.defineProperty(out, 'net', { get: () => s.net, enumerable: true });
  return out;
}

export function isPvkitError(e: unknown): e is PvkitError {
  return e instanceof PvkitError;
}
