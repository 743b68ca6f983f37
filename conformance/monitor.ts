/**
 * The conformance monitor: watches both sides of every virtio-mmio device on a simulated Machine
 * and records each broken statement with its census id.
 *
 * It sees
 * - every register access (Machine.bus listener): the driver's status, feature, queue and
 *   interrupt register traffic and what the device answers;
 * - every interrupt the machine delivers (InterruptController listener);
 * - the split rings, which it reads from guest memory at *synchronisation points*. On the simulated
 *   machine device work runs only while the driver waits (platform.irq.wait) or spins
 *   (platform.spin), so the monitor wraps those two calls: what changed in shared memory between
 *   leaving one wait and entering the next was done by the driver; what changed during a wait was
 *   done by the device. That is how it tells a driver modifying an in-flight descriptor
 *   (status_init.driver.13) from a device writing one (split.device.6).
 *
 * It judges only from what it observes, independently of the device model's own validation, so
 * the same rules apply whichever side is under test. It never changes device state: the only
 * accesses it makes itself are reads of side-effect-free registers (MagicValue, QueueSizeMax,
 * Status, InterruptStatus), made with its own listener muted.
 *
 * Packed rings are not monitored at ring level (register rules still apply).
 */
import type { Machine } from '../device-models/machine/machine.ts';
import type { BusAccess } from '../device-models/machine/bus.ts';
import type { PlatformDevice } from '../drivers/core/platform.ts';
import { BlkF, F, Mmio, NetF, Split, Status, DeviceType, statusNames } from '../spec-refs/virtio.ts';
import { NetFx } from '../spec-refs/net.ts';
import { CheckFailure } from './check.ts';

export interface Violation {
  readonly statement: string;
  /** The side that broke the statement. */
  readonly side: 'driver' | 'device';
  readonly device: string;
  readonly message: string;
  readonly expected?: string;
  readonly seen?: string;
  /** Virtual time (ns). */
  readonly at: number;
}

export interface MonitorOptions {
  /** Statement ids not to record (a scenario that breaks one on purpose). */
  readonly ignore?: readonly string[];
  /** Keep at most this many violations (default 1000); `count` keeps counting. */
  readonly max?: number;
  /** Monitor split rings in guest memory (default true). */
  readonly rings?: boolean;
  /** Bytes of each device-readable buffer snapshotted to detect device writes (default 512 per segment). */
  readonly snapshotBytes?: number;
  /**
   * Called for every chain a driver makes available (after the monitor's own judgement), with its
   * segments: device-specific judges (e.g. blk request rules) plug in here and report through
   * `report`.
   */
  readonly onChain?: (chain: ObservedChain, report: (statement: string, message: string, expected?: string, seen?: string) => void) => void;
}

/** A chain as the driver made it available. */
export interface ObservedChain {
  readonly device: PlatformDevice;
  readonly deviceId: number | undefined;
  readonly queue: number;
  readonly head: number;
  readonly readable: readonly { addr: number; len: number }[];
  readonly writable: readonly { addr: number; len: number }[];
  /** Reads device config (side-effect free, muted): for judges that need config values. */
  readonly config32: (offset: number) => number;
}

const DRIVER_BITS = Status.ACKNOWLEDGE | Status.DRIVER | Status.DRIVER_OK | Status.FEATURES_OK | Status.FAILED;

/** Register access kinds of the virtio-mmio version 2 table (mmio-registers.tsv). */
const REG_ACCESS: ReadonlyMap<number, 'R' | 'W' | 'RW'> = new Map<number, 'R' | 'W' | 'RW'>([
  [Mmio.MAGIC_VALUE, 'R'],
  [Mmio.VERSION, 'R'],
  [Mmio.DEVICE_ID, 'R'],
  [Mmio.VENDOR_ID, 'R'],
  [Mmio.DEVICE_FEATURES, 'R'],
  [Mmio.DEVICE_FEATURES_SEL, 'W'],
  [Mmio.DRIVER_FEATURES, 'W'],
  [Mmio.DRIVER_FEATURES_SEL, 'W'],
  [Mmio.QUEUE_SEL, 'W'],
  [Mmio.QUEUE_NUM_MAX, 'R'],
  [Mmio.QUEUE_NUM, 'W'],
  [Mmio.QUEUE_READY, 'RW'],
  [Mmio.QUEUE_NOTIFY, 'W'],
  [Mmio.INTERRUPT_STATUS, 'R'],
  [Mmio.INTERRUPT_ACK, 'W'],
  [Mmio.STATUS, 'RW'],
  [Mmio.QUEUE_DESC_LOW, 'W'],
  [Mmio.QUEUE_DESC_HIGH, 'W'],
  [Mmio.QUEUE_DRIVER_LOW, 'W'],
  [Mmio.QUEUE_DRIVER_HIGH, 'W'],
  [Mmio.QUEUE_DEVICE_LOW, 'W'],
  [Mmio.QUEUE_DEVICE_HIGH, 'W'],
  [Mmio.SHM_SEL, 'W'],
  [Mmio.SHM_LEN_LOW, 'R'],
  [Mmio.SHM_LEN_HIGH, 'R'],
  [Mmio.SHM_BASE_LOW, 'R'],
  [Mmio.SHM_BASE_HIGH, 'R'],
  [Mmio.QUEUE_RESET, 'RW'],
  [Mmio.CONFIG_GENERATION, 'R'],
]);
/** Bytes of device-specific config space each device type defines (blk: struct virtio_blk_config). */
const CONFIG_SIZE: Record<number, number> = { [DeviceType.BLOCK]: 96 };
const LEGACY_ONLY = new Set<number>([Mmio.GUEST_PAGE_SIZE, Mmio.QUEUE_ALIGN, Mmio.QUEUE_PFN]);
const SHM_REGS = new Set<number>([Mmio.SHM_SEL, Mmio.SHM_LEN_LOW, Mmio.SHM_LEN_HIGH, Mmio.SHM_BASE_LOW, Mmio.SHM_BASE_HIGH]);

