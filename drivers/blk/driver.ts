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
import type { GuestPlatform } from '../../spec-refs/platform/platform.ts';
import type { VirtioTransport } from '../transport/transport.ts';
import { Blk, BlkF, DeviceType, F, bit, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { DeviceMisbehaviourError, NegotiationError, PvkitError, RequestError, UsageError } from '../../spec-refs/errors.ts';
import { VirtioDriverDevice, type DeviceInitOptions } from '../core/device.ts';
import { BlkConfig, BlkDwz, BlkReqHeader, BlkZonedConfig, BlkZoneModel, BlkZoneReport, BlkZoneType, BLK_APPEND_SECTOR_BYTES } from '../../spec-refs/abi/blk-layout.ts';

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
  /** ZONE_APPEND's append_sector (8 bytes after the status in the slot's DMA area). */
  readonly append: DmaBuffer;
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
  /**
   * Zoned devices (VIRTIO_BLK_F_ZONED): true (default) accepts ZONED, since this driver handles
   * every zone model (blk.driver.5); false declines it, fails a host-managed device before
   * FEATURES_OK (blk.driver.8) and drives a host-aware one as a plain disk (blk.driver.9, .10).
   */
  readonly zoned?: boolean;
}

/** The zoned characteristics the driver works with (ZONED negotiated, model HM or HA). */
export interface BlkZonedInfo {
  readonly model: 'hm' | 'ha';
  readonly zoneSectors: number;
  readonly maxOpen: number;
  readonly maxActive: number;
  /** 0: ZONE_APPEND not supported. */
  readonly maxAppendSectors: number;
  /** Bytes. */
  readonly writeGranularity: number;
  readonly nrZones: number;
  /** Zone types (BlkZoneType) from the report taken at probe. */
  readonly types: Uint8Array;
}

/** One zone as ZONE_REPORT describes it. */
export interface BlkZoneInfo {
  readonly start: number;
  readonly cap: number;
  readonly wp: number;
  readonly type: number;
  readonly state: number;
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
  /** Set when ZONED is negotiated and the model is host-managed or host-aware. */
  zoned?: BlkZonedInfo;
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
  /** ZONE_APPEND completed with OK: where the data went (blk.driver.35). */
  readonly appendSector?: number;
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
    if (!req.unchecked) this.check(type, sector, data);
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

