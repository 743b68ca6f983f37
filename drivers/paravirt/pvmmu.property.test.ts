import { describe, expect, it } from 'vitest';
import { fc } from '@fast-check/vitest';
import { Machine } from '../../device-models/machine/machine.ts';
import { Hypervisor, MMU_MODES, type MmuMode, type HypervisorBugs } from '../../device-models/hypervisor/hypervisor.ts';
import { PAGE_SIZE } from '../../spec-refs/abi/x86-paging.ts';
import { GuestKernel } from './kernel.ts';
import type { Cr3CacheBugs } from './cr3-cache.ts';

/**
 * Property tests of the paravirtual MMU, whatever the mode and the cache state:
 *  P1  every process sees its own memory: each access through the CPU services translates to what
 *      the process's guest page tables say (a software walk of guest memory);
 *  P2  no cache entry names a freed page directory, and every CR3-target slot holds a live root
 *      whose guest CR3 matches the entry the guest sees;
 *  P3  exits happen exactly where the mode says: none natively, under TCG or with EPT; with shadow
 *      paging one CR_ACCESS per plain CR3 load and one #PF exit per access the TLB and the shadow
 *      cannot serve; with the cr3 cache no exit on a hit and one VMCALL per miss or flush.
 * Each property is also run with a defect switched on, and must then fail.
 */

type Op =
  | { t: 'fork' }
  | { t: 'exit'; i: number }
  | { t: 'switch'; i: number }
  | { t: 'touch'; j: number; w: boolean }
  | { t: 'remap'; i: number; j: number }
  | { t: 'syscall' };

interface Cfg {
  mode: MmuMode;
  prevRoots: number;
  keepPages: boolean;
  kpti: boolean;
  vpid: boolean;
  tlbEntries: number;
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: fc.constant<Op>({ t: 'fork' }) },
  { weight: 1, arbitrary: fc.nat(7).map<Op>((i) => ({ t: 'exit', i })) },
  { weight: 5, arbitrary: fc.nat(7).map<Op>((i) => ({ t: 'switch', i })) },
  { weight: 4, arbitrary: fc.record({ j: fc.nat(3), w: fc.boolean() }).map<Op>(({ j, w }) => ({ t: 'touch', j, w })) },
  { weight: 3, arbitrary: fc.record({ i: fc.nat(7), j: fc.nat(3) }).map<Op>(({ i, j }) => ({ t: 'remap', i, j })) },
  { weight: 2, arbitrary: fc.constant<Op>({ t: 'syscall' }) },
);

const cfgArb = (modes: readonly MmuMode[] = MMU_MODES): fc.Arbitrary<Cfg> =>
  fc.record({
    mode: fc.constantFrom(...modes),
    prevRoots: fc.constantFrom(0, 1, 3, 11),
    keepPages: fc.boolean(),
    kpti: fc.boolean(),
    vpid: fc.boolean(),
    tlbEntries: fc.constantFrom(4, 64),
  });

class PropertyViolation extends Error {}
function check(cond: boolean, what: string): void {
  if (!cond) throw new PropertyViolation(what);
}

