/**
 * The reference virtio-blk driver (device-types/blk/description.tex, VIRTIO 1.4).
 *
 * It runs over any VirtioTransport (virtio-mmio, virtio-pci, legacy or modern) and either ring
 * layout, on any GuestPlatform. The API is synchronous, like the rest of pvkit:
 *
 *   const blk = VirtioBlkDriver.probe(platform, transport);
 *   const h = blk.submit({ type: Blk.T_IN, sector: 8, data: [{ addr, len: 4096 }] });
 *   blk.waitAll();                        // or blk.wait(h), or blk.poll()
 *   const r = blk.result(h);              // { status, len, error? }
 *   blk.read(0, buf); blk.write(0, buf);  // bounce-buffered helpers that throw on failure
 *
 * Requests may be queued up to the queue size on every queue (with MQ, on up to num_queues
 * queues). Nothing the device returns is trusted: the virtqueue checks used ids and lengths
 * against what was posted; this file checks the status byte (a value outside OK / IOERR /
 * UNSUPP, or a used length that does not cover it, is a DeviceMisbehaviourError for that
 * request) and every config value it relies on.
 */
import type { DmaBuffer, Virtqueue } from '../core/virtqueue.ts';
import type { GuestPlatform } from '../core/platform.ts';
import type { VirtioTransport } from '../transport/transport.ts';
import { Blk, BlkF, DeviceType, F, bit, hasFeature } from '../../spec-refs/virtio.ts';
import { DeviceMisbehaviourError, PvkitError, RequestError, UsageError } from '../../spec-refs/errors.ts';
import { VirtioDriverDevice, type DeviceInitOptions } from '../core/device.ts';
import { BlkConfig, BlkDwz, BlkReqHeader } from '../../spec-refs/blk-layout.ts';

const SECTOR = 512;
const TWO32 = 0x1_0000_0000;
const NO_STATUS = 0xff; // written into the status byte before posting: a device that never writes it is caught

/** One request slot of a queue: its header + status DMA area and its state. */
export interface BlkSlot {
  readonly queue: number;
  readonly index: number;
  readonly hdr: DmaBuffer;
  readonly status: DmaBuffer;
  /** Reused element lists for Virtqueue.add (no allocation per request). */
  readonly out: DmaBuffer[];
  readonly inp: DmaBuffer[];
  /** Fixed lists for one data buffer: [hdr] / [data, status] and [hdr, data] / [status]. */
  readonly out1: DmaBuffer[];
  readonly inp2: DmaBuffer[];
  readonly out2: DmaBuffer[];
  readonly inp1: DmaBuffer[];
  gen: number;
  busy: boolean;
  /** Device-writable bytes posted (data + status). */
  wlen: number;
  type: number;
  callback: BlkCallback | undefined;
}

/** Completion callback: status (-1 when the device misbehaved), handle, the error if any, used.len. */
export type BlkCallback = (status: number, handle: number, error: PvkitError | undefined, len: number) => void;

export interface BlkDriverOptions {
  /** Core feature bits the driver may accept (default INDIRECT_DESC | EVENT_IDX | RING_PACKED). */
  readonly ringFeatures?: bigint;
  /** Feature bits the driver will not accept even if offered (to test feature combinations). */
  readonly withoutFeatures?: bigint;
  /** Upper bound on each queue's size (the device's maximum rounded down as the ring needs). Default 1024. */
  readonly queueSize?: number;
  /** Most queues to use with MQ (default 4). */
  readonly maxQueues?: number;
  /** Indirect tables for requests of at least this many elements, when negotiated (default 2; Infinity: never). */
  readonly indirectThreshold?: number;
  /** Bound of every wait, in target nanoseconds (default 1 s). */
  readonly timeoutNs?: number;
  /** Retries of the config generation loop before giving up (default 64). */
  readonly configRetries?: number;
}

/** What the driver read from config space (validated; see `warnings` for values it corrected). */
export interface BlkDeviceInfo {
  /** Capacity in 512-byte sectors. */
  capacity: number;
  readonly readOnly: boolean;
  readonly blkSize: number;
  /** Most data segments per IN/OUT request (Infinity: no limit given). */
  readonly segMax: number;
  /** Largest data segment in bytes (Infinity: no limit given). */
  readonly sizeMax: number;
  numQueues: number;
  readonly topology?: { physicalBlockExp: number; alignmentOffset: number; minIoSize: number; optIoSize: number };
  readonly discard?: RangeLimits;
  readonly writeZeroes?: RangeLimits & { mayUnmap: boolean };
  readonly secureErase?: RangeLimits;
  /** 'writeback': completed writes need a FLUSH to be stable; 'writethrough': they are stable. */
  cache: 'writeback' | 'writethrough';
  readonly flush: boolean;
  readonly configWce: boolean;
}

export interface RangeLimits {
  readonly maxSectors: number;
  readonly maxSeg: number;
  readonly alignment: number;
}

