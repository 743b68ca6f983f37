import type { Machine } from '../machine/machine.ts';
import type { VCpu, ExitInfo } from '../machine/vcpu.ts';
import type { EventCounts } from '../machine/cost.ts';
import type { CpuServices } from '../../spec-refs/platform/platform.ts';
import { Tlb, SoftTlb, TLB_WRITABLE } from '../machine/tlb.ts';
import { walk, newWalkResult, PAGE_SIZE, CR4_PCIDE, CR4_PGE, type WalkResult } from '../../spec-refs/abi/x86-paging.ts';
import { ShadowMmu, type ShadowBugs, type ShadowRoot } from './shadow.ts';
import { HypercallTable } from './hypercalls.ts';
import * as abi from '../../spec-refs/abi/pvmmu.ts';
import { GuestFault, UsageError, hex } from '../../spec-refs/errors.ts';

/**
 * The hypervisor side of the paravirtual-MMU work: it implements the CpuServices a guest kernel
 * sees (cpuid, msr, hypercall, cr3, invlpg, memory accesses) for one of five MMU modes, takes
 * the VM exits each mode implies through `vcpu.exit` (so they are counted under their VMX exit
 * reasons) and handles them in handlers registered with `vcpu.onExit`.
 *
 * Modes:
 *  - `native`: no hypervisor. Hardware TLB + 4-level walk of the guest's own tables; no exits.
 *  - `full-emulation`: QEMU/TCG style. Every guest access goes through a software TLB
 *    (`softmmu.access`), misses walk the guest tables in software (`softmmu.fill`), CR3 loads
 *    flush the software TLB; guest instructions are translated code (`tcg.<kind>`). No VM exits.
 *  - `shadow`: shadow paging with write-protected guest tables and an LRU of previous shadow
 *    roots (`prevRoots`). CR3 loads exit (CR_ACCESS), hidden page faults exit (EXCEPTION_NMI),
 *    INVLPG exits, writes to shadowed guest tables exit (EXCEPTION_NMI, emulated).
 *  - `shadow-paravirt-cr3`: shadow plus the 2007 hypercall ABI: CPUID announces the cr3 cache,
 *    the guest registers a para-state page by MSR, the host backs the guest's cache entries
 *    with the VMCS CR3-target slots, so a `mov cr3` to a cached host root does not exit.
 *  - `ept`: two-dimensional paging. CR3 loads, INVLPG and guest page faults stay in the guest;
 *    a TLB miss costs a 2D walk (`ept.walk`).
 */
export type MmuMode = 'native' | 'full-emulation' | 'shadow' | 'shadow-paravirt-cr3' | 'ept';
export const MMU_MODES: readonly MmuMode[] = ['native', 'full-emulation', 'shadow', 'shadow-paravirt-cr3', 'ept'];

export interface HypervisorBugs extends ShadowBugs {
  /** Leave CR3-target slots and cache entries in place on flush_cr3_cache. */
  ignoreFlush?: boolean;
}

export interface HypervisorOptions {
  mode: MmuMode;
  /** Shadow modes: previous roots kept besides the current one (0, 3, 11, Infinity...). Default 3. */
  prevRoots?: number;
  /**
   * Shadow modes: keep a root's shadow pages when it leaves the LRU (KVM's hashed shadow-page
   * cache; default true). False: free them (KVM before early 2007).
   */
  keepShadowPages?: boolean;
  /** Hardware TLB entries (default 256). */
  tlbEntries?: number;
  /**
   * TLB entries survive VM exits (VPID). Without it (Core 2 and earlier), every VM exit and
   * entry flushes the whole TLB. Default true.
   */
  vpid?: boolean;
  /** Offer CR4.PCIDE to the guest (native and EPT: tagged TLB across CR3 loads). Default false. */
  pcid?: boolean;
  /** Which hypercall instruction the host patches into the stub. Default intel (VMCALL). */
  vendor?: 'intel' | 'amd';
  softTlbSlots?: number;
  cr3TargetSlots?: number;
  bugs?: HypervisorBugs;
}

const NO_VALUE = -1;

