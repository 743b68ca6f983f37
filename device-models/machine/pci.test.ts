import { describe, expect, it } from 'vitest';
import { test as fcTest, fc } from '@fast-check/vitest';
import { Machine, Layout } from './machine.ts';
import { pciHost, PciCfg, type PciFunctionSpec } from './pci.ts';
import { PciBus, Cfg } from '../../drivers/transport/pci-bus.ts';
import { DeviceMisbehaviourError } from '../../spec-refs/errors.ts';

function regs() {
  const m = new Map<number, number>();
  return { map: m, handler: { read: (o: number) => m.get(o) ?? 0, write: (o: number, _s: number, v: number) => void m.set(o, v) } };
}

function machineWith(spec?: Partial<PciFunctionSpec>) {
  const m = new Machine();
  const host = pciHost(m);
  const r = regs();
  const io = regs();
  const f = host.addFunction({
    name: 'test',
    vendorId: 0x1af4,
    deviceId: 0x1041,
    revision: 1,
    classCode: 0x020000,
    subsystemVendorId: 0x1af4,
    subsystemId: 0x40,
    interruptPin: 1,
    bars: [
      { index: 0, kind: 'io', size: 0x40, handler: io.handler },
      { index: 1, kind: 'mem32', size: 0x1000 },
      { index: 4, kind: 'mem64', size: 0x4000, prefetchable: true, handler: r.handler },
    ],
    msix: { vectors: 3, tableBar: 1, tableOffset: 0, pbaBar: 1, pbaOffset: 0x800 },
    ...spec,
  });
  return { m, host, f, r, io };
}