/** Feature bits the spec defines, per device type: accepting anything else breaks features.driver.5. */
function definedBits(deviceType: number): Set<number> {
  const s = new Set<number>(Object.values(F));
  const dev = deviceType === DeviceType.BLOCK ? BlkF : deviceType === DeviceType.NET ? NetF : undefined;
  if (dev) for (const b of Object.values(dev)) s.add(b);
  // virtio-net bits above 63 (UDP-tunnel GSO, RSS_CONTEXT, OUT_NET_HEADER, IPSEC) live in spec-refs/net.ts.
  if (deviceType === DeviceType.NET) for (const b of Object.values(NetFx)) s.add(b);
  // blk: bits 0 (BARRIER), 7 (SCSI) are legacy-only and not in BlkF; they are not defined for 1.x either.
  return s;
}

interface InFlight {
  readonly head: number;
  readonly writable: number;
  /** Descriptor-table bytes of the chain (addr/len/flags/next of each descriptor), as made available. */
  readonly descs: { readonly gpa: number; readonly bytes: Uint8Array }[];
  /** Device-readable buffer prefixes as made available. */
  readonly readable: { readonly gpa: number; readonly bytes: Uint8Array }[];
}

interface RingState {
  readonly index: number;
  readonly size: number;
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  lastAvail: number;
  lastUsed: number;
  /** avail idx at the last notification of this queue. */
  notifiedAvail: number;
  readonly inflight: Map<number, InFlight[]>;
  inflightCount: number;
  /** A used entry was added at this used idx window without a notification yet: [from, to). */
  owed: { from: number; to: number; usedEvent: number; flags: number; irqsAt: number } | null;
  broken: boolean;
}

interface QueueRegs {
  size: number;
  desc: number;
  driver: number;
  device: number;
  ready: boolean;
}

interface DevState {
  readonly pd: PlatformDevice;
  readMagic: boolean;
  readVersion: boolean;
  readDeviceId: boolean;
  deviceId: number | undefined;
  version: number | undefined;
  /** Last status the driver set or read (driver-owned bits). */
  status: number;
  sawReset: boolean;
  failedSet: boolean;
  featuresRefused: boolean;
  featuresOkWritten: boolean;
  driverOk: boolean;
  devFeatSelWritten: boolean;
  drvFeatSelWritten: boolean;
  devFeatSel: number;
  drvFeatSel: number;
  readonly offered: Map<number, number>;
  readonly accepted: Map<number, number>;
  queueSel: number;
  readonly queues: Map<number, QueueRegs>;
  readonly rings: Map<number, RingState>;
  negotiated: { indirect: boolean; eventIdx: boolean; packed: boolean };
  /** InterruptStatus bits read and not yet acknowledged. */
  unacked: number;
  /** Interrupts delivered on this device's vector so far, and the count when the current wait began. */
  irqsTotal: number;
  irqsAtEnter: number;
  /** irqsTotal when the driver last read InterruptStatus. */
  irqsHandled: number;
  /** irqsTotal when the driver last took an interrupt for this device's vector (wait/poll returned it). */
  irqsTaken: number;
}

function u64(mem: Machine['mem'], gpa: number): number {
  return mem.read32(gpa) + mem.read32(gpa + 4) * 0x1_0000_0000;
}

/** vring_need_event: whether moving the index from old to new crossed event (all mod 2^16). */
function needEvent(event: number, next: number, old: number): boolean {
  return ((next - event - 1) & 0xffff) < ((next - old) & 0xffff);
}

export class Monitor {
  readonly violations: Violation[] = [];
  /** Violations seen (including those past `max` or ignored ones are not counted). */
  count = 0;
  private readonly devs = new Map<number, DevState>();
  private readonly ignore: Set<string>;
  private readonly max: number;
  private readonly ringsOn: boolean;
  private readonly snapBytes: number;
  private readonly onChain: MonitorOptions['onChain'];
  /** What the monitor observed (to show a clean run really watched something). */
  readonly stats = { accesses: 0, chains: 0, used: 0, irqs: 0 };
  private muted = false;
  private active = true;
  private readonly undo: (() => void)[] = [];

  constructor(readonly machine: Machine, opts: MonitorOptions = {}) {
    this.ignore = new Set(opts.ignore ?? []);
    this.max = opts.max ?? 1000;
    this.ringsOn = opts.rings ?? true;
    this.snapBytes = opts.snapshotBytes ?? 512;
    this.onChain = opts.onChain;
    this.undo.push(machine.bus.addListener((a) => this.onAccess(a)));
    machine.irq.addListener((vector) => this.onIrq(vector));
    const p = machine.platform;
    const irq = p.irq;
    const wait = irq.wait;
    const spin = p.spin;
    const self = this;
    irq.wait = function (timeoutNs: number) {
      self.enterDeviceTime();
      let v: number | null = null;
      try {
        v = wait.call(irq, timeoutNs);
        return v;
      } finally {
        self.leaveDeviceTime();
        if (v !== null) self.taken(v);
      }
    };
    const poll = irq.poll;
    irq.poll = function () {
      const v = poll.call(irq);
      if (v !== null) self.taken(v);
      return v;
    };
    p.spin = function (ns: number) {
      self.enterDeviceTime();
      try {
        spin.call(p, ns);
      } finally {
        self.leaveDeviceTime();
      }
    };
    this.undo.push(() => {
      irq.poll = poll;
      irq.wait = wait;
      p.spin = spin;
    });
  }

  /**
   * Run `fn` as device time, as irq.wait and spin do: for a caller that runs the machine's
   * scheduler itself (the REPL's single step), so that what the device writes is judged as the
   * device's doing.
   */
  deviceTime<T>(fn: () => T): T {
    this.enterDeviceTime();
    try {
      return fn();
    } finally {
      this.leaveDeviceTime();
    }
  }

