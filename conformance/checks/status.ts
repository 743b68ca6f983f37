/**
 * Device status and initialization (content.tex "Device Status Field", "Device Initialization",
 * "Device Reset", "Device Cleanup").
 */
import fc from 'fast-check';
import { Mmio, Status, statusNames, F, bit } from '../../spec-refs/abi/virtio.ts';
import { CheckFailure, CheckSkip, checkProperty, defineCheck, expectEqual, expectThat } from '../check.ts';
import { UsageError } from '../../spec-refs/errors.ts';
import { BlkConfig } from '../../spec-refs/abi/blk-layout.ts';

const BlkConfigWriteback = BlkConfig.WRITEBACK;
import { RawSplitRing } from '../hostile.ts';
import type { DeviceUnderTest, TargetContext } from '../target.ts';
import { requestQueue, validRequestOnQueue } from './requests.ts';
import { monitor, newDeviceWith, raw, rawLive, simInternals, startRef, transportOf } from './support.ts';

const ALL_OK = Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK;
const SUSPEND = 16;

/** Whether bringing the device up with the reference driver fails (throws). */
function refStartFails(ctx: TargetContext, dut: DeviceUnderTest): boolean {
  try {
    startRef(ctx, dut);
    return false;
  } catch {
    return true;
  }
}

// ---------------------------------------------------------------------------- device side

defineCheck({
  id: 'status_init.device.reset-clears',
  title: 'a reset from any point of initialization or operation reads back 0 and clears InterruptStatus and QueueReady',
  statements: ['status_init.device.4', 'mmio.device.5'],
  side: 'device',
  kind: 'property',
  applies: { rings: ['split'], transports: ['mmio'] },
  run(ctx) {
    checkProperty(ctx, ['status_init.device.4', 'mmio.device.5'], [fc.integer({ min: 0, max: 5 })], (stage) => {
      const dut = ctx.newDevice();
      const r = raw(dut);
      const { deviceId } = r.probe();
      const rq = requestQueue(deviceId); // virtio-net: transmitq1 (requests.ts)
      r.reset();
      const steps = [Status.ACKNOWLEDGE, Status.ACKNOWLEDGE | Status.DRIVER];
      for (const s of steps.slice(0, stage)) r.setStatus(s);
      let ring: RawSplitRing | undefined;
      if (stage >= 3) {
        r.writeDriverFeatures(r.deviceFeatures() & (bit(F.VERSION_1) | 0xffffn));
        r.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
        ring = new RawSplitRing(dut.platform, 8);
        r.setupQueue(rq, 8, ring.desc, ring.avail, ring.used);
      }
      if (stage >= 4) r.setStatus(ALL_OK);
      if (stage >= 5 && ring) {
        // a completed request leaves a used-buffer interrupt pending
        const req = validRequestOnQueue(dut.platform, deviceId);
        ring.chain(0, req.segs);
        ring.publish(0);
        r.notify(rq);
        ring.run(() => ring!.usedIdx() === 1);
      }
      r.setStatus(0);
      let st = r.status();
      for (let i = 0; i < 100 && st !== 0; i++) {
        dut.platform.spin(1000);
        st = r.status();
      }
      expectEqual(st, 0, ['status_init.device.4'], `device status after reset (from stage ${stage})`, true);
      expectEqual(r.r(Mmio.INTERRUPT_STATUS), 0, ['mmio.device.5'], 'InterruptStatus after reset', true);
      const nq = Math.max(1, [0, 1, 2, 3].filter((q) => r.queueMax(q) > 0).length);
      for (let q = 0; q < nq; q++) {
        r.w(Mmio.QUEUE_SEL, q);
        expectEqual(r.r(Mmio.QUEUE_READY), 0, ['mmio.device.5'], `QueueReady of queue ${q} after reset`);
      }
    });
  },
});

