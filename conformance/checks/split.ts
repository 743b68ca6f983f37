/**
 * Split virtqueues (split-ring.tex): the device never writes what it must not, copes with any
 * framing and with hostile chains, and notifies as the suppression rules say; the driver builds
 * well-formed chains and notifies when it must.
 */
import fc from 'fast-check';
import { F, Mmio, Split, Status, bit, featureSet } from '../../spec-refs/abi/virtio.ts';
import { CheckFailure, checkProperty, defineCheck, expectEqual, expectThat } from '../check.ts';
import type { DeviceUnderTest, TargetContext } from '../target.ts';
import { validRequestOnQueue, type Seg } from './requests.ts';
import { monitor, newDeviceWith, rawLive, simInternals, startRef, type RawLive } from './support.ts';
import { SharedDevice } from './shared.ts';

const QSIZE = 64;

type Live = RawLive;

function live(ctx: TargetContext, want: bigint): Live {
  return rawLive(ctx, { size: QSIZE, want: want | bit(F.VERSION_1), requireFeaturesOk: true });
}

/** Write `segs` as a chain at `first`; with `indirectFrom` >= 0 the segments from that index go into an indirect table. */
function writeChain(l: Live, first: number, segs: readonly Seg[], indirectFrom: number, indirectWriteFlag: boolean): number {
  const p = l.dut.platform;
  if (indirectFrom < 0 || indirectFrom >= segs.length) return l.ring.chain(first, segs);
  const direct = segs.slice(0, indirectFrom);
  const inTable = segs.slice(indirectFrom);
  const table = p.dma.alloc(16 * inTable.length, 16);
  inTable.forEach((s, k) => {
    const a = table + 16 * k;
    const last = k === inTable.length - 1;
    p.mem.write32(a, s.addr % 0x1_0000_0000);
    p.mem.write32(a + 4, Math.floor(s.addr / 0x1_0000_0000));
    p.mem.write32(a + 8, s.len);
    p.mem.write16(a + 12, (s.write ? Split.DESC_F_WRITE : 0) | (last ? 0 : Split.DESC_F_NEXT));
    p.mem.write16(a + 14, last ? 0 : k + 1);
  });
  direct.forEach((s, k) => l.ring.setDesc(first + k, { addr: s.addr, len: s.len, flags: (s.write ? Split.DESC_F_WRITE : 0) | Split.DESC_F_NEXT, next: first + k + 1 }));
  l.ring.setDesc(first + direct.length, { addr: table, len: 16 * inTable.length, flags: Split.DESC_F_INDIRECT | (indirectWriteFlag ? Split.DESC_F_WRITE : 0), next: 0 });
  return first;
}

// ---------------------------------------------------------------------------- device side

defineCheck({
  id: 'split.device.framing',
  title: 'a request works however it is split over descriptors, direct or ending in an indirect table (whose WRITE flag is ignored)',
  statements: ['split.device.1', 'split.device.7', 'split.device.8'],
  side: 'device',
  kind: 'property',
  applies: { rings: ['split'], transports: ['mmio'] },
  run(ctx) {
    // one device for every run while they pass; fresh ones once a run failed (honest shrinking, see shared.ts)
    const shared = new SharedDevice(() => {
      const l = live(ctx, bit(F.INDIRECT_DESC));
      return { l, next: 0, dispose: () => l.dut.dispose() };
    });
    checkProperty(ctx, ['split.device.1'], [fc.uniqueArray(fc.integer({ min: 1, max: 528 }), { maxLength: 6 }), fc.integer({ min: -1, max: 8 }), fc.boolean()], (cuts, indirectFrom, wflag) => shared.run((st) => {
      const l = st.l;
      const indirect = (l.accepted & bit(F.INDIRECT_DESC)) !== 0n;
      const req = validRequestOnQueue(l.dut.platform, l.deviceId, cuts);
      const useIndirect = indirect ? indirectFrom : -1;
      const head = st.next;
      writeChain(l, head, req.segs, useIndirect, wflag);
      st.next = (st.next + req.segs.length + 1) % (QSIZE - 16);
      const before = l.ring.usedIdx();
      l.ring.publish(head);
      l.r.notify(l.q);
      const done = l.ring.run(() => l.ring.usedIdx() !== before);
      const cite = useIndirect >= 0 && useIndirect < req.segs.length ? (wflag ? ['split.device.7', 'split.device.8'] : ['split.device.8']) : ['split.device.1'];
      expectThat(done, cite, `request in ${req.segs.length} descriptors${useIndirect >= 0 ? ` (indirect from ${useIndirect}${wflag ? ', WRITE flag on the indirect descriptor' : ''})` : ''} was not completed`);
      const status = l.r.status();
      expectThat(!(status & Status.DEVICE_NEEDS_RESET), cite, 'device gave up on a valid request', 'no DEVICE_NEEDS_RESET', 'DEVICE_NEEDS_RESET');
      const u = l.ring.takeUsed()[0]!;
      expectEqual(u.id, head, cite, 'used id');
      const bad = req.verify(u.len);
      if (bad) throw new CheckFailure(`request split at [${cuts.join(',')}] completed wrongly: ${bad}`, { statements: cite });
      l.r.ack();
    }));
  },
});

