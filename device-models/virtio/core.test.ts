import { describe, expect, it } from 'vitest';
import { Machine } from '../machine/machine.ts';
import { VirtioCore, registerRingLayout, ringLayout, type CoreQueue, type RingLayout, type TransportSignals } from './core.ts';
import { EchoModel } from './testing/echo.ts';
import { RawSplitRing, D_NEXT, D_WRITE, RAW_RAM } from './testing/raw-ring.ts';
import { F, Status, bit, featureSet, featureWord } from '../../spec-refs/abi/virtio.ts';
import type { Chain } from './model.ts';

class Signals implements TransportSignals {
  used: number[] = [];
  config = 0;
  resets = 0;
  usedBuffer(i: number): void {
    this.used.push(i);
  }
  configChange(): void {
    this.config++;
  }
  reset(): void {
    this.resets++;
  }
}

function mk(opts: ConstructorParameters<typeof EchoModel>[0] = {}, core: { legacy?: boolean; notifyLatencyNs?: number; transportFeatures?: bigint } = {}) {
  const m = new Machine({ ram: RAW_RAM });
  const model = new EchoModel(opts);
  const c = new VirtioCore(m.mem, m.scheduler, model, core);
  const sig = new Signals();
  c.attach(sig);
  return { m, model, c, sig };
}

function negotiate(c: VirtioCore, f: bigint): void {
  c.writeStatus(Status.ACKNOWLEDGE | Status.DRIVER);
  for (let sel = 0; sel < 4; sel++) c.writeDriverFeatureWord(sel, featureWord(f, sel));
  c.writeStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
}

function ring(c: VirtioCore, m: Machine, q: number, base: number, size = 8): RawSplitRing {
  const r = new RawSplitRing(m.mem, base, size);
  c.setQueueSize(q, size);
  c.setQueueArea(q, 'desc', r.desc);
  c.setQueueArea(q, 'driver', r.avail);
  c.setQueueArea(q, 'device', r.used);
  c.setQueueReady(q, true);
  return r;
}

const OK = Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK;