defineCheck({
  id: 'status_init.device.idle-before-driver-ok',
  title: 'the device takes no buffer and sends no used notification before DRIVER_OK, nor from a queue that is not ready',
  statements: ['status_init.device.1', 'mmio.device.7'],
  side: 'device',
  kind: 'example',
  applies: { rings: ['split'], transports: ['mmio'] },
  run(ctx) {
    const dut = ctx.newDevice();
    const r = raw(dut);
    const { deviceId } = r.probe();
    const rq = requestQueue(deviceId); // virtio-net: transmitq1 (requests.ts)
    const n = r.negotiate((o) => o & (bit(F.VERSION_1) | 0xffffn));
    expectThat(n.featuresOk, ['features.device.2'], 'device refused its own basic features');
    const ring = new RawSplitRing(dut.platform, 8);
    r.setupQueue(rq, 8, ring.desc, ring.avail, ring.used);
    const req = validRequestOnQueue(dut.platform, deviceId);
    ring.chain(0, req.segs);
    ring.publish(0);
    r.notify(rq);
    dut.platform.spin(2_000_000);
    expectEqual(ring.usedIdx(), 0, ['status_init.device.1'], 'used idx moved before DRIVER_OK');
    expectEqual(r.r(Mmio.INTERRUPT_STATUS) & Mmio.INT_VRING, 0, ['status_init.device.1'], 'used-buffer interrupt before DRIVER_OK');
    // now a queue that is configured but not ready, with DRIVER_OK set
    const dut2 = ctx.newDevice();
    const r2 = raw(dut2);
    r2.probe();
    r2.negotiate((o) => o & (bit(F.VERSION_1) | 0xffffn));
    const ring2 = new RawSplitRing(dut2.platform, 8);
    r2.setupQueue(rq, 8, ring2.desc, ring2.avail, ring2.used, false);
    r2.setStatus(ALL_OK);
    const req2 = validRequestOnQueue(dut2.platform, deviceId);
    ring2.chain(0, req2.segs);
    ring2.publish(0);
    const usedBefore = dut2.platform.mem.readBytes(ring2.used, 6 + 8 * 8);
    r2.notify(rq);
    dut2.platform.spin(2_000_000);
    const usedAfter = dut2.platform.mem.readBytes(ring2.used, 6 + 8 * 8);
    expectThat(usedBefore.every((b, i) => b === usedAfter[i]), ['mmio.device.7'], 'device wrote the used ring of a queue whose QueueReady is 0');
    expectEqual(r2.r(Mmio.INTERRUPT_STATUS) & Mmio.INT_VRING, 0, ['mmio.device.7'], 'used-buffer interrupt for a queue that is not ready');
  },
});

defineCheck({
  id: 'status_init.device.quiet-after-reset',
  title: 'after a reset with requests in flight the device neither notifies nor touches the old rings',
  statements: ['status_init.device.5'],
  side: 'device',
  kind: 'property',
  applies: { rings: ['split'], transports: ['mmio'] },
  run(ctx) {
    checkProperty(ctx, ['status_init.device.5'], [fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 200_000 })], (inflight, resetAfterNs) => {
      const { dut, r, q: rq, ring, deviceId } = rawLive(ctx, { size: 32, want: bit(F.VERSION_1) | 0xffffn, opts: { params: { latencyNs: 100_000, completionDelayNs: 100_000 } } }); // rq: virtio-net's transmitq1
      for (let i = 0; i < inflight; i++) {
        const req = validRequestOnQueue(dut.platform, deviceId);
        ring.chain(i * 4, req.segs);
        ring.publish(i * 4);
      }
      r.notify(rq);
      dut.platform.spin(resetAfterNs);
      r.setStatus(0);
      while (r.status() !== 0) dut.platform.spin(1000);
      const usedBefore = dut.platform.mem.readBytes(ring.used, 6 + 8 * 32);
      const line = dut.machine?.irq;
      let irqs = 0;
      const vector = (dut.location as { vector: number }).vector;
      line?.addListener((v) => {
        if (v === vector) irqs++;
      });
      dut.platform.spin(1_000_000);
      const usedAfter = dut.platform.mem.readBytes(ring.used, 6 + 8 * 32);
      expectThat(usedBefore.every((b, i) => b === usedAfter[i]), ['status_init.device.5'], 'device wrote the used ring after the reset completed');
      expectEqual(irqs, 0, ['status_init.device.5'], 'interrupts after the reset completed');
      expectEqual(r.r(Mmio.INTERRUPT_STATUS), 0, ['status_init.device.5'], 'InterruptStatus after the reset completed', true);
    });
  },
});

