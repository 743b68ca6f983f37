/**
 * Virtqueue pretty-printers that read the rings straight from guest memory, following the
 * layouts of VIRTIO 1.4 (split-ring.tex: descriptor table, available ring, used ring, and the
 * used_event / avail_event words after the rings; packed-ring.tex: the descriptor ring with its
 * AVAIL/USED flag bits and the two event-suppression structures). They never ask a driver or a
 * device model: what they show is what is in shared memory, so a wrong ring looks wrong.
 *
 * Which descriptors are free, in flight or used is not written in shared memory as such; a
 * RingWatcher works it out by following the rings as they move (it reads every new available
 * and used entry once, as a device and a driver would) and keeps its own per-descriptor state.
 * Reads are bounded by the queue size; a corrupt chain shows as such and never loops.
 */
import type { GuestMemoryAccess } from '../../spec-refs/platform/guest-memory.ts';
import { Packed, Split } from '../../spec-refs/abi/virtio.ts';

export interface RingAddresses {
  readonly size: number;
  /** split: descriptor table; packed: descriptor ring */
  readonly desc: number;
  /** split: available ring; packed: driver event suppression */
  readonly driver: number;
  /** split: used ring; packed: device event suppression */
  readonly device: number;
}

export interface SplitDesc {
  readonly i: number;
  readonly addr: number;
  readonly len: number;
  readonly flags: number;
  readonly next: number;
}

export interface SplitSnapshot {
  readonly layout: 'split';
  readonly size: number;
  readonly desc: SplitDesc[];
  readonly avail: { flags: number; idx: number; ring: number[]; usedEvent: number };
  readonly used: { flags: number; idx: number; ring: { id: number; len: number }[]; availEvent: number };
}

export interface PackedDesc {
  readonly i: number;
  readonly addr: number;
  readonly len: number;
  readonly id: number;
  readonly flags: number;
  /** The AVAIL (bit 7) and USED (bit 15) flag bits. */
  readonly avail: boolean;
  readonly used: boolean;
}

export interface EventSuppression {
  /** Descriptor ring offset (bits 0..14) and wrap counter (bit 15) of desc_event_off_wrap. */
  readonly off: number;
  readonly wrap: number;
  /** 0 enable, 1 disable, 2 desc (only with EVENT_IDX). */
  readonly flags: number;
}

export interface PackedSnapshot {
  readonly layout: 'packed';
  readonly size: number;
  readonly desc: PackedDesc[];
  /** Driver event suppression: where the driver wants used-buffer notifications. */
  readonly driverEvent: EventSuppression;
  /** Device event suppression: where the device wants available-buffer notifications. */
  readonly deviceEvent: EventSuppression;
}

const MAX_SHOWN = 32768;

function boundedSize(size: number): number {
  return Math.max(0, Math.min(MAX_SHOWN, size | 0));
}

/** Read a split ring (split-ring.tex "The Virtqueue Descriptor Table", "Available Ring", "Used Ring"). */
export function readSplit(mem: GuestMemoryAccess, q: RingAddresses): SplitSnapshot {
  const n = boundedSize(q.size);
  const desc: SplitDesc[] = [];
  for (let i = 0; i < n; i++) {
    const o = q.desc + Split.DESC_SIZE * i;
    desc.push({ i, addr: mem.read64(o), len: mem.read32(o + 8), flags: mem.read16(o + 12), next: mem.read16(o + 14) });
  }
  const ring: number[] = [];
  for (let i = 0; i < n; i++) ring.push(mem.read16(q.driver + 4 + 2 * i));
  const used: { id: number; len: number }[] = [];
  for (let i = 0; i < n; i++) used.push({ id: mem.read32(q.device + 4 + 8 * i), len: mem.read32(q.device + 8 + 8 * i) });
  return {
    layout: 'split',
    size: n,
    desc,
    avail: { flags: mem.read16(q.driver), idx: mem.read16(q.driver + 2), ring, usedEvent: mem.read16(q.driver + 4 + 2 * n) },
    used: { flags: mem.read16(q.device), idx: mem.read16(q.device + 2), ring: used, availEvent: mem.read16(q.device + 4 + 8 * n) },
  };
}

function readEvent(mem: GuestMemoryAccess, at: number): EventSuppression {
  const offWrap = mem.read16(at);
  return { off: offWrap & 0x7fff, wrap: offWrap >> 15, flags: mem.read16(at + 2) & 3 };
}

