/**
 * Driver side of the split virtqueue (split-ring.tex).
 *
 * All bookkeeping lives in private memory (typed arrays): the free list and each chain's links,
 * per-head tokens, descriptor counts and writable lengths, and a per-descriptor state used to
 * judge every used element. Nothing read back from shared memory is trusted: a used element with
 * an id out of range, not outstanding, in the middle of a chain or completed twice, a used idx
 * that moves further than the buffers in flight, or a len above the writable length posted, is a
 * DeviceMisbehaviourError, after which the queue refuses further use (the driver resets the
 * device).
 */
import type { DmaAllocator, GuestMemoryAccess } from '../../spec-refs/platform/platform.ts';
import type { DmaBuffer, UsedBuffer, Virtqueue } from './virtqueue.ts';
import { IndirectTables } from './indirect-tables.ts';
import type { QueueAddresses } from '../transport/transport.ts';
import { DeviceMisbehaviourError, UsageError } from '../../spec-refs/errors.ts';
import { Split } from '../../spec-refs/abi/virtio.ts';

const TWO32 = 0x1_0000_0000;
const PAGE = 4096;

/** Descriptor states, private to the driver (DONE: free again, last used as a head the device completed). */
const D = { FREE: 0, HEAD: 1, BODY: 2, DONE: 3 } as const;

export interface SplitVirtqueueOptions {
  readonly index: number;
  /** Queue size: a power of two up to 32768. */
  readonly size: number;
  /** VIRTIO_F_EVENT_IDX negotiated. */
  readonly eventIdx: boolean;
  /** VIRTIO_F_INDIRECT_DESC negotiated. */
  readonly indirect: boolean;
  /**
   * Use an indirect table for a buffer of at least this many elements when indirect descriptors
   * are negotiated (default 2: every multi-element buffer; Infinity: never).
   */
  readonly indirectThreshold?: number;
  /** Legacy transports: put the ring in one contiguous page-aligned area, used ring aligned to this. */
  readonly legacyAlign?: number;
  /** VIRTIO_F_IN_ORDER negotiated: descriptors in ring order, and a used entry may stand for a batch. */
  readonly inOrder?: boolean;
  /** VIRTIO_F_NOTIFICATION_DATA negotiated: notifications carry the avail index. */
  readonly notificationData?: boolean;
  /**
   * Called by kick() when the device wants a notification; `data` is the 32-bit NOTIFICATION_DATA
   * value (queue index | avail idx << 16) when negotiated.
   */
  readonly notify: (data?: number) => void;
}

export class SplitVirtqueue<T = unknown> implements Virtqueue<T> {
  readonly index: number;
  readonly size: number;
  readonly layout = 'split' as const;
  readonly addresses: QueueAddresses;
  private readonly mem: GuestMemoryAccess;
  private readonly dma: DmaAllocator;
  private readonly mask: number;
  private readonly eventIdx: boolean;
  private readonly indirect: boolean;
  private readonly indirectThreshold: number;
  private readonly notifyDevice: (data?: number) => void;
  private readonly inOrder: boolean;
  private readonly notificationData: boolean;
  /** IN_ORDER: heads in the order they were made available (a ring of `size`), and batch leftovers. */
  private readonly order: Uint16Array;
  private orderFront = 0;
  private orderCount = 0;
  private readonly ready: UsedBuffer<T>[] = [];
  private readonly desc: number;
  private readonly avail: number;
  private readonly used: number;
  private readonly allocations: number[] = [];

  // private bookkeeping
  private readonly next: Uint16Array;
  private readonly state: Uint8Array;
  private readonly descCount: Uint16Array;
  private readonly writableLen: Float64Array;
  private readonly tokens: (T | undefined)[];
  private readonly tables: IndirectTables;
  private freeHead = 0;
  private _numFree: number;
  private availShadow = 0;
  private kickedAvail = 0;
  private lastUsed = 0;
  private _inFlight = 0;
  private interruptsOn = true;
  private broken: DeviceMisbehaviourError | undefined;
  /** Direct views of the descriptor table and the available ring, where the platform offers them (mapView). */
  private readonly dView: DataView | undefined;
  private readonly dViewOff: number;
  private readonly aView: DataView | undefined;
  private readonly aViewOff: number;
  private readonly uView: DataView | undefined;
  private readonly uViewOff: number;
  private destroyed = false;

