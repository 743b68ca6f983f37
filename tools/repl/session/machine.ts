/**
 * The session's machine, set up once per device, transport and ring: the options and kinds a
 * session is made from, the simulated machine with its device (virtio-blk on a RAM disk, or
 * virtio-net on a switch with a host peer), the conformance monitor, the listeners that log what
 * the machine does during a helper call, and the report each helper prints from that log.
 * SessionMachine is the base of the Session class chain (init.ts, requests.ts, stepping.ts,
 * break-rules.ts, ../session.ts).
 */
import type { ExitInfo, VCpu } from '../../../device-models/machine/vcpu.ts';
import type { BusAccess } from '../../../device-models/machine/bus.ts';
import type { ScheduledEvent } from '../../../device-models/machine/scheduler.ts';
import { TraceSession } from '../../../device-models/machine/trace.ts';
import { BLK_TRANSPORTS, isLegacyTransport, simBlk, type BlkTransportKind, type SimBlk } from '../../../conformance/harness/blk.ts';
import { RamDisk } from '../../../device-models/blk/backend.ts';
import type { VirtioCore } from '../../../device-models/virtio/core.ts';
import type { VirtioTransport, QueueAddresses } from '../../../drivers/transport/transport.ts';
import type { Virtqueue } from '../../../drivers/core/virtqueue.ts';
import type { VirtioBlkDriver } from '../../../drivers/blk/driver.ts';
import { Machine } from '../../../device-models/machine/machine.ts';
import { VirtioNetDevice } from '../../../device-models/net/device.ts';
import { L2Switch, plug } from '../../../device-models/net/switch.ts';
import { HostPeer } from '../../../device-models/net/host-peer.ts';
import { netTransport, netTransports } from '../../../conformance/harness/net.ts';
import type { VirtioNetDriver } from '../../../drivers/net/driver.ts';
import { ip4FromString, macFromString } from '../../../spec-refs/abi/packet.ts';
import { attachMonitor, type Monitor } from '../../../conformance/monitor.ts';
import { UsageError } from '../../../spec-refs/errors.ts';
import { BlkF, F, Mmio, NetF, bit } from '../../../spec-refs/abi/virtio.ts';
import type { RingWatcher } from '../ring-view.ts';
import { View, compress, fmtNs, formatViolation, hex } from './view.ts';

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

/** What the session's driver posts with each buffer: how to report it once used, and what to free. */
export interface Token {
  readonly n: number;
  readonly kind: string;
  readonly postedAt: number;
  /** Describe the completed buffer, given the length the device reported. */
  done(len: number): string;
  /** DMA allocations to free once the buffer is collected. */
  readonly allocations: readonly number[];
}

export type Seg = { addr: number; len: number };

const MMIO_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Mmio).filter(([k]) => !['MAGIC', 'INT_VRING', 'INT_CONFIG'].includes(k)).map(([k, v]) => [v, k]));

/** The machine, its device and monitor, and the reporting every helper shares. */
export class SessionMachine {
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
  /** Buffers added per queue and not yet published by a kick. */
  protected readonly unpublished = new Map<number, number>();
  private log: Happening[] | null = null;
  protected shownViolations = 0;
  private shownDeviceErrors = 0;
  protected readonly traceSession: TraceSession | undefined;
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
    // Everything the machine does is logged while a helper runs.
  }

  // ------------------------------------------------------------------ reporting

  /** Run `fn`, then report what it made the machine do: register accesses, exits, events, interrupts, violations. */
  protected report<T>(title: string, fn: () => string, opts: { bus?: boolean } = {}): View<T | undefined> {
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
  protected syncWatchers(): void {
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
}