/** Read a packed ring (packed-ring.tex "Packed Virtqueue Descriptor", "Event Suppression Structure Format"). */
export function readPacked(mem: GuestMemoryAccess, q: RingAddresses): PackedSnapshot {
  const n = boundedSize(q.size);
  const desc: PackedDesc[] = [];
  for (let i = 0; i < n; i++) {
    const o = q.desc + Packed.DESC_SIZE * i;
    const flags = mem.read16(o + 14);
    desc.push({ i, addr: mem.read64(o), len: mem.read32(o + 8), id: mem.read16(o + 12), flags, avail: (flags & Packed.DESC_F_AVAIL) !== 0, used: (flags & Packed.DESC_F_USED) !== 0 });
  }
  return { layout: 'packed', size: n, desc, driverEvent: readEvent(mem, q.driver), deviceEvent: readEvent(mem, q.device) };
}

export type DescState = 'free' | 'in-flight' | 'used';

/** A buffer the watcher has seen posted: its head (split) or buffer id (packed) and its descriptors. */
export interface WatchedBuffer {
  readonly id: number;
  readonly descs: number[];
  state: 'in-flight' | 'used';
  /** Bytes written, as the device reported in the used element. */
  written?: number;
  /** Virtual time (ns) it was seen posted / seen used, when the watcher was given a clock. */
  postedAt?: number;
  usedAt?: number;
}

/** Something odd the watcher saw in the rings (a chain longer than the ring, a used id never posted...). */
export interface RingAnomaly {
  readonly what: string;
  readonly at?: number;
}

/**
 * Follows one ring over time and keeps per-descriptor state, from memory alone. Call sync()
 * whenever the ring may have moved (the REPL does after every step). `collected(n)` tells it the
 * driver took n used buffers back (their descriptors are free again); without it, used buffers
 * stay "used" until the driver posts their descriptors again.
 */
export class RingWatcher {
  readonly layout: 'split' | 'packed';
  readonly q: RingAddresses;
  private readonly mem: GuestMemoryAccess;
  private readonly clock: (() => number) | undefined;
  /** Per-descriptor (split) or per-slot (packed) state. */
  readonly state: DescState[];
  /** Buffers posted and not yet collected, by id, in the order they were posted. */
  readonly buffers = new Map<number, WatchedBuffer>();
  /** Used buffers in the order the device returned them, not yet collected. */
  private readonly usedOrder: number[] = [];
  readonly anomalies: RingAnomaly[] = [];
  /** Counters: buffers seen posted and seen used since the watcher started. */
  posted = 0;
  completed = 0;
  // split progress
  private seenAvail = 0;
  private seenUsed = 0;
  // packed progress: the next slot the driver will make available / the device will mark used, with wrap counters
  nextAvail = 0;
  availWrap = 1;
  nextUsed = 0;
  usedWrap = 1;

  /**
   * `fromStart`: the ring is new (set up since the last reset), so read it from its first entry
   * even if the driver has already posted buffers; otherwise start from what memory shows now.
   */
  constructor(mem: GuestMemoryAccess, layout: 'split' | 'packed', q: RingAddresses, clock?: () => number, fromStart = false) {
    this.mem = mem;
    this.layout = layout;
    this.q = q;
    this.clock = clock;
    this.state = new Array<DescState>(boundedSize(q.size)).fill('free');
    if (layout === 'split' && !fromStart) {
      // Start from what is in memory now (a watcher may attach to a running ring).
      this.seenAvail = mem.read16(q.driver + 2);
      this.seenUsed = mem.read16(q.device + 2);
    }
  }

  /** Read what moved since the last sync. Returns how many buffers were newly posted and newly used. */
  sync(): { posted: number; used: number } {
    return this.layout === 'split' ? this.syncSplit() : this.syncPacked();
  }

  private now(): number | undefined {
    return this.clock?.();
  }

  private note(what: string): void {
    if (this.anomalies.length < 100) this.anomalies.push({ what, at: this.now() });
  }

