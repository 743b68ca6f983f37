/**
 * Packed virtqueues (packed-ring.tex): the device takes buffers in ring order, uses list elements
 * in order, writes used descriptors in order and only there, and ignores descriptors not made
 * available; the driver lays out lists, indirect tables, flags and notifications as the spec asks
 * and never touches a descriptor the device owns.
 *
 * Device-side checks drive a raw packed ring over the reference transport (mmio or pci).
 * Driver-side checks run pvkit's blk driver on a packed ring while a ring observer re-parses every
 * list the driver makes available (just before the device takes it) and a logging view of guest
 * memory records the order of the driver's stores.
 */
import fc from 'fast-check';
import type { GuestMemoryAccess, GuestPlatform } from '../../spec-refs/platform/platform.ts';
import type { VirtioTransport } from '../../drivers/transport/transport.ts';
import { VirtioBlkDriver } from '../../drivers/blk/driver.ts';
import type { VirtioCore, CoreQueue } from '../../device-models/virtio/core.ts';
import type { Chain } from '../../device-models/virtio/model.ts';
import { Blk, F, Packed, Status, bit, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { CheckFailure, CheckSkip, checkProperty, defineCheck, expectEqual, expectThat } from '../check.ts';
import type { DeviceUnderTest, TargetContext } from '../target.ts';
import { requestQueue, validRequestOnQueue, type Seg } from './requests.ts';
import { transportOf } from './support.ts';

const MODERN = ['mmio', 'pci'] as const;
const A = Packed.DESC_F_AVAIL;
const U = Packed.DESC_F_USED;

// ---------------------------------------------------------------------------- a raw packed driver

class RawPacked {
  readonly desc: number;
  readonly driver: number;
  readonly device: number;
  next = 0;
  wrap = 1;
  usedNext = 0;
  usedWrap = 1;
  constructor(readonly p: GuestPlatform, readonly size: number) {
    this.desc = p.dma.alloc(16 * size, 16);
    this.driver = p.dma.alloc(4, 4);
    this.device = p.dma.alloc(4, 4);
  }
  writeDesc(i: number, s: Seg, id: number, flags: number): void {
    const m = this.p.mem;
    const a = this.desc + 16 * i;
    m.write32(a, s.addr % 0x1_0000_0000);
    m.write32(a + 4, Math.floor(s.addr / 0x1_0000_0000));
    m.write32(a + 8, s.len);
    m.write16(a + 12, id);
    m.write16(a + 14, flags);
  }
  /** Make `segs` available as one list with buffer id `id`; `avail` false writes the wrong wrap bits. Returns its first slot. */
  put(segs: readonly Seg[], id: number, avail = true): number {
    const first = this.next;
    let pos = this.next;
    let wrap = this.wrap;
    const flagsAt: number[] = [];
    segs.forEach((s, k) => {
      const bits = avail ? (wrap ? A : U) : wrap ? U : A;
      const f = (s.write ? Packed.DESC_F_WRITE : 0) | (k < segs.length - 1 ? Packed.DESC_F_NEXT : 0) | bits;
      this.writeDesc(pos, s, id, k === 0 ? 0 : f);
      flagsAt.push(f);
      if (++pos === this.size) {
        pos = 0;
        wrap ^= 1;
      }
    });
    this.p.mem.write16(this.desc + 16 * first + 14, flagsAt[0]!);
    this.next = pos;
    this.wrap = wrap;
    return first;
  }
  /** The next used descriptor, or null. */
  takeUsed(): { id: number; len: number; slot: number } | null {
    const a = this.desc + 16 * this.usedNext;
    const f = this.p.mem.read16(a + 14);
    const av = f & A ? 1 : 0;
    const us = f & U ? 1 : 0;
    if (av !== this.usedWrap || us !== this.usedWrap) return null;
    return { id: this.p.mem.read16(a + 12), len: this.p.mem.read32(a + 8), slot: this.usedNext };
  }
  skip(slots: number): void {
    this.usedNext += slots;
    if (this.usedNext >= this.size) {
      this.usedNext -= this.size;
      this.usedWrap ^= 1;
    }
  }
}

interface LivePacked {
  dut: DeviceUnderTest;
  t: VirtioTransport;
  ring: RawPacked;
  deviceType: number;
  /** The queue requests go on (virtio-net: transmitq1; others: 0), see requests.ts. */
  q: number;
}

function livePacked(ctx: TargetContext, size = 16): LivePacked {
  const dut = ctx.newDevice({ extraFeatures: bit(F.RING_PACKED) });
  const t = transportOf(dut);
  if (t.legacy) throw new CheckSkip('packed rings need a modern interface');
  t.reset();
  t.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
  const off = t.deviceFeatures();
  if (!hasFeature(off, F.RING_PACKED)) throw new CheckSkip('device does not offer VIRTIO_F_RING_PACKED');
  t.setDriverFeatures(bit(F.VERSION_1) | bit(F.RING_PACKED));
  t.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
  if (!(t.getStatus() & Status.FEATURES_OK)) throw new CheckFailure('device refused RING_PACKED it offered', { statements: ['features.device.2'] });
  const ring = new RawPacked(dut.platform, size);
  const q = requestQueue(t.deviceType);
  t.setupQueue(q, { size, desc: ring.desc, driver: ring.driver, device: ring.device });
  t.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
  return { dut, t, ring, deviceType: t.deviceType, q };
}

function run(p: GuestPlatform, done: () => boolean, ns = 5_000_000): boolean {
  for (let t = 0; t < ns && !done(); t += 5_000) p.spin(5_000);
  return done();
}

function coreOf(dut: DeviceUnderTest): VirtioCore {
  const c = dut.internals?.['core'] as VirtioCore | undefined;
  if (!c) throw new CheckSkip('needs a simulated device (white-box)');
  return c;
}

/** A blk write of `data` at sector 0 split over `pieces` descriptors (header, data pieces, status). */
function blkWrite(p: GuestPlatform, data: Uint8Array, pieces: number): { segs: Seg[]; status: number } {
  const hdr = p.dma.alloc(16, 16);
  p.mem.write32(hdr, Blk.T_OUT);
  p.mem.write32(hdr + 8, 0);
  const buf = p.dma.alloc(data.length, 512);
  p.mem.writeBytes(buf, data);
  const st = p.dma.alloc(1, 1);
  p.mem.write8(st, 0xff);
  const segs: Seg[] = [{ addr: hdr, len: 16 }];
  const per = Math.ceil(data.length / pieces);
  for (let o = 0; o < data.length; o += per) segs.push({ addr: buf + o, len: Math.min(per, data.length - o) });
  segs.push({ addr: st, len: 1, write: true });
  return { segs, status: st };
}

function blkRead(p: GuestPlatform, bytes: number): { segs: Seg[]; buf: number; status: number } {
  const hdr = p.dma.alloc(16, 16);
  p.mem.write32(hdr, Blk.T_IN);
  const buf = p.dma.alloc(bytes, 512);
  const st = p.dma.alloc(1, 1);
  return { segs: [{ addr: hdr, len: 16 }, { addr: buf, len: bytes, write: true }, { addr: st, len: 1, write: true }], buf, status: st };
}

// ---------------------------------------------------------------------------- device side

defineCheck({
  id: 'packed.device.order',
  title: 'buffers are taken in ring order, list elements used in order, used descriptors written one after another',
  statements: ['packed.device.1', 'packed.device.2', 'packed.device.8'],
  side: 'device',
  kind: 'property',
  applies: { transports: [...MODERN], rings: ['packed'], devices: ['blk'] },
  run(ctx) {
    checkProperty(ctx, ['packed.device.1'], [fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 5 })], (pieces) => {
      const l = livePacked(ctx, 32);
      const p = l.dut.platform;
      // white-box: record the ids the device takes, in order
      const core = coreOf(l.dut);
      const q = core.ring(0);
      if (!q) throw new CheckFailure('queue 0 is not live after DRIVER_OK', { statements: ['packed.device.1'] });
      const taken: number[] = [];
      const pop = q.pop.bind(q);
      q.pop = (): Chain | null => {
        const c = pop();
        if (c) taken.push(c.id);
        return c;
      };
      const ids: number[] = [];
      const slots = new Map<number, number>();
      pieces.forEach((n, k) => {
        const data = new Uint8Array(512 * n).map((_, i) => (i * 13 + k * 7 + (i >> 9)) & 0xff);
        const w = blkWrite(p, data, n);
        const id = 20 - k; // ids not in ring order, so that ring order and id order differ
        l.ring.put(w.segs, id);
        ids.push(id);
        slots.set(id, w.segs.length);
        void data;
      });
      l.t.notify(l.q);
      const seen: number[] = [];
      run(p, () => {
        for (let u = l.ring.takeUsed(); u; u = l.ring.takeUsed()) {
          seen.push(u.id);
          // packed.device.2: the next used descriptor sits right after the previous buffer's slots
          l.ring.skip(slots.get(u.id) ?? 1);
        }
        return seen.length === ids.length;
      });
      expectEqual(seen.length, ids.length, ['packed.device.2'], 'used descriptors found where the ring says the next one goes');
      expectEqual(taken.join(','), ids.join(','), ['packed.device.1'], 'order in which the device took the buffers');
      // packed.device.8: the last write (all writes hit sector 0) left its pieces in list order
      const last = pieces.length - 1;
      const n = pieces[last]!;
      const r = blkRead(p, 512 * n);
      l.ring.put(r.segs, 30);
      slots.set(30, 3);
      l.t.notify(l.q);
      expectThat(run(p, () => l.ring.takeUsed()?.id === 30), ['packed.device.8'], 'device did not complete a read');
      const want = new Uint8Array(512 * n).map((_, i) => (i * 13 + last * 7 + (i >> 9)) & 0xff);
      const got = p.mem.readBytes(r.buf, 512 * n);
      const bad = got.findIndex((b, i) => b !== want[i]);
      expectEqual(bad, -1, ['packed.device.8'], 'first byte where the data read back differs from the pieces of the list written in order');
    });
  },
});

