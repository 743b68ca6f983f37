import type { GuestPlatform, CpuServices } from '../../spec-refs/platform/platform.ts';
import { Cr3CacheClient, type Cr3CacheBugs } from './cr3-cache.ts';
import { PAGE_SIZE, PTE_P, PTE_RW, PTE_US, PTE_G, makePte, tableIndex, walk, newWalkResult, translate } from '../../spec-refs/abi/x86-paging.ts';
import { UsageError, hex } from '../../spec-refs/errors.ts';

/**
 * A guest-kernel model, small but real where the MMU is concerned: processes with their own
 * 4-level page tables in guest memory, a kernel half shared by all of them (one PML4 entry
 * pointing at a shared kernel PDPT, global pages unless KPTI), fork and exit that allocate and
 * free page-table pages, context switches that load CR3 through the cr3-cache client, and
 * optional KPTI-style paired page directories (a kernel PGD and a user PGD per process, CR3
 * switched at every kernel entry and exit).
 *
 * The guest writes its page-table entries with `cpu.kernelWrite64` (a store through its direct
 * map, which a shadow-paging host may trap) and clears every entry of a table before freeing it,
 * as Linux's free_pgtables/pgd_free path does for the user half, so freed tables are zero.
 */
export const KERNEL_BASE = 2 ** 47; // PML4 index 256: the kernel half (0xffff8000_00000000 sign-extended)
export const USER_CODE = 0x40_0000;
export const USER_DATA = 0x60_0000;
export const USER_STACK_TOP = 0x7fff_f000_0000;
const KSTACK_BASE = KERNEL_BASE + 0x4000_0000; // per-process kernel stacks
const TRAMPOLINE_VA = KERNEL_BASE + 0x8000_0000; // the one kernel page the KPTI user PGD maps

export interface KernelOptions {
  /** KPTI-style paired page directories. Default false. */
  kpti?: boolean;
  /** Use the paravirtual cr3 cache when the host offers it. Default true. */
  paravirtCr3?: boolean;
  /** Page frames the kernel's allocator manages (default 4096 = 16 MiB). */
  frames?: number;
  /** Kernel text/data pages touched on every kernel entry (default 8). */
  kernelPages?: number;
  /** Code pages per process, shared across fork (default 2). */
  codePages?: number;
  /** Private data pages per process (default 1). */
  dataPages?: number;
  /** Stack pages per process (default 1). */
  stackPages?: number;
  bugs?: Cr3CacheBugs;
}

export interface Process {
  readonly pid: number;
  /** Kernel page directory (the CR3 in kernel mode; the only one without KPTI). */
  readonly pgd: number;
  /** KPTI user page directory (same as pgd without KPTI). */
  readonly userPgd: number;
  /** User virtual pages this process touches (its working set), in order. */
  readonly workingSet: number[];
  readonly kstack: number;
  alive: boolean;
}

/** Page frames for the kernel: one DMA-allocated pool, LIFO free list (recently freed pages come back first). */
class FrameAllocator {
  private readonly free: number[] = [];
  readonly base: number;
  constructor(
    private readonly platform: GuestPlatform,
    frames: number,
  ) {
    this.base = platform.dma.alloc(frames * PAGE_SIZE, PAGE_SIZE);
    for (let i = frames - 1; i >= 0; i--) this.free.push(this.base + i * PAGE_SIZE);
  }
  get available(): number {
    return this.free.length;
  }
  alloc(): number {
    const f = this.free.pop();
    if (f === undefined) throw new UsageError('usage.oom', 'guest kernel out of page frames');
    this.platform.mem.fill(f, PAGE_SIZE, 0);
    return f;
  }
  release(f: number): void {
    this.free.push(f);
  }
}