  private syncSplit(): { posted: number; used: number } {
    const { mem, q } = this;
    const n = this.state.length;
    let posted = 0;
    let used = 0;
    const availIdx = mem.read16(q.driver + 2);
    let pending = (availIdx - this.seenAvail) & 0xffff;
    if (pending > n) {
      this.note(`avail idx moved by ${pending}, more than the queue size ${n}: entries were overwritten before they were seen`);
      this.seenAvail = (availIdx - n) & 0xffff;
      pending = n;
    }
    for (; pending > 0; pending--) {
      const head = mem.read16(q.driver + 4 + 2 * (this.seenAvail % n));
      this.seenAvail = (this.seenAvail + 1) & 0xffff;
      if (head >= n) {
        this.note(`avail entry names descriptor ${head}, outside the table of ${n}`);
        continue;
      }
      const descs = this.walkSplit(head);
      const prev = this.buffers.get(head);
      if (prev) this.forget(prev);
      const b: WatchedBuffer = { id: head, descs, state: 'in-flight', postedAt: this.now() };
      this.buffers.set(head, b);
      for (const d of descs) this.state[d] = 'in-flight';
      posted++;
    }
    const usedIdx = mem.read16(q.device + 2);
    let newUsed = (usedIdx - this.seenUsed) & 0xffff;
    if (newUsed > n) {
      this.note(`used idx moved by ${newUsed}, more than the queue size ${n}`);
      newUsed = 0;
      this.seenUsed = usedIdx;
    }
    for (; newUsed > 0; newUsed--) {
      const slot = q.device + 4 + 8 * (this.seenUsed % n);
      const id = mem.read32(slot);
      const len = mem.read32(slot + 4);
      this.seenUsed = (this.seenUsed + 1) & 0xffff;
      const b = this.buffers.get(id);
      if (!b || b.state !== 'in-flight') {
        this.note(`used element names id ${id}, which is not a buffer in flight`);
        continue;
      }
      b.state = 'used';
      b.written = len;
      b.usedAt = this.now();
      for (const d of b.descs) this.state[d] = 'used';
      this.usedOrder.push(id);
      used++;
    }
    this.posted += posted;
    this.completed += used;
    return { posted, used };
  }

  /** The descriptors of the chain at `head` (the table entries; an indirect table counts as its one entry). */
  private walkSplit(head: number): number[] {
    const n = this.state.length;
    const out: number[] = [];
    let d = head;
    for (let k = 0; k < n; k++) {
      out.push(d);
      const flags = this.mem.read16(this.q.desc + 16 * d + 12);
      if (!(flags & Split.DESC_F_NEXT)) return out;
      d = this.mem.read16(this.q.desc + 16 * d + 14);
      if (d >= n) {
        this.note(`chain at ${head} links to descriptor ${d}, outside the table`);
        return out;
      }
    }
    this.note(`chain at ${head} is longer than the queue (a loop?)`);
    return out;
  }

  private syncPacked(): { posted: number; used: number } {
    const { mem, q } = this;
    const n = this.state.length;
    let posted = 0;
    let used = 0;
    const flagsAt = (i: number) => mem.read16(q.desc + 16 * i + 14);
    const isAvail = (f: number, wrap: number) => ((f >> 7) & 1) === wrap && ((f >> 15) & 1) !== wrap;
    const isUsed = (f: number, wrap: number) => ((f >> 7) & 1) === wrap && ((f >> 15) & 1) === wrap;
    // Buffers the driver made available: a chain ends at the first descriptor without NEXT.
    for (let guard = 0; guard < n && posted < n; guard++) {
      const f0 = flagsAt(this.nextAvail);
      if (!isAvail(f0, this.availWrap)) break;
      const slots: number[] = [];
      let id = 0;
      let complete = false;
      let pos = this.nextAvail;
      let wrap = this.availWrap;
      for (let k = 0; k < n; k++) {
        const f = flagsAt(pos);
        if (!isAvail(f, wrap)) break; // the rest of the chain is not published yet
        slots.push(pos);
        id = mem.read16(q.desc + 16 * pos + 12);
        if (++pos === n) {
          pos = 0;
          wrap ^= 1;
        }
        if (!(f & Packed.DESC_F_NEXT)) {
          complete = true;
          break;
        }
      }
      if (!complete) break;
      this.nextAvail = pos;
      this.availWrap = wrap;
      const prev = this.buffers.get(id);
      if (prev && prev.state === 'in-flight') this.note(`buffer id ${id} posted again while in flight`);
      if (prev) this.forget(prev);
      this.buffers.set(id, { id, descs: slots, state: 'in-flight', postedAt: this.now() });
      for (const s of slots) this.state[s] = 'in-flight';
      posted++;
    }
    // Buffers the device marked used: one descriptor per buffer, skipping the buffer's other slots.
    for (let guard = 0; guard < n; guard++) {
      const f = flagsAt(this.nextUsed);
      if (!isUsed(f, this.usedWrap)) break;
      const id = mem.read16(q.desc + 16 * this.nextUsed + 12);
      const len = mem.read32(q.desc + 16 * this.nextUsed + 8);
      const b = this.buffers.get(id);
      if (!b || b.state !== 'in-flight') {
        this.note(`used descriptor at slot ${this.nextUsed} names id ${id}, which is not a buffer in flight`);
        break;
      }
      b.state = 'used';
      b.written = len;
      b.usedAt = this.now();
      for (const s of b.descs) this.state[s] = 'used';
      this.usedOrder.push(id);
      const skip = b.descs.length;
      for (let k = 0; k < skip; k++) {
        if (++this.nextUsed === n) {
          this.nextUsed = 0;
          this.usedWrap ^= 1;
        }
      }
      used++;
    }
    this.posted += posted;
    this.completed += used;
    return { posted, used };
  }