defineCheck({
  id: 'packed.device.writes',
  title: 'the device never writes a device-readable buffer, and never changes a descriptor after marking it used',
  statements: ['packed.device.4', 'packed.device.7'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...MODERN], rings: ['packed'] },
  run(ctx) {
    const l = livePacked(ctx, 16);
    const p = l.dut.platform;
    const reqs = [0, 1, 2].map(() => validRequestOnQueue(p, l.deviceType, [7]));
    const readable = reqs.flatMap((r) => r.segs.filter((s) => !s.write));
    const before = readable.map((s) => p.mem.readBytes(s.addr, s.len));
    const usedSnap = new Map<number, Uint8Array>();
    reqs.forEach((r, k) => l.ring.put(r.segs, k));
    l.t.notify(l.q);
    let n = 0;
    run(p, () => {
      for (let u = l.ring.takeUsed(); u; u = l.ring.takeUsed()) {
        usedSnap.set(u.slot, p.mem.readBytes(l.ring.desc + 16 * u.slot, 16));
        l.ring.skip(reqs[u.id]!.segs.length);
        n++;
      }
      return n === reqs.length;
    });
    expectEqual(n, reqs.length, ['packed.device.4'], 'requests completed');
    // more traffic after the used descriptors were written
    const more = validRequestOnQueue(p, l.deviceType);
    l.ring.put(more.segs, 9);
    l.t.notify(l.q);
    run(p, () => l.ring.takeUsed()?.id === 9);
    readable.forEach((s, i) => expectThat(p.mem.readBytes(s.addr, s.len).every((b, k) => b === before[i]![k]), ['packed.device.4'], 'device wrote into a device-readable buffer'));
    for (const [slot, snap] of usedSnap) {
      const now = p.mem.readBytes(l.ring.desc + 16 * slot, 16);
      expectThat(now.every((b, k) => b === snap[k]), ['packed.device.7'], `device changed the used descriptor at slot ${slot} after marking it used`);
    }
  },
});