describe('VirtioCore', () => {
  it('negotiates features above bit 63 through the 32-bit windows', () => {
    const f = featureSet(F.VERSION_1, 70, 100);
    const { c } = mk({ features: f });
    expect(c.deviceFeatureWord(2)).toBe(1 << 6);
    expect(c.deviceFeatureWord(3)).toBe(1 << 4);
    negotiate(c, f);
    expect(c.status & Status.FEATURES_OK).toBe(Status.FEATURES_OK);
    expect(c.features).toBe(f);
  });

  it('masks what the transport cannot carry (both ring layouts are implemented, so RING_PACKED stays)', () => {
    const { c } = mk({ features: featureSet(F.VERSION_1, F.RING_PACKED, F.RING_RESET) }, { transportFeatures: ~bit(F.RING_RESET) });
    expect(c.deviceFeatures).toBe(featureSet(F.VERSION_1, F.RING_PACKED));
  });

  it('legacy offers only the low 32 bits', () => {
    const { c } = mk({ features: featureSet(F.VERSION_1, F.EVENT_IDX) }, { legacy: true });
    expect(c.deviceFeatures).toBe(featureSet(F.EVENT_IDX));
  });

  it('notify runs the model on the scheduler after the latency, coalescing notifications while one is pending', () => {
    const { m, c, model } = mk({}, { notifyLatencyNs: 5000 });
    negotiate(c, featureSet(F.VERSION_1));
    const r = ring(c, m, 0, 0x10000);
    c.writeStatus(OK);
    const calls: number[] = [];
    const orig = model.queueNotify.bind(model);
    model.queueNotify = (i) => {
      calls.push(m.scheduler.now);
      orig(i);
    };
    r.setDesc(0, 0x20_0000, 1, D_NEXT, 1);
    r.setDesc(1, 0x20_1000, 1, D_WRITE);
    r.publish(0);
    c.notify(0);
    c.notify(0);
    c.notify(0);
    m.scheduler.runFor(4999);
    expect(calls).toEqual([]);
    m.scheduler.runFor(10_000);
    expect(calls).toEqual([5000]);
    expect(c.stats.notifies).toBe(3);
    expect(r.usedIdx).toBe(1);
  });

  it('a model that throws sets DEVICE_NEEDS_RESET (nothing escapes to the bus or the scheduler)', () => {
    const { m, c, model, sig } = mk();
    negotiate(c, featureSet(F.VERSION_1));
    ring(c, m, 0, 0x10000);
    c.writeStatus(OK);
    model.queueNotify = () => {
      throw new Error('bug in model');
    };
    c.notify(0);
    expect(() => m.scheduler.runFor(1000)).not.toThrow();
    expect(c.status & Status.DEVICE_NEEDS_RESET).toBe(Status.DEVICE_NEEDS_RESET);
    expect(sig.config).toBe(1);
    expect(c.needsResetReason?.message).toContain('bug in model');
  });

  it('after reset the old context and its queues are inert (status_init.device.5)', () => {
    const { m, c, model, sig } = mk();
    negotiate(c, featureSet(F.VERSION_1));
    const r = ring(c, m, 0, 0x10000);
    c.writeStatus(OK);
    r.setDesc(0, 0x20_0000, 1, D_NEXT, 1);
    r.setDesc(1, 0x20_1000, 1, D_WRITE);
    r.publish(0);
    const ctx = model.ctx!;
    const q = ctx.queue(0);
    const chain = q.pop()!;
    c.writeStatus(0);
    expect(sig.resets).toBe(1);
    q.push(chain, 1);
    q.flush();
    ctx.configChanged();
    ctx.needsReset(new Error('late') as never);
    expect(r.usedIdx).toBe(0);
    expect(sig.used).toEqual([]);
    expect(sig.config).toBe(0);
    expect(c.status).toBe(0);
    expect(ctx.queue(0).pop()).toBeNull();
  });

  it('queues the driver did not enable are dead to the model, and out-of-range queue indices too', () => {
    const { m, c, model } = mk({ numQueues: 3 });
    negotiate(c, featureSet(F.VERSION_1));
    ring(c, m, 0, 0x10000);
    c.writeStatus(OK);
    expect(model.ctx!.queue(1).pop()).toBeNull();
    expect(model.ctx!.queue(99).pop()).toBeNull();
    model.ctx!.queue(1).push({} as Chain, 5);
  });

  it('a used notification is only sent after DRIVER_OK (status_init.device.1)', () => {
    const { c, sig } = mk();
    c.signalUsed(0);
    expect(sig.used).toEqual([]);
  });

  it('a registered packed layout is chosen when RING_PACKED is negotiated (the seam for packed-queue.ts)', () => {
    const created: string[] = [];
    const fake: RingLayout = {
      name: 'packed',
      validate: () => null,
      create: (_host, cfg): CoreQueue => {
        created.push(`packed q${cfg.index} size ${cfg.size}`);
        return { layout: 'packed', index: cfg.index, size: cfg.size, pop: () => null, push: () => {}, flush: () => {}, disableNotify: () => {}, enableNotify: () => true, stop: () => {} };
      },
    };
    const real = ringLayout('packed'); // packed-queue.ts, built in
    registerRingLayout(fake); // this test file runs in its own module graph (vitest isolation)
    try {
      const { c } = mk({ features: featureSet(F.VERSION_1, F.RING_PACKED) });
      expect(c.deviceFeatures).toBe(featureSet(F.VERSION_1, F.RING_PACKED));
      negotiate(c, featureSet(F.VERSION_1, F.RING_PACKED));
      c.setQueueSize(0, 100); // packed sizes need not be powers of two: the layout decides
      c.setQueueArea(0, 'desc', 0x10000);
      c.setQueueReady(0, true);
      c.writeStatus(OK);
      expect(created).toEqual(['packed q0 size 100']);
      expect(c.ring(0)?.layout).toBe('packed');
    } finally {
      if (real) registerRingLayout(real);
    }
  });

  it('a model bound to the core can change its config before DRIVER_OK: new generation, no interrupt yet', () => {
    const { c, model, sig } = mk();
    const g = c.generation;
    model.bumpConfig();
    expect(c.generation).not.toBe(g);
    expect(sig.config).toBe(0);
  });

  describe('VIRTIO_F_SUSPEND', () => {
    const SUS = featureSet(F.VERSION_1, F.SUSPEND);
    it('ignores SUSPEND before DRIVER_OK or when not negotiated (status_init.device.6)', () => {
      const { m, c } = mk({ features: SUS });
      negotiate(c, SUS);
      c.writeStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.SUSPEND);
      expect(c.status & Status.SUSPEND).toBe(0);
      const o = mk({ features: SUS });
      negotiate(o.c, featureSet(F.VERSION_1));
      ring(o.c, o.m, 0, 0x10000);
      o.c.writeStatus(OK);
      o.c.writeStatus(OK | Status.SUSPEND);
      o.m.scheduler.runFor(100_000);
      expect(o.c.status & Status.SUSPEND).toBe(0);
      expect(o.c.suspendState).toBe('running');
      void m;
    });
    it('finishes requests in flight, then reports SUSPEND without DRIVER_OK; takes nothing while suspended; resumes on DRIVER_OK (status_init.device.8, .11, .12, .13)', () => {
      const { m, c, sig } = mk({ features: SUS, completionDelayNs: 50_000 });
      negotiate(c, SUS);
      const r = ring(c, m, 0, 0x10000);
      c.writeStatus(OK);
      r.setDesc(0, 0x20_0000, 1, D_NEXT, 1);
      r.setDesc(1, 0x20_1000, 1, D_WRITE);
      r.publish(0);
      c.notify(0);
      m.scheduler.runFor(1000); // taken, completes at +50 us
      c.writeStatus(OK | Status.SUSPEND);
      expect(c.suspendState).toBe('suspending');
      expect(c.status & Status.DRIVER_OK).toBe(Status.DRIVER_OK);
      m.scheduler.runFor(10_000);
      expect(c.suspendState).toBe('suspending'); // still in flight
      m.scheduler.runFor(100_000);
      expect(r.usedIdx).toBe(1);
      expect(c.suspendState).toBe('suspended');
      expect(c.status & (Status.SUSPEND | Status.DRIVER_OK)).toBe(Status.SUSPEND);
      // a buffer made available while suspended is not taken, and a notification is dropped and recorded
      r.setDesc(2, 0x20_2000, 1, D_NEXT, 3);
      r.setDesc(3, 0x20_3000, 1, D_WRITE);
      r.publish(2);
      const used = sig.used.length;
      c.notify(0);
      m.scheduler.runFor(100_000);
      expect(r.usedIdx).toBe(1);
      expect(sig.used.length).toBe(used);
      expect(c.errors.some((e) => e.error.code === 'notify.suspended')).toBe(true);
      // a config change while suspended is notified on resume (status_init.device.10)
      const cfg = sig.config;
      c.configChanged();
      expect(sig.config).toBe(cfg);
      c.writeStatus(OK | Status.SUSPEND);
      m.scheduler.runFor(1000);
      expect(c.suspendState).toBe('running');
      expect(c.status & (Status.SUSPEND | Status.DRIVER_OK)).toBe(Status.DRIVER_OK);
      expect(sig.config).toBe(cfg + 1);
      m.scheduler.runFor(100_000);
      expect(r.usedIdx).toBe(2);
    });
    it('sets DEVICE_NEEDS_RESET when requests in flight never finish (status_init.device.11)', () => {
      const { m, c } = mk({ features: SUS, completionDelayNs: 1e9 });
      negotiate(c, SUS);
      const r = ring(c, m, 0, 0x10000);
      c.writeStatus(OK);
      r.setDesc(0, 0x20_0000, 1, D_NEXT, 1);
      r.setDesc(1, 0x20_1000, 1, D_WRITE);
      r.publish(0);
      c.notify(0);
      m.scheduler.runFor(1000);
      c.writeStatus(OK | Status.SUSPEND);
      m.scheduler.runFor(20_000_000);
      expect(c.status & Status.DEVICE_NEEDS_RESET).toBe(Status.DEVICE_NEEDS_RESET);
    });
  });
});
