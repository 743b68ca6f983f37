/**
 * Driver side of the packed virtqueue (packed-ring.tex).
 *
 * All bookkeeping is private: the free id list, per-id token, slot count, writable length and
 * indirect table live in JS memory, never in the shared ring. Every used descriptor is checked
 * against it (id in range and outstanding, length within what was posted) and a misbehaving
 * device gets a DeviceMisbehaviourError; the queue then refuses further use.
 *
 * Hot path: the ring areas are reached through the platform's mapView where it has one (the
 * simulated machine), and each buffer id reuses its bookkeeping object and indirect table, so a
 * steady state add/getUsed allocates no guest memory.
 */
import type { DmaAllocator, GuestMemoryAccess } from '../../spec-refs/platform/platform.ts';
import type { DmaBuffer, UsedBuffer, Virtqueue } from './virtqueue.ts';
import { IndirectTables } from './indirect-tables.ts';
import { DeviceMisbehaviourError, UsageError } from '../../spec-refs/errors.ts';
import { Packed } from '../../spec-refs/abi/virtio.ts';
import type { QueueAddresses } from '../transport/transport.ts';

export interface PackedVirtqueueOptions {
  /** VIRTIO_F_INDIRECT_DESC negotiated: multi-element buffers go into one indirect table. */
  readonly indirect?: boolean;
  /** VIRTIO_F_EVENT_IDX negotiated: descriptor-specific event suppression. */
  readonly eventIdx?: boolean;
  /** VIRTIO_F_IN_ORDER negotiated: the device may report a batch with one used descriptor. */
  readonly inOrder?: boolean;
  /** VIRTIO_F_NOTIFICATION_DATA negotiated: notifications carry next_off / next_wrap. */
  readonly notificationData?: boolean;
  /** Use an indirect table for buffers of at least this many elements (default 2; Infinity: never). */
  readonly indirectThreshold?: number;
  /** Longest list the device accepts (default: the queue size, packed.driver.6/7). */
  readonly maxChain?: number;
}

/**
 * Sends an available-buffer notification. `data`, with NOTIFICATION_DATA, is the 32-bit
 * notification value (notifications-data-le.c): the queue index in bits 0..15, next_off in bits
 * 16..30, next_wrap in bit 31. A transport with VIRTIO_F_NOTIF_CONFIG_DATA replaces bits 0..15.
 */
export type NotifyFn = (index: number, data?: number) => void;

interface Slot<T> {
  token: T;
  slots: number;
  writableLen: number;
  indirect: number;
}

const TWO32 = 0x1_0000_0000;
const F_NEXT = Packed.DESC_F_NEXT;
const F_WRITE = Packed.DESC_F_WRITE;
const F_INDIRECT = Packed.DESC_F_INDIRECT;
const F_AVAIL = Packed.DESC_F_AVAIL;
const F_USED = Packed.DESC_F_USED;

export class PackedVirtqueue<T = unknown> implements Virtqueue<T> {
  readonly layout = 'packed' as const;
  /** Descriptor ring, driver event suppression, device event suppression (for the transport). */
  readonly descAddr: number;
  readonly driverAddr: number;
  readonly deviceAddr: number;
  private readonly indirect: boolean;
  private readonly eventIdx: boolean;
  private readonly inOrder: boolean;
  private readonly notificationData: boolean;
  private readonly maxChain: number;
  private readonly indirectThreshold: number;
  private nextAvail = 0;
  private availWrap = 1;
  private nextUsed = 0;
  private usedWrap = 1;
  private freeSlots: number;
  /** By buffer id: its bookkeeping while outstanding, else undefined. */
  private readonly ids: (Slot<T> | undefined)[];
  /** By buffer id: the Slot object and the indirect table (with its capacity in entries) it reuses. */
  private readonly slotPool: (Slot<T> | undefined)[];
  private readonly tables: IndirectTables;
  /** Direct views of the three ring areas, where the platform offers them (mapView). */
  private readonly dView: DataView | undefined;
  private readonly dViewOff: number;
  private readonly drvView: DataView | undefined;
  private readonly drvViewOff: number;
  private readonly devView: DataView | undefined;
  private readonly devViewOff: number;
  private readonly freeIds: number[] = [];
  /** IN_ORDER: ids in the order they were made available. */
  private readonly order: number[] = [];
  private orderHead = 0;
  /** IN_ORDER: buffers completed by a batch, not handed out yet. */
  private readonly ready: UsedBuffer<T>[] = [];
  private addedSinceKick = 0;
  private outstanding = 0;
  private broken: DeviceMisbehaviourError | undefined;
  private destroyed = false;
  readonly stats = { added: 0, kicks: 0, notifies: 0, used: 0 };
  /** Deviations from the spec tolerated for interoperability (see getUsed): used lengths taken from descriptors without WRITE. */
  readonly interop = { lenWithoutWriteFlag: 0 };