defineCheck({
  id: 'packed.device.avail-bit',
  title: 'a descriptor whose AVAIL bit does not show the driver wrap counter is not used, however complete it looks',
  statements: ['packed.device.6'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...MODERN], rings: ['packed'], devices: ['blk'] },
  run(ctx) {
    const l = livePacked(ctx, 8);
    const p = l.dut.platform;
    const data = new Uint8Array(512).fill(0x5a);
    const w = blkWrite(p, data, 1);
    const first = l.ring.put(w.segs, 3, false); // AVAIL=0 USED=1 in the first lap: not available
    l.t.notify(l.q);
    p.spin(2_000_000);
    expectEqual(p.mem.read8(w.status), 0xff, ['packed.device.6'], 'status byte of a request whose descriptors were never made available', true);
    expectThat(l.ring.takeUsed() === null, ['packed.device.6'], 'device marked a never-available descriptor used');
    // now make it available properly: the device takes it
    l.ring.next = first;
    l.ring.wrap = 1;
    l.ring.put(w.segs, 3, true);
    l.t.notify(l.q);
    expectThat(run(p, () => l.ring.takeUsed() !== null), ['packed.device.6'], 'device did not take the buffer once it was made available');
    expectEqual(p.mem.read8(w.status), Blk.S_OK, ['packed.device.6'], 'status of the request once available');
  },
});