defineCheck({
  id: 'split.device.writes',
  title: 'the device writes only device-writable buffers, never the descriptor table, and at least used.len bytes of them',
  statements: ['split.device.3', 'split.device.6', 'split.device.16'],
  side: 'device',
  kind: 'property',
  applies: { rings: ['split'], transports: ['mmio'] },
  run(ctx) {
    const l = live(ctx, bit(F.INDIRECT_DESC) | bit(F.EVENT_IDX));
    const mon = monitor(l.dut);
    let next = 0;
    checkProperty(ctx, ['split.device.3'], [fc.array(fc.uniqueArray(fc.integer({ min: 1, max: 528 }), { maxLength: 4 }), { minLength: 1, maxLength: 4 })], (batch) => {
      const p = l.dut.platform;
      const reqs = batch.map((cuts) => validRequestOnQueue(p, l.deviceId, cuts));
      const heads: number[] = [];
      for (const req of reqs) {
        if (next + req.segs.length >= QSIZE) next = 0;
        heads.push(l.ring.chain(next, req.segs));
        next += req.segs.length;
      }
      const table = p.mem.readBytes(l.ring.desc, 16 * QSIZE);
      const readable = reqs.flatMap((q) => q.segs.filter((s) => !s.write).map((s) => ({ s, bytes: p.mem.readBytes(s.addr, s.len) })));
      const before = l.ring.usedIdx();
      l.ring.publish(...heads);
      l.r.notify(l.q);
      l.ring.run(() => ((l.ring.usedIdx() - before) & 0xffff) === heads.length);
      l.r.ack();
      const after = p.mem.readBytes(l.ring.desc, 16 * QSIZE);
      expectThat(table.every((b, i) => b === after[i]), ['split.device.6'], 'the descriptor table changed while the device processed requests');
      for (const { s, bytes } of readable) {
        const now = p.mem.readBytes(s.addr, s.len);
        expectThat(bytes.every((b, i) => b === now[i]), ['split.device.3'], `device wrote into a device-readable buffer at 0x${s.addr.toString(16)}`);
      }
      const used = l.ring.takeUsed();
      expectEqual(used.length, heads.length, ['split.device.16'], 'requests completed');
      for (const u of used) {
        const k = heads.indexOf(u.id);
        expectThat(k >= 0, ['split.device.16'], 'used id is not a head made available', heads.join(','), String(u.id));
        expectThat(u.len <= reqs[k]!.writable, ['split.device.16'], 'used.len above the writable bytes', `<= ${reqs[k]!.writable}`, String(u.len));
        const bad = reqs[k]!.verify(u.len);
        if (bad) throw new CheckFailure(`completion wrong: ${bad}`, { statements: ['split.device.16'] });
      }
    });
    mon.detach();
    mon.assertClean({ side: 'device' });
  },
});

