/**
 * Device side of the split virtqueue (split-ring.tex): takes descriptor chains from the
 * available ring, validates them completely before a model sees them, and writes the used ring.
 *
 * Robustness (see ROBUSTNESS.md): every walk is bounded (a direct chain by the queue size, an
 * indirect chain by its table's entry count), every index is range-checked before use, every
 * descriptor field is read from guest memory exactly once per visit, and every buffer is checked
 * to lie in guest RAM. A malformed chain is never returned: the queue reports a driver error to
 * the core, which sets DEVICE_NEEDS_RESET, sends a configuration-change notification and stops
 * every queue (chains already taken may still be completed).
 *
 * Hot path: ring fields are read through the cached DataView of the RAM region holding each ring
 * area, and each head index owns a pooled Chain object whose segment arrays are reused, so a
 * steady state pop/push allocates nothing.
 */
import type { GuestMemory, RamRegion } from '../machine/memory.ts';
import { DriverMisbehaviourError, hex } from '../../spec-refs/errors.ts';
import { Split } from '../../spec-refs/abi/virtio.ts';
import type { Chain } from './model.ts';
import { PooledChain } from './chain-pool.ts';
import type { CoreQueue, QueueConfig, RingHost, RingLayout, RingOptions } from './ring.ts';

const TWO32 = 0x1_0000_0000;
/** Largest indirect table accepted: as many entries as the largest queue (split.device.2 allows a limit). */
export const MAX_INDIRECT_ENTRIES = Split.MAX_SIZE;

/** Sizes of the three split ring areas for a queue of `size` entries (split-ring.tex, "Virtqueue Part Sizes"). */
export function splitAreaSizes(size: number): { desc: number; avail: number; used: number } {
  return { desc: 16 * size, avail: 6 + 2 * size, used: 6 + 8 * size };
}

/** Legacy contiguous layout: descriptor table, available ring, then the used ring aligned to `align`. */
export function legacySplitLayout(base: number, size: number, align: number): { desc: number; driver: number; device: number; total: number } {
  const s = splitAreaSizes(size);
  const driver = base + s.desc;
  const device = Math.ceil((driver + s.avail) / align) * align;
  return { desc: base, driver, device, total: device + s.used - base };
}