defineCheck({
  id: 'status_init.device.needs-reset-notifies',
  title: 'a device that gives up on a broken ring sets DEVICE_NEEDS_RESET and sends a configuration change notification',
  statements: ['status_init.device.3', 'status_init.device.2'],
  side: 'device',
  kind: 'example',
  applies: { rings: ['split'], transports: ['mmio'] },
  run(ctx) {
    const { dut, r, q: rq, ring } = rawLive(ctx, { size: 8, want: bit(F.VERSION_1) | 0xffffn }); // rq: virtio-net's transmitq1 (requests.ts)
    const buf = dut.platform.dma.alloc(64);
    // a descriptor loop: 0 -> 1 -> 0
    ring.setDesc(0, { addr: buf, len: 16, flags: 1, next: 1 });
    ring.setDesc(1, { addr: buf + 16, len: 16, flags: 1, next: 0 });
    ring.publish(0);
    r.notify(rq);
    dut.platform.spin(2_000_000);
    const st = r.status();
    expectThat((st & Status.DEVICE_NEEDS_RESET) !== 0, ['status_init.device.2'], 'device did not set DEVICE_NEEDS_RESET for a looping chain', 'DEVICE_NEEDS_RESET', statusNames(st));
    expectThat((r.r(Mmio.INTERRUPT_STATUS) & Mmio.INT_CONFIG) !== 0, ['status_init.device.3'], 'DEVICE_NEEDS_RESET set while DRIVER_OK without a configuration change notification');
  },
});

defineCheck({
  id: 'status_init.device.suspend-needs-init',
  title: 'the device ignores SUSPEND written before initialization completes',
  statements: ['status_init.device.6'],
  side: 'device',
  kind: 'example',
  applies: { transports: ['mmio'] },
  run(ctx) {
    const dut = ctx.newDevice();
    const r = raw(dut);
    r.probe();
    r.reset();
    r.setStatus(Status.ACKNOWLEDGE | SUSPEND);
    expectEqual(r.status() & SUSPEND, 0, ['status_init.device.6'], 'SUSPEND accepted before initialization');
    r.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
    r.writeDriverFeatures(r.deviceFeatures() & (bit(F.VERSION_1) | bit(F.SUSPEND) | 0xffffn));
    r.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | SUSPEND);
    expectEqual(r.status() & SUSPEND, 0, ['status_init.device.6'], 'SUSPEND accepted after FEATURES_OK but before DRIVER_OK');
  },
});

defineCheck({
  id: 'status_init.device.suspend-cycle',
  title: 'with VIRTIO_F_SUSPEND: suspend stops queue and config activity, resume brings them back',
  statements: ['status_init.device.8', 'status_init.device.9', 'status_init.device.10', 'status_init.device.11', 'status_init.device.12'],
  side: 'device',
  kind: 'example',
  applies: { rings: ['split'], transports: ['mmio'], features: [F.SUSPEND] },
  run(ctx) {
    const dut = ctx.newDevice({ extraFeatures: bit(F.SUSPEND) });
    const r = raw(dut);
    const { deviceId } = r.probe();
    const rq = requestQueue(deviceId); // virtio-net: transmitq1 (requests.ts)
    const n = r.negotiate((o) => o & (bit(F.VERSION_1) | bit(F.SUSPEND) | 0xffffn));
    if (!(n.accepted & bit(F.SUSPEND))) throw new CheckFailure('device does not offer VIRTIO_F_SUSPEND', { statements: ['status_init.device.11'] });
    const ring = new RawSplitRing(dut.platform, 8);
    r.setupQueue(rq, 8, ring.desc, ring.avail, ring.used);
    r.setStatus(ALL_OK);
    r.setStatus(ALL_OK | SUSPEND);
    let st = r.status();
    // while it finishes requests in flight the device may still show DRIVER_OK: suspended means SUSPEND=1 and DRIVER_OK=0
    for (let i = 0; i < 100 && !(st & SUSPEND && !(st & Status.DRIVER_OK)) && !(st & Status.DEVICE_NEEDS_RESET); i++) {
      dut.platform.spin(10_000);
      st = r.status();
    }
    if (st & Status.DEVICE_NEEDS_RESET) return; // allowed outcome (status_init.device.11)
    expectThat((st & SUSPEND) !== 0 && (st & Status.DRIVER_OK) === 0, ['status_init.device.11'], 'device neither suspended nor set DEVICE_NEEDS_RESET', 'SUSPEND=1, DRIVER_OK=0', statusNames(st));
    r.ack();
    const resize = (dut.internals?.['model'] as { resize?: (b: number) => void } | undefined)?.resize;
    if (resize) resize.call(dut.internals!['model'], 8 << 20);
    const req = validRequestOnQueue(dut.platform, deviceId);
    ring.chain(0, req.segs);
    ring.publish(0);
    dut.platform.spin(1_000_000);
    expectEqual(ring.usedIdx(), 0, ['status_init.device.8'], 'used a buffer while suspended');
    expectEqual(r.r(Mmio.INTERRUPT_STATUS), 0, ['status_init.device.8', 'status_init.device.9'], 'notification while suspended');
    r.setStatus(ALL_OK);
    st = r.status();
    for (let i = 0; i < 100 && st & SUSPEND; i++) {
      dut.platform.spin(10_000);
      st = r.status();
    }
    expectThat((st & Status.DRIVER_OK) !== 0 || (st & Status.DEVICE_NEEDS_RESET) !== 0, ['status_init.device.12'], 'device did not resume', 'DRIVER_OK or DEVICE_NEEDS_RESET', statusNames(st));
    if (resize) expectThat((r.r(Mmio.INTERRUPT_STATUS) & Mmio.INT_CONFIG) !== 0, ['status_init.device.10'], 'configuration changed while suspended, no notification after resuming');
    r.notify(rq);
    expectThat(ring.run(() => ring.usedIdx() === 1), ['status_init.device.12'], 'device did not process buffers after resuming');
  },
});

