/**
 * Driver-side PCI helper: configuration access, enumeration, BAR sizing and assignment, the
 * capability walk and MSI-X programming. It touches the machine only through the GuestPlatform
 * (port I/O at 0xCF8/0xCFC or ECAM through MMIO), like a guest kernel's PCI core, and it does not
 * trust what the device presents: capability pointers are bounded and loop-checked, BAR sizes
 * must be powers of two that fit their window.
 */
import type { GuestPlatform } from '../../spec-refs/platform/platform.ts';
import { DeviceMisbehaviourError, UsageError, hex } from '../../spec-refs/errors.ts';

export const Cfg = {
  VENDOR_ID: 0x00,
  DEVICE_ID: 0x02,
  COMMAND: 0x04,
  STATUS: 0x06,
  REVISION: 0x08,
  CLASS: 0x09,
  HEADER_TYPE: 0x0e,
  BAR0: 0x10,
  SUBSYS_VENDOR_ID: 0x2c,
  SUBSYS_ID: 0x2e,
  CAP_PTR: 0x34,
  INTERRUPT_LINE: 0x3c,
  INTERRUPT_PIN: 0x3d,
  CMD_IO: 1,
  CMD_MEM: 2,
  CMD_BUS_MASTER: 4,
  CMD_INTX_DISABLE: 1 << 10,
  STATUS_CAP_LIST: 1 << 4,
  CAP_ID_MSIX: 0x11,
  CAP_ID_VNDR: 0x09,
} as const;

export interface PciAddress {
  readonly bus: number;
  readonly dev: number;
  readonly fn: number;
}

export interface PciDeviceInfo extends PciAddress {
  readonly vendorId: number;
  readonly deviceId: number;
  readonly revision: number;
  readonly classCode: number;
  readonly subsystemVendorId: number;
  readonly subsystemId: number;
  readonly headerType: number;
  readonly interruptPin: number;
}

export interface BarInfo {
  readonly index: number;
  readonly kind: 'io' | 'mem32' | 'mem64';
  readonly size: number;
  readonly prefetchable: boolean;
  /** Assigned base (after assignBars), else what the register held. */
  addr: number;
}

export interface PciCapability {
  readonly id: number;
  readonly offset: number;
}

export interface MsixInfo {
  readonly capOffset: number;
  readonly tableSize: number;
  readonly tableBar: number;
  readonly tableOffset: number;
  readonly pbaBar: number;
  readonly pbaOffset: number;
}

/** The longest capability list a 256-byte config space can hold (4-byte aligned, at 0x40 or above). */
const MAX_CAPS = 48;

/** Bump allocator over one window, aligned to each BAR's size (natural alignment). */
class WindowAllocator {
  private next: number;
  constructor(readonly base: number, readonly size: number) {
    this.next = base;
  }
  alloc(size: number): number | undefined {
    const at = Math.ceil(this.next / size) * size;
    if (at + size > this.base + this.size) return undefined;
    this.next = at + size;
    return at;
  }
}

export class PciBus {
  private readonly useEcam: boolean;
  private readonly ecamBase: number;
  private readonly mmio: WindowAllocator;
  private readonly mmio64: WindowAllocator | undefined;
  private readonly io: WindowAllocator;
  private nextVector = 0x40;

  constructor(readonly platform: GuestPlatform, opts: { mechanism?: 'ecam' | 'cf8' } = {}) {
    const info = platform.pci;
    if (!info) throw new UsageError('pci.absent', 'the platform has no PCI bus');
    this.useEcam = (opts.mechanism ?? (info.ecamBase !== undefined ? 'ecam' : 'cf8')) === 'ecam' && info.ecamBase !== undefined;
    this.ecamBase = info.ecamBase ?? 0;
    this.mmio = new WindowAllocator(info.mmioWindow.base, info.mmioWindow.size);
    this.mmio64 = info.mmio64Window ? new WindowAllocator(info.mmio64Window.base, info.mmio64Window.size) : undefined;
    this.io = new WindowAllocator(info.ioWindow.base, info.ioWindow.size);
  }

  get mechanism(): 'ecam' | 'cf8' {
    return this.useEcam ? 'ecam' : 'cf8';
  }