defineCheck({
  id: 'split.device.notifications',
  title: 'used buffer notifications follow the flags (no EVENT_IDX: used_event ignored) or used_event (EVENT_IDX: NO_INTERRUPT ignored)',
  statements: ['split.device.9', 'split.device.11', 'split.device.12', 'split.device.13', 'split.device.14', 'split.device.10', 'split.device.18', 'split.device.20'],
  side: 'device',
  kind: 'property',
  applies: { rings: ['split'], transports: ['mmio'] },
  run(ctx) {
    checkProperty(ctx, ['split.device.11'], [fc.boolean(), fc.constantFrom(0, 1), fc.integer({ min: -3, max: 3 })], (eventIdx, availFlags, eventDelta) => {
      const l = live(ctx, eventIdx ? bit(F.EVENT_IDX) : 0n);
      const ei = (l.accepted & bit(F.EVENT_IDX)) !== 0n;
      if (eventIdx && !ei) return; // device does not offer EVENT_IDX: nothing to judge in that half
      const p = l.dut.platform;
      // one warm-up request so indices are not all zero
      for (let round = 0; round < 2; round++) {
        const req = validRequestOnQueue(p, l.deviceId);
        const head = round * 8;
        l.ring.chain(head, req.segs);
        const oldUsed = l.ring.usedIdx();
        l.r.ack();
        l.ring.setAvailFlags(round === 1 ? availFlags : 0);
        // used_event lives after the available ring entries
        const usedEvent = (oldUsed + (round === 1 ? eventDelta : 0)) & 0xffff;
        p.mem.write16(l.ring.avail + 4 + 2 * QSIZE, usedEvent);
        l.ring.publish(head);
        l.r.notify(l.q);
        l.ring.run(() => l.ring.usedIdx() !== oldUsed);
        p.spin(10_000);
        const irq = (l.r.r(Mmio.INTERRUPT_STATUS) & Mmio.INT_VRING) !== 0;
        const flags = l.ring.usedFlags();
        if (ei) expectEqual(flags, 0, ['split.device.20'], 'used ring flags with EVENT_IDX');
        else expectThat(flags === 0 || flags === 1, ['split.device.18'], 'used ring flags without EVENT_IDX', '0 or 1', String(flags));
        if (round === 0) continue;
        const newUsed = l.ring.usedIdx();
        if (!ei) {
          if (availFlags === 0) expectThat(irq, ['split.device.11', 'split.device.9'], `no notification with avail flags 0 (used_event ${usedEvent} must be ignored)`);
          else expectThat(!irq, ['split.device.10'], 'notification although the driver set NO_INTERRUPT');
        } else {
          const crossed = ((newUsed - usedEvent - 1) & 0xffff) < ((newUsed - oldUsed) & 0xffff);
          if (crossed) expectThat(irq, ['split.device.13', 'split.device.12'], `no notification when used idx passed used_event ${usedEvent} (avail flags ${availFlags} must be ignored)`);
          else expectThat(!irq, ['split.device.14'], `notification although used idx ${oldUsed}->${newUsed} did not pass used_event ${usedEvent}`);
        }
      }
    });
  },
});

defineCheck({
  id: 'split.device.spurious-notify',
  title: 'notifications with nothing new, or for queues that do not exist, are harmless',
  statements: ['split.device.22'],
  side: 'device',
  kind: 'property',
  applies: { rings: ['split'], transports: ['mmio'] },
  run(ctx) {
    checkProperty(ctx, ['split.device.22'], [fc.array(fc.constantFrom(0, 1, 7, 0xffff), { minLength: 1, maxLength: 8 })], (queues) => {
      const l = live(ctx, 0n);
      for (const q of queues) l.r.notify(q);
      l.dut.platform.spin(100_000);
      const req = validRequestOnQueue(l.dut.platform, l.deviceId);
      l.ring.chain(0, req.segs);
      l.ring.publish(0);
      for (const q of queues) l.r.notify(q);
      l.r.notify(l.q);
      expectThat(l.ring.run(() => l.ring.usedIdx() === 1), ['split.device.22'], 'device stopped working after spurious notifications');
      expectEqual(l.r.status() & Status.DEVICE_NEEDS_RESET, 0, ['split.device.22'], 'DEVICE_NEEDS_RESET after spurious notifications');
      expectThat(!req.verify(l.ring.takeUsed()[0]!.len), ['split.device.22'], 'request after spurious notifications completed wrongly');
    });
  },
});