export interface BlkRange {
  readonly sector: number;
  readonly sectors: number;
  readonly unmap?: boolean;
}

export interface BlkRequest {
  readonly type: number;
  /** Start sector (IN / OUT); 0 for the others. */
  readonly sector?: number;
  /** The data buffers: device-writable for IN and GET_ID, device-readable otherwise. */
  readonly data?: readonly DmaBuffer[];
  /** Queue to use (default: round robin over the queues in use). */
  readonly queue?: number;
  /**
   * Skip the driver-side checks (size, range, limits, negotiated features): for conformance
   * tests that send what a correct driver never would. Device answers are still validated.
   */
  readonly unchecked?: boolean;
  /** Direction of `data` for types the driver does not know (unchecked only). */
  readonly writable?: boolean;
}

export interface BlkResult {
  /** The status byte (Blk.S_OK / S_IOERR / S_UNSUPP), or -1 when the device misbehaved. */
  readonly status: number;
  /** used.len the device reported. */
  readonly len: number;
  /** Set when the device's answer could not be trusted. */
  readonly error?: PvkitError;
}

const SUPPORTED_BLK = [BlkF.SIZE_MAX, BlkF.SEG_MAX, BlkF.GEOMETRY, BlkF.RO, BlkF.BLK_SIZE, BlkF.FLUSH, BlkF.TOPOLOGY, BlkF.CONFIG_WCE, BlkF.MQ, BlkF.DISCARD, BlkF.WRITE_ZEROES, BlkF.SECURE_ERASE];

interface QueueState {
  readonly vq: Virtqueue<BlkSlot>;
  readonly slots: BlkSlot[];
  readonly free: BlkSlot[];
  readonly dma: number;
  /** Added since the last kick. */
  pending: number;
}

const HANDLE_SLOT = 0x1_0000_0000; // handle = gen * 2^32 + queue * 32768 + index

export class VirtioBlkDriver {
  readonly platform: GuestPlatform;
  readonly transport: VirtioTransport;
  /** The core's view of the device: negotiation, queues, interrupts, config generation. */
  readonly dev: VirtioDriverDevice;
  readonly features: bigint;
  readonly info: BlkDeviceInfo;
  /** Config values the device got wrong and the driver corrected (e.g. seg_max 0 taken as 1). */
  readonly warnings: string[] = [];
  /** Requests completed, in all. */
  completed = 0;
  /** Configuration changes seen. */
  configChanges = 0;
  private readonly queues: QueueState[] = [];
  private inFlight = 0;
  private rr = 0;
  /** Results of completed requests submitted without a callback, until collected. */
  private readonly results = new Map<number, BlkResult>();
  private broken: PvkitError | undefined;

  private constructor(dev: VirtioDriverDevice, info: BlkDeviceInfo, warnings: string[]) {
    this.dev = dev;
    this.platform = dev.platform;
    this.transport = dev.transport;
    this.features = dev.features;
    this.info = info;
    this.warnings.push(...warnings);
  }

  /**
   * Initialise the device with the core's sequence (status_init.driver.6): reset, ACKNOWLEDGE,
   * DRIVER, negotiate, FEATURES_OK (re-read), read and validate the config, set up the queues,
   * DRIVER_OK. On failure the device is marked FAILED and the error thrown.
   */
  static probe(platform: GuestPlatform, transport: VirtioTransport, opts: BlkDriverOptions = {}): VirtioBlkDriver {
    if (transport.deviceType !== DeviceType.BLOCK) throw new UsageError('usage.blk.type', 'not a block device', { expected: `device type ${DeviceType.BLOCK}`, seen: String(transport.deviceType) });
    let want = opts.ringFeatures ?? bit(F.INDIRECT_DESC) | bit(F.EVENT_IDX) | bit(F.RING_PACKED);
    want |= bit(F.VERSION_1);
    // blk.driver.1: FLUSH is accepted because this driver sends FLUSH; blk.driver.13: RO is
    // accepted; blk.driver.5: ZONED never (this driver handles no zoned model)
    for (const b of SUPPORTED_BLK) want |= bit(b);
    want &= ~(opts.withoutFeatures ?? 0n);
    const maxQueues = Math.max(1, opts.maxQueues ?? 4);
    let info: BlkDeviceInfo | undefined;
    const warnings: string[] = [];
    const init: { -readonly [K in keyof DeviceInitOptions]: DeviceInitOptions[K] } = {
      features: want,
      queues: 1,
      optionalQueues: Array.from({ length: maxQueues - 1 }, (_, i) => i + 1),
      queueSize: opts.queueSize ?? 1024,
      indirectThreshold: opts.indirectThreshold,
      timeoutNs: opts.timeoutNs,
      configRetries: opts.configRetries ?? 64,
      // after FEATURES_OK, before the queues (the device-specific setup step of status_init.driver.6)
      check: (d) => {
        info = readInfo(d, warnings);
        let nq = Math.min(info.numQueues, maxQueues);
        const tq = d.transport.numQueues();
        if (tq !== undefined && tq < nq) {
          warnings.push(`transport has ${tq} queues, config num_queues says ${info.numQueues}`);
          nq = Math.max(1, tq);
        }
        init.queues = nq; // read by the core after check()
      },
    };
    const dev = VirtioDriverDevice.init(platform, transport, init);
    const drv = new VirtioBlkDriver(dev, info!, warnings);
    for (let i = 0; i < maxQueues; i++) {
      if (!dev.queues.has(i)) {
        if (i < (init.queues as number)) drv.warnings.push(`queue ${i} does not exist: using ${i} queues`);
        break;
      }
      drv.queues.push(drv.makeSlots(i, dev.queue<BlkSlot>(i)));
    }
    drv.info.numQueues = drv.queues.length;
    dev.onConfigChange(() => drv.onConfigChange());
    return drv;
  }