// ---------------------------------------------------------------------------- driver side

/** Record the values the driver writes to the Status register. */
defineCheck({
  id: 'status_init.driver.init-sequence',
  title: 'the reference driver initializes in the spec order, one status bit per step, and follows the rules of each step',
  statements: ['status_init.driver.1', 'status_init.driver.6', 'status_init.driver.8', 'status_init.driver.9', 'status_init.driver.12', 'mmio.driver.24', 'mmio.driver.25', 'mmio.driver.29'],
  side: 'driver',
  kind: 'example',
  run(ctx) {
    const dut = ctx.newDevice();
    const sim = simInternals(dut);
    const mon = monitor(dut);
    const s = startRef(ctx, dut);
    s.io(6, ctx.seed);
    s.shutdown();
    const s2 = startRef(ctx, dut);
    s2.io(2, ctx.seed + 1);
    mon.detach();
    mon.assertClean({ side: 'driver' });
    const writes = mon.statusLog.map((w) => w.value);
    const legacy = dut.transport === 'mmio-legacy' || dut.transport === 'pci-legacy';
    const one = legacy ? [0, 1, 3, 7] : [0, 1, 3, 11, 15];
    const seq = writes.slice(0, one.length);
    expectThat(seq.join(',') === one.join(','), ['status_init.driver.1', 'status_init.driver.6'], 'status writes of the initialization', one.map(statusNames).join(' -> '), writes.map(statusNames).join(' -> '));
    expectEqual(sim.core.status, ALL_OK & ~(legacy ? Status.FEATURES_OK : 0), ['status_init.driver.1'], 'device status after initialization', true);
  },
});

defineCheck({
  id: 'status_init.driver.refused-features',
  title: 'when the device refuses FEATURES_OK the driver sets FAILED, never DRIVER_OK, and resets before trying again',
  statements: ['status_init.driver.11', 'status_init.driver.3', 'status_init.driver.2', 'features.driver.7', 'status_init.driver.10'],
  side: 'driver',
  kind: 'example',
  applies: { transports: ['mmio'] },
  run(ctx) {
    let refuse = true;
    const dut = newDeviceWith(ctx, (m) => ({ acceptFeatures: (f: bigint) => !refuse && m.acceptFeatures(f) }));
    const sim = simInternals(dut);
    const mon = monitor(dut);
    const threw = refStartFails(ctx, dut);
    expectThat(threw, ['status_init.driver.11'], 'driver reported success although FEATURES_OK was refused');
    const st = sim.core.status;
    expectEqual(st & Status.DRIVER_OK, 0, ['status_init.driver.11', 'features.driver.7'], 'driver set DRIVER_OK after the refusal');
    expectThat((st & Status.FAILED) !== 0, ['status_init.driver.10'], 'driver did not set FAILED after the refusal', 'FAILED', statusNames(st));
    refuse = false;
    const s = startRef(ctx, dut);
    s.io(2, ctx.seed);
    mon.detach();
    mon.assertClean({ side: 'driver' });
  },
});

defineCheck({
  id: 'status_init.driver.no-version-1',
  title: 'a modern device without VIRTIO_F_VERSION_1 is failed, not driven',
  statements: ['features.driver.7', 'features.driver.10', 'status_init.driver.11'],
  side: 'driver',
  kind: 'example',
  applies: { transports: ['mmio'] },
  run(ctx) {
    const dut = newDeviceWith(ctx, (m) => ({ offeredFeatures: m.offeredFeatures & ~bit(F.VERSION_1) }));
    const sim = simInternals(dut);
    const mon = monitor(dut);
    const threw = refStartFails(ctx, dut);
    expectThat(threw, ['features.driver.7'], 'driver went on without VERSION_1');
    expectThat((sim.core.status & Status.FAILED) !== 0 && (sim.core.status & Status.DRIVER_OK) === 0, ['features.driver.7', 'status_init.driver.11'], 'driver did not fail the device', 'FAILED without DRIVER_OK', statusNames(sim.core.status));
    mon.detach();
    mon.assertClean({ side: 'driver' });
  },
});