/**
 * A guest-physical address where `len` bytes are outside the target's RAM: 0xFFF00000 (no RAM there
 * on pvkit's machine nor on QEMU's q35/microvm with 128 MiB) unless the target's RAM covers it, then
 * the first MiB boundary above the highest RAM range.
 */
export function outsideRam(dut: DeviceUnderTest, len: number): number {
  const ram = dut.ram ?? [];
  const hits = (a: number) => ram.some((r) => a < r.base + r.size && r.base < a + len);
  const preferred = 0xfff0_0000;
  if (!hits(preferred)) return preferred;
  const top = Math.max(...ram.map((r) => r.base + r.size));
  return Math.ceil(top / 0x10_0000) * 0x10_0000;
}

type Hostile = 'loop' | 'next-oob' | 'head-oob' | 'outside-ram' | 'huge-len' | 'write-then-read' | 'indirect-nested' | 'indirect-bad-len' | 'indirect-next' | 'zero-len' | 'avail-jump';

defineCheck({
  id: 'split.device.hostile-chains',
  title: 'malformed chains never make the device write readable buffers or past writable ones: it completes them or sets DEVICE_NEEDS_RESET with a config notification',
  statements: ['split.device.3', 'split.device.16', 'status_init.device.3'],
  side: 'device',
  kind: 'property',
  applies: { rings: ['split'], transports: ['mmio'] },
  run(ctx) {
    const kinds: Hostile[] = ['loop', 'next-oob', 'head-oob', 'outside-ram', 'huge-len', 'write-then-read', 'indirect-nested', 'indirect-bad-len', 'indirect-next', 'zero-len', 'avail-jump'];
    checkProperty(ctx, ['split.device.3'], [fc.constantFrom(...kinds), fc.boolean()], (kind, validFirst) => {
      const l = live(ctx, bit(F.INDIRECT_DESC));
      const p = l.dut.platform;
      const buf = p.dma.alloc(8192, 16);
      for (let i = 0; i < 8192; i += 4) p.mem.write32(buf + i, 0x5a5a5a5a);
      const ring = l.ring;
      let validHead = -1;
      let valid: ReturnType<typeof validRequestOnQueue> | undefined;
      if (validFirst) {
        valid = validRequestOnQueue(p, l.deviceId);
        validHead = ring.chain(40, valid.segs);
        ring.publish(validHead);
      }
      const table = buf + 4096;
      const D = Split.DESC_F_NEXT;
      const W = Split.DESC_F_WRITE;
      const I = Split.DESC_F_INDIRECT;
      let head = 0;
      switch (kind) {
        case 'loop':
          ring.setDesc(0, { addr: buf, len: 16, flags: D, next: 1 });
          ring.setDesc(1, { addr: buf + 16, len: 16, flags: D, next: 0 });
          break;
        case 'next-oob':
          ring.setDesc(0, { addr: buf, len: 16, flags: D, next: QSIZE + 3 });
          break;
        case 'head-oob':
          head = QSIZE + 1;
          break;
        case 'outside-ram':
          ring.setDesc(0, { addr: buf, len: 16, flags: D, next: 1 });
          ring.setDesc(1, { addr: outsideRam(l.dut, 512), len: 512, flags: W, next: 0 });
          break;
        case 'huge-len':
          ring.setDesc(0, { addr: buf, len: 16, flags: D, next: 1 });
          ring.setDesc(1, { addr: buf + 64, len: 0xffff_ffff, flags: W, next: 0 });
          break;
        case 'write-then-read':
          ring.setDesc(0, { addr: buf + 512, len: 16, flags: W | D, next: 1 });
          ring.setDesc(1, { addr: buf, len: 16, flags: 0, next: 0 });
          break;
        case 'indirect-nested':
          p.mem.write32(table, buf + 2048);
          p.mem.write32(table + 8, 32);
          p.mem.write16(table + 12, I);
          ring.setDesc(0, { addr: table, len: 16, flags: I, next: 0 });
          break;
        case 'indirect-bad-len':
          ring.setDesc(0, { addr: table, len: 20, flags: I, next: 0 });
          break;
        case 'indirect-next':
          ring.setDesc(0, { addr: table, len: 16, flags: I | D, next: 1 });
          ring.setDesc(1, { addr: buf + 512, len: 16, flags: W, next: 0 });
          break;
        case 'zero-len':
          ring.setDesc(0, { addr: buf, len: 0, flags: D, next: 1 });
          ring.setDesc(1, { addr: buf + 512, len: 0, flags: W, next: 0 });
          break;
        case 'avail-jump':
          break;
      }
      const readableBefore = p.mem.readBytes(buf, 512);
      if (kind === 'avail-jump') ring.setAvailIdx(ring.availIdx + QSIZE + 5);
      else ring.publish(head);
      l.r.notify(l.q);
      p.spin(2_000_000);
      const readableAfter = p.mem.readBytes(buf, 512);
      if (kind !== 'write-then-read' && kind !== 'indirect-next') {
        expectThat(readableBefore.every((b, i) => b === readableAfter[i]), ['split.device.3'], `device wrote into a device-readable buffer (${kind})`);
      }
      const used = ring.takeUsed();
      const st = l.r.status();
      for (const u of used) {
        if (u.id === validHead && valid) {
          expectThat(u.len <= valid.writable, ['split.device.16'], 'used.len above the writable bytes', `<= ${valid.writable}`, String(u.len));
          continue;
        }
        // outside-ram: where the bus drops the bytes (QEMU's unassigned space) the device did write the
        // 512 bytes as far as it can know, which is all split.device.16 asks; where the access faults
        // (pvkit's machine) it wrote nothing and may not claim any.
        const writable = kind === 'zero-len' ? 0 : kind === 'write-then-read' || kind === 'indirect-next' ? 16 : kind === 'outside-ram' && l.dut.dmaOutsideRam !== 'fault' ? 512 : 0;
        expectThat(u.len <= writable, ['split.device.16'], `used.len of a malformed chain (${kind}) above its writable bytes`, `<= ${writable}`, String(u.len));
      }
      if (st & Status.DEVICE_NEEDS_RESET) {
        expectThat((l.r.r(Mmio.INTERRUPT_STATUS) & Mmio.INT_CONFIG) !== 0, ['status_init.device.3'], `DEVICE_NEEDS_RESET (${kind}) without a configuration change notification`);
      }
      // the machine is still sane: the bus answers, a reset works
      l.r.setStatus(0);
      expectEqual(l.r.status(), 0, ['status_init.device.4'], `reset after a hostile chain (${kind})`);
    });
  },
});

