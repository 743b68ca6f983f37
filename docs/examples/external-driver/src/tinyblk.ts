/**
 * tinyblk: a minimal virtio-blk driver for virtio-mmio (version 2) with one split virtqueue,
 * written against pvkit's GuestPlatform interface and nothing else of pvkit's: the register
 * offsets, status bits and ring layouts are its own, taken from the VIRTIO 1.4 specification.
 *
 * It negotiates VIRTIO_F_VERSION_1 only and keeps one request in flight: a chain of three
 * descriptors (request header, data, status byte), completed by interrupt.
 */
import type { GuestPlatform, PlatformDevice } from 'pvkit';

/** virtio-mmio register offsets (VIRTIO 1.4, 4.2.2). */
const Reg = {
  MAGIC: 0x000,
  VERSION: 0x004,
  DEVICE_ID: 0x008,
  DEVICE_FEATURES: 0x010,
  DEVICE_FEATURES_SEL: 0x014,
  DRIVER_FEATURES: 0x020,
  DRIVER_FEATURES_SEL: 0x024,
  QUEUE_SEL: 0x030,
  QUEUE_NUM_MAX: 0x034,
  QUEUE_NUM: 0x038,
  QUEUE_READY: 0x044,
  QUEUE_NOTIFY: 0x050,
  INTERRUPT_STATUS: 0x060,
  INTERRUPT_ACK: 0x064,
  STATUS: 0x070,
  QUEUE_DESC_LOW: 0x080,
  QUEUE_DESC_HIGH: 0x084,
  QUEUE_DRIVER_LOW: 0x090,
  QUEUE_DRIVER_HIGH: 0x094,
  QUEUE_DEVICE_LOW: 0x0a0,
  QUEUE_DEVICE_HIGH: 0x0a4,
  CONFIG_GENERATION: 0x0fc,
  CONFIG: 0x100,
} as const;

const MMIO_MAGIC = 0x74726976; // "virt", little-endian
const VIRTIO_ID_BLOCK = 2;
const S_ACKNOWLEDGE = 1;
const S_DRIVER = 2;
const S_DRIVER_OK = 4;
const S_FEATURES_OK = 8;
const S_FAILED = 128;
/** VIRTIO_F_VERSION_1 is feature bit 32: bit 0 of feature word 1. */
const VERSION_1_IN_WORD_1 = 1;
const DESC_F_NEXT = 1;
const DESC_F_WRITE = 2;
const BLK_T_IN = 0;
const BLK_T_OUT = 1;
const BLK_S_OK = 0;
const SECTOR = 512;
/** Largest transfer of one request (the data buffer is allocated once). */
export const MAX_TRANSFER = 64 * 1024;

export type TinyBlkErrorCode = 'not-virtio' | 'not-blk' | 'no-version-1' | 'features-refused' | 'no-queue' | 'timeout' | 'bad-used' | 'io-error' | 'bad-request';

/** Everything tinyblk refuses or sees go wrong; `code` says which. */
export class TinyBlkError extends Error {
  constructor(
    readonly code: TinyBlkErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'TinyBlkError';
  }
}

export interface TinyBlkOptions {
  /** Queue size to use, at most what the device offers. Default 8. */
  readonly queueSize?: number;
  /** How long to wait for a completion, in platform nanoseconds. Default 1 s. */
  readonly timeoutNs?: number;
  /** A deliberate bug, to see the conformance monitor catch it: go to DRIVER_OK without FEATURES_OK. */
  readonly bug?: 'skip-features-ok';
}

export class TinyBlk {
  /** Disk size in 512-byte sectors, from config space. */
  readonly capacity: number;
  private readonly n: number;
  private readonly desc: number;
  private readonly avail: number;
  private readonly used: number;
  private readonly header: number;
  private readonly data: number;
  private readonly status: number;
  private availIdx = 0;
  private usedIdx = 0;