// ---------------------------------------------------------------------------- driver side

interface Store {
  readonly kind: 'w' | 'r';
  readonly addr: number;
  readonly size: number;
  readonly value: number;
}

/** A view of guest memory that logs the driver's accesses to the ring areas. */
function loggingPlatform(p: GuestPlatform, log: Store[], watch: () => { lo: number; hi: number }[], afterStore: (addr: number) => void): GuestPlatform {
  const m = p.mem;
  const inRing = (a: number) => watch().some((r) => a >= r.lo && a < r.hi);
  const mem: GuestMemoryAccess = {
    read8: (a) => m.read8(a),
    read16: (a) => {
      const v = m.read16(a);
      if (inRing(a)) log.push({ kind: 'r', addr: a, size: 2, value: v });
      return v;
    },
    read32: (a) => m.read32(a),
    read64: (a) => m.read64(a),
    write8: (a, v) => m.write8(a, v),
    write16: (a, v) => {
      const ring = inRing(a);
      if (ring) log.push({ kind: 'w', addr: a, size: 2, value: v });
      m.write16(a, v);
      if (ring) afterStore(a);
    },
    write32: (a, v) => {
      if (inRing(a)) log.push({ kind: 'w', addr: a, size: 4, value: v });
      m.write32(a, v);
    },
    write64: (a, v) => {
      if (inRing(a)) log.push({ kind: 'w', addr: a, size: 8, value: v });
      m.write64(a, v);
    },
    readBytes: (a, n) => m.readBytes(a, n),
    writeBytes: (a, d) => m.writeBytes(a, d),
    fill: (a, n, v) => m.fill(a, n, v),
    isRam: (a, n) => m.isRam(a, n),
  };
  return Object.assign(Object.create(p) as GuestPlatform, { mem });
}

interface Observed {
  /** Parse what has become available since the last look (also run after every flags store when logging). */
  scan(): void;
  /** Lists the observer parsed (one per buffer). */
  lists: number;
  violations: CheckFailure[];
  notifies: { data: number | undefined; expectOff: number; expectWrap: number }[];
}

/**
 * Re-parse, just before the device takes a buffer, every list the driver has made available since
 * the last look; snapshot each list's descriptors (and indirect table) and compare the snapshot
 * when the device completes the buffer.
 */
