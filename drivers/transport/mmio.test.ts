import { describe, expect, it } from 'vitest';
import { Machine } from '../../device-models/machine/machine.ts';
import type { AccessSize, RegisterHandler } from '../../device-models/machine/bus.ts';
import { attachVirtioMmio } from '../../device-models/virtio/mmio.ts';
import { EchoModel, ECHO_CONFIG_MAGIC, ECHO_DEVICE_ID } from '../../device-models/virtio/testing/echo.ts';
import { discoverMmio, MmioTransport } from './mmio.ts';
import { F, Mmio, Status, featureSet } from '../../spec-refs/abi/virtio.ts';
import { TimeoutError } from '../../spec-refs/errors.ts';

const RAM = [{ base: 0, size: 8 << 20, name: 'ram' }];

/** A register window that answers fixed values and logs every access. */
class FakeRegs implements RegisterHandler {
  log: string[] = [];
  constructor(private readonly values: Record<number, number>) {}
  read(offset: number, size: AccessSize): number {
    this.log.push(`r${offset.toString(16)}/${size}`);
    return this.values[offset] ?? 0;
  }
  write(offset: number, size: AccessSize, value: number): void {
    this.log.push(`w${offset.toString(16)}/${size}=${value}`);
  }
}

describe('virtio-mmio transport, driver side: probing', () => {
  it('skips a bad MagicValue, a bad Version and DeviceID 0; drives the rest (mmio.driver.6, mmio.driver.8, mmio.driver.10)', () => {
    const m = new Machine({ ram: RAM });
    const badMagic = new FakeRegs({ [Mmio.MAGIC_VALUE]: 0x12345678, [Mmio.VERSION]: 2, [Mmio.DEVICE_ID]: 2 });
    const badVersion = new FakeRegs({ [Mmio.MAGIC_VALUE]: Mmio.MAGIC, [Mmio.VERSION]: 3, [Mmio.DEVICE_ID]: 2 });
    const empty = new FakeRegs({ [Mmio.MAGIC_VALUE]: Mmio.MAGIC, [Mmio.VERSION]: 2, [Mmio.DEVICE_ID]: 0 });
    m.addMmioDevice('bad-magic', badMagic);
    m.addMmioDevice('bad-version', badVersion);
    m.addMmioDevice('empty', empty);
    attachVirtioMmio(m, new EchoModel());
    attachVirtioMmio(m, new EchoModel(), { legacy: true });
    const r = discoverMmio(m.platform);
    expect(r.transports.map((t) => t.kind)).toEqual(['mmio', 'mmio-legacy']);
    expect(r.transports[0]!.deviceType).toBe(ECHO_DEVICE_ID);
    expect(r.skipped.map((s) => s.reason)).toEqual(['bad-magic', 'bad-version', 'no-device']);
    // mmio.driver.24-27: magic and version read first; after DeviceID 0 nothing else is touched
    expect(empty.log).toEqual(['r0/4', 'r4/4', 'r8/4']);
    expect(badMagic.log).toEqual(['r0/4']);
  });

  it('the probe order and every control access are aligned 32-bit (mmio.driver.4)', () => {
    const m = new Machine({ ram: RAM });
    const att = attachVirtioMmio(m, new EchoModel());
    const t = discoverMmio(m.platform).transports[0]!;
    const sizes = new Set<string>();
    m.bus.addListener((a) => {
      if (a.offset < Mmio.CONFIG) sizes.add(`${a.size}/${a.offset % 4}`);
    });
    t.reset();
    t.setStatus(Status.ACKNOWLEDGE);
    t.deviceFeatures();
    t.setDriverFeatures(featureSet(F.VERSION_1));
    t.queueMaxSize(0);
    t.configGeneration();
    expect([...sizes]).toEqual(['4/0']);
    expect(att.transport.badAccessCount).toBe(0);
  });
});

describe('virtio-mmio transport, driver side: operations', () => {
  for (const legacy of [false, true]) {
    it(`${legacy ? 'legacy' : 'v2'}: features, config widths, queue setup, interrupt ack`, () => {
      const m = new Machine({ ram: RAM });
      const model = new EchoModel({ features: legacy ? featureSet(F.EVENT_IDX) : featureSet(F.VERSION_1, F.EVENT_IDX, 70) });
      const att = attachVirtioMmio(m, model, { legacy });
      const t = discoverMmio(m.platform).transports[0]!;
      expect(t.legacy).toBe(legacy);
      expect(t.legacyAlign).toBe(legacy ? 4096 : undefined);
      t.reset();
      expect(t.deviceFeatures()).toBe(legacy ? featureSet(F.EVENT_IDX) : featureSet(F.VERSION_1, F.EVENT_IDX, 70));
      t.setStatus(3);
      t.setDriverFeatures(legacy ? featureSet(F.EVENT_IDX) : featureSet(F.VERSION_1, 70));
      expect(att.core.driverFeatures).toBe(legacy ? featureSet(F.EVENT_IDX) : featureSet(F.VERSION_1, 70));
      expect(t.readConfig(0, 4)).toBe(ECHO_CONFIG_MAGIC);
      expect(t.readConfig(1, 1)).toBe((ECHO_CONFIG_MAGIC >>> 8) & 0xff);
      expect(t.readConfig(2, 2)).toBe(ECHO_CONFIG_MAGIC >>> 16);
      t.writeConfig(8, 4, 0xabcd);
      expect(model.scratch).toBe(0xabcd);
      expect(t.configGeneration()).toBe(0);
      expect(t.queueMaxSize(0)).toBe(256);
      expect(t.queueMaxSize(5)).toBe(0);
      model.bumpConfig(); // a device-side change before DRIVER_OK: a new generation (none on legacy)
      expect(t.configGeneration()).toBe(legacy ? 0 : 1);
      expect(t.readConfig(4, 4)).toBe(1);
      expect(t.ackInterrupt(att.vector)).toEqual({ used: false, config: false });
    });
  }

  it('ackInterrupt reads the cause, acknowledges exactly those bits and lowers the line (mmio.driver.30, mmio.driver.32)', () => {
    const m = new Machine({ ram: RAM });
    const att = attachVirtioMmio(m, new EchoModel());
    const t = discoverMmio(m.platform).transports[0]!;
    att.transport.usedBuffer();
    att.transport.configChange();
    const acks: number[] = [];
    m.bus.addListener((a) => {
      if (a.kind === 'write' && a.offset === Mmio.INTERRUPT_ACK) acks.push(a.value);
    });
    expect(t.ackInterrupt(att.vector)).toEqual({ used: true, config: true });
    expect(acks).toEqual([3]);
    expect(att.line.asserted).toBe(false);
  });

  it('reset and queue waits are bounded: a device whose status never reads 0 gives a TimeoutError', () => {
    const m = new Machine({ ram: RAM });
    m.addMmioDevice('stuck', new FakeRegs({ [Mmio.MAGIC_VALUE]: Mmio.MAGIC, [Mmio.VERSION]: 2, [Mmio.DEVICE_ID]: 2, [Mmio.STATUS]: 1, [Mmio.QUEUE_READY]: 1, [Mmio.QUEUE_RESET]: 1 }));
    const r = MmioTransport.probe(m.platform, m.platform.devices()[0]!, { maxPolls: 10 });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(() => r.transport.reset()).toThrow(TimeoutError);
    expect(() => r.transport.resetQueue(0)).toThrow(TimeoutError);
    expect(() => r.transport.disableQueue(0)).toThrow(TimeoutError);
  });
});
