import { GuestMemory, type RamRegionSpec } from './memory.ts';
import { Bus, type AccessSize } from './bus.ts';
import { Scheduler, type SchedulerOptions } from './scheduler.ts';
import { VCpu, type ExitReasonName } from './vcpu.ts';
import { InterruptController, type IrqLine } from './irq.ts';
import { EventCounts, costOf, type CostBreakdown, type CostProfile } from './cost.ts';
import { ExtentAllocator } from '../../spec-refs/platform/dma.ts';
import { getProfile } from './profiles.ts';
import './profile-data.ts';
import type { CpuServices, GuestPlatform, Interrupts, PciInfo, PlatformDevice } from '../../spec-refs/platform/platform.ts';
import type { RegisterHandler } from './bus.ts';

export interface MachineOptions {
  /** RAM regions; default: 64 MiB at 0 and 64 MiB at 4 GiB, with the hole between for MMIO. */
  ram?: RamRegionSpec[];
  /** RAM kept out of the DMA allocator (firmware, page tables...): the first `reservedLow` bytes of the first region. */
  reservedLow?: number;
  scheduler?: SchedulerOptions;
  /** Run on an existing scheduler (several machines on one virtual clock, e.g. two guests on one network). */
  sharedScheduler?: Scheduler;
  /** Cost profile name (default 'modern'). */
  profile?: string;
  /**
   * Advance virtual time by each exit's modelled cost (default true), so that latencies seen
   * on the simulated clock include the exits a driver causes.
   */
  exitsTakeTime?: boolean;
}

/** Where the simulated platform puts things (mirrors QEMU microvm / q35 where it can). */
export const Layout = {
  MMIO_DEVICE_BASE: 0xfeb0_0000,
  MMIO_DEVICE_STRIDE: 0x200,
  MMIO_DEVICE_GSI_BASE: 5,
  PCI_ECAM_BASE: 0xb000_0000,
  PCI_MMIO_BASE: 0xc000_0000,
  PCI_MMIO_SIZE: 0x3ec0_0000,
  PCI_MMIO64_BASE: 0x80_0000_0000,
  PCI_MMIO64_SIZE: 0x10_0000_0000,
  PCI_IO_BASE: 0xc000,
  PCI_IO_SIZE: 0x4000,
} as const;

const DEFAULT_RAM: RamRegionSpec[] = [
  { base: 0, size: 64 << 20, name: 'ram-low' },
  { base: 0x1_0000_0000, size: 64 << 20, name: 'ram-high' },
];

/**
 * The simulated machine: guest memory, bus, interrupt controller, one vCPU, a scheduler on
 * virtual time and event counters. `platform` is the GuestPlatform a driver runs on; device
 * models attach to `bus`, `irq`, `mem` and `scheduler` directly.
 */
export class Machine {
  readonly mem: GuestMemory;
  readonly bus = new Bus();
  readonly scheduler: Scheduler;
  readonly events = new EventCounts();
  readonly vcpu: VCpu;
  readonly irq: InterruptController;
  readonly dma: ExtentAllocator;
  profile: CostProfile;
  readonly platform: GuestPlatform;
  private readonly mmioDevices: PlatformDevice[] = [];
  private pciInfo: PciInfo | undefined;
  private cpuServices: CpuServices | undefined;
  /** Whether each exit advances virtual time by its modelled cost (MachineOptions.exitsTakeTime). */
  readonly exitsTakeTime: boolean;

  constructor(opts: MachineOptions = {}) {
    this.mem = new GuestMemory(opts.ram ?? DEFAULT_RAM);
    this.scheduler = opts.sharedScheduler ?? new Scheduler(opts.scheduler);
    this.profile = getProfile(opts.profile ?? 'modern');
    this.exitsTakeTime = opts.exitsTakeTime ?? true;
    this.vcpu = new VCpu(0, this.events);
    this.vcpu.addExitListener((_v, e) => {
      if (this.exitsTakeTime) this.scheduler.advance(this.cyclesToNs(this.profile.constants[`exit.${e.reason}`]?.cycles ?? 0));
    });
    this.irq = new InterruptController(this.vcpu, () => {
      // An interrupt raised by device work (another host thread) while the vCPU runs guest code
      // kicks it out with an IPI: an EXTERNAL_INTERRUPT exit. A halted vCPU is just woken.
      if (this.vcpuRunning) this.vcpu.exit({ reason: 'EXTERNAL_INTERRUPT' });
    });
    const reserved = opts.reservedLow ?? 1 << 20;
    const ranges = this.mem.regions.map((r, i) => (i === 0 ? { base: r.base + reserved, size: r.size - reserved } : { base: r.base, size: r.size }));
    this.dma = new ExtentAllocator(ranges, (gpa, len) => this.mem.fill(gpa, len, 0));
    this.platform = this.makePlatform();
    for (const l of Machine.createListeners) l(this);
  }

