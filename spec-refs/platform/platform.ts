/**
 * The seam between guest drivers and whatever runs them.
 *
 * A driver sees a GuestPlatform and nothing else: guest-physical memory and a DMA allocator,
 * MMIO and port I/O, PCI configuration space, interrupts, time, and (where the target has a
 * CPU the driver can use) CPU services. The simulated machine implements it
 * (device-models/machine/machine.ts); so does the QEMU qtest client. Every call is
 * synchronous, like the load or store it stands for; waiting is explicit.
 */
import type { GuestMemoryAccess } from './guest-memory.ts';

export type { GuestMemoryAccess };
export type AccessSize = 1 | 2 | 4 | 8;

/** Allocates guest-physical memory the driver may share with devices. */
export interface DmaAllocator {
  /** Zeroed, `align`-aligned (power of two) guest-physical memory of `size` bytes. Throws when exhausted. */
  alloc(size: number, align?: number): number;
  free(gpa: number): void;
  /** Bytes still available. */
  readonly available: number;
}

/** A device the platform firmware describes (device tree / ACPI style); PCI devices are found by enumeration instead. */
export interface PlatformDevice {
  readonly kind: 'virtio-mmio';
  readonly base: number;
  readonly size: number;
  /** Interrupt vector the device's line is routed to. */
  readonly vector: number;
  readonly name: string;
}

export interface PciInfo {
  /** ECAM base, when the platform has one. */
  readonly ecamBase?: number;
  /** Window the driver may assign memory BARs from, and the I/O port window. */
  readonly mmioWindow: { base: number; size: number };
  readonly mmio64Window?: { base: number; size: number };
  readonly ioWindow: { base: number; size: number };
  /** INTx pin (1..4 = A..D) of a device -> vector. */
  intxVector(bus: number, dev: number, fn: number, pin: number): number;
  /** Address and data a driver programs into an MSI-X entry for a vector. */
  msiMessage(vector: number): { address: number; data: number };
}

export interface Interrupts {
  /**
   * Wait for an interrupt (the guest executes HLT). Returns the vector taken, or null when
   * `timeoutNs` of target time passes first. On the simulated machine this advances virtual
   * time and runs device work; on QEMU it polls.
   */
  wait(timeoutNs: number): number | null;
  /** Take a pending interrupt without waiting, or null. */
  poll(): number | null;
  /** End of interrupt for a vector taken by wait/poll. */
  eoi(vector: number): void;
}

export interface CpuServices {
  cpuid(leaf: number, subleaf?: number): [eax: number, ebx: number, ecx: number, edx: number];
  rdmsr(msr: number): number;
  wrmsr(msr: number, value: number): void;
  /** A hypercall: number in rax, up to four arguments, result in rax. */
  hypercall(nr: number, a0?: number, a1?: number, a2?: number, a3?: number): number;
  readCr3(): number;
  /**
   * Load CR3. `noFlush` stands for bit 63 of the source operand (with CR4.PCIDE: keep the
   * PCID's TLB entries), which a JS number cannot carry.
   */
  writeCr3(value: number, noFlush?: boolean): void;
  invlpg(va: number): void;
  /**
   * Optional (added for the paravirtual-MMU work; targets without a modelled MMU omit them):
   * a guest memory access through the current address space. Returns the guest-physical address
   * `va` translates to; throws GuestFault (code `cpu.pf`) when the guest tables do not map it.
   * What it costs (TLB hit, hardware walk, shadow fault, software TLB) is the hypervisor's business.
   */
  touch?(va: number, write: boolean): number;
  /** Optional: a kernel store through the direct map (e.g. a page-table entry); it may trap (write-protected page tables). */
  kernelWrite64?(gpa: number, value: number): void;
  /** Optional: the guest runs `count` blocks of ordinary instructions of a named kind (costed by the profile as `guest.<kind>`, or `tcg.<kind>` under emulation). */
  execute?(kind: string, count?: number): void;
}

export interface GuestPlatform {
  readonly name: string;
  readonly mem: GuestMemoryAccess;
  readonly dma: DmaAllocator;
  mmioRead(addr: number, size: AccessSize): number;
  mmioWrite(addr: number, size: AccessSize, value: number): void;
  pioRead(port: number, size: 1 | 2 | 4): number;
  pioWrite(port: number, size: 1 | 2 | 4, value: number): void;
  /** Firmware-described devices (virtio-mmio). */
  devices(): readonly PlatformDevice[];
  /** PCI facts, or undefined on a machine without PCI. Config space itself is reached with pioRead/Write (0xCF8/0xCFC) or mmio (ECAM). */
  readonly pci?: PciInfo;
  readonly irq: Interrupts;
  /** Target time in nanoseconds (virtual on the simulated machine). */
  now(): number;
  /** Let `ns` of target time pass (a busy guest: the CPU does other work). */
  spin(ns: number): void;
  /** CPU services, where the driver runs on a CPU the target models. */
  readonly cpu?: CpuServices;
}
