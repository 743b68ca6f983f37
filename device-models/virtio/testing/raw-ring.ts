/**
 * A hostile (or merely hand-written) driver for device-side tests: it programs a VirtioCore
 * directly and writes split-ring descriptors, available entries and indices into guest memory
 * byte by byte, so tests can build any chain, valid or not.
 */
import type { GuestMemory } from '../../machine/memory.ts';
import { Machine } from '../../machine/machine.ts';
import { VirtioCore } from '../core.ts';
import { attachVirtioMmio, type AttachedMmio } from '../mmio.ts';
import { EchoModel, type EchoOptions } from './echo.ts';
import { F, Split, Status, featureSet, featureWord } from '../../../spec-refs/abi/virtio.ts';
import { splitAreaSizes } from '../split-queue.ts';

export const D_NEXT = Split.DESC_F_NEXT;
export const D_WRITE = Split.DESC_F_WRITE;
export const D_INDIRECT = Split.DESC_F_INDIRECT;

export class RawSplitRing {
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  availIdx = 0;
  constructor(readonly mem: GuestMemory, base: number, readonly size: number) {
    const s = splitAreaSizes(size);
    this.desc = base;
    this.avail = base + s.desc;
    this.used = Math.ceil((this.avail + s.avail) / 4) * 4;
  }

  get end(): number {
    return this.used + splitAreaSizes(this.size).used;
  }

  /** Write descriptor `i` of the table at `table` (default: the ring's own table). */
  setDesc(i: number, addr: number, len: number, flags = 0, next = 0, table = this.desc): void {
    const o = table + 16 * i;
    this.mem.write32(o, addr % 0x1_0000_0000);
    this.mem.write32(o + 4, Math.floor(addr / 0x1_0000_0000));
    this.mem.write32(o + 8, len);
    this.mem.write16(o + 12, flags);
    this.mem.write16(o + 14, next);
  }

  /** Put heads in the available ring and publish the new idx. */
  publish(...heads: number[]): void {
    for (const h of heads) {
      this.mem.write16(this.avail + 4 + 2 * (this.availIdx % this.size), h);
      this.availIdx = (this.availIdx + 1) & 0xffff;
    }
    this.mem.write16(this.avail + 2, this.availIdx);
  }

  setAvailIdx(v: number): void {
    this.availIdx = v & 0xffff;
    this.mem.write16(this.avail + 2, this.availIdx);
  }

  setAvailFlags(v: number): void {
    this.mem.write16(this.avail, v);
  }

  setUsedEvent(v: number): void {
    this.mem.write16(this.avail + 4 + 2 * this.size, v);
  }

  get usedIdx(): number {
    return this.mem.read16(this.used + 2);
  }

  get usedFlags(): number {
    return this.mem.read16(this.used);
  }

  get availEvent(): number {
    return this.mem.read16(this.used + 4 + 8 * this.size);
  }

  usedElem(k: number): { id: number; len: number } {
    const o = this.used + 4 + 8 * (k % this.size);
    return { id: this.mem.read32(o), len: this.mem.read32(o + 4) };
  }
}

/** Default RAM of rawSetup: 8 MiB low, a hole, 1 MiB at 4 GiB (small, so tests stay fast). */
export const RAW_RAM = [
  { base: 0, size: 8 << 20, name: 'ram-low' },
  { base: 0x1_0000_0000, size: 1 << 20, name: 'ram-high' },
];

export interface RawSetup {
  m: Machine;
  model: EchoModel;
  core: VirtioCore;
  dev: AttachedMmio;
  ring: RawSplitRing;
  /** Notify queue 0 and let the device run. */
  kick(q?: number): void;
}

export interface RawOptions extends EchoOptions {
  size?: number;
  indirect?: boolean;
  eventIdx?: boolean;
  machine?: Machine;
  /** Where the ring goes (default 0x10000). */
  ringBase?: number;
}

/** A machine with an echo device driven to DRIVER_OK by hand, with queue 0 at `ringBase`. */
export function rawSetup(o: RawOptions = {}): RawSetup {
  const m = o.machine ?? new Machine({ ram: RAW_RAM });
  const model = new EchoModel({ queueMaxSize: 32768, ...o });
  const dev = attachVirtioMmio(m, model, { notifyLatencyNs: 100 });
  const core = dev.core;
  const size = o.size ?? 8;
  const ring = new RawSplitRing(m.mem, o.ringBase ?? 0x10000, size);
  m.mem.fill(ring.desc, ring.end - ring.desc, 0);
  const feats = featureSet(F.VERSION_1, ...(o.indirect ?? true ? [F.INDIRECT_DESC] : []), ...(o.eventIdx ? [F.EVENT_IDX] : []));
  core.writeStatus(Status.ACKNOWLEDGE);
  core.writeStatus(Status.ACKNOWLEDGE | Status.DRIVER);
  core.writeDriverFeatureWord(0, featureWord(feats, 0));
  core.writeDriverFeatureWord(1, featureWord(feats, 1));
  core.writeStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
  core.setQueueSize(0, size);
  core.setQueueArea(0, 'desc', ring.desc);
  core.setQueueArea(0, 'driver', ring.avail);
  core.setQueueArea(0, 'device', ring.used);
  core.setQueueReady(0, true);
  core.writeStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
  return {
    m,
    model,
    core,
    dev,
    ring,
    kick(q = 0) {
      core.notify(q);
      m.scheduler.runFor(1_000_000);
    },
  };
}