export class GuestKernel {
  readonly cpu: Required<CpuServices>;
  readonly cr3: Cr3CacheClient;
  readonly kpti: boolean;
  readonly processes = new Map<number, Process>();
  current: Process | undefined;
  /** True while the current process runs in user mode (matters only with KPTI). */
  inUser = false;
  readonly kernelVas: number[] = [];
  private readonly frames: FrameAllocator;
  private kernelPdpt = 0;
  private trampolinePdpt = 0;
  private nextPid = 1;
  private readonly codeFrames: number[] = [];
  private readonly opts: Required<Omit<KernelOptions, 'bugs'>>;
  private readonly w = newWalkResult();
  private readonly pvWanted: boolean;

  constructor(
    readonly platform: GuestPlatform,
    opts: KernelOptions = {},
  ) {
    const cpu = platform.cpu;
    if (!cpu || !cpu.touch || !cpu.kernelWrite64 || !cpu.execute) {
      throw new UsageError('usage.cpu', 'the guest-kernel model needs CPU services with touch, kernelWrite64 and execute');
    }
    this.cpu = cpu as Required<CpuServices>;
    this.opts = { kpti: false, paravirtCr3: true, frames: 4096, kernelPages: 8, codePages: 2, dataPages: 1, stackPages: 1, ...opts } as Required<Omit<KernelOptions, 'bugs'>>;
    this.kpti = this.opts.kpti;
    this.pvWanted = this.opts.paravirtCr3;
    this.frames = new FrameAllocator(platform, this.opts.frames);
    this.cr3 = new Cr3CacheClient(platform, opts.bugs);
  }

  get framesAvailable(): number {
    return this.frames.available;
  }

  /** Build the kernel half, register the cr3 cache if offered, create pid 1 and run it. */
  boot(): Process {
    this.kernelPdpt = this.frames.alloc();
    const g = this.kpti ? 0 : PTE_G;
    for (let i = 0; i < this.opts.kernelPages; i++) {
      const va = KERNEL_BASE + i * PAGE_SIZE;
      this.mapInPdpt(this.kernelPdpt, va, this.frames.alloc(), PTE_P | PTE_RW | g);
      this.kernelVas.push(va);
    }
    if (this.kpti) {
      this.trampolinePdpt = this.frames.alloc();
      this.mapInPdpt(this.trampolinePdpt, TRAMPOLINE_VA, this.frames.alloc(), PTE_P | PTE_RW);
    }
    for (let i = 0; i < this.opts.codePages; i++) this.codeFrames.push(this.frames.alloc());
    if (this.pvWanted) this.cr3.init();
    const init = this.fork();
    this.loadCr3(init.pgd);
    this.current = init;
    return init;
  }

  // ---- page tables ----------------------------------------------------------------------------

  private write(gpa: number, value: number): void {
    this.cpu.kernelWrite64(gpa, value);
  }

  /** Map `va` in the tree below a kernel PDPT (levels 3..1). */
  private mapInPdpt(pdpt: number, va: number, frame: number, flags: number): void {
    let table = pdpt;
    for (let level = 3; level >= 2; level--) {
      const ea = table + tableIndex(va, level) * 8;
      let next = this.entryAddr(ea);
      if (next < 0) {
        next = this.frames.alloc();
        this.write(ea, makePte(next, PTE_P | PTE_RW | (flags & PTE_US)));
      }
      table = next;
    }
    this.write(table + tableIndex(va, 1) * 8, makePte(frame, flags));
  }

  private entryAddr(ea: number): number {
    const lo = this.platform.mem.read32(ea);
    if ((lo & PTE_P) === 0) return -1;
    return ((lo & 0xffff_f000) >>> 0) + (this.platform.mem.read32(ea + 4) & 0xfffff) * 0x1_0000_0000;
  }

  /** Map a user page in a process (both PGDs share the tables below the PML4 under KPTI). */
  private mapUser(p: Process, va: number, frame: number, writable: boolean): void {
    const pml4e = tableIndex(va, 4) * 8;
    let pdpt = this.entryAddr(p.pgd + pml4e);
    if (pdpt < 0) {
      pdpt = this.frames.alloc();
      this.write(p.pgd + pml4e, makePte(pdpt, PTE_P | PTE_RW | PTE_US));
      if (p.userPgd !== p.pgd) this.write(p.userPgd + pml4e, makePte(pdpt, PTE_P | PTE_RW | PTE_US));
    }
    this.mapInPdpt(pdpt, va, frame, PTE_P | PTE_US | (writable ? PTE_RW : 0));
  }