  private makeSlots(q: number, vq: Virtqueue<BlkSlot>): QueueState {
    const n = vq.size;
    const dma = this.platform.dma.alloc(32 * n, 16);
    const slots: BlkSlot[] = [];
    for (let i = 0; i < n; i++) {
      const hdr = { addr: dma + 32 * i, len: BlkReqHeader.SIZE };
      const status = { addr: dma + 32 * i + 16, len: 1 };
      slots.push({ queue: q, index: i, hdr, status, out: [], inp: [], out1: [hdr], inp2: [hdr, status], out2: [hdr, hdr], inp1: [status], gen: 0, busy: false, wlen: 0, type: 0, callback: undefined });
    }
    return { vq, slots, free: slots.slice().reverse(), dma, pending: 0 };
  }

  get numQueues(): number {
    return this.queues.length;
  }

  /** Requests submitted and not completed. */
  get outstanding(): number {
    return this.inFlight;
  }

  /** Free request slots on queue `q` (a request may also need free descriptors). */
  freeSlots(q = 0): number {
    return this.queues[q]?.free.length ?? 0;
  }

  queue(q: number): Virtqueue<BlkSlot> {
    const s = this.queues[q];
    if (!s) throw new UsageError('usage.blk.queue', 'no such queue', { expected: `< ${this.queues.length}`, seen: String(q) });
    return s.vq;
  }

  // ---- submission -----------------------------------------------------------------------

  /**
   * Queue a request (not yet visible to the device: kick(), wait() and waitAll() publish it).
   * When the queue is full, completions are collected (waiting if need be) until there is room.
   * With `callback`, the request's slot is released as soon as it completes and the callback
   * runs; otherwise the result stays until result(handle) collects it.
   */
  submit(req: BlkRequest, callback?: BlkCallback): number {
    if (this.broken) throw this.broken;
    const nq = this.queues.length;
    let qi = req.queue;
    if (qi === undefined) {
      qi = this.rr;
      this.rr = this.rr + 1 === nq ? 0 : this.rr + 1;
    } else if (!(qi >= 0 && qi < nq)) throw new UsageError('usage.blk.queue', 'no such queue', { expected: `< ${nq}`, seen: String(qi) });
    const type = req.type;
    const data = req.data ?? NO_DATA;
    const writableData = req.unchecked && req.writable !== undefined ? req.writable : type === Blk.T_IN || type === Blk.T_GET_ID;
    const sector = req.sector ?? 0;
    if (!req.unchecked) this.check(type, sector, data);
    const qs = this.queues[qi]!;
    const slot = this.takeSlot(qs);
    // build the element lists: header, [data], status (split.driver.2: readable first)
    let out = slot.out;
    let inp = slot.inp;
    const sizeMax = this.info.sizeMax;
    let wlen = 1;
    const d0 = data.length === 1 ? data[0]! : undefined;
    if (d0 !== undefined && d0.len <= sizeMax) {
      // the common case, one data buffer: fixed arrays, nothing allocated
      if (writableData) {
        out = slot.out1;
        inp = slot.inp2;
        inp[0] = d0;
        wlen += d0.len;
      } else {
        out = slot.out2;
        inp = slot.inp1;
        out[1] = d0;
      }
    } else {
      out.length = 0;
      inp.length = 0;
      out.push(slot.hdr);
      for (let i = 0; i < data.length; i++) {
        const b = data[i]!;
        const dst = writableData ? inp : out;
        if (b.len <= sizeMax) dst.push(b);
        else for (let o = 0; o < b.len; o += sizeMax) dst.push({ addr: b.addr + o, len: Math.min(sizeMax, b.len - o) });
        if (writableData) wlen += b.len;
      }
      inp.push(slot.status);
    }
    if (!req.unchecked && this.info.segMax !== Infinity && (type === Blk.T_IN || type === Blk.T_OUT)) {
      const segs = writableData ? inp.length - 1 : out.length - 1;
      if (segs > this.info.segMax) {
        this.releaseSlot(qs, slot);
        throw new UsageError('usage.blk.seg_max', 'request has more data segments than seg_max', { expected: `<= ${this.info.segMax}`, seen: String(segs) });
      }
    }
    const mem = this.platform.mem;
    const h = slot.hdr.addr;
    // `reserved` was zeroed when the slot was allocated and the device never writes a readable buffer
    mem.write32(h + BlkReqHeader.TYPE, type >>> 0);
    mem.write64(h + BlkReqHeader.SECTOR, sector);
    mem.write8(slot.status.addr, NO_STATUS);
    slot.wlen = wlen;
    slot.type = type;
    slot.callback = callback;
    let added: boolean;
    for (;;) {
      try {
        added = qs.vq.add(out, inp, slot);
      } catch (e) {
        this.releaseSlot(qs, slot);
        if (e instanceof DeviceMisbehaviourError) this.fail(e);
        throw e;
      }
      if (added) break;
      // no free descriptors: publish what we have and collect completions
      if (qs.vq.inFlight === 0) {
        this.releaseSlot(qs, slot);
        throw new UsageError('usage.blk.too_big', 'request needs more descriptors than the queue has', { seen: `${out.length + inp.length} elements, queue size ${qs.vq.size}` });
      }
      this.waitProgress(qs);
    }
    qs.pending++;
    this.inFlight++;
    return slot.gen * HANDLE_SLOT + slot.queue * 32768 + slot.index;
  }