  constructor(mem: GuestMemoryAccess, dma: DmaAllocator, opts: SplitVirtqueueOptions) {
    const size = opts.size;
    if (!Number.isInteger(size) || size < 1 || size > Split.MAX_SIZE || (size & (size - 1)) !== 0) {
      throw new UsageError('split.size', 'split queue size must be a power of two from 1 to 32768', { expected: 'a power of two', seen: String(size) });
    }
    this.mem = mem;
    this.dma = dma;
    this.index = opts.index;
    this.size = size;
    this.mask = size - 1;
    this.eventIdx = opts.eventIdx;
    this.indirect = opts.indirect;
    this.indirectThreshold = opts.indirectThreshold ?? 2;
    this.notifyDevice = opts.notify;
    this.inOrder = opts.inOrder ?? false;
    this.notificationData = opts.notificationData ?? false;
    this.order = new Uint16Array(this.inOrder ? size : 0);
    const descBytes = 16 * size;
    const availBytes = 6 + 2 * size;
    const usedBytes = 6 + 8 * size;
    if (opts.legacyAlign !== undefined) {
      const align = opts.legacyAlign;
      const usedOff = Math.ceil((descBytes + availBytes) / align) * align;
      const base = dma.alloc(usedOff + usedBytes, Math.max(PAGE, align));
      this.allocations.push(base);
      this.desc = base;
      this.avail = base + descBytes;
      this.used = base + usedOff;
    } else {
      // split.driver.1: each part aligned as the spec requires (16, 2, 4)
      this.desc = dma.alloc(descBytes, Split.DESC_ALIGN);
      this.allocations.push(this.desc);
      this.avail = dma.alloc(availBytes, Split.AVAIL_ALIGN);
      this.allocations.push(this.avail);
      this.used = dma.alloc(usedBytes, Split.USED_ALIGN);
      this.allocations.push(this.used);
    }
    // DMA memory arrives zeroed: avail flags/idx 0, used flags 0 (split.driver.19).
    this.addresses = { size, desc: this.desc, driver: this.avail, device: this.used };
    const dm = mem.mapView?.(this.desc, descBytes);
    const am = mem.mapView?.(this.avail, availBytes);
    this.dView = dm?.view;
    this.dViewOff = dm ? dm.offset - this.desc : 0;
    this.aView = am?.view;
    this.aViewOff = am ? am.offset - this.avail : 0;
    const um = mem.mapView?.(this.used, usedBytes);
    this.uView = um?.view;
    this.uViewOff = um ? um.offset - this.used : 0;
    this.next = new Uint16Array(size);
    for (let i = 0; i < size - 1; i++) this.next[i] = i + 1;
    // IN_ORDER: the free list is the ring itself, in order (split.driver.5: next = x + 1, 0 after the last)
    if (this.inOrder) this.next[size - 1] = 0;
    this.state = new Uint8Array(size);
    this.descCount = new Uint16Array(size);
    this.writableLen = new Float64Array(size);
    this.tokens = new Array<T | undefined>(size);
    this.tables = new IndirectTables(dma, size);
    this._numFree = size;
  }

  get numFree(): number {
    return this._numFree;
  }

  get inFlight(): number {
    return this._inFlight;
  }

  /** The error that broke the queue, if the device misbehaved. */
  get error(): DeviceMisbehaviourError | undefined {
    return this.broken;
  }

  private check(): void {
    if (this.broken) throw this.broken;
    if (this.destroyed) throw new UsageError('vq.destroyed', `queue ${this.index} was destroyed`);
  }

