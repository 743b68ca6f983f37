import { describe, expect, it } from 'vitest';
import { Machine } from '../machine/machine.ts';
import { Hypervisor, type HypervisorOptions } from './hypervisor.ts';
import * as abi from '../../spec-refs/abi/pvmmu.ts';
import { GuestFault } from '../../spec-refs/errors.ts';
import { makePte, PTE_P, PTE_RW, tableIndex } from '../../spec-refs/abi/x86-paging.ts';

function setup(opts: HypervisorOptions) {
  const m = new Machine({ ram: [{ base: 0, size: 8 << 20 }], exitsTakeTime: false });
  const hv = Hypervisor.attach(m, opts);
  return { m, hv, cpu: m.platform.cpu! };
}

/** Guest-side registration by hand (what the client does), returning the para-state and stub pages. */
function register(m: Machine, cpu: NonNullable<Machine['platform']['cpu']>) {
  const ps = m.dma.alloc(4096, 4096);
  const stub = m.dma.alloc(4096, 4096);
  m.mem.write8(stub, abi.UD2[0]);
  m.mem.write8(stub + 1, abi.UD2[1]);
  m.mem.write32(ps + abi.PS.GUEST_VERSION, abi.PARA_STATE_VERSION);
  m.mem.write32(ps + abi.PS.SIZE, abi.PS.STRUCT_SIZE);
  m.mem.write64(ps + abi.PS.HYPERCALL_GPA, stub);
  cpu.wrmsr(abi.MSR_PARA_STATE, ps);
  return { ps, stub };
}

/** A one-page address space: PML4 -> PDPT -> PD -> PT mapping va 0 to `frame`. */
function tinyTables(m: Machine, frame: number): number {
  const [pml4, pdpt, pd, pt] = [0, 0, 0, 0].map(() => m.dma.alloc(4096, 4096)) as [number, number, number, number];
  m.mem.write64(pml4, makePte(pdpt, PTE_P | PTE_RW));
  m.mem.write64(pdpt, makePte(pd, PTE_P | PTE_RW));
  m.mem.write64(pd, makePte(pt, PTE_P | PTE_RW));
  m.mem.write64(pt + tableIndex(0, 1) * 8, makePte(frame, PTE_P | PTE_RW));
  return pml4;
}