export class Hypervisor implements CpuServices {
  readonly mode: MmuMode;
  readonly vcpu: VCpu;
  readonly events: EventCounts;
  readonly tlb: Tlb;
  readonly softTlb: SoftTlb;
  readonly shadow: ShadowMmu | undefined;
  readonly hypercalls = new HypercallTable();
  readonly vendor: 'intel' | 'amd';
  readonly vpid: boolean;
  readonly pcid: boolean;
  readonly bugs: HypervisorBugs;
  /** The guest's view of CR3 (a guest-physical root, plus PCID bits). */
  guestCr3 = 0;
  /** Para-state page registered by the guest, or -1. */
  paraState = NO_VALUE;
  /** CR3-target slots: the roots whose host CR3 a guest may load without exiting. */
  readonly targets: (ShadowRoot | undefined)[];
  private targetAge: number[];
  private ageClock = 0;
  private readonly w: WalkResult = newWalkResult();
  private pendingFault: GuestFault | undefined;
  private readonly workKinds = new Map<string, string>();

  constructor(
    private readonly machine: Machine,
    opts: HypervisorOptions,
  ) {
    this.mode = opts.mode;
    this.vcpu = machine.vcpu;
    this.events = machine.events;
    this.vendor = opts.vendor ?? 'intel';
    this.vpid = opts.vpid ?? true;
    this.pcid = opts.pcid ?? false;
    this.bugs = opts.bugs ?? {};
    this.tlb = new Tlb(opts.tlbEntries ?? 256);
    this.softTlb = new SoftTlb(opts.softTlbSlots ?? 256);
    const slots = opts.cr3TargetSlots ?? 4;
    this.targets = new Array<ShadowRoot | undefined>(slots).fill(undefined);
    this.targetAge = new Array<number>(slots).fill(0);
    const c = this.vcpu.controls;
    c.ept = this.mode === 'ept';
    c.interceptPageFaults = this.isShadow;
    c.cr3TargetSlots = slots;
    c.cr3Targets = [];
    c.msrPassthrough.clear();
    this.vcpu.cr4 = 0x20 | CR4_PGE | (this.pcid ? CR4_PCIDE : 0);
    this.shadow = this.isShadow
      ? new ShadowMmu(this.events, opts.prevRoots ?? 3, (_root, vpn) => this.tlb.invalidatePageAllTags(vpn), this.bugs, opts.keepShadowPages ?? true)
      : undefined;
    this.setupCpuid();
    this.registerHypercalls();
    if (this.isVirtualized) this.registerExitHandlers();
    if (this.isVirtualized && !this.vpid) {
      // Without VPID a VM exit/entry pair flushes every TLB entry, globals included.
      this.vcpu.addExitListener(() => {
        this.tlb.flushAll();
        this.events.add('tlb.flush_all');
      });
    }
  }

  /** Install this hypervisor's CPU services on the machine's GuestPlatform. */
  static attach(machine: Machine, opts: HypervisorOptions): Hypervisor {
    const hv = new Hypervisor(machine, opts);
    machine.setCpu(hv);
    return hv;
  }

  get isShadow(): boolean {
    return this.mode === 'shadow' || this.mode === 'shadow-paravirt-cr3';
  }

  /** Modes in which guest code runs in VMX non-root operation and takes VM exits. */
  get isVirtualized(): boolean {
    return this.isShadow || this.mode === 'ept';
  }

  get offersCr3Cache(): boolean {
    return this.mode === 'shadow-paravirt-cr3';
  }

  // ---- set-up -------------------------------------------------------------------------------

  private setupCpuid(): void {
    const leaves = this.vcpu.cpuidLeaves;
    leaves.clear();
    leaves.set(0, [0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69]); // "GenuineIntel"
    leaves.set(1, [0x0006_06a6, 0, this.isVirtualized ? 1 << 31 : 0, 0]); // ecx bit 31: hypervisor present
    if (this.isVirtualized) {
      const [b, c, d] = abi.signatureWords();
      leaves.set(abi.CPUID_SIGNATURE_LEAF, [abi.CPUID_FEATURES_LEAF, b, c, d]);
      leaves.set(abi.CPUID_FEATURES_LEAF, [this.offersCr3Cache ? abi.FEATURE_CR3_CACHE : 0, 0, 0, 0]);
    }
  }

  private registerHypercalls(): void {
    if (!this.offersCr3Cache) return;
    this.hypercalls.register(abi.HC_LOAD_CR3, 'load_cr3', (a0) => this.hcLoadCr3(a0));
    this.hypercalls.register(abi.HC_FLUSH_CR3_CACHE, 'flush_cr3_cache', () => this.hcFlushCr3Cache());
  }

