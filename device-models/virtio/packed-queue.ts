/**
 * Device side of the packed virtqueue (packed-ring.tex, VIRTIO 1.4).
 *
 * One descriptor ring that both sides write: the driver marks descriptors available by setting
 * AVAIL to its wrap counter and USED to the inverse; the device marks a buffer used by writing one
 * descriptor (buffer id, written length) with AVAIL = USED = its own wrap counter, at the next used
 * position, and skips as many slots as the buffer took. Two 4-byte event suppression structures
 * (driver area: read by the device; device area: written by the device) replace the split ring's
 * flags and event indexes.
 *
 * Every field of a descriptor is read from guest memory once; chains are walked with a bound (the
 * queue size); buffer ids are checked against the ids in flight. A malformed ring gets
 * DEVICE_NEEDS_RESET through the host, and the queue takes nothing more.
 *
 * Hot path: the three ring areas are read through cached DataViews of their RAM regions, and
 * chains are pooled by buffer id (see PackedChain), so a steady state pop/push allocates nothing.
 */
import type { GuestMemory, RamRegion } from '../machine/memory.ts';
import { DriverMisbehaviourError, UsageError, hex } from '../../spec-refs/errors.ts';
import { Packed } from '../../spec-refs/abi/virtio.ts';
import type { Chain } from './model.ts';
import { PooledChain } from './chain-pool.ts';
import type { CoreQueue, QueueConfig, RingHost, RingLayout, RingOptions } from './ring.ts';

/** What the ring needs from the core (structurally the core's RingHost). */
export interface PackedRingHost {
  readonly mem: GuestMemory;
  driverError(err: DriverMisbehaviourError): void;
  signalUsed(index: number): void;
}

export interface PackedQueueConfig {
  readonly index: number;
  readonly size: number;
  readonly desc: number;
  readonly driver: number;
  readonly device: number;
}

export interface PackedRingOptions {
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  readonly inOrder: boolean;
  readonly legacy: boolean;
}

const TWO32 = 0x1_0000_0000;
const F_NEXT = Packed.DESC_F_NEXT;
const F_WRITE = Packed.DESC_F_WRITE;
const F_INDIRECT = Packed.DESC_F_INDIRECT;
const F_AVAIL = Packed.DESC_F_AVAIL;
const F_USED = Packed.DESC_F_USED;

/**
 * Check a packed queue's configuration: size 1..32768 (any value, not only powers of two),
 * descriptor ring 16-aligned, both event structures 4-aligned (packed.driver.1), all three in RAM
 * and not overlapping, and a modern interface (packed rings need VERSION_1).
 */
export function validatePackedConfig(cfg: PackedQueueConfig, mem: GuestMemory, opts: Pick<PackedRingOptions, 'legacy'>): DriverMisbehaviourError | null {
  const q = cfg.index;
  if (opts.legacy) return new DriverMisbehaviourError('packed.legacy', `queue ${q}: packed ring on a legacy interface`, { expected: 'VERSION_1 negotiated', seen: 'legacy interface' });
  if (!Number.isInteger(cfg.size) || cfg.size < 1 || cfg.size > Packed.MAX_SIZE) {
    return new DriverMisbehaviourError('packed.size', `queue ${q}: packed ring size out of range`, { statements: ['pci.driver.16'], expected: `1..${Packed.MAX_SIZE}`, seen: String(cfg.size) });
  }
  const areas: [string, number, number, number][] = [
    ['descriptor ring', cfg.desc, cfg.size * 16, 16],
    ['driver event suppression', cfg.driver, 4, 4],
    ['device event suppression', cfg.device, 4, 4],
  ];
  for (const [name, addr, len, align] of areas) {
    if (addr % align !== 0) return new DriverMisbehaviourError('packed.align', `queue ${q}: ${name} misaligned`, { statements: ['packed.driver.1'], expected: `a multiple of ${align}`, seen: hex(addr) });
    if (!Number.isSafeInteger(addr) || !mem.regionOf(addr, len)) return new DriverMisbehaviourError('packed.area', `queue ${q}: ${name} not inside one RAM region`, { expected: 'guest RAM', seen: `${hex(addr)}+${len}` });
  }
  for (let i = 0; i < 3; i++) {
    for (let j = i + 1; j < 3; j++) {
      const a = areas[i]!;
      const b = areas[j]!;
      if (a[1] < b[1] + b[2] && b[1] < a[1] + a[2]) {
        return new DriverMisbehaviourError('packed.overlap', `queue ${q}: ${a[0]} overlaps ${b[0]}`, { seen: `${hex(a[1])}+${a[2]} / ${hex(b[1])}+${b[2]}` });
      }
    }
  }
  return null;
}