  constructor(
    private readonly mem: GuestMemoryAccess,
    private readonly dma: DmaAllocator,
    readonly index: number,
    readonly size: number,
    private readonly notifyFn: NotifyFn,
    opts: PackedVirtqueueOptions = {},
  ) {
    if (!Number.isInteger(size) || size < 1 || size > Packed.MAX_SIZE) throw new UsageError('packed.size', 'packed queue size out of range', { expected: `1..${Packed.MAX_SIZE}`, seen: String(size) });
    this.indirect = opts.indirect ?? false;
    this.eventIdx = opts.eventIdx ?? false;
    this.inOrder = opts.inOrder ?? false;
    this.notificationData = opts.notificationData ?? false;
    this.maxChain = Math.min(size, opts.maxChain ?? size);
    this.indirectThreshold = Math.max(2, opts.indirectThreshold ?? 2);
    // packed.driver.1: descriptor ring 16-aligned, event structures 4-aligned; the ring starts zeroed.
    this.descAddr = dma.alloc(16 * size, 16);
    this.driverAddr = dma.alloc(4, 4);
    this.deviceAddr = dma.alloc(4, 4);
    this.freeSlots = size;
    this.ids = new Array<Slot<T> | undefined>(size).fill(undefined);
    this.slotPool = new Array<Slot<T> | undefined>(size).fill(undefined);
    this.tables = new IndirectTables(dma, size);
    const dm = mem.mapView?.(this.descAddr, 16 * size);
    const drm = mem.mapView?.(this.driverAddr, 4);
    const dvm = mem.mapView?.(this.deviceAddr, 4);
    this.dView = dm?.view;
    this.dViewOff = dm ? dm.offset - this.descAddr : 0;
    this.drvView = drm?.view;
    this.drvViewOff = drm ? drm.offset - this.driverAddr : 0;
    this.devView = dvm?.view;
    this.devViewOff = dvm ? dvm.offset - this.deviceAddr : 0;
    for (let i = size - 1; i >= 0; i--) this.freeIds.push(i);
  }

  /** The three areas, as the transport programs them. */
  get addresses(): QueueAddresses {
    return { size: this.size, desc: this.descAddr, driver: this.driverAddr, device: this.deviceAddr };
  }

  get numFree(): number {
    return this.freeSlots;
  }

  get inFlight(): number {
    return this.outstanding;
  }

  add(out: readonly DmaBuffer[], inp: readonly DmaBuffer[], token: T): boolean {
    this.check();
    const n = out.length + inp.length;
    if (n === 0) throw new UsageError('packed.empty', 'a buffer needs at least one element');
    const useIndirect = this.indirect && n >= this.indirectThreshold && n <= this.maxChain;
    const slots = useIndirect ? 1 : n;
    if (!useIndirect && n > this.maxChain) throw new UsageError('packed.chain_len', 'buffer has more elements than the device accepts', { statements: ['packed.driver.6', 'packed.driver.7'], expected: `<= ${this.maxChain}`, seen: String(n) });
    // packed.driver.10: room for the whole list before the first descriptor is made available
    if (slots > this.freeSlots || this.freeIds.length === 0) return false;
    const id = this.freeIds.pop()!;
    let writableLen = 0;
    for (const b of inp) writableLen += b.len;
    const avail = this.availWrap ? F_AVAIL : F_USED;
    const first = this.nextAvail;
    let firstFlags = 0;
    let table = 0;
    if (useIndirect) {
      table = this.tables.tableFor(id, n);
      let i = 0;
      for (const b of out) this.writeDesc(table + 16 * i++, b.addr, b.len, 0, 0);
      for (const b of inp) this.writeDesc(table + 16 * i++, b.addr, b.len, 0, F_WRITE);
      this.writeRingDesc(first, table, 16 * n, id, -1);
      firstFlags = F_INDIRECT | avail;
      this.advanceAvail();
    } else {
      // packed.driver.8: device-readable elements first. The wrap counter may flip inside the
      // list: each descriptor carries the counter of its own lap.
      let pos = this.nextAvail;
      let wrap = this.availWrap;
      for (let j = 0; j < n; j++) {
        const readable = j < out.length;
        const b = readable ? out[j]! : inp[j - out.length]!;
        const flags = (readable ? 0 : F_WRITE) | (j < n - 1 ? F_NEXT : 0) | (wrap ? F_AVAIL : F_USED);
        // packed.driver.11: every descriptor but the first is exposed now, the first one last
        this.writeRingDesc(pos, b.addr, b.len, id, j === 0 ? -1 : flags);
        if (j === 0) firstFlags = flags;
        if (++pos === this.size) {
          pos = 0;
          wrap ^= 1;
        }
      }
      this.nextAvail = pos;
      this.availWrap = wrap;
    }
    this.publish(first, firstFlags);
    let s = this.slotPool[id];
    if (!s) s = this.slotPool[id] = { token, slots, writableLen, indirect: table };
    else {
      s.token = token;
      s.slots = slots;
      s.writableLen = writableLen;
      s.indirect = table;
    }
    this.ids[id] = s;
    if (this.inOrder) this.order.push(id);
    this.freeSlots -= slots;
    this.outstanding++;
    this.addedSinceKick += slots;
    this.stats.added++;
    return true;
  }


