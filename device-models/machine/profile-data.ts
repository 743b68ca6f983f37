import { registerProfile } from './profiles.ts';
import type { CostConstant } from './cost.ts';
import { TWO_D_WALK_REFS } from '../../spec-refs/abi/x86-paging.ts';

/**
 * The built-in cost profiles. Every constant says where it comes from. Three kinds of source:
 *
 *  - a published measurement or manual figure (named, with table/figure/message);
 *  - a derivation from such figures (the arithmetic is in the source text and in the code);
 *  - a calibration on ONE published figure, named in `calibratedOn`; that figure is then not a
 *    prediction, and the profile lists it in `calibrationPoints`. The calibrations are
 *    reproduced by `tools/pvmmu/calibrate.ts` (and checked by tools/pvmmu/calibrate.test.ts):
 *    rerun it after changing the model and paste its numbers here.
 *
 * Sources used:
 *  [MOLNAR07]  Ingo Molnar, "[announce] [patch] KVM paravirtualization for Linux", lkml, January
 *              2007: lat_ctx 2-task context switch and hackbench 1/5 on native, QEMU, KVM upstream,
 *              KVM trunk, KVM trunk + paravirt cr3 (the table in docs/pvmmu.md).
 *  [YONGHE24]  Yong He, "[PATCH 0/2] KVM: x86: expand the LRU cache of previous CR3s", kvm list,
 *              2024 (mail.spinics.net/lists/kvm/msg361304.html): lmbench context-switch latency,
 *              2-8 processes, KPTI on, Ice Lake server without EPT, prev-roots cache 3 vs 11.
 *  [ROTH20]    Michael Roth, lkml 2020-12 (lkml.iu.edu/hypermail/linux/kernel/2012.2/00527.html),
 *              KVM SVM run-loop timing with rdtsc: ioctl entry -> VMRUN +576, VMRUN -> #VMEXIT
 *              +1360, -> ioctl exit +592; total 2528 cycles per KVM_RUN round trip (AMD EPYC host).
 *  [TONG13]    Xin Tong, qemu-devel 2013-12 (msg01329): QEMU softmmu TLB lookup is about 10 host
 *              instructions, a miss about 450 (measured with Intel PIN).
 *  [BHARGAVA08] Bhargava, Serebrin, Spadini, Manne, "Accelerating Two-Dimensional Page Walks for
 *              Virtualized Systems", ASPLOS 2008, section 3: a 2D walk of 4-level tables makes up
 *              to 24 memory references versus 4 for a native walk.
 *  [INTELOPT]  Intel 64 and IA-32 Architectures Optimization Reference Manual: L2 load-to-use
 *              latency 14 cycles for the Core microarchitecture (Merom/Conroe) and about 14 for
 *              Sunny Cove (Ice Lake); Core 2 DTLB 256 entries; Sunny Cove STLB 2048 entries.
 *  [SDM]       Intel SDM Vol. 3C: CR3-target count reported by IA32_VMX_MISC (4 on the CPUs
 *              modelled here); without VPID every VM entry and exit invalidates cached linear
 *              mappings (VPID and EPT arrived with Nehalem, 2008).
 *  [KVM419]    Linux 4.19, arch/x86/kvm: KVM_MMU_NUM_PREV_ROOTS = 3 (Junaid Shahid, "kvm: x86: Add
 *              multi-entry LRU cache for previous CR3s").
 *  [KVM07]     KVM's shadow page cache (Avi Kivity, early 2007; in 2.6.21): shadow pages hashed by
 *              guest frame survive CR3 switches, which is what made "KVM trunk" fast in [MOLNAR07].
 *
 * Every page-walk memory reference is costed at the L2 latency: page-table entries are assumed
 * to hit L2 (no paging-structure caches modelled), an assumption, not a measurement.
 */

const c = (cycles: number, source: string, calibratedOn?: string): CostConstant => (calibratedOn ? { cycles, source, calibratedOn } : { cycles, source });

// ---- 2007-core2 ----------------------------------------------------------------------------------

const CORE2_L2 = 14; // [INTELOPT]
const CORE2_GHZ = 2.4;
const core2Walk = 4 * CORE2_L2;

/**
 * Calibrated on [MOLNAR07] (values produced by tools/pvmmu/calibrate.ts; see the source texts).
 * Order: guest.ctxsw <- native ctxsw-2; exit <- KVM trunk ctxsw-2; TCG factor <- QEMU ctxsw-2;
 * guest.msg <- native hackbench-1.
 */
export const CORE2_CAL = {
  ctxsw: 2440,
  exit: 12096,
  tcgFactor: 58.86,
  msg: 10007,
};