  private registerExitHandlers(): void {
    const v = this.vcpu;
    v.onExit('CPUID', (cpu) => {
      const leaf = cpu.reg('rax') >>> 0;
      const r = cpu.cpuidLeaves.get(leaf) ?? [0, 0, 0, 0];
      cpu.setReg('rax', r[0]);
      cpu.setReg('rbx', r[1]);
      cpu.setReg('rcx', r[2]);
      cpu.setReg('rdx', r[3]);
    });
    v.onExit('MSR_READ', (cpu, e) => {
      const msr = e.qualification ?? 0;
      if (msr === abi.MSR_PARA_STATE && this.offersCr3Cache) {
        cpu.setReg('rax', this.paraState < 0 ? 0 : this.paraState % 0x1_0000_0000);
        cpu.setReg('rdx', this.paraState < 0 ? 0 : Math.floor(this.paraState / 0x1_0000_0000));
        return;
      }
      const val = cpu.msrs.get(msr);
      if (val === undefined) return this.fault('cpu.gp', `rdmsr of an MSR the host does not emulate`, hex(msr));
      cpu.setReg('rax', val % 0x1_0000_0000);
      cpu.setReg('rdx', Math.floor(val / 0x1_0000_0000));
    });
    v.onExit('MSR_WRITE', (cpu, e) => {
      const msr = e.qualification ?? 0;
      const value = (cpu.reg('rdx') >>> 0) * 0x1_0000_0000 + (cpu.reg('rax') >>> 0);
      if (msr === abi.MSR_PARA_STATE && this.offersCr3Cache) return this.registerParaState(value);
      this.fault('cpu.gp', 'wrmsr to an MSR the host does not emulate', hex(msr));
    });
    v.onExit('VMCALL', (cpu) => {
      this.events.add('hypercall');
      const nr = cpu.reg('rax');
      const args = abi.HC_ARG_REGS.map((r) => cpu.reg(r)) as [number, number, number, number];
      cpu.setReg('rax', this.hypercalls.dispatch(nr, args, this.events));
    });
    v.onExit('CR_ACCESS', (_cpu, e) => {
      if (e.detail === 'read') return;
      this.shadowLoadCr3(e.qualification ?? 0);
    });
    v.onExit('INVLPG', (_cpu, e) => {
      const vpn = Math.floor((e.qualification ?? 0) / PAGE_SIZE);
      this.shadow?.invalidate(vpn);
      this.tlb.invalidatePageAllTags(vpn);
    });
    v.onExit('EXCEPTION_NMI', (_cpu, e) => {
      if (e.detail === 'pt-write') return; // handled inline by kernelWrite64 after the exit
      this.shadowFault(e.qualification ?? 0, e.detail === 'write');
    });
  }

  private fault(code: 'cpu.gp' | 'cpu.pf' | 'cpu.ud', message: string, seen?: string): void {
    this.pendingFault = new GuestFault(code, message, seen === undefined ? {} : { seen });
  }

  private raisePending(): void {
    const f = this.pendingFault;
    if (f) {
      this.pendingFault = undefined;
      throw f;
    }
  }

  private takeExit(info: ExitInfo): void {
    this.vcpu.exit(info);
    this.raisePending();
  }

  // ---- CpuServices --------------------------------------------------------------------------

  cpuid(leaf: number, subleaf = 0): [number, number, number, number] {
    if (this.isVirtualized) {
      this.vcpu.setReg('rax', leaf);
      this.vcpu.setReg('rcx', subleaf);
      this.takeExit({ reason: 'CPUID', qualification: leaf });
      return [this.vcpu.reg('rax'), this.vcpu.reg('rbx'), this.vcpu.reg('rcx'), this.vcpu.reg('rdx')];
    }
    if (this.mode === 'full-emulation') this.events.add('tcg.helper');
    return [...(this.vcpu.cpuidLeaves.get(leaf >>> 0) ?? [0, 0, 0, 0])] as [number, number, number, number];
  }

  rdmsr(msr: number): number {
    if (this.isVirtualized) {
      this.takeExit({ reason: 'MSR_READ', qualification: msr });
      return (this.vcpu.reg('rdx') >>> 0) * 0x1_0000_0000 + (this.vcpu.reg('rax') >>> 0);
    }
    const v = this.vcpu.msrs.get(msr);
    if (v === undefined) throw new GuestFault('cpu.gp', 'rdmsr of an MSR this CPU does not have', { seen: hex(msr) });
    return v;
  }

