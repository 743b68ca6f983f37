/**
 * The reference virtio-blk driver (device-types/blk/description.tex, VIRTIO 1.4).
 *
 * It runs over any VirtioTransport (virtio-mmio, virtio-pci, legacy or modern) and either ring
 * layout, on any GuestPlatform. The API is synchronous, like the rest of pvkit:
 *
 *   const blk = VirtioBlkDriver.probe(platform, transport, { createQueue });
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
import { Blk, BlkF, F, Status, bit, hasFeature } from '../../spec-refs/virtio.ts';
import { DeviceMisbehaviourError, PvkitError, RequestError, TimeoutError, UsageError } from '../../spec-refs/errors.ts';
import { BlkConfig, BlkDwz, BlkReqHeader } from '../../device-models/blk/config.ts';

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
  gen: number;
  busy: boolean;
  done: boolean;
  /** Device-writable bytes posted (data + status). */
  wlen: number;
  type: number;
  resultStatus: number;
  resultLen: number;
  error: PvkitError | undefined;
  callback: BlkCallback | undefined;
}

export type BlkCallback = (status: number, handle: number, error: PvkitError | undefined) => void;

export interface QueueFactoryArgs {
  readonly platform: GuestPlatform;
  readonly transport: VirtioTransport;
  readonly index: number;
  readonly size: number;
  /** The negotiated feature set (ring features: INDIRECT_DESC, EVENT_IDX, RING_PACKED...). */
  readonly features: bigint;
}

/** Builds the driver side of one virtqueue (the core's split or packed implementation). */
export type QueueFactory = (args: QueueFactoryArgs) => Virtqueue<BlkSlot>;

export interface BlkDriverOptions {
  /** Builds each virtqueue (ring memory, and it must call transport.setupQueue). */
  readonly createQueue: QueueFactory;
  /** Core feature bits the queue factory implements (default INDIRECT_DESC | EVENT_IDX). */
  readonly ringFeatures?: bigint;
  /** Feature bits the driver will not accept even if offered (to test feature combinations). */
  readonly withoutFeatures?: bigint;
  /** Queue size wanted (rounded down to a power of two and to the device's maximum). Default: the maximum. */
  readonly queueSize?: number;
  /** Most queues to use with MQ (default 4). */
  readonly maxQueues?: number;
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
  readonly numQueues: number;
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
  readonly features: bigint;
  readonly info: BlkDeviceInfo;
  /** Config values the device got wrong and the driver corrected (e.g. seg_max 0 taken as 1). */
  readonly warnings: string[] = [];
  /** Requests completed, in all. */
  completed = 0;
  /** Interrupts taken, and configuration changes seen. */
  interrupts = 0;
  configChanges = 0;
  private readonly queues: QueueState[] = [];
  private readonly timeoutNs: number;
  private readonly configRetries: number;
  private inFlight = 0;
  private rr = 0;
  private broken: PvkitError | undefined;

  private constructor(platform: GuestPlatform, transport: VirtioTransport, features: bigint, info: BlkDeviceInfo, warnings: string[], opts: BlkDriverOptions) {
    this.platform = platform;
    this.transport = transport;
    this.features = features;
    this.info = info;
    this.warnings.push(...warnings);
    this.timeoutNs = opts.timeoutNs ?? 1e9;
    this.configRetries = opts.configRetries ?? 64;
  }

  /**
   * Initialise the device (content.tex, "Device Initialization"): reset, ACKNOWLEDGE, DRIVER,
   * negotiate, FEATURES_OK (checked), read and validate config, set up the queues, DRIVER_OK.
   * On failure the driver sets FAILED and throws.
   */
  static probe(platform: GuestPlatform, transport: VirtioTransport, opts: BlkDriverOptions): VirtioBlkDriver {
    const t = transport;
    if (t.deviceType !== 2) throw new UsageError('usage.blk.type', 'not a block device', { expected: 'device type 2', seen: String(t.deviceType) });
    t.reset();
    t.setStatus(Status.ACKNOWLEDGE);
    t.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
    try {
      return VirtioBlkDriver.init(platform, t, opts);
    } catch (e) {
      t.setStatus(t.getStatus() | Status.FAILED);
      throw e;
    }
  }

