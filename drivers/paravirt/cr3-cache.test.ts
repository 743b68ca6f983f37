import { describe, expect, it } from 'vitest';
import { Machine } from '../../device-models/machine/machine.ts';
import { Hypervisor, type MmuMode } from '../../device-models/hypervisor/hypervisor.ts';
import { GuestKernel } from './kernel.ts';
import { Cr3CacheClient } from './cr3-cache.ts';
import { LatCtx } from './workloads.ts';
import * as abi from '../../spec-refs/abi/pvmmu.ts';

function boot(mode: MmuMode, opts: { paravirtCr3?: boolean } = {}) {
  const m = new Machine({ ram: [{ base: 0, size: 16 << 20 }], exitsTakeTime: false });
  const hv = Hypervisor.attach(m, { mode, vpid: false });
  const k = new GuestKernel(m.platform, { frames: 1024, ...opts });
  k.boot();
  return { m, hv, k };
}

describe('cr3-cache client', () => {
  it('runs unchanged (plain mov cr3) where the host does not offer the feature', () => {
    for (const mode of ['native', 'full-emulation', 'shadow', 'ept'] as const) {
      const { m, k } = boot(mode);
      expect(k.cr3.enabled).toBe(false);
      const lc = new LatCtx(k, 2);
      m.events.reset();
      lc.ring(50);
      expect(k.cr3.stats.hit + k.cr3.stats.hypercall).toBe(0);
      expect(k.cr3.stats.mov).toBeGreaterThanOrEqual(50);
      expect(m.exits('VMCALL')).toBe(0);
      expect(m.exits('MSR_WRITE')).toBe(0); // it never tried to register
      expect(m.exits('CR_ACCESS')).toBe(mode === 'shadow' ? 50 : 0);
    }
  });

  it('can be told not to use the cache even when offered', () => {
    const { k, m } = boot('shadow-paravirt-cr3', { paravirtCr3: false });
    expect(k.cr3.enabled).toBe(false);
    const lc = new LatCtx(k, 2);
    m.events.reset();
    lc.ring(10);
    expect(m.exits('CR_ACCESS')).toBe(10);
  });

  it('switches through the cache on a hit (no exit) and by hypercall on a miss', () => {
    const { m, k } = boot('shadow-paravirt-cr3');
    expect(k.cr3.enabled).toBe(true);
    const lc = new LatCtx(k, 2);
    lc.ring(4); // both page directories now cached
    m.events.reset();
    const before = { ...k.cr3.stats };
    lc.ring(100);
    expect(k.cr3.stats.hit - before.hit).toBe(100);
    expect(m.exits()).toBe(0);
    // six processes cycle through four entries: every load misses and goes by hypercall
    const ring6 = new LatCtx(k, 6);
    ring6.ring(12);
    m.events.reset();
    const b2 = { ...k.cr3.stats };
    ring6.ring(60);
    expect(k.cr3.stats.hypercall - b2.hypercall).toBe(60);
    expect(m.exits('VMCALL')).toBe(60);
    expect(m.exits('CR_ACCESS')).toBe(0);
  });

  it('flushes the cache when a cached page directory is freed, and no entry names it afterwards', () => {
    const { m, k } = boot('shadow-paravirt-cr3');
    const a = k.fork();
    const b = k.fork();
    k.switchTo(a.pid);
    k.switchTo(b.pid);
    expect(k.cr3.snapshot().map((e) => e.guestCr3)).toContain(a.pgd);
    const flushes = m.events.get('hypercall.flush_cr3_cache');
    k.exit(a.pid);
    expect(m.events.get('hypercall.flush_cr3_cache')).toBe(flushes + 1);
    expect(k.cr3.snapshot().map((e) => e.guestCr3)).not.toContain(a.pgd);
    // a page directory that was never cached is freed without a hypercall
    const c = k.fork();
    k.exit(c.pid);
    expect(m.events.get('hypercall.flush_cr3_cache')).toBe(flushes + 1);
  });

  it('distrusts a cache page whose host value is not page aligned', () => {
    const { m, k } = boot('shadow-paravirt-cr3');
    const client = k.cr3 as Cr3CacheClient;
    const e = client.paraStateGpa + abi.PS.ENTRIES;
    m.mem.write64(e, 0x5000);
    m.mem.write64(e + 8, 0x7f00_0000_0123);
    expect(client.lookup(0x5000)).toBe(-1);
  });

  it('falls back to mov cr3 when the host refuses registration', () => {
    const m = new Machine({ ram: [{ base: 0, size: 16 << 20 }], exitsTakeTime: false });
    Hypervisor.attach(m, { mode: 'shadow-paravirt-cr3' });
    const cpu = m.platform.cpu!;
    // a host that announces the feature but fails every registration
    const real = cpu.wrmsr.bind(cpu);
    (cpu as { wrmsr: typeof cpu.wrmsr }).wrmsr = (msr, v) => {
      real(msr, v);
      m.mem.write32(v + abi.PS.RET, -5 >>> 0);
    };
    const client = new Cr3CacheClient(m.platform);
    expect(client.init()).toBe(false);
    expect(client.enabled).toBe(false);
  });
});
