/**
 * Packed ring rules (packed-ring.ts) on a hostile driver or device.
 */
import { describe, expect, it } from 'vitest';
import { F, Mmio, featureSet } from '../../spec-refs/abi/virtio.ts';
import { attachMonitor } from '../monitor.ts';
import { RawMmio } from '../hostile.ts';
import { PACKED, livePacked, sim, statements } from './test-support.ts';

describe('monitor: each packed-ring rule fires on a hostile driver or device', () => {
  it('areas misaligned (packed.driver.1)', () => {
    const { m, dev } = sim({ features: PACKED });
    const mon = attachMonitor(m);
    const raw = new RawMmio(m.platform, dev.base);
    raw.probe();
    raw.negotiate((o) => o);
    const base = m.dma.alloc(4096, 16);
    raw.setupQueue(0, 8, base + 8, base + 2048 + 2, base + 3072);
    expect(statements(mon)).toEqual(['packed.driver.1']);
  });

  it('a well-formed list passes; readable after writable (packed.driver.8), INDIRECT unnegotiated (packed.driver.12), INDIRECT with NEXT (packed.driver.15)', () => {
    const { m, mon, raw, put, run } = livePacked(featureSet(F.VERSION_1, F.RING_PACKED));
    const buf = m.dma.alloc(256);
    put(0, buf, 16, 7, 0x1);
    put(1, buf + 64, 16, 7, 0x2);
    raw.notify(0);
    run();
    expect(statements(mon)).toEqual([]);
    expect(mon.stats).toMatchObject({ chains: 1, used: 1 });
    put(2, buf + 64, 16, 8, 0x2 | 0x1);
    put(3, buf, 16, 8, 0x0);
    put(4, buf + 128, 16, 9, 0x4 | 0x1);
    put(5, buf, 16, 9, 0x2);
    raw.notify(0);
    expect(statements(mon)).toEqual(['packed.driver.12', 'packed.driver.15', 'packed.driver.8']);
  });

  it('flags other than WRITE inside an indirect table (packed.driver.13)', () => {
    const { m, mon, raw, put } = livePacked();
    const buf = m.dma.alloc(256);
    const table = m.dma.alloc(32, 16);
    m.mem.write32(table, buf);
    m.mem.write32(table + 8, 16);
    m.mem.write16(table + 14, 0x1); // NEXT inside an indirect table
    m.mem.write32(table + 16, buf + 64);
    m.mem.write32(table + 24, 16);
    m.mem.write16(table + 30, 0x2);
    put(0, table, 32, 1, 0x4);
    raw.notify(0);
    expect(statements(mon)).toEqual(['packed.driver.13']);
  });

  it('head available before the rest of its list (packed.driver.11), a list longer than the queue (packed.driver.7)', () => {
    const a = livePacked();
    const buf = a.m.dma.alloc(64);
    a.put(0, buf, 16, 1, 0x1);
    a.put(1, buf, 16, 1, 0x0, false); // not made available (wrong AVAIL/USED for this wrap)
    a.raw.notify(0);
    expect(statements(a.mon)).toEqual(['packed.driver.11']);
    const b = livePacked(PACKED, 4);
    for (let i = 0; i < 4; i++) b.put(i, buf, 16, 1, 0x1);
    b.raw.notify(0);
    expect(statements(b.mon)).toEqual(['packed.driver.7']);
  });

  it('with NOTIFICATION_DATA the notification names the next position and wrap (packed.driver.4)', () => {
    const f = PACKED | featureSet(F.NOTIFICATION_DATA);
    const { m, mon, raw, put } = livePacked(f);
    const buf = m.dma.alloc(64);
    put(0, buf, 16, 1, 0x2);
    raw.w(Mmio.QUEUE_NOTIFY, (1 << 31) | (1 << 16) | 0); // next_off 1, wrap 1: right
    expect(statements(mon)).toEqual([]);
    put(1, buf, 16, 2, 0x2);
    raw.w(Mmio.QUEUE_NOTIFY, (1 << 31) | (1 << 16) | 0); // still says 1: wrong
    expect(statements(mon)).toEqual(['packed.driver.4']);
  });

  it('device side: a used descriptor for an id never made available (packed.device.6), a write into a readable buffer (packed.device.4)', () => {
    const { m, mon, raw, put, run, desc, AV, US } = livePacked();
    const buf = m.dma.alloc(64);
    m.mem.fill(buf, 64, 0x5a);
    put(0, buf, 64, 3, 0x0);
    raw.notify(0);
    // a "device" scribbles the readable buffer and writes a used descriptor with a foreign id, in device time
    (mon as unknown as { deviceTime<T>(f: () => T): T }).deviceTime(() => {
      m.mem.write8(buf + 5, 0);
      m.mem.write16(desc + 12, 99);
      m.mem.write16(desc + 14, AV | US);
    });
    expect(statements(mon)).toEqual(['packed.device.4', 'packed.device.6']);
    run();
  });
});

describe('monitor: the remaining new rules fire too', () => {
  it('packed: the driver rewrites a readable buffer in flight (status_init.driver.13), a descriptor outside RAM (features.driver.13)', () => {
    const { m, mon, raw, put } = livePacked();
    const buf = m.dma.alloc(64);
    put(0, buf, 64, 1, 0x0);
    raw.notify(0);
    m.mem.write8(buf, 0xee); // driver time: the device has not run
    m.platform.spin(1); // entering device time judges what the driver did
    expect(statements(mon)).toEqual(['status_init.driver.13']);
    put(1, 0x7fff_0000, 64, 2, 0x0);
    raw.notify(0);
    expect(statements(mon)).toEqual(['features.driver.13', 'status_init.driver.13']);
  });

  it('packed: a used descriptor before DRIVER_OK (status_init.device.1)', () => {
    const { m, dev } = sim({ features: PACKED });
    const mon = attachMonitor(m);
    const raw = new RawMmio(m.platform, dev.base);
    raw.probe();
    raw.negotiate((o) => o & PACKED); // FEATURES_OK, no DRIVER_OK
    const desc = m.dma.alloc(128, 16);
    raw.setupQueue(0, 8, desc, m.dma.alloc(4, 4), m.dma.alloc(4, 4));
    const buf = m.dma.alloc(64);
    m.mem.write32(desc, buf);
    m.mem.write32(desc + 8, 64);
    m.mem.write16(desc + 12, 1);
    m.mem.write16(desc + 14, 0x2 | (1 << 7));
    raw.notify(0); // status_init.driver.12 as well: a notification before DRIVER_OK
    // a device that uses the buffer anyway (in device time)
    mon.deviceTime(() => m.mem.write16(desc + 14, 0x2 | (1 << 7) | (1 << 15)));
    expect(statements(mon)).toEqual(['status_init.device.1', 'status_init.driver.12']);
  });
});