const core2Exit = (reason: string) =>
  c(
    CORE2_CAL.exit,
    `KVM-2007 exit round trip on Core 2 (hardware VM exit + entry, KVM's exit path, ${reason} handler; every exit reason is given the same cost)`,
    '[MOLNAR07] KVM trunk ctxsw-2 = 6.36 us, minus the calibrated native switch and the counted TLB refills, per CR3 exit',
  );

registerProfile({
  name: '2007-core2',
  description: 'Core 2 (Merom/Conroe) host with VT-x but no VPID or EPT, KVM of January 2007, 32-bit Linux guest',
  ghz: CORE2_GHZ,
  ghzSource: 'assumed 2.4 GHz (Core 2 Duo E6600 class); [MOLNAR07] does not state the clock. Calibrated constants absorb it; literature cycle counts do not',
  hardware: {
    tlbEntries: 256,
    vpid: false,
    ept: false,
    cr3TargetSlots: 4,
    shadowCacheRoots: Infinity,
    source: '[INTELOPT] DTLB 256 entries; [SDM] no VPID/EPT before Nehalem, 4 CR3-target slots; [KVM07] hashed shadow pages: every root stays cached',
  },
  calibrationPoints: ['native/ctxsw-2', 'shadow-cache/ctxsw-2', 'full-emulation/ctxsw-2', 'native/hackbench-1'],
  constants: {
    'guest.ctxsw': c(CORE2_CAL.ctxsw, 'kernel work of one lat_ctx context switch (schedule, switch_mm, the mov to CR3) beyond what lmbench subtracts', '[MOLNAR07] native ctxsw-2 = 1.11 us minus the counted TLB refills'),
    'guest.msg': c(CORE2_CAL.msg, 'kernel and user work of one hackbench message (socket write + read syscalls, skb handling), context switches excluded', '[MOLNAR07] native hackbench-1 = 0.25 s minus the counted switches and refills, per message'),
    'guest.fork': c(0, 'not in any timed region (hackbench and lat_ctx fork before timing)'),
    'guest.exit': c(0, 'not in any timed region'),
    'tcg.ctxsw': c(Math.round(CORE2_CAL.ctxsw * CORE2_CAL.tcgFactor), 'guest.ctxsw run as QEMU-translated code: guest.ctxsw x the TCG factor', '[MOLNAR07] QEMU ctxsw-2 = 61.18 us (the TCG factor)'),
    'tcg.msg': c(Math.round(CORE2_CAL.msg * CORE2_CAL.tcgFactor), 'guest.msg x the TCG factor calibrated on QEMU ctxsw-2 (a prediction for hackbench)'),
    'tcg.fork': c(0, 'not in any timed region'),
    'tcg.exit': c(0, 'not in any timed region'),
    'tcg.helper': c(450, '[TONG13] order of a softmmu slow path (~450 instructions), at IPC 1; only CPUID during set-up'),
    'mmu.walk': c(core2Walk, '4-level walk: 4 references x 14-cycle L2 latency [INTELOPT] (entries assumed L2 hits)'),
    'ept.walk': c(TWO_D_WALK_REFS * CORE2_L2, 'hypothetical on Core 2 (no EPT): 24 references [BHARGAVA08] x 14 cycles [INTELOPT]'),
    'cr3.load': c(0, 'the mov to CR3 itself is inside guest.ctxsw'),
    'cr3.target_hit': c(0, 'a CR3-target load is an ordinary mov to CR3: inside guest.ctxsw'),
    'tlb.flush_all': c(0, 'the flush itself is free; its cost appears as the walks that follow'),
    'softmmu.access': c(10, '[TONG13] ~10 host instructions per softmmu TLB lookup, at IPC 1'),
    'softmmu.fill': c(450, '[TONG13] ~450 host instructions per softmmu TLB miss, at IPC 1'),
    'softmmu.flush': c(512, 'clearing 256 software TLB entries (read and write tags) at one store per cycle: 2 x 256'),
    'shadow.root_hit': c(0, 'the hashed root lookup is inside the calibrated exit cost (it is what that exit did)'),
    'shadow.root_same': c(0, 'no work: the same root'),
    'shadow.root_slow': c(0, 'KVM 2007 found every root by hash inside the calibrated CR3 exit (the profile keeps all roots in the LRU, so this does not occur)'),
    'shadow.root_new': c(1024, 'allocate and clear a 4 KiB shadow root at 4 bytes/cycle (derived, assumption)'),
    'shadow.root_free': c(0, 'counted through shadow.zap'),
    'shadow.zap': c(CORE2_L2 * 2, 'clear one shadow entry and its reverse-map link: two L2-latency writes (derived, assumption)'),
    'shadow.fill': c(core2Walk + 2 * CORE2_L2, 'software walk of the guest tables (4 x L2) plus the spte and rmap writes (2 x L2); the exit itself is exit.EXCEPTION_NMI'),
    'shadow.wp_emulate': c(core2Walk, 'decode and emulate one trapped page-table store (a walk to find the gpa), exit counted separately (derived, assumption)'),
    'shadow.inject_pf': c(0, 'reflecting a #PF is inside the exit'),
    hypercall: c(0, 'inside exit.VMCALL'),
    'hypercall.load_cr3': c(0, 'inside exit.VMCALL (same path as a CR3 exit)'),
    'hypercall.flush_cr3_cache': c(0, 'inside exit.VMCALL'),
    'hypercall.unknown': c(0, 'inside exit.VMCALL'),
    'pv.register': c(0, 'once, at boot'),
    'pv.cache_install': c(2 * CORE2_L2, 'two stores to the para-state page and a VMCS write (derived, assumption)'),
    'pv.cache_flush': c(8 * CORE2_L2, 'clearing four cache entries and the CR3-target list (derived, assumption)'),
    'exit.EXCEPTION_NMI': core2Exit('page-fault'),
    'exit.EXTERNAL_INTERRUPT': core2Exit('external-interrupt'),
    'exit.INTERRUPT_WINDOW': core2Exit('interrupt-window'),
    'exit.CPUID': core2Exit('CPUID'),
    'exit.HLT': core2Exit('HLT'),
    'exit.INVLPG': core2Exit('INVLPG'),
    'exit.VMCALL': core2Exit('hypercall'),
    'exit.CR_ACCESS': core2Exit('CR3'),
    'exit.IO_INSTRUCTION': core2Exit('I/O (in-kernel part only)'),
    'exit.MSR_READ': core2Exit('RDMSR'),
    'exit.MSR_WRITE': core2Exit('WRMSR'),
    'exit.EPT_VIOLATION': core2Exit('EPT violation (hypothetical on Core 2)'),
    'exit.EPT_MISCONFIG': core2Exit('EPT misconfig (hypothetical on Core 2)'),
  },
});