  private newPgd(): { pgd: number; userPgd: number } {
    const pgd = this.frames.alloc();
    this.write(pgd + tableIndex(KERNEL_BASE, 4) * 8, makePte(this.kernelPdpt, PTE_P | PTE_RW));
    if (!this.kpti) return { pgd, userPgd: pgd };
    const userPgd = this.frames.alloc();
    this.write(userPgd + tableIndex(KERNEL_BASE, 4) * 8, makePte(this.trampolinePdpt, PTE_P | PTE_RW));
    return { pgd, userPgd };
  }

  // ---- processes --------------------------------------------------------------------------------

  /** Create a process with a fresh address space (shared code, private data and stack). */
  fork(): Process {
    const { pgd, userPgd } = this.newPgd();
    const pid = this.nextPid++;
    const kstack = KSTACK_BASE + pid * PAGE_SIZE;
    this.mapInPdpt(this.kernelPdpt, kstack, this.frames.alloc(), PTE_P | PTE_RW | (this.kpti ? 0 : PTE_G));
    const p: Process = { pid, pgd, userPgd, workingSet: [], kstack, alive: true };
    for (let i = 0; i < this.codeFrames.length; i++) {
      const va = USER_CODE + i * PAGE_SIZE;
      this.mapUser(p, va, this.codeFrames[i]!, false);
      p.workingSet.push(va);
    }
    for (let i = 0; i < this.opts.dataPages; i++) {
      const va = USER_DATA + i * PAGE_SIZE;
      this.mapUser(p, va, this.frames.alloc(), true);
      p.workingSet.push(va);
    }
    for (let i = 0; i < this.opts.stackPages; i++) {
      const va = USER_STACK_TOP - (i + 1) * PAGE_SIZE;
      this.mapUser(p, va, this.frames.alloc(), true);
      p.workingSet.push(va);
    }
    this.processes.set(pid, p);
    this.cpu.execute('fork');
    return p;
  }

  /** Tear down a process that is not running: clear and free its user tables, then its PGD(s). */
  exit(pid: number): void {
    const p = this.processes.get(pid);
    if (!p || !p.alive) throw new UsageError('usage.pid', 'no such process', { seen: String(pid) });
    if (p === this.current) throw new UsageError('usage.pid', 'a process cannot be torn down while it runs; switch away first', { seen: String(pid) });
    const shared = new Set(this.codeFrames);
    for (let i = 0; i < 256; i++) {
      const ea = p.pgd + i * 8;
      const pdpt = this.entryAddr(ea);
      if (pdpt < 0) continue;
      this.freeTree(pdpt, 3, shared);
      this.write(ea, 0);
      if (p.userPgd !== p.pgd) this.write(p.userPgd + i * 8, 0);
      this.frames.release(pdpt);
    }
    // The kernel-half entry (and the trampoline's) are cleared too, so the page goes back zeroed.
    this.write(p.pgd + tableIndex(KERNEL_BASE, 4) * 8, 0);
    if (p.userPgd !== p.pgd) this.write(p.userPgd + tableIndex(KERNEL_BASE, 4) * 8, 0);
    // The kernel stack mapping lives in the shared kernel tables.
    this.unmapKernel(p.kstack);
    this.cr3.onPgdFree(p.pgd);
    this.frames.release(p.pgd);
    if (p.userPgd !== p.pgd) {
      this.cr3.onPgdFree(p.userPgd);
      this.frames.release(p.userPgd);
    }
    p.alive = false;
    this.processes.delete(pid);
    this.cpu.execute('exit');
  }

  private freeTree(table: number, level: number, shared: Set<number>): void {
    for (let i = 0; i < 512; i++) {
      const ea = table + i * 8;
      const next = this.entryAddr(ea);
      if (next < 0) continue;
      if (level > 1) {
        this.freeTree(next, level - 1, shared);
        this.frames.release(next);
      } else if (!shared.has(next)) this.frames.release(next);
      this.write(ea, 0);
    }
  }