  /** Stop watching (restores the wrapped platform calls). Judges notifications still owed. */
  detach(): void {
    if (!this.active) return;
    this.finish();
    this.active = false;
    for (const u of this.undo.reverse()) u();
  }

  /** Judge what can only be judged at the end (notifications owed by devices). */
  finish(): void {
    for (const d of this.devs.values()) for (const r of d.rings.values()) if (!r.broken) this.guard(r, () => this.judgeOwed(d, r, true));
  }

  bySide(side: 'driver' | 'device'): Violation[] {
    return this.violations.filter((v) => v.side === side);
  }

  /** Violations citing any of `statements` (all when omitted). */
  of(statements?: readonly string[]): Violation[] {
    return statements ? this.violations.filter((v) => statements.includes(v.statement)) : this.violations;
  }

  /** Throw a CheckFailure listing the violations (of `side`, citing `statements`) if there are any. */
  assertClean(opts: { side?: 'driver' | 'device'; statements?: readonly string[] } = {}): void {
    const vs = this.of(opts.statements).filter((v) => !opts.side || v.side === opts.side);
    if (vs.length === 0) return;
    const first = vs[0]!;
    throw new CheckFailure(`monitor: ${vs.length} violation(s); first (${first.side} side): ${first.message}`, {
      statements: [...new Set(vs.map((v) => v.statement))],
      ...(first.expected !== undefined ? { expected: first.expected } : {}),
      ...(first.seen !== undefined ? { seen: first.seen } : {}),
    });
  }

  private violate(d: DevState | undefined, statement: string, side: 'driver' | 'device', message: string, expected?: string, seen?: string): void {
    if (this.ignore.has(statement)) return;
    this.count++;
    if (this.violations.length >= this.max) return;
    this.violations.push({ statement, side, device: d?.pd.name ?? '?', message, ...(expected !== undefined ? { expected } : {}), ...(seen !== undefined ? { seen } : {}), at: this.machine.scheduler.now });
  }

  private peek(d: DevState, off: number): number {
    this.muted = true;
    try {
      return this.machine.bus.mmio.read(d.pd.base + off, 4);
    } finally {
      this.muted = false;
    }
  }

  private dev(addr: number): DevState | undefined {
    for (const [base, d] of this.devs) if (addr >= base && addr < base + d.pd.size) return d;
    for (const pd of this.machine.platform.devices()) {
      if (pd.kind === 'virtio-mmio' && addr >= pd.base && addr < pd.base + pd.size) {
        const d: DevState = {
          pd,
          readMagic: false,
          readVersion: false,
          readDeviceId: false,
          deviceId: undefined,
          version: undefined,
          status: 0,
          sawReset: false,
          failedSet: false,
          featuresRefused: false,
          featuresOkWritten: false,
          driverOk: false,
          devFeatSelWritten: false,
          drvFeatSelWritten: false,
          devFeatSel: 0,
          drvFeatSel: 0,
          offered: new Map(),
          accepted: new Map(),
          queueSel: 0,
          queues: new Map(),
          rings: new Map(),
          negotiated: { indirect: false, eventIdx: false, packed: false },
          unacked: 0,
          irqsTotal: 0,
          irqsAtEnter: 0,
          irqsHandled: 0,
          irqsTaken: 0,
        };
        this.devs.set(pd.base, d);
        return d;
      }
    }
    return undefined;
  }

  private queue(d: DevState, i: number): QueueRegs {
    let q = d.queues.get(i);
    if (!q) d.queues.set(i, (q = { size: 0, desc: 0, driver: 0, device: 0, ready: false }));
    return q;
  }

  // ------------------------------------------------------------------ registers

  private onAccess(a: BusAccess): void {
    if (this.muted || !this.active || a.space !== 'mmio') return;
    const d = this.dev(a.addr);
    if (!d) return;
    this.stats.accesses++;
    const off = a.addr - d.pd.base;
    try {
      if (off >= Mmio.CONFIG) this.onConfig(d, a, off - Mmio.CONFIG);
      else this.onRegister(d, a, off);
    } catch (e) {
      // the monitor must never break the run it watches
      this.violate(d, 'mmio.driver.1', 'driver', `monitor could not decode an access at ${off.toString(16)}: ${(e as Error).message}`);
    }
  }

  private onConfig(d: DevState, a: BusAccess, off: number): void {
    const limit = d.deviceId !== undefined ? CONFIG_SIZE[d.deviceId] : undefined;
    if (limit !== undefined && off + a.size > limit) this.violate(d, 'mmio.driver.1', 'driver', `config ${a.kind} at offset ${off} beyond the ${limit} bytes the device type defines`, `< ${limit}`, `${off}+${a.size}`);
    // virtio-blk writeback (config offset 32) is meaningful only once FEATURES_OK is set
    if (a.kind === 'read' && d.deviceId === DeviceType.BLOCK && off <= 32 && off + a.size > 32 && !d.featuresOkWritten && d.version !== 1) {
      this.violate(d, 'blk.driver.4', 'driver', 'driver read the writeback config field before FEATURES_OK', 'FEATURES_OK first', statusNames(d.status));
    }
    if (a.size === 8 || off % a.size !== 0) this.violate(d, 'mmio.driver.5', 'driver', `config space ${a.kind} of ${a.size} bytes at offset ${off}`, 'aligned 1-, 2- or 4-byte accesses', `${a.size} bytes at +${off}`);
    if (a.kind === 'write' && d.version !== 1 && (d.status & Status.DRIVER) && !(d.status & Status.FEATURES_OK) && !d.featuresOkWritten) {
      this.violate(d, 'status_init.driver.8', 'driver', 'driver wrote device config during feature negotiation', 'no config writes before FEATURES_OK', `write at +${off} with status ${statusNames(d.status)}`);
    }
  }