function observePacked(dut: DeviceUnderTest, size: number, indirectNegotiated: boolean, ringOf: () => { desc: number } | undefined): Observed {
  const core = coreOf(dut);
  const m = dut.machine!;
  const obs: Observed = { scan: () => scan(), lists: 0, violations: [], notifies: [] };
  let pos = 0;
  let wrap = 1;
  const snaps = new Map<number, { at: number; bytes: Uint8Array; table?: { at: number; bytes: Uint8Array } }[]>();
  const fail = (st: string[], msg: string, seen?: string) => obs.violations.push(new CheckFailure(msg, { statements: st, ...(seen ? { seen } : {}) }));
  const scan = (): void => {
    const r = ringOf();
    if (!r) return;
    for (let guard = 0; guard < size; guard++) {
      const f0 = m.mem.read16(r.desc + 16 * pos + 14);
      if (!(((f0 & A ? 1 : 0) === wrap) && ((f0 & U ? 1 : 0) !== wrap))) return;
      let p = pos;
      let w = wrap;
      let n = 0;
      let sawWrite = false;
      const parts: { at: number; bytes: Uint8Array; table?: { at: number; bytes: Uint8Array } }[] = [];
      for (;;) {
        const a = r.desc + 16 * p;
        const f = m.mem.read16(a + 14);
        if (n > 0 && !(((f & A ? 1 : 0) === w) && ((f & U ? 1 : 0) !== w))) {
          fail(['packed.driver.11', 'packed.driver.10', 'packed.driver.16'], 'a list is visible to the device (its head is available) before all of its descriptors are', `slot ${p} flags 0x${f.toString(16)}`);
          return;
        }
        n++;
        const part: { at: number; bytes: Uint8Array; table?: { at: number; bytes: Uint8Array } } = { at: a, bytes: m.mem.readBytes(a, 16) };
        if (f & Packed.DESC_F_INDIRECT) {
          if (!indirectNegotiated) fail(['packed.driver.12'], 'INDIRECT without VIRTIO_F_INDIRECT_DESC');
          if (f & Packed.DESC_F_NEXT || n > 1) fail(['packed.driver.15'], 'indirect descriptor in a NEXT list');
          const ta = m.mem.read64(a);
          const tl = m.mem.read32(a + 8);
          if (tl === 0 || tl % 16 !== 0 || tl / 16 > size) fail(['packed.driver.14'], 'indirect table length', String(tl));
          else {
            let tw = false;
            for (let k = 0; k < tl / 16; k++) {
              const ef = m.mem.read16(ta + 16 * k + 14);
              if (ef & ~Packed.DESC_F_WRITE) fail(['packed.driver.13'], 'flags other than WRITE inside an indirect table', `entry ${k} flags 0x${ef.toString(16)}`);
              if (ef & Packed.DESC_F_WRITE) tw = true;
              else if (tw) fail(['packed.driver.8'], 'readable element after a writable one (indirect table)');
            }
            part.table = { at: ta, bytes: m.mem.readBytes(ta, tl) };
          }
        } else if (f & Packed.DESC_F_WRITE) sawWrite = true;
        else if (sawWrite) fail(['packed.driver.8'], 'readable element after a writable one');
        parts.push(part);
        if (++p === size) {
          p = 0;
          w ^= 1;
        }
        if (!(f & Packed.DESC_F_NEXT)) break;
        if (n >= size) {
          fail(['packed.driver.6', 'packed.driver.7'], 'list longer than the queue size');
          return;
        }
      }
      const id = m.mem.read16(parts.at(-1)!.at + 12);
      snaps.set(id, parts);
      obs.lists++;
      pos = p;
      wrap = w;
    }
  };
  // hook the live ring once DRIVER_OK built it
  let hooked: CoreQueue | null = null;
  const hook = (): void => {
    const q = core.ring(0);
    if (!q || q === hooked) return;
    hooked = q;
    const pop = q.pop.bind(q);
    const push = q.push.bind(q);
    q.pop = () => {
      scan();
      return pop();
    };
    q.push = (c: Chain, written: number) => {
      const parts = snaps.get(c.id);
      if (parts) {
        for (const part of parts) {
          const now = m.mem.readBytes(part.at, 16);
          // packed.driver.2/3: nothing of an in-flight list changes until the device marks it used
          if (!now.every((b, k) => b === part.bytes[k])) fail(['packed.driver.3', 'packed.driver.2', 'packed.driver.9'], 'driver changed a descriptor of a buffer the device had not used yet', `descriptor at 0x${part.at.toString(16)}`);
          if (part.table && !m.mem.readBytes(part.table.at, part.table.bytes.length).every((b, k) => b === part.table!.bytes[k])) fail(['packed.driver.3'], 'driver changed the indirect table of a buffer in flight');
        }
        snaps.delete(c.id);
      }
      push(c, written);
    };
  };
  m.bus.addListener((a) => {
    hook();
    const isNotify = a.kind === 'write' && ((a.window.startsWith('virtio-mmio') && a.offset === 0x50) || (a.window.endsWith('.bar4') && a.offset >= 0x3000));
    if (isNotify) {
      scan();
      obs.notifies.push({ data: a.size === 4 ? a.value : undefined, expectOff: pos, expectWrap: wrap });
    }
  });
  return obs;
}