defineCheck({
  id: 'status_init.driver.in-flight',
  title: 'the driver never changes in-flight buffers and resets the device before reclaiming its rings',
  statements: ['status_init.driver.13', 'status_init.driver.14'],
  side: 'driver',
  kind: 'example',
  run(ctx) {
    const dut = ctx.newDevice({ params: { latencyNs: 50_000, completionDelayNs: 50_000 } });
    const sim = simInternals(dut);
    const mon = monitor(dut);
    const s = startRef(ctx, dut);
    // reclaiming memory the device may still use: a free of DMA memory while the device is live
    const dma = dut.platform.dma;
    const free = dma.free.bind(dma);
    const ringAreas = sim.core.queues.filter((q) => q.ready).map((q) => [q.desc, q.driver, q.device]).flat();
    let early: string | undefined;
    dma.free = (gpa: number) => {
      if (ringAreas.includes(gpa) && sim.core.status & Status.DRIVER_OK && !early) early = `ring area 0x${gpa.toString(16)} freed with device status ${statusNames(sim.core.status)}`;
      free(gpa);
    };
    s.io(8, ctx.seed);
    if (s.blk) {
      // leave requests in flight, then shut down
      const buf = dut.platform.dma.alloc(4096);
      for (let i = 0; i < 3; i++) s.blk.submit({ type: 0, sector: i * 8, data: [{ addr: buf, len: 4096 }] });
      s.blk.kick();
    }
    s.shutdown();
    dma.free = free;
    mon.detach();
    mon.assertClean({ side: 'driver', statements: ['status_init.driver.13'] });
    expectThat(early === undefined, ['status_init.driver.14'], 'driver reclaimed a ring while the virtqueue was live', 'a reset before freeing', early);
    expectEqual(transportOf(dut).getStatus(), 0, ['status_init.driver.14'], 'device status after shutdown');
  },
});

defineCheck({
  id: 'status_init.device.suspend-drains',
  title: 'with VIRTIO_F_SUSPEND: requests in flight are used before the device reports itself suspended; config writes are ignored while suspended',
  statements: ['status_init.device.13', 'status_init.device.8', 'status_init.device.7'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['blk'], transports: ['mmio'], features: [F.SUSPEND] },
  run(ctx) {
    const dut = ctx.newDevice({ params: { latencyNs: 200_000 } });
    const s = startRef(ctx, dut, { extraRing: bit(F.SUSPEND) });
    if (!s.blk || !(s.dev.features & bit(F.SUSPEND))) throw new CheckSkip('VIRTIO_F_SUSPEND not negotiated');
    const t = transportOf(dut);
    const buf = dut.platform.dma.alloc(4 * 4096);
    const hs: number[] = [];
    for (let i = 0; i < 4; i++) hs.push(s.blk.submit({ type: 0, sector: i * 8, data: [{ addr: buf + i * 4096, len: 4096 }] }));
    s.blk.kick();
    dut.platform.spin(10_000); // the device has taken them; they complete 200 us later
    const vq = s.dev.queue(0);
    const inFlightBefore = vq.inFlight;
    s.dev.suspend();
    // every request taken before the suspend has been used by the time the device says suspended
    s.blk.poll();
    expectThat(inFlightBefore > 0, ['status_init.device.13'], 'no request was in flight when suspending: nothing was exercised');
    expectEqual(vq.inFlight, 0, ['status_init.device.13'], 'requests still in flight when the device reported SUSPEND');
    const cfgBefore = t.readConfig(BlkConfigWriteback, 1);
    t.writeConfig(BlkConfigWriteback, 1, cfgBefore ^ 1);
    expectEqual(t.readConfig(BlkConfigWriteback, 1), cfgBefore, ['status_init.device.7'], 'config write took effect while suspended');
    const usedIdx = dut.platform.mem.read16((vq as unknown as { addresses: { device: number } }).addresses.device + 2);
    dut.platform.spin(1_000_000);
    expectEqual(dut.platform.mem.read16((vq as unknown as { addresses: { device: number } }).addresses.device + 2), usedIdx, ['status_init.device.8'], 'used idx moved while suspended');
    s.dev.resume();
    for (const h of hs) expectEqual(s.blk.wait(h).status, 0, ['status_init.device.13'], 'status of a request completed around the suspend');
    s.io(2, ctx.seed);
    s.shutdown();
  },
});