  private onRegister(d: DevState, a: BusAccess, off: number): void {
    const v = a.value >>> 0;
    if (a.size !== 4 || off % 4 !== 0) {
      this.violate(d, 'mmio.driver.4', 'driver', `control register ${a.kind} of ${a.size} bytes at 0x${off.toString(16)}`, 'aligned 32-bit accesses', `${a.size} bytes at 0x${off.toString(16)}`);
      return;
    }
    const legacy = d.version === 1;
    const acc = REG_ACCESS.get(off);
    if (acc === undefined && !(legacy && LEGACY_ONLY.has(off))) {
      this.violate(d, 'mmio.driver.1', 'driver', `${a.kind} of undefined register offset 0x${off.toString(16)}`);
      return;
    }
    if (acc === 'R' && a.kind === 'write') this.violate(d, 'mmio.driver.2', 'driver', `write to read-only register 0x${off.toString(16)}`, 'no write', `0x${v.toString(16)}`);
    if (acc === 'W' && a.kind === 'read') this.violate(d, 'mmio.driver.3', 'driver', `read of write-only register 0x${off.toString(16)}`);
    if (SHM_REGS.has(off)) this.violate(d, 'mmio.driver.28', 'driver', `access to shared memory register 0x${off.toString(16)} on a device without shared memory`);
    if (d.deviceId === 0 && off !== Mmio.DEVICE_ID && off !== Mmio.MAGIC_VALUE && off !== Mmio.VERSION) {
      this.violate(d, 'mmio.driver.27', 'driver', `access to register 0x${off.toString(16)} of a device whose DeviceID is 0`);
    }
    if (a.kind === 'write' && !(d.readMagic && d.readVersion)) {
      this.violate(d, 'mmio.driver.24', 'driver', `write to 0x${off.toString(16)} before reading and checking MagicValue and Version`);
      d.readMagic = d.readVersion = true; // report once
    } else if (a.kind === 'write' && !d.readDeviceId) {
      this.violate(d, 'mmio.driver.25', 'driver', `write to 0x${off.toString(16)} before reading DeviceID`);
      d.readDeviceId = true;
    }
    if (a.kind === 'read') this.onRead(d, off, v);
    else this.onWrite(d, off, v);
  }

  private onRead(d: DevState, off: number, v: number): void {
    switch (off) {
      case Mmio.MAGIC_VALUE:
        d.readMagic = true;
        if (v !== Mmio.MAGIC) this.violate(d, 'mmio.device.1', 'device', 'MagicValue is wrong', '0x74726976', `0x${v.toString(16)}`);
        break;
      case Mmio.VERSION:
        d.readVersion = true;
        d.version = v;
        if (v !== 2 && v !== 1) this.violate(d, 'mmio.device.2', 'device', 'Version is neither 2 nor legacy 1', '0x2', `0x${v.toString(16)}`);
        break;
      case Mmio.DEVICE_ID:
        d.readDeviceId = true;
        d.deviceId = v;
        break;
      case Mmio.DEVICE_FEATURES:
        if (!d.devFeatSelWritten) {
          this.violate(d, 'mmio.driver.12', 'driver', 'DeviceFeatures read before DeviceFeaturesSel was written');
          d.devFeatSelWritten = true;
        }
        d.offered.set(d.devFeatSel, v);
        if (d.devFeatSel === 1 && d.version === 2 && !(v & 1)) this.violate(d, 'features.device.6', 'device', 'device does not offer VIRTIO_F_VERSION_1', 'bit 32 set', `word 1 = 0x${v.toString(16)}`);
        break;
      case Mmio.STATUS: {
        const prevWritten = d.featuresOkWritten;
        if (prevWritten && !(v & Status.FEATURES_OK) && !(d.status & Status.DRIVER_OK) && v !== 0) d.featuresRefused = true;
        if (prevWritten && (v & Status.FEATURES_OK) && this.offeredViolation(d) !== undefined) {
          this.violate(d, 'features.device.3', 'device', 'device kept FEATURES_OK although the driver accepted features it did not offer', 'FEATURES_OK clear', statusNames(v));
        }
        if (v !== 0 || d.sawReset) d.status = v & DRIVER_BITS;
        break;
      }
      case Mmio.INTERRUPT_STATUS:
        d.unacked |= v & 3;
        d.irqsHandled = d.irqsTotal;
        break;
    }
  }

  /** The first accepted feature word that has bits the device did not offer, described; or undefined. */
  private offeredViolation(d: DevState): string | undefined {
    for (const [sel, word] of d.accepted) {
      const off = d.offered.get(sel);
      if (off === undefined) continue;
      const extra = (word & ~off) >>> 0;
      if (extra) return `word ${sel}: accepted 0x${word.toString(16)}, offered 0x${off.toString(16)}`;
    }
    return undefined;
  }

  private acceptedHas(d: DevState, bitNo: number): boolean {
    return ((d.accepted.get(bitNo >> 5) ?? 0) & (1 << (bitNo & 31))) !== 0;
  }

