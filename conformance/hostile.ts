/**
 * A raw virtio-mmio driver for conformance checks: register-level access with no safety net, so a
 * check can follow the spec's steps exactly, or break them on purpose (ROBUSTNESS.md: hostile
 * drivers), and a split ring whose descriptors, available ring and indices it writes directly.
 *
 * Only GuestPlatform is used, so it drives a device on any target.
 */
import type { GuestPlatform } from '../spec-refs/platform/platform.ts';
import { Mmio, Split, Status, featureWord } from '../spec-refs/abi/virtio.ts';

export class RawMmio {
  constructor(readonly p: GuestPlatform, readonly base: number) {}

  r(off: number): number {
    return this.p.mmioRead(this.base + off, 4) >>> 0;
  }

  w(off: number, v: number): void {
    this.p.mmioWrite(this.base + off, 4, v >>> 0);
  }

  status(): number {
    return this.r(Mmio.STATUS);
  }

  setStatus(v: number): void {
    this.w(Mmio.STATUS, v);
  }

  /** Status 0 and wait (bounded) for it to read back 0. Returns whether it did. */
  reset(): boolean {
    this.w(Mmio.STATUS, 0);
    for (let i = 0; i < 1000; i++) {
      if (this.status() === 0) return true;
      this.p.spin(1000);
    }
    return false;
  }

  /** The spec's identification step: MagicValue, Version, DeviceID. */
  probe(): { magic: number; version: number; deviceId: number } {
    const magic = this.r(Mmio.MAGIC_VALUE);
    const version = this.r(Mmio.VERSION);
    const deviceId = this.r(Mmio.DEVICE_ID);
    return { magic, version, deviceId };
  }

  deviceFeatures(words = 4): bigint {
    let f = 0n;
    for (let sel = 0; sel < words; sel++) {
      this.w(Mmio.DEVICE_FEATURES_SEL, sel);
      f |= BigInt(this.r(Mmio.DEVICE_FEATURES)) << BigInt(32 * sel);
    }
    return f;
  }

  writeDriverFeatures(f: bigint, words = 4): void {
    // highest window first (see drivers/transport/mmio.ts: QEMU folds selectors above 1 onto window 1)
    for (let sel = words - 1; sel >= 0; sel--) {
      this.w(Mmio.DRIVER_FEATURES_SEL, sel);
      this.w(Mmio.DRIVER_FEATURES, featureWord(f, sel));
    }
  }

  /**
   * Reset, ACKNOWLEDGE, DRIVER, features (offered & want), FEATURES_OK. Returns the offered set,
   * what was written and whether FEATURES_OK stuck (the caller decides about DRIVER_OK).
   */
  negotiate(want: (offered: bigint) => bigint): { offered: bigint; accepted: bigint; featuresOk: boolean } {
    this.probe();
    this.reset();
    this.setStatus(Status.ACKNOWLEDGE);
    this.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
    const offered = this.deviceFeatures();
    const accepted = want(offered);
    this.writeDriverFeatures(accepted);
    this.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
    const featuresOk = (this.status() & Status.FEATURES_OK) !== 0;
    return { offered, accepted, featuresOk };
  }

  queueMax(index: number): number {
    this.w(Mmio.QUEUE_SEL, index);
    return this.r(Mmio.QUEUE_NUM_MAX);
  }

  /** Program and enable queue `index` (modern layout: three areas). */
  setupQueue(index: number, size: number, desc: number, avail: number, used: number, ready = true): void {
    this.w(Mmio.QUEUE_SEL, index);
    this.w(Mmio.QUEUE_NUM, size);
    this.w(Mmio.QUEUE_DESC_LOW, desc % 0x1_0000_0000);
    this.w(Mmio.QUEUE_DESC_HIGH, Math.floor(desc / 0x1_0000_0000));
    this.w(Mmio.QUEUE_DRIVER_LOW, avail % 0x1_0000_0000);
    this.w(Mmio.QUEUE_DRIVER_HIGH, Math.floor(avail / 0x1_0000_0000));
    this.w(Mmio.QUEUE_DEVICE_LOW, used % 0x1_0000_0000);
    this.w(Mmio.QUEUE_DEVICE_HIGH, Math.floor(used / 0x1_0000_0000));
    if (ready) this.w(Mmio.QUEUE_READY, 1);
  }

