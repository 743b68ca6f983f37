import type { AccessSize, RegisterHandler } from './bus.ts';
import type { IrqLine } from './irq.ts';
import { MSI_ADDRESS_BASE } from './irq.ts';
import { Layout, type Machine } from './machine.ts';
import type { PciInfo } from '../../spec-refs/platform/platform.ts';
import { BusError, hex } from '../../spec-refs/errors.ts';

/**
 * A PCI host bridge for the simulated machine (conventional PCI type-0 functions on bus 0,
 * with a PCIe-style ECAM window as well).
 *
 * Configuration space is reached two ways, as on a q35 machine: configuration mechanism #1
 * (address register at port 0xCF8, data at 0xCFC..0xCFF: the first 256 bytes only), and ECAM
 * (memory-mapped, 4 KiB per function at Layout.PCI_ECAM_BASE + (bus << 20 | dev << 15 | fn << 12)).
 *
 * Each function has a type-0 header, up to six BARs (I/O, 32-bit or 64-bit memory) that firmware or
 * the driver sizes (write all ones, read the size mask back) and assigns; a BAR decodes only while
 * its space is enabled in the command register. Functions may carry a capability list; MSI-X
 * (table and PBA inside a BAR, function mask and per-vector mask, pending bits) is built in, and
 * INTx follows the interrupt pin, the command register's INTx-disable bit and the status register's
 * interrupt bit. PCI Local Bus Specification 3.0, chapter 6 (configuration space), section 6.8.2 (MSI-X).
 *
 * Nothing here throws for guest input: bad config offsets read as all ones, bad writes are dropped.
 */

export const PciCfg = {
  VENDOR_ID: 0x00,
  DEVICE_ID: 0x02,
  COMMAND: 0x04,
  STATUS: 0x06,
  REVISION: 0x08,
  PROG_IF: 0x09,
  SUBCLASS: 0x0a,
  CLASS: 0x0b,
  HEADER_TYPE: 0x0e,
  BAR0: 0x10,
  SUBSYS_VENDOR_ID: 0x2c,
  SUBSYS_ID: 0x2e,
  ROM: 0x30,
  CAP_PTR: 0x34,
  INTERRUPT_LINE: 0x3c,
  INTERRUPT_PIN: 0x3d,
  CMD_IO: 1 << 0,
  CMD_MEM: 1 << 1,
  CMD_BUS_MASTER: 1 << 2,
  CMD_INTX_DISABLE: 1 << 10,
  STATUS_INTERRUPT: 1 << 3,
  STATUS_CAP_LIST: 1 << 4,
  BAR_IO: 1,
  BAR_MEM_64: 4,
  BAR_MEM_PREFETCH: 8,
  CAP_ID_MSIX: 0x11,
  CAP_ID_VNDR: 0x09,
  MSIX_CTRL_ENABLE: 1 << 15,
  MSIX_CTRL_MASKALL: 1 << 14,
  MSIX_ENTRY_SIZE: 16,
  MSIX_ENTRY_CTRL_MASKBIT: 1,
  CONFIG_ADDRESS_PORT: 0xcf8,
  CONFIG_DATA_PORT: 0xcfc,
} as const;

export type BarKind = 'io' | 'mem32' | 'mem64';

export interface PciBarSpec {
  readonly index: number;
  readonly kind: BarKind;
  /** Power of two; at least 4 for I/O and 16 for memory (the host raises smaller sizes to that). */
  readonly size: number;
  readonly prefetchable?: boolean;
  /** The device's registers in this BAR (offsets relative to the BAR). MSI-X regions are served by the host. */
  readonly handler?: RegisterHandler;
}

export interface MsixSpec {
  /** Number of vectors (1..2048). */
  readonly vectors: number;
  readonly tableBar: number;
  readonly tableOffset: number;
  readonly pbaBar: number;
  readonly pbaOffset: number;
}

