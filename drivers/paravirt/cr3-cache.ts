import type { GuestPlatform, CpuServices } from '../../spec-refs/platform/platform.ts';
import * as abi from '../../spec-refs/abi/pvmmu.ts';
import { DeviceMisbehaviourError, UsageError, hex } from '../../spec-refs/errors.ts';

/**
 * The guest's cr3-cache client (the 2007 kvm-paravirt idea): detect the feature with CPUID,
 * register a para-state page by MSR, then load CR3 through the cache:
 *
 *  - hit: the cache holds {guest_cr3, host_cr3} for the page directory being loaded; the guest
 *    executes `mov cr3, host_cr3`, which the host made a CR3-target value, so no VM exit;
 *  - miss: `load_cr3` hypercall; the host builds or finds the shadow root, installs an entry;
 *  - page directory freed: `flush_cr3_cache` hypercall, so no entry survives for a freed PD.
 *
 * Without the feature (bare metal, a hypervisor that does not offer it) every load is a plain
 * `mov cr3` and nothing else changes. The client trusts nothing it reads from the para-state
 * page: an entry is used only when its guest_cr3 matches and its host_cr3 is page aligned.
 */
export type LoadPath = 'mov' | 'hit' | 'hypercall';

export interface Cr3CacheBugs {
  /** Do not flush the cache when a page directory is freed. */
  skipFlushOnFree?: boolean;
}

export class Cr3CacheClient {
  private readonly cpu: CpuServices;
  private paraState = -1;
  /** The hypercall page the host patched (kept for tracing). */
  stubGpa = -1;
  private entries = 0;
  /** How the last load went. */
  lastPath: LoadPath = 'mov';
  readonly stats = { mov: 0, hit: 0, hypercall: 0, flush: 0, fallback: 0 };

  constructor(
    private readonly platform: GuestPlatform,
    readonly bugs: Cr3CacheBugs = {},
  ) {
    if (!platform.cpu) throw new UsageError('usage.cpu', 'the cr3-cache client needs a platform with CPU services');
    this.cpu = platform.cpu;
  }

  get enabled(): boolean {
    return this.paraState >= 0;
  }

  get paraStateGpa(): number {
    return this.paraState;
  }

  /** True when CPUID shows our signature and the cr3-cache feature bit. */
  detect(): boolean {
    const ecx1 = this.cpu.cpuid(1)[2];
    if ((ecx1 & (1 << 31)) === 0) return false; // CPUID.1:ECX[31]: no hypervisor present
    const [max, b, c, d] = this.cpu.cpuid(abi.CPUID_SIGNATURE_LEAF);
    const [sb, sc, sd] = abi.signatureWords();
    if (b !== sb || c !== sc || d !== sd || max < abi.CPUID_FEATURES_LEAF) return false;
    const [features] = this.cpu.cpuid(abi.CPUID_FEATURES_LEAF);
    return (features & abi.FEATURE_CR3_CACHE) !== 0;
  }

  /**
   * Detect and register. Returns whether the cache is in use; on any refusal the client stays
   * in plain `mov cr3` mode (and frees what it allocated).
   */
  init(): boolean {
    if (!this.detect()) return false;
    const mem = this.platform.mem;
    const ps = this.platform.dma.alloc(4096, 4096);
    const stub = this.platform.dma.alloc(4096, 4096);
    mem.write8(stub, abi.UD2[0]);
    mem.write8(stub + 1, abi.UD2[1]);
    mem.write32(ps + abi.PS.GUEST_VERSION, abi.PARA_STATE_VERSION);
    mem.write32(ps + abi.PS.SIZE, abi.PS.STRUCT_SIZE);
    mem.write32(ps + abi.PS.RET, 0xffff_ffff);
    mem.write64(ps + abi.PS.HYPERCALL_GPA, stub);
    try {
      this.cpu.wrmsr(abi.MSR_PARA_STATE, ps);
    } catch {
      this.release(ps, stub);
      return false;
    }
    const ret = mem.read32(ps + abi.PS.RET) | 0;
    const hostVersion = mem.read32(ps + abi.PS.HOST_VERSION);
    const patched = this.stubPatched(stub);
    if (ret !== 0 || hostVersion !== abi.PARA_STATE_VERSION || !patched) {
      this.release(ps, stub);
      return false;
    }
    this.paraState = ps;
    this.stubGpa = stub;
    this.entries = Math.min(mem.read32(ps + abi.PS.CACHE_MAX), abi.CR3_CACHE_SIZE);
    return true;
  }