defineCheck({
  id: 'split.device.under-load',
  title: 'under the reference driver with random features, queue sizes and I/O the monitor sees the device keep every ring rule',
  statements: ['split.device.3', 'split.device.6', 'split.device.11', 'split.device.13', 'split.device.16', 'split.device.18', 'split.device.20', 'status_init.device.1'],
  side: 'device',
  applies: { rings: ['split'], transports: ['mmio'] },
  kind: 'property',
  run(ctx) {
    // the monitor judges here: a target it cannot watch skips before the property starts (a
    // CheckSkip from inside a property run would cost a device per run first)
    const first = ctx.newDevice();
    monitor(first).detach();
    first.dispose();
    checkProperty(ctx, ['split.device.16'], [fc.boolean(), fc.boolean(), fc.integer({ min: 4, max: 128 }), fc.integer(), fc.integer({ min: 1, max: 12 })], (indirect, eventIdx, qsize, seed, n) => {
      const without = (indirect ? 0n : bit(F.INDIRECT_DESC)) | (eventIdx ? 0n : bit(F.EVENT_IDX));
      const dut = ctx.newDevice();
      const mon = monitor(dut);
      let err: unknown;
      try {
        const s = startRef(ctx, dut, { without, queueSize: qsize });
        s.io(n, seed);
        s.shutdown();
      } catch (e) {
        err = e;
      }
      mon.detach();
      // the monitor's verdict first (it names the broken rule); then whatever stopped the driver
      mon.assertClean({ side: 'device' });
      if (err !== undefined) throw err;
      expectThat(mon.stats.used > 0, ['split.device.16'], 'the monitor saw no used element: nothing was judged');
    });
  },
});