  /** Driver-side rules for a request (the spec's driver requirements). */
  private check(type: number, sector: number, data: readonly DmaBuffer[]): void {
    const info = this.info;
    let bytes = 0;
    for (const b of data) bytes += b.len;
    // blk.driver.27: sector addresses are whole 512-byte sectors
    if (!Number.isSafeInteger(sector) || sector < 0) bad('bad sector', ['blk.driver.27'], 'a non-negative integer', String(sector));
    const z = info.zoned;
    switch (type) {
      case Blk.T_IN:
      case Blk.T_OUT:
        if (bytes % SECTOR !== 0) bad('data is not a multiple of 512 bytes', ['blk.driver.16'], 'a multiple of 512', String(bytes));
        if (sector + bytes / SECTOR > info.capacity) bad('request beyond the capacity', ['blk.driver.12'], `sectors below ${info.capacity}`, `${sector}+${bytes / SECTOR}`);
        if (type === Blk.T_OUT && info.readOnly) throw new RequestError('blk.ro', 'the device is read-only', { statements: ['blk.device.21'] });
        if (type === Blk.T_OUT && z && bytes > 0) {
          // blk.driver.36: writes to sequential zones are aligned to write_granularity and stay in their zone
          const zi = Math.floor(sector / z.zoneSectors);
          if (z.types[zi] === BlkZoneType.SWR || z.types[zi] === BlkZoneType.SWP) {
            if ((sector * SECTOR) % z.writeGranularity !== 0 || bytes % z.writeGranularity !== 0) bad('write to a sequential zone not aligned to write_granularity', ['blk.driver.36'], `multiples of ${z.writeGranularity} bytes`, `sector ${sector}, ${bytes} bytes`);
            if (sector + bytes / SECTOR > (zi + 1) * z.zoneSectors) bad('write runs past the end of its sequential zone', ['blk.driver.36'], `end <= ${(zi + 1) * z.zoneSectors}`, String(sector + bytes / SECTOR));
          }
        }
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
      case Blk.T_ZONE_REPORT:
        if (!z) bad('zone request without a zoned device', [], 'ZONED negotiated, model HM or HA', 'not zoned');
        // blk.driver.28: a sector inside the first zone to report
        if (sector >= info.capacity) bad('ZONE_REPORT sector outside the disk', ['blk.driver.28'], `< ${info.capacity}`, String(sector));
        if (bytes < BlkZoneReport.HEADER_SIZE) bad('ZONE_REPORT buffer smaller than the report header', [], `>= ${BlkZoneReport.HEADER_SIZE}`, String(bytes));
        return;
      case Blk.T_ZONE_OPEN:
      case Blk.T_ZONE_CLOSE:
      case Blk.T_ZONE_FINISH:
      case Blk.T_ZONE_RESET:
        if (!z) bad('zone request without a zoned device', [], 'ZONED negotiated, model HM or HA', 'not zoned');
        // blk.driver.30: the first sector of the target zone
        if (sector % z.zoneSectors !== 0 || sector >= info.capacity) bad('zone management sector is not a zone start', ['blk.driver.30'], `a multiple of ${z.zoneSectors} below ${info.capacity}`, String(sector));
        if (bytes !== 0) bad('zone management requests carry no data', [], '0', String(bytes));
        return;
      case Blk.T_ZONE_RESET_ALL:
        if (!z) bad('zone request without a zoned device', [], 'ZONED negotiated, model HM or HA', 'not zoned');
        if (sector !== 0 || bytes !== 0) bad('ZONE_RESET_ALL takes sector 0 and no data', ['blk.driver.31'], 'sector 0', String(sector));
        return;
      case Blk.T_ZONE_APPEND:
        if (!z) bad('zone request without a zoned device', [], 'ZONED negotiated, model HM or HA', 'not zoned');
        if (info.readOnly) throw new RequestError('blk.ro', 'the device is read-only', { statements: ['blk.device.21'] });
        // blk.driver.32: the zone's start; .33: whole write_granularity units; .34: at most max_append_sectors
        if (sector % z.zoneSectors !== 0 || sector >= info.capacity) bad('ZONE_APPEND sector is not a zone start', ['blk.driver.32'], `a multiple of ${z.zoneSectors}`, String(sector));
        if (bytes === 0 || bytes % z.writeGranularity !== 0 || bytes % SECTOR !== 0) bad('ZONE_APPEND size is not a multiple of write_granularity', ['blk.driver.33'], `n * ${z.writeGranularity}`, String(bytes));
        if (bytes / SECTOR > z.maxAppendSectors) bad('ZONE_APPEND larger than max_append_sectors', ['blk.driver.34'], `<= ${z.maxAppendSectors} sectors`, String(bytes / SECTOR));
        return;
      default:
        bad('request type this driver does not send', [], 'IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES, SECURE_ERASE, zone requests', String(type));
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
      const zs = this.info.zoned?.zoneSectors;
      for (let o = 0; o < buf.length; ) {
        let n = Math.min(chunk, buf.length - o);
        if (zs) {
          // blk.device.50: on a zoned device a request stays inside one zone
          const s = sector + o / SECTOR;
          n = Math.min(n, ((Math.floor(s / zs) + 1) * zs - s) * SECTOR);
        }
        handles.push(this.submit({ type, sector: sector + o / SECTOR, data: [{ addr: bounce + o, len: n }] }));
        o += n;
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

  // ---- zoned devices ----------------------------------------------------------------------

  private needZoned(): BlkZonedInfo {
    const z = this.info.zoned;
    if (!z) throw new UsageError('usage.blk.zoned', 'not a zoned device (ZONED not negotiated or model NONE)');
    return z;
  }

  /** Up to `max` zones from the one holding `sector` (ZONE_REPORT; blk.driver.28, .29). */
  reportZones(sector: number, max: number): BlkZoneInfo[] {
    this.needZoned();
    const bytes = BlkZoneReport.HEADER_SIZE + Math.max(0, max) * BlkZoneReport.DESC_SIZE;
    const dma = this.platform.dma;
    const mem = this.platform.mem;
    const buf = dma.alloc(bytes, 16);
    try {
      this.run(Blk.T_ZONE_REPORT, sector, buf, bytes);
      const nr = mem.read32(buf) + mem.read32(buf + 4) * TWO32;
      // the device reports how many descriptors it filled: never more than fit
      if (nr > max) throw new DeviceMisbehaviourError('blk.zone_report', 'nr_zones larger than the buffer holds', { expected: `<= ${max}`, seen: String(nr) });
      const out: BlkZoneInfo[] = [];
      for (let i = 0; i < nr; i++) {
        const d = buf + BlkZoneReport.HEADER_SIZE + i * BlkZoneReport.DESC_SIZE;
        const r64 = (o: number) => mem.read32(d + o) + mem.read32(d + o + 4) * TWO32;
        out.push({ cap: r64(BlkZoneReport.Z_CAP), start: r64(BlkZoneReport.Z_START), wp: r64(BlkZoneReport.Z_WP), type: mem.read8(d + BlkZoneReport.Z_TYPE), state: mem.read8(d + BlkZoneReport.Z_STATE) });
      }
      return out;
    } finally {
      dma.free(buf);
    }
  }

  /** A zone management request (ZONE_OPEN / CLOSE / FINISH / RESET at a zone start, RESET_ALL); returns the status. */
  zoneManage(type: number, sector: number): number {
    this.needZoned();
    const h = this.submit({ type, sector });
    const r = this.wait(h);
    if (r.error) throw r.error;
    return r.status;
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
    this.needZoned();
    const dma = this.platform.dma;
    const buf = dma.alloc(Math.max(SECTOR, data.length), 4096);
    try {
      this.platform.mem.writeBytes(buf, data);
      const h = this.submit({ type: Blk.T_ZONE_APPEND, sector: zoneStart, data: [{ addr: buf, len: data.length }] });
      const r = this.wait(h);
      if (r.error) throw r.error;
      return r.appendSector !== undefined ? { status: r.status, sector: r.appendSector } : { status: r.status };
    } finally {
      dma.free(buf);
    }
  }

  /** One OUT request (no splitting): the status, for zoned writes whose status matters. */
  writeOnce(sector: number, data: Uint8Array): number {
    const dma = this.platform.dma;
    const buf = dma.alloc(Math.max(SECTOR, data.length), 4096);
    try {
      this.platform.mem.writeBytes(buf, data);
      const r = this.wait(this.submit({ type: Blk.T_OUT, sector, data: [{ addr: buf, len: data.length }] }));
      if (r.error) throw r.error;
      return r.status;
    } finally {
      dma.free(buf);
    }
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
    if (has(BlkF.ZONED)) {
      const o = BlkConfig.ZONED;
      const model = t.readConfig(o + BlkZonedConfig.MODEL, 1);
      if (model === BlkZoneModel.HM || model === BlkZoneModel.HA) {
        const zoneSectors = r32(o + BlkZonedConfig.ZONE_SECTORS);
        if (zoneSectors === 0) throw new DeviceMisbehaviourError('blk.zone_sectors', 'zoned device reports zone_sectors 0', { statements: ['blk.device.10'], expected: '> 0', seen: '0' });
        let wg = r32(o + BlkZonedConfig.WRITE_GRANULARITY);
        if (wg === 0 || wg % SECTOR !== 0) {
          w.push(`write_granularity ${wg}: taken as 512`);
          wg = SECTOR;
        }
        const nrZones = Math.ceil(capacity / zoneSectors);
        out.zoned = { model: model === BlkZoneModel.HM ? 'hm' : 'ha', zoneSectors, maxOpen: r32(o + BlkZonedConfig.MAX_OPEN_ZONES), maxActive: r32(o + BlkZonedConfig.MAX_ACTIVE_ZONES), maxAppendSectors: r32(o + BlkZonedConfig.MAX_APPEND_SECTORS), writeGranularity: wg, nrZones, types: new Uint8Array(nrZones) };
      } else if (model !== BlkZoneModel.NONE) {
        throw new DeviceMisbehaviourError('blk.zone_model', 'unknown zoned model', { statements: ['blk.device.9'], expected: '0, 1 or 2', seen: String(model) });
      }
    }
    return out;
  });
  warnings.push(...w);
  return info;
}