  private onWrite(d: DevState, off: number, v: number): void {
    switch (off) {
      case Mmio.DEVICE_FEATURES_SEL:
        d.devFeatSelWritten = true;
        d.devFeatSel = v;
        break;
      case Mmio.DRIVER_FEATURES_SEL:
        d.drvFeatSelWritten = true;
        d.drvFeatSel = v;
        break;
      case Mmio.DRIVER_FEATURES:
        if (!d.drvFeatSelWritten) {
          this.violate(d, 'mmio.driver.13', 'driver', 'DriverFeatures written before DriverFeaturesSel');
          d.drvFeatSelWritten = true;
        }
        if (d.featuresOkWritten && !d.featuresRefused) this.violate(d, 'status_init.driver.9', 'driver', 'driver wrote DriverFeatures after setting FEATURES_OK', 'no feature writes after FEATURES_OK', `word ${d.drvFeatSel} = 0x${v.toString(16)}`);
        d.accepted.set(d.drvFeatSel, v);
        break;
      case Mmio.STATUS:
        this.onStatusWrite(d, v & 0xff);
        break;
      case Mmio.QUEUE_SEL:
        d.queueSel = v;
        break;
      case Mmio.QUEUE_NUM: {
        const q = this.queue(d, d.queueSel);
        if (q.ready) this.violate(d, 'mmio.driver.15', 'driver', `QueueSize of queue ${d.queueSel} written while QueueReady is 1`);
        const max = this.peek(d, Mmio.QUEUE_NUM_MAX);
        if (v > max) this.violate(d, 'mmio.driver.14', 'driver', `QueueSize above QueueSizeMax for queue ${d.queueSel}`, `<= ${max}`, String(v));
        if (!q.ready) q.size = v;
        break;
      }
      case Mmio.QUEUE_DESC_LOW:
      case Mmio.QUEUE_DESC_HIGH:
      case Mmio.QUEUE_DRIVER_LOW:
      case Mmio.QUEUE_DRIVER_HIGH:
      case Mmio.QUEUE_DEVICE_LOW:
      case Mmio.QUEUE_DEVICE_HIGH: {
        const q = this.queue(d, d.queueSel);
        if (q.ready) {
          this.violate(d, 'mmio.driver.15', 'driver', `queue ${d.queueSel} address register 0x${off.toString(16)} written while QueueReady is 1`);
          break;
        }
        const key = off < Mmio.QUEUE_DRIVER_LOW ? 'desc' : off < Mmio.QUEUE_DEVICE_LOW ? 'driver' : 'device';
        const high = (off & 4) !== 0;
        const lo = q[key] % 0x1_0000_0000;
        const hi = Math.floor(q[key] / 0x1_0000_0000);
        q[key] = high ? lo + v * 0x1_0000_0000 : hi * 0x1_0000_0000 + v;
        break;
      }
      case Mmio.QUEUE_READY: {
        const q = this.queue(d, d.queueSel);
        const ready = (v & 1) === 1;
        if (ready && !q.ready) this.queueEnabled(d, d.queueSel, q);
        if (!ready) d.rings.delete(d.queueSel);
        q.ready = ready;
        break;
      }
      case Mmio.QUEUE_NOTIFY: {
        const idx = v & 0xffff;
        if (!d.driverOk) this.violate(d, 'status_init.driver.12', 'driver', `notification for queue ${idx} before DRIVER_OK`, 'DRIVER_OK set', statusNames(d.status));
        const r = d.rings.get(idx);
        if (r && this.ringsOn && !r.broken) {
          this.guard(r, () => {
            this.scanUsed(d, r, 'driver');
            this.syncAvail(d, r);
            r.notifiedAvail = r.lastAvail;
          });
        }
        break;
      }
      case Mmio.INTERRUPT_ACK:
        if (v & ~3) this.violate(d, 'mmio.driver.20', 'driver', 'InterruptACK with undefined bits', 'bits 0..1 only', `0x${v.toString(16)}`);
        d.unacked &= ~v;
        break;
    }
  }

  private onStatusWrite(d: DevState, v: number): void {
    if (v === 0) {
      d.sawReset = true;
      d.status = 0;
      d.failedSet = false;
      d.featuresRefused = false;
      d.featuresOkWritten = false;
      d.driverOk = false;
      d.accepted.clear();
      d.unacked = 0;
      d.rings.clear();
      for (const q of d.queues.values()) q.ready = false;
      d.devFeatSelWritten = d.drvFeatSelWritten = false;
      // mmio.device.5 / status_init.device.4: reset clears InterruptStatus (when the reset has completed)
      const st = this.peek(d, Mmio.STATUS);
      if (st === 0) {
        const is = this.peek(d, Mmio.INTERRUPT_STATUS);
        if (is !== 0) this.violate(d, 'mmio.device.5', 'device', 'InterruptStatus not cleared by reset', '0', `0x${is.toString(16)}`);
      }
      return;
    }
    const prev = d.status;
    if (!d.sawReset) {
      this.violate(d, 'status_init.driver.6', 'driver', 'driver began initialization without resetting the device first', 'status 0 written first', statusNames(v));
      d.sawReset = true;
    }
    if (prev & ~v & DRIVER_BITS) this.violate(d, 'status_init.driver.2', 'driver', 'driver cleared device status bits', `a superset of ${statusNames(prev)}`, statusNames(v));
    if (d.failedSet && v & ~Status.FAILED & ~prev) this.violate(d, 'status_init.driver.3', 'driver', 'driver went on initializing after setting FAILED without a reset', 'reset (status 0) first', statusNames(v));
    const added = v & ~prev;
    if (added & Status.DRIVER && !(v & Status.ACKNOWLEDGE)) this.violate(d, 'status_init.driver.6', 'driver', 'DRIVER set without ACKNOWLEDGE', 'ACKNOWLEDGE before DRIVER', statusNames(v));
    if (added & Status.FEATURES_OK && d.version !== 1) {
      if (!(v & Status.DRIVER)) this.violate(d, 'status_init.driver.6', 'driver', 'FEATURES_OK set without DRIVER', 'ACKNOWLEDGE, DRIVER, then FEATURES_OK', statusNames(v));
      const bad = this.offeredViolation(d);
      if (bad) this.violate(d, 'features.driver.1', 'driver', 'driver accepted features the device did not offer', 'a subset of the offered features', bad);
      const vOffered = ((d.offered.get(1) ?? 0) & 1) !== 0;
      if (vOffered && !this.acceptedHas(d, F.VERSION_1)) this.violate(d, 'features.driver.9', 'driver', 'driver did not accept VIRTIO_F_VERSION_1 although offered', 'bit 32 accepted', `word 1 = 0x${(d.accepted.get(1) ?? 0).toString(16)}`);
      if (d.deviceId !== undefined) {
        const defined = definedBits(d.deviceId);
        for (const [sel, word] of d.accepted) {
          for (let b = 0; b < 32; b++) {
            if (word & (1 << b) && !defined.has(sel * 32 + b)) {
              this.violate(d, 'features.driver.5', 'driver', `driver accepted feature bit ${sel * 32 + b}, which the spec does not define for device type ${d.deviceId}`);
            }
          }
        }
      }
      if (this.acceptedHas(d, F.SR_IOV)) this.violate(d, 'features.driver.18', 'driver', 'driver accepted VIRTIO_F_SR_IOV on a virtio-mmio device (no PCI SR-IOV capability)');
      d.featuresOkWritten = true;
      d.negotiated = { indirect: this.acceptedHas(d, F.INDIRECT_DESC), eventIdx: this.acceptedHas(d, F.EVENT_IDX), packed: this.acceptedHas(d, F.RING_PACKED) };
    }
    if (added & Status.DRIVER_OK) {
      if (d.version !== 1 && !(v & Status.FEATURES_OK)) this.violate(d, 'status_init.driver.6', 'driver', 'DRIVER_OK set without FEATURES_OK', 'FEATURES_OK before DRIVER_OK', statusNames(v));
      if (d.featuresRefused) this.violate(d, 'status_init.driver.11', 'driver', 'driver set DRIVER_OK after the device refused FEATURES_OK', 'FAILED or a reset', statusNames(v));
      if (d.failedSet) this.violate(d, 'status_init.driver.11', 'driver', 'driver set DRIVER_OK after setting FAILED', 'a reset first', statusNames(v));
      d.driverOk = true;
      if (d.version === 1) d.negotiated = { indirect: this.acceptedHas(d, F.INDIRECT_DESC), eventIdx: this.acceptedHas(d, F.EVENT_IDX), packed: false };
    }
    if (v & Status.FAILED) d.failedSet = true;
    d.status = v & DRIVER_BITS;
  }