  add(out: readonly DmaBuffer[], inp: readonly DmaBuffer[], token: T): boolean {
    this.check();
    const nOut = out.length;
    const n = nOut + inp.length;
    if (n === 0) throw new UsageError('vq.empty', 'a buffer needs at least one element');
    // split.driver.8: never a chain longer than the queue size (indirect tables included)
    if (n > this.size) throw new UsageError('vq.too_long', 'buffer has more elements than the queue size', { statements: ['split.driver.8'], expected: `<= ${this.size}`, seen: String(n) });
    let total = 0;
    for (let k = 0; k < n; k++) {
      const b = k < nOut ? out[k]! : inp[k - nOut]!;
      if (!Number.isSafeInteger(b.addr) || b.addr < 0 || !Number.isInteger(b.len) || b.len < 0 || b.len > 0xffff_ffff) {
        throw new UsageError('vq.buffer', 'buffer element with a bad address or length', { seen: `${b.addr}+${b.len}` });
      }
      total += b.len;
    }
    // split.driver.4: at most 2^32 bytes in total
    if (total > TWO32) throw new UsageError('vq.total', 'buffer longer than 2^32 bytes', { statements: ['split.driver.4'], seen: String(total) });

    const useIndirect = this.indirect && n >= this.indirectThreshold && n > 1;
    const need = useIndirect ? 1 : n;
    if (need > this._numFree) return false;

    const mem = this.mem;
    const head = this.freeHead;
    let writable = 0;
    if (useIndirect) {
      const table = this.tables.tableFor(head, n);
      for (let k = 0; k < n; k++) {
        const isOut = k < nOut;
        const b = isOut ? out[k]! : inp[k - nOut]!;
        const o = table + 16 * k;
        let flags = isOut ? 0 : Split.DESC_F_WRITE; // split.driver.2: readable first, then writable
        if (k + 1 < n) flags |= Split.DESC_F_NEXT;
        if (!isOut) writable += b.len;
        mem.write64(o, b.addr);
        mem.write32(o + 8, b.len);
        mem.write32(o + 12, flags | ((k + 1 < n ? k + 1 : 0) << 16)); // flags, next
      }
      const o = this.desc + 16 * head;
      mem.write64(o, table);
      mem.write32(o + 8, 16 * n);
      mem.write32(o + 12, Split.DESC_F_INDIRECT); // flags (split.driver.9: never with NEXT), next 0
      this.freeHead = this.next[head]!;
      this.state[head] = D.HEAD;
      this.descCount[head] = 1;
    } else {
      let d = head;
      for (let k = 0; k < n; k++) {
        const isOut = k < nOut;
        const b = isOut ? out[k]! : inp[k - nOut]!;
        const o = this.desc + 16 * d;
        let flags = isOut ? 0 : Split.DESC_F_WRITE;
        const nx = this.next[d]!;
        if (k + 1 < n) flags |= Split.DESC_F_NEXT;
        if (!isOut) writable += b.len;
        const dv = this.dView;
        if (dv) {
          const vo = o + this.dViewOff;
          dv.setUint32(vo, b.addr % TWO32, true);
          dv.setUint32(vo + 4, Math.floor(b.addr / TWO32), true);
          dv.setUint32(vo + 8, b.len, true);
          dv.setUint32(vo + 12, flags | ((k + 1 < n ? nx : 0) << 16), true); // flags, next
        } else {
          mem.write64(o, b.addr);
          mem.write32(o + 8, b.len);
          mem.write32(o + 12, flags | ((k + 1 < n ? nx : 0) << 16)); // flags, next
        }
        this.state[d] = k === 0 ? D.HEAD : D.BODY;
        if (k + 1 < n) d = nx;
        else this.freeHead = nx;
      }
      this.descCount[head] = n;
    }
    this._numFree -= need;
    this.writableLen[head] = writable;
    this.tokens[head] = token;
    this._inFlight++;
    if (this.inOrder) {
      this.order[(this.orderFront + this.orderCount) & this.mask] = head;
      this.orderCount++;
    }
    // the entry goes in first; idx is published by kick() (split.driver.26)
    const ring = this.avail + 4 + 2 * (this.availShadow & this.mask);
    if (this.aView) this.aView.setUint16(ring + this.aViewOff, head, true);
    else mem.write16(ring, head);
    this.availShadow = (this.availShadow + 1) & 0xffff;
    return true;
  }


