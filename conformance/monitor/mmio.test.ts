/**
 * virtio-mmio register rules (mmio.ts) and the config-space size (device-config.ts) on a hostile driver.
 */
import { describe, expect, it } from 'vitest';
import { Machine } from '../../device-models/machine/machine.ts';
import { attachVirtioMmio } from '../../device-models/virtio/mmio.ts';
import { VirtioBlkDevice } from '../../device-models/blk/device.ts';
import { RamDisk } from '../../device-models/blk/backend.ts';
import { Mmio } from '../../spec-refs/abi/virtio.ts';
import { attachMonitor } from '../monitor.ts';
import { RawMmio, RawSplitRing } from '../hostile.ts';
import { hostile, sim, statements } from './test-support.ts';

describe('monitor: each driver rule fires on a hostile driver', () => {
  it('mmio registers: width, read-only, write-only, size above max, queue registers while ready, ack bits, unknown offset', () => {
    const { m, raw, mon } = hostile();
    m.platform.mmioRead(raw.base + Mmio.STATUS, 2);
    raw.w(Mmio.MAGIC_VALUE, 1);
    raw.r(Mmio.QUEUE_SEL);
    raw.r(0x0f0);
    expect(statements(mon)).toEqual(['mmio.driver.1', 'mmio.driver.2', 'mmio.driver.3', 'mmio.driver.4']);
    raw.negotiate((o) => o);
    const max = raw.queueMax(0);
    raw.w(Mmio.QUEUE_NUM, max * 2);
    const ring = new RawSplitRing(m.platform, 8);
    raw.setupQueue(0, 8, ring.desc, ring.avail, ring.used);
    raw.w(Mmio.QUEUE_NUM, 4);
    raw.w(Mmio.INTERRUPT_ACK, 0x10);
    expect(statements(mon)).toEqual(['mmio.driver.1', 'mmio.driver.14', 'mmio.driver.15', 'mmio.driver.2', 'mmio.driver.20', 'mmio.driver.3', 'mmio.driver.4']);
  });

  it('config access beyond the config space a device type defines', () => {
    const m = new Machine({ ram: [{ base: 0, size: 8 << 20 }] });
    const dev = attachVirtioMmio(m, new VirtioBlkDevice({ backend: new RamDisk(1 << 20) }));
    const mon = attachMonitor(m);
    const raw = new RawMmio(m.platform, dev.base);
    raw.probe();
    raw.config32(92);
    expect(statements(mon)).toEqual([]);
    raw.config32(96);
    expect(statements(mon)).toEqual(['mmio.driver.1']);
  });

  it('writes before reading MagicValue/Version', () => {
    const { m, dev } = sim();
    const mon = attachMonitor(m);
    new RawMmio(m.platform, dev.base).setStatus(0);
    expect(statements(mon)).toEqual(['mmio.driver.24']);
  });
});