  private queueEnabled(d: DevState, index: number, q: QueueRegs): void {
    if (d.version !== 1 && !d.negotiated.packed) {
      if (q.desc % Split.DESC_ALIGN || q.driver % Split.AVAIL_ALIGN || q.device % Split.USED_ALIGN) {
        this.violate(d, 'split.driver.1', 'driver', `queue ${index} ring areas misaligned`, 'desc 16, avail 2, used 4 byte aligned', `desc 0x${q.desc.toString(16)} avail 0x${q.driver.toString(16)} used 0x${q.device.toString(16)}`);
      }
    }
    if (!this.ringsOn || d.negotiated.packed || d.version === 1 || q.size === 0) return;
    const mem = this.machine.mem;
    if (!mem.isRam(q.desc, 16 * q.size) || !mem.isRam(q.driver, 6 + 2 * q.size) || !mem.isRam(q.device, 6 + 8 * q.size)) return;
    try {
      const usedFlags = mem.read16(q.device);
      if (usedFlags !== 0) this.violate(d, 'split.driver.19', 'driver', `queue ${index}: used ring flags not 0 when the queue was enabled`, '0', String(usedFlags));
      const lastAvail = mem.read16(q.driver + 2);
      d.rings.set(index, { index, size: q.size, desc: q.desc, avail: q.driver, used: q.device, lastAvail, lastUsed: mem.read16(q.device + 2), notifiedAvail: lastAvail, inflight: new Map(), inflightCount: 0, owed: null, broken: false });
    } catch {
      /* not monitorable */
    }
  }

  // ------------------------------------------------------------------ interrupts and device time

  private onIrq(vector: number): void {
    if (!this.active) return;
    for (const d of this.devs.values()) {
      if (d.pd.vector !== vector) continue;
      d.irqsTotal++;
      this.stats.irqs++;
      const is = this.peek(d, Mmio.INTERRUPT_STATUS);
      if (is & Mmio.INT_VRING && !d.driverOk) {
        const st = this.peek(d, Mmio.STATUS);
        if (!(st & Status.DRIVER_OK)) this.violate(d, st === 0 && d.sawReset ? 'status_init.device.5' : 'status_init.device.1', 'device', 'used buffer notification while DRIVER_OK is not set', 'DRIVER_OK first', statusNames(st));
      }
    }
  }

  /** Ring monitoring must never break the run it watches: a ring it cannot read is dropped. */
  private guard(r: RingState, fn: () => void): void {
    try {
      fn();
    } catch {
      r.broken = true;
    }
  }

  private taken(vector: number): void {
    if (!this.active) return;
    for (const d of this.devs.values()) if (d.pd.vector === vector) d.irqsTaken = d.irqsTotal;
  }

  /** Entering a wait/spin: what changed since the last one was the driver's doing. */
  private enterDeviceTime(): void {
    if (!this.active) return;
    for (const d of this.devs.values()) {
      if (d.irqsTaken > d.irqsHandled && d.driverOk) {
        this.violate(d, 'mmio.driver.30', 'driver', 'driver took an interrupt of the device and did not read InterruptStatus before waiting again');
        d.irqsHandled = d.irqsTaken;
      }
      if (d.unacked) {
        this.violate(d, 'mmio.driver.32', 'driver', 'driver waits again without acknowledging the interrupt causes it read', 'InterruptACK of the handled bits', `unacknowledged 0x${d.unacked.toString(16)}`);
        d.unacked = 0;
      }
      if (!this.ringsOn) continue;
      for (const r of d.rings.values()) {
        if (r.broken) continue;
        this.guard(r, () => {
          this.checkSnapshots(d, r, 'driver');
          this.scanUsed(d, r, 'driver');
          this.syncAvail(d, r);
          this.judgeNotifyOwed(d, r);
        });
      }
      d.irqsAtEnter = d.irqsTotal;
    }
  }

  /** Leaving a wait/spin: what changed during it was the device's doing. */
  private leaveDeviceTime(): void {
    if (!this.active || !this.ringsOn) return;
    for (const d of this.devs.values()) {
      for (const r of d.rings.values()) {
        if (r.broken) continue;
        this.guard(r, () => {
          this.checkSnapshots(d, r, 'device');
          this.scanUsed(d, r, 'device');
          this.judgeOwed(d, r, false);
        });
      }
    }
  }

  // ------------------------------------------------------------------ rings