function isPow2(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

function regionFor(mem: GuestMemory, addr: number, len: number): RamRegion | undefined {
  return mem.regionOf(addr, len);
}

export class SplitDeviceQueue implements CoreQueue {
  readonly layout = 'split' as const;
  readonly index: number;
  readonly size: number;
  private readonly mask: number;
  private readonly host: RingHost;
  private readonly mem: GuestMemory;
  private readonly eventIdx: boolean;
  private readonly indirectOk: boolean;
  private readonly inOrder: boolean;
  /** IN_ORDER: heads in the order they were taken, completion marks, and the pending batch. */
  private readonly order: Uint16Array;
  private orderFront = 0;
  private orderCount = 0;
  private readonly doneLen: Float64Array;
  private batch: { id: number; len: number; count: number; full: boolean } | null = null;
  // cached views of the three areas
  private readonly dv: DataView;
  private readonly dOff: number;
  private readonly av: DataView;
  private readonly aOff: number;
  private readonly uv: DataView;
  private readonly uOff: number;

  private lastAvail = 0;
  private shadowAvail = 0;
  private usedIdx = 0;
  private signalledUsed = 0;
  private pushesSinceSignal = 0;
  private notifyEnabled = true;
  private running = true;
  private detached = false;
  private readonly inFlight: Uint8Array;
  private readonly chains: (PooledChain | undefined)[];
  numInFlight = 0;
  /** Completions the model got wrong (unknown or twice-completed chain); ignored. */
  modelErrors = 0;

  constructor(host: RingHost, cfg: Readonly<QueueConfig>, opts: RingOptions) {
    this.host = host;
    this.mem = host.mem;
    this.index = cfg.index;
    this.size = cfg.size;
    this.mask = cfg.size - 1;
    this.eventIdx = opts.eventIdx;
    this.indirectOk = opts.indirect;
    this.inOrder = opts.inOrder;
    this.order = new Uint16Array(opts.inOrder ? cfg.size : 0);
    this.doneLen = new Float64Array(opts.inOrder ? cfg.size : 0).fill(-1);
    const s = splitAreaSizes(cfg.size);
    // validate() has checked that each area lies in one RAM region
    const d = regionFor(this.mem, cfg.desc, s.desc)!;
    const a = regionFor(this.mem, cfg.driver, s.avail)!;
    const u = regionFor(this.mem, cfg.device, s.used)!;
    this.dv = d.view;
    this.dOff = cfg.desc - d.base;
    this.av = a.view;
    this.aOff = cfg.driver - a.base;
    this.uv = u.view;
    this.uOff = cfg.device - u.base;
    this.inFlight = new Uint8Array(cfg.size);
    this.chains = new Array<PooledChain | undefined>(cfg.size);
    // A new ring starts with every index at 0 (the driver zeroes its areas before enabling the queue).
  }

  private paused = false;

  /** VIRTIO_F_SUSPEND: while paused the ring takes no new chain (completions still go through). */
  pause(on: boolean): void {
    this.paused = on;
  }

  stop(mode: 'halt' | 'detach'): void {
    this.running = false;
    if (mode === 'detach') this.detached = true;
  }

  get lastAvailIdx(): number {
    return this.lastAvail;
  }

  get usedIndex(): number {
    return this.usedIdx;
  }

  private fail(code: string, message: string, statements: string[], expected?: string, seen?: string): null {
    this.running = false;
    this.host.driverError(new DriverMisbehaviourError(code, `queue ${this.index}: ${message}`, { statements, expected, seen }));
    return null;
  }

  pop(): Chain | null {
    if (!this.running || this.paused) return null;
    const last = this.lastAvail;
    if (last === this.shadowAvail) {
      const idx = this.av.getUint16(this.aOff + 2, true);
      const pending = (idx - last) & 0xffff;
      if (pending === 0) return null;
      // An index more than a queue size ahead (or behind, which wraps to the same) cannot be valid.
      if (pending > this.size) {
        return this.fail('split.avail_idx', 'available idx moved by more than the queue size (or backwards)', ['split.driver.11'], `at most ${this.size} ahead of ${last}`, String(idx));
      }
      this.shadowAvail = idx;
    }
    const head = this.av.getUint16(this.aOff + 4 + 2 * (last & this.mask), true);
    if (head >= this.size) {
      return this.fail('split.head_range', 'available ring entry out of range', [], `< ${this.size}`, String(head));
    }
    if (this.inFlight[head]) {
      return this.fail('split.head_twice', 'head made available again while still in flight', ['status_init.driver.13'], 'a head that was completed', `head ${head} in flight`);
    }
    const chain = this.walk(head);
    if (!chain) return null;
    this.lastAvail = (last + 1) & 0xffff;
    this.inFlight[head] = 1;
    this.numInFlight++;
    if (this.inOrder) {
      this.order[(this.orderFront + this.orderCount) & this.mask] = head;
      this.orderCount++;
    }
    // split.device.21: with EVENT_IDX, ask for a notification when the next entry is published.
    if (this.eventIdx && this.notifyEnabled) this.uv.setUint16(this.uOff + 4 + 8 * this.size, this.lastAvail, true);
    return chain;
  }

  /** Walk and validate the chain starting at `head`; null (after reporting) when it is malformed. */
  private walk(head: number): PooledChain | null {
    let c = this.chains[head];
    if (!c) c = this.chains[head] = new PooledChain(head);
    c.begin();
    const mem = this.mem;
    let view = this.dv;
    let base = this.dOff;
    let tableLen = this.size;
    let limit = this.size;
    let count = 0;
    let i = head;
    let inIndirect = false;
    let totR = 0;
    let totW = 0;
    let sawWritable = false;
    let descCount = 0;
    for (;;) {
      if (count >= limit) {
        return this.fail('split.chain_loop', inIndirect ? 'indirect chain loops or is longer than its table' : 'chain loops or is longer than the queue size', ['split.driver.4', 'split.driver.8'], `at most ${limit} descriptors`, `more, from head ${head}`);
      }
      count++;
      if (!inIndirect) descCount++;
      // Each field is read exactly once (the driver may change it between two reads).
      const o = base + 16 * i;
      const lo = view.getUint32(o, true);
      const hi = view.getUint32(o + 4, true);
      const len = view.getUint32(o + 8, true);
      const flags = view.getUint16(o + 12, true);
      const next = view.getUint16(o + 14, true);
      if (flags & Split.DESC_F_INDIRECT) {
        // split.device.7: the WRITE flag of the descriptor pointing to a table is ignored.
        if (inIndirect) return this.fail('split.indirect_nested', 'indirect descriptor inside an indirect table', ['split.driver.7']);
        if (!this.indirectOk) return this.fail('split.indirect_unnegotiated', 'indirect descriptor without VIRTIO_F_INDIRECT_DESC', ['split.driver.6']);
        if (flags & Split.DESC_F_NEXT) return this.fail('split.indirect_next', 'descriptor with both INDIRECT and NEXT', ['split.driver.9']);
        if (len === 0 || len % 16 !== 0) return this.fail('split.indirect_len', 'indirect table length is not a positive multiple of 16', [], 'n * 16, n >= 1', String(len));
        const n = len / 16;
        if (n > MAX_INDIRECT_ENTRIES) return this.fail('split.indirect_size', 'indirect table too large', ['split.device.2', 'split.driver.8'], `at most ${MAX_INDIRECT_ENTRIES} entries`, String(n));
        if (hi >= 0x20_0000) return this.fail('split.addr_range', 'indirect table outside guest RAM', [], 'an address in RAM', `hi=${hex(hi)}`);
        const addr = hi * TWO32 + lo;
        const r = regionFor(mem, addr, len);
        if (!r) return this.fail('split.addr_range', 'indirect table outside guest RAM or across a hole', [], 'a table inside one RAM region', `${hex(addr)}+${len}`);
        view = r.view;
        base = addr - r.base;
        tableLen = n;
        limit = n;
        count = 0;
        i = 0;
        inIndirect = true;
        continue;
      }
      if (len !== 0) {
        if (hi >= 0x20_0000) return this.fail('split.addr_range', 'buffer outside guest RAM', [], 'an address in RAM', `hi=${hex(hi)}`);
        const addr = hi * TWO32 + lo;
        if (!mem.isRam(addr, len)) return this.fail('split.addr_range', 'buffer outside guest RAM, across a hole, or wrapping', [], 'a buffer in RAM', `${hex(addr)}+${hex(len)}`);
        if (flags & Split.DESC_F_WRITE) totW += len;
        else totR += len;
        c.add((flags & Split.DESC_F_WRITE) !== 0, addr, len);
        if (totR + totW > TWO32) return this.fail('split.total_len', 'chain longer than 2^32 bytes in total', ['split.driver.4'], '<= 2^32 bytes', String(totR + totW));
      }
      if (flags & Split.DESC_F_WRITE) sawWritable = true;
      else if (sawWritable) return this.fail('split.order', 'device-readable descriptor after a device-writable one', ['split.driver.2'], 'readable descriptors first', `readable after writable in chain ${head}`);
      if (!(flags & Split.DESC_F_NEXT)) break;
      if (next >= tableLen) return this.fail('split.next_range', 'next index out of range', [], `< ${tableLen}`, String(next));
      if (this.inOrder) {
        // split.driver.5 / split.driver.10: with IN_ORDER, descriptors follow each other in ring / table order
        const want = inIndirect ? i + 1 : (i + 1) & this.mask;
        if (next !== want) return this.fail('split.in_order_next', 'IN_ORDER chain does not use the next descriptor in order', [inIndirect ? 'split.driver.10' : 'split.driver.5'], String(want), String(next));
      }
      i = next;
    }
    if (totR > 0xffff_ffff || totW > 0xffff_ffff) return this.fail('split.total_len', 'chain direction longer than 2^32 - 1 bytes', ['split.driver.4'], '< 2^32 bytes', `${totR} / ${totW}`);
    c.end();
    c.readableLen = totR;
    c.writableLen = totW;
    c.descCount = descCount;
    return c;
  }

  push(chain: Chain, written: number): void {
    if (this.detached) return; // status_init.device.5: nothing after a reset
    const id = chain.id;
    if (!(id >= 0 && id < this.size) || this.chains[id] !== chain || !this.inFlight[id]) {
      this.modelErrors++;
      return;
    }
    // used.len never exceeds the writable bytes (split.device.16 / split.driver.17)
    let n = written >>> 0;
    if (!(written >= 0)) n = 0;
    if (n > chain.writableLen) n = chain.writableLen;
    if (this.inOrder) {
      this.pushInOrder(id, n);
      return;
    }
    const uv = this.uv;
    const slot = this.uOff + 4 + 8 * (this.usedIdx & this.mask);
    uv.setUint32(slot, id, true);
    uv.setUint32(slot + 4, n, true);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    // split.device.15: the element (len included) is written before idx is published
    uv.setUint16(this.uOff + 2, this.usedIdx, true);
    this.inFlight[id] = 0;
    this.numInFlight--;
    this.pushesSinceSignal++;
  }

  /**
   * IN_ORDER: completions leave in the order the buffers were taken (early ones wait), and a run
   * of buffers is reported with one used entry for the last of them, used idx moving by the run's
   * length. Only buffers written completely are folded into a run, since the driver takes the
   * buffers before the reported one as fully used (split-ring.tex "In-order use of descriptors").
   */
  private pushInOrder(id: number, n: number): void {
    if (this.doneLen[id]! >= 0) {
      this.modelErrors++;
      return;
    }
    this.doneLen[id] = n;
    while (this.orderCount > 0) {
      const head = this.order[this.orderFront]!;
      const len = this.doneLen[head]!;
      if (len < 0) break;
      this.orderFront = (this.orderFront + 1) & this.mask;
      this.orderCount--;
      this.doneLen[head] = -1;
      this.inFlight[head] = 0;
      this.numInFlight--;
      const full = len === this.chains[head]!.writableLen;
      const b = this.batch;
      if (b && b.full) {
        b.id = head;
        b.len = len;
        b.count++;
        b.full = full;
      } else {
        if (b) this.writeBatch(b);
        this.batch = { id: head, len, count: 1, full };
      }
    }
  }

  private writeBatch(b: { id: number; len: number; count: number }): void {
    const uv = this.uv;
    const slot = this.uOff + 4 + 8 * (this.usedIdx & this.mask);
    uv.setUint32(slot, b.id, true);
    uv.setUint32(slot + 4, b.len, true);
    this.usedIdx = (this.usedIdx + b.count) & 0xffff;
    uv.setUint16(this.uOff + 2, this.usedIdx, true);
    this.pushesSinceSignal += b.count;
  }

  flush(): void {
    if (this.detached) return;
    if (this.batch) {
      this.writeBatch(this.batch);
      this.batch = null;
    }
    const newIdx = this.usedIdx;
    const old = this.signalledUsed;
    if (this.pushesSinceSignal === 0) return;
    const many = this.pushesSinceSignal >= 0x10000;
    this.signalledUsed = newIdx;
    this.pushesSinceSignal = 0;
    let need: boolean;
    if (this.eventIdx) {
      // split.device.12: flags ignored; split.device.13/14: notify when used idx passes used_event
      const ev = this.av.getUint16(this.aOff + 4 + 2 * this.size, true);
      need = many || ((newIdx - ev - 1) & 0xffff) < ((newIdx - old) & 0xffff);
    } else {
      // split.device.9: used_event ignored; split.device.10/11: flags bit 0 suppresses
      need = (this.av.getUint16(this.aOff, true) & Split.AVAIL_F_NO_INTERRUPT) === 0;
    }
    if (need) this.host.signalUsed(this.index);
  }

  disableNotify(): void {
    if (this.detached) return;
    this.notifyEnabled = false;
    // split.device.19/20: flags only without EVENT_IDX; with it, avail_event simply stops advancing
    if (!this.eventIdx) this.uv.setUint16(this.uOff, Split.USED_F_NO_NOTIFY, true);
  }

  enableNotify(): boolean {
    if (this.detached) return true;
    this.notifyEnabled = true;
    if (this.eventIdx) this.uv.setUint16(this.uOff + 4 + 8 * this.size, this.lastAvail, true);
    else this.uv.setUint16(this.uOff, 0, true);
    if (!this.running) return true;
    return this.av.getUint16(this.aOff + 2, true) === this.lastAvail;
  }
}

function overlaps(a: number, al: number, b: number, bl: number): boolean {
  return a < b + bl && b < a + al;
}

/** The split ring layout, registered with the core by default. */
export const splitLayout: RingLayout = {
  name: 'split',
  validate(cfg: Readonly<QueueConfig>, mem: GuestMemory): DriverMisbehaviourError | null {
    const size = cfg.size;
    if (!isPow2(size) || size > Split.MAX_SIZE) {
      return new DriverMisbehaviourError('split.size', `queue ${cfg.index}: split queue size must be a power of two up to 32768`, { expected: 'a power of two', seen: String(size) });
    }
    const s = splitAreaSizes(size);
    const areas: [string, number, number, number][] = [
      ['descriptor table', cfg.desc, s.desc, Split.DESC_ALIGN],
      ['available ring', cfg.driver, s.avail, Split.AVAIL_ALIGN],
      ['used ring', cfg.device, s.used, Split.USED_ALIGN],
    ];
    for (const [name, addr, len, align] of areas) {
      if (!Number.isSafeInteger(addr) || addr % align !== 0) {
        return new DriverMisbehaviourError('split.align', `queue ${cfg.index}: ${name} misaligned`, { statements: ['split.driver.1'], expected: `a multiple of ${align}`, seen: hex(addr) });
      }
      if (!mem.regionOf(addr, len)) {
        return new DriverMisbehaviourError('split.area_range', `queue ${cfg.index}: ${name} not inside one RAM region`, { statements: ['split.driver.1'], expected: 'guest RAM', seen: `${hex(addr)}+${hex(len)}` });
      }
    }
    for (let a = 0; a < 3; a++) {
      for (let b = a + 1; b < 3; b++) {
        const [na, aa, la] = areas[a]!;
        const [nb, ab, lb] = areas[b]!;
        if (overlaps(aa, la, ab, lb)) {
          return new DriverMisbehaviourError('split.overlap', `queue ${cfg.index}: ${na} overlaps ${nb}`, { expected: 'disjoint ring areas', seen: `${hex(aa)}+${hex(la)} and ${hex(ab)}+${hex(lb)}` });
        }
      }
    }
    return null;
  },
  create(host: RingHost, cfg: Readonly<QueueConfig>, opts: RingOptions): SplitDeviceQueue {
    return new SplitDeviceQueue(host, cfg, opts);
  },
};