  private constructor(
    private readonly p: GuestPlatform,
    private readonly dev: PlatformDevice,
    private readonly opts: TinyBlkOptions,
  ) {
    const r = (off: number) => p.mmioRead(dev.base + off, 4);
    const w = (off: number, v: number) => p.mmioWrite(dev.base + off, 4, v);
    if (r(Reg.MAGIC) !== MMIO_MAGIC || r(Reg.VERSION) !== 2) throw new TinyBlkError('not-virtio', `no virtio-mmio version 2 device at 0x${dev.base.toString(16)}`);
    if (r(Reg.DEVICE_ID) !== VIRTIO_ID_BLOCK) throw new TinyBlkError('not-blk', `device at 0x${dev.base.toString(16)} is not a block device`);
    // reset, and wait until the device shows it is done
    w(Reg.STATUS, 0);
    while (r(Reg.STATUS) !== 0) p.spin(1000);
    let status = S_ACKNOWLEDGE;
    w(Reg.STATUS, status);
    status |= S_DRIVER;
    w(Reg.STATUS, status);
    w(Reg.DEVICE_FEATURES_SEL, 1);
    if (!(r(Reg.DEVICE_FEATURES) & VERSION_1_IN_WORD_1)) this.fail(status, 'no-version-1', 'the device does not offer VIRTIO_F_VERSION_1');
    w(Reg.DRIVER_FEATURES_SEL, 0);
    w(Reg.DRIVER_FEATURES, 0);
    w(Reg.DRIVER_FEATURES_SEL, 1);
    w(Reg.DRIVER_FEATURES, VERSION_1_IN_WORD_1);
    if (opts.bug !== 'skip-features-ok') {
      status |= S_FEATURES_OK;
      w(Reg.STATUS, status);
      if (!(r(Reg.STATUS) & S_FEATURES_OK)) this.fail(status, 'features-refused', 'the device refused VIRTIO_F_VERSION_1 alone');
    }
    this.capacity = this.readCapacity();
    // queue 0: the request queue
    w(Reg.QUEUE_SEL, 0);
    const max = r(Reg.QUEUE_NUM_MAX);
    if (max === 0 || r(Reg.QUEUE_READY) !== 0) this.fail(status, 'no-queue', `request queue unavailable (QueueNumMax ${max})`);
    this.n = Math.min(opts.queueSize ?? 8, max);
    this.desc = p.dma.alloc(16 * this.n, 16);
    this.avail = p.dma.alloc(6 + 2 * this.n, 2);
    this.used = p.dma.alloc(6 + 8 * this.n, 4);
    w(Reg.QUEUE_NUM, this.n);
    for (const [lo, addr] of [
      [Reg.QUEUE_DESC_LOW, this.desc],
      [Reg.QUEUE_DRIVER_LOW, this.avail],
      [Reg.QUEUE_DEVICE_LOW, this.used],
    ] as const) {
      w(lo, addr >>> 0);
      w(lo + 4, Math.floor(addr / 2 ** 32));
    }
    w(Reg.QUEUE_READY, 1);
    this.header = p.dma.alloc(16, 16);
    this.data = p.dma.alloc(MAX_TRANSFER, SECTOR);
    this.status = p.dma.alloc(1, 1);
    w(Reg.STATUS, status | S_DRIVER_OK);
  }

  /** Initialise the virtio-blk device at `dev` (a virtio-mmio window the platform describes). */
  static probe(p: GuestPlatform, dev: PlatformDevice, opts: TinyBlkOptions = {}): TinyBlk {
    return new TinyBlk(p, dev, opts);
  }

  read(sector: number, sectors: number): Uint8Array {
    this.request(BLK_T_IN, sector, sectors * SECTOR);
    return this.p.mem.readBytes(this.data, sectors * SECTOR);
  }