  // ---- configuration access ------------------------------------------------------------------

  read(a: PciAddress, off: number, size: 1 | 2 | 4): number {
    if (off % size !== 0 || off < 0 || off + size > (this.useEcam ? 4096 : 256)) throw new UsageError('pci.cfg', 'misaligned or out-of-range config access', { seen: `${hex(off)}/${size}` });
    if (this.useEcam) return this.platform.mmioRead(this.ecamBase + ((a.bus << 20) | (a.dev << 15) | (a.fn << 12) | off), size);
    this.platform.pioWrite(0xcf8, 4, (0x8000_0000 | (a.bus << 16) | (a.dev << 11) | (a.fn << 8) | (off & 0xfc)) >>> 0);
    return this.platform.pioRead(0xcfc + (off & 3), size);
  }

  write(a: PciAddress, off: number, size: 1 | 2 | 4, value: number): void {
    if (off % size !== 0 || off < 0 || off + size > (this.useEcam ? 4096 : 256)) throw new UsageError('pci.cfg', 'misaligned or out-of-range config access', { seen: `${hex(off)}/${size}` });
    if (this.useEcam) {
      this.platform.mmioWrite(this.ecamBase + ((a.bus << 20) | (a.dev << 15) | (a.fn << 12) | off), size, value);
      return;
    }
    this.platform.pioWrite(0xcf8, 4, (0x8000_0000 | (a.bus << 16) | (a.dev << 11) | (a.fn << 8) | (off & 0xfc)) >>> 0);
    this.platform.pioWrite(0xcfc + (off & 3), size, value);
  }

  // ---- enumeration -----------------------------------------------------------------------------

  /** Every function on bus 0 (functions 1..7 only behind a multi-function device). */
  enumerate(): PciDeviceInfo[] {
    const out: PciDeviceInfo[] = [];
    for (let dev = 0; dev < 32; dev++) {
      for (let fn = 0; fn < 8; fn++) {
        const a = { bus: 0, dev, fn };
        const vendor = this.read(a, Cfg.VENDOR_ID, 2);
        if (vendor === 0xffff) {
          if (fn === 0) break;
          continue;
        }
        const header = this.read(a, Cfg.HEADER_TYPE, 1);
        out.push({
          ...a,
          vendorId: vendor,
          deviceId: this.read(a, Cfg.DEVICE_ID, 2),
          revision: this.read(a, Cfg.REVISION, 1),
          classCode: this.read(a, Cfg.REVISION, 4) >>> 8,
          subsystemVendorId: this.read(a, Cfg.SUBSYS_VENDOR_ID, 2),
          subsystemId: this.read(a, Cfg.SUBSYS_ID, 2),
          headerType: header,
          interruptPin: this.read(a, Cfg.INTERRUPT_PIN, 1),
        });
        if (fn === 0 && (header & 0x80) === 0) break;
      }
    }
    return out;
  }

  // ---- BARs ------------------------------------------------------------------------------------