  private static readonly createListeners: ((m: Machine) => void)[] = [];

  /**
   * Observe every Machine constructed from now on (a trace of a command that builds one machine
   * per check or per benchmark run). Returns a function that stops observing.
   */
  static addCreateListener(l: (m: Machine) => void): () => void {
    Machine.createListeners.push(l);
    return () => {
      const i = Machine.createListeners.indexOf(l);
      if (i >= 0) Machine.createListeners.splice(i, 1);
    };
  }

  /** True while the vCPU executes guest code (not halted in irq.wait). */
  private vcpuRunning = true;

  cyclesToNs(cycles: number): number {
    return cycles / this.profile.ghz;
  }

  /** Map a device's register window into MMIO space, exiting on every access. */
  mapMmio(base: number, size: number, name: string, handler: RegisterHandler): void {
    this.bus.mmio.map(base, size, name, handler);
  }

  /** Add a firmware-described virtio-mmio device in the next free slot; returns its base and line. */
  addMmioDevice(name: string, handler: RegisterHandler, slotSize: number = Layout.MMIO_DEVICE_STRIDE): { base: number; line: IrqLine } {
    const i = this.mmioDevices.length;
    const base = Layout.MMIO_DEVICE_BASE + i * Layout.MMIO_DEVICE_STRIDE;
    const line = this.irq.line(Layout.MMIO_DEVICE_GSI_BASE + i);
    this.mapMmio(base, slotSize, name, handler);
    this.mmioDevices.push({ kind: 'virtio-mmio', base, size: slotSize, vector: line.vector, name });
    return { base, line };
  }

  /** Installed by the PCI host bridge when the machine has one. */
  setPci(info: PciInfo): void {
    this.pciInfo = info;
  }

  /** Installed by the hypervisor layer (device-models/hypervisor) when it provides CPU services. */
  setCpu(cpu: CpuServices): void {
    this.cpuServices = cpu;
  }

  /** Modelled cost of everything counted so far under the machine's profile. */
  cost(profile: CostProfile = this.profile): CostBreakdown {
    return costOf(this.events, profile);
  }

  exits(reason?: ExitReasonName): number {
    return this.vcpu.exitCount(reason);
  }

  private makePlatform(): GuestPlatform {
    const m = this;
    const irq: Interrupts = {
      wait(timeoutNs: number): number | null {
        const v = m.vcpu.takeInterrupt();
        if (v !== undefined) return v;
        m.vcpu.exit({ reason: 'HLT' });
        m.vcpu.halted = true;
        m.vcpuRunning = false;
        try {
          const deadline = m.scheduler.now + timeoutNs;
          m.scheduler.runUntil(() => m.vcpu.hasPendingInterrupt(), deadline);
        } finally {
          m.vcpuRunning = true;
          m.vcpu.halted = false;
        }
        return m.vcpu.takeInterrupt() ?? null;
      },
      poll(): number | null {
        return m.vcpu.takeInterrupt() ?? null;
      },
      eoi(vector: number): void {
        m.irq.eoi(vector);
      },
    };
    return {
      name: 'sim',
      mem: m.mem,
      dma: m.dma,
      mmioRead(addr: number, size: AccessSize): number {
        m.vcpu.exit({ reason: m.bus.mmio.isClaimed(addr) ? 'EPT_MISCONFIG' : 'EPT_VIOLATION', qualification: addr });
        return m.bus.mmio.read(addr, size);
      },
      mmioWrite(addr: number, size: AccessSize, value: number): void {
        m.vcpu.exit({ reason: m.bus.mmio.isClaimed(addr) ? 'EPT_MISCONFIG' : 'EPT_VIOLATION', qualification: addr });
        m.bus.mmio.write(addr, size, value);
      },
      pioRead(port: number, size: 1 | 2 | 4): number {
        if (!m.vcpu.controls.ioPassthrough.has(port)) m.vcpu.exit({ reason: 'IO_INSTRUCTION', qualification: port });
        return m.bus.pio.read(port, size);
      },
      pioWrite(port: number, size: 1 | 2 | 4, value: number): void {
        if (!m.vcpu.controls.ioPassthrough.has(port)) m.vcpu.exit({ reason: 'IO_INSTRUCTION', qualification: port });
        m.bus.pio.write(port, size, value);
      },
      devices: () => m.mmioDevices,
      get pci() {
        return m.pciInfo;
      },
      irq,
      now: () => m.scheduler.now,
      spin(ns: number): void {
        m.scheduler.runFor(ns);
      },
      get cpu() {
        return m.cpuServices;
      },
    };
  }
}