defineCheck({
  id: 'status_init.driver.suspend',
  title: 'the reference driver suspends only with VIRTIO_F_SUSPEND after DRIVER_OK, waits for SUSPEND=1/DRIVER_OK=0, makes nothing available, notifies nothing and writes no config while suspended, and waits for the device to run again',
  statements: ['status_init.driver.15', 'status_init.driver.16', 'status_init.driver.17', 'status_init.driver.18', 'status_init.driver.19', 'status_init.driver.20'],
  side: 'driver',
  kind: 'example',
  applies: { devices: ['blk'], transports: ['mmio'], features: [F.SUSPEND] },
  run(ctx) {
    // a slow device: suspending and resuming take 300 us of target time
    const dut = ctx.newDevice({ params: { suspendLatencyNs: 300_000, resumeLatencyNs: 300_000, latencyNs: 50_000 } });
    const sim = simInternals(dut);
    const base = (dut.location as { base: number }).base;
    let early: string | undefined;
    sim.machine.bus.addListener((a) => {
      if (a.kind !== 'write' || a.addr < base || a.addr >= base + 0x200) return;
      const reg = a.addr - base;
      if (sim.core.suspendState === 'running') return;
      if (reg === Mmio.QUEUE_NOTIFY && !early) early = `QueueNotify written while the device is ${sim.core.suspendState}`;
      if (reg >= Mmio.CONFIG && !early) early = `config +${reg - Mmio.CONFIG} written while the device is ${sim.core.suspendState}`;
    });
    const s = startRef(ctx, dut, { extraRing: bit(F.SUSPEND) });
    if (!s.blk || !(s.dev.features & bit(F.SUSPEND))) throw new CheckSkip('VIRTIO_F_SUSPEND not negotiated');
    s.io(2, ctx.seed);
    const vq = s.dev.queue(0) as unknown as { addresses: { driver: number } };
    s.dev.suspend();
    expectEqual(sim.core.suspendState, 'suspended', ['status_init.driver.16'], 'state of the device when suspend() returned');
    const availIdx = dut.platform.mem.read16(vq.addresses.driver + 2);
    let refused = 0;
    try {
      s.blk.write(0, new Uint8Array(512).fill(1));
    } catch (e) {
      if (e instanceof UsageError) refused++;
      else throw e;
    }
    try {
      s.blk.setWriteback(false);
    } catch (e) {
      if (e instanceof UsageError) refused++;
      else throw e;
    }
    expectEqual(dut.platform.mem.read16(vq.addresses.driver + 2), availIdx, ['status_init.driver.17'], 'available idx moved while suspended');
    expectThat(early === undefined, ['status_init.driver.18', 'status_init.driver.19'], 'driver touched the device while suspended', 'no notification, no config write', early);
    expectThat(refused >= 1, ['status_init.driver.17'], 'driver accepted I/O while suspended without refusing it');
    s.dev.resume();
    expectEqual(sim.core.suspendState, 'running', ['status_init.driver.20'], 'state of the device when resume() returned');
    s.io(2, ctx.seed + 1);
    expectThat(early === undefined, ['status_init.driver.18', 'status_init.driver.19', 'status_init.driver.20'], 'driver touched the device before it ran again', 'no notification, no config write', early);
    // status_init.driver.15: without VIRTIO_F_SUSPEND negotiated, suspend() does nothing to the device
    const dut2 = ctx.newDevice({ params: { suspend: false } });
    const s2 = startRef(ctx, dut2);
    const before = simInternals(dut2).core.errorCount;
    let threw = false;
    try {
      s2.dev.suspend();
    } catch {
      threw = true;
    }
    expectThat(threw, ['status_init.driver.15'], 'suspend() went ahead without VIRTIO_F_SUSPEND');
    expectEqual(simInternals(dut2).core.status & Status.SUSPEND, 0, ['status_init.driver.15'], 'SUSPEND bit written without VIRTIO_F_SUSPEND');
    expectEqual(simInternals(dut2).core.errorCount, before, ['status_init.driver.15'], 'device recorded a driver error during the refused suspend');
    s.shutdown();
    s2.shutdown();
  },
});
