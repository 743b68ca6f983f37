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
 * Packed rings are followed the same way, with the monitor's own copies of both sides' positions
 * and wrap counters (a descriptor is available when AVAIL = the driver's wrap and USED differs; used
 * when both equal the device's wrap).
 */
import type { Machine } from '../device-models/machine/machine.ts';
import type { AccessSize, BusAccess } from '../device-models/machine/bus.ts';
import { PciCfg } from '../device-models/machine/pci.ts';
import { COMMON_FIELD_WIDTH, Common, Legacy, MODERN_DEVICE_ID_BASE, PciCap, VIRTIO_MSI_NO_VECTOR, VIRTIO_PCI_VENDOR_ID } from '../spec-refs/abi/virtio-pci.ts';
import type { PlatformDevice } from '../spec-refs/platform/platform.ts';
import { BlkF, F, Mmio, NetF, Packed, Split, Status, DeviceType, statusNames } from '../spec-refs/abi/virtio.ts';
import { NetCtrl, NetFx } from '../spec-refs/abi/net.ts';
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
  /** The virtio-mmio device (undefined for a virtio-pci function). */
  readonly device: PlatformDevice | undefined;
  readonly deviceName: string;
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
  // virtio-net bits above 63 (UDP-tunnel GSO, RSS_CONTEXT, OUT_NET_HEADER, IPSEC) live in spec-refs/abi/net.ts.
  if (deviceType === DeviceType.NET) for (const b of Object.values(NetFx)) s.add(b);
  // blk: bits 0 (BARRIER), 7 (SCSI) are legacy-only and not in BlkF; they are not defined for 1.x either.
  return s;
}

interface InFlight {
  readonly head: number;
  /** Order in which the chain was made available (IN_ORDER batches retire every older chain). */
  seq: number;
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

/** A packed ring as the monitor follows it: its own copies of the driver's and the device's positions and wrap counters. */
interface PackedState {
  readonly index: number;
  readonly size: number;
  readonly desc: number;
  availPos: number;
  availWrap: boolean;
  usedPos: number;
  usedWrap: boolean;
  /** Buffers made available and not yet used, oldest first (n: ring slots the list took). */
  readonly inflight: { id: number; n: number; writable: number; readable: InFlight['readable']; seq: number }[];
  seq: number;
  broken: boolean;
}

interface QueueRegs {
  size: number;
  /** Legacy virtio-mmio QueueAlign. */
  align: number;
  desc: number;
  driver: number;
  device: number;
  ready: boolean;
}

/** Where a virtio-pci function keeps its structures (read from its capability list). */
interface PciLayout {
  readonly dev: number;
  readonly fn: number;
  /** ECAM address of the function's configuration space. */
  readonly cfg: number;
  readonly common?: { bar: number; off: number; len: number };
  readonly notify?: { bar: number; off: number; len: number; mult: number };
  readonly isr?: { bar: number; off: number; len: number };
  readonly device?: { bar: number; off: number; len: number };
  /** Offset of the PCI_CFG capability (0: none). */
  readonly pciCfg: number;
  /** Offset of the MSI-X capability (0: none), and where its table sits. */
  readonly msix: number;
  readonly msixBar: number;
  readonly msixOff: number;
  /** The transitional/legacy register block's BAR (0), or -1 for a modern-only function. */
  readonly legacyBar: number;
}

interface DevState {
  /** The virtio-mmio platform device (undefined for virtio-pci functions). */
  readonly pd: PlatformDevice | undefined;
  readonly kind: 'mmio' | 'pci';
  readonly name: string;
  readonly pci?: PciLayout;
  /** Interrupt vectors this device signals on (mmio: its line; pci: INTx and the MSI-X messages the driver programmed). */
  readonly vectors: Set<number>;
  /** virtio-pci: the MSI-X vector the driver gave each queue (0xffff: none). */
  readonly queueVector: Map<number, number>;
  /** virtio-pci: queue_notify_off and queue_notif_config_data as read by the driver. */
  readonly notifyOff: Map<number, number>;
  readonly notifyData: Map<number, number>;
  /** Legacy virtio-mmio GuestPageSize. */
  pageSize: number;
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
  readonly prings: Map<number, PackedState>;
  negotiated: { indirect: boolean; eventIdx: boolean; packed: boolean; notificationData: boolean; notifConfigData: boolean; inOrder: boolean };
  /** InterruptStatus bits read and not yet acknowledged. */
  unacked: number;
  /** Interrupts delivered on this device's vector so far, and the count when the current wait began. */
  irqsTotal: number;
  irqsAtEnter: number;
  /** irqsTotal when the driver last read InterruptStatus. */
  irqsHandled: number;
  /** irqsTotal when the driver last took an interrupt for this device's vector (wait/poll returned it). */
  irqsTaken: number;
  /**
   * virtio-net notification coalescing the driver asked for (NOTF_COAL_TX_SET / RX_SET / VQ_SET
   * commands seen on the control queue): [max_packets, max_usecs] for the transmit and receive
   * groups and per-queue overrides. Back to the group values when a queue is re-enabled
   * (net.device.109 / net.device.110), all cleared by a device reset.
   */
  coal: { tx: readonly [number, number]; rx: readonly [number, number]; readonly vq: Map<number, readonly [number, number]> };
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
  /** virtio-pci functions, by ECAM address of their config space. */
  private readonly pciDevs = new Map<number, DevState>();
  /** BAR windows already resolved to their function and BAR index (key: space:name:base). */
  private readonly winCache = new Map<string, { d: DevState; bar: number } | null>();
  /** Last value written to the 0xCF8 configuration address port. */
  private cf8 = 0;
  private seq = 0;
  private readonly ignore: Set<string>;
  private readonly max: number;
  private readonly ringsOn: boolean;
  private readonly snapBytes: number;
  private readonly onChain: MonitorOptions['onChain'];
  /** What the monitor observed (to show a clean run really watched something). */
  readonly stats = { accesses: 0, chains: 0, used: 0, irqs: 0 };
  /** Every device status value a driver wrote, in order, on any transport (for checks of the init sequence). */
  readonly statusLog: { readonly device: string; readonly value: number }[] = [];
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
    for (const d of this.allDevs()) for (const r of d.rings.values()) if (!r.broken) this.guard(r, () => this.judgeOwed(d, r, true));
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
    this.violations.push({ statement, side, device: d?.name ?? '?', message, ...(expected !== undefined ? { expected } : {}), ...(seen !== undefined ? { seen } : {}), at: this.machine.scheduler.now });
  }

  private peek(d: DevState, off: number): number {
    this.muted = true;
    try {
      return this.machine.bus.mmio.read(d.pd!.base + off, 4);
    } finally {
      this.muted = false;
    }
  }

