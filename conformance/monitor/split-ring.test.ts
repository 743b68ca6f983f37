/**
 * Split ring rules (split-ring.ts, and the driver's notifications in notifications.ts) on a
 * hostile driver and a misbehaving device.
 */
import { describe, expect, it } from 'vitest';
import { F, Split, featureSet } from '../../spec-refs/abi/virtio.ts';
import { hostile, liveRing, statements } from './test-support.ts';

describe('monitor: each driver rule fires on a hostile driver', () => {
  it('split ring: misaligned areas', () => {
    const { m, raw, mon } = hostile();
    raw.negotiate((o) => o);
    const base = m.dma.alloc(8192, 4096);
    raw.setupQueue(0, 8, base + 8, base + 1024 + 1, base + 2048 + 2);
    expect(statements(mon)).toEqual(['split.driver.1']);
  });

  it('split ring: loop, readable after writable, INDIRECT not negotiated, INDIRECT+NEXT, no notify, in-flight change', () => {
    const { m, raw, mon, ring } = liveRing(featureSet(F.VERSION_1), 8);
    const buf = m.dma.alloc(4096);
    // 0 -> 1 -> 0 loop
    ring.setDesc(0, { addr: buf, len: 16, flags: Split.DESC_F_NEXT, next: 1 });
    ring.setDesc(1, { addr: buf, len: 16, flags: Split.DESC_F_NEXT, next: 0 });
    ring.publish(0);
    raw.notify(0);
    expect(statements(mon)).toContain('split.driver.4');
    // writable then readable
    ring.setDesc(2, { addr: buf, len: 16, flags: Split.DESC_F_WRITE | Split.DESC_F_NEXT, next: 3 });
    ring.setDesc(3, { addr: buf + 64, len: 16, flags: 0, next: 0 });
    // indirect without the feature, and with NEXT
    ring.setDesc(4, { addr: buf + 512, len: 32, flags: Split.DESC_F_INDIRECT | Split.DESC_F_NEXT, next: 5 });
    ring.setDesc(5, { addr: buf + 128, len: 16, flags: Split.DESC_F_WRITE, next: 0 });
    ring.publish(2, 4);
    raw.notify(0);
    expect(statements(mon)).toEqual(['split.driver.2', 'split.driver.4', 'split.driver.6', 'split.driver.9']);
  });

  it('split ring with IN_ORDER: a chain out of ring order, an indirect table out of sequence; the wrap to 0 is fine', () => {
    const { m, raw, mon, ring } = liveRing(featureSet(F.VERSION_1, F.IN_ORDER, F.INDIRECT_DESC), 8);
    const buf = m.dma.alloc(4096);
    // 6 -> 7 -> 0: ring order, wrapping after the last descriptor
    ring.setDesc(6, { addr: buf, len: 16, flags: Split.DESC_F_NEXT, next: 7 });
    ring.setDesc(7, { addr: buf + 64, len: 16, flags: Split.DESC_F_NEXT, next: 0 });
    ring.setDesc(0, { addr: buf + 128, len: 16, flags: Split.DESC_F_WRITE, next: 0 });
    ring.publish(6);
    raw.notify(0);
    expect(statements(mon).filter((s) => s.startsWith('split.driver'))).toEqual([]);
    // 1 -> 3: skips a descriptor
    ring.setDesc(1, { addr: buf, len: 16, flags: Split.DESC_F_NEXT, next: 3 });
    ring.setDesc(3, { addr: buf + 256, len: 16, flags: Split.DESC_F_WRITE, next: 0 });
    ring.publish(1);
    raw.notify(0);
    expect(statements(mon)).toContain('split.driver.5');
    expect(statements(mon)).not.toContain('split.driver.10');
    // an indirect table whose entry 0 links to entry 2
    const table = m.dma.alloc(64, 16);
    m.mem.write64(table, buf);
    m.mem.write32(table + 8, 16);
    m.mem.write32(table + 12, Split.DESC_F_NEXT | (2 << 16));
    m.mem.write64(table + 32, buf + 512);
    m.mem.write32(table + 40, 16);
    m.mem.write32(table + 44, Split.DESC_F_WRITE);
    ring.setDesc(4, { addr: table, len: 48, flags: Split.DESC_F_INDIRECT, next: 0 });
    ring.publish(4);
    raw.notify(0);
    expect(statements(mon)).toContain('split.driver.10');
  });

  it('split ring: buffers made available without a notification, and an in-flight descriptor rewritten', () => {
    const { m, mon, ring } = liveRing(featureSet(F.VERSION_1), 8);
    const buf = m.dma.alloc(4096);
    ring.chain(0, [{ addr: buf, len: 32 }, { addr: buf + 64, len: 32, write: true }]);
    ring.publish(0);
    m.platform.spin(1000); // waits without notifying
    expect(statements(mon)).toEqual(['split.driver.22']);
    ring.setDesc(0, { addr: buf, len: 8, flags: Split.DESC_F_NEXT, next: 1 }); // still in flight: the device never saw a notify
    m.platform.spin(1000);
    expect(statements(mon)).toEqual(['split.driver.22', 'status_init.driver.13']);
  });
});

describe('monitor: device rules fire on a misbehaving device', () => {
  it('used len above the writable bytes, unknown used id, writes into a readable buffer, no notification', () => {
    const { m, raw, mon, ring } = liveRing(featureSet(F.VERSION_1), 8);
    const buf = m.dma.alloc(4096);
    ring.chain(0, [{ addr: buf, len: 32 }, { addr: buf + 64, len: 32, write: true }]);
    ring.chain(2, [{ addr: buf + 128, len: 32 }, { addr: buf + 192, len: 16, write: true }]);
    ring.publish(0, 2);
    // a "device" that runs on the scheduler: writes into the readable buffer, completes with a bad len and a bad id, and never interrupts
    m.scheduler.schedule(10, 'bad device', () => {
      m.mem.write8(buf, 0xee);
      m.mem.write32(ring.used + 4, 0);
      m.mem.write32(ring.used + 8, 4096);
      m.mem.write32(ring.used + 12, 7);
      m.mem.write32(ring.used + 16, 0);
      m.mem.write16(ring.used + 2, 2);
    });
    raw.notify(0);
    // the echo device model also runs on notify; stop it from interfering by checking only the rules above
    m.platform.spin(100);
    mon.detach();
    const s = statements(mon);
    expect(s).toContain('split.device.3');
    expect(s).toContain('split.device.16');
    expect(s).toContain('split.device.11');
    expect(mon.bySide('driver')).toEqual([]);
  });
});
