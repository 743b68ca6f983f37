/**
 * The paravirtual-MMU hypercall ABI shared by the guest client (drivers/paravirt) and the
 * hypervisor (device-models/hypervisor). It follows the shape of the January 2007 kvm-paravirt
 * patches by Ingo Molnar: a per-vCPU "para-state" page registered through an MSR, a cache of
 * {guest_cr3, host_cr3} pairs in that page that the host backs with VMCS CR3-target slots, a
 * `load_cr3` hypercall for misses and a `flush_cr3_cache` hypercall when page directories are
 * freed, and a hypercall stub the host patches to VMCALL (Intel) or VMMCALL (AMD).
 *
 * Our own layout, not a binary copy of the patch: offsets are chosen here and documented below.
 */

/** CPUID leaf with the hypervisor signature; eax = highest hypervisor leaf. */
export const CPUID_SIGNATURE_LEAF = 0x4000_0000;
/** CPUID feature leaf; eax carries feature bits. */
export const CPUID_FEATURES_LEAF = 0x4000_0001;
/** "pvkitPVMMU\0\0" as ebx, ecx, edx (little-endian ASCII), deliberately not KVM's signature. */
export const SIGNATURE = 'pvkitPVMMU\0\0';
/** Feature bit (in CPUID_FEATURES_LEAF eax): the host offers the cr3 cache. */
export const FEATURE_CR3_CACHE = 1 << 0;

/** MSR the guest writes the para-state page's guest-physical address to (as in the 2007 patch). */
export const MSR_PARA_STATE = 0x8765_5678;

/** Hypercall numbers as in the 2007 patch. */
export const HC_LOAD_CR3 = 1;
export const HC_FLUSH_CR3_CACHE = 13;
/** Returned in rax for an unknown hypercall number (KVM's -KVM_ENOSYS). */
export const HC_ENOSYS = -1000;
/** Returned for a known hypercall with a bad argument (e.g. a non-page-aligned cr3). */
export const HC_EINVAL = -22;

/** Register convention: number in rax, arguments in rbx, rcx, rdx, rsi; result in rax. */
export const HC_ARG_REGS = ['rbx', 'rcx', 'rdx', 'rsi'] as const;

/** The number of cr3-cache entries (CR3-target slots on CPUs of 2007: 4). */
export const CR3_CACHE_SIZE = 4;

/**
 * Para-state page layout (4 KiB, guest-physical, page aligned):
 *   0x00 u32 guest_version    written by the guest before registration
 *   0x04 u32 host_version     written by the host on successful registration
 *   0x08 u32 size             sizeof the structure, written by the guest
 *   0x0c u32 ret              0 on success, negative errno-like value on failure (host)
 *   0x10 u64 hypercall_gpa    page the host patches with the hypercall instruction
 *   0x18 u32 cr3_cache_max    number of usable cache entries (host)
 *   0x20 + 16*i               entry i: u64 guest_cr3, u64 host_cr3 (guest_cr3 0 = empty)
 */
export const PS = {
  GUEST_VERSION: 0x00,
  HOST_VERSION: 0x04,
  SIZE: 0x08,
  RET: 0x0c,
  HYPERCALL_GPA: 0x10,
  CACHE_MAX: 0x18,
  ENTRIES: 0x20,
  ENTRY_SIZE: 16,
  STRUCT_SIZE: 0x20 + 16 * CR3_CACHE_SIZE,
} as const;
export const PARA_STATE_VERSION = 1;

/** Instruction bytes the host patches into the hypercall stub. */
export const VMCALL = [0x0f, 0x01, 0xc1] as const;
export const VMMCALL = [0x0f, 0x01, 0xd9] as const;
/** What the guest puts in the stub before patching: ud2 (so an unpatched call faults). */
export const UD2 = [0x0f, 0x0b] as const;

export function signatureWords(sig: string = SIGNATURE): [number, number, number] {
  const w = (o: number) => (sig.charCodeAt(o) | (sig.charCodeAt(o + 1) << 8) | (sig.charCodeAt(o + 2) << 16) | (sig.charCodeAt(o + 3) << 24)) >>> 0;
  return [w(0), w(4), w(8)];
}