  private static init(platform: GuestPlatform, t: VirtioTransport, opts: BlkDriverOptions): VirtioBlkDriver {
    const retries = opts.configRetries ?? 64;
    const warnings: string[] = [];
    const offered = t.deviceFeatures();
    let want = opts.ringFeatures ?? bit(F.INDIRECT_DESC) | bit(F.EVENT_IDX);
    if (!t.legacy) want |= bit(F.VERSION_1);
    // blk.driver.1: FLUSH only because this driver sends FLUSH; blk.driver.13: RO accepted;
    // blk.driver.5: ZONED never (this driver handles no zoned model)
    for (const b of SUPPORTED_BLK) want |= bit(b);
    want &= ~(opts.withoutFeatures ?? 0n);
    // Config read before FEATURES_OK (allowed for offered features: config_space.device.1): drop
    // features whose config values are unusable rather than fail the device.
    if (hasFeature(offered, BlkF.BLK_SIZE)) {
      const bs = readStable(t, retries, () => t.readConfig(BlkConfig.BLK_SIZE, 4));
      if (!validBlockSize(bs)) {
        warnings.push(`blk_size ${bs} is not a power of two in 512..65536: VIRTIO_BLK_F_BLK_SIZE not accepted, 512 assumed`);
        want &= ~bit(BlkF.BLK_SIZE);
      }
    }
    let features = offered & want;
    if (!t.legacy && !hasFeature(features, F.VERSION_1)) {
      throw new DeviceMisbehaviourError('blk.version_1', 'device does not offer VIRTIO_F_VERSION_1 on a modern transport', { statements: ['features.device.6'], expected: 'VERSION_1 offered', seen: `0x${offered.toString(16)}` });
    }
    if (t.legacy) features &= 0xffff_ffffn;
    t.setDriverFeatures(features);
    if (!t.legacy) {
      t.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
      // status_init.driver.6: the init sequence re-reads FEATURES_OK; a device that clears it refused the set
      if (!(t.getStatus() & Status.FEATURES_OK)) {
        throw new DeviceMisbehaviourError('blk.features_ok', 'device did not accept the feature set', { expected: 'FEATURES_OK set', seen: `status 0x${t.getStatus().toString(16)}` });
      }
    }
    const info = readInfo(t, features, retries, warnings);
    // Queues: N = num_queues with MQ, else 1; never more than the transport has.
    let nq = info.numQueues;
    const maxQ = opts.maxQueues ?? 4;
    if (nq > maxQ) nq = maxQ;
    const tq = t.numQueues();
    if (tq !== undefined && tq < nq) {
      warnings.push(`transport reports ${tq} queues, config num_queues ${info.numQueues}`);
      nq = Math.max(1, tq);
    }
    const drv = new VirtioBlkDriver(platform, t, features, { ...info, numQueues: nq }, warnings, opts);
    for (let i = 0; i < nq; i++) {
      const max = t.queueMaxSize(i);
      if (max === 0) {
        if (i === 0) throw new DeviceMisbehaviourError('blk.queue_max', 'request queue 0 does not exist', { expected: 'QueueNumMax > 0', seen: '0' });
        drv.warnings.push(`queue ${i} does not exist: using ${i} queues`);
        break;
      }
      let size = Math.min(max, opts.queueSize ?? max, 32768);
      // a power of two (split rings need one; packed rings accept it)
      size = 2 ** Math.floor(Math.log2(size));
      const vq = opts.createQueue({ platform, transport: t, index: i, size, features });
      drv.queues.push(drv.makeSlots(i, vq));
    }
    (drv.info as { numQueues: number }).numQueues = drv.queues.length;
    t.setStatus(t.getStatus() | Status.DRIVER_OK);
    const st = t.getStatus();
    if (st & Status.DEVICE_NEEDS_RESET) throw new DeviceMisbehaviourError('blk.needs_reset', 'device needs a reset right after DRIVER_OK', { seen: `status 0x${st.toString(16)}` });
    return drv;
  }