  wrmsr(msr: number, value: number): void {
    if (this.isVirtualized) {
      this.vcpu.setReg('rax', value % 0x1_0000_0000);
      this.vcpu.setReg('rdx', Math.floor(value / 0x1_0000_0000));
      this.takeExit({ reason: 'MSR_WRITE', qualification: msr });
      return;
    }
    throw new GuestFault('cpu.gp', 'wrmsr to an MSR this CPU does not have', { seen: hex(msr) });
  }

  /**
   * The guest calls its hypercall stub. Registered through the para-state page, the stub holds
   * the instruction the host patched in (VMCALL or VMMCALL): it exits with reason VMCALL (AMD's
   * VMMCALL exit is reported under the VMX name). Without a registered stub the guest executes
   * a bare VMCALL: in VMX non-root operation it exits (and unknown numbers get -ENOSYS); on bare
   * metal or under TCG it raises #UD.
   */
  hypercall(nr: number, a0 = 0, a1 = 0, a2 = 0, a3 = 0): number {
    if (!this.isVirtualized) throw new GuestFault('cpu.ud', 'VMCALL outside VMX non-root operation', { seen: `hypercall ${nr}` });
    if (this.paraState >= 0) this.checkStub();
    const v = this.vcpu;
    v.setReg('rax', nr);
    v.setReg('rbx', a0);
    v.setReg('rcx', a1);
    v.setReg('rdx', a2);
    v.setReg('rsi', a3);
    this.takeExit({ reason: 'VMCALL', qualification: nr });
    return v.reg('rax');
  }

  private checkStub(): void {
    const gpa = this.stubGpa;
    const m = this.machine.mem;
    const expect = this.vendor === 'amd' ? abi.VMMCALL : abi.VMCALL;
    for (let i = 0; i < expect.length; i++) {
      if (m.read8(gpa + i) !== expect[i]) throw new GuestFault('cpu.ud', 'hypercall stub not patched', { expected: 'VMCALL/VMMCALL bytes', seen: hex(m.read8(gpa + i)) });
    }
  }

  private get stubGpa(): number {
    return this.machine.mem.read64(this.paraState + abi.PS.HYPERCALL_GPA);
  }

  readCr3(): number {
    // Shadow paging sets "CR3-store exiting": the guest must see its own root, not the shadow.
    if (this.isShadow) this.takeExit({ reason: 'CR_ACCESS', qualification: 3, detail: 'read' });
    return this.guestCr3;
  }

  writeCr3(value: number, noFlush = false): void {
    switch (this.mode) {
      case 'native':
      case 'ept':
        this.guestCr3 = value;
        this.vcpu.cr3 = value;
        this.events.add('cr3.load');
        if (this.pcid) {
          if (!noFlush) this.tlb.flushTag(value % PAGE_SIZE);
        } else this.tlb.flushNonGlobal();
        return;
      case 'full-emulation':
        this.guestCr3 = value;
        this.vcpu.cr3 = value;
        this.softTlb.flush();
        this.events.add('softmmu.flush');
        return;
      case 'shadow-paravirt-cr3':
        if (this.vcpu.controls.cr3Targets.includes(value)) {
          // A CR3-target value: the CPU loads it without exiting.
          const root = this.shadow!.byHost.get(value)!;
          this.events.add('cr3.target_hit');
          this.vcpu.cr3 = value;
          this.guestCr3 = root.gcr3;
          this.shadow!.activate(root);
          this.tlb.flushNonGlobal();
          return;
        }
        // not a target: the load exits like plain shadow paging
        this.takeExit({ reason: 'CR_ACCESS', qualification: value, detail: 'write' });
        return;
      case 'shadow':
        this.takeExit({ reason: 'CR_ACCESS', qualification: value, detail: 'write' });
        return;
    }
  }

  invlpg(va: number): void {
    const vpn = Math.floor(va / PAGE_SIZE);
    if (this.isShadow) {
      this.takeExit({ reason: 'INVLPG', qualification: va });
      return;
    }
    if (this.mode === 'full-emulation') {
      this.softTlb.invalidatePage(vpn);
      return;
    }
    this.tlb.invalidatePage(this.pcid ? this.guestCr3 % PAGE_SIZE : 0, vpn);
  }