  private stubPatched(stub: number): boolean {
    const m = this.platform.mem;
    const is = (insn: readonly number[]) => insn.every((b, i) => m.read8(stub + i) === b);
    return is(abi.VMCALL) || is(abi.VMMCALL);
  }

  private release(ps: number, stub: number): void {
    this.platform.dma.free(ps);
    this.platform.dma.free(stub);
  }

  /** The host cr3 cached for `cr3`, or -1. */
  lookup(cr3: number): number {
    if (this.paraState < 0) return -1;
    const m = this.platform.mem;
    for (let i = 0; i < this.entries; i++) {
      const e = this.paraState + abi.PS.ENTRIES + i * abi.PS.ENTRY_SIZE;
      if (m.read64(e) === cr3) {
        const host = m.read64(e + 8);
        if (host !== 0 && host % 4096 === 0) return host;
      }
    }
    return -1;
  }

  /** Load `cr3` (a page-directory's guest-physical address). */
  load(cr3: number): void {
    if (this.paraState < 0) {
      this.cpu.writeCr3(cr3);
      this.stats.mov++;
      this.lastPath = 'mov';
      return;
    }
    const host = this.lookup(cr3);
    if (host >= 0) {
      this.cpu.writeCr3(host);
      this.stats.hit++;
      this.lastPath = 'hit';
      return;
    }
    const r = this.cpu.hypercall(abi.HC_LOAD_CR3, cr3);
    if (r !== 0) {
      // The host refused: fall back to a plain load, which is always architecturally valid.
      this.stats.fallback++;
      this.cpu.writeCr3(cr3);
      this.lastPath = 'mov';
      if (r !== abi.HC_EINVAL && r !== abi.HC_ENOSYS) throw new DeviceMisbehaviourError('pv.load_cr3', 'load_cr3 hypercall returned an undefined value', { expected: '0, -22 or -1000', seen: String(r) });
      return;
    }
    this.stats.hypercall++;
    this.lastPath = 'hypercall';
  }

  /** A page directory at `cr3` is about to be freed: no cache entry may outlive it. */
  onPgdFree(cr3: number): void {
    if (this.paraState < 0 || this.bugs.skipFlushOnFree) return;
    // Only needed when an entry refers to it (the guest sees every entry in its page), which
    // saves an exit per freed page directory that never made it into the cache.
    if (this.lookup(cr3) < 0) return;
    const r = this.cpu.hypercall(abi.HC_FLUSH_CR3_CACHE);
    this.stats.flush++;
    if (r !== 0) throw new DeviceMisbehaviourError('pv.flush', 'flush_cr3_cache failed', { expected: '0', seen: String(r) });
    if (this.lookup(cr3) >= 0) throw new DeviceMisbehaviourError('pv.flush', 'host kept a cache entry for a freed page directory', { seen: hex(cr3) });
  }

  /** The valid entries of the cache page (for tests and tracing). */
  snapshot(): { guestCr3: number; hostCr3: number }[] {
    if (this.paraState < 0) return [];
    const m = this.platform.mem;
    const out: { guestCr3: number; hostCr3: number }[] = [];
    for (let i = 0; i < this.entries; i++) {
      const e = this.paraState + abi.PS.ENTRIES + i * abi.PS.ENTRY_SIZE;
      const g = m.read64(e);
      if (g !== 0) out.push({ guestCr3: g, hostCr3: m.read64(e + 8) });
    }
    return out;
  }
}