function packedSession(ctx: TargetContext, opts: { indirect: boolean; eventIdx: boolean; nd: boolean; size: number; ops: { sector: number; count: number; pieces: number; write: boolean }[] }, log?: Store[]) {
  const extra = bit(F.RING_PACKED) | (opts.nd ? bit(F.NOTIFICATION_DATA) : 0n);
  const dut = ctx.newDevice({ extraFeatures: extra, queueMaxSize: opts.size });
  const t = transportOf(dut);
  if (t.legacy) throw new CheckSkip('packed rings need a modern interface');
  let ringAreas: { lo: number; hi: number }[] = [];
  let drv: VirtioBlkDriver | undefined;
  const obs = observePacked(dut, opts.size, opts.indirect, () => (drv ? { desc: (drv.queue(0) as unknown as { descAddr: number }).descAddr } : undefined));
  const platform = log ? loggingPlatform(dut.platform, log, () => ringAreas, (a) => {
    if (ringAreas.length && a >= ringAreas[0]!.lo && a < ringAreas[0]!.hi && (a - ringAreas[0]!.lo) % 16 === 14) obs.scan();
  }) : dut.platform;
  const ring = extra | (opts.indirect ? bit(F.INDIRECT_DESC) : 0n) | (opts.eventIdx ? bit(F.EVENT_IDX) : 0n);
  drv = VirtioBlkDriver.probe(platform, t, { ringFeatures: ring, queueSize: opts.size, maxQueues: 1, indirectThreshold: opts.indirect ? 2 : Infinity });
  const q = drv.queue(0) as unknown as { descAddr: number; driverAddr: number; deviceAddr: number; layout: string };
  if (q.layout !== 'packed') throw new CheckSkip('the driver did not negotiate a packed ring');
  ringAreas = [{ lo: q.descAddr, hi: q.descAddr + 16 * opts.size }, { lo: q.deviceAddr, hi: q.deviceAddr + 4 }];
  const p = dut.platform;
  const cap = drv.info.capacity;
  for (const o of opts.ops) {
    const count = Math.max(1, Math.min(o.count, cap - 1));
    const sector = o.sector % Math.max(1, cap - count);
    const buf = p.dma.alloc(512 * count, 512);
    const data = [];
    // within seg_max (the device says queue size - 2) and the ring: header + data + status
    const pieces = Math.max(1, Math.min(o.pieces, opts.size - 2, count));
    const per = Math.ceil(count / pieces) * 512;
    for (let off = 0; off < 512 * count; off += per) data.push({ addr: buf + off, len: Math.min(per, 512 * count - off) });
    drv.submit({ type: o.write ? Blk.T_OUT : Blk.T_IN, sector, data }, () => {});
  }
  drv.waitAll();
  return { dut, obs, drv, q, core: coreOf(dut) };
}

const opsArb = fc.array(fc.record({ sector: fc.nat(2000), count: fc.integer({ min: 1, max: 8 }), pieces: fc.integer({ min: 1, max: 3 }), write: fc.boolean() }), { minLength: 1, maxLength: 30 });

defineCheck({
  id: 'packed.driver.lists',
  title: 'the driver makes lists available head last, within the queue size, readable before writable, indirect tables well formed, and leaves buffers in flight alone',
  statements: ['packed.driver.2', 'packed.driver.3', 'packed.driver.6', 'packed.driver.7', 'packed.driver.8', 'packed.driver.9', 'packed.driver.10', 'packed.driver.11', 'packed.driver.12', 'packed.driver.13', 'packed.driver.14', 'packed.driver.15'],
  side: 'driver',
  kind: 'property',
  applies: { transports: [...MODERN], rings: ['packed'], devices: ['blk'] },
  run(ctx) {
    checkProperty(ctx, ['packed.driver.11'], [fc.boolean(), fc.boolean(), fc.integer({ min: 4, max: 23 }), opsArb], (indirect, eventIdx, size, ops) => {
      const s = packedSession(ctx, { indirect, eventIdx, nd: false, size, ops });
      if (s.obs.violations.length) throw s.obs.violations[0]!;
      expectThat(s.obs.lists >= ops.length, ['packed.driver.11'], 'observer saw fewer lists than requests', `>= ${ops.length}`, String(s.obs.lists));
      expectEqual(s.core.errors.length, 0, ['packed.driver.6'], 'driver errors the device recorded');
    });
  },
});