describe('PCI host bridge', () => {
  it('installs PciInfo and answers config cycles through 0xCF8/0xCFC and ECAM alike', () => {
    const { m } = machineWith();
    expect(m.platform.pci?.ecamBase).toBe(Layout.PCI_ECAM_BASE);
    for (const mechanism of ['cf8', 'ecam'] as const) {
      const bus = new PciBus(m.platform, { mechanism });
      const devs = bus.enumerate();
      expect(devs).toHaveLength(1);
      expect(devs[0]).toMatchObject({ dev: 1, fn: 0, vendorId: 0x1af4, deviceId: 0x1041, revision: 1, classCode: 0x020000, subsystemId: 0x40, interruptPin: 1 });
    }
    // absent functions read all ones
    expect(m.platform.mmioRead(Layout.PCI_ECAM_BASE + (5 << 15), 4)).toBe(0xffff_ffff);
    // config access exits: port I/O exits for mechanism #1, EPT misconfig for ECAM
    expect(m.exits('IO_INSTRUCTION')).toBeGreaterThan(0);
    expect(m.exits('EPT_MISCONFIG')).toBeGreaterThan(0);
  });

  it('reaches extended config space only through ECAM', () => {
    const { m, f } = machineWith();
    f.cfg[0x100] = 0x5a;
    const a = { bus: 0, dev: f.dev, fn: 0 };
    expect(new PciBus(m.platform, { mechanism: 'ecam' }).read(a, 0x100, 1)).toBe(0x5a);
    expect(() => new PciBus(m.platform, { mechanism: 'cf8' }).read(a, 0x100, 1)).toThrow();
  });

  it('sizes BARs (I/O, 32-bit, 64-bit) by writing all ones and reading the mask', () => {
    const { m, f } = machineWith();
    const bus = new PciBus(m.platform);
    const a = { bus: 0, dev: f.dev, fn: 0 };
    bus.write(a, Cfg.BAR0, 4, 0xffff_ffff);
    expect(bus.read(a, Cfg.BAR0, 4)).toBe((~0x3f | 1) >>> 0);
    bus.write(a, Cfg.BAR0 + 16, 4, 0xffff_ffff);
    expect(bus.read(a, Cfg.BAR0 + 16, 4)).toBe((~0x3fff | 0xc) >>> 0);
    bus.write(a, Cfg.BAR0 + 20, 4, 0xffff_ffff);
    expect(bus.read(a, Cfg.BAR0 + 20, 4)).toBe(0xffff_ffff);
    // unimplemented BARs read 0 whatever is written
    bus.write(a, Cfg.BAR0 + 8, 4, 0xffff_ffff);
    expect(bus.read(a, Cfg.BAR0 + 8, 4)).toBe(0);
    const bars = bus.sizeBars(a);
    expect(bars.map((b) => [b.index, b.kind, b.size, b.prefetchable])).toEqual([
      [0, 'io', 0x40, false],
      [1, 'mem32', 0x1000, false],
      [4, 'mem64', 0x4000, true],
    ]);
  });

  it('decodes a BAR only at its assigned address and only while its space is enabled', () => {
    const { m, f, r, io } = machineWith();
    const bus = new PciBus(m.platform);
    const a = { bus: 0, dev: f.dev, fn: 0 };
    const bars = bus.assignBars(a);
    const b4 = bars.find((b) => b.index === 4)!;
    const b0 = bars.find((b) => b.index === 0)!;
    expect(b4.addr).toBeGreaterThanOrEqual(Layout.PCI_MMIO64_BASE);
    expect(b4.addr % 0x4000).toBe(0);
    expect(b0.addr).toBeGreaterThanOrEqual(Layout.PCI_IO_BASE);
    m.platform.mmioWrite(b4.addr + 8, 4, 0x1234);
    expect(r.map.get(8)).toBe(0x1234);
    m.platform.pioWrite(b0.addr + 4, 2, 0x55);
    expect(io.map.get(4)).toBe(0x55);
    // memory decode off: the window disappears
    bus.write(a, Cfg.COMMAND, 2, bus.read(a, Cfg.COMMAND, 2) & ~Cfg.CMD_MEM);
    expect(f.barMappedAt(4)).toBe(-1);
    expect(m.platform.mmioRead(b4.addr + 8, 4)).toBe(0xffff_ffff);
    expect(m.platform.pioRead(b0.addr + 4, 2)).toBe(0x55); // I/O decoding is separate and still on
    bus.write(a, Cfg.COMMAND, 2, bus.read(a, Cfg.COMMAND, 2) | Cfg.CMD_MEM);
    expect(m.platform.mmioRead(b4.addr + 8, 4)).toBe(0x1234);
    // moving the BAR moves the window
    bus.write(a, Cfg.BAR0 + 16, 4, 0x2000_0000);
    expect(f.barAddress(4)).toBe(Math.floor(b4.addr / 2 ** 32) * 2 ** 32 + 0x2000_0000);
  });

  it('refuses to map a BAR over another window without throwing', () => {
    const { m, f } = machineWith();
    const bus = new PciBus(m.platform);
    const a = { bus: 0, dev: f.dev, fn: 0 };
    bus.write(a, Cfg.BAR0 + 4, 4, Layout.PCI_ECAM_BASE); // over ECAM
    bus.write(a, Cfg.COMMAND, 2, Cfg.CMD_MEM);
    expect(f.barMappedAt(1)).toBe(-1);
    expect(f.mapFailures).toBe(1);
  });

  it('walks the capability list and finds MSI-X', () => {
    const { m, f } = machineWith();
    const bus = new PciBus(m.platform);
    const a = { bus: 0, dev: f.dev, fn: 0 };
    f.addCapability(PciCfg.CAP_ID_VNDR, new Uint8Array(16));
    const caps = bus.capabilities(a);
    expect(caps.map((c) => c.id)).toEqual([0x11, 0x09]);
    expect(bus.msix(a)).toMatchObject({ tableSize: 3, tableBar: 1, tableOffset: 0, pbaBar: 1, pbaOffset: 0x800 });
  });

  it('rejects a looping capability list from a hostile device', () => {
    const { m, f } = machineWith();
    const bus = new PciBus(m.platform);
    f.cfg[f.msixCap + 1] = f.msixCap; // points to itself
    expect(() => bus.capabilities({ bus: 0, dev: f.dev, fn: 0 })).toThrow(DeviceMisbehaviourError);
  });

  fcTest.prop([fc.uint8Array({ minLength: 192, maxLength: 192 }), fc.integer({ min: 0, max: 255 })], { numRuns: 50 })(
    'capability walk terminates on any config contents',
    (bytes, ptr) => {
      const { m, f } = machineWith();
      f.cfg.set(bytes, 0x40);
      f.cfg[PciCfg.CAP_PTR] = ptr;
      const bus = new PciBus(m.platform);
      try {
        const caps = bus.capabilities({ bus: 0, dev: f.dev, fn: 0 });
        expect(caps.length).toBeLessThanOrEqual(48);
        for (const c of caps) expect(c.offset).toBeGreaterThanOrEqual(0x40);
      } catch (e) {
        expect(e).toBeInstanceOf(DeviceMisbehaviourError);
      }
    },
  );
});