// ---- modern ------------------------------------------------------------------------------------

const MODERN_L2 = 14; // [INTELOPT] Sunny Cove
const MODERN_GHZ = 3.0;
const modernWalk = 4 * MODERN_L2;
/** [ROTH20]: one KVM_RUN round trip with an immediate exit: 576 + 1360 + 592 cycles. */
const ROTH_ROUNDTRIP = 576 + 1360 + 592;

/** Calibrated on [YONGHE24] by tools/pvmmu/calibrate.ts. */
export const MODERN_CAL = {
  ctxsw: 11378,
  rootMiss: 3222,
};

const modernExit = (reason: string) =>
  c(ROTH_ROUNDTRIP, `[ROTH20] KVM_RUN round trip with an immediate exit (2528 cycles, AMD EPYC), used for a ${reason} exit: an in-kernel exit skips the ioctl framing but runs its handler, assumed to balance`);

registerProfile({
  name: 'modern',
  description: 'a recent x86-64 server (Ice Lake class) with VPID and EPT; shadow paging when EPT is off',
  ghz: MODERN_GHZ,
  ghzSource: 'assumed 3.0 GHz; [YONGHE24] does not state the clock. Calibrated constants absorb it; literature cycle counts do not',
  hardware: {
    tlbEntries: 2048,
    vpid: true,
    ept: true,
    cr3TargetSlots: 4,
    shadowCacheRoots: 3,
    source: '[INTELOPT] Sunny Cove STLB 2048 entries; [SDM] VPID, EPT, 4 CR3-target slots; [KVM419] 3 previous roots',
  },
  calibrationPoints: ['sweep/kpti/roots-11/procs-2', 'sweep/kpti/roots-3/procs-3'],
  constants: {
    'guest.ctxsw': c(MODERN_CAL.ctxsw, 'kernel work of one lmbench context switch with KPTI on, beyond what lmbench subtracts', '[YONGHE24] 2 processes, 11 previous roots: 4.654 us, minus one counted CR3 exit and refills'),
    'guest.msg': c(Math.round(CORE2_CAL.msg * 0.5), 'no modern hackbench figure at hand: the 2007 per-message cost halved (assumption, stated; modern hackbench cells are not predictions of anything published)'),
    'guest.fork': c(0, 'not in any timed region'),
    'guest.exit': c(0, 'not in any timed region'),
    'tcg.ctxsw': c(Math.round(MODERN_CAL.ctxsw * CORE2_CAL.tcgFactor), 'guest.ctxsw x the 2007 TCG factor (assumption: no modern QEMU calibration)'),
    'tcg.msg': c(Math.round(CORE2_CAL.msg * 0.5 * CORE2_CAL.tcgFactor), 'guest.msg x the 2007 TCG factor (assumption)'),
    'tcg.fork': c(0, 'not in any timed region'),
    'tcg.exit': c(0, 'not in any timed region'),
    'tcg.helper': c(450, '[TONG13] ~450 instructions at IPC 1'),
    'mmu.walk': c(modernWalk, '4 references x 14-cycle L2 [INTELOPT]'),
    'ept.walk': c(TWO_D_WALK_REFS * MODERN_L2, '24 references [BHARGAVA08] x 14 cycles [INTELOPT] (upper bound: no paging-structure caches modelled)'),
    'cr3.load': c(0, 'inside guest.ctxsw'),
    'cr3.target_hit': c(0, 'inside guest.ctxsw'),
    'tlb.flush_all': c(0, 'its cost appears as the walks that follow'),
    'softmmu.access': c(10, '[TONG13] ~10 host instructions per lookup at IPC 1'),
    'softmmu.fill': c(450, '[TONG13] ~450 host instructions per miss at IPC 1'),
    'softmmu.flush': c(512, '2 x 256 entries cleared at one store per cycle'),
    'shadow.root_hit': c(0, 'the prev-roots fast switch is inside the exit'),
    'shadow.root_same': c(0, 'no work'),
    'shadow.root_slow': c(MODERN_CAL.rootMiss, 'a prev-roots miss whose shadow pages are still hashed: kvm_mmu_free_roots + root lookup/alloc + sync, beyond the counted exit', '[YONGHE24] 3 processes, 3 previous roots: 6.802 us'),
    'shadow.root_new': c(MODERN_CAL.rootMiss + 1024, 'a root built from nothing: the slow path plus allocating and clearing a 4 KiB root at 4 bytes/cycle (derived)'),
    'shadow.root_free': c(0, 'inside shadow.root_new'),
    'shadow.zap': c(0, 'inside shadow.root_new for root frees; a single zap is a store'),
    'shadow.fill': c(modernWalk + 2 * MODERN_L2, 'software guest walk (4 x L2) + spte and rmap writes (2 x L2); the exit is exit.EXCEPTION_NMI'),
    'shadow.wp_emulate': c(modernWalk, 'emulate one trapped page-table store (derived, assumption)'),
    'shadow.inject_pf': c(0, 'inside the exit'),
    hypercall: c(0, 'inside exit.VMCALL'),
    'hypercall.load_cr3': c(0, 'inside exit.VMCALL'),
    'hypercall.flush_cr3_cache': c(0, 'inside exit.VMCALL'),
    'hypercall.unknown': c(0, 'inside exit.VMCALL'),
    'pv.register': c(0, 'once, at boot'),
    'pv.cache_install': c(2 * MODERN_L2, 'two stores and a VMCS write (derived, assumption)'),
    'pv.cache_flush': c(8 * MODERN_L2, 'four entries and the target list (derived, assumption)'),
    'exit.EXCEPTION_NMI': modernExit('page-fault'),
    'exit.EXTERNAL_INTERRUPT': modernExit('external-interrupt'),
    'exit.INTERRUPT_WINDOW': modernExit('interrupt-window'),
    'exit.CPUID': modernExit('CPUID'),
    'exit.HLT': modernExit('HLT'),
    'exit.INVLPG': modernExit('INVLPG'),
    'exit.VMCALL': modernExit('VMCALL'),
    'exit.CR_ACCESS': modernExit('CR access'),
    'exit.MSR_READ': modernExit('RDMSR'),
    'exit.MSR_WRITE': modernExit('WRMSR'),
    'exit.EPT_VIOLATION': modernExit('EPT violation (in-kernel part; an MMIO exit to the VMM adds its own handling)'),
    'exit.EPT_MISCONFIG': c(ROTH_ROUNDTRIP, '[ROTH20] 2528 cycles: the KVM_RUN round trip an MMIO exit to the VMM pays at least (the VMM\'s own dispatch is not included)'),
    'exit.IO_INSTRUCTION': c(ROTH_ROUNDTRIP, '[ROTH20] 2528 cycles: the KVM_RUN round trip a port-I/O exit to the VMM pays at least (the VMM\'s own dispatch is not included)'),
  },
});