  private dev(addr: number): DevState | undefined {
    for (const [base, d] of this.devs) if (addr >= base && addr < base + d.pd!.size) return d;
    for (const pd of this.machine.platform.devices()) {
      if (pd.kind === 'virtio-mmio' && addr >= pd.base && addr < pd.base + pd.size) {
        const d: DevState = {
          pd,
          kind: 'mmio',
          name: pd.name,
          vectors: new Set([pd.vector]),
          queueVector: new Map(),
          notifyOff: new Map(),
          notifyData: new Map(),
          pageSize: 4096,
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
          prings: new Map(),
          negotiated: { indirect: false, eventIdx: false, packed: false, notificationData: false, notifConfigData: false, inOrder: false },
          unacked: 0,
          irqsTotal: 0,
          irqsAtEnter: 0,
          irqsHandled: 0,
          irqsTaken: 0,
          coal: { tx: [0, 0], rx: [0, 0], vq: new Map() },
        };
        this.devs.set(pd.base, d);
        return d;
      }
    }
    return undefined;
  }

  private queue(d: DevState, i: number): QueueRegs {
    let q = d.queues.get(i);
    if (!q) d.queues.set(i, (q = { size: 0, align: 4096, desc: 0, driver: 0, device: 0, ready: false }));
    return q;
  }

  // ------------------------------------------------------------------ registers

  private onAccess(a: BusAccess): void {
    if (this.muted || !this.active) return;
    if (a.window.startsWith('virtio-pci:') || a.window === 'pci-ecam' || a.window === 'pci-cf8') {
      try {
        this.onPciAccess(a);
      } catch (e) {
        this.violate(undefined, 'pci.driver.5', 'driver', `monitor could not decode a PCI access at 0x${a.addr.toString(16)}: ${(e as Error).message}`);
      }
      return;
    }
    if (a.space !== 'mmio') return;
    const d = this.dev(a.addr);
    if (!d) return;
    this.stats.accesses++;
    const off = a.addr - d.pd!.base;
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
    if (d.kind === 'mmio' && limit !== undefined && off + a.size > limit) this.violate(d, 'mmio.driver.1', 'driver', `config ${a.kind} at offset ${off} beyond the ${limit} bytes the device type defines`, `< ${limit}`, `${off}+${a.size}`);
    // virtio-blk writeback (config offset 32) is meaningful only once FEATURES_OK is set
    if (a.kind === 'read' && d.deviceId === DeviceType.BLOCK && off <= 32 && off + a.size > 32 && !d.featuresOkWritten && d.version !== 1) {
      this.violate(d, 'blk.driver.4', 'driver', 'driver read the writeback config field before FEATURES_OK', 'FEATURES_OK first', statusNames(d.status));
    }
    if (d.kind === 'mmio' && (a.size === 8 || off % a.size !== 0)) this.violate(d, 'mmio.driver.5', 'driver', `config space ${a.kind} of ${a.size} bytes at offset ${off}`, 'aligned 1-, 2- or 4-byte accesses', `${a.size} bytes at +${off}`);
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
        if (d.kind === 'mmio' && !d.devFeatSelWritten) {
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

  private negotiatedOf(d: DevState, legacy: boolean): DevState['negotiated'] {
    return {
      indirect: this.acceptedHas(d, F.INDIRECT_DESC),
      eventIdx: this.acceptedHas(d, F.EVENT_IDX),
      packed: !legacy && this.acceptedHas(d, F.RING_PACKED),
      notificationData: !legacy && this.acceptedHas(d, F.NOTIFICATION_DATA),
      notifConfigData: !legacy && this.acceptedHas(d, F.NOTIF_CONFIG_DATA),
      inOrder: !legacy && this.acceptedHas(d, F.IN_ORDER),
    };
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
        if (d.kind === 'mmio' && !d.drvFeatSelWritten) {
          this.violate(d, 'mmio.driver.13', 'driver', 'DriverFeatures written before DriverFeaturesSel');
          d.drvFeatSelWritten = true;
        }
        if (d.featuresOkWritten && !d.featuresRefused) this.violate(d, 'status_init.driver.9', 'driver', 'driver wrote DriverFeatures after setting FEATURES_OK', 'no feature writes after FEATURES_OK', `word ${d.drvFeatSel} = 0x${v.toString(16)}`);
        d.accepted.set(d.drvFeatSel, v);
        if (d.version === 1) d.negotiated = this.negotiatedOf(d, true);
        break;
      case Mmio.GUEST_PAGE_SIZE:
        if (d.version === 1) d.pageSize = v;
        break;
      case Mmio.QUEUE_ALIGN:
        if (d.version === 1) this.queue(d, d.queueSel).align = v;
        break;
      case Mmio.QUEUE_PFN:
        if (d.version === 1) this.legacyPfn(d, d.queueSel, v, d.pageSize, this.queue(d, d.queueSel).align);
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
        if (!ready) {
          d.rings.delete(d.queueSel);
          d.prings.delete(d.queueSel);
        }
        q.ready = ready;
        break;
      }
      case Mmio.QUEUE_NOTIFY:
        this.onNotify(d, v & 0xffff, v);
        break;
      case Mmio.QUEUE_RESET:
        // VIRTIO_F_RING_RESET: writing 1 resets the selected queue (it is no longer ready and may be set up again)
        if (v & 1) {
          this.queue(d, d.queueSel).ready = false;
          d.rings.delete(d.queueSel);
          d.prings.delete(d.queueSel);
        }
        break;
      case Mmio.INTERRUPT_ACK:
        if (v & ~3) this.violate(d, 'mmio.driver.20', 'driver', 'InterruptACK with undefined bits', 'bits 0..1 only', `0x${v.toString(16)}`);
        d.unacked &= ~v;
        break;
    }
  }