// ---------------------------------------------------------------------------- driver side

defineCheck({
  id: 'split.driver.ring-discipline',
  title: 'the reference driver builds aligned rings and well-formed chains, never withdraws buffers, and notifies when the device asks',
  statements: ['split.driver.1', 'split.driver.2', 'split.driver.4', 'split.driver.6', 'split.driver.7', 'split.driver.8', 'split.driver.9', 'split.driver.11', 'split.driver.12', 'split.driver.14', 'split.driver.19', 'split.driver.22', 'split.driver.24', 'features.driver.13'],
  side: 'driver',
  kind: 'property',
  applies: { rings: ['split'], transports: ['mmio'] }, // the monitor parses split rings on virtio-mmio
  run(ctx) {
    checkProperty(ctx, ['split.driver.2'], [fc.boolean(), fc.boolean(), fc.integer({ min: 4, max: 64 }), fc.integer()], (indirect, eventIdx, qsize, seed) => {
      const without = (indirect ? 0n : bit(F.INDIRECT_DESC)) | (eventIdx ? 0n : bit(F.EVENT_IDX));
      const dut = ctx.newDevice();
      const mon = monitor(dut);
      const s = startRef(ctx, dut, { without, queueSize: qsize });
      s.io(6, seed);
      if (s.blk) {
        // a scattered request: many small segments (indirect when negotiated)
        const p = dut.platform;
        const room = s.blk.queue(0).size - 2; // an indirect table may not exceed the queue size either (split.driver.8)
        const segs = Array.from({ length: Math.max(1, Math.min(8, room)) }, () => ({ addr: p.dma.alloc(512, 512), len: 512 }));
        const h = s.blk.submit({ type: 1, sector: 0, data: segs });
        s.blk.kick();
        s.blk.wait(h);
        for (let i = 0; i < 3; i++) s.blk.submit({ type: 0, sector: 8 * i, data: segs.slice(0, 2) });
        s.blk.kick();
        s.blk.waitAll();
      }
      s.shutdown();
      mon.detach();
      mon.assertClean({ side: 'driver' });
      expectThat(mon.stats.chains > 0, ['split.driver.2'], 'the monitor saw no chain: nothing was judged');
    });
  },
});

defineCheck({
  id: 'split.driver.in-order-layout',
  title: 'with VIRTIO_F_IN_ORDER the reference driver chains descriptors in ring order (wrapping to 0) and fills indirect tables sequentially',
  statements: ['split.driver.5', 'split.driver.10'],
  side: 'driver',
  kind: 'property',
  // the monitor judges the layout of every chain (split rings on virtio-mmio); blk requests are multi-descriptor
  applies: { devices: ['blk'], rings: ['split'], transports: ['mmio'] },
  run(ctx) {
    const batch = fc.array(fc.record({ write: fc.boolean(), segs: fc.integer({ min: 1, max: 3 }) }), { minLength: 1, maxLength: 3 });
    checkProperty(ctx, ['split.driver.5'], [fc.boolean(), fc.integer({ min: 16, max: 40 }), fc.array(batch, { minLength: 4, maxLength: 14 })], (indirect, qsize, batches) => {
      // the checking device: the RAM disk, offering VIRTIO_F_IN_ORDER too (the shared core implements it)
      const dut = newDeviceWith(ctx, (m) => ({ offeredFeatures: m.offeredFeatures | bit(F.IN_ORDER) }));
      const mon = monitor(dut);
      const s = startRef(ctx, dut, { without: indirect ? 0n : bit(F.INDIRECT_DESC), queueSize: qsize, extraRing: bit(F.IN_ORDER) });
      expectThat((s.dev.features & bit(F.IN_ORDER)) !== 0n, ['split.driver.5'], 'VIRTIO_F_IN_ORDER was not negotiated: nothing to judge', 'IN_ORDER negotiated', `0x${s.dev.features.toString(16)}`);
      const blk = s.blk!;
      const p = dut.platform;
      const bufs = Array.from({ length: 3 }, () => ({ addr: p.dma.alloc(512, 512), len: 512 }));
      let err: unknown;
      try {
        // batches of requests of 3..5 descriptors each, so the chains cross the end of the ring again and again
        for (const b of batches) {
          for (const r of b) blk.submit({ type: r.write ? 1 : 0, sector: 8 * r.segs, data: bufs.slice(0, r.segs) });
          blk.kick();
          blk.waitAll();
        }
        s.shutdown();
      } catch (e) {
        err = e; // a device that rejects a misplaced chain stops the workload: the layout is judged first
      }
      mon.detach();
      mon.assertClean({ side: 'driver' });
      if (err !== undefined) throw err;
      expectThat(mon.stats.chains > 0, ['split.driver.5'], 'the monitor saw no chain: nothing was judged');
    });
  },
});

