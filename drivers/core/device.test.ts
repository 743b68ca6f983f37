import { describe, expect, it } from 'vitest';
import { Machine } from '../../device-models/machine/machine.ts';
import { attachVirtioMmio } from '../../device-models/virtio/mmio.ts';
import { ECHO_CONFIG_MAGIC, ECHO_DEVICE_ID, EchoModel, type EchoOptions } from '../../device-models/virtio/testing/echo.ts';
import { discoverMmio, type MmioTransport } from '../transport/mmio.ts';
import { VirtioDriverDevice } from './device.ts';
import { F, Status, bit, featureSet } from '../../spec-refs/abi/virtio.ts';
import { DeviceMisbehaviourError, DeviceNeedsResetError, NegotiationError, TimeoutError } from '../../spec-refs/errors.ts';

function setup(opts: EchoOptions & { legacy?: boolean; latency?: number } = {}) {
  const m = new Machine();
  const model = new EchoModel(opts);
  const dev = attachVirtioMmio(m, model, { legacy: opts.legacy, notifyLatencyNs: opts.latency ?? 500 });
  const found = discoverMmio(m.platform);
  expect(found.transports).toHaveLength(1);
  return { m, model, dev, t: found.transports[0]! as MmioTransport };
}

const ALL = featureSet(F.VERSION_1, F.INDIRECT_DESC, F.EVENT_IDX);

/** Post `data`, wait for the echo, return the bytes the device wrote back. */
function echo(m: Machine, d: VirtioDriverDevice, q: number, data: Uint8Array, split = 1): Uint8Array {
  const src = m.dma.alloc(data.length);
  const dst = m.dma.alloc(data.length);
  m.mem.writeBytes(src, data);
  const part = Math.ceil(data.length / split);
  const out = [];
  const inp = [];
  for (let o = 0; o < data.length; o += part) {
    out.push({ addr: src + o, len: Math.min(part, data.length - o) });
    inp.push({ addr: dst + o, len: Math.min(part, data.length - o) });
  }
  const vq = d.queue<string>(q);
  expect(vq.add(out, inp, 'tok')).toBe(true);
  vq.kick();
  const u = d.waitUsed<string>(q);
  expect(u.token).toBe('tok');
  expect(u.len).toBe(data.length);
  const back = m.mem.readBytes(dst, data.length);
  m.dma.free(src);
  m.dma.free(dst);
  return back;
}