  private makeSlots(q: number, vq: Virtqueue<BlkSlot>): QueueState {
    const n = vq.size;
    const dma = this.platform.dma.alloc(32 * n, 16);
    const slots: BlkSlot[] = [];
    for (let i = 0; i < n; i++) {
      const hdr = { addr: dma + 32 * i, len: BlkReqHeader.SIZE };
      const status = { addr: dma + 32 * i + 16, len: 1 };
      slots.push({ queue: q, index: i, hdr, status, out: [], inp: [], gen: 0, busy: false, done: false, wlen: 0, type: 0, resultStatus: 0, resultLen: 0, error: undefined, callback: undefined });
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
    const out = slot.out;
    const inp = slot.inp;
    out.length = 0;
    inp.length = 0;
    out.push(slot.hdr);
    const sizeMax = this.info.sizeMax;
    let wlen = 1;
    for (let i = 0; i < data.length; i++) {
      const b = data[i]!;
      const dst = writableData ? inp : out;
      if (b.len <= sizeMax) dst.push(b);
      else for (let o = 0; o < b.len; o += sizeMax) dst.push({ addr: b.addr + o, len: Math.min(sizeMax, b.len - o) });
      if (writableData) wlen += b.len;
    }
    inp.push(slot.status);
    if (!req.unchecked && this.info.segMax !== Infinity && (type === Blk.T_IN || type === Blk.T_OUT)) {
      const segs = (writableData ? inp.length - 1 : out.length - 1);
      if (segs > this.info.segMax) {
        this.releaseSlot(qs, slot);
        throw new UsageError('usage.blk.seg_max', 'request has more data segments than seg_max', { expected: `<= ${this.info.segMax}`, seen: String(segs) });
      }
    }
    const mem = this.platform.mem;
    const h = slot.hdr.addr;
    mem.write32(h + BlkReqHeader.TYPE, type >>> 0);
    mem.write32(h + BlkReqHeader.RESERVED, 0);
    mem.write32(h + BlkReqHeader.SECTOR, sector % TWO32);
    mem.write32(h + BlkReqHeader.SECTOR + 4, Math.floor(sector / TWO32));
    mem.write8(slot.status.addr, NO_STATUS);
    slot.wlen = wlen;
    slot.type = type;
    slot.callback = callback;
    slot.done = false;
    slot.error = undefined;
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
    slot.done = false;
    slot.callback = undefined;
    qs.free.push(slot);
  }

  /** Driver-side rules for a request (the spec's driver requirements). */
  private check(type: number, sector: number, data: readonly DmaBuffer[]): void {
    const info = this.info;
    let bytes = 0;
    for (const b of data) bytes += b.len;
    const bad = (msg: string, statements: string[], expected: string, seen: string) => {
      throw new UsageError('usage.blk.request', msg, { statements, expected, seen });
    };
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
      slot.resultLen = u.len;
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
      slot.resultStatus = status;
      slot.error = error;
      const cb = slot.callback;
      if (cb) {
        const handle = slot.gen * HANDLE_SLOT + slot.queue * 32768 + slot.index;
        this.releaseSlot(qs, slot);
        cb(status, handle, error);
      } else slot.done = true;
    }
  }

  /** The result of a completed request (releases it), or undefined while it is in flight. */
  result(handle: number): BlkResult | undefined {
    const slot = this.slotOf(handle);
    if (!slot.done) return undefined;
    const r: BlkResult = slot.error ? { status: slot.resultStatus, len: slot.resultLen, error: slot.error } : { status: slot.resultStatus, len: slot.resultLen };
    this.releaseSlot(this.queues[slot.queue]!, slot);
    return r;
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
    const slot = this.slotOf(handle);
    if (slot.callback) throw new UsageError('usage.blk.handle', 'a request with a callback has no result to wait for');
    while (!slot.done) this.waitProgress(undefined);
    return this.result(handle)!;
  }

  /** Wait until nothing is in flight. */
  waitAll(): void {
    while (this.inFlight > 0) this.waitProgress(undefined);
  }

  /**
   * Kick, then collect completions; if none are there, sleep until an interrupt (bounded by
   * timeoutNs of target time). Returns after at least one completion or a config change.
   */
  private waitProgress(qs: QueueState | undefined): void {
    if (this.broken) throw this.broken;
    this.kick();
    const deadline = this.platform.now() + this.timeoutNs;
    for (;;) {
      if ((qs ? this.pollQueue(qs) : this.poll()) > 0) return;
      // re-enable interrupts; if completions raced in meanwhile, collect them first
      let raced = false;
      for (const s of this.queues) if (!s.vq.enableInterrupts()) raced = true;
      if (raced) continue;
      const left = deadline - this.platform.now();
      const v = left > 0 ? this.platform.irq.wait(left) : null;
      if (v === null) {
        const err = new TimeoutError('blk.timeout', 'the device did not complete requests in time', { expected: `a completion within ${this.timeoutNs} ns`, seen: `${this.inFlight} requests in flight` });
        throw err;
      }
      this.interrupts++;
      if (this.transport.vectors.includes(v)) {
        const cause = this.transport.ackInterrupt(v);
        this.platform.irq.eoi(v);
        if (cause.config) {
          this.onConfigChange();
          return;
        }
      } else this.platform.irq.eoi(v);
      for (const s of this.queues) s.vq.disableInterrupts();
    }
  }