/**
 * The pooled chain of a buffer id. The id is only known once the whole list has been read (it sits
 * in the last descriptor), so a list is walked into a spare chain, which then becomes the pooled
 * chain of its id; the chain that id held before (completed, since the id was free) becomes the
 * next spare. In a steady state pop/push allocates nothing.
 */
class PackedChain extends PooledChain {
  /** In flight: taken by pop, not yet completed. */
  busy = false;
  /** IN_ORDER: completed, waiting for the buffers taken before it. */
  done = false;
  written = 0;
}

export interface PackedQueueStats {
  popped: number;
  used: number;
  usedDescriptorsWritten: number;
  signals: number;
  suppressed: number;
}

export class PackedDeviceQueue implements CoreQueue {
  readonly layout = 'packed' as const;
  readonly index: number;
  readonly size: number;
  private readonly mem: GuestMemory;
  /** Cached views of the descriptor ring and the two event structures (each in one RAM region). */
  private readonly dv: DataView;
  private readonly dOff: number;
  private readonly drv: DataView;
  private readonly drvOff: number;
  private readonly devv: DataView;
  private readonly devOff: number;
  private readonly eventIdx: boolean;
  private readonly indirect: boolean;
  private readonly inOrder: boolean;
  /** Next descriptor to look at for a new buffer, and the driver wrap counter expected there. */
  private nextAvail = 0;
  private availWrap = 1;
  /** Next slot the device writes a used descriptor into, and its wrap counter. */
  private nextUsed = 0;
  private usedWrap = 1;
  /** Slots advanced by used descriptors since the last flush (for event suppression). */
  private usedSinceFlush = 0;
  /** By buffer id: the pooled chain of that id (in flight when its `busy` is set). */
  private readonly chains: (PackedChain | undefined)[];
  /** The chain the next list is walked into. */
  private spare = new PackedChain();
  private inFlightCount = 0;
  /** IN_ORDER: buffer ids in the order they were taken (a ring); completions leave from the front. */
  private readonly order: Uint16Array;
  private orderFront = 0;
  private orderCount = 0;
  /** IN_ORDER: the used descriptor being batched (written at the latest by flush). */
  private hasPending = false;
  private pendingId = 0;
  private pendingLen = 0;
  private pendingSlots = 0;
  private pendingFull = false;
  private halted = false;
  private detached = false;
  /** Longest chain accepted (queue size; a device may limit further, packed.device.9). */
  readonly maxChain: number;
  /** Completions the model got wrong (a chain not taken from this ring, or completed twice); ignored. */
  modelErrors = 0;
  readonly stats: PackedQueueStats = { popped: 0, used: 0, usedDescriptorsWritten: 0, signals: 0, suppressed: 0 };

  constructor(private readonly host: PackedRingHost, cfg: PackedQueueConfig, opts: PackedRingOptions, limits: { maxChain?: number } = {}) {
    this.index = cfg.index;
    this.size = cfg.size;
    this.mem = host.mem;
    // validatePackedConfig (run by the core before create) has checked each area lies in one region
    const d = this.areaView(cfg.desc, 16 * cfg.size);
    const dr = this.areaView(cfg.driver, 4);
    const dv = this.areaView(cfg.device, 4);
    this.dv = d.view;
    this.dOff = cfg.desc - d.base;
    this.drv = dr.view;
    this.drvOff = cfg.driver - dr.base;
    this.devv = dv.view;
    this.devOff = cfg.device - dv.base;
    this.eventIdx = opts.eventIdx;
    this.indirect = opts.indirect;
    this.inOrder = opts.inOrder;
    this.maxChain = Math.min(cfg.size, limits.maxChain ?? cfg.size);
    this.chains = new Array<PackedChain | undefined>(cfg.size).fill(undefined);
    this.order = new Uint16Array(opts.inOrder ? cfg.size : 0);
  }

  private areaView(addr: number, len: number): RamRegion {
    const r = this.mem.regionOf(addr, len);
    if (!r) throw new UsageError('packed.area', `queue ${this.index}: ring area not inside one RAM region (validatePackedConfig first)`, { expected: 'guest RAM', seen: `${hex(addr)}+${len}` });
    return r;
  }

  /** Buffers taken and not completed yet. */
  get inFlight(): number {
    return this.inFlightCount;
  }

  private paused = false;

  /** VIRTIO_F_SUSPEND: while paused no new chain is taken (completions still go through). */
  pause(on: boolean): void {
    this.paused = on;
  }