  private takeSlot(qs: QueueState): BlkSlot {
    while (qs.free.length === 0) this.waitProgress(qs);
    const slot = qs.free.pop()!;
    slot.busy = true;
    slot.gen = (slot.gen + 1) % 0x10_0000;
    return slot;
  }

  private releaseSlot(qs: QueueState, slot: BlkSlot): void {
    slot.busy = false;
    slot.callback = undefined;
    qs.free.push(slot);
  }

  /** Driver-side rules for a request (the spec's driver requirements). */
  private check(type: number, sector: number, data: readonly DmaBuffer[]): void {
    const info = this.info;
    let bytes = 0;
    for (const b of data) bytes += b.len;
    if (!Number.isSafeInteger(sector) || sector < 0) bad('bad sector', [], 'a non-negative integer', String(sector));
    switch (type) {
      case Blk.T_IN:
      case Blk.T_OUT:
        if (bytes % SECTOR !== 0) bad('data is not a multiple of 512 bytes', ['blk.driver.16'], 'a multiple of 512', String(bytes));
        if (sector + bytes / SECTOR > info.capacity) bad('request beyond the capacity', ['blk.driver.12'], `sectors below ${info.capacity}`, `${sector}+${bytes / SECTOR}`);
        if (type === Blk.T_OUT && info.readOnly) throw new RequestError('blk.ro', 'the device is read-only', { statements: ['blk.device.21'] });
        return;
      case Blk.T_FLUSH:
        if (!info.flush) bad('FLUSH not negotiated', ['blk.driver.1'], 'VIRTIO_BLK_F_FLUSH', 'not negotiated');
        // blk.driver.14 / blk.driver.15: sector 0 and no data
        if (sector !== 0 || bytes !== 0) bad('FLUSH takes no sector and no data', ['blk.driver.14', 'blk.driver.15'], 'sector 0, no data', `sector ${sector}, ${bytes} bytes`);
        return;
      case Blk.T_GET_ID:
        if (bytes !== Blk.ID_BYTES) bad('GET_ID needs 20 bytes of data', ['blk.driver.18'], '20', String(bytes));
        return;
      case Blk.T_DISCARD:
      case Blk.T_WRITE_ZEROES:
      case Blk.T_SECURE_ERASE: {
        const lim = type === Blk.T_DISCARD ? info.discard : type === Blk.T_WRITE_ZEROES ? info.writeZeroes : info.secureErase;
        if (!lim) bad('request type not negotiated', [], 'the feature negotiated', `type ${type}`);
        if (info.readOnly) throw new RequestError('blk.ro', 'the device is read-only', { statements: ['blk.device.21'] });
        if (bytes === 0 || bytes % BlkDwz.SIZE !== 0) bad('range list is not a whole number of 16-byte segments', ['blk.driver.17'], 'n * 16, n >= 1', String(bytes));
        const nseg = bytes / BlkDwz.SIZE;
        const id = type === Blk.T_DISCARD ? 'blk.driver.19' : type === Blk.T_SECURE_ERASE ? 'blk.driver.20' : 'blk.driver.21';
        if (nseg > lim!.maxSeg) bad('too many segments', [id], `<= ${lim!.maxSeg}`, String(nseg));
        return;
      }
      default:
        bad('request type this driver does not send', [], 'IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES, SECURE_ERASE', String(type));
    }
  }