export interface PciFunctionSpec {
  readonly name: string;
  readonly vendorId: number;
  readonly deviceId: number;
  readonly revision?: number;
  /** 24-bit class code: class << 16 | subclass << 8 | prog-if. */
  readonly classCode?: number;
  readonly subsystemVendorId?: number;
  readonly subsystemId?: number;
  readonly bars?: readonly PciBarSpec[];
  /** 0: no INTx; 1..4: INTA#..INTD#. */
  readonly interruptPin?: number;
  readonly msix?: MsixSpec;
  /** Preferred device number on bus 0 (default: the next free one). */
  readonly device?: number;
  readonly function?: number;
}

/** A capability region whose reads or writes have side effects (virtio's PCI_CFG window, say). */
export interface ConfigHook {
  /** Called for reads touching [start, end); return the value, or undefined to read the stored bytes. */
  read?(offset: number, size: 1 | 2 | 4): number | undefined;
  /** Called after the writable bytes of a write touching [start, end) were stored. */
  write?(offset: number, size: 1 | 2 | 4, value: number): void;
}

interface BarState {
  readonly spec: PciBarSpec;
  readonly size: number;
  /** Assigned address (0: unassigned). */
  addr: number;
  /** Where the BAR is mapped on the bus now, or -1. */
  mappedAt: number;
}

const TWO32 = 0x1_0000_0000;

function ceilPow2(n: number, min: number): number {
  let p = min;
  while (p < n) p *= 2;
  return p;
}

/** One PCI function: its configuration space, BARs, capabilities, MSI-X and INTx. */
export class PciFunction {
  readonly cfg = new Uint8Array(4096);
  /** Per byte: which bits the driver may write (BARs, command and hooks are handled apart). */
  private readonly wmask = new Uint8Array(4096);
  private readonly view = new DataView(this.cfg.buffer);
  private readonly bars: (BarState | undefined)[] = [undefined, undefined, undefined, undefined, undefined, undefined];
  private readonly hooks: { start: number; end: number; hook: ConfigHook }[] = [];
  private capTail = 0;
  private capFree = 0x40;
  /** Offset of the MSI-X capability, or 0. */
  readonly msixCap: number = 0;
  private msixTable: Uint8Array | undefined;
  private msixTableView: DataView | undefined;
  private msixPba: Uint8Array | undefined;
  readonly msixVectors: number = 0;
  private intxLevel = false;
  private intxDriving = false;
  /** Interrupts delivered as MSI and messages dropped (masked or pending) since creation, for tests and traces. */
  msiSent = 0;
  /** Bad BAR placements the host refused to map (overlap, outside the space). */
  mapFailures = 0;