  /** CoreQueue.numInFlight (suspend waits for it to reach 0). */
  get numInFlight(): number {
    return this.inFlightCount;
  }

  stop(mode: 'halt' | 'detach'): void {
    this.halted = true;
    if (mode === 'detach') this.detached = true;
  }

  private fail(code: string, message: string, details: { statements?: string[]; expected?: string; seen?: string }): null {
    this.halted = true;
    this.host.driverError(new DriverMisbehaviourError(`packed.${code}`, `queue ${this.index}: ${message}`, details));
    return null;
  }

  /** True when descriptor `i` carries the AVAIL/USED pattern of an available descriptor for wrap `w`. */
  private static isAvail(flags: number, w: number): boolean {
    const a = (flags & F_AVAIL) !== 0 ? 1 : 0;
    const u = (flags & F_USED) !== 0 ? 1 : 0;
    return a === w && u !== w;
  }

  private availableNow(): boolean {
    const flags = this.dv.getUint16(this.dOff + 16 * this.nextAvail + 14, true);
    return PackedDeviceQueue.isAvail(flags, this.availWrap);
  }

  /**
   * The next available buffer, or null. packed.device.1: buffers are taken in ring order;
   * packed.device.6: a descriptor is used only once its AVAIL bit shows the driver's current wrap.
   */
  pop(): Chain | null {
    if (this.halted || this.paused) return null;
    const dv = this.dv;
    const dOff = this.dOff;
    let pos = this.nextAvail;
    let wrap = this.availWrap;
    const headFlags = dv.getUint16(dOff + 16 * pos + 14, true);
    const a = (headFlags & F_AVAIL) !== 0 ? 1 : 0;
    const u = (headFlags & F_USED) !== 0 ? 1 : 0;
    if (a !== wrap) return null; // not made available yet (or a used descriptor from the last lap)
    if (u === wrap) {
      // AVAIL and USED both equal the driver's wrap counter: a used pattern where only an available
      // descriptor (or the previous lap's used one) can be.
      return this.fail('avail_used', 'descriptor has AVAIL and USED equal at the next available position', { expected: `AVAIL=${wrap} USED=${wrap ^ 1}`, seen: `flags ${hex(headFlags)} at ${pos}` });
    }
    const c = this.spare;
    c.begin();
    let slots = 0;
    let id = 0;
    let flags = headFlags;
    for (;;) {
      if (slots >= this.maxChain) {
        return this.fail('chain_len', 'descriptor list longer than the queue size', { statements: ['packed.driver.6', 'packed.driver.7'], expected: `<= ${this.maxChain} descriptors`, seen: `more, from ${this.nextAvail}` });
      }
      const d = dOff + 16 * pos;
      if (slots > 0) {
        flags = dv.getUint16(d + 14, true);
        if (!PackedDeviceQueue.isAvail(flags, wrap)) {
          return this.fail('partial_list', 'descriptor list continues into a descriptor that is not available', { statements: ['packed.driver.11', 'packed.driver.10'], expected: `AVAIL=${wrap} USED=${wrap ^ 1} at ${pos}`, seen: `flags ${hex(flags)}` });
        }
      }
      const lo = dv.getUint32(d, true);
      const hi = dv.getUint32(d + 4, true);
      const len = dv.getUint32(d + 8, true);
      id = dv.getUint16(d + 12, true);
      slots++;
      pos++;
      if (pos === this.size) {
        pos = 0;
        wrap ^= 1;
      }
      if (flags & F_INDIRECT) {
        if (!this.indirect) return this.fail('indirect_unneg', 'INDIRECT set without VIRTIO_F_INDIRECT_DESC', { statements: ['packed.driver.12'], seen: `flags ${hex(flags)}` });
        if (flags & F_NEXT || slots > 1) {
          return this.fail('indirect_in_list', 'indirect descriptor inside a list linked by NEXT', { statements: ['packed.driver.15'], seen: `flags ${hex(flags)} as descriptor ${slots} of the list` });
        }
        if (!this.walkIndirect(lo, hi, len, c)) return null;
        break;
      }
      if (this.addSegment(lo, hi, len, (flags & F_WRITE) !== 0, c)) return null;
      if ((flags & F_NEXT) === 0) break;
    }
    if (id >= this.size) return this.fail('id_range', 'buffer id out of range', { expected: `< ${this.size}`, seen: String(id) });
    const prev = this.chains[id];
    if (prev && prev.busy) return this.fail('id_busy', 'buffer id already in flight', { expected: 'an id the device has completed', seen: String(id) });
    c.end();
    c.id = id;
    c.descCount = slots;
    c.busy = true;
    c.done = false;
    c.written = 0;
    this.chains[id] = c;
    this.spare = prev ?? new PackedChain();
    this.inFlightCount++;
    if (this.inOrder) {
      this.order[(this.orderFront + this.orderCount) % this.size] = id;
      this.orderCount++;
    }
    this.nextAvail = pos;
    this.availWrap = wrap;
    this.stats.popped++;
    return c;
  }

