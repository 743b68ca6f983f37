import { ExtentAllocator } from '../../../spec-refs/platform/dma.ts';
import { UsageError, hex } from '../../../spec-refs/errors.ts';
import type { AccessSize, GuestPlatform, Interrupts, PciInfo, PlatformDevice } from '../../../spec-refs/platform/platform.ts';
import { QtestClient } from './client.ts';
import { QtestMemory, type RamRange } from './memory.ts';
import type { SyncChannel } from './sync-channel.ts';

/**
 * GuestPlatform over QEMU's qtest protocol: the same driver code that runs on the simulated
 * machine drives QEMU's real device models, with no guest kernel. The CPU sits halted in a
 * 16-byte BIOS; the platform plays firmware (it enables ECAM on q35, lists virtio-mmio
 * transports on microvm) and the guest kernel's interrupt plumbing:
 *
 * - MSI/MSI-X: `pci.msiMessage(v)` gives an address inside guest RAM (one 32-bit slot per
 *   vector); QEMU's MSI write lands there and `irq.poll` reads the slots (as libqos does).
 * - INTx and virtio-mmio lines: `irq_intercept_in <ioapic>` turns IOAPIC inputs into
 *   "IRQ raise/lower N" lines; GSI N is vector 0x20 + N, as on the simulated machine.
 *
 * Time is the host's: `wait` polls until an interrupt or the deadline, `spin` sleeps.
 */
export interface QtestPciConfig {
  readonly ecamBase?: number;
  readonly mmioWindow: { base: number; size: number };
  readonly mmio64Window?: { base: number; size: number };
  readonly ioWindow: { base: number; size: number };
  /** GSI of INTx pin (1..4) of bus/dev/fn. */
  intxGsi(bus: number, dev: number, fn: number, pin: number): number;
}

export interface QtestPlatformOptions {
  readonly name: string;
  /** RAM regions of the machine (guest-physical). */
  readonly ram: readonly RamRange[];
  /** Ranges the DMA allocator hands out (inside `ram`). */
  readonly dma: readonly RamRange[];
  /** A RAM page (not in `dma`) for MSI messages; needed for `pci.msiMessage`. */
  readonly msiArea?: number;
  readonly pci?: QtestPciConfig;
  /** virtio-mmio transports (base, size, GSI) the firmware would describe; populated ones are listed. */
  readonly mmioSlots?: readonly { base: number; size: number; gsi: number }[];
  /** QOM path of the interrupt controller whose inputs are intercepted (e.g. 'ioapic'). */
  readonly irqIntercept?: string;
  /** Cache line size for guest memory reads (default 1024). */
  readonly lineSize?: number;
  /**
   * Wait timeouts are host time; a driver written for the simulated machine may wait a few
   * virtual microseconds for a completion that takes QEMU a millisecond. Each wait lasts at
   * least this long (default 0: honour the caller's timeout exactly).
   */
  readonly minWaitNs?: number;
  /**
   * Target time runs this many times slower than host time (default 1): `now()` is host time
   * divided by it, `spin(ns)` and `irq.wait(ns)` last ns times it. Checks and drivers written
   * for the simulated machine bound their waits in virtual time sized for pvkit's own devices;
   * QEMU under TCG on a busy host needs more wall time for the same work (the qemu conformance
   * target uses 20).
   */
  readonly timeScale?: number;
}

const VECTOR_BASE = 0x20;
const MSI_SLOTS = 256;
const MSI_DATA_TAG = 0x5076_0000; // 'Pv' in the high half: never zero, vector in the low byte

export const VIRTIO_MMIO_MAGIC = 0x7472_6976;

export class QtestPlatform implements GuestPlatform {
  readonly name: string;
  readonly client: QtestClient;
  readonly mem: QtestMemory;
  readonly dma: ExtentAllocator;
  readonly pci: PciInfo | undefined;
  readonly irq: Interrupts;
  readonly cpu = undefined;
  private readonly mmioDevices: PlatformDevice[] = [];
  private readonly msiArea: number | undefined;
  private readonly levels = new Uint8Array(256);
  private readonly pending = new Uint8Array(256);
  private pendingCount = 0;
  private readonly t0 = process.hrtime.bigint();
  private readonly minWaitNs: number;
  private readonly timeScale: number;
  private readonly sleepCell = new Int32Array(new SharedArrayBuffer(4));
  /** Interrupts seen: IOAPIC lines raised (INTx, virtio-mmio) and MSI messages taken from RAM. */
  readonly irqStats = { lineRaises: 0, msis: 0 };

  constructor(chan: SyncChannel, opts: QtestPlatformOptions) {
    this.name = opts.name;
    this.client = new QtestClient(chan);
    this.client.onIrq = (raised, line) => this.onIrqLine(raised, line);
    this.mem = new QtestMemory(this.client, opts.ram, opts.lineSize);
    this.dma = new ExtentAllocator(opts.dma, (gpa, len) => this.mem.fill(gpa, len, 0));
    this.msiArea = opts.msiArea;
    this.minWaitNs = opts.minWaitNs ?? 0;
    this.timeScale = opts.timeScale ?? 1;
    if (!(this.timeScale > 0)) throw new UsageError('qtest.time_scale', 'timeScale must be positive', { seen: String(opts.timeScale) });
    const endian = this.client.command('endianness');
    if (endian !== 'OK little') throw new UsageError('qtest.endianness', 'pvkit drives little-endian targets only', { seen: endian });
    if (opts.irqIntercept) this.client.irqInterceptIn(opts.irqIntercept);
    if (this.msiArea !== undefined) this.mem.fill(this.msiArea, MSI_SLOTS * 4, 0);
    if (opts.mmioSlots) this.probeMmio(opts.mmioSlots);
    this.pci = opts.pci ? this.makePci(opts.pci) : undefined;
    this.irq = this.makeIrq();
  }