  constructor(readonly host: PciHost, readonly bus: number, readonly dev: number, readonly fn: number, readonly spec: PciFunctionSpec) {
    const v = this.view;
    v.setUint16(PciCfg.VENDOR_ID, spec.vendorId, true);
    v.setUint16(PciCfg.DEVICE_ID, spec.deviceId, true);
    this.cfg[PciCfg.REVISION] = spec.revision ?? 0;
    const cc = spec.classCode ?? 0xff0000;
    this.cfg[PciCfg.PROG_IF] = cc & 0xff;
    this.cfg[PciCfg.SUBCLASS] = (cc >> 8) & 0xff;
    this.cfg[PciCfg.CLASS] = (cc >> 16) & 0xff;
    v.setUint16(PciCfg.SUBSYS_VENDOR_ID, spec.subsystemVendorId ?? 0, true);
    v.setUint16(PciCfg.SUBSYS_ID, spec.subsystemId ?? 0, true);
    const pin = spec.interruptPin ?? 0;
    this.cfg[PciCfg.INTERRUPT_PIN] = pin;
    // Firmware routes the pin and writes the GSI into the interrupt line register.
    this.cfg[PciCfg.INTERRUPT_LINE] = pin ? host.gsiFor(dev, pin) : 0xff;
    this.wmask[PciCfg.INTERRUPT_LINE] = 0xff;
    this.wmask[0x0c] = 0xff; // cache line size
    this.wmask[0x0d] = 0xff; // latency timer
    for (const b of spec.bars ?? []) {
      const minSize = b.kind === 'io' ? 4 : 16;
      if (b.index < 0 || b.index > 5 || (b.kind === 'mem64' && b.index > 4)) {
        throw new BusError('pci.bar', `${spec.name}: bad BAR index`, { expected: '0..5 (0..4 for a 64-bit BAR)', seen: String(b.index) });
      }
      const size = ceilPow2(b.size, minSize);
      this.bars[b.index] = { spec: b, size, addr: 0, mappedAt: -1 };
      this.writeBarRegister(b.index);
    }
    if (spec.msix) {
      const m = spec.msix;
      const n = m.vectors;
      if (n < 1 || n > 2048) throw new BusError('pci.msix', `${spec.name}: MSI-X vector count`, { expected: '1..2048', seen: String(n) });
      for (const [bar, off, len] of [[m.tableBar, m.tableOffset, n * 16], [m.pbaBar, m.pbaOffset, Math.ceil(n / 64) * 8]] as const) {
        const b = this.bars[bar];
        if (!b || b.spec.kind === 'io' || off % 8 !== 0 || off + len > b.size) {
          throw new BusError('pci.msix', `${spec.name}: MSI-X structure does not fit its BAR`, { seen: `BAR${bar} +${hex(off)} len ${len}` });
        }
      }
      this.msixVectors = n;
      this.msixTable = new Uint8Array(n * 16);
      this.msixTableView = new DataView(this.msixTable.buffer);
      for (let i = 0; i < n; i++) this.msixTableView.setUint32(i * 16 + 12, PciCfg.MSIX_ENTRY_CTRL_MASKBIT, true);
      this.msixPba = new Uint8Array(Math.ceil(n / 64) * 8);
      const cap = new Uint8Array(12);
      const cv = new DataView(cap.buffer);
      cv.setUint16(2, n - 1, true);
      cv.setUint32(4, (m.tableOffset | m.tableBar) >>> 0, true);
      cv.setUint32(8, (m.pbaOffset | m.pbaBar) >>> 0, true);
      const at = this.addCapability(PciCfg.CAP_ID_MSIX, cap);
      (this as { msixCap: number }).msixCap = at;
      this.wmask[at + 3] = 0xc0; // enable and function mask
    }
  }

  get bdf(): string {
    return `${this.bus.toString(16).padStart(2, '0')}:${this.dev.toString(16).padStart(2, '0')}.${this.fn}`;
  }

  get command(): number {
    return this.view.getUint16(PciCfg.COMMAND, true);
  }

  get busMaster(): boolean {
    return (this.command & PciCfg.CMD_BUS_MASTER) !== 0;
  }

  /**
   * Append a capability (`body` from the byte after cap_next: cap_len etc. are the caller's) to the
   * list; returns its offset in config space. `writable` marks bytes of the body (offsets from the
   * capability start) the driver may write; `hook` sees accesses with side effects.
   */
  addCapability(id: number, body: Uint8Array, opts: { writable?: readonly [from: number, to: number][]; hook?: ConfigHook } = {}): number {
    const len = body.length;
    const at = (this.capFree + 3) & ~3;
    if (at + len > 0x100) throw new BusError('pci.cap', `${this.spec.name}: capability list full`, { seen: `${len} bytes at ${hex(at)}` });
    this.cfg.set(body, at);
    this.cfg[at] = id;
    this.cfg[at + 1] = 0;
    if (this.capTail === 0) this.cfg[PciCfg.CAP_PTR] = at;
    else this.cfg[this.capTail + 1] = at;
    this.capTail = at;
    this.capFree = at + len;
    this.view.setUint16(PciCfg.STATUS, this.view.getUint16(PciCfg.STATUS, true) | PciCfg.STATUS_CAP_LIST, true);
    for (const [from, to] of opts.writable ?? []) for (let i = from; i < to; i++) this.wmask[at + i] = 0xff;
    if (opts.hook) this.hooks.push({ start: at, end: at + len, hook: opts.hook });
    return at;
  }

  // ---- configuration space -------------------------------------------------------------------