defineCheck({
  id: 'packed.driver.alignment',
  title: 'descriptor ring 16-aligned, event suppression structures 4-aligned',
  statements: ['packed.driver.1'],
  side: 'driver',
  kind: 'example',
  applies: { transports: [...MODERN], rings: ['packed'], devices: ['blk'] },
  run(ctx) {
    for (const size of [3, 5, 7, 64]) {
      const s = packedSession(ctx, { indirect: false, eventIdx: false, nd: false, size, ops: [{ sector: 0, count: 1, pieces: 1, write: false }] });
      const qc = s.core.queueConfig(0)!;
      expectEqual(qc.desc % 16, 0, ['packed.driver.1'], 'descriptor ring address modulo 16');
      expectEqual(qc.driver % 4, 0, ['packed.driver.1'], 'driver event suppression address modulo 4');
      expectEqual(qc.device % 4, 0, ['packed.driver.1'], 'device event suppression address modulo 4');
    }
  },
});

defineCheck({
  id: 'packed.driver.notification-data',
  title: 'with NOTIFICATION_DATA, next_off and next_wrap name the next descriptor not yet made available',
  statements: ['packed.driver.4'],
  side: 'driver',
  kind: 'property',
  applies: { transports: [...MODERN], rings: ['packed'], devices: ['blk'] },
  run(ctx) {
    checkProperty(ctx, ['packed.driver.4'], [fc.integer({ min: 3, max: 13 }), opsArb], (size, ops) => {
      const s = packedSession(ctx, { indirect: false, eventIdx: false, nd: true, size, ops });
      expectThat(s.obs.notifies.length > 0, ['packed.driver.4'], 'driver never notified');
      for (const n of s.obs.notifies) {
        expectThat(n.data !== undefined, ['packed.driver.4'], 'notification without data although NOTIFICATION_DATA was negotiated');
        const off = (n.data! >>> 16) & 0x7fff;
        const wrap = n.data! >>> 31;
        expectEqual(`${off}/${wrap}`, `${n.expectOff}/${n.expectWrap}`, ['packed.driver.4'], 'next_off/next_wrap against the next descriptor not yet available');
      }
    });
  },
});

defineCheck({
  id: 'packed.driver.store-order',
  title: "the head's flags are stored after the rest of the list, and the device event suppression is read after that store, before deciding to notify",
  statements: ['packed.driver.16', 'packed.driver.17'],
  side: 'driver',
  kind: 'property',
  applies: { transports: [...MODERN], rings: ['packed'], devices: ['blk'] },
  run(ctx) {
    checkProperty(ctx, ['packed.driver.16'], [fc.boolean(), fc.boolean(), fc.integer({ min: 4, max: 16 }), opsArb], (eventIdx, indirect, size, ops) => {
      const log: Store[] = [];
      // the observer re-parses the ring after every flags store: a head exposed before its list is
      // complete is a violation (packed.driver.16, packed.driver.11)
      const s = packedSession(ctx, { indirect, eventIdx, nd: false, size, ops }, log);
      if (s.obs.violations.length) throw s.obs.violations[0]!;
      const desc = s.q.descAddr;
      const devFlags = s.q.deviceAddr + 2;
      // packed.driver.17: each read of the device event flags follows a flags store (the new buffers
      // are in memory before the driver decides whether to notify), and a notification decision
      // always reads them
      let sawFlagsStore = false;
      let reads = 0;
      for (const e of log) {
        if (e.kind === 'w' && e.addr >= desc && e.addr < desc + 16 * size && (e.addr - desc) % 16 === 14) sawFlagsStore = true;
        if (e.kind === 'r' && e.addr === devFlags) {
          reads++;
          expectThat(sawFlagsStore, ['packed.driver.17'], 'driver read the device event suppression before storing the flags of what it made available');
          sawFlagsStore = false;
        }
      }
      expectThat(reads > 0, ['packed.driver.17'], 'driver never read the device event suppression structure before notifying');
    });
  },
});