  kick(): boolean {
    this.check();
    const newIdx = this.availShadow;
    const old = this.kickedAvail;
    if (newIdx === old) return false;
    const mem = this.mem;
    mem.write16(this.avail + 2, newIdx); // publish after the entries (split.driver.26)
    this.kickedAvail = newIdx;
    let need: boolean;
    if (this.eventIdx) {
      // split.driver.23/24/25: flags ignored; notify when idx passes avail_event
      const ev = mem.read16(this.used + 4 + 8 * this.size);
      need = ((newIdx - ev - 1) & 0xffff) < ((newIdx - old) & 0xffff);
    } else {
      // split.driver.20/21/22: avail_event ignored; NO_NOTIFY suppresses
      need = (mem.read16(this.used) & Split.USED_F_NO_NOTIFY) === 0;
    }
    if (need) this.notifyDevice(this.notificationData ? ((newIdx << 16) | this.index) >>> 0 : undefined);
    return need;
  }

  private fail(code: string, message: string, expected: string, seen: string, statements: string[] = []): never {
    this.broken = new DeviceMisbehaviourError(code, `queue ${this.index}: ${message}`, { statements, expected, seen });
    throw this.broken;
  }

  getUsed(): UsedBuffer<T> | null {
    this.check();
    if (this.inOrder) return this.getUsedInOrder();
    const mem = this.mem;
    const uv = this.uView;
    const idx = uv ? uv.getUint16(this.used + 2 + this.uViewOff, true) : mem.read16(this.used + 2);
    const last = this.lastUsed;
    if (idx === last) return null;
    const pending = (idx - last) & 0xffff;
    const published = (this.kickedAvail - last) & 0xffff;
    if (pending > published) {
      this.fail('split.used_idx', 'used idx moved further than the buffers in flight (or backwards)', `at most ${published} past ${last}`, String(idx));
    }
    const slot = this.used + 4 + 8 * (last & this.mask);
    const id = uv ? uv.getUint32(slot + this.uViewOff, true) : mem.read32(slot);
    const len = uv ? uv.getUint32(slot + 4 + this.uViewOff, true) : mem.read32(slot + 4);
    if (id >= this.size) this.fail('split.used_id_range', 'used id out of range', `< ${this.size}`, String(id));
    const st = this.state[id]!;
    if (st !== D.HEAD) {
      const what = st === D.BODY ? 'in the middle of a chain' : st === D.DONE ? 'already completed' : 'not outstanding';
      this.fail('split.used_id', `used id ${what}`, 'the head of an outstanding buffer', String(id));
    }
    // split.device.16 / split.driver.17: len counts bytes written into the writable part only
    if (len > this.writableLen[id]!) this.fail('split.used_len', 'used len above the writable length posted', `<= ${this.writableLen[id]}`, String(len), ['split.device.16']);
    const token = this.tokens[id] as T;
    this.tokens[id] = undefined;
    this.freeChain(id);
    this._inFlight--;
    this.lastUsed = (last + 1) & 0xffff;
    // split.driver.15: with EVENT_IDX, ask to be interrupted for the next used element (or, with
    // interrupts off, keep used_event half the index space away, where the device will not reach it)
    if (this.eventIdx) {
      const ue = this.avail + 4 + 2 * this.size;
      const v = this.interruptsOn ? this.lastUsed : (this.lastUsed + 0x8000) & 0xffff;
      if (this.aView) this.aView.setUint16(ue + this.aViewOff, v, true);
      else mem.write16(ue, v);
    }
    return { token, len };
  }