  configRead(offset: number, size: 1 | 2 | 4): number {
    if (offset < 0 || offset + size > 4096 || offset % size !== 0) return size === 4 ? 0xffff_ffff : (1 << (8 * size)) - 1;
    for (const h of this.hooks) {
      if (offset < h.end && offset + size > h.start && h.hook.read) {
        const v = h.hook.read(offset, size);
        if (v !== undefined) return v >>> 0;
      }
    }
    if (size === 1) return this.cfg[offset]!;
    if (size === 2) return this.view.getUint16(offset, true);
    return this.view.getUint32(offset, true);
  }

  configWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    if (offset < 0 || offset + size > 4096 || offset % size !== 0) return;
    const oldCommand = this.command;
    const oldMsixCtrl = this.msixCap ? this.cfg[this.msixCap + 3]! : 0;
    let barTouched = -1;
    for (let i = 0; i < size; i++) {
      const off = offset + i;
      const byte = (value >>> (8 * i)) & 0xff;
      if (off >= PciCfg.BAR0 && off < PciCfg.BAR0 + 24) {
        this.cfg[off] = byte;
        barTouched = (off - PciCfg.BAR0) >> 2;
      } else if (off === PciCfg.COMMAND) {
        this.cfg[off] = byte & 0x07; // I/O, memory, bus master
      } else if (off === PciCfg.COMMAND + 1) {
        this.cfg[off] = byte & 0x04; // INTx disable
      } else {
        const m = this.wmask[off]!;
        if (m) this.cfg[off] = (this.cfg[off]! & ~m) | (byte & m);
      }
    }
    if (barTouched >= 0) this.barWritten(barTouched);
    if (this.command !== oldCommand) {
      this.remapBars();
      this.updateIntx();
      if ((this.command & PciCfg.CMD_BUS_MASTER) !== 0) this.msixDeliverPending();
    }
    if (this.msixCap && this.cfg[this.msixCap + 3] !== oldMsixCtrl) {
      this.updateIntx();
      this.msixDeliverPending();
    }
    for (const h of this.hooks) {
      if (offset < h.end && offset + size > h.start && h.hook.write) h.hook.write(offset, size, value >>> 0);
    }
  }

  // ---- BARs ----------------------------------------------------------------------------------

  private typeBits(b: BarState): number {
    if (b.spec.kind === 'io') return PciCfg.BAR_IO;
    return (b.spec.kind === 'mem64' ? PciCfg.BAR_MEM_64 : 0) | (b.spec.prefetchable ? PciCfg.BAR_MEM_PREFETCH : 0);
  }

  /** Store the BAR's current address (with its type bits) into the config bytes. */
  private writeBarRegister(i: number): void {
    const b = this.bars[i]!;
    this.view.setUint32(PciCfg.BAR0 + 4 * i, ((b.addr % TWO32) | this.typeBits(b)) >>> 0, true);
    if (b.spec.kind === 'mem64') this.view.setUint32(PciCfg.BAR0 + 4 * i + 4, Math.floor(b.addr / TWO32) >>> 0, true);
  }

  private barWritten(reg: number): void {
    // the register may be a BAR, or the upper half of a 64-bit BAR
    let i = reg;
    let b = this.bars[i];
    if (!b && i > 0 && this.bars[i - 1]?.spec.kind === 'mem64') {
      i = i - 1;
      b = this.bars[i];
    }
    if (!b) {
      this.view.setUint32(PciCfg.BAR0 + 4 * reg, 0, true); // unimplemented BAR: reads 0
      return;
    }
    const lo = this.view.getUint32(PciCfg.BAR0 + 4 * i, true);
    const typeMask = b.spec.kind === 'io' ? 0x3 : 0xf;
    if (b.spec.kind === 'mem64') {
      const hiRaw = this.view.getUint32(PciCfg.BAR0 + 4 * i + 4, true);
      // size mask: address bits below the size are hardwired to 0 (the high half is all address bits here)
      const loAddr = (lo & ~typeMask & ~(b.size - 1)) >>> 0;
      const hiMask = b.size > TWO32 ? ~(b.size / TWO32 - 1) >>> 0 : 0xffff_ffff;
      const hi = (hiRaw & hiMask) >>> 0;
      b.addr = hi * TWO32 + loAddr;
      this.view.setUint32(PciCfg.BAR0 + 4 * i, (loAddr | this.typeBits(b)) >>> 0, true);
      this.view.setUint32(PciCfg.BAR0 + 4 * i + 4, hi, true);
    } else {
      const addr = (lo & ~typeMask & ~(b.size - 1)) >>> 0;
      b.addr = addr;
      this.view.setUint32(PciCfg.BAR0 + 4 * i, (addr | this.typeBits(b)) >>> 0, true);
    }
    this.remapBar(i);
  }

  /** Address of BAR `i` as assigned (0: unassigned or no such BAR). */
  barAddress(i: number): number {
    return this.bars[i]?.addr ?? 0;
  }

  barSize(i: number): number {
    return this.bars[i]?.size ?? 0;
  }

  /** Where BAR `i` decodes now, or -1 (decoding disabled, unassigned, or the placement was refused). */
  barMappedAt(i: number): number {
    return this.bars[i]?.mappedAt ?? -1;
  }

  private remapBars(): void {
    for (let i = 0; i < 6; i++) if (this.bars[i]) this.remapBar(i);
  }

  private remapBar(i: number): void {
    const b = this.bars[i]!;
    const io = b.spec.kind === 'io';
    const space = io ? this.host.machine.bus.pio : this.host.machine.bus.mmio;
    const enabled = (this.command & (io ? PciCfg.CMD_IO : PciCfg.CMD_MEM)) !== 0;
    // An address in the sizing pattern's range or at 0 is not a placement.
    const want = enabled && b.addr !== 0 && (!io || b.addr + b.size <= 0x1_0000) ? b.addr : -1;
    if (want === b.mappedAt) return;
    if (b.mappedAt >= 0) {
      space.unmap(b.mappedAt);
      b.mappedAt = -1;
    }
    if (want < 0) return;
    try {
      space.map(want, b.size, `${this.spec.name}.bar${i}`, this.barHandler(i));
      b.mappedAt = want;
    } catch {
      // Overlaps another window or leaves the address space: the BAR stays unreachable, as on real
      // hardware where an overlapping decode is undefined. Counted for tests.
      this.mapFailures++;
    }
  }

  private readonly barHandlers: (RegisterHandler | undefined)[] = [];

  private barHandler(i: number): RegisterHandler {
    let h = this.barHandlers[i];
    if (h) return h;
    const b = this.bars[i]!;
    const dev = b.spec.handler;
    const m = this.spec.msix;
    const tStart = m && m.tableBar === i ? m.tableOffset : -1;
    const tEnd = tStart >= 0 ? tStart + this.msixVectors * 16 : -1;
    const pStart = m && m.pbaBar === i ? m.pbaOffset : -1;
    const pEnd = pStart >= 0 ? pStart + this.msixPba!.length : -1;
    h = {
      read: (off: number, size: AccessSize): number => {
        if (off >= tStart && off < tEnd) return this.msixTableRead(off - tStart, size);
        if (off >= pStart && off < pEnd) return this.msixPbaRead(off - pStart, size);
        return dev ? dev.read(off, size) : size === 1 ? 0xff : size === 2 ? 0xffff : 0xffff_ffff;
      },
      write: (off: number, size: AccessSize, value: number): void => {
        if (off >= tStart && off < tEnd) this.msixTableWrite(off - tStart, size, value);
        else if (off >= pStart && off < pEnd) return; // PBA is read-only
        else dev?.write(off, size, value);
      },
    };
    this.barHandlers[i] = h;
    return h;
  }

  // ---- MSI-X ---------------------------------------------------------------------------------

  get msixEnabled(): boolean {
    return this.msixCap !== 0 && (this.cfg[this.msixCap + 3]! & 0x80) !== 0;
  }

  get msixFunctionMasked(): boolean {
    return this.msixCap !== 0 && (this.cfg[this.msixCap + 3]! & 0x40) !== 0;
  }

  private msixTableRead(off: number, size: AccessSize): number {
    const t = this.msixTableView!;
    if (size === 8 || size === 4) return off % 4 === 0 ? t.getUint32(off, true) : 0xffff_ffff;
    if (size === 2) return off % 2 === 0 ? t.getUint16(off, true) : 0xffff;
    return this.msixTable![off]!;
  }

  private msixTableWrite(off: number, size: AccessSize, value: number): void {
    // PCI 3.0 6.8.2: table entries are accessed with aligned DWORD (or QWORD) accesses.
    if (size < 4 || off % 4 !== 0) return;
    const entry = off >> 4;
    const field = off & 15;
    const t = this.msixTableView!;
    if (field === 12) {
      t.setUint32(off, (t.getUint32(off, true) & ~1) | (value & 1), true);
      if ((value & 1) === 0) this.msixDeliverPending(entry);
    } else {
      t.setUint32(off, value >>> 0, true);
    }
  }

  private msixPbaRead(off: number, size: AccessSize): number {
    const p = this.msixPba!;
    let v = 0;
    const n = size === 8 ? 4 : size;
    for (let i = 0; i < n; i++) v |= (p[off + i] ?? 0) << (8 * i);
    return v >>> 0;
  }

  /** Whether MSI-X vector `entry` is pending (PBA bit). */
  msixPending(entry: number): boolean {
    if (!this.msixPba || entry < 0 || entry >= this.msixVectors) return false;
    return (this.msixPba[entry >> 3]! & (1 << (entry & 7))) !== 0;
  }

  msixEntryMasked(entry: number): boolean {
    return (this.msixTableView!.getUint32(entry * 16 + 12, true) & 1) !== 0;
  }

  /**
   * The device signals MSI-X table entry `entry`. Delivered as an MSI write when MSI-X is enabled,
   * neither the function nor the entry is masked and bus mastering is on; otherwise the pending bit
   * is set and the message goes out when the mask clears. Returns whether it was delivered now.
   */
  msixNotify(entry: number): boolean {
    if (!this.msixEnabled || entry < 0 || entry >= this.msixVectors) return false;
    if (this.msixFunctionMasked || this.msixEntryMasked(entry) || !this.busMaster) {
      this.msixPba![entry >> 3] = this.msixPba![entry >> 3]! | (1 << (entry & 7));
      return false;
    }
    return this.msixSend(entry);
  }

  private msixSend(entry: number): boolean {
    const t = this.msixTableView!;
    const lo = t.getUint32(entry * 16, true);
    const hi = t.getUint32(entry * 16 + 4, true);
    const data = t.getUint32(entry * 16 + 8, true);
    this.msiSent++;
    if (hi !== 0) return false; // not an interrupt address: a DMA write we do not model
    return this.host.machine.irq.msi(lo, data);
  }

  private msixDeliverPending(only?: number): void {
    if (!this.msixEnabled || this.msixFunctionMasked || !this.busMaster || !this.msixPba) return;
    const from = only ?? 0;
    const to = only === undefined ? this.msixVectors : only + 1;
    for (let e = from; e < to; e++) {
      if (!this.msixPending(e) || this.msixEntryMasked(e)) continue;
      this.msixPba[e >> 3] = this.msixPba[e >> 3]! & ~(1 << (e & 7));
      this.msixSend(e);
    }
  }

  // ---- INTx ----------------------------------------------------------------------------------

  /**
   * Set the function's INTx level (its interrupt condition). The status register's interrupt bit
   * follows it; the pin is driven unless INTx is disabled in the command register or MSI-X is on.
   */
  setIntx(level: boolean): void {
    this.intxLevel = level;
    this.updateIntx();
  }

  get intxAsserted(): boolean {
    return this.intxDriving;
  }

  private updateIntx(): void {
    const st = this.view.getUint16(PciCfg.STATUS, true);
    this.view.setUint16(PciCfg.STATUS, this.intxLevel ? st | PciCfg.STATUS_INTERRUPT : st & ~PciCfg.STATUS_INTERRUPT, true);
    const pin = this.cfg[PciCfg.INTERRUPT_PIN]!;
    const drive = pin !== 0 && this.intxLevel && (this.command & PciCfg.CMD_INTX_DISABLE) === 0 && !this.msixEnabled;
    if (drive !== this.intxDriving) {
      this.intxDriving = drive;
      this.host.driveIntx(this.dev, pin, drive);
    }
  }

  /** Function-level reset of what a device reset clears here: nothing in config space (that is the driver's). */
  unplug(): void {
    for (let i = 0; i < 6; i++) {
      const b = this.bars[i];
      if (b && b.mappedAt >= 0) {
        (b.spec.kind === 'io' ? this.host.machine.bus.pio : this.host.machine.bus.mmio).unmap(b.mappedAt);
        b.mappedAt = -1;
      }
    }
    if (this.intxDriving) this.host.driveIntx(this.dev, this.cfg[PciCfg.INTERRUPT_PIN]!, false);
  }
}

