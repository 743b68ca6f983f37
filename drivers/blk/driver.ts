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
 * request) and config.ts every config value it relies on.
 *
 * This file holds probe and negotiation (blk.driver.1, .5, .6, .8, .13), the queues and their
 * request slots (MQ), submission and completion, configuration changes (blk.driver.11) and the
 * cache mode (blk.driver.22, .23). Beside it, one file per seam:
 *   types.ts           the public types (re-exported here)
 *   config.ts          struct virtio_blk_config read and validated (config_space.driver.2, blk.driver.3, .4)
 *   request-checks.ts  the driver-side rules of each request type (blk.driver.12 to .21, .27 to .36)
 *   sync.ts            one request waited for; bounce-buffered read / write (blk.device.50); GET_ID
 *   ranges.ts          DISCARD / WRITE_ZEROES / SECURE_ERASE segments (blk.driver.17, .19 to .21, .24)
 *   zoned.ts           ZONE_REPORT, zone management, ZONE_APPEND (blk.driver.28 to .35)
 */
import type { Virtqueue } from '../core/virtqueue.ts';
import type { GuestPlatform } from '../../spec-refs/platform/platform.ts';
import type { VirtioTransport } from '../transport/transport.ts';
import { Blk, BlkF, DeviceType, F, bit, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { DeviceMisbehaviourError, NegotiationError, PvkitError, UsageError } from '../../spec-refs/errors.ts';
import { VirtioDriverDevice, type DeviceInitOptions } from '../core/device.ts';
import { BlkConfig, BlkReqHeader, BlkZonedConfig, BlkZoneModel, BLK_APPEND_SECTOR_BYTES } from '../../spec-refs/abi/blk-layout.ts';
import type { BlkCallback, BlkDeviceInfo, BlkDriverOptions, BlkRange, BlkRequest, BlkResult, BlkSlot, BlkZoneInfo } from './types.ts';
import { read64, readInfo } from './config.ts';
import { checkRequest } from './request-checks.ts';
import { NO_DATA, getId, run, transfer } from './sync.ts';
import * as rangeOps from './ranges.ts';
import * as zoned from './zoned.ts';

export type { BlkCallback, BlkDeviceInfo, BlkDriverOptions, BlkRange, BlkRequest, BlkResult, BlkSlot, BlkZonedInfo, BlkZoneInfo, RangeLimits } from './types.ts';

const SECTOR = 512;
const TWO32 = 0x1_0000_0000;
const NO_STATUS = 0xff; // written into the status byte before posting: a device that never writes it is caught

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
  /** ZONED negotiated: the ZONE_ status values are defined answers. */
  private readonly zonedStatuses: boolean;

  private constructor(dev: VirtioDriverDevice, info: BlkDeviceInfo, warnings: string[]) {
    this.dev = dev;
    this.platform = dev.platform;
    this.transport = dev.transport;
    this.features = dev.features;
    this.info = info;
    this.warnings.push(...warnings);
    this.zonedStatuses = hasFeature(dev.features, BlkF.ZONED);
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
    // accepted; blk.driver.5: ZONED only because this driver handles every zone model
    for (const b of SUPPORTED_BLK) want |= bit(b);
    const zonedOk = opts.zoned ?? true;
    if (zonedOk) want |= bit(BlkF.ZONED);
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
      // before the features are written: the zone model decides ZONED and DISCARD
      configSelect: (d, chosen) => {
        if (!hasFeature(d.offered, BlkF.ZONED) || d.transport.legacy) return chosen & ~bit(BlkF.ZONED);
        const model = d.config8(BlkConfig.ZONED + BlkZonedConfig.MODEL);
        if (model === BlkZoneModel.HM) {
          // blk.driver.8: a driver that cannot drive host-managed devices fails it before FEATURES_OK
          if (!zonedOk) throw new NegotiationError('blk.zoned_hm', 'host-managed zoned device and zoned support is off', { statements: ['blk.driver.8'], seen: 'zoned.model = VIRTIO_BLK_Z_HM' });
          // blk.driver.6: never DISCARD from a host-managed device
          chosen &= ~bit(BlkF.DISCARD);
        }
        return zonedOk ? chosen : chosen & ~bit(BlkF.ZONED);
      },
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
    if (drv.info.zoned) {
      // learn the zone types once (which zones are sequential: blk.driver.36 applies to those)
      const z = drv.info.zoned;
      const all = drv.reportZones(0, z.nrZones);
      for (const d of all) {
        const i = Math.floor(d.start / z.zoneSectors);
        if (i < z.nrZones) z.types[i] = d.type;
      }
    }
    return drv;
  }

  private makeSlots(q: number, vq: Virtqueue<BlkSlot>): QueueState {
    const n = vq.size;
    const dma = this.platform.dma.alloc(32 * n, 16);
    const slots: BlkSlot[] = [];
    for (let i = 0; i < n; i++) {
      const hdr = { addr: dma + 32 * i, len: BlkReqHeader.SIZE };
      const status = { addr: dma + 32 * i + 16, len: 1 };
      const append = { addr: dma + 32 * i + 24, len: BLK_APPEND_SECTOR_BYTES };
      slots.push({ queue: q, index: i, hdr, status, out: [], inp: [], out1: [hdr], inp2: [hdr, status], out2: [hdr, hdr], inp1: [status], append, gen: 0, busy: false, wlen: 0, type: 0, callback: undefined });
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
    // status_init.driver.17: no new buffers while the device is suspended
    if (this.dev.suspended) this.dev.assertRunning('a virtio-blk request', 'status_init.driver.17');
    const nq = this.queues.length;
    let qi = req.queue;
    if (qi === undefined) {
      qi = this.rr;
      this.rr = this.rr + 1 === nq ? 0 : this.rr + 1;
    } else if (!(qi >= 0 && qi < nq)) throw new UsageError('usage.blk.queue', 'no such queue', { expected: `< ${nq}`, seen: String(qi) });
    const type = req.type;
    const data = req.data ?? NO_DATA;
    const writableData = req.unchecked && req.writable !== undefined ? req.writable : type === Blk.T_IN || type === Blk.T_GET_ID || type === Blk.T_ZONE_REPORT;
    const append = type === Blk.T_ZONE_APPEND;
    const sector = req.sector ?? 0;
    if (!req.unchecked) checkRequest(this.info, type, sector, data);
    const qs = this.queues[qi]!;
    const slot = this.takeSlot(qs);
    // build the element lists: header, [data], status (split.driver.2: readable first)
    let out = slot.out;
    let inp = slot.inp;
    const sizeMax = this.info.sizeMax;
    let wlen = 1;
    const d0 = data.length === 1 ? data[0]! : undefined;
    if (d0 !== undefined && d0.len <= sizeMax && !append) {
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
      if (append) {
        // virtio_blk_req_za: le64 append_sector before the status
        inp.push(slot.append);
        wlen += BLK_APPEND_SECTOR_BYTES;
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
      } else if (status !== Blk.S_OK && status !== Blk.S_IOERR && status !== Blk.S_UNSUPP && !(this.zonedStatuses && status >= Blk.S_ZONE_INVALID_CMD && status <= Blk.S_ZONE_ACTIVE_RESOURCE)) {
        error = new DeviceMisbehaviourError('blk.status', 'status byte is not a defined status', { expected: this.zonedStatuses ? 'VIRTIO_BLK_S_OK, _IOERR, _UNSUPP or a ZONE_ status' : 'VIRTIO_BLK_S_OK, _IOERR or _UNSUPP', seen: status === NO_STATUS ? '0xff (never written)' : String(status) });
        status = -1;
      }
      let appendSector: number | undefined;
      if (slot.type === Blk.T_ZONE_APPEND && status === Blk.S_OK) {
        appendSector = mem.read32(slot.append.addr) + mem.read32(slot.append.addr + 4) * TWO32;
        const z = this.info.zoned;
        // the data must have landed in the zone the append named
        if (z && (appendSector >= this.info.capacity || !Number.isSafeInteger(appendSector))) {
          error = new DeviceMisbehaviourError('blk.append_sector', 'append_sector outside the disk', { statements: ['blk.device.47'], expected: `< ${this.info.capacity}`, seen: String(appendSector) });
          status = -1;
          appendSector = undefined;
        }
      }
      const handle = slot.gen * HANDLE_SLOT + slot.queue * 32768 + slot.index;
      const cb = slot.callback;
      this.releaseSlot(qs, slot);
      if (cb) cb(status, handle, error, u.len);
      else this.results.set(handle, error ? { status, len: u.len, error } : appendSector !== undefined ? { status, len: u.len, appendSector } : { status, len: u.len });
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
      // a device error breaks the driver (reported by the next wait); anything else is a bug here
      if (e instanceof PvkitError) this.fail(e);
      else throw e;
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

  /** Read `buf.length` bytes (a multiple of 512) from `sector`. */
  read(sector: number, buf: Uint8Array): void {
    transfer(this, Blk.T_IN, sector, buf);
  }

  /** Write `buf` (a multiple of 512 bytes) at `sector`. */
  write(sector: number, buf: Uint8Array): void {
    transfer(this, Blk.T_OUT, sector, buf);
  }

  /** Make completed writes stable (blk.driver.3: with FLUSH and no CONFIG_WCE the cache is writeback). */
  flush(): void {
    if (!this.info.flush) return; // writethrough: nothing to do
    run(this, Blk.T_FLUSH, 0, 0, 0);
  }

  /** The device ID string (up to 20 ASCII characters). */
  getId(): string {
    return getId(this);
  }

  // ---- DISCARD / WRITE_ZEROES / SECURE_ERASE (ranges.ts) ------------------------------------

  discard(ranges: readonly BlkRange[]): void {
    rangeOps.discard(this, ranges);
  }

  writeZeroes(ranges: readonly BlkRange[]): void {
    rangeOps.writeZeroes(this, ranges);
  }

  secureErase(ranges: readonly BlkRange[]): void {
    rangeOps.secureErase(this, ranges);
  }

  // ---- zoned devices (zoned.ts) -----------------------------------------------------------

  /** Up to `max` zones from the one holding `sector` (ZONE_REPORT; blk.driver.28, .29). */
  reportZones(sector: number, max: number): BlkZoneInfo[] {
    return zoned.reportZones(this, sector, max);
  }

  /** A zone management request (ZONE_OPEN / CLOSE / FINISH / RESET at a zone start, RESET_ALL); returns the status. */
  zoneManage(type: number, sector: number): number {
    return zoned.zoneManage(this, type, sector);
  }

  zoneOpen(sector: number): number {
    return this.zoneManage(Blk.T_ZONE_OPEN, sector);
  }

  zoneClose(sector: number): number {
    return this.zoneManage(Blk.T_ZONE_CLOSE, sector);
  }

  zoneFinish(sector: number): number {
    return this.zoneManage(Blk.T_ZONE_FINISH, sector);
  }

  zoneReset(sector: number): number {
    return this.zoneManage(Blk.T_ZONE_RESET, sector);
  }

  /** ZONE_RESET_ALL (blk.driver.31: sector 0). */
  zoneResetAll(): number {
    return this.zoneManage(Blk.T_ZONE_RESET_ALL, 0);
  }

  /** ZONE_APPEND `data` to the zone starting at `zoneStart`: the status and, on success, where the data went. */
  zoneAppend(zoneStart: number, data: Uint8Array): { status: number; sector?: number } {
    return zoned.zoneAppend(this, zoneStart, data);
  }

  /** One OUT request (no splitting): the status, for zoned writes whose status matters. */
  writeOnce(sector: number, data: Uint8Array): number {
    return zoned.writeOnce(this, sector, data);
  }

  /**
   * Switch the cache mode (CONFIG_WCE negotiated, blk.driver.22): writeback or writethrough.
   * Writes completed while the cache was writeback are not stable just because the mode changed
   * (blk.driver.23): switching to writethrough flushes them.
   */
  setWriteback(on: boolean): void {
    if (!this.info.configWce) throw new UsageError('usage.blk.wce', 'VIRTIO_BLK_F_CONFIG_WCE not negotiated');
    this.dev.writeConfig(BlkConfig.WRITEBACK, 1, on ? 1 : 0); // refused while suspended (status_init.driver.19)
    const wb = this.dev.config8(BlkConfig.WRITEBACK);
    this.info.cache = wb === 0 ? 'writethrough' : 'writeback';
    if (!on && this.info.flush) run(this, Blk.T_FLUSH, 0, 0, 0);
  }

  /** Reset the device and release the queues' memory. */
  shutdown(): void {
    this.dev.shutdown();
    for (const qs of this.queues) this.platform.dma.free(qs.dma);
    this.queues.length = 0;
  }
}