  /**
   * IN_ORDER: one used entry may stand for a batch: its id is the head of the batch's last buffer
   * and used idx moved by the batch size; the buffers before it were used completely
   * (split-ring.tex, "In-order use of descriptors").
   */
  private getUsedInOrder(): UsedBuffer<T> | null {
    if (this.ready.length > 0) return this.ready.shift()!;
    const mem = this.mem;
    const idx = mem.read16(this.used + 2);
    const last = this.lastUsed;
    if (idx === last) return null;
    const pending = (idx - last) & 0xffff;
    const published = (this.kickedAvail - last) & 0xffff;
    if (pending > published) this.fail('split.used_idx', 'used idx moved further than the buffers in flight (or backwards)', `at most ${published} past ${last}`, String(idx));
    const slot = this.used + 4 + 8 * (last & this.mask);
    const id = mem.read32(slot);
    const len = mem.read32(slot + 4);
    let k = 0;
    const span = Math.min(this.orderCount, pending);
    while (k < span && this.order[(this.orderFront + k) & this.mask] !== id) k++;
    if (k === span) this.fail('split.used_id', 'IN_ORDER used id is not among the next outstanding buffers', `one of the next ${span} heads in order`, String(id));
    if (len > this.writableLen[id]!) this.fail('split.used_len', 'used len above the writable length posted', `<= ${this.writableLen[id]}`, String(len), ['split.device.16']);
    for (let j = 0; j <= k; j++) {
      const head = this.order[this.orderFront]!;
      this.orderFront = (this.orderFront + 1) & this.mask;
      this.orderCount--;
      const token = this.tokens[head] as T;
      this.tokens[head] = undefined;
      this.ready.push({ token, len: head === id ? len : this.writableLen[head]! });
      this.freeChainInOrder(head);
      this._inFlight--;
    }
    this.lastUsed = (last + k + 1) & 0xffff;
    if (this.eventIdx && this.interruptsOn) mem.write16(this.avail + 4 + 2 * this.size, this.lastUsed);
    return this.ready.shift()!;
  }

  private freeChainInOrder(head: number): void {
    const n = this.descCount[head]!;
    let d = head;
    for (let k = 0; k < n; k++) {
      this.state[d] = D.FREE;
      d = this.next[d]!;
    }
    this.state[head] = D.DONE;
    this._numFree += n;
  }

  private freeChain(head: number): void {
    const n = this.descCount[head]!;
    let d = head;
    for (let k = 1; k < n; k++) {
      this.state[d] = D.FREE;
      d = this.next[d]!;
    }
    this.state[d] = D.FREE;
    this.state[head] = D.DONE;
    this.next[d] = this.freeHead;
    this.freeHead = head;
    this._numFree += n;
  }

  disableInterrupts(): void {
    if (this.broken || this.destroyed) return;
    this.interruptsOn = false;
    // split.driver.13/14: the flag only without EVENT_IDX; with it, flags stay 0 and used_event
    // moves half the index space ahead of what the driver has consumed
    if (!this.eventIdx) this.mem.write16(this.avail, Split.AVAIL_F_NO_INTERRUPT);
    else this.mem.write16(this.avail + 4 + 2 * this.size, (this.lastUsed + 0x8000) & 0xffff);
  }

  enableInterrupts(): boolean {
    this.check();
    this.interruptsOn = true;
    if (this.eventIdx) this.mem.write16(this.avail + 4 + 2 * this.size, this.lastUsed);
    else this.mem.write16(this.avail, 0);
    return this.ready.length === 0 && this.mem.read16(this.used + 2) === this.lastUsed;
  }

  /** Tokens of the buffers still in flight (for a driver that drops the queue). */
  outstandingTokens(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.size; i++) if (this.state[i] === D.HEAD) out.push(this.tokens[i] as T);
    return out;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const a of this.allocations) this.dma.free(a);
    this.tables.freeAll();
  }
}