  /** The driver must notify about buffers it made available unless the device suppressed it. */
  private judgeNotifyOwed(d: DevState, r: RingState): void {
    if (r.lastAvail === r.notifiedAvail || !d.driverOk) return;
    const mem = this.machine.mem;
    if (d.negotiated.eventIdx) {
      const availEvent = mem.read16(r.used + 4 + 8 * r.size);
      if (needEvent(availEvent, r.lastAvail, r.notifiedAvail)) this.violate(d, 'split.driver.24', 'driver', `queue ${r.index}: avail idx passed avail_event and the driver did not notify`, `a notification (avail_event ${availEvent})`, `avail idx ${r.notifiedAvail} -> ${r.lastAvail}, no notification`);
    } else if (!(mem.read16(r.used) & Split.USED_F_NO_NOTIFY)) {
      this.violate(d, 'split.driver.22', 'driver', `queue ${r.index}: buffers made available without a notification while used flags is 0`, 'a notification', `avail idx ${r.notifiedAvail} -> ${r.lastAvail}`);
    }
    r.notifiedAvail = r.lastAvail;
  }

  private syncAvail(d: DevState, r: RingState): void {
    const mem = this.machine.mem;
    const idx = mem.read16(r.avail + 2);
    const flags = mem.read16(r.avail);
    if (d.negotiated.eventIdx ? flags !== 0 : flags > 1) {
      this.violate(d, d.negotiated.eventIdx ? 'split.driver.14' : 'split.driver.12', 'driver', `queue ${r.index}: available ring flags ${flags}`, d.negotiated.eventIdx ? '0' : '0 or 1', String(flags));
    }
    const n = (idx - r.lastAvail) & 0xffff;
    if (n === 0) return;
    if (n > 0x8000) {
      this.violate(d, 'split.driver.11', 'driver', `queue ${r.index}: available idx went backwards`, `>= ${r.lastAvail}`, String(idx));
      r.lastAvail = idx;
      r.notifiedAvail = idx;
      return;
    }
    for (let k = 0; k < n && k < r.size; k++) {
      const head = mem.read16(r.avail + 4 + 2 * ((r.lastAvail + k) % r.size));
      const f = this.walk(d, r, head);
      if (f) {
        this.stats.chains++;
        const l = r.inflight.get(head);
        if (l) l.push(f);
        else r.inflight.set(head, [f]);
        r.inflightCount++;
      }
    }
    r.lastAvail = idx;
  }

  /** Walk and judge a chain just made available; returns its in-flight record (null if unusable). */
  private walk(d: DevState, r: RingState, head: number): InFlight | null {
    const mem = this.machine.mem;
    if (head >= r.size) {
      this.violate(d, 'split.driver.8', 'driver', `queue ${r.index}: head index ${head} outside the descriptor table`, `< ${r.size}`, String(head));
      return null;
    }
    const descs: InFlight['descs'] = [];
    const rsegs: { addr: number; len: number }[] = [];
    const wsegs: { addr: number; len: number }[] = [];
    const readable: InFlight['readable'] = [];
    let writable = 0;
    let total = 0;
    let sawWritable = false;
    const visit = (table: number, count: number, first: number, indirect: boolean): boolean => {
      const seen = new Set<number>();
      let i = first;
      for (let steps = 0; ; steps++) {
        if (steps >= count) {
          this.violate(d, indirect ? 'split.driver.8' : 'split.driver.4', 'driver', `queue ${r.index}: chain from head ${head} ${indirect ? 'in an indirect table ' : ''}loops or is longer than ${count} descriptors`);
          return false;
        }
        if (seen.has(i)) {
          this.violate(d, 'split.driver.4', 'driver', `queue ${r.index}: chain from head ${head} loops at descriptor ${i}`);
          return false;
        }
        seen.add(i);
        const gpa = table + 16 * i;
        if (!mem.isRam(gpa, 16)) return false;
        descs.push({ gpa, bytes: mem.readBytes(gpa, 16) });
        const addr = u64(mem, gpa);
        const len = mem.read32(gpa + 8);
        const flags = mem.read16(gpa + 12);
        const next = mem.read16(gpa + 14);
        if (flags & Split.DESC_F_INDIRECT) {
          if (indirect) {
            this.violate(d, 'split.driver.7', 'driver', `queue ${r.index}: indirect descriptor inside an indirect table (head ${head})`);
            return false;
          }
          if (!d.negotiated.indirect) this.violate(d, 'split.driver.6', 'driver', `queue ${r.index}: INDIRECT descriptor without VIRTIO_F_INDIRECT_DESC (head ${head})`);
          if (flags & Split.DESC_F_NEXT) this.violate(d, 'split.driver.9', 'driver', `queue ${r.index}: descriptor with both INDIRECT and NEXT (head ${head})`);
          const n = Math.floor(len / 16);
          if (n === 0 || !mem.isRam(addr, len)) return false;
          if (n > r.size) this.violate(d, 'split.driver.8', 'driver', `queue ${r.index}: indirect table of ${n} descriptors, queue size ${r.size}`);
          return visit(addr, Math.min(n, r.size), 0, true);
        }
        total += len;
        if (len > 0 && !mem.isRam(addr, len)) this.violate(d, 'features.driver.13', 'driver', `queue ${r.index}: descriptor ${i} of chain ${head} points outside guest RAM (no VIRTIO_F_ACCESS_PLATFORM)`, 'a guest-physical RAM address', `0x${addr.toString(16)}+${len}`);
        if (flags & Split.DESC_F_WRITE) wsegs.push({ addr, len });
        else rsegs.push({ addr, len });
        if (flags & Split.DESC_F_WRITE) {
          sawWritable = true;
          writable += len;
        } else {
          if (sawWritable) this.violate(d, 'split.driver.2', 'driver', `queue ${r.index}: device-readable descriptor after a device-writable one (head ${head})`);
          if (len > 0 && mem.isRam(addr, Math.min(len, this.snapBytes))) readable.push({ gpa: addr, bytes: mem.readBytes(addr, Math.min(len, this.snapBytes)) });
        }
        if (!(flags & Split.DESC_F_NEXT)) return true;
        if (next >= count) {
          this.violate(d, 'split.driver.8', 'driver', `queue ${r.index}: next index ${next} outside the table (head ${head})`);
          return false;
        }
        i = next;
      }
    };
    const ok = visit(r.desc, r.size, head, false);
    if (total > 0xffff_ffff) this.violate(d, 'split.driver.4', 'driver', `queue ${r.index}: chain from head ${head} is longer than 2^32 bytes`, '<= 4 GiB', String(total));
    if (ok && this.onChain) {
      const report = (statement: string, message: string, expected?: string, seen?: string) => this.violate(d, statement, 'driver', `queue ${r.index} chain ${head}: ${message}`, expected, seen);
      this.onChain({ device: d.pd, deviceId: d.deviceId, queue: r.index, head, readable: rsegs, writable: wsegs, config32: (o) => this.peek(d, Mmio.CONFIG + o) }, report);
    }
    return ok ? { head, writable, descs, readable } : null;
  }