  write(sector: number, data: Uint8Array): void {
    if (data.length % SECTOR !== 0) throw new TinyBlkError('bad-request', `a write is whole sectors, got ${data.length} bytes`);
    this.p.mem.writeBytes(this.data, data);
    this.request(BLK_T_OUT, sector, data.length);
  }

  /** Tell the device we are done with it (a reset). */
  shutdown(): void {
    this.p.mmioWrite(this.dev.base + Reg.STATUS, 4, 0);
  }

  private fail(status: number, code: TinyBlkErrorCode, message: string): never {
    this.p.mmioWrite(this.dev.base + Reg.STATUS, 4, status | S_FAILED);
    throw new TinyBlkError(code, message);
  }

  /** The 64-bit capacity, read until the configuration generation is stable around it. */
  private readCapacity(): number {
    const r = (off: number) => this.p.mmioRead(this.dev.base + off, 4);
    for (;;) {
      const gen = r(Reg.CONFIG_GENERATION);
      const lo = r(Reg.CONFIG);
      const hi = r(Reg.CONFIG + 4);
      if (r(Reg.CONFIG_GENERATION) === gen) return hi * 2 ** 32 + lo;
    }
  }

  private request(type: number, sector: number, len: number): void {
    if (!Number.isInteger(sector) || sector < 0 || len <= 0 || len > MAX_TRANSFER || sector + len / SECTOR > this.capacity) {
      throw new TinyBlkError('bad-request', `sectors ${sector}+${len / SECTOR} outside the disk (${this.capacity} sectors) or over ${MAX_TRANSFER} bytes`);
    }
    const m = this.p.mem;
    m.write32(this.header, type);
    m.write32(this.header + 4, 0);
    m.write64(this.header + 8, sector);
    m.write8(this.status, 0xff);
    const chain: [addr: number, len: number, flags: number][] = [
      [this.header, 16, DESC_F_NEXT],
      [this.data, len, DESC_F_NEXT | (type === BLK_T_IN ? DESC_F_WRITE : 0)],
      [this.status, 1, DESC_F_WRITE],
    ];
    chain.forEach(([addr, l, flags], i) => {
      const d = this.desc + 16 * i;
      m.write64(d, addr);
      m.write32(d + 8, l);
      m.write16(d + 12, flags);
      m.write16(d + 14, flags & DESC_F_NEXT ? i + 1 : 0);
    });
    m.write16(this.avail + 4 + 2 * (this.availIdx % this.n), 0);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    m.write16(this.avail + 2, this.availIdx);
    this.p.mmioWrite(this.dev.base + Reg.QUEUE_NOTIFY, 4, 0);
    const deadline = this.p.now() + (this.opts.timeoutNs ?? 1e9);
    while (m.read16(this.used + 2) === this.usedIdx) {
      const vector = this.p.irq.wait(Math.max(0, deadline - this.p.now()));
      if (vector === null) throw new TinyBlkError('timeout', `no completion within ${this.opts.timeoutNs ?? 1e9} ns`);
      const isr = this.p.mmioRead(this.dev.base + Reg.INTERRUPT_STATUS, 4);
      this.p.mmioWrite(this.dev.base + Reg.INTERRUPT_ACK, 4, isr);
      this.p.irq.eoi(vector);
    }
    // never trust the device: the used entry must name our chain and cover the status byte
    const slot = this.used + 4 + 8 * (this.usedIdx % this.n);
    const id = m.read32(slot);
    const written = m.read32(slot + 4);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    if (id !== 0) throw new TinyBlkError('bad-used', `the device used descriptor ${id}, tinyblk made only chain 0 available`);
    const want = type === BLK_T_IN ? len + 1 : 1;
    if (written < 1 || written > want) throw new TinyBlkError('bad-used', `used length ${written}, expected 1 to ${want}`);
    const st = m.read8(this.status);
    if (st !== BLK_S_OK) throw new TinyBlkError('io-error', `request type ${type} at sector ${sector} ended with status ${st}`);
  }
}