  private onStatusWrite(d: DevState, v: number): void {
    if (this.statusLog.length < 10_000) this.statusLog.push({ device: d.name, value: v });
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
      d.prings.clear();
      for (const q of d.queues.values()) q.ready = false;
      d.devFeatSelWritten = d.drvFeatSelWritten = false;
      d.queueVector.clear();
      d.negotiated = { indirect: false, eventIdx: false, packed: false, notificationData: false, notifConfigData: false, inOrder: false };
      d.coal = { tx: [0, 0], rx: [0, 0], vq: new Map() };
      if (d.kind !== 'mmio') return;
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
      if (d.kind === 'mmio' && this.acceptedHas(d, F.SR_IOV)) this.violate(d, 'features.driver.18', 'driver', 'driver accepted VIRTIO_F_SR_IOV on a virtio-mmio device (no PCI SR-IOV capability)');
      d.featuresOkWritten = true;
      d.negotiated = this.negotiatedOf(d, false);
    }
    if (added & Status.DRIVER_OK) {
      if (d.version !== 1 && !(v & Status.FEATURES_OK)) this.violate(d, 'status_init.driver.6', 'driver', 'DRIVER_OK set without FEATURES_OK', 'FEATURES_OK before DRIVER_OK', statusNames(v));
      if (d.featuresRefused) this.violate(d, 'status_init.driver.11', 'driver', 'driver set DRIVER_OK after the device refused FEATURES_OK', 'FAILED or a reset', statusNames(v));
      if (d.failedSet) this.violate(d, 'status_init.driver.11', 'driver', 'driver set DRIVER_OK after setting FAILED', 'a reset first', statusNames(v));
      d.driverOk = true;
      if (d.version === 1) d.negotiated = this.negotiatedOf(d, true);
    }
    if (v & Status.FAILED) d.failedSet = true;
    d.status = v & DRIVER_BITS;
  }

  /** A legacy queue address (page frame number): the split ring's three areas follow from it. */
  private legacyPfn(d: DevState, index: number, pfn: number, page: number, align: number): void {
    const q = this.queue(d, index);
    if (pfn === 0) {
      q.ready = false;
      d.rings.delete(index);
      d.prings.delete(index);
      return;
    }
    if (align <= 0 || q.size === 0) return;
    q.desc = pfn * page;
    q.driver = q.desc + 16 * q.size;
    q.device = Math.ceil((q.driver + 6 + 2 * q.size) / align) * align;
    if (!q.ready) this.queueEnabled(d, index, q);
    q.ready = true;
  }

  private queueEnabled(d: DevState, index: number, q: QueueRegs): void {
    if (d.version !== 1 && !d.negotiated.packed) {
      if (q.desc % Split.DESC_ALIGN || q.driver % Split.AVAIL_ALIGN || q.device % Split.USED_ALIGN) {
        this.violate(d, 'split.driver.1', 'driver', `queue ${index} ring areas misaligned`, 'desc 16, avail 2, used 4 byte aligned', `desc 0x${q.desc.toString(16)} avail 0x${q.driver.toString(16)} used 0x${q.device.toString(16)}`);
      }
    }
    if (d.negotiated.packed) {
      this.packedEnabled(d, index, q);
      return;
    }
    if (!this.ringsOn || q.size === 0) return;
    const mem = this.machine.mem;
    if (!mem.isRam(q.desc, 16 * q.size) || !mem.isRam(q.driver, 6 + 2 * q.size) || !mem.isRam(q.device, 6 + 8 * q.size)) return;
    try {
      const usedFlags = mem.read16(q.device);
      if (usedFlags !== 0) this.violate(d, 'split.driver.19', 'driver', `queue ${index}: used ring flags not 0 when the queue was enabled`, '0', String(usedFlags));
      const lastAvail = mem.read16(q.driver + 2);
      d.coal.vq.delete(index); // net.device.109 / .110: a re-enabled queue coalesces with its group's values again
      d.rings.set(index, { index, size: q.size, desc: q.desc, avail: q.driver, used: q.device, lastAvail, lastUsed: mem.read16(q.device + 2), notifiedAvail: lastAvail, inflight: new Map(), inflightCount: 0, owed: null, broken: false });
    } catch {
      /* not monitorable */
    }
  }

  // ------------------------------------------------------------------ virtio-pci

  private *allDevs(): Iterable<DevState> {
    yield* this.devs.values();
    yield* this.pciDevs.values();
  }

  /** Device config read for judges (side-effect free, muted). */
  private config32(d: DevState, o: number): number {
    if (d.kind === 'mmio') return this.peek(d, Mmio.CONFIG + o);
    const p = d.pci!;
    this.muted = true;
    try {
      if (d.version === 1 && p.legacyBar >= 0) {
        const base = this.barAddress(p, p.legacyBar);
        return this.machine.bus.pio.read(base.addr + (this.msixEnabled(d) ? Legacy.CONFIG_OFF_MSIX : Legacy.CONFIG_OFF) + o, 4) >>> 0;
      }
      if (!p.device) return 0;
      return this.machine.bus.mmio.read(this.barAddress(p, p.device.bar).addr + p.device.off + o, 4) >>> 0;
    } finally {
      this.muted = false;
    }
  }

  /** Side-effect-free configuration-space read through ECAM (muted). */
  private cfgPeek(cfg: number, reg: number, size: 1 | 2 | 4): number {
    this.muted = true;
    try {
      return this.machine.bus.mmio.read(cfg + reg, size) >>> 0;
    } finally {
      this.muted = false;
    }
  }

  private barAddress(p: PciLayout, bar: number): { io: boolean; addr: number } {
    const lo = this.cfgPeek(p.cfg, PciCfg.BAR0 + 4 * bar, 4);
    if (lo & PciCfg.BAR_IO) return { io: true, addr: (lo & ~3) >>> 0 };
    const hi = (lo & 6) === PciCfg.BAR_MEM_64 && bar < 5 ? this.cfgPeek(p.cfg, PciCfg.BAR0 + 4 * bar + 4, 4) : 0;
    return { io: false, addr: ((lo & ~0xf) >>> 0) + hi * 0x1_0000_0000 };
  }

  private msixEnabled(d: DevState): boolean {
    const p = d.pci!;
    return p.msix !== 0 && (this.cfgPeek(p.cfg, p.msix + 2, 2) & 0x8000) !== 0;
  }

  /** With MSI-X on and no vector mapped for a queue, the device sends no used buffer notification for it (pci.device.64). */
  private pciQueueSilent(d: DevState, index: number): boolean {
    return this.msixEnabled(d) && (d.queueVector.get(index) ?? VIRTIO_MSI_NO_VECTOR) === VIRTIO_MSI_NO_VECTOR;
  }

  /** The virtio-pci function at an ECAM address (vendor 0x1af4), its capabilities parsed once. */
  private pciDev(cfg: number, dev: number, fn: number): DevState | undefined {
    const known = this.pciDevs.get(cfg);
    if (known) return known;
    if (this.cfgPeek(cfg, PciCfg.VENDOR_ID, 2) !== VIRTIO_PCI_VENDOR_ID) return undefined;
    const pciId = this.cfgPeek(cfg, PciCfg.DEVICE_ID, 2);
    const legacyId = pciId < MODERN_DEVICE_ID_BASE;
    const deviceId = legacyId ? this.cfgPeek(cfg, PciCfg.SUBSYS_ID, 2) : pciId - MODERN_DEVICE_ID_BASE;
    let common, notify, isr, device;
    let pciCfg = 0;
    let msix = 0;
    let at = this.cfgPeek(cfg, PciCfg.CAP_PTR, 1) & 0xfc;
    for (let n = 0; at >= 0x40 && n < 48; n++) {
      const id = this.cfgPeek(cfg, at, 1);
      if (id === PciCfg.CAP_ID_VNDR) {
        const type = this.cfgPeek(cfg, at + PciCap.OFF_CFG_TYPE, 1);
        const s = { bar: this.cfgPeek(cfg, at + PciCap.OFF_BAR, 1), off: this.cfgPeek(cfg, at + PciCap.OFF_OFFSET, 4), len: this.cfgPeek(cfg, at + PciCap.OFF_LENGTH, 4) };
        // the first capability of each type is the one a driver uses (pci.device.11)
        if (type === PciCap.COMMON_CFG) common ??= s;
        else if (type === PciCap.NOTIFY_CFG) notify ??= { ...s, mult: this.cfgPeek(cfg, at + PciCap.OFF_NOTIFY_MULT, 4) };
        else if (type === PciCap.ISR_CFG) isr ??= s;
        else if (type === PciCap.DEVICE_CFG) device ??= s;
        else if (type === PciCap.PCI_CFG && !pciCfg) pciCfg = at;
      } else if (id === PciCfg.CAP_ID_MSIX && !msix) msix = at;
      at = this.cfgPeek(cfg, at + 1, 1) & 0xfc;
    }
    const table = msix ? this.cfgPeek(cfg, msix + 4, 4) : 0;
    const pin = this.cfgPeek(cfg, PciCfg.INTERRUPT_PIN, 1);
    const vectors = new Set<number>();
    const info = this.machine.platform.pci;
    if (pin && info) vectors.add(info.intxVector(0, dev, fn, pin));
    const layout: PciLayout = {
      dev, fn, cfg, pciCfg, msix, msixBar: table & 7, msixOff: (table & ~7) >>> 0,
      legacyBar: legacyId ? 0 : -1,
      ...(common ? { common } : {}), ...(notify ? { notify } : {}), ...(isr ? { isr } : {}), ...(device ? { device } : {}),
    };
    const d: DevState = {
      pd: undefined, kind: 'pci', name: `virtio-pci 00:${dev.toString(16).padStart(2, '0')}.${fn}`, pci: layout, vectors,
      queueVector: new Map(), notifyOff: new Map(), notifyData: new Map(), pageSize: Legacy.PAGE,
      // PCI identification is in config space: the virtio-mmio probing rules do not apply
      readMagic: true, readVersion: true, readDeviceId: true, deviceId, version: undefined,
      status: 0, sawReset: false, failedSet: false, featuresRefused: false, featuresOkWritten: false, driverOk: false,
      devFeatSelWritten: true, drvFeatSelWritten: true, devFeatSel: 0, drvFeatSel: 0, offered: new Map(), accepted: new Map(),
      queueSel: 0, queues: new Map(), rings: new Map(), prings: new Map(),
      negotiated: { indirect: false, eventIdx: false, packed: false, notificationData: false, notifConfigData: false, inOrder: false },
      unacked: 0, irqsTotal: 0, irqsAtEnter: 0, irqsHandled: 0, irqsTaken: 0,
      coal: { tx: [0, 0], rx: [0, 0], vq: new Map() },
    };
    this.pciDevs.set(cfg, d);
    return d;
  }

  private onPciAccess(a: BusAccess): void {
    const ecam = this.machine.platform.pci?.ecamBase;
    if (ecam === undefined) return;
    if (a.window === 'pci-cf8') {
      if (a.offset === 0 && a.size === 4) {
        if (a.kind === 'write') this.cf8 = a.value >>> 0;
        return;
      }
      if (a.offset < 4 || !(this.cf8 & 0x8000_0000) || ((this.cf8 >>> 16) & 0xff) !== 0) return;
      const dev = (this.cf8 >>> 11) & 0x1f;
      const fn = (this.cf8 >>> 8) & 7;
      this.onConfigSpace(ecam + ((dev << 15) | (fn << 12)), dev, fn, (this.cf8 & 0xfc) + a.offset - 4, a);
      return;
    }
    if (a.window === 'pci-ecam') {
      if (a.offset >>> 20 !== 0) return; // bus 0 only
      const dev = (a.offset >>> 15) & 0x1f;
      const fn = (a.offset >>> 12) & 7;
      this.onConfigSpace(ecam + ((dev << 15) | (fn << 12)), dev, fn, a.offset & 0xfff, a);
      return;
    }
    const w = this.pciWindow(a, ecam);
    if (!w) return;
    this.stats.accesses++;
    this.onBar(w.d, w.bar, a.offset, a.size, a.kind, a.value >>> 0);
  }

  /** Which function and BAR a virtio-pci window belongs to (found once per placement, from the BAR registers). */
  private pciWindow(a: BusAccess, ecam: number): { d: DevState; bar: number } | null {
    const base = a.addr - a.offset;
    const key = `${a.space}:${a.window}:${base}`;
    const hit = this.winCache.get(key);
    if (hit !== undefined) return hit;
    const m = /\.bar(\d)$/.exec(a.window);
    let found: { d: DevState; bar: number } | null = null;
    if (m) {
      const bar = Number(m[1]);
      for (let dev = 0; dev < 32 && !found; dev++) {
        for (let fn = 0; fn < 8 && !found; fn++) {
          const cfg = ecam + ((dev << 15) | (fn << 12));
          const d = this.pciDev(cfg, dev, fn);
          if (!d) continue;
          const b = this.barAddress(d.pci!, bar);
          if (b.addr === base && b.io === (a.space === 'pio')) found = { d, bar };
        }
      }
    }
    this.winCache.set(key, found);
    return found;
  }

  /** A configuration-space access: MSI-X enable changes nothing here; the PCI_CFG window is decoded as the BAR access it makes. */
  private onConfigSpace(cfg: number, dev: number, fn: number, reg: number, a: BusAccess): void {
    const d = this.pciDevs.get(cfg) ?? this.pciDev(cfg, dev, fn);
    if (!d) return;
    this.stats.accesses++;
    const C = d.pci!.pciCfg;
    if (!C) return;
    const D = C + PciCap.OFF_PCI_CFG_DATA;
    if (reg + a.size <= D || reg >= D + 4) return;
    const bar = this.cfgPeek(cfg, C + PciCap.OFF_BAR, 1);
    const off = this.cfgPeek(cfg, C + PciCap.OFF_OFFSET, 4);
    const len = this.cfgPeek(cfg, C + PciCap.OFF_LENGTH, 4);
    // pci.driver.29: cap.offset a multiple of cap.length (the window access is aligned)
    if (len !== 0 && off % len !== 0) {
      this.violate(d, 'pci.driver.29', 'driver', `pci_cfg_data ${a.kind} with cap.offset ${off} not a multiple of cap.length ${len}`, `a multiple of ${len}`, String(off));
      return;
    }
    // pci.driver.31: bar/offset/length must name 1, 2 or 4 bytes inside one of the function's BARs
    const inBar = bar <= 5 && (len === 1 || len === 2 || len === 4) && this.structureAt(d, bar, off, len);
    if (!inBar) {
      this.violate(d, 'pci.driver.31', 'driver', `pci_cfg_data ${a.kind} while the window does not address ${len} bytes of a BAR structure`, 'cap.bar 0..5 naming a virtio structure, cap.length 1, 2 or 4', `bar ${bar} offset 0x${off.toString(16)} length ${len}`);
      return;
    }
    if (reg !== D) return; // a partial data access: not decoded further
    const v = len === 4 ? a.value >>> 0 : (a.value >>> 0) & ((1 << (8 * len)) - 1);
    this.onBar(d, bar, off, len as AccessSize, a.kind, v);
  }

  private structureAt(d: DevState, bar: number, off: number, len: number): boolean {
    const p = d.pci!;
    for (const s of [p.common, p.notify, p.isr, p.device]) if (s && s.bar === bar && off >= s.off && off + len <= s.off + s.len) return true;
    return false;
  }

  private onBar(d: DevState, bar: number, off: number, size: AccessSize, kind: 'read' | 'write', v: number): void {
    const p = d.pci!;
    if (bar === p.legacyBar && bar === 0 && this.barAddress(p, 0).io) {
      d.version = 1;
      this.onLegacyPci(d, off, size, kind, v);
      return;
    }
    if (p.msix && bar === p.msixBar && off >= p.msixOff && kind === 'write') {
      // MSI-X table entry: message data (offset 8) carries the vector the device will signal
      const e = off - p.msixOff;
      if (e % 16 === 8 && e < 16 * 2048) d.vectors.add(v & 0xff);
    }
    const inS = (s: { bar: number; off: number; len: number } | undefined): s is { bar: number; off: number; len: number } => !!s && s.bar === bar && off >= s.off && off < s.off + s.len;
    if (inS(p.common)) {
      d.version = 2;
      this.onCommon(d, off - p.common.off, size, kind, v);
    } else if (inS(p.notify) && kind === 'write') {
      d.version = 2;
      this.onPciNotify(d, off - p.notify.off, size, v);
    } else if (inS(p.device)) {
      d.version = 2;
      const o = off - p.device.off;
      if (size === 8 || o % size !== 0) this.violate(d, 'pci.driver.5', 'driver', `device config ${kind} of ${size} bytes at offset ${o}`, 'an aligned access of the field width', `${size} bytes at +${o}`);
      this.onConfig(d, { space: 'mmio', kind, addr: 0, size, value: v, window: '', offset: o }, o);
    }
  }

  /** struct virtio_pci_common_cfg. */
  private onCommon(d: DevState, off: number, size: AccessSize, kind: 'read' | 'write', v: number): void {
    const w = COMMON_FIELD_WIDTH[off];
    const ok = w !== undefined ? w === size || (w === 8 && size === 4) : COMMON_FIELD_WIDTH[off - 4] === 8 && size === 4;
    if (!ok) {
      // pci.driver.5: each field with an access of its own width (64-bit fields also as two 32-bit halves)
      this.violate(d, 'pci.driver.5', 'driver', `common config ${kind} of ${size} bytes at offset ${off}`, w !== undefined ? `${w} bytes` : 'a field offset', `${size} bytes`);
      return;
    }
    const sel = d.queueSel;
    if (kind === 'read') {
      switch (off) {
        case Common.DEVICE_FEATURE:
          this.onRead(d, Mmio.DEVICE_FEATURES, v);
          return;
        case Common.DEVICE_FEATURE_SELECT:
          return;
        case Common.DEVICE_STATUS:
          this.onRead(d, Mmio.STATUS, v);
          return;
        case Common.QUEUE_SIZE: {
          const q = this.queue(d, sel);
          if (!q.ready) q.size = v; // the device's maximum stays the size unless the driver writes one
          return;
        }
        case Common.QUEUE_NOTIFY_OFF:
          d.notifyOff.set(sel, v);
          return;
        case Common.QUEUE_NOTIF_CONFIG_DATA:
          d.notifyData.set(sel, v);
          return;
      }
      return;
    }
    switch (off) {
      case Common.DEVICE_FEATURE_SELECT:
        this.onWrite(d, Mmio.DEVICE_FEATURES_SEL, v);
        return;
      case Common.DRIVER_FEATURE_SELECT:
        this.onWrite(d, Mmio.DRIVER_FEATURES_SEL, v);
        return;
      case Common.DRIVER_FEATURE:
        this.onWrite(d, Mmio.DRIVER_FEATURES, v);
        return;
      case Common.DEVICE_STATUS:
        this.onStatusWrite(d, v & 0xff);
        return;
      case Common.CONFIG_MSIX_VECTOR:
        return;
      case Common.QUEUE_SELECT:
        d.queueSel = v & 0xffff;
        return;
      case Common.QUEUE_MSIX_VECTOR:
        d.queueVector.set(sel, v & 0xffff);
        return;
      case Common.QUEUE_SIZE: {
        // pci.driver.16: never 0; pci.driver.17: a power of two unless RING_PACKED was negotiated
        if (v === 0) this.violate(d, 'pci.driver.16', 'driver', `queue_size 0 written for queue ${sel}`, 'a non-zero size', '0');
        else if (!d.negotiated.packed && (v & (v - 1)) !== 0) this.violate(d, 'pci.driver.17', 'driver', `queue_size ${v} (not a power of two) for split queue ${sel}`, 'a power of two', String(v));
        const q = this.queue(d, sel);
        if (!q.ready) q.size = v & 0xffff;
        return;
      }
      case Common.QUEUE_ENABLE: {
        // pci.driver.20: the driver never writes 0 to queue_enable
        if ((v & 0xffff) === 0) {
          this.violate(d, 'pci.driver.20', 'driver', `0 written to queue_enable of queue ${sel}`, '1', '0');
          return;
        }
        const q = this.queue(d, sel);
        if (!q.ready) this.queueEnabled(d, sel, q);
        q.ready = true;
        return;
      }
      case Common.QUEUE_DESC:
      case Common.QUEUE_DESC + 4:
      case Common.QUEUE_DRIVER:
      case Common.QUEUE_DRIVER + 4:
      case Common.QUEUE_DEVICE:
      case Common.QUEUE_DEVICE + 4: {
        const q = this.queue(d, sel);
        if (q.ready) return;
        const key = off < Common.QUEUE_DRIVER ? 'desc' : off < Common.QUEUE_DEVICE ? 'driver' : 'device';
        const lo = q[key] % 0x1_0000_0000;
        const hi = Math.floor(q[key] / 0x1_0000_0000);
        q[key] = off % 8 === 4 ? lo + v * 0x1_0000_0000 : size === 8 ? v : hi * 0x1_0000_0000 + v;
        return;
      }
      case Common.QUEUE_RESET:
        if (v & 1) {
          this.queue(d, sel).ready = false;
          d.rings.delete(sel);
          d.prings.delete(sel);
        }
        return;
      case Common.DEVICE_FEATURE:
      case Common.NUM_QUEUES:
      case Common.CONFIG_GENERATION:
      case Common.QUEUE_NOTIFY_OFF:
      case Common.QUEUE_NOTIF_CONFIG_DATA:
        // pci.driver.15: these fields are the device's
        this.violate(d, 'pci.driver.15', 'driver', `write to read-only common config field at offset ${off}`, 'no write', `0x${v.toString(16)}`);
        return;
    }
  }

  /** A write to the notify region: the address names the queue, the value must too. */
  private onPciNotify(d: DevState, off: number, size: AccessSize, v: number): void {
    const mult = d.pci!.notify!.mult;
    let index = -1;
    if (mult === 0) index = d.negotiated.notifConfigData ? -1 : v & 0xffff;
    else for (const [q, no] of d.notifyOff) if (no * mult === off) index = q;
    if (index < 0 && mult !== 0 && off % mult === 0) index = off / mult;
    const nd = d.negotiated.notificationData;
    // pci.driver.38 / pci.driver.39: 16-bit notifications without NOTIFICATION_DATA, 32-bit with it
    if (size !== (nd ? 4 : 2)) this.violate(d, nd ? 'pci.driver.39' : 'pci.driver.38', 'driver', `notification of ${size} bytes`, `${nd ? 4 : 2} bytes`, `${size} bytes`);
    if (index >= 0) {
      const low = v & 0xffff;
      if (d.negotiated.notifConfigData) {
        const want = d.notifyData.get(index);
        // pci.driver.42 / pci.driver.43: the value the device gave in queue_notif_config_data
        if (want !== undefined && low !== want) this.violate(d, nd ? 'pci.driver.43' : 'pci.driver.42', 'driver', `notification for queue ${index} does not carry queue_notif_config_data`, `0x${want.toString(16)}`, `0x${low.toString(16)}`);
      } else if (low !== index) {
        // pci.driver.40 / pci.driver.41: the value (or vq_index) is the queue index
        this.violate(d, nd ? 'pci.driver.41' : 'pci.driver.40', 'driver', `notification at the address of queue ${index} names queue ${low}`, String(index), String(low));
      }
    }
    this.onNotify(d, index >= 0 ? index : v & 0xffff, v);
  }

  /** The legacy register block (I/O BAR0 of a transitional or legacy function). */
  private onLegacyPci(d: DevState, off: number, size: AccessSize, kind: 'read' | 'write', v: number): void {
    const cfgOff = this.msixEnabled(d) ? Legacy.CONFIG_OFF_MSIX : Legacy.CONFIG_OFF;
    if (off >= cfgOff) {
      this.onConfig(d, { space: 'pio', kind, addr: 0, size, value: v, window: '', offset: off - cfgOff }, off - cfgOff);
      return;
    }
    const sel = d.queueSel;
    if (kind === 'read') {
      if (off === Legacy.HOST_FEATURES) d.offered.set(0, v);
      else if (off === Legacy.STATUS) this.onRead(d, Mmio.STATUS, v);
      else if (off === Legacy.QUEUE_NUM) {
        const q = this.queue(d, sel);
        if (!q.ready) q.size = v;
      }
      return;
    }
    switch (off) {
      case Legacy.GUEST_FEATURES:
        d.drvFeatSel = 0;
        this.onWrite(d, Mmio.DRIVER_FEATURES, v);
        return;
      case Legacy.QUEUE_SEL:
        d.queueSel = v & 0xffff;
        return;
      case Legacy.QUEUE_PFN:
        this.legacyPfn(d, sel, v, Legacy.PAGE, Legacy.ALIGN);
        return;
      case Legacy.QUEUE_NOTIFY:
        this.onNotify(d, v & 0xffff);
        return;
      case Legacy.STATUS:
        this.onStatusWrite(d, v & 0xff);
        return;
      case Legacy.QUEUE_VECTOR:
        if (cfgOff === Legacy.CONFIG_OFF_MSIX) d.queueVector.set(sel, v & 0xffff);
        return;
    }
  }

  /** An available buffer notification for queue `idx` (any transport). */
  private onNotify(d: DevState, idx: number, data?: number): void {
    if (!d.driverOk) this.violate(d, 'status_init.driver.12', 'driver', `notification for queue ${idx} before DRIVER_OK`, 'DRIVER_OK set', statusNames(d.status));
    const pr = d.prings.get(idx);
    if (pr && !pr.broken && this.ringsOn) {
      this.pguard(pr, () => {
        this.scanUsedPacked(d, pr);
        this.scanAvailPacked(d, pr);
        if (data !== undefined && d.negotiated.notificationData) this.packedNotifyData(d, pr, data);
      });
    }
    const r = d.rings.get(idx);
    if (r && this.ringsOn && !r.broken) {
      this.guard(r, () => {
        this.scanUsed(d, r, 'driver');
        this.syncAvail(d, r);
        r.notifiedAvail = r.lastAvail;
      });
    }
  }

  // ------------------------------------------------------------------ packed rings

  /** A packed queue was enabled: check the area alignment and start following it from position 0, wrap 1. */
  private packedEnabled(d: DevState, index: number, q: QueueRegs): void {
    // packed.driver.1: descriptor ring 16-byte aligned, both event suppression areas 4-byte aligned
    if (q.desc % 16 || q.driver % 4 || q.device % 4) {
      this.violate(d, 'packed.driver.1', 'driver', `packed queue ${index} areas misaligned`, 'descriptor ring 16, event suppression areas 4 byte aligned', `desc 0x${q.desc.toString(16)} driver 0x${q.driver.toString(16)} device 0x${q.device.toString(16)}`);
    }
    if (!this.ringsOn || q.size === 0 || !this.machine.mem.isRam(q.desc, 16 * q.size)) return;
    d.prings.set(index, { index, size: q.size, desc: q.desc, availPos: 0, availWrap: true, usedPos: 0, usedWrap: true, inflight: [], seq: 0, broken: false });
  }

  private pguard(r: PackedState, fn: () => void): void {
    try {
      fn();
    } catch {
      r.broken = true;
    }
  }

  /** Follow the chains the driver made available since the last look (AVAIL = wrap, USED = !wrap at the driver's position). */
  private scanAvailPacked(d: DevState, r: PackedState): void {
    const mem = this.machine.mem;
    for (let guard = 0; guard < r.size && !r.broken; guard++) {
      const first = r.desc + 16 * r.availPos;
      const f0 = mem.read16(first + 14);
      if (((f0 & Packed.DESC_F_AVAIL) !== 0) !== r.availWrap || ((f0 & Packed.DESC_F_USED) !== 0) === r.availWrap) return;
      let writable = 0;
      let sawWritable = false;
      const readable: InFlight['readable'] = [];
      const rsegs: { addr: number; len: number }[] = [];
      const wsegs: { addr: number; len: number }[] = [];
      let k = 0;
      let id = 0;
      const seg = (addr: number, len: number, flags: number, where: string): void => {
        if (len > 0 && !mem.isRam(addr, len)) this.violate(d, 'features.driver.13', 'driver', `packed queue ${r.index}: ${where} points outside guest RAM (no VIRTIO_F_ACCESS_PLATFORM)`, 'a guest-physical RAM address', `0x${addr.toString(16)}+${len}`);
        if (flags & Packed.DESC_F_WRITE) {
          sawWritable = true;
          writable += len;
          wsegs.push({ addr, len });
        } else {
          // packed.driver.8: device-readable elements come before device-writable ones
          if (sawWritable) this.violate(d, 'packed.driver.8', 'driver', `packed queue ${r.index}: device-readable ${where} after a device-writable one`);
          rsegs.push({ addr, len });
          if (len > 0 && mem.isRam(addr, Math.min(len, this.snapBytes))) readable.push({ gpa: addr, bytes: mem.readBytes(addr, Math.min(len, this.snapBytes)) });
        }
      };
      for (;; k++) {
        if (k >= r.size) {
          // packed.driver.7: no list longer than the queue size (so no loops around the ring)
          this.violate(d, 'packed.driver.7', 'driver', `packed queue ${r.index}: descriptor list from position ${r.availPos} longer than the queue size ${r.size}`);
          r.broken = true;
          return;
        }
        const pos = (r.availPos + k) % r.size;
        const wrap = r.availPos + k >= r.size ? !r.availWrap : r.availWrap;
        const a = r.desc + 16 * pos;
        const flags = mem.read16(a + 14);
        if (k > 0 && (((flags & Packed.DESC_F_AVAIL) !== 0) !== wrap || ((flags & Packed.DESC_F_USED) !== 0) === wrap)) {
          // packed.driver.11: the list's head became available before the rest of the list
          this.violate(d, 'packed.driver.11', 'driver', `packed queue ${r.index}: head at position ${r.availPos} is available but descriptor ${k} of its list (position ${pos}) is not`, `AVAIL=${wrap ? 1 : 0} USED=${wrap ? 0 : 1}`, `flags 0x${flags.toString(16)}`);
          r.broken = true;
          return;
        }
        const addr = u64(mem, a);
        const len = mem.read32(a + 8);
        id = mem.read16(a + 12);
        if (flags & Packed.DESC_F_INDIRECT) {
          // packed.driver.12: INDIRECT only with VIRTIO_F_INDIRECT_DESC; packed.driver.15: not inside a NEXT-linked list
          if (!d.negotiated.indirect) this.violate(d, 'packed.driver.12', 'driver', `packed queue ${r.index}: INDIRECT descriptor without VIRTIO_F_INDIRECT_DESC (position ${pos})`);
          if (flags & Packed.DESC_F_NEXT || k > 0) this.violate(d, 'packed.driver.15', 'driver', `packed queue ${r.index}: INDIRECT descriptor in a list linked by NEXT (position ${pos})`);
          const n = Math.floor(len / 16);
          if (n > 0 && mem.isRam(addr, 16 * n)) {
            for (let i = 0; i < n && i < 4096; i++) {
              const e = addr + 16 * i;
              const ef = mem.read16(e + 14);
              // packed.driver.13: within an indirect table only DESC_F_WRITE may be set
              if (ef & ~Packed.DESC_F_WRITE) this.violate(d, 'packed.driver.13', 'driver', `packed queue ${r.index}: indirect entry ${i} has flags 0x${ef.toString(16)}`, 'WRITE only', `0x${ef.toString(16)}`);
              seg(u64(mem, e), mem.read32(e + 8), ef, `indirect entry ${i}`);
            }
          }
        } else seg(addr, len, flags, `descriptor at position ${pos}`);
        if (!(flags & Packed.DESC_F_NEXT)) break;
      }
      const n = k + 1;
      r.availPos += n;
      if (r.availPos >= r.size) {
        r.availPos -= r.size;
        r.availWrap = !r.availWrap;
      }
      r.inflight.push({ id, n, writable, readable, seq: r.seq++ });
      this.stats.chains++;
      if (this.onChain) {
        const report = (statement: string, message: string, expected?: string, seen?: string) => this.violate(d, statement, 'driver', `packed queue ${r.index} buffer ${id}: ${message}`, expected, seen);
        this.onChain({ device: d.pd, deviceName: d.name, deviceId: d.deviceId, queue: r.index, head: id, readable: rsegs, writable: wsegs, config32: (o) => this.config32(d, o) }, report);
      }
    }
  }

  /** Used descriptors the device wrote since the last look (AVAIL = USED = the device's wrap counter). */
  private scanUsedPacked(d: DevState, r: PackedState): void {
    const mem = this.machine.mem;
    for (let guard = 0; guard < r.size && !r.broken; guard++) {
      const a = r.desc + 16 * r.usedPos;
      const flags = mem.read16(a + 14);
      if (((flags & Packed.DESC_F_AVAIL) !== 0) !== r.usedWrap || ((flags & Packed.DESC_F_USED) !== 0) !== r.usedWrap) return;
      const id = mem.read16(a + 12);
      if (!d.driverOk) this.violate(d, 'status_init.device.1', 'device', `packed queue ${r.index}: used descriptor written before DRIVER_OK`);
      const at = r.inflight.findIndex((f) => f.id === id);
      if (at < 0) {
        // packed.device.6: the device may only use what the driver made available
        this.violate(d, 'packed.device.6', 'device', `packed queue ${r.index}: used descriptor at position ${r.usedPos} names buffer id ${id}, which is not available`, 'the id of an available buffer', String(id));
        r.broken = true;
        return;
      }
      // with IN_ORDER one used descriptor may stand for every buffer made available before it
      const done = d.negotiated.inOrder ? r.inflight.splice(0, at + 1) : r.inflight.splice(at, 1);
      for (const f of done) {
        this.stats.used++;
        r.usedPos += f.n;
        if (r.usedPos >= r.size) {
          r.usedPos -= r.size;
          r.usedWrap = !r.usedWrap;
        }
      }
    }
  }

  /** Device-readable buffers must not change while in flight: the device's doing in device time, the driver's otherwise. */
  private snapshotsPacked(d: DevState, r: PackedState, side: 'driver' | 'device'): void {
    const mem = this.machine.mem;
    for (const f of r.inflight) {
      for (const s of f.readable) {
        if (sameBytes(mem.subarray(s.gpa, s.bytes.length), s.bytes)) continue;
        if (side === 'device') this.violate(d, 'packed.device.4', 'device', `packed queue ${r.index}: a device-readable buffer of buffer ${f.id} changed while the device ran`, 'unchanged', `buffer at 0x${s.gpa.toString(16)}`);
        else this.violate(d, 'status_init.driver.13', 'driver', `packed queue ${r.index}: driver modified a device-readable buffer of in-flight buffer ${f.id}`);
        s.bytes.set(mem.subarray(s.gpa, s.bytes.length));
      }
    }
  }

  /** packed.driver.4: with NOTIFICATION_DATA, a notification carries the driver's next position and wrap counter. */
  private packedNotifyData(d: DevState, r: PackedState, data: number): void {
    const off = (data >>> 16) & 0x7fff;
    const wrap = data >>> 31 === 1;
    if (off !== r.availPos || wrap !== r.availWrap) {
      this.violate(d, 'packed.driver.4', 'driver', `packed queue ${r.index}: notification data names position ${off} wrap ${wrap ? 1 : 0}`, `next_off ${r.availPos} next_wrap ${r.availWrap ? 1 : 0}`, `next_off ${off} next_wrap ${wrap ? 1 : 0}`);
    }
  }

  // ------------------------------------------------------------------ interrupts and device time

  private onIrq(vector: number): void {
    if (!this.active) return;
    for (const d of this.allDevs()) {
      if (!d.vectors.has(vector)) continue;
      d.irqsTotal++;
      this.stats.irqs++;
      if (d.kind !== 'mmio') continue;
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
    for (const d of this.allDevs()) if (d.vectors.has(vector)) d.irqsTaken = d.irqsTotal;
  }

  /** Entering a wait/spin: what changed since the last one was the driver's doing. */
  private enterDeviceTime(): void {
    if (!this.active) return;
    for (const d of this.allDevs()) {
      if (d.kind === 'mmio' && d.irqsTaken > d.irqsHandled && d.driverOk) {
        this.violate(d, 'mmio.driver.30', 'driver', 'driver took an interrupt of the device and did not read InterruptStatus before waiting again');
        d.irqsHandled = d.irqsTaken;
      }
      if (d.kind === 'mmio' && d.unacked) {
        this.violate(d, 'mmio.driver.32', 'driver', 'driver waits again without acknowledging the interrupt causes it read', 'InterruptACK of the handled bits', `unacknowledged 0x${d.unacked.toString(16)}`);
        d.unacked = 0;
      }
      if (!this.ringsOn) continue;
      for (const r of d.prings.values()) {
        if (r.broken) continue;
        this.pguard(r, () => {
          this.snapshotsPacked(d, r, 'driver');
          this.scanUsedPacked(d, r);
          this.scanAvailPacked(d, r);
        });
      }
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
    for (const d of this.allDevs()) {
      for (const r of d.prings.values()) {
        if (r.broken) continue;
        this.pguard(r, () => {
          this.snapshotsPacked(d, r, 'device');
          this.scanUsedPacked(d, r);
        });
      }
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
        if (d.negotiated.inOrder) {
          // split.driver.5 / split.driver.10: with IN_ORDER a chain runs through consecutive descriptors
          // (wrapping to 0 after the last one of the ring; an indirect table from entry 0 upwards)
          const want = indirect ? i + 1 : (i + 1) % r.size;
          if (next !== want) this.violate(d, indirect ? 'split.driver.10' : 'split.driver.5', 'driver', `queue ${r.index}: with VIRTIO_F_IN_ORDER ${indirect ? 'indirect entry' : 'descriptor'} ${i} of chain ${head} links to ${next}`, `next ${want}`, `next ${next}`);
        }
        if (next >= count) {
          this.violate(d, 'split.driver.8', 'driver', `queue ${r.index}: next index ${next} outside the table (head ${head})`);
          return false;
        }
        i = next;
      }
    };
    const ok = visit(r.desc, r.size, head, false);
    if (total > 0xffff_ffff) this.violate(d, 'split.driver.4', 'driver', `queue ${r.index}: chain from head ${head} is longer than 2^32 bytes`, '<= 4 GiB', String(total));
    if (ok && d.deviceId === DeviceType.NET) this.noteCoalescing(d, r.index, rsegs);
    if (ok && this.onChain) {
      const report = (statement: string, message: string, expected?: string, seen?: string) => this.violate(d, statement, 'driver', `queue ${r.index} chain ${head}: ${message}`, expected, seen);
      this.onChain({ device: d.pd, deviceName: d.name, deviceId: d.deviceId, queue: r.index, head, readable: rsegs, writable: wsegs, config32: (o) => this.config32(d, o) }, report);
    }
    return ok ? { head, seq: this.seq++, writable, descs, readable } : null;
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
    for (let k = 0; k < n; ) {
      const e = r.used + 4 + 8 * ((r.lastUsed + k) % r.size);
      const id = mem.read32(e);
      const len = mem.read32(e + 4);
      const l = r.inflight.get(id);
      const f = l?.shift();
      if (!f) {
        this.violate(d, 'split.device.16', 'device', `queue ${r.index}: used id ${id} is not a buffer in flight`, 'the head of an available chain', String(id));
        k++;
        continue;
      }
      k++;
      this.stats.used++;
      if (l!.length === 0) r.inflight.delete(id);
      r.inflightCount--;
      if (d.negotiated.inOrder) {
        // IN_ORDER: one used entry may stand for its whole batch (every chain made available before
        // it); the device then skips the batch's other used slots and moves idx by the batch size
        for (const [h, list] of r.inflight) {
          while (list.length && list[0]!.seq < f.seq) {
            list.shift();
            r.inflightCount--;
            this.stats.used++;
            k++;
          }
          if (list.length === 0) r.inflight.delete(h);
        }
      }
      if (len > f.writable) this.violate(d, 'split.device.16', 'device', `queue ${r.index}: used len ${len} exceeds the ${f.writable} writable bytes of chain ${id}`, `<= ${f.writable}`, String(len));
    }
    r.lastUsed = idx;
    if (when === 'device' && !r.owed) {
      const availFlags = mem.read16(r.avail);
      const usedEvent = mem.read16(r.avail + 4 + 2 * r.size);
      r.owed = { from, to: idx, usedEvent, flags: availFlags, irqsAt: d.irqsAtEnter };
    } else if (r.owed) r.owed.to = idx;
  }

  /** virtio-net: the control queue's index (after the receive/transmit pairs). */
  private netCtrlQueue(d: DevState): number {
    if (!this.acceptedHas(d, NetF.MQ)) return 2;
    const pairs = this.config32(d, 4) & 0xffff; // max_virtqueue_pairs
    return 2 * Math.max(1, pairs);
  }

  /** Record a NOTF_COAL_{TX,RX,VQ}_SET command the driver made available on a virtio-net control queue. */
  private noteCoalescing(d: DevState, queue: number, rsegs: readonly { addr: number; len: number }[]): void {
    if (!this.acceptedHas(d, NetF.CTRL_VQ) || !(this.acceptedHas(d, NetF.NOTF_COAL) || this.acceptedHas(d, NetF.VQ_NOTF_COAL))) return;
    if (queue !== this.netCtrlQueue(d)) return;
    const mem = this.machine.mem;
    const b = new Uint8Array(14);
    let n = 0;
    for (const sg of rsegs) {
      for (let k = 0; k < sg.len && n < b.length; k++) if (mem.isRam(sg.addr + k, 1)) b[n++] = mem.read8(sg.addr + k);
      if (n >= b.length) break;
    }
    if (n < 2 || b[0] !== NetCtrl.CLASS_NOTF_COAL) return;
    const le32 = (o: number) => (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
    const cmd = b[1]!;
    if ((cmd === NetCtrl.NOTF_COAL_TX_SET || cmd === NetCtrl.NOTF_COAL_RX_SET) && n >= 10) {
      const tx = cmd === NetCtrl.NOTF_COAL_TX_SET;
      const v = [le32(2), le32(6)] as const;
      if (tx) d.coal.tx = v;
      else d.coal.rx = v;
      // the group command sets every queue of the group
      for (const q of [...d.coal.vq.keys()]) if ((q % 2 === 1) === tx) d.coal.vq.delete(q);
    } else if (cmd === NetCtrl.NOTF_COAL_VQ_SET && n >= 14) {
      d.coal.vq.set(b[2]! | (b[3]! << 8), [le32(6), le32(10)]);
    }
  }

  /** virtio-net queue `index` has notification coalescing configured (the device may hold notifications back). */
  private coalescing(d: DevState, index: number): boolean {
    if (d.deviceId !== DeviceType.NET || index >= this.netCtrlQueue(d)) return false;
    const v = d.coal.vq.get(index) ?? (index % 2 === 1 ? d.coal.tx : d.coal.rx);
    return v[0] > 1 || v[1] > 0;
  }

  /** A device that added used entries must notify unless the driver suppressed it. */
  private judgeOwed(d: DevState, r: RingState, final: boolean): void {
    const o = r.owed;
    if (!o) return;
    if (d.irqsTotal > o.irqsAt || (d.kind === 'mmio' && this.peek(d, Mmio.INTERRUPT_STATUS) & Mmio.INT_VRING) || (d.kind === 'pci' && this.pciQueueSilent(d, r.index))) {
      r.owed = null;
      return;
    }
    let must = d.negotiated.eventIdx ? needEvent(o.usedEvent, o.to, o.from) : (o.flags & Split.AVAIL_F_NO_INTERRUPT) === 0;
    if (must && this.coalescing(d, r.index)) {
      // net.device.111 / net.device.112: with notification coalescing negotiated and configured for
      // this queue the device holds used buffer notifications back and decides when the coalescing
      // condition is met (a timer: the scheduler is not idle until it fired). It then judges by the
      // driver's suppression fields as they are at that moment: a driver that has already consumed
      // the buffers (polling) and moved used_event past them, or set NO_INTERRUPT, is owed nothing.
      // A driver still asking for them when everything has run is owed a notification as before.
      const mem = this.machine.mem;
      must = d.negotiated.eventIdx ? needEvent(mem.read16(r.avail + 4 + 2 * r.size), o.to, o.from) : (mem.read16(r.avail) & Split.AVAIL_F_NO_INTERRUPT) === 0;
    }
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