  execute(kind: string, count = 1): void {
    let k = this.workKinds.get(kind);
    if (k === undefined) {
      k = (this.mode === 'full-emulation' ? 'tcg.' : 'guest.') + kind;
      this.workKinds.set(kind, k);
    }
    this.events.add(k, count);
  }

  touch(va: number, write: boolean): number {
    const vpn = Math.floor(va / PAGE_SIZE);
    const off = va - vpn * PAGE_SIZE;
    if (this.mode === 'full-emulation') {
      this.events.add('softmmu.access');
      let f = this.softTlb.lookup(vpn, write);
      if (f < 0) {
        f = this.guestWalk(va, write);
        this.events.add('softmmu.fill');
        this.softTlb.insert(vpn, f, this.w.writable);
      }
      return f + off;
    }
    const tag = this.pcid && !this.isShadow ? this.guestCr3 % PAGE_SIZE : 0;
    let e = this.tlb.lookup(tag, vpn);
    if (e >= 0 && write && (e & TLB_WRITABLE) === 0) e = -1; // re-walk: the walk decides on the fault
    if (e < 0) {
      if (this.isShadow) {
        let s = this.shadow!.lookup(vpn);
        if (s >= 0 && write && (s & TLB_WRITABLE) === 0) s = -1;
        if (s < 0) {
          this.vcpu.exit({ reason: 'EXCEPTION_NMI', qualification: va, detail: write ? 'write' : 'read' });
          this.raisePending();
          s = this.shadow!.lookup(vpn);
        } else this.events.add('mmu.walk');
        this.tlb.insert(tag, vpn, Math.floor(s / 4), (s & 1) !== 0, (s & 2) !== 0);
        return Math.floor(s / 4) + off;
      }
      const f = this.guestWalk(va, write);
      this.events.add(this.mode === 'ept' ? 'ept.walk' : 'mmu.walk');
      this.tlb.insert(tag, vpn, f, this.w.writable, this.w.global && (this.vcpu.cr4 & CR4_PGE) !== 0);
      return f + off;
    }
    return Math.floor(e / 4) + off;
  }

  kernelWrite64(gpa: number, value: number): void {
    const mem = this.machine.mem;
    if (this.isShadow && this.shadow!.isWriteProtected(gpa)) {
      // The store hits a write-protected guest page table: #PF exit, the host emulates the store.
      this.vcpu.exit({ reason: 'EXCEPTION_NMI', qualification: gpa, detail: 'pt-write' });
      mem.write64(gpa, value);
      this.shadow!.guestTableWrite(gpa);
      this.raisePending();
      return;
    }
    mem.write64(gpa, value);
  }

  // ---- guest walks and shadow faults ---------------------------------------------------------

  /** Walk the guest's tables for `va` (the current guest CR3); throw #PF to the guest when unmapped. */
  private guestWalk(va: number, write: boolean): number {
    const w = walk(this.machine.mem, this.guestCr3, va, this.w);
    if (w.frame < 0 || (write && !w.writable)) {
      throw new GuestFault('cpu.pf', 'page fault', { seen: `va ${hex(va)}${write ? ' (write)' : ''}, level ${w.faultLevel}` });
    }
    return w.frame;
  }

  private shadowFault(va: number, write: boolean): void {
    const w = walk(this.machine.mem, this.guestCr3, va, this.w);
    if (w.frame < 0 || (write && !w.writable)) {
      this.events.add('shadow.inject_pf');
      this.fault('cpu.pf', 'page fault (reflected to the guest)', `va ${hex(va)}, level ${w.faultLevel}`);
      return;
    }
    this.shadow!.fill(Math.floor(va / PAGE_SIZE), w);
  }

  /** A CR3 load that exited: switch shadow roots. */
  private shadowLoadCr3(value: number): void {
    const base = value - (value % PAGE_SIZE);
    if (this.shadow!.isHostRoot(base) || !this.machine.mem.isRam(base, PAGE_SIZE)) {
      this.fault('cpu.gp', 'CR3 load of an address outside guest RAM', hex(value));
      return;
    }
    const root = this.shadow!.switchTo(base);
    this.guestCr3 = value;
    this.vcpu.cr3 = root.hostCr3;
    this.tlb.flushNonGlobal();
  }