  // ---- completion -----------------------------------------------------------------------

  /** Publish every queued request, notifying the device where it asks for it. */
  kick(): void {
    for (const qs of this.queues) {
      if (qs.pending > 0) {
        qs.pending = 0;
        try {
          qs.vq.kick();
        } catch (e) {
          if (e instanceof DeviceMisbehaviourError) this.fail(e);
          throw e;
        }
      }
    }
  }

  /** Collect completed requests without waiting; returns how many completed. */
  poll(): number {
    let n = 0;
    for (let q = 0; q < this.queues.length; q++) n += this.pollQueue(this.queues[q]!);
    return n;
  }

  private pollQueue(qs: QueueState): number {
    let n = 0;
    const vq = qs.vq;
    const mem = this.platform.mem;
    for (;;) {
      let u;
      try {
        u = vq.getUsed();
      } catch (e) {
        if (e instanceof DeviceMisbehaviourError) this.fail(e);
        throw e;
      }
      if (u === null) return n;
      const slot = u.token;
      n++;
      this.inFlight--;
      this.completed++;
      let status = mem.read8(slot.status.addr);
      let error: PvkitError | undefined;
      // The status byte is the last writable byte: a used len short of the writable area
      // means the device does not claim to have written it (split.device.16).
      if (u.len !== slot.wlen) {
        error = new DeviceMisbehaviourError('blk.used_len', 'used len does not cover the status byte', { statements: ['split.device.16'], expected: `${slot.wlen} (data + status)`, seen: String(u.len) });
        status = -1;
      } else if (status !== Blk.S_OK && status !== Blk.S_IOERR && status !== Blk.S_UNSUPP) {
        error = new DeviceMisbehaviourError('blk.status', 'status byte is not a defined status', { expected: 'VIRTIO_BLK_S_OK, _IOERR or _UNSUPP', seen: status === NO_STATUS ? '0xff (never written)' : String(status) });
        status = -1;
      }
      const handle = slot.gen * HANDLE_SLOT + slot.queue * 32768 + slot.index;
      const cb = slot.callback;
      this.releaseSlot(qs, slot);
      if (cb) cb(status, handle, error, u.len);
      else this.results.set(handle, error ? { status, len: u.len, error } : { status, len: u.len });
    }
  }

  /**
   * The result of a completed request (collecting it: a second call throws), or undefined while
   * it is in flight.
   */
  result(handle: number): BlkResult | undefined {
    const r = this.results.get(handle);
    if (r) {
      this.results.delete(handle);
      return r;
    }
    this.slotOf(handle); // throws for a handle that is neither done nor in flight
    return undefined;
  }

  private slotOf(handle: number): BlkSlot {
    const gen = Math.floor(handle / HANDLE_SLOT);
    const low = handle % HANDLE_SLOT;
    const slot = this.queues[Math.floor(low / 32768)]?.slots[low % 32768];
    if (!slot || slot.gen !== gen || !slot.busy) throw new UsageError('usage.blk.handle', 'unknown or already collected request handle', { seen: String(handle) });
    return slot;
  }

  /** Wait until request `handle` completes; returns its result (and releases it). */
  wait(handle: number): BlkResult {
    for (;;) {
      const r = this.results.get(handle);
      if (r) {
        this.results.delete(handle);
        return r;
      }
      const slot = this.slotOf(handle);
      if (slot.callback) throw new UsageError('usage.blk.handle', 'a request with a callback has no result to wait for');
      this.waitProgress(undefined);
    }
  }

  /**
   * Wait until at least one request completes (kicking first); returns how many completed.
   * Returns 0 at once when nothing is in flight.
   */
  waitSome(): number {
    if (this.inFlight === 0) return 0;
    const before = this.completed;
    this.waitProgress(undefined);
    return this.completed - before;
  }

  /** Wait until nothing is in flight. */
  waitAll(): void {
    while (this.inFlight > 0) this.waitProgress(undefined);
  }

  /**
   * Kick, then collect completions; if there are none, sleep until an interrupt (the core's
   * bounded wait: TimeoutError after the device's timeout, DeviceNeedsResetError when the device
   * gives up). Returns after at least one completion.
   */
  private waitProgress(qs: QueueState | undefined): void {
    if (this.broken) throw this.broken;
    this.kick();
    if ((qs ? this.pollQueue(qs) : this.poll()) > 0) return;
    try {
      this.dev.waitUntil(() => {
        if ((qs ? this.pollQueue(qs) : this.poll()) > 0) return true;
        // ask for an interrupt; if completions raced in meanwhile, collect them instead of sleeping
        let raced = false;
        for (const s of this.queues) if (!s.vq.enableInterrupts()) raced = true;
        return raced && (qs ? this.pollQueue(qs) : this.poll()) > 0;
      }, `${this.inFlight} virtio-blk requests`);
    } catch (e) {
      if (e instanceof PvkitError && !(e instanceof UsageError)) this.fail(e);
      throw e;
    }
  }