describe('end to end: driver init + virtio-mmio + split ring + echo device', () => {
  for (const legacy of [false, true]) {
    it(`${legacy ? 'legacy v1' : 'v2'}: negotiates, sets up queues, echoes data (status_init.driver.6)`, () => {
      const { m, model, t, dev } = setup({ legacy, features: legacy ? featureSet(F.INDIRECT_DESC, F.EVENT_IDX) : ALL });
      expect(t.deviceType).toBe(ECHO_DEVICE_ID);
      expect(t.legacy).toBe(legacy);
      const d = VirtioDriverDevice.init(m.platform, t, { features: ALL, queues: 2 });
      expect(dev.core.status).toBe(Status.ACKNOWLEDGE | Status.DRIVER | Status.DRIVER_OK | (legacy ? 0 : Status.FEATURES_OK));
      expect(model.activations).toBe(1);
      expect(d.features & bit(F.INDIRECT_DESC)).toBe(bit(F.INDIRECT_DESC));
      if (!legacy) expect(d.features & bit(F.VERSION_1)).toBe(bit(F.VERSION_1));
      else expect(d.features >> 32n).toBe(0n);
      expect(d.config32(0)).toBe(ECHO_CONFIG_MAGIC);
      const data = new Uint8Array(3000).map((_, i) => (i * 7) & 0xff);
      expect(echo(m, d, 0, data)).toEqual(data);
      expect(echo(m, d, 1, data, 3)).toEqual(data);
      expect(model.completed).toBe(2);
      expect(dev.core.errors.filter((e) => e.fatal)).toEqual([]);
      expect(dev.transport.badAccessCount).toBe(0);
      d.shutdown();
      expect(dev.core.status).toBe(0);
    });
  }

  it('features: the driver takes only what is offered, always VERSION_1 (features.driver.1, features.driver.9)', () => {
    const { m, t } = setup({ features: featureSet(F.VERSION_1, F.EVENT_IDX) });
    const d = VirtioDriverDevice.init(m.platform, t, { features: featureSet(F.INDIRECT_DESC, F.EVENT_IDX) });
    expect(d.features).toBe(featureSet(F.VERSION_1, F.EVENT_IDX));
  });

  it('a device that refuses FEATURES_OK fails init clearly and is marked FAILED (status_init.driver.9, status_init.driver.10)', () => {
    const { m, t, dev } = setup({ refuse: (f) => (f & bit(F.EVENT_IDX)) !== 0n });
    expect(() => VirtioDriverDevice.init(m.platform, t, { features: ALL })).toThrow(NegotiationError);
    expect(dev.core.status & Status.FAILED).toBe(Status.FAILED);
    expect(dev.core.status & Status.FEATURES_OK).toBe(0);
    // and succeeds after a reset with features the device takes
    const d = VirtioDriverDevice.init(m.platform, t, { features: featureSet(F.INDIRECT_DESC) });
    expect(d.features).toBe(featureSet(F.VERSION_1, F.INDIRECT_DESC));
  });

  it('a modern device without VERSION_1 is refused (features.driver.10)', () => {
    const { m, t, dev } = setup({ features: featureSet(F.INDIRECT_DESC) });
    expect(() => VirtioDriverDevice.init(m.platform, t, { features: ALL })).toThrow(NegotiationError);
    expect(dev.core.status & Status.FAILED).toBe(Status.FAILED);
  });

  it('a missing queue (QueueSizeMax 0) fails init unless optional', () => {
    const { m, t } = setup({ numQueues: 1 });
    expect(() => VirtioDriverDevice.init(m.platform, t, { features: ALL, queues: 2 })).toThrow(DeviceMisbehaviourError);
    const d = VirtioDriverDevice.init(m.platform, t, { features: ALL, queues: 2, optionalQueues: [1] });
    expect(d.queues.size).toBe(1);
  });

  it('a device that never completes produces a TimeoutError, not a hang', () => {
    const { m, t, model } = setup();
    const d = VirtioDriverDevice.init(m.platform, t, { features: ALL, timeoutNs: 1_000_000 });
    model.queueNotify = () => {};
    const buf = m.dma.alloc(64);
    d.queue(0).add([{ addr: buf, len: 8 }], [{ addr: buf + 8, len: 8 }], 1);
    d.queue(0).kick();
    expect(() => d.waitUsed(0)).toThrow(TimeoutError);
  });

  it('DEVICE_NEEDS_RESET reaches the driver as a DeviceNeedsResetError through the config interrupt (status_init.device.3)', () => {
    const { m, t, model } = setup();
    const d = VirtioDriverDevice.init(m.platform, t, { features: ALL });
    const buf = m.dma.alloc(64);
    d.queue(0).add([{ addr: buf, len: 8 }], [{ addr: buf + 8, len: 8 }], 1);
    model.queueNotify = () => model.ctx!.needsReset(new DeviceMisbehaviourError('x', 'model gave up') as never);
    d.queue(0).kick();
    expect(() => d.waitUsed(0)).toThrow(DeviceNeedsResetError);
    expect(d.needsReset).toBe(true);
    expect(d.stats.configInterrupts).toBe(1);
  });

  it('reads config through the generation loop, and gives up on a generation that never settles (config_space.driver.2)', () => {
    const { m, t, model, dev } = setup();
    const d = VirtioDriverDevice.init(m.platform, t, { features: ALL, configRetries: 5 });
    let bumps = 0;
    // the device changes its config once while the driver reads: one retry, then a stable value
    const v = d.readConfigStable((tr) => {
      if (bumps++ === 0) model.bumpConfig();
      return tr.readConfig(4, 4);
    });
    expect(v).toBe(1);
    expect(bumps).toBe(2);
    expect(dev.core.generation).toBe(1);
    expect(() => d.readConfigStable((tr) => (model.bumpConfig(), tr.readConfig(4, 4)))).toThrow(DeviceMisbehaviourError);
  });

  it('a device that needs a reset at DRIVER_OK makes init fail with DeviceNeedsResetError, marked FAILED', () => {
    const { m, t, model, dev } = setup();
    model.activate = (ctx) => ctx.needsReset(new DeviceMisbehaviourError('x', 'cannot start') as never);
    expect(() => VirtioDriverDevice.init(m.platform, t, { features: ALL })).toThrow(DeviceNeedsResetError);
    expect(dev.core.status & Status.FAILED).toBe(Status.FAILED);
  });

  it('one device broken by a hostile chain does not stop another device (ROBUSTNESS: other devices keep working)', () => {
    const m = new Machine();
    const a = attachVirtioMmio(m, new EchoModel(), { notifyLatencyNs: 200 });
    attachVirtioMmio(m, new EchoModel(), { notifyLatencyNs: 200 });
    const [ta, tb] = discoverMmio(m.platform).transports;
    const da = VirtioDriverDevice.init(m.platform, ta!, { features: ALL });
    const db = VirtioDriverDevice.init(m.platform, tb!, { features: ALL });
    const buf = m.dma.alloc(64);
    // device A: the driver side is fine, but the descriptor is corrupted before the kick (a loop)
    da.queue(0).add([{ addr: buf, len: 8 }], [{ addr: buf + 8, len: 8 }], 1);
    const qa = (da.queues.get(0) as unknown as { addresses: { desc: number } }).addresses;
    m.mem.write16(qa.desc + 12, 1); // NEXT
    m.mem.write16(qa.desc + 14, 0); // -> itself
    da.queue(0).kick();
    expect(() => da.waitUsed(0)).toThrow(DeviceNeedsResetError);
    expect(a.core.errors.filter((e) => e.fatal).map((e) => e.error.code)).toEqual(['split.chain_loop']);
    // device B still works, and A recovers after a reset and re-init
    const data = new Uint8Array([1, 2, 3]);
    expect(echo(m, db, 0, data)).toEqual(data);
    da.shutdown();
    const da2 = VirtioDriverDevice.init(m.platform, ta!, { features: ALL });
    expect(echo(m, da2, 0, data)).toEqual(data);
  });

  it('polling with interrupts disabled: pollUntil finds completions without interrupts', () => {
    const { m, t, dev } = setup();
    const d = VirtioDriverDevice.init(m.platform, t, { features: ALL });
    const vq = d.queue<number>(0);
    vq.disableInterrupts();
    const buf = m.dma.alloc(64);
    vq.add([{ addr: buf, len: 8 }], [{ addr: buf + 8, len: 8 }], 7);
    vq.kick();
    let u: { token: number; len: number } | null = null;
    d.pollUntil(() => (u = vq.getUsed()) !== null, 'completion', 100);
    expect(u).toEqual({ token: 7, len: 8 });
    expect(d.stats.interrupts).toBe(0);
    expect(dev.core.stats.usedSignals).toBe(0);
  });

  it('an interrupt storm (line stuck high, nothing to acknowledge) ends in a TimeoutError', () => {
    const { m, t, dev } = setup();
    const d = VirtioDriverDevice.init(m.platform, t, { features: ALL });
    d.dispatcher.maxInterruptsPerWait = 1000;
    dev.line.assert(); // InterruptStatus stays 0: the driver acknowledges nothing
    expect(() => d.waitUntil(() => false, 'nothing')).toThrow(TimeoutError);
    expect(d.stats.spuriousInterrupts).toBeGreaterThan(100);
    d.dispatcher.maxInterruptsPerWait = 100_000;
  });

  it('RING_RESET: the driver resets one queue and sets it up again while the other keeps working (vq_reset.driver.1, vq_reset.driver.3, vq_reset.device.1)', () => {
    const { m, t, dev, model } = setup({ features: featureSet(F.VERSION_1, F.RING_RESET, F.EVENT_IDX), completionDelayNs: 1_000_000 });
    const d = VirtioDriverDevice.init(m.platform, t, { features: featureSet(F.RING_RESET, F.EVENT_IDX), queues: 2 });
    const buf = m.dma.alloc(64);
    d.queue(0).add([{ addr: buf, len: 8 }], [{ addr: buf + 8, len: 8 }], 'lost');
    d.queue(0).kick();
    m.platform.spin(10_000); // taken by the device, completion pending
    const oldUsed = (d.queues.get(0) as unknown as { addresses: { device: number } }).addresses.device;
    expect(d.resetQueue(0)).toEqual(['lost']);
    const completed = model.completed;
    m.platform.spin(2_000_000); // the late completion must not touch the old ring or the buffer
    expect(m.mem.read16(oldUsed + 2)).toBe(0);
    expect(model.completed).toBe(completed);
    expect(m.mem.read32(buf + 8)).toBe(0);
    expect(dev.core.queueConfig(0)!.ready).toBe(true);
    const data = new Uint8Array([4, 5, 6]);
    expect(echo(m, d, 0, data)).toEqual(data);
    expect(echo(m, d, 1, data)).toEqual(data);
    expect(dev.core.errors.filter((e) => e.fatal)).toEqual([]);
  });
});