describe('hypercall ABI (2007 kvm-paravirt shape)', () => {
  it('announces the signature at 0x40000000 and the cr3-cache bit only in the paravirt mode', () => {
    const [b, c, d] = abi.signatureWords();
    for (const mode of ['shadow', 'ept', 'shadow-paravirt-cr3'] as const) {
      const { cpu, m } = setup({ mode });
      const sig = cpu.cpuid(abi.CPUID_SIGNATURE_LEAF);
      expect(sig.slice(1)).toEqual([b, c, d]);
      expect(sig[0]).toBeGreaterThanOrEqual(abi.CPUID_FEATURES_LEAF);
      expect((cpu.cpuid(abi.CPUID_FEATURES_LEAF)[0] & abi.FEATURE_CR3_CACHE) !== 0).toBe(mode === 'shadow-paravirt-cr3');
      expect(m.exits('CPUID')).toBe(2);
    }
    const native = setup({ mode: 'native' });
    expect(native.cpu.cpuid(1)[2] & (1 << 31)).toBe(0);
    expect(native.cpu.cpuid(abi.CPUID_SIGNATURE_LEAF)).toEqual([0, 0, 0, 0]);
    expect(native.m.exits()).toBe(0);
  });

  it('registration by MSR patches the stub with VMCALL (Intel) or VMMCALL (AMD) and fills the para-state page', () => {
    for (const vendor of ['intel', 'amd'] as const) {
      const { m, cpu } = setup({ mode: 'shadow-paravirt-cr3', vendor });
      const { ps, stub } = register(m, cpu);
      const insn = vendor === 'amd' ? abi.VMMCALL : abi.VMCALL;
      expect([0, 1, 2].map((i) => m.mem.read8(stub + i))).toEqual([...insn]);
      expect(m.mem.read32(ps + abi.PS.RET)).toBe(0);
      expect(m.mem.read32(ps + abi.PS.HOST_VERSION)).toBe(abi.PARA_STATE_VERSION);
      expect(m.mem.read32(ps + abi.PS.CACHE_MAX)).toBe(abi.CR3_CACHE_SIZE);
      expect(m.exits('MSR_WRITE')).toBe(1);
    }
  });

  it('refuses a misaligned para-state page with #GP and a bad version with ret != 0', () => {
    const { m, cpu } = setup({ mode: 'shadow-paravirt-cr3' });
    expect(() => cpu.wrmsr(abi.MSR_PARA_STATE, 0x20_0010)).toThrow(GuestFault);
    const ps = m.dma.alloc(4096, 4096);
    m.mem.write32(ps + abi.PS.GUEST_VERSION, 99);
    cpu.wrmsr(abi.MSR_PARA_STATE, ps);
    expect(m.mem.read32(ps + abi.PS.RET) | 0).toBe(-22);
  });

  it('the MSR does not exist where the feature is not offered (#GP)', () => {
    const { cpu } = setup({ mode: 'shadow' });
    expect(() => cpu.wrmsr(abi.MSR_PARA_STATE, 0x20_0000)).toThrow(GuestFault);
  });

  it('unknown hypercall numbers return -ENOSYS; VMCALL outside a VM is #UD', () => {
    const { cpu, m } = setup({ mode: 'shadow-paravirt-cr3' });
    register(m, cpu);
    expect(cpu.hypercall(7)).toBe(abi.HC_ENOSYS);
    expect(m.events.get('hypercall.unknown')).toBe(1);
    const shadow = setup({ mode: 'shadow' });
    expect(shadow.cpu.hypercall(abi.HC_LOAD_CR3, 0x1000)).toBe(abi.HC_ENOSYS);
    expect(() => setup({ mode: 'native' }).cpu.hypercall(1)).toThrow(GuestFault);
    expect(() => setup({ mode: 'full-emulation' }).cpu.hypercall(1)).toThrow(GuestFault);
  });

  it('an unpatched stub raises #UD', () => {
    const { m, cpu } = setup({ mode: 'shadow-paravirt-cr3' });
    const { stub } = register(m, cpu);
    m.mem.write8(stub, abi.UD2[0]);
    m.mem.write8(stub + 1, abi.UD2[1]);
    expect(() => cpu.hypercall(abi.HC_LOAD_CR3, 0)).toThrow(/not patched/);
  });

  it('load_cr3 installs a cache entry backed by a CR3-target slot; loading that host value does not exit', () => {
    const { m, cpu, hv } = setup({ mode: 'shadow-paravirt-cr3' });
    const { ps } = register(m, cpu);
    const frame = m.dma.alloc(4096, 4096);
    const root = tinyTables(m, frame);
    expect(cpu.hypercall(abi.HC_LOAD_CR3, root + 1)).toBe(abi.HC_EINVAL);
    expect(cpu.hypercall(abi.HC_LOAD_CR3, root)).toBe(0);
    const g = m.mem.read64(ps + abi.PS.ENTRIES);
    const h = m.mem.read64(ps + abi.PS.ENTRIES + 8);
    expect(g).toBe(root);
    expect(m.vcpu.controls.cr3Targets).toContain(h);
    expect(cpu.touch!(0x123, false)).toBe(frame + 0x123);
    const before = m.exits();
    cpu.writeCr3(h);
    expect(m.exits()).toBe(before);
    expect(hv.guestCr3).toBe(root);
    expect(cpu.readCr3()).toBe(root); // CR3-store exiting hides the shadow root
    expect(cpu.hypercall(abi.HC_FLUSH_CR3_CACHE)).toBe(0);
    expect(m.mem.read64(ps + abi.PS.ENTRIES)).toBe(0);
    expect(m.vcpu.controls.cr3Targets).toEqual([]);
    const exits = m.exits('CR_ACCESS');
    // no longer a target: it exits, and a host address is not a guest root: #GP
    expect(() => cpu.writeCr3(h)).toThrow(GuestFault);
    expect(m.exits('CR_ACCESS')).toBe(exits + 1);
  });

  it('shadow paging traps writes to shadowed page tables and zaps what they fed', () => {
    const { m, cpu } = setup({ mode: 'shadow' });
    const f1 = m.dma.alloc(4096, 4096);
    const f2 = m.dma.alloc(4096, 4096);
    const root = tinyTables(m, f1);
    cpu.writeCr3(root);
    expect(cpu.touch!(0, true)).toBe(f1);
    expect(m.exits('EXCEPTION_NMI')).toBe(1); // hidden fault filled the shadow
    const pdpt = (m.mem.read32(root) & 0xffff_f000) >>> 0;
    const pd = (m.mem.read32(pdpt) & 0xffff_f000) >>> 0;
    const pt = (m.mem.read32(pd) & 0xffff_f000) >>> 0;
    cpu.kernelWrite64!(pt, makePte(f2, PTE_P | PTE_RW));
    expect(m.exits('EXCEPTION_NMI')).toBe(2); // the store trapped
    cpu.invlpg(0);
    expect(cpu.touch!(0, false)).toBe(f2);
  });

  it('EPT and native: no exits for CR3 loads, INVLPG, page-table writes or accesses', () => {
    for (const mode of ['ept', 'native'] as const) {
      const { m, cpu } = setup({ mode });
      const f1 = m.dma.alloc(4096, 4096);
      const root = tinyTables(m, f1);
      cpu.writeCr3(root);
      expect(cpu.touch!(8, false)).toBe(f1 + 8);
      cpu.invlpg(0);
      cpu.kernelWrite64!(root + 8, 0);
      expect(m.exits()).toBe(0);
      expect(m.events.get(mode === 'ept' ? 'ept.walk' : 'mmu.walk')).toBe(1);
    }
  });

  it('without VPID every exit flushes the TLB, globals included', () => {
    const { m, cpu, hv } = setup({ mode: 'shadow', vpid: false });
    const root = tinyTables(m, m.dma.alloc(4096, 4096));
    cpu.writeCr3(root);
    cpu.touch!(0, false);
    expect(hv.tlb.entries).toBe(1);
    cpu.cpuid(0);
    expect(hv.tlb.entries).toBe(0);
  });
});