  /** A configuration change: re-read what may change (blk.driver.11: the capacity; the cache mode). */
  onConfigChange(): void {
    this.configChanges++;
    // a driver that gave up on the device stops reading it; NEEDS_RESET is reported by the next wait
    if (this.broken || this.dev.needsReset) return;
    try {
      this.info.capacity = this.dev.readConfigStable((t) => read64(t, BlkConfig.CAPACITY));
      if (this.info.configWce) this.info.cache = this.dev.config8(BlkConfig.WRITEBACK) === 0 ? 'writethrough' : 'writeback';
    } catch (e) {
      if (e instanceof PvkitError) this.fail(e);
    }
  }

  private fail(e: PvkitError): void {
    if (!this.broken) this.broken = e;
  }

  /** The error that stopped the driver (device misbehaviour, NEEDS_RESET), if any. */
  get error(): PvkitError | undefined {
    return this.broken;
  }

  // ---- synchronous helpers ----------------------------------------------------------------

  /** Largest IN/OUT request in bytes the device's limits allow (capped at 1 MiB). */
  get maxTransfer(): number {
    let max = 1 << 20;
    if (this.info.segMax !== Infinity && this.info.sizeMax !== Infinity) max = Math.min(max, this.info.segMax * this.info.sizeMax);
    return Math.max(SECTOR, max - (max % SECTOR));
  }

  private run(type: number, sector: number, buf: number, len: number, queue?: number): void {
    const h = this.submit({ type, sector, data: len > 0 ? [{ addr: buf, len }] : NO_DATA, queue });
    const r = this.wait(h);
    if (r.error) throw r.error;
    if (r.status !== Blk.S_OK) throw new RequestError('blk.status', `request type ${type} failed`, { expected: 'VIRTIO_BLK_S_OK', seen: r.status === Blk.S_IOERR ? 'VIRTIO_BLK_S_IOERR' : 'VIRTIO_BLK_S_UNSUPP' });
  }

  private transfer(type: number, sector: number, buf: Uint8Array): void {
    if (buf.length % SECTOR !== 0) throw new UsageError('usage.blk.request', 'buffer is not a multiple of 512 bytes', { statements: ['blk.driver.16'], seen: String(buf.length) });
    if (buf.length === 0) return;
    const dma = this.platform.dma;
    const mem = this.platform.mem;
    const chunk = this.maxTransfer;
    const bounce = dma.alloc(buf.length, 4096);
    try {
      if (type === Blk.T_OUT) mem.writeBytes(bounce, buf);
      const handles: number[] = [];
      for (let o = 0; o < buf.length; o += chunk) {
        const n = Math.min(chunk, buf.length - o);
        handles.push(this.submit({ type, sector: sector + o / SECTOR, data: [{ addr: bounce + o, len: n }] }));
      }
      let failure: PvkitError | undefined;
      for (const h of handles) {
        const r = this.wait(h);
        if (!failure && r.error) failure = r.error;
        else if (!failure && r.status !== Blk.S_OK) failure = new RequestError('blk.status', `${type === Blk.T_IN ? 'read' : 'write'} failed`, { expected: 'VIRTIO_BLK_S_OK', seen: String(r.status) });
      }
      if (failure) throw failure;
      if (type === Blk.T_IN) buf.set(mem.readBytes(bounce, buf.length));
    } finally {
      dma.free(bounce);
    }
  }

  /** Read `buf.length` bytes (a multiple of 512) from `sector`. */
  read(sector: number, buf: Uint8Array): void {
    this.transfer(Blk.T_IN, sector, buf);
  }

  /** Write `buf` (a multiple of 512 bytes) at `sector`. */
  write(sector: number, buf: Uint8Array): void {
    this.transfer(Blk.T_OUT, sector, buf);
  }

  /** Make completed writes stable (blk.driver.3: with FLUSH and no CONFIG_WCE the cache is writeback). */
  flush(): void {
    if (!this.info.flush) return; // writethrough: nothing to do
    this.run(Blk.T_FLUSH, 0, 0, 0);
  }

  /** The device ID string (up to 20 ASCII characters). */
  getId(): string {
    const dma = this.platform.dma;
    const buf = dma.alloc(Blk.ID_BYTES, 16);
    try {
      this.run(Blk.T_GET_ID, 0, buf, Blk.ID_BYTES);
      const b = this.platform.mem.readBytes(buf, Blk.ID_BYTES);
      let end = b.indexOf(0);
      if (end < 0) end = Blk.ID_BYTES;
      let s = '';
      for (let i = 0; i < end; i++) s += String.fromCharCode(b[i]! & 0x7f);
      return s;
    } finally {
      dma.free(buf);
    }
  }