function run(cfg: Cfg, ops: Op[], bugs: { hv?: HypervisorBugs; guest?: Cr3CacheBugs } = {}): { m: Machine; k: GuestKernel } {
  const m = new Machine({ ram: [{ base: 0, size: 12 << 20 }], exitsTakeTime: false });
  const hv = Hypervisor.attach(m, { mode: cfg.mode, prevRoots: cfg.prevRoots, keepShadowPages: cfg.keepPages, vpid: cfg.vpid, tlbEntries: cfg.tlbEntries, bugs: bugs.hv ?? {} });
  const k = new GuestKernel(m.platform, { frames: 1024, kpti: cfg.kpti, kernelPages: 3, bugs: bugs.guest ?? {} });
  k.boot();
  k.fork();
  const cpu = k.cpu;
  const shadowed = cfg.mode === 'shadow' || cfg.mode === 'shadow-paravirt-cr3';
  const exitless = !shadowed; // native, full-emulation, ept

  const live = () => [...k.processes.values()];
  const pick = (i: number) => {
    const l = live();
    return l[i % l.length]!;
  };

  const checkTranslations = () => {
    const p = k.current!;
    const vas = [...p.workingSet, ...(k.kpti && k.inUser ? [] : [p.kstack, ...k.kernelVas])];
    for (const va of vas) {
      const ref = k.reference(p.pid, va);
      check(ref >= 0, `guest tables of pid ${p.pid} do not map ${va}`);
      const got = cpu.touch(va + 8, false);
      check(got === ref + 8, `P1: pid ${p.pid} va 0x${va.toString(16)}: CPU gave 0x${got.toString(16)}, guest tables say 0x${(ref + 8).toString(16)} (${cfg.mode})`);
    }
  };

  const checkCache = () => {
    const pgds = new Set(live().flatMap((p) => [p.pgd, p.userPgd]));
    for (const e of k.cr3.snapshot()) check(pgds.has(e.guestCr3), `P2: cache entry names freed page directory 0x${e.guestCr3.toString(16)}`);
    for (const root of hv.targets) {
      if (!root) continue;
      check(root.alive, `P2: CR3-target slot holds a freed shadow root 0x${root.hostCr3.toString(16)}`);
    }
    const entries = new Map(k.cr3.snapshot().map((e) => [e.hostCr3, e.guestCr3]));
    for (const root of hv.targets) if (root) check(entries.get(root.hostCr3) === root.gcr3, 'P2: target slot and cache entry disagree');
  };

  for (const op of ops) {
    const before = { exits: m.exits(), cr: m.exits('CR_ACCESS'), vmcall: m.exits('VMCALL'), pf: m.exits('EXCEPTION_NMI'), invlpg: m.exits('INVLPG'), ...k.cr3.stats };
    let expectPf = -1;
    switch (op.t) {
      case 'fork':
        if (k.processes.size < 6) k.fork();
        break;
      case 'exit': {
        const others = live().filter((p) => p !== k.current);
        if (others.length > 0) k.exit(others[op.i % others.length]!.pid);
        break;
      }
      case 'switch':
        k.switchTo(pick(op.i).pid);
        if (op.i % 2 === 0) k.exitKernel();
        break;
      case 'touch': {
        const p = k.current!;
        const va = p.workingSet[op.j % p.workingSet.length]!;
        const w = op.w && op.j % p.workingSet.length >= 2; // code pages are read-only
        if (shadowed) {
          const vpn = va / PAGE_SIZE;
          const cached = hv.tlb.lookup(0, vpn);
          const spte = hv.shadow!.lookup(vpn);
          const ok = (e: number) => e >= 0 && (!w || (e & 1) !== 0);
          expectPf = ok(cached) || ok(spte) ? 0 : 1;
        }
        const got = cpu.touch(va, w);
        check(got === k.reference(p.pid, va), `P1: touch of 0x${va.toString(16)} in pid ${p.pid}`);
        break;
      }
      case 'remap': {
        const p = pick(op.i);
        k.remap(p.pid, p.workingSet[2 + (op.j % (p.workingSet.length - 2))]!);
        break;
      }
      case 'syscall':
        k.enterKernel();
        k.touchKernel(2);
        k.exitKernel();
        break;
    }
    // P3
    const d = (n: number, b: number) => n - b;
    const s = k.cr3.stats;
    if (exitless) check(m.exits() === before.exits, `P3: ${cfg.mode} took ${m.exits() - before.exits} exits on ${op.t}`);
    else {
      check(d(m.exits('CR_ACCESS'), before.cr) === d(s.mov, before.mov) + d(s.fallback, before.fallback), `P3: CR_ACCESS exits != plain CR3 loads on ${op.t}`);
      check(d(m.exits('VMCALL'), before.vmcall) === d(s.hypercall, before.hypercall) + d(s.flush, before.flush) + d(s.fallback, before.fallback), `P3: VMCALL exits != hypercalls on ${op.t}`);
      if (expectPf >= 0) check(d(m.exits('EXCEPTION_NMI'), before.pf) === expectPf, `P3: touch took ${d(m.exits('EXCEPTION_NMI'), before.pf)} #PF exits, expected ${expectPf}`);
      if (op.t === 'touch') check(m.exits() - before.exits === Math.max(0, expectPf), `P3: touch took exits other than #PF`);
    }
    checkTranslations();
    checkCache();
  }
  return { m, k };
}