  private probeMmio(slots: readonly { base: number; size: number; gsi: number }[]): void {
    // one round trip: magic and device id of every slot
    const cmds: number[] = [];
    for (const s of slots) cmds.push(s.base, s.base + 8);
    const values = this.readMany(cmds);
    slots.forEach((s, i) => {
      if (values[2 * i] === VIRTIO_MMIO_MAGIC && values[2 * i + 1] !== 0) {
        this.mmioDevices.push({ kind: 'virtio-mmio', base: s.base, size: s.size, vector: VECTOR_BASE + s.gsi, name: `virtio-mmio@${hex(s.base)}` });
      }
    });
  }

  /** 32-bit MMIO reads of many addresses in one round trip. */
  readMany(addrs: readonly number[]): number[] {
    this.mem.invalidate();
    return this.client.readMany(addrs, 4);
  }

  private makePci(p: QtestPciConfig): PciInfo {
    const area = this.msiArea;
    return {
      ecamBase: p.ecamBase,
      mmioWindow: p.mmioWindow,
      mmio64Window: p.mmio64Window,
      ioWindow: p.ioWindow,
      intxVector: (bus, dev, fn, pin) => {
        const gsi = p.intxGsi(bus, dev, fn, pin);
        if (gsi < 0) throw new UsageError('qtest.intx', 'no INTx route known for this function', { seen: `${bus}:${dev}.${fn} pin ${pin}` });
        return VECTOR_BASE + gsi;
      },
      msiMessage: (vector: number) => {
        if (area === undefined) throw new UsageError('qtest.msi', 'this QEMU platform has no MSI area');
        if (!Number.isInteger(vector) || vector < 0x10 || vector > 0xff) throw new UsageError('qtest.msi', 'MSI vector out of range', { expected: '0x10..0xff', seen: String(vector) });
        return { address: area + vector * 4, data: (MSI_DATA_TAG | vector) >>> 0 };
      },
    };
  }

  private onIrqLine(raised: boolean, line: number): void {
    if (line < 0 || line >= 256 - VECTOR_BASE) return;
    this.levels[line] = raised ? 1 : 0;
    if (raised) {
      this.irqStats.lineRaises++;
      this.setPending(VECTOR_BASE + line);
    }
  }

  private setPending(v: number): void {
    if (!this.pending[v]) {
      this.pending[v] = 1;
      this.pendingCount++;
    }
  }

  private takePending(): number | null {
    if (this.pendingCount === 0) return null;
    for (let v = 255; v >= 0; v--) {
      if (this.pending[v]) {
        this.pending[v] = 0;
        this.pendingCount--;
        return v;
      }
    }
    return null;
  }

  /** One round trip: send what is queued, collect IRQ lines, scan the MSI slots. */
  private collect(): void {
    this.mem.invalidate();
    if (this.msiArea === undefined) {
      this.client.pollEvents();
      return;
    }
    const [slots] = this.client.readMem([[this.msiArea, MSI_SLOTS * 4]]);
    const view = new DataView(slots!.buffer, slots!.byteOffset, slots!.length);
    for (let v = 0; v < MSI_SLOTS; v++) {
      const d = view.getUint32(v * 4, true);
      if (d === 0) continue;
      // clear the slot before the driver looks at its rings (posted, goes out with its next read)
      this.client.write(this.msiArea + v * 4, 4, 0);
      this.irqStats.msis++;
      this.setPending(d & 0xff);
    }
  }

  private makeIrq(): Interrupts {
    return {
      poll: (): number | null => {
        const v = this.takePending();
        if (v !== null) return v;
        this.collect();
        return this.takePending();
      },
      wait: (timeoutNs: number): number | null => {
        const deadline = this.now() + Math.max(timeoutNs, this.minWaitNs);
        let backoffMs = 0.05;
        for (;;) {
          const v = this.irq.poll();
          if (v !== null) return v;
          const left = deadline - this.now();
          if (left <= 0) return null;
          this.sleepMs(Math.min(backoffMs, (left * this.timeScale) / 1e6));
          backoffMs = Math.min(backoffMs * 2, 2);
        }
      },
      eoi: (vector: number): void => {
        // a level-triggered line still asserted interrupts again (as an IOAPIC re-delivers)
        const line = vector - VECTOR_BASE;
        if (line >= 0 && line < 256 - VECTOR_BASE && this.levels[line]) this.setPending(vector);
      },
    };
  }

  private sleepMs(ms: number): void {
    if (ms > 0) Atomics.wait(this.sleepCell, 0, 0, ms);
  }

  mmioRead(addr: number, size: AccessSize): number {
    this.mem.invalidate();
    return this.client.read(addr, size);
  }
  mmioWrite(addr: number, size: AccessSize, value: number): void {
    this.mem.invalidate();
    this.client.write(addr, size, value);
  }
  pioRead(port: number, size: 1 | 2 | 4): number {
    this.mem.invalidate();
    return this.client.in(port, size);
  }
  pioWrite(port: number, size: 1 | 2 | 4, value: number): void {
    this.mem.invalidate();
    this.client.out(port, size, value);
  }
  devices(): readonly PlatformDevice[] {
    return this.mmioDevices;
  }
  now(): number {
    return Number(process.hrtime.bigint() - this.t0) / this.timeScale;
  }
  spin(ns: number): void {
    this.client.flush();
    this.mem.invalidate();
    const end = this.now() + ns;
    for (;;) {
      const left = end - this.now();
      if (left <= 0) break;
      this.sleepMs((left * this.timeScale) / 1e6);
    }
  }
  /** Send everything posted and wait for QEMU to have executed it. */
  sync(): void {
    this.client.flush();
  }
}