  private unmapKernel(va: number): void {
    let table = this.kernelPdpt;
    for (let level = 3; level >= 2; level--) {
      table = this.entryAddr(table + tableIndex(va, level) * 8);
      if (table < 0) return;
    }
    const ea = table + tableIndex(va, 1) * 8;
    const frame = this.entryAddr(ea);
    if (frame < 0) return;
    this.write(ea, 0);
    this.cpu.invlpg(va);
    this.frames.release(frame);
  }

  /** Point a user page of `pid` at a fresh frame (a COW break, say); flushes the TLB entry when it is live. */
  remap(pid: number, va: number): number {
    const p = this.processes.get(pid);
    if (!p) throw new UsageError('usage.pid', 'no such process', { seen: String(pid) });
    let table = p.pgd;
    for (let level = 4; level >= 2; level--) {
      table = this.entryAddr(table + tableIndex(va, level) * 8);
      if (table < 0) throw new UsageError('usage.va', 'address not mapped', { seen: hex(va) });
    }
    const ea = table + tableIndex(va, 1) * 8;
    const old = this.entryAddr(ea);
    const frame = this.frames.alloc();
    const lo = this.platform.mem.read32(ea);
    this.write(ea, makePte(frame, lo & 0xfff));
    if (p === this.current) this.cpu.invlpg(va);
    if (old >= 0 && !this.codeFrames.includes(old)) this.frames.release(old);
    return frame;
  }

  // ---- running ----------------------------------------------------------------------------------

  private loadCr3(cr3: number): void {
    this.cr3.load(cr3);
  }

  /** The CR3 the current process should have loaded right now. */
  expectedCr3(): number {
    const p = this.current!;
    return this.kpti && this.inUser ? p.userPgd : p.pgd;
  }

  /** Enter the kernel (system call or interrupt): KPTI switches to the kernel PGD; the kernel path is touched. */
  enterKernel(): void {
    if (this.kpti && this.inUser) this.loadCr3(this.current!.pgd);
    this.inUser = false;
    this.cpu.touch(this.current!.kstack, true);
  }

  /** Return to user mode: KPTI switches to the user PGD. */
  exitKernel(): void {
    if (this.kpti && !this.inUser) this.loadCr3(this.current!.userPgd);
    this.inUser = true;
  }

  /** Touch `n` kernel text/data pages (the kernel path of a system call or a switch). */
  touchKernel(n: number = this.kernelVas.length): void {
    const k = this.kernelVas;
    for (let i = 0; i < n && i < k.length; i++) this.cpu.touch(k[i]!, false);
  }

  /** Context switch (in kernel mode) to `pid`: scheduler work, CR3 load through the cache client. */
  switchTo(pid: number): void {
    const next = this.processes.get(pid);
    if (!next) throw new UsageError('usage.pid', 'no such process', { seen: String(pid) });
    if (this.kpti && this.inUser) this.enterKernel();
    this.cpu.execute('ctxsw');
    if (next !== this.current) this.loadCr3(next.pgd);
    this.current = next;
    this.inUser = false;
    this.cpu.touch(next.kstack, true);
  }

  /** The current process touches its working set (user mode). */
  touchUser(pages: number = Infinity, write = true): void {
    const ws = this.current!.workingSet;
    for (let i = 0; i < ws.length && i < pages; i++) this.cpu.touch(ws[i]!, write && i >= this.codeFrames.length);
  }

  /** Guest-physical address `va` maps to in process `pid`'s tables (read from guest memory: the reference). */
  reference(pid: number, va: number, user = this.inUser): number {
    const p = this.processes.get(pid)!;
    const root = this.kpti && user ? p.userPgd : p.pgd;
    return translate(this.platform.mem, root, va);
  }

  /** Whether `va` is mapped at all under `root` (a software walk). */
  isMapped(root: number, va: number): boolean {
    return walk(this.platform.mem, root, va, this.w).frame >= 0;
  }
}