const hosts = new WeakMap<Machine, PciHost>();

/** The PCI host bridge of a machine (created and installed with machine.setPci on first use). */
export function pciHost(machine: Machine): PciHost {
  let h = hosts.get(machine);
  if (!h) {
    h = new PciHost(machine);
    hosts.set(machine, h);
  }
  return h;
}

/** The host bridge: config mechanisms, the function table, INTx routing and the facts drivers get (PciInfo). */
export class PciHost {
  private readonly functions = new Map<number, PciFunction>();
  private configAddress = 0;
  /** Functions asserting each GSI (INTx lines are shared, level-triggered, wired-OR). */
  private readonly gsiLevel = new Map<number, number>();
  readonly info: PciInfo;

  constructor(readonly machine: Machine) {
    machine.bus.pio.map(PciCfg.CONFIG_ADDRESS_PORT, 8, 'pci-cf8', {
      read: (off, size) => this.cf8Read(off, size),
      write: (off, size, v) => this.cf8Write(off, size, v),
    });
    machine.bus.mmio.map(Layout.PCI_ECAM_BASE, 256 << 20, 'pci-ecam', {
      read: (off, size) => this.ecamRead(off, size),
      write: (off, size, v) => this.ecamWrite(off, size, v),
    });
    const host = this;
    this.info = {
      ecamBase: Layout.PCI_ECAM_BASE,
      mmioWindow: { base: Layout.PCI_MMIO_BASE, size: Layout.PCI_MMIO_SIZE },
      mmio64Window: { base: Layout.PCI_MMIO64_BASE, size: Layout.PCI_MMIO64_SIZE },
      ioWindow: { base: Layout.PCI_IO_BASE, size: Layout.PCI_IO_SIZE },
      intxVector(_bus: number, dev: number, _fn: number, pin: number): number {
        return host.machine.irq.line(host.gsiFor(dev, pin)).vector;
      },
      msiMessage(vector: number): { address: number; data: number } {
        // Intel SDM Vol. 3A 11.11: destination APIC 0 in address bits 19:12, fixed delivery, edge.
        return { address: MSI_ADDRESS_BASE, data: vector & 0xff };
      },
    };
    machine.setPci(this.info);
  }

