import { BusError, hex } from '../../spec-refs/errors.ts';

export type AccessSize = 1 | 2 | 4 | 8;

/** A device's register window. Offsets are relative to the window's base. Never throws for guest input. */
export interface RegisterHandler {
  read(offset: number, size: AccessSize): number;
  write(offset: number, size: AccessSize, value: number): void;
}

export interface BusAccess {
  readonly space: 'mmio' | 'pio';
  readonly kind: 'read' | 'write';
  readonly addr: number;
  readonly size: AccessSize;
  readonly value: number;
  /** Name of the window that decoded the access ('' when none did). */
  readonly window: string;
  readonly offset: number;
}

export type BusListener = (a: BusAccess) => void;

interface Window {
  readonly base: number;
  readonly size: number;
  readonly end: number;
  readonly name: string;
  readonly handler: RegisterHandler;
}

const ALL_ONES: Record<AccessSize, number> = { 1: 0xff, 2: 0xffff, 4: 0xffff_ffff, 8: 0xffff_ffff };

/** One address space of register windows (MMIO, or port I/O). Unclaimed reads return all ones, writes are dropped. */
export class AddressSpace {
  private windows: Window[] = [];
  private lastHit: Window | undefined;
  constructor(readonly space: 'mmio' | 'pio', private readonly limit: number, private readonly listeners: BusListener[]) {}

  map(base: number, size: number, name: string, handler: RegisterHandler): void {
    if (size <= 0 || base < 0 || base + size > this.limit) {
      throw new BusError('bus.map', `cannot map ${name}`, { expected: `a window inside 0..${hex(this.limit)}`, seen: `${hex(base)}+${hex(size)}` });
    }
    const clash = this.windows.find((w) => base < w.end && w.base < base + size);
    if (clash) throw new BusError('bus.map', `${name} overlaps ${clash.name}`, { seen: `${hex(base)}+${hex(size)} vs ${hex(clash.base)}+${hex(clash.size)}` });
    this.windows.push({ base, size, end: base + size, name, handler });
    this.windows.sort((a, b) => a.base - b.base);
  }

  unmap(base: number): void {
    this.windows = this.windows.filter((w) => w.base !== base);
    this.lastHit = undefined;
  }

  find(addr: number): Window | undefined {
    const l = this.lastHit;
    if (l && addr >= l.base && addr < l.end) return l;
    for (const w of this.windows) {
      if (addr >= w.base && addr < w.end) {
        this.lastHit = w;
        return w;
      }
    }
    return undefined;
  }

  isClaimed(addr: number): boolean {
    return this.find(addr) !== undefined;
  }

  read(addr: number, size: AccessSize): number {
    const w = this.find(addr);
    let value: number;
    if (w && addr + size <= w.end) value = w.handler.read(addr - w.base, size);
    else value = ALL_ONES[size];
    if (this.listeners.length) this.notify('read', addr, size, value, w);
    return value;
  }

  write(addr: number, size: AccessSize, value: number): void {
    const w = this.find(addr);
    if (w && addr + size <= w.end) w.handler.write(addr - w.base, size, value);
    if (this.listeners.length) this.notify('write', addr, size, value, w);
  }

  private notify(kind: 'read' | 'write', addr: number, size: AccessSize, value: number, w: Window | undefined): void {
    const a: BusAccess = { space: this.space, kind, addr, size, value, window: w?.name ?? '', offset: w ? addr - w.base : 0 };
    for (const l of this.listeners) l(a);
  }
}

/** The machine's bus: an MMIO space (below 2^52) and a 64 KiB port space, with observers. */
export class Bus {
  private readonly listeners: BusListener[] = [];
  readonly mmio = new AddressSpace('mmio', 2 ** 52, this.listeners);
  readonly pio = new AddressSpace('pio', 0x1_0000, this.listeners);

  /** Observe every access (the conformance monitor, traces). */
  addListener(l: BusListener): () => void {
    this.listeners.push(l);
    return () => {
      const i = this.listeners.indexOf(l);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }
}