describe('MSI-X', () => {
  function live() {
    const x = machineWith();
    const bus = new PciBus(x.m.platform);
    const a = { bus: 0, dev: x.f.dev, fn: 0 };
    const bars = bus.assignBars(a);
    const msix = bus.msix(a)!;
    return { ...x, bus, a, bars, msix };
  }

  it('delivers an unmasked vector as an MSI to the vCPU', () => {
    const { m, f, bus, a, bars, msix } = live();
    bus.enableMsix(a, msix, bars, [0x41, 0x42]);
    expect(f.msixNotify(1)).toBe(true);
    expect(m.platform.irq.poll()).toBe(0x42);
    expect(f.msixNotify(0)).toBe(true);
    expect(m.platform.irq.poll()).toBe(0x41);
  });

  it('holds a masked vector pending and delivers it on unmask (per-vector and function mask)', () => {
    const { m, f, bus, a, bars, msix } = live();
    bus.enableMsix(a, msix, bars, [0x41, 0x42]);
    bus.maskVector(msix, bars, 0, true);
    expect(f.msixNotify(0)).toBe(false);
    expect(f.msixPending(0)).toBe(true);
    const pba = bars.find((b) => b.index === msix.pbaBar)!.addr + msix.pbaOffset;
    expect(m.platform.mmioRead(pba, 4) & 1).toBe(1);
    expect(m.platform.irq.poll()).toBeNull();
    bus.maskVector(msix, bars, 0, false);
    expect(m.platform.irq.poll()).toBe(0x41);
    expect(f.msixPending(0)).toBe(false);
    // function mask
    bus.write(a, msix.capOffset + 2, 2, bus.read(a, msix.capOffset + 2, 2) | 0x4000);
    expect(f.msixNotify(1)).toBe(false);
    expect(m.platform.irq.poll()).toBeNull();
    bus.write(a, msix.capOffset + 2, 2, bus.read(a, msix.capOffset + 2, 2) & ~0x4000);
    expect(m.platform.irq.poll()).toBe(0x42);
  });

  it('does nothing while MSI-X is disabled, and entries start masked', () => {
    const { f, bus, a, msix, bars, m } = live();
    expect(f.msixNotify(0)).toBe(false);
    expect(f.msixPending(0)).toBe(false);
    expect(f.msixEntryMasked(0)).toBe(true);
    bus.enableMsix(a, msix, bars, [0x41]);
    expect(f.msixEntryMasked(2)).toBe(true); // not programmed
    f.msixNotify(2);
    expect(m.platform.irq.poll()).toBeNull();
  });
});

describe('INTx', () => {
  it('asserts the routed line and the status bit; INTx-disable and MSI-X silence the pin', () => {
    const { m, f } = machineWith();
    const bus = new PciBus(m.platform);
    const a = { bus: 0, dev: f.dev, fn: 0 };
    const vector = bus.intxVector(a);
    expect(bus.read(a, Cfg.INTERRUPT_LINE, 1)).toBe(pciHost(m).gsiFor(f.dev, 1));
    f.setIntx(true);
    expect(bus.read(a, Cfg.STATUS, 2) & 0x8).toBe(0x8);
    expect(m.platform.irq.poll()).toBe(vector);
    f.setIntx(false);
    expect(bus.read(a, Cfg.STATUS, 2) & 0x8).toBe(0);
    bus.write(a, Cfg.COMMAND, 2, Cfg.CMD_INTX_DISABLE);
    f.setIntx(true);
    expect(f.intxAsserted).toBe(false);
    expect(bus.read(a, Cfg.STATUS, 2) & 0x8).toBe(0x8); // status still shows the condition
    expect(m.platform.irq.poll()).toBeNull();
    bus.write(a, Cfg.COMMAND, 2, 0);
    expect(f.intxAsserted).toBe(true);
  });

  it('shares a line between two functions (wired-OR)', () => {
    const m = new Machine();
    const host = pciHost(m);
    const f1 = host.addFunction({ name: 'a', vendorId: 1, deviceId: 1, interruptPin: 1, device: 1 });
    const f2 = host.addFunction({ name: 'b', vendorId: 1, deviceId: 2, interruptPin: 1, device: 5 });
    const line = host.irqLineFor(1, 1);
    expect(host.irqLineFor(5, 1)).toBe(line);
    f1.setIntx(true);
    f2.setIntx(true);
    f1.setIntx(false);
    expect(line.asserted).toBe(true);
    f2.setIntx(false);
    expect(line.asserted).toBe(false);
  });
});