  /** Validate one buffer element and add it to `c`; returns true on error (already reported). */
  private addSegment(lo: number, hi: number, len: number, write: boolean, c: PackedChain): boolean {
    if (!write && c.nW > 0) {
      this.fail('order', 'device-readable element after a device-writable one', { statements: ['packed.driver.8'], seen: `readable ${hex(len)} bytes after ${c.nW} writable` });
      return true;
    }
    const addr = hi * TWO32 + lo;
    if (hi >= 0x20_0000 || !this.mem.regionOf(addr, len)) {
      this.fail('buffer_ram', 'buffer element outside guest RAM', { expected: 'an element inside RAM', seen: `${hex(hi)}:${hex(lo)}+${hex(len)}` });
      return true;
    }
    const total = (write ? c.writableLen : c.readableLen) + len;
    if (total > 0xffff_ffff) {
      this.fail('total_len', 'buffer longer than 2^32 - 1 bytes', { seen: `${total}` });
      return true;
    }
    if (write) c.writableLen = total;
    else c.readableLen = total;
    if (len > 0) c.add(write, addr, len);
    return false;
  }

  /** Read an indirect table (table length a non-zero multiple of 16, at most maxChain entries) into `c`; false on error. */
  private walkIndirect(lo: number, hi: number, len: number, c: PackedChain): boolean {
    const table = hi * TWO32 + lo;
    if (len === 0 || len % 16 !== 0) return this.fail('indirect_len', 'indirect table length is not a non-zero multiple of 16', { expected: 'n * 16, n >= 1', seen: String(len) }) ?? false;
    const n = len / 16;
    if (n > this.maxChain) return this.fail('indirect_count', 'indirect table has more entries than the device allows', { statements: ['packed.driver.14'], expected: `<= ${this.maxChain}`, seen: String(n) }) ?? false;
    const r = hi >= 0x20_0000 ? undefined : this.mem.regionOf(table, len);
    if (!r) return this.fail('indirect_ram', 'indirect table outside guest RAM', { seen: `${hex(table)}+${len}` }) ?? false;
    const view = r.view;
    const base = table - r.base;
    for (let i = 0; i < n; i++) {
      const d = base + 16 * i;
      const elo = view.getUint32(d, true);
      const ehi = view.getUint32(d + 4, true);
      const elen = view.getUint32(d + 8, true);
      const eflags = view.getUint16(d + 14, true);
      // Only WRITE is meaningful inside a table; NEXT and the buffer id are ignored by the device.
      // An INDIRECT flag here asks for a nested table, which is not allowed.
      if (eflags & F_INDIRECT) return this.fail('indirect_nested', 'INDIRECT inside an indirect table', { statements: ['packed.driver.13'], seen: `entry ${i} flags ${hex(eflags)}` }) ?? false;
      if (this.addSegment(elo, ehi, elen, (eflags & F_WRITE) !== 0, c)) return false;
    }
    return true;
  }

  /**
   * Complete buffer `chain.id`, `written` bytes written into its writable part (clamped to it).
   * packed.device.2: used descriptors are written in completion order; with IN_ORDER they are
   * released in the order the buffers were taken (the queue holds early completions back).
   * After a detach (reset / queue reset) completions are dropped: the ring is not touched again.
   */
  push(chain: Chain, written: number): void {
    if (this.detached) return;
    const id = chain.id;
    const f = id >= 0 && id < this.size ? this.chains[id] : undefined;
    if (!f || f !== chain || !f.busy || f.done) {
      this.modelErrors++; // not a buffer of this ring instance, or completed already
      return;
    }
    let n = written >>> 0;
    if (!(written >= 0)) n = 0;
    f.written = Math.min(n, f.writableLen);
    if (!this.inOrder) {
      f.busy = false;
      this.inFlightCount--;
      this.writeUsed(id, f.written, f.descCount);
      return;
    }
    f.done = true;
    while (this.orderCount > 0) {
      const g = this.chains[this.order[this.orderFront]!]!;
      if (!g.done) break;
      this.orderFront = (this.orderFront + 1) % this.size;
      this.orderCount--;
      g.busy = false;
      g.done = false;
      this.inFlightCount--;
      // IN_ORDER batch: one used descriptor carrying the last buffer's id; the driver treats the
      // buffers before it as fully used, so a buffer is folded in only behind completely written ones.
      const full = g.written === g.writableLen;
      if (this.hasPending && this.pendingFull) {
        this.pendingId = g.id;
        this.pendingLen = g.written;
        this.pendingSlots += g.descCount;
        this.pendingFull = full;
      } else {
        if (this.hasPending) this.writeUsed(this.pendingId, this.pendingLen, this.pendingSlots);
        this.hasPending = true;
        this.pendingId = g.id;
        this.pendingLen = g.written;
        this.pendingSlots = g.descCount;
        this.pendingFull = full;
      }
    }
  }