  discard(ranges: readonly BlkRange[]): void {
    for (const r of ranges) if (r.unmap) throw new UsageError('usage.blk.unmap', 'unmap is not allowed in a discard', { statements: ['blk.driver.24'] });
    this.rangeOp(Blk.T_DISCARD, this.info.discard, ranges);
  }

  writeZeroes(ranges: readonly BlkRange[]): void {
    this.rangeOp(Blk.T_WRITE_ZEROES, this.info.writeZeroes, ranges);
  }

  secureErase(ranges: readonly BlkRange[]): void {
    for (const r of ranges) if (r.unmap) throw new UsageError('usage.blk.unmap', 'unmap only applies to write zeroes');
    this.rangeOp(Blk.T_SECURE_ERASE, this.info.secureErase, ranges);
  }

  /** Split ranges into segments within max_*_sectors and requests within max_*_seg, then run them. */
  private rangeOp(type: number, lim: RangeLimits | undefined, ranges: readonly BlkRange[]): void {
    if (!lim) throw new UsageError('usage.blk.unsupported', 'the device does not support this request type', { seen: `type ${type}` });
    const segs: { sector: number; num: number; flags: number }[] = [];
    for (const r of ranges) {
      if (!Number.isSafeInteger(r.sector) || !Number.isSafeInteger(r.sectors) || r.sector < 0 || r.sectors < 0 || r.sector + r.sectors > this.info.capacity) {
        throw new UsageError('usage.blk.request', 'range outside the disk', { statements: ['blk.driver.12'], expected: `within ${this.info.capacity} sectors`, seen: `${r.sector}+${r.sectors}` });
      }
      let s = r.sector;
      let left = r.sectors;
      while (left > 0) {
        let n = Math.min(left, lim.maxSectors);
        // keep later pieces aligned: cut at an alignment boundary when the piece is not the last
        if (lim.alignment > 1 && n < left) {
          const end = s + n;
          const cut = end - (end % lim.alignment);
          if (cut > s) n = cut - s;
        }
        segs.push({ sector: s, num: n, flags: r.unmap ? Blk.WRITE_ZEROES_FLAG_UNMAP : 0 });
        s += n;
        left -= n;
      }
    }
    const mem = this.platform.mem;
    const dma = this.platform.dma;
    for (let i = 0; i < segs.length; i += lim.maxSeg) {
      const batch = segs.slice(i, i + lim.maxSeg);
      const buf = dma.alloc(batch.length * BlkDwz.SIZE, 16);
      try {
        batch.forEach((sg, k) => {
          const o = buf + k * BlkDwz.SIZE;
          mem.write32(o + BlkDwz.SECTOR, sg.sector % TWO32);
          mem.write32(o + BlkDwz.SECTOR + 4, Math.floor(sg.sector / TWO32));
          mem.write32(o + BlkDwz.NUM_SECTORS, sg.num);
          mem.write32(o + BlkDwz.FLAGS, sg.flags);
        });
        this.run(type, 0, buf, batch.length * BlkDwz.SIZE);
      } finally {
        dma.free(buf);
      }
    }
  }

  /**
   * Switch the cache mode (CONFIG_WCE negotiated, blk.driver.22): writeback or writethrough.
   * Writes completed while the cache was writeback are not stable just because the mode changed
   * (blk.driver.23): switching to writethrough flushes them.
   */
  setWriteback(on: boolean): void {
    if (!this.info.configWce) throw new UsageError('usage.blk.wce', 'VIRTIO_BLK_F_CONFIG_WCE not negotiated');
    this.transport.writeConfig(BlkConfig.WRITEBACK, 1, on ? 1 : 0);
    const wb = this.dev.config8(BlkConfig.WRITEBACK);
    this.info.cache = wb === 0 ? 'writethrough' : 'writeback';
    if (!on && this.info.flush) this.run(Blk.T_FLUSH, 0, 0, 0);
  }

  /** Reset the device and release the queues' memory. */
  shutdown(): void {
    this.dev.shutdown();
    for (const qs of this.queues) this.platform.dma.free(qs.dma);
    this.queues.length = 0;
  }
}

const NO_DATA: readonly DmaBuffer[] = [];

function bad(msg: string, statements: string[], expected: string, seen: string): never {
  throw new UsageError('usage.blk.request', msg, { statements, expected, seen });
}


function read64(t: VirtioTransport, off: number): number {
  const lo = t.readConfig(off, 4) >>> 0;
  const hi = t.readConfig(off + 4, 4) >>> 0;
  if (hi >= 0x20_0000) throw new DeviceMisbehaviourError('blk.capacity', 'capacity beyond 2^53 sectors', { expected: '< 2^53', seen: `hi word 0x${hi.toString(16)}` });
  return hi * TWO32 + lo;
}