  /** Size every BAR (decoding off meanwhile, restored after): write all ones, read the mask back. */
  sizeBars(a: PciAddress): BarInfo[] {
    const cmd = this.read(a, Cfg.COMMAND, 2);
    this.write(a, Cfg.COMMAND, 2, cmd & ~(Cfg.CMD_IO | Cfg.CMD_MEM));
    const bars: BarInfo[] = [];
    try {
      for (let i = 0; i < 6; i++) {
        const reg = Cfg.BAR0 + 4 * i;
        const orig = this.read(a, reg, 4);
        this.write(a, reg, 4, 0xffff_ffff);
        const mask = this.read(a, reg, 4);
        this.write(a, reg, 4, orig);
        if (mask === 0) continue;
        if (orig & 1) {
          const size = (~(mask & 0xffff_fffc) & 0xffff) + 1; // 16-bit I/O decode
          if (!isPow2(size)) throw new DeviceMisbehaviourError('pci.bar', `BAR${i} size is not a power of two`, { seen: hex(mask) });
          bars.push({ index: i, kind: 'io', size, prefetchable: false, addr: orig & 0xffff_fffc });
          continue;
        }
        const is64 = (orig & 0x6) === 0x4;
        let size: number;
        let addr = (orig & 0xffff_fff0) >>> 0;
        if (is64) {
          if (i === 5) throw new DeviceMisbehaviourError('pci.bar', 'a 64-bit BAR in the last slot', { seen: 'BAR5' });
          const origHi = this.read(a, reg + 4, 4);
          this.write(a, reg + 4, 4, 0xffff_ffff);
          const maskHi = this.read(a, reg + 4, 4);
          this.write(a, reg + 4, 4, origHi);
          const lo = (mask & 0xffff_fff0) >>> 0;
          size = lo !== 0 ? (~lo >>> 0) + 1 : ((~maskHi >>> 0) + 1) * 0x1_0000_0000;
          addr += origHi * 0x1_0000_0000;
        } else {
          size = (~(mask & 0xffff_fff0) >>> 0) + 1;
        }
        if (!isPow2(size)) throw new DeviceMisbehaviourError('pci.bar', `BAR${i} size is not a power of two`, { seen: hex(mask) });
        bars.push({ index: i, kind: is64 ? 'mem64' : 'mem32', size, prefetchable: (orig & 8) !== 0, addr });
        if (is64) i++;
      }
    } finally {
      this.write(a, Cfg.COMMAND, 2, cmd);
    }
    return bars;
  }

  /**
   * Size and assign every BAR from the platform's windows (64-bit BARs from the 64-bit window when
   * there is one), then enable I/O and memory decoding and bus mastering.
   */
  assignBars(a: PciAddress, opts: { mem64Above4G?: boolean } = {}): BarInfo[] {
    const bars = this.sizeBars(a);
    this.write(a, Cfg.COMMAND, 2, this.read(a, Cfg.COMMAND, 2) & ~(Cfg.CMD_IO | Cfg.CMD_MEM));
    for (const b of bars) {
      const win = b.kind === 'io' ? this.io : b.kind === 'mem64' && (opts.mem64Above4G ?? true) && this.mmio64 ? this.mmio64 : this.mmio;
      const at = win.alloc(b.size);
      if (at === undefined) throw new UsageError('pci.window', `no room for BAR${b.index} of ${hex(b.size)} bytes`, { seen: `window ${hex(win.base)}+${hex(win.size)}` });
      b.addr = at;
      const reg = Cfg.BAR0 + 4 * b.index;
      this.write(a, reg, 4, (at % 0x1_0000_0000) >>> 0);
      if (b.kind === 'mem64') this.write(a, reg + 4, 4, Math.floor(at / 0x1_0000_0000));
    }
    const io = bars.some((b) => b.kind === 'io') ? Cfg.CMD_IO : 0;
    const mem = bars.some((b) => b.kind !== 'io') ? Cfg.CMD_MEM : 0;
    this.write(a, Cfg.COMMAND, 2, this.read(a, Cfg.COMMAND, 2) | io | mem | Cfg.CMD_BUS_MASTER);
    return bars;
  }

  // ---- capabilities ------------------------------------------------------------------------------

  /**
   * Walk the capability list: pointers below 0x40 end it, low two bits are ignored (PCI 3.0
   * 6.7), and a list longer than fits in config space is a loop (DeviceMisbehaviourError).
   */
  capabilities(a: PciAddress): PciCapability[] {
    if ((this.read(a, Cfg.STATUS, 2) & Cfg.STATUS_CAP_LIST) === 0) return [];
    const out: PciCapability[] = [];
    const seen = new Set<number>();
    let ptr = this.read(a, Cfg.CAP_PTR, 1) & 0xfc;
    while (ptr >= 0x40) {
      if (seen.has(ptr) || out.length >= MAX_CAPS) throw new DeviceMisbehaviourError('pci.cap_loop', 'capability list loops', { expected: `at most ${MAX_CAPS} distinct capabilities`, seen: `pointer ${hex(ptr)} again` });
      seen.add(ptr);
      const hdr = this.read(a, ptr, 2);
      out.push({ id: hdr & 0xff, offset: ptr });
      ptr = (hdr >> 8) & 0xfc;
    }
    return out;
  }