describe('VirtioDriverDevice suspend / resume (VIRTIO_F_SUSPEND)', () => {
  it('waits for SUSPEND=1/DRIVER_OK=0, blocks kicks and config writes while suspended, waits for the device to run again (status_init.driver.15-20)', () => {
    const { m, dev, t } = setup({ features: featureSet(F.VERSION_1, F.SUSPEND) });
    dev.core.suspendLatencyNs = 200_000;
    dev.core.resumeLatencyNs = 200_000;
    const d = VirtioDriverDevice.init(m.platform, t, { features: bit(F.SUSPEND), queues: 1 });
    expect(echo(m, d, 0, new Uint8Array([1, 2, 3]))).toEqual(new Uint8Array([1, 2, 3]));
    d.suspend();
    expect(dev.core.suspendState).toBe('suspended');
    expect(d.suspended).toBe(true);
    const vq = d.queue<string>(0);
    const src = m.dma.alloc(8);
    vq.add([{ addr: src, len: 8 }], [{ addr: src, len: 8 }], 'x');
    expect(() => vq.kick()).toThrow(/suspended/);
    expect(() => d.writeConfig(0, 1, 0)).toThrow(/suspended/);
    d.resume();
    expect(dev.core.suspendState).toBe('running');
    vq.kick();
    expect(d.waitUsed<string>(0).token).toBe('x');
    expect(dev.core.errors.filter((e) => e.error.code.includes('suspend'))).toEqual([]);
  });
  it('refuses to suspend without VIRTIO_F_SUSPEND (status_init.driver.15)', () => {
    const { m, dev, t } = setup({ features: featureSet(F.VERSION_1) });
    const d = VirtioDriverDevice.init(m.platform, t, { features: bit(F.SUSPEND), queues: 1 });
    expect(() => d.suspend()).toThrow(/VIRTIO_F_SUSPEND/);
    expect(dev.core.status & Status.SUSPEND).toBe(0);
  });
});