  /** writeDesc for ring slot `pos`, through the cached view when there is one. */
  private writeRingDesc(pos: number, addr: number, len: number, id: number, flags: number): void {
    const dv = this.dView;
    if (!dv) return this.writeDesc(this.descAddr + 16 * pos, addr, len, id, flags);
    const o = this.descAddr + 16 * pos + this.dViewOff;
    dv.setUint32(o, addr % TWO32, true);
    dv.setUint32(o + 4, Math.floor(addr / TWO32), true);
    dv.setUint32(o + 8, len, true);
    dv.setUint16(o + 12, id, true);
    if (flags >= 0) dv.setUint16(o + 14, flags, true);
  }

  /** 16-bit write into the driver event suppression structure. */
  private writeDriverArea(off: number, v: number): void {
    const ev = this.drvView;
    if (ev) ev.setUint16(this.driverAddr + off + this.drvViewOff, v, true);
    else this.mem.write16(this.driverAddr + off, v);
  }

  private readRing16(off: number): number {
    const dv = this.dView;
    return dv ? dv.getUint16(this.descAddr + off + this.dViewOff, true) : this.mem.read16(this.descAddr + off);
  }

  /** Write one descriptor; flags -1 leaves the flags word alone (the head is exposed by publish). */
  private writeDesc(d: number, addr: number, len: number, id: number, flags: number): void {
    const mem = this.mem;
    mem.write64(d, addr);
    mem.write32(d + 8, len);
    mem.write16(d + 12, id);
    if (flags >= 0) mem.write16(d + 14, flags);
  }

  /** packed.driver.16: the head's flags are written last, after everything it exposes. */
  private publish(first: number, flags: number): void {
    const dv = this.dView;
    if (dv) dv.setUint16(this.descAddr + 16 * first + 14 + this.dViewOff, flags, true);
    else this.mem.write16(this.descAddr + 16 * first + 14, flags);
  }

  private advanceAvail(): void {
    if (++this.nextAvail === this.size) {
      this.nextAvail = 0;
      this.availWrap ^= 1;
    }
  }

  kick(): boolean {
    this.check();
    this.stats.kicks++;
    const added = this.addedSinceKick;
    this.addedSinceKick = 0;
    if (added === 0) return false;
    // packed.driver.17: the flags above are in memory before the device area is read
    const ev = this.devView;
    const desc = ev ? ev.getUint16(this.devViewOff + this.deviceAddr, true) : this.mem.read16(this.deviceAddr);
    const flags = (ev ? ev.getUint16(this.devViewOff + this.deviceAddr + 2, true) : this.mem.read16(this.deviceAddr + 2)) & 3;
    let notify: boolean;
    if (flags === Packed.EVENT_FLAGS_DISABLE) notify = false;
    else if (flags === Packed.EVENT_FLAGS_DESC && this.eventIdx && added < this.size) {
      let off = desc & 0x7fff;
      if (desc >>> 15 !== this.availWrap) off -= this.size;
      notify = off >= this.nextAvail - added && off < this.nextAvail;
    } else notify = true;
    if (notify) {
      this.stats.notifies++;
      // packed.driver.4: next_off / next_wrap name the next descriptor not yet made available
      this.notifyFn(this.index, this.notificationData ? this.notificationValue() : undefined);
    }
    return notify;
  }

  /** The NOTIFICATION_DATA value for the current position (packed: next_off | next_wrap << 15 above the index). */
  notificationValue(): number {
    return (((this.nextAvail | (this.availWrap << 15)) << 16) | this.index) >>> 0;
  }

  /** Notify regardless of suppression (drivers may send extra notifications: packed.driver.5). */
  forceNotify(): void {
    this.stats.notifies++;
    this.notifyFn(this.index, this.notificationData ? this.notificationValue() : undefined);
  }

  private usedAtNext(): boolean {
    const flags = this.readRing16(16 * this.nextUsed + 14);
    const a = (flags & F_AVAIL) !== 0 ? 1 : 0;
    const u = (flags & F_USED) !== 0 ? 1 : 0;
    return a === this.usedWrap && u === this.usedWrap;
  }