  msix(a: PciAddress): MsixInfo | undefined {
    const cap = this.capabilities(a).find((c) => c.id === Cfg.CAP_ID_MSIX);
    if (!cap) return undefined;
    const ctrl = this.read(a, cap.offset + 2, 2);
    const table = this.read(a, cap.offset + 4, 4);
    const pba = this.read(a, cap.offset + 8, 4);
    return { capOffset: cap.offset, tableSize: (ctrl & 0x7ff) + 1, tableBar: table & 7, tableOffset: (table & ~7) >>> 0, pbaBar: pba & 7, pbaOffset: (pba & ~7) >>> 0 };
  }

  /** A CPU vector for an MSI-X entry (vectors 0x40..0xEF, handed out once). */
  allocVector(): number {
    if (this.nextVector > 0xef) throw new UsageError('pci.vectors', 'out of interrupt vectors');
    return this.nextVector++;
  }

  /**
   * Program MSI-X: table entry i gets the message for `vectors[i]` and is unmasked; then MSI-X is
   * enabled (with the function mask held during programming, as Linux does). INTx is disabled.
   */
  enableMsix(a: PciAddress, msix: MsixInfo, bars: readonly BarInfo[], vectors: readonly number[]): void {
    if (vectors.length > msix.tableSize) throw new UsageError('pci.msix', 'more vectors than the MSI-X table holds', { expected: `<= ${msix.tableSize}`, seen: String(vectors.length) });
    const tbar = bars.find((b) => b.index === msix.tableBar);
    if (!tbar || tbar.kind === 'io' || msix.tableOffset + msix.tableSize * 16 > tbar.size) {
      throw new DeviceMisbehaviourError('pci.msix', 'MSI-X table outside its BAR', { seen: `BAR${msix.tableBar}+${hex(msix.tableOffset)}` });
    }
    const ctrlOff = msix.capOffset + 2;
    const ctrl = this.read(a, ctrlOff, 2);
    this.write(a, ctrlOff, 2, (ctrl | 0xc000) & 0xffff); // enable + function mask
    const info = this.platform.pci!;
    for (let i = 0; i < vectors.length; i++) {
      const e = tbar.addr + msix.tableOffset + 16 * i;
      const m = info.msiMessage(vectors[i]!);
      this.platform.mmioWrite(e, 4, m.address);
      this.platform.mmioWrite(e + 4, 4, 0);
      this.platform.mmioWrite(e + 8, 4, m.data);
      this.platform.mmioWrite(e + 12, 4, 0);
    }
    this.write(a, Cfg.COMMAND, 2, this.read(a, Cfg.COMMAND, 2) | Cfg.CMD_INTX_DISABLE);
    this.write(a, ctrlOff, 2, ((ctrl | 0x8000) & ~0x4000) & 0xffff);
  }

  disableMsix(a: PciAddress, msix: MsixInfo): void {
    const ctrlOff = msix.capOffset + 2;
    this.write(a, ctrlOff, 2, this.read(a, ctrlOff, 2) & ~0xc000);
    this.write(a, Cfg.COMMAND, 2, this.read(a, Cfg.COMMAND, 2) & ~Cfg.CMD_INTX_DISABLE);
  }

  /** Per-vector mask bit of MSI-X table entry `entry`. */
  maskVector(msix: MsixInfo, bars: readonly BarInfo[], entry: number, masked: boolean): void {
    const tbar = bars.find((b) => b.index === msix.tableBar)!;
    this.platform.mmioWrite(tbar.addr + msix.tableOffset + 16 * entry + 12, 4, masked ? 1 : 0);
  }

  /** The vector INTx of this function is routed to. */
  intxVector(a: PciAddress): number {
    const pin = this.read(a, Cfg.INTERRUPT_PIN, 1);
    if (pin < 1 || pin > 4) throw new DeviceMisbehaviourError('pci.intx', 'function has no INTx pin', { seen: String(pin) });
    return this.platform.pci!.intxVector(a.bus, a.dev, a.fn, pin);
  }
}

function isPow2(n: number): boolean {
  return n > 0 && Number.isSafeInteger(n) && Number.isInteger(Math.log2(n));
}