defineCheck({
  id: 'split.driver.spurious-used',
  title: 'spurious used buffer notifications are harmless to the driver',
  statements: ['split.driver.16'],
  side: 'driver',
  kind: 'example',
  run(ctx) {
    const dut = ctx.newDevice();
    const sim = simInternals(dut);
    const s = startRef(ctx, dut);
    let stop = false;
    const tick = () => {
      if (stop) return;
      sim.transport.usedBuffer();
      dut.machine!.scheduler.schedule(3_000, 'spurious', tick);
    };
    tick();
    try {
      s.io(8, ctx.seed);
    } finally {
      stop = true;
    }
    s.shutdown();
  },
});

defineCheck({
  id: 'split.driver.suppression-fields',
  title: 'without EVENT_IDX the driver ignores avail_event; with EVENT_IDX it ignores the NO_NOTIFY flag and follows avail_event',
  statements: ['split.driver.20', 'split.driver.23', 'split.driver.22', 'split.driver.24'],
  side: 'driver',
  kind: 'property',
  applies: { rings: ['split'], transports: ['mmio'] },
  run(ctx) {
    checkProperty(ctx, ['split.driver.20'], [fc.boolean(), fc.integer({ min: 0, max: 0xffff })], (eventIdx, junk) => {
      const dut = ctx.newDevice();
      const sim = simInternals(dut);
      const mon = monitor(dut);
      const s = startRef(ctx, dut, { without: eventIdx ? 0n : bit(F.EVENT_IDX) });
      const q = sim.core.queues[0]!;
      const mem = dut.machine!.mem;
      const ei = (s.dev.features & bit(F.EVENT_IDX)) !== 0n;
      let stop = false;
      // a device that scribbles on the suppression fields the driver must ignore
      const scribble = () => {
        if (stop) return;
        if (ei) mem.write16(q.device, Split.USED_F_NO_NOTIFY);
        else mem.write16(q.device + 4 + 8 * q.size, (junk + mem.read16(q.driver + 2)) & 0xffff);
        dut.machine!.scheduler.schedule(1_000, 'scribble', scribble);
      };
      scribble();
      let err: unknown;
      try {
        s.io(5, ctx.seed);
      } catch (e) {
        err = e;
      } finally {
        stop = true;
      }
      mon.detach();
      mon.assertClean({ side: 'driver', statements: ['split.driver.22', 'split.driver.24'] });
      if (err !== undefined) {
        const cite = ei ? ['split.driver.23', 'split.driver.24'] : ['split.driver.20', 'split.driver.22'];
        throw new CheckFailure(`I/O stalled with the device ${ei ? 'setting NO_NOTIFY (to be ignored with EVENT_IDX)' : 'scribbling on avail_event (to be ignored without EVENT_IDX)'}: ${err instanceof Error ? err.message : String(err)}`, { statements: cite });
      }
      s.shutdown();
      void featureSet;
    });
  },
});