  private forget(b: WatchedBuffer): void {
    this.buffers.delete(b.id);
    const i = this.usedOrder.indexOf(b.id);
    if (i >= 0) this.usedOrder.splice(i, 1);
    for (const d of b.descs) if (this.state[d] !== 'in-flight') this.state[d] = 'free';
  }

  /** The driver took back the oldest `count` used buffers: their descriptors are free. */
  collected(count = 1): void {
    for (let k = 0; k < count && this.usedOrder.length > 0; k++) {
      const id = this.usedOrder.shift()!;
      const b = this.buffers.get(id);
      if (!b) continue;
      this.buffers.delete(id);
      for (const d of b.descs) this.state[d] = 'free';
    }
  }

  /**
   * Split rings: the descriptors of `n` buffers the driver has added but not yet published. Their
   * ring entries sit just past avail.idx (the driver writes entries first and the index last).
   */
  unpublished(n: number): number[] {
    if (this.layout !== 'split' || n <= 0) return [];
    const size = this.state.length;
    const idx = this.mem.read16(this.q.driver + 2);
    const out: number[] = [];
    for (let k = 0; k < Math.min(n, size); k++) {
      const head = this.mem.read16(this.q.driver + 4 + 2 * ((idx + k) % size));
      if (head < size) out.push(...this.walkSplit(head));
    }
    return out;
  }

  counts(): Record<DescState, number> {
    const c = { free: 0, 'in-flight': 0, used: 0 };
    for (const s of this.state) c[s]++;
    return c;
  }
}

// ------------------------------------------------------------------------ rendering

const hex = (n: number, w = 0) => '0x' + n.toString(16).padStart(w, '0');

function splitFlags(f: number): string {
  const s: string[] = [];
  if (f & Split.DESC_F_NEXT) s.push('NEXT');
  if (f & Split.DESC_F_WRITE) s.push('WRITE');
  if (f & Split.DESC_F_INDIRECT) s.push('INDIRECT');
  const rest = f & ~7;
  if (rest) s.push(hex(rest));
  return s.join('|') || '-';
}

function packedFlags(f: number): string {
  const s: string[] = [];
  if (f & Packed.DESC_F_NEXT) s.push('NEXT');
  if (f & Packed.DESC_F_WRITE) s.push('WRITE');
  if (f & Packed.DESC_F_INDIRECT) s.push('INDIRECT');
  s.push(`A=${(f >> 7) & 1}`, `U=${(f >> 15) & 1}`);
  return s.join('|');
}

export interface RenderOptions {
  /** Show every descriptor, not only the ones in use (default false: free ones are summarised). */
  all?: boolean;
  /** Queue label for the title line. */
  title?: string;
  /** Descriptors added by the driver but not yet published (shown as 'added'). */
  added?: readonly number[];
}

function pad(s: string | number, w: number): string {
  return String(s).padEnd(w);
}