  /** A configuration change: re-read what may change (blk.driver.11: the capacity). */
  onConfigChange(): void {
    this.configChanges++;
    const st = this.transport.getStatus();
    if (st & Status.DEVICE_NEEDS_RESET) {
      this.fail(new DeviceMisbehaviourError('blk.needs_reset', 'device set DEVICE_NEEDS_RESET', { seen: `status 0x${st.toString(16)}` }));
      throw this.broken!;
    }
    const cap = readCapacity(this.transport, this.configRetries);
    if (cap !== this.info.capacity) this.info.capacity = cap;
    if (this.info.configWce) {
      const wb = this.transport.readConfig(BlkConfig.WRITEBACK, 1);
      this.info.cache = wb === 0 ? 'writethrough' : 'writeback';
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

  /** Switch the cache mode (CONFIG_WCE negotiated): 1 writeback, 0 writethrough. */
  setWriteback(on: boolean): void {
    if (!this.info.configWce) throw new UsageError('usage.blk.wce', 'VIRTIO_BLK_F_CONFIG_WCE not negotiated');
    this.transport.writeConfig(BlkConfig.WRITEBACK, 1, on ? 1 : 0);
    const wb = this.transport.readConfig(BlkConfig.WRITEBACK, 1);
    this.info.cache = wb === 0 ? 'writethrough' : 'writeback';
  }

  /** Reset the device and release the queues' memory. */
  shutdown(): void {
    this.transport.reset();
    for (const qs of this.queues) {
      qs.vq.destroy();
      this.platform.dma.free(qs.dma);
    }
    this.queues.length = 0;
  }
}

const NO_DATA: readonly DmaBuffer[] = [];

function validBlockSize(bs: number): boolean {
  return bs >= 512 && bs <= 65536 && (bs & (bs - 1)) === 0;
}

/**
 * Read config fields until the generation is the same before and after
 * (config_space.driver.1 / config_space.driver.2), at most `retries` times.
 */
export function readStable<T>(t: VirtioTransport, retries: number, read: () => T): T {
  for (let i = 0; i < retries; i++) {
    const before = t.configGeneration();
    const v = read();
    if (t.configGeneration() === before) return v;
  }
  throw new DeviceMisbehaviourError('blk.config_generation', 'config generation never settles', { statements: ['config_space.driver.2'], expected: `a stable generation within ${retries} reads`, seen: 'it changed every time' });
}

function read64(t: VirtioTransport, off: number): number {
  const lo = t.readConfig(off, 4) >>> 0;
  const hi = t.readConfig(off + 4, 4) >>> 0;
  if (hi >= 0x20_0000) throw new DeviceMisbehaviourError('blk.capacity', 'capacity beyond 2^53 sectors', { expected: '< 2^53', seen: `hi word 0x${hi.toString(16)}` });
  return hi * TWO32 + lo;
}

function readCapacity(t: VirtioTransport, retries: number): number {
  return readStable(t, retries, () => read64(t, BlkConfig.CAPACITY));
}

function readInfo(t: VirtioTransport, f: bigint, retries: number, warnings: string[]): BlkDeviceInfo {
  let lastWarnings: string[] = [];
  const info = readInfoOnce(t, f, retries, (w) => (lastWarnings = w));
  warnings.push(...lastWarnings);
  return info;
}

function readInfoOnce(t: VirtioTransport, f: bigint, retries: number, report: (w: string[]) => void): BlkDeviceInfo {
  let lastWarnings: string[] = [];
  const has = (b: number) => hasFeature(f, b);
  const r32 = (o: number) => t.readConfig(o, 4) >>> 0;
  return readStable(t, retries, () => {
    const w: string[] = [];
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
    const blkSize = has(BlkF.BLK_SIZE) ? r32(BlkConfig.BLK_SIZE) : 512;
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
        w.push(`${name}: max sectors ${maxSectors}, max segments ${maxSeg}: not usable, not sent`);
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
    // blk.driver.4: writeback is read only after FEATURES_OK (we are past it here);
    // blk.driver.3: FLUSH without CONFIG_WCE means a writeback cache
    let cache: 'writeback' | 'writethrough' = has(BlkF.FLUSH) ? 'writeback' : 'writethrough';
    if (has(BlkF.CONFIG_WCE)) {
      const wb = t.readConfig(BlkConfig.WRITEBACK, 1);
      if (wb > 1) w.push(`writeback is ${wb}: taken as writeback`);
      cache = wb === 0 ? 'writethrough' : 'writeback';
    }
    const info: BlkDeviceInfo = {
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
    lastWarnings = w;
    report(lastWarnings);
    return info;
  });
}
