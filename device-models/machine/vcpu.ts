import { EventCounts } from './cost.ts';

/**
 * VMX basic exit reasons (Intel SDM Vol. 3D, Appendix C, "VMX Basic Exit Reasons").
 * AMD-V exit codes differ in number; pvkit reports the VMX names for both.
 */
export const ExitReason = {
  EXCEPTION_NMI: 0,
  EXTERNAL_INTERRUPT: 1,
  INTERRUPT_WINDOW: 7,
  CPUID: 10,
  HLT: 12,
  INVLPG: 14,
  VMCALL: 18,
  CR_ACCESS: 28,
  IO_INSTRUCTION: 30,
  MSR_READ: 31,
  MSR_WRITE: 32,
  EPT_VIOLATION: 48,
  EPT_MISCONFIG: 49,
} as const;
export type ExitReasonName = keyof typeof ExitReason;

export const exitReasonName: Record<number, ExitReasonName> = Object.fromEntries(
  Object.entries(ExitReason).map(([k, v]) => [v, k as ExitReasonName]),
) as Record<number, ExitReasonName>;

/** What an exit is about: the VMCS exit qualification and the fields handlers need. */
export interface ExitInfo {
  readonly reason: ExitReasonName;
  /** e.g. the port, the MSR index, the GPA, the CR number */
  readonly qualification?: number;
  readonly detail?: string;
}

export type ExitListener = (vcpu: VCpu, exit: ExitInfo) => void;

/**
 * VMCS-like execution controls: which guest operations cause a VM exit.
 * Defaults follow what KVM sets up on a VT-x host: all port I/O exits (no pass-through),
 * CPUID and HLT always exit, MSRs exit unless passed through, CR3 loads exit unless the value
 * is in the CR3-target list or EPT is on.
 */
export interface ExecControls {
  /** Ports that do NOT exit (I/O bitmap cleared); everything else exits. */
  ioPassthrough: Set<number>;
  /** MSRs whose reads and writes do NOT exit. */
  msrPassthrough: Set<number>;
  /** CR3-target values: a `mov cr3` to one of these does not exit (4 slots on 2007-era CPUs). */
  cr3Targets: number[];
  cr3TargetSlots: number;
  /** With EPT, CR3 loads and INVLPG do not exit and guest page faults stay in the guest. */
  ept: boolean;
  /** Intercept guest #PF (shadow paging needs it). */
  interceptPageFaults: boolean;
}

export function defaultControls(): ExecControls {
  return { ioPassthrough: new Set(), msrPassthrough: new Set(), cr3Targets: [], cr3TargetSlots: 4, ept: true, interceptPageFaults: false };
}

/**
 * A virtual CPU: the registers the hypercall ABI and the MMU need, the interrupt flag and the
 * pending vectors, and the exit counters. The vCPU does not decide what an exit does: the
 * hypervisor (device-models/hypervisor) registers handlers; the vCPU counts and dispatches.
 */
export class VCpu {
  readonly id: number;
  /** General-purpose registers by name (rax, rbx, rcx, rdx, rsi, rdi, ...). */
  readonly gpr = new Map<string, number>();
  cr0 = 0x8000_0011; // PG | ET | PE
  cr3 = 0;
  cr4 = 0x20; // PAE
  efer = 0x500; // LME | LMA
  readonly msrs = new Map<number, number>();
  /** CPUID leaves the hypervisor exposes: leaf -> [eax, ebx, ecx, edx]. */
  readonly cpuidLeaves = new Map<number, [number, number, number, number]>();
  interruptFlag = true;
  halted = false;
  readonly controls: ExecControls;
  /** Exit counts (`exit.<REASON>`) and other per-vCPU events. */
  readonly events: EventCounts;
  private pendingVectors: number[] = [];
  private readonly handlers = new Map<ExitReasonName, ExitListener>();
  private readonly listeners: ExitListener[] = [];

  constructor(id: number, events: EventCounts, controls: ExecControls = defaultControls()) {
    this.id = id;
    this.events = events;
    this.controls = controls;
  }

  /** Register the hypervisor's handler for an exit reason (one per reason). */
  onExit(reason: ExitReasonName, handler: ExitListener): void {
    this.handlers.set(reason, handler);
  }

  /** Observe every exit (tracing, the monitor). */
  addExitListener(l: ExitListener): void {
    this.listeners.push(l);
  }

  /** Take a VM exit: count it, let observers see it, run the hypervisor's handler. */
  exit(info: ExitInfo): void {
    this.events.add(`exit.${info.reason}`);
    for (const l of this.listeners) l(this, info);
    const h = this.handlers.get(info.reason);
    if (h) h(this, info);
  }

  exitCount(reason?: ExitReasonName): number {
    return reason ? this.events.get(`exit.${reason}`) : this.events.total('exit.');
  }

  // ---- interrupts -------------------------------------------------------------------------

  /** Make a vector pending (the local APIC's IRR). Duplicate vectors coalesce, as in the IRR. */
  raiseVector(vector: number): void {
    if (!this.pendingVectors.includes(vector)) this.pendingVectors.push(vector);
    this.halted = false;
  }

  hasPendingInterrupt(): boolean {
    return this.pendingVectors.length > 0;
  }

  /** Accept the oldest pending vector (the CPU takes the interrupt). */
  takeInterrupt(): number | undefined {
    return this.pendingVectors.shift();
  }

  get pending(): readonly number[] {
    return this.pendingVectors;
  }

  reg(name: string): number {
    return this.gpr.get(name) ?? 0;
  }

  setReg(name: string, v: number): void {
    this.gpr.set(name, v);
  }
}