const opsArb = fc.array(opArb, { minLength: 1, maxLength: 40 });

describe('paravirtual MMU properties', () => {
  it('P1-P3 hold in every mode, cache size and cache state', () => {
    fc.assert(
      fc.property(cfgArb(), opsArb, (cfg, ops) => {
        run(cfg, ops);
      }),
      { numRuns: 100 },
    );
  });

  it('the cr3 cache sees hits, misses and flushes in these runs (the properties are not vacuous)', () => {
    const cfg: Cfg = { mode: 'shadow-paravirt-cr3', prevRoots: 3, keepPages: true, kpti: false, vpid: false, tlbEntries: 64 };
    const ops: Op[] = [{ t: 'fork' }, { t: 'fork' }, ...Array.from({ length: 20 }, (_, i): Op => ({ t: 'switch', i })), { t: 'exit', i: 0 }, { t: 'switch', i: 1 }];
    const { k, m } = run(cfg, ops);
    expect(k.cr3.stats.hit).toBeGreaterThan(0);
    expect(k.cr3.stats.hypercall).toBeGreaterThan(0);
    expect(k.cr3.stats.flush).toBeGreaterThan(0);
    expect(m.exits('EXCEPTION_NMI')).toBeGreaterThan(0);
    expect(m.events.get('shadow.wp_emulate')).toBeGreaterThan(0);
  });
});

/** Run a property with a defect on; it must fail (with a counterexample). */
function mustFail(cfgs: fc.Arbitrary<Cfg>, bugs: { hv?: HypervisorBugs; guest?: Cr3CacheBugs }, numRuns = 300): string {
  const r = fc.check(
    fc.property(cfgs, opsArb, (cfg, ops) => {
      run(cfg, ops, bugs);
    }),
    { numRuns, seed: 20070107 },
  );
  expect(r.failed).toBe(true);
  if (process.env.PVMMU_SHOW_COUNTEREXAMPLES) console.log(r.counterexample, r.errorInstance);
  return String(r.errorInstance instanceof Error ? r.errorInstance.message : r.errorInstance);
}

describe('the properties catch broken cache logic', () => {
  it('shadow paging that does not zap on guest page-table writes breaks P1', () => {
    const msg = mustFail(cfgArb(['shadow', 'shadow-paravirt-cr3']).map((c) => ({ ...c, keepPages: true })), { hv: { noZapOnWrite: true } });
    expect(msg).toMatch(/P1/);
  });

  it('a host that evicts roots pinned in CR3-target slots breaks P2', () => {
    const msg = mustFail(cfgArb(['shadow-paravirt-cr3']).map((c) => ({ ...c, keepPages: false, prevRoots: 0 })), { hv: { evictPinned: true } });
    expect(msg).toMatch(/P2|P1/);
  });

  it('a guest that does not flush on page-directory free breaks P2', () => {
    const msg = mustFail(cfgArb(['shadow-paravirt-cr3']), { guest: { skipFlushOnFree: true } });
    expect(msg).toMatch(/P2/);
  });

  it('a host that ignores flush_cr3_cache is caught (the client checks, P2 would too)', () => {
    const msg = mustFail(cfgArb(['shadow-paravirt-cr3']), { hv: { ignoreFlush: true } });
    expect(msg).toMatch(/freed page directory/);
  });
});