describe('faults reflected to the guest', () => {
  it('a write to a read-only guest mapping is a #PF in every mode, never a silent success', () => {
    for (const mode of ['native', 'full-emulation', 'shadow', 'shadow-paravirt-cr3', 'ept'] as const) {
      const { m, cpu } = setup({ mode });
      const f = m.dma.alloc(4096, 4096);
      const root = tinyTables(m, f);
      const pdpt = (m.mem.read32(root) & 0xffff_f000) >>> 0;
      const pd = (m.mem.read32(pdpt) & 0xffff_f000) >>> 0;
      const pt = (m.mem.read32(pd) & 0xffff_f000) >>> 0;
      m.mem.write64(pt, makePte(f, PTE_P)); // read-only
      cpu.writeCr3(root);
      expect(cpu.touch!(0, false)).toBe(f);
      expect(() => cpu.touch!(0, true)).toThrow(GuestFault);
      expect(() => cpu.touch!(0x1000, false)).toThrow(GuestFault); // not mapped
    }
  });
});

describe('PCID', () => {
  it('a CR3 load with the no-flush bit keeps the PCID-tagged entries; without it they go', () => {
    const { m, cpu, hv } = setup({ mode: 'native', pcid: true });
    const f = m.dma.alloc(4096, 4096);
    const root = tinyTables(m, f);
    cpu.writeCr3(root + 1); // PCID 1
    cpu.touch!(0, false);
    expect(m.events.get('mmu.walk')).toBe(1);
    const other = tinyTables(m, f);
    cpu.writeCr3(other + 2, true); // PCID 2
    cpu.writeCr3(root + 1, true); // back to PCID 1 without flushing
    cpu.touch!(0, false);
    expect(m.events.get('mmu.walk')).toBe(1); // still cached under tag 1
    cpu.writeCr3(root + 1, false);
    cpu.touch!(0, false);
    expect(m.events.get('mmu.walk')).toBe(2);
    expect(hv.tlb.entries).toBe(1);
  });
});