  // ---- the 2007 hypercall ABI ----------------------------------------------------------------

  private registerParaState(gpa: number): void {
    const mem = this.machine.mem;
    if (gpa % PAGE_SIZE !== 0 || !mem.isRam(gpa, PAGE_SIZE)) {
      this.fault('cpu.gp', 'para-state page must be a page-aligned guest RAM page', hex(gpa));
      return;
    }
    const size = mem.read32(gpa + abi.PS.SIZE);
    const version = mem.read32(gpa + abi.PS.GUEST_VERSION);
    if (version !== abi.PARA_STATE_VERSION || size < abi.PS.STRUCT_SIZE) {
      mem.write32(gpa + abi.PS.RET, -22 >>> 0);
      return;
    }
    const stub = mem.read64(gpa + abi.PS.HYPERCALL_GPA);
    if (!mem.isRam(stub, 3)) {
      mem.write32(gpa + abi.PS.RET, -22 >>> 0);
      return;
    }
    const insn = this.vendor === 'amd' ? abi.VMMCALL : abi.VMCALL;
    for (let i = 0; i < insn.length; i++) mem.write8(stub + i, insn[i]!);
    this.paraState = gpa;
    this.clearTargets();
    mem.write32(gpa + abi.PS.CACHE_MAX, this.targets.length);
    mem.write32(gpa + abi.PS.HOST_VERSION, abi.PARA_STATE_VERSION);
    mem.write32(gpa + abi.PS.RET, 0);
    this.events.add('pv.register');
  }

  private hcLoadCr3(gcr3: number): number {
    if (gcr3 % PAGE_SIZE !== 0 || !this.machine.mem.isRam(gcr3, PAGE_SIZE)) return abi.HC_EINVAL;
    const root = this.shadow!.switchTo(gcr3);
    this.guestCr3 = gcr3;
    this.vcpu.cr3 = root.hostCr3;
    this.tlb.flushNonGlobal();
    if (this.paraState >= 0) this.pinTarget(root);
    return 0;
  }

  private pinTarget(root: ShadowRoot): void {
    let slot = this.targets.indexOf(root);
    if (slot < 0) {
      slot = this.targets.findIndex((t) => t === undefined);
      if (slot < 0) {
        // Replace the least recently loaded slot.
        slot = 0;
        for (let i = 1; i < this.targets.length; i++) if (this.targetAge[i]! < this.targetAge[slot]!) slot = i;
      }
      const old = this.targets[slot];
      if (old) old.pinned--;
      this.targets[slot] = root;
      root.pinned++;
      const mem = this.machine.mem;
      const e = this.paraState + abi.PS.ENTRIES + slot * abi.PS.ENTRY_SIZE;
      mem.write64(e, root.gcr3);
      mem.write64(e + 8, root.hostCr3);
      this.events.add('pv.cache_install');
    }
    this.targetAge[slot] = ++this.ageClock;
    this.syncTargetControls();
  }

  private syncTargetControls(): void {
    this.vcpu.controls.cr3Targets = this.targets.filter((t): t is ShadowRoot => t !== undefined).map((t) => t.hostCr3);
  }

  private clearTargets(): void {
    for (let i = 0; i < this.targets.length; i++) {
      const t = this.targets[i];
      if (t) t.pinned--;
      this.targets[i] = undefined;
      this.targetAge[i] = 0;
      if (this.paraState >= 0) {
        const e = this.paraState + abi.PS.ENTRIES + i * abi.PS.ENTRY_SIZE;
        this.machine.mem.write64(e, 0);
        this.machine.mem.write64(e + 8, 0);
      }
    }
    this.syncTargetControls();
  }

  private hcFlushCr3Cache(): number {
    if (this.bugs.ignoreFlush) return 0;
    this.clearTargets();
    this.events.add('pv.cache_flush');
    return 0;
  }

  /** For tests: the hardware facts of this hypervisor instance. */
  describe(): string {
    return `${this.mode} (prevRoots ${this.shadow?.prevRoots ?? '-'}, vpid ${this.vpid}, pcid ${this.pcid}, ${this.vendor})`;
  }
}

export function assertMode(m: string): MmuMode {
  if (!(MMU_MODES as readonly string[]).includes(m)) throw new UsageError('usage.mode', 'unknown MMU mode', { expected: MMU_MODES.join('|'), seen: m });
  return m as MmuMode;
}