  notify(index: number): void {
    this.w(Mmio.QUEUE_NOTIFY, index);
  }

  /** Read and acknowledge InterruptStatus; returns the bits read. */
  ack(): number {
    const s = this.r(Mmio.INTERRUPT_STATUS);
    if (s) this.w(Mmio.INTERRUPT_ACK, s & 3);
    return s;
  }

  configGeneration(): number {
    return this.r(Mmio.CONFIG_GENERATION);
  }

  config8(off: number): number {
    return this.p.mmioRead(this.base + Mmio.CONFIG + off, 1);
  }

  config32(off: number): number {
    return this.p.mmioRead(this.base + Mmio.CONFIG + off, 4) >>> 0;
  }
}

export interface RawDesc {
  addr: number;
  len: number;
  flags: number;
  next: number;
}

/**
 * A split ring in guest memory that the check writes by hand. Descriptors, available entries
 * and indices are whatever the check says, valid or not.
 */
export class RawSplitRing {
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  availIdx = 0;
  usedSeen = 0;

  constructor(readonly p: GuestPlatform, readonly size: number) {
    this.desc = p.dma.alloc(16 * size, 16);
    this.avail = p.dma.alloc(6 + 2 * size, 2);
    this.used = p.dma.alloc(6 + 8 * size, 4);
  }

  setDesc(i: number, d: RawDesc): void {
    const m = this.p.mem;
    const a = this.desc + 16 * i;
    m.write32(a, d.addr % 0x1_0000_0000);
    m.write32(a + 4, Math.floor(d.addr / 0x1_0000_0000));
    m.write32(a + 8, d.len >>> 0);
    m.write16(a + 12, d.flags);
    m.write16(a + 14, d.next);
  }

  /** Write descriptors `first..` as one chain (NEXT links set between them) from the segments given. */
  chain(first: number, segs: readonly { addr: number; len: number; write?: boolean }[]): number {
    segs.forEach((s, k) => {
      const last = k === segs.length - 1;
      this.setDesc((first + k) % this.size, { addr: s.addr, len: s.len, flags: (s.write ? Split.DESC_F_WRITE : 0) | (last ? 0 : Split.DESC_F_NEXT), next: last ? 0 : (first + k + 1) % this.size });
    });
    return first;
  }

  /** Put `head` in the next available slot and publish the new idx. */
  publish(...heads: number[]): void {
    const m = this.p.mem;
    for (const h of heads) {
      m.write16(this.avail + 4 + 2 * (this.availIdx % this.size), h);
      this.availIdx = (this.availIdx + 1) & 0xffff;
    }
    m.write16(this.avail + 2, this.availIdx);
  }

  setAvailIdx(idx: number): void {
    this.availIdx = idx & 0xffff;
    this.p.mem.write16(this.avail + 2, this.availIdx);
  }

  setAvailFlags(f: number): void {
    this.p.mem.write16(this.avail, f);
  }

  usedIdx(): number {
    return this.p.mem.read16(this.used + 2);
  }

  usedFlags(): number {
    return this.p.mem.read16(this.used);
  }

  /** Used elements since the last call. */
  takeUsed(): { id: number; len: number }[] {
    const out: { id: number; len: number }[] = [];
    const idx = this.usedIdx();
    while (this.usedSeen !== idx) {
      const e = this.used + 4 + 8 * (this.usedSeen % this.size);
      out.push({ id: this.p.mem.read32(e), len: this.p.mem.read32(e + 4) });
      this.usedSeen = (this.usedSeen + 1) & 0xffff;
      if (out.length > this.size) break;
    }
    return out;
  }

  /** Let the device run until `done` or `ns` of target time pass. */
  run(done: () => boolean, ns = 5_000_000): boolean {
    const end = this.p.now() + ns;
    while (!done()) {
      if (this.p.now() >= end) return false;
      this.p.spin(10_000);
    }
    return true;
  }
}