/** Read and judge struct virtio_blk_config in one generation (config_space.driver.2). */
function readInfo(dev: VirtioDriverDevice, warnings: string[]): BlkDeviceInfo {
  const f = dev.features;
  const has = (b: number) => hasFeature(f, b);
  let w: string[] = [];
  const info = dev.readConfigStable((t) => {
    w = [];
    const r32 = (o: number) => t.readConfig(o, 4) >>> 0;
    const capacity = read64(t, BlkConfig.CAPACITY);
    let segMax = Infinity;
    if (has(BlkF.SEG_MAX)) {
      segMax = r32(BlkConfig.SEG_MAX);
      if (segMax === 0) {
        w.push('seg_max is 0: taken as 1');
        segMax = 1;
      }
    }
    let sizeMax = Infinity;
    if (has(BlkF.SIZE_MAX)) {
      sizeMax = r32(BlkConfig.SIZE_MAX);
      if (sizeMax === 0) {
        w.push('size_max is 0: taken as 512');
        sizeMax = 512;
      }
    }
    let blkSize = 512;
    if (has(BlkF.BLK_SIZE)) {
      const bs = r32(BlkConfig.BLK_SIZE);
      // only a performance hint (the protocol unit stays 512): a bad value is ignored
      if (bs >= 512 && bs <= 65536 && (bs & (bs - 1)) === 0) blkSize = bs;
      else w.push(`blk_size ${bs} is not a power of two in 512..65536: 512 assumed`);
    }
    let numQueues = 1;
    if (has(BlkF.MQ)) {
      numQueues = t.readConfig(BlkConfig.NUM_QUEUES, 2);
      if (numQueues === 0) {
        w.push('num_queues is 0 with MQ: using 1 queue');
        numQueues = 1;
      }
    }
    const limits = (feat: number, secOff: number, segOff: number, alignOff: number | undefined, name: string): RangeLimits | undefined => {
      if (!has(feat)) return undefined;
      const maxSectors = r32(secOff);
      const maxSeg = r32(segOff);
      if (maxSectors === 0 || maxSeg === 0) {
        w.push(`${name}: max sectors ${maxSectors}, max segments ${maxSeg}: not usable, never sent`);
        return undefined;
      }
      const alignment = alignOff === undefined ? 1 : r32(alignOff) || 1;
      return { maxSectors, maxSeg: Math.min(maxSeg, 4096), alignment };
    };
    const discard = limits(BlkF.DISCARD, BlkConfig.MAX_DISCARD_SECTORS, BlkConfig.MAX_DISCARD_SEG, BlkConfig.DISCARD_SECTOR_ALIGNMENT, 'discard');
    const wz = limits(BlkF.WRITE_ZEROES, BlkConfig.MAX_WRITE_ZEROES_SECTORS, BlkConfig.MAX_WRITE_ZEROES_SEG, undefined, 'write zeroes');
    const secureErase = limits(BlkF.SECURE_ERASE, BlkConfig.MAX_SECURE_ERASE_SECTORS, BlkConfig.MAX_SECURE_ERASE_SEG, BlkConfig.SECURE_ERASE_SECTOR_ALIGNMENT, 'secure erase');
    const topology = has(BlkF.TOPOLOGY)
      ? { physicalBlockExp: t.readConfig(BlkConfig.TOPOLOGY_PHYSICAL_BLOCK_EXP, 1), alignmentOffset: t.readConfig(BlkConfig.TOPOLOGY_ALIGNMENT_OFFSET, 1), minIoSize: t.readConfig(BlkConfig.TOPOLOGY_MIN_IO_SIZE, 2), optIoSize: r32(BlkConfig.TOPOLOGY_OPT_IO_SIZE) }
      : undefined;
    // blk.driver.4: writeback is read only after FEATURES_OK (check() runs after it);
    // blk.driver.3: FLUSH without CONFIG_WCE means a writeback cache
    let cache: 'writeback' | 'writethrough' = has(BlkF.FLUSH) ? 'writeback' : 'writethrough';
    if (has(BlkF.CONFIG_WCE)) {
      const wb = t.readConfig(BlkConfig.WRITEBACK, 1);
      if (wb > 1) w.push(`writeback is ${wb}: taken as writeback`);
      cache = wb === 0 ? 'writethrough' : 'writeback';
    }
    const out: BlkDeviceInfo = {
      capacity,
      readOnly: has(BlkF.RO),
      blkSize,
      segMax,
      sizeMax,
      numQueues,
      cache,
      flush: has(BlkF.FLUSH),
      configWce: has(BlkF.CONFIG_WCE),
      ...(topology ? { topology } : {}),
      ...(discard ? { discard } : {}),
      ...(wz ? { writeZeroes: { ...wz, mayUnmap: t.readConfig(BlkConfig.WRITE_ZEROES_MAY_UNMAP, 1) !== 0 } } : {}),
      ...(secureErase ? { secureErase } : {}),
    };
    return out;
  });
  warnings.push(...w);
  return info;
}