  private writeUsed(id: number, len: number, slots: number): void {
    const write = len > 0;
    const dv = this.dv;
    const d = this.dOff + 16 * this.nextUsed;
    dv.setUint32(d + 8, write ? len : 0, true);
    dv.setUint16(d + 12, id, true);
    // flags last: AVAIL = USED = the device wrap counter (packed.device.7: nothing changes after)
    dv.setUint16(d + 14, (this.usedWrap ? F_AVAIL | F_USED : 0) | (write ? F_WRITE : 0), true);
    this.nextUsed += slots;
    if (this.nextUsed >= this.size) {
      this.nextUsed -= this.size;
      this.usedWrap ^= 1;
    }
    this.usedSinceFlush += slots;
    this.stats.used++;
    this.stats.usedDescriptorsWritten++;
  }

  /** After a batch of pushes: send a used-buffer notification if the driver's event suppression asks for one. */
  flush(): void {
    if (this.detached) return;
    if (this.hasPending) {
      this.hasPending = false;
      this.writeUsed(this.pendingId, this.pendingLen, this.pendingSlots);
    }
    const count = this.usedSinceFlush;
    if (count === 0) return;
    this.usedSinceFlush = 0;
    if (this.needEvent(count)) {
      this.stats.signals++;
      this.host.signalUsed(this.index);
    } else {
      this.stats.suppressed++;
    }
  }

  private needEvent(count: number): boolean {
    const desc = this.drv.getUint16(this.drvOff, true);
    const flags = this.drv.getUint16(this.drvOff + 2, true) & 3;
    if (flags === Packed.EVENT_FLAGS_DISABLE) return false;
    // DESC without EVENT_IDX, and the reserved value 3, are driver errors; notifying is the safe reading.
    if (flags !== Packed.EVENT_FLAGS_DESC || !this.eventIdx) return true;
    if (count >= this.size) return true;
    let off = desc & 0x7fff;
    const wrap = desc >>> 15;
    if (wrap !== this.usedWrap) off -= this.size;
    const nu = this.nextUsed;
    const old = nu - count;
    // the event slot lies in [old, new): the used descriptors just written passed it
    return off >= old && off < nu;
  }

  /** Ask the driver not to notify (device event suppression: DISABLE). */
  disableNotify(): void {
    if (this.detached) return;
    this.devv.setUint16(this.devOff + 2, Packed.EVENT_FLAGS_DISABLE, true);
  }

  /**
   * Ask for notifications again (with EVENT_IDX: at the next available position). Returns false
   * when a buffer is already available (the caller polls again instead of sleeping).
   */
  enableNotify(): boolean {
    if (this.detached) return true;
    if (this.eventIdx) {
      this.devv.setUint16(this.devOff, this.nextAvail | (this.availWrap << 15), true);
      this.devv.setUint16(this.devOff + 2, Packed.EVENT_FLAGS_DESC, true);
    } else {
      this.devv.setUint16(this.devOff + 2, Packed.EVENT_FLAGS_ENABLE, true);
    }
    if (this.halted) return true;
    return !this.availableNow();
  }

  /** Where the device will look next (for NOTIFICATION_DATA checks and tests). */
  get availPosition(): { off: number; wrap: number } {
    return { off: this.nextAvail, wrap: this.availWrap };
  }

  get usedPosition(): { off: number; wrap: number } {
    return { off: this.nextUsed, wrap: this.usedWrap };
  }
}

/** The packed ring layout, installed in the core next to the split one. */
export const packedLayout: RingLayout = {
  name: 'packed',
  validate(cfg: Readonly<QueueConfig>, mem: GuestMemory, opts: RingOptions): DriverMisbehaviourError | null {
    return validatePackedConfig(cfg, mem, opts);
  },
  create(host: RingHost, cfg: Readonly<QueueConfig>, opts: RingOptions): PackedDeviceQueue {
    return new PackedDeviceQueue(host, cfg, opts);
  },
};