/** The split ring as text: descriptor table, available and used rings, event idx words. */
export function renderSplit(s: SplitSnapshot, w?: RingWatcher, opts: RenderOptions = {}): string {
  const out: string[] = [];
  const c = w?.counts();
  const added = new Set(opts.added ?? []);
  out.push(`${opts.title ?? 'virtqueue'} (split, size ${s.size})` + (c ? `: ${c.free - added.size} free, ${added.size ? `${added.size} added (not published), ` : ''}${c['in-flight']} in flight, ${c.used} used` : ''));
  out.push('  descriptor table:');
  out.push('    ' + pad('#', 6) + pad('state', 11) + pad('addr', 14) + pad('len', 8) + pad('flags', 18) + 'next');
  let hidden = 0;
  for (const d of s.desc) {
    const st = added.has(d.i) ? 'added' : (w?.state[d.i] ?? '?');
    if (!opts.all && ((st === 'free' && w) || (!w && d.flags === 0 && d.addr === 0))) {
      hidden++;
      continue;
    }
    out.push('    ' + pad(d.i, 6) + pad(st, 11) + pad(hex(d.addr), 14) + pad(d.len, 8) + pad(splitFlags(d.flags), 18) + (d.flags & Split.DESC_F_NEXT ? String(d.next) : '-'));
  }
  if (hidden) out.push(`    (${hidden} free descriptor${hidden === 1 ? '' : 's'} not shown; ring(q, {all:true}) shows them)`);
  const a = s.avail;
  const recentAvail: string[] = [];
  for (let k = Math.max(0, Math.min(8, a.idx)); k > 0; k--) {
    const p = (a.idx - k) & 0xffff;
    recentAvail.push(`[${p % s.size}]=${a.ring[p % s.size]}`);
  }
  out.push(`  avail: flags=${a.flags}${a.flags & Split.AVAIL_F_NO_INTERRUPT ? ' (NO_INTERRUPT)' : ''} idx=${a.idx}  last entries ${recentAvail.join(' ') || '(none yet)'}`);
  const u = s.used;
  const recentUsed: string[] = [];
  for (let k = Math.max(0, Math.min(8, u.idx)); k > 0; k--) {
    const p = (u.idx - k) & 0xffff;
    const e = u.ring[p % s.size]!;
    recentUsed.push(`[${p % s.size}]={id ${e.id}, len ${e.len}}`);
  }
  out.push(`  used:  flags=${u.flags}${u.flags & Split.USED_F_NO_NOTIFY ? ' (NO_NOTIFY)' : ''} idx=${u.idx}  last entries ${recentUsed.join(' ') || '(none yet)'}`);
  out.push(`  event idx: used_event=${a.usedEvent} (driver: interrupt me when used idx passes it)  avail_event=${u.availEvent} (device: notify me when avail idx passes it); only meaningful with VIRTIO_F_EVENT_IDX`);
  out.push(`  outstanding: ${(a.idx - u.idx) & 0xffff} buffer(s) made available and not yet used (avail.idx - used.idx)`);
  if (w && w.anomalies.length) for (const an of w.anomalies.slice(-5)) out.push(`  ! ${an.what}`);
  return out.join('\n');
}

/** The packed ring as text: slots with their flags and A/U bits, wrap counters, event suppression. */
export function renderPacked(s: PackedSnapshot, w?: RingWatcher, opts: RenderOptions = {}): string {
  const out: string[] = [];
  const c = w?.counts();
  out.push(`${opts.title ?? 'virtqueue'} (packed, size ${s.size})` + (c ? `: ${c.free} free, ${c['in-flight']} in flight, ${c.used} used` : ''));
  if (w) out.push(`  driver: next avail slot ${w.nextAvail}, wrap counter ${w.availWrap}   device: next used slot ${w.nextUsed}, wrap counter ${w.usedWrap}`);
  out.push('  descriptor ring:');
  out.push('    ' + pad('slot', 6) + pad('state', 11) + pad('addr', 14) + pad('len', 8) + pad('id', 6) + 'flags');
  let hidden = 0;
  for (const d of s.desc) {
    const st = w?.state[d.i] ?? '?';
    if (!opts.all && (st === 'free' || (!w && d.flags === 0 && d.addr === 0))) {
      hidden++;
      continue;
    }
    out.push('    ' + pad(d.i, 6) + pad(st, 11) + pad(hex(d.addr), 14) + pad(d.len, 8) + pad(d.id, 6) + packedFlags(d.flags));
  }
  if (hidden) out.push(`    (${hidden} free slot${hidden === 1 ? '' : 's'} not shown; ring(q, {all:true}) shows them)`);
  const ev = (e: EventSuppression) => (e.flags === 0 ? 'ENABLE' : e.flags === 1 ? 'DISABLE' : e.flags === 2 ? `DESC at slot ${e.off} wrap ${e.wrap}` : `reserved(${e.flags})`);
  out.push(`  driver event suppression (driver -> device: when to interrupt): ${ev(s.driverEvent)}`);
  out.push(`  device event suppression (device -> driver: when to notify):    ${ev(s.deviceEvent)}`);
  if (w && w.anomalies.length) for (const an of w.anomalies.slice(-5)) out.push(`  ! ${an.what}`);
  return out.join('\n');
}