  getUsed(): UsedBuffer<T> | null {
    this.check();
    if (this.ready.length > 0) return this.ready.shift()!;
    if (this.outstanding === 0 || !this.usedAtNext()) return null;
    const d = 16 * this.nextUsed;
    const flags = this.readRing16(d + 14);
    const id = this.readRing16(d + 12);
    const dv = this.dView;
    const rawLen = dv ? dv.getUint32(this.descAddr + d + 8 + this.dViewOff, true) : this.mem.read32(this.descAddr + d + 8);
    const s = id < this.size ? this.ids[id] : undefined;
    if (!s) {
      return this.fail('used_id', 'used descriptor names a buffer id that is not outstanding', { expected: `an outstanding id < ${this.size}`, seen: `id ${id} at slot ${this.nextUsed}` });
    }
    // packed-ring.tex, "Write Flag": in a used descriptor WRITE says whether the device wrote any part
    // of the buffer; "Element Address and Length": Element Length is how much it wrote, and is reserved
    // (ignored by drivers) without WRITE. (Descriptive text, no census id; the length itself is the
    // packed counterpart of split.device.16.) Interop: QEMU 7.2 never sets WRITE in a used descriptor
    // (virtqueue_packed_fill_desc, hw/virtio/virtio.c, writes id, len and AVAIL/USED only) although it
    // fills in the length, and Linux's virtio_ring reads the length whatever the flag. So when WRITE is
    // clear but the buffer had device-writable parts, take the length, still bounded by the writable
    // length posted (a longer one is rejected below as always) and counted in `interop`. A buffer with
    // nothing device-writable reads 0 without WRITE, as the spec says.
    let len: number;
    if (flags & F_WRITE) len = rawLen;
    else if (s.writableLen > 0) {
      len = rawLen;
      this.interop.lenWithoutWriteFlag++;
    } else len = 0;
    if (len > s.writableLen) {
      return this.fail('used_len', 'used length larger than the writable length posted', { expected: `<= ${s.writableLen}`, seen: String(len) });
    }
    if (!this.inOrder) {
      this.release(id, s);
      this.advanceUsed(s.slots);
      return { token: s.token, len };
    }
    // IN_ORDER: the used id ends a batch; the buffers before it in order were used completely.
    let k = this.orderHead;
    while (k < this.order.length && this.order[k] !== id) k++;
    if (k === this.order.length) return this.fail('used_order', 'IN_ORDER used id is not among the outstanding buffers', { seen: `id ${id}` });
    let slots = 0;
    for (let j = this.orderHead; j <= k; j++) {
      const bid = this.order[j]!;
      const b = this.ids[bid]!;
      slots += b.slots;
      this.release(bid, b);
      this.ready.push({ token: b.token, len: bid === id ? len : b.writableLen });
    }
    this.orderHead = k + 1;
    if (this.orderHead > 1024 && this.orderHead * 2 > this.order.length) {
      this.order.splice(0, this.orderHead);
      this.orderHead = 0;
    }
    this.advanceUsed(slots);
    return this.ready.shift()!;
  }

  private release(id: number, s: Slot<T>): void {
    this.ids[id] = undefined;
    this.freeIds.push(id);
    this.freeSlots += s.slots;
    this.outstanding--;
    this.stats.used++;
  }

  private advanceUsed(slots: number): void {
    this.nextUsed += slots;
    if (this.nextUsed >= this.size) {
      this.nextUsed -= this.size;
      this.usedWrap ^= 1;
    }
  }

  disableInterrupts(): void {
    this.check();
    this.writeDriverArea(2, Packed.EVENT_FLAGS_DISABLE);
  }

  enableInterrupts(): boolean {
    this.check();
    if (this.eventIdx) {
      this.writeDriverArea(0, this.nextUsed | (this.usedWrap << 15));
      this.writeDriverArea(2, Packed.EVENT_FLAGS_DESC);
    } else {
      this.writeDriverArea(2, Packed.EVENT_FLAGS_ENABLE);
    }
    return this.ready.length === 0 && !(this.outstanding > 0 && this.usedAtNext());
  }

  /** The driver's positions (for NOTIFICATION_DATA and tests). */
  get availPosition(): { off: number; wrap: number } {
    return { off: this.nextAvail, wrap: this.availWrap };
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.ids.fill(undefined);
    this.tables.freeAll();
    this.dma.free(this.descAddr);
    this.dma.free(this.driverAddr);
    this.dma.free(this.deviceAddr);
  }

  private fail(code: string, message: string, details: { expected?: string; seen?: string }): never {
    this.broken = new DeviceMisbehaviourError(`packed.${code}`, `queue ${this.index}: ${message}`, details);
    throw this.broken;
  }

  private check(): void {
    if (this.broken) throw this.broken;
    if (this.destroyed) throw new UsageError('packed.destroyed', `queue ${this.index} was destroyed`);
  }
}