  /** q35-style swizzle: device `dev` pin A..D lands on GSI 16 + ((dev + pin - 1) mod 4). */
  gsiFor(dev: number, pin: number): number {
    return 16 + ((dev + pin - 1) & 3);
  }

  irqLineFor(dev: number, pin: number): IrqLine {
    return this.machine.irq.line(this.gsiFor(dev, pin));
  }

  /** Plug a function into bus 0 (device number: spec.device or the next free one from 1; 0 is the host bridge slot). */
  addFunction(spec: PciFunctionSpec): PciFunction {
    const fn = spec.function ?? 0;
    let dev = spec.device;
    if (dev === undefined) {
      dev = 1;
      while (dev < 32 && this.functions.has(this.key(0, dev, fn))) dev++;
    }
    if (dev < 0 || dev > 31 || fn < 0 || fn > 7 || this.functions.has(this.key(0, dev, fn))) {
      throw new BusError('pci.slot', `no free PCI slot for ${spec.name}`, { seen: `device ${dev} function ${fn}` });
    }
    const f = new PciFunction(this, 0, dev, fn, spec);
    this.functions.set(this.key(0, dev, fn), f);
    // a function other than 0 makes function 0 multi-function
    if (fn !== 0) {
      const f0 = this.functions.get(this.key(0, dev, 0));
      if (f0) f0.cfg[PciCfg.HEADER_TYPE] = f0.cfg[PciCfg.HEADER_TYPE]! | 0x80;
    }
    return f;
  }