  private checkSnapshots(d: DevState, r: RingState, side: 'driver' | 'device'): void {
    const mem = this.machine.mem;
    for (const list of r.inflight.values()) {
      for (const f of list) {
        for (const s of f.descs) {
          if (!sameBytes(mem.subarray(s.gpa, s.bytes.length), s.bytes)) {
            if (side === 'driver') this.violate(d, 'status_init.driver.13', 'driver', `queue ${r.index}: driver modified a descriptor of in-flight chain ${f.head}`);
            else this.violate(d, 'split.device.6', 'device', `queue ${r.index}: the descriptor table changed while the device ran (chain ${f.head})`);
            s.bytes.set(mem.subarray(s.gpa, s.bytes.length));
          }
        }
        for (const s of f.readable) {
          if (!sameBytes(mem.subarray(s.gpa, s.bytes.length), s.bytes)) {
            if (side === 'device') this.violate(d, 'split.device.3', 'device', `queue ${r.index}: a device-readable buffer of chain ${f.head} changed while the device ran`, 'unchanged', `buffer at 0x${s.gpa.toString(16)}`);
            else this.violate(d, 'status_init.driver.13', 'driver', `queue ${r.index}: driver modified a device-readable buffer of in-flight chain ${f.head}`);
            s.bytes.set(mem.subarray(s.gpa, s.bytes.length));
          }
        }
      }
    }
  }

  private scanUsed(d: DevState, r: RingState, when: 'driver' | 'device'): void {
    const mem = this.machine.mem;
    const flags = mem.read16(r.used);
    if (d.negotiated.eventIdx ? flags !== 0 : flags > 1) this.violate(d, d.negotiated.eventIdx ? 'split.device.20' : 'split.device.18', 'device', `queue ${r.index}: used ring flags ${flags}`, d.negotiated.eventIdx ? '0' : '0 or 1', String(flags));
    const idx = mem.read16(r.used + 2);
    const n = (idx - r.lastUsed) & 0xffff;
    if (n === 0) return;
    if (!d.driverOk) this.violate(d, 'status_init.device.1', 'device', `queue ${r.index}: used entries added before DRIVER_OK`);
    if (n > r.inflightCount) {
      this.violate(d, 'split.device.16', 'device', `queue ${r.index}: used idx moved by ${n} with ${r.inflightCount} buffers in flight`, `<= ${r.inflightCount}`, String(n));
      r.lastUsed = idx;
      r.broken = true;
      return;
    }
    const from = r.lastUsed;
    for (let k = 0; k < n; k++) {
      const e = r.used + 4 + 8 * ((r.lastUsed + k) % r.size);
      const id = mem.read32(e);
      const len = mem.read32(e + 4);
      const l = r.inflight.get(id);
      const f = l?.shift();
      if (!f) {
        this.violate(d, 'split.device.16', 'device', `queue ${r.index}: used id ${id} is not a buffer in flight`, 'the head of an available chain', String(id));
        continue;
      }
      this.stats.used++;
      if (l!.length === 0) r.inflight.delete(id);
      r.inflightCount--;
      if (len > f.writable) this.violate(d, 'split.device.16', 'device', `queue ${r.index}: used len ${len} exceeds the ${f.writable} writable bytes of chain ${id}`, `<= ${f.writable}`, String(len));
    }
    r.lastUsed = idx;
    if (when === 'device' && !r.owed) {
      const availFlags = mem.read16(r.avail);
      const usedEvent = mem.read16(r.avail + 4 + 2 * r.size);
      r.owed = { from, to: idx, usedEvent, flags: availFlags, irqsAt: d.irqsAtEnter };
    } else if (r.owed) r.owed.to = idx;
  }

  /** A device that added used entries must notify unless the driver suppressed it. */
  private judgeOwed(d: DevState, r: RingState, final: boolean): void {
    const o = r.owed;
    if (!o) return;
    if (d.irqsTotal > o.irqsAt || this.peek(d, Mmio.INTERRUPT_STATUS) & Mmio.INT_VRING) {
      r.owed = null;
      return;
    }
    const must = d.negotiated.eventIdx ? needEvent(o.usedEvent, o.to, o.from) : (o.flags & Split.AVAIL_F_NO_INTERRUPT) === 0;
    if (!must) {
      r.owed = null;
      return;
    }
    if (final || this.machine.scheduler.pending === 0) {
      this.violate(d, d.negotiated.eventIdx ? 'split.device.13' : 'split.device.11', 'device', `queue ${r.index}: used entries ${o.from}..${o.to} added without a used buffer notification`, 'a notification', 'none');
      r.owed = null;
    }
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Attach a monitor to a machine (call before the driver starts). */
export function attachMonitor(machine: Machine, opts?: MonitorOptions): Monitor {
  return new Monitor(machine, opts);
}