  removeFunction(f: PciFunction): void {
    f.unplug();
    this.functions.delete(this.key(f.bus, f.dev, f.fn));
  }

  function(bus: number, dev: number, fn: number): PciFunction | undefined {
    return this.functions.get(this.key(bus, dev, fn));
  }

  all(): PciFunction[] {
    return [...this.functions.values()];
  }

  driveIntx(dev: number, pin: number, level: boolean): void {
    const gsi = this.gsiFor(dev, pin);
    const n = (this.gsiLevel.get(gsi) ?? 0) + (level ? 1 : -1);
    this.gsiLevel.set(gsi, Math.max(0, n));
    this.machine.irq.line(gsi).set(n > 0);
  }

  private key(bus: number, dev: number, fn: number): number {
    return (bus << 8) | (dev << 3) | fn;
  }

  private read(bus: number, dev: number, fn: number, reg: number, size: 1 | 2 | 4): number {
    const f = this.functions.get(this.key(bus, dev, fn));
    if (!f) return size === 4 ? 0xffff_ffff : (1 << (8 * size)) - 1;
    return f.configRead(reg, size);
  }

  private write(bus: number, dev: number, fn: number, reg: number, size: 1 | 2 | 4, value: number): void {
    this.functions.get(this.key(bus, dev, fn))?.configWrite(reg, size, value);
  }

  // mechanism #1: 0xCF8 = enable(31) | bus(23:16) | dev(15:11) | fn(10:8) | reg(7:2)
  private cf8Read(off: number, size: AccessSize): number {
    if (off < 4) return off === 0 && size === 4 ? this.configAddress >>> 0 : 0xffff_ffff >>> (32 - 8 * Math.min(size, 4));
    const a = this.configAddress;
    const sz = (size === 8 ? 4 : size) as 1 | 2 | 4;
    if ((a & 0x8000_0000) === 0 || off - 4 + sz > 4) return sz === 4 ? 0xffff_ffff : (1 << (8 * sz)) - 1;
    return this.read((a >>> 16) & 0xff, (a >>> 11) & 0x1f, (a >>> 8) & 7, (a & 0xfc) + (off - 4), sz);
  }

  private cf8Write(off: number, size: AccessSize, value: number): void {
    if (off < 4) {
      if (off === 0 && size === 4) this.configAddress = (value & 0x80ff_fffc) >>> 0;
      return;
    }
    const a = this.configAddress;
    const sz = (size === 8 ? 4 : size) as 1 | 2 | 4;
    if ((a & 0x8000_0000) === 0 || off - 4 + sz > 4) return;
    this.write((a >>> 16) & 0xff, (a >>> 11) & 0x1f, (a >>> 8) & 7, (a & 0xfc) + (off - 4), sz, value);
  }

  private ecamRead(off: number, size: AccessSize): number {
    const sz = (size === 8 ? 4 : size) as 1 | 2 | 4;
    return this.read(off >>> 20, (off >>> 15) & 0x1f, (off >>> 12) & 7, off & 0xfff, sz);
  }

  private ecamWrite(off: number, size: AccessSize, value: number): void {
    const sz = (size === 8 ? 4 : size) as 1 | 2 | 4;
    this.write(off >>> 20, (off >>> 15) & 0x1f, (off >>> 12) & 7, off & 0xfff, sz, value);
  }
}
