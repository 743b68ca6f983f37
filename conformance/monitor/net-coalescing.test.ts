/**
 * Used buffer notifications on a virtio-net queue with notification coalescing
 * (net-coalescing.ts, judgeOwed in notifications.ts).
 */
import { describe, expect, it } from 'vitest';
import { Machine } from '../../device-models/machine/machine.ts';
import { attachMonitor } from '../monitor.ts';
import { NetTestbed } from '../harness/net.ts';

describe('monitor: used notifications on a virtio-net queue with notification coalescing', () => {
  const frame = (dst: Uint8Array) => {
    const f = new Uint8Array(60);
    f.set(dst, 0);
    f.set([0x02, 0, 0, 0, 0, 9], 6);
    f[12] = 0x88;
    f[13] = 0xb5;
    return f;
  };

  it('a device holding a notification back while the driver polls the buffers away is owed nothing', () => {
    const tb = new NetTestbed();
    const machine = new Machine({ sharedScheduler: tb.scheduler, ram: [{ base: 0, size: 32 << 20, name: 'ram' }] });
    const mon = attachMonitor(machine); // watching from the start: negotiation, the rings, the control queue
    const g = tb.addGuest({ machine });
    const port = tb.sw.attach({ name: 'inj', receive: () => {} });
    g.driver.setCoalescing('rx', 3, 30);
    let got = 0;
    g.driver.onReceive(() => got++);
    port.send({ data: frame(g.driver.mac) });
    tb.runAll(200_000);
    mon.detach();
    expect(got).toBe(1);
    expect(mon.violations.map((v) => v.statement)).toEqual([]);
  });

  it('coalescing configured, a device that never notifies while the driver waits: split.device.13 still fires', () => {
    const tb = new NetTestbed();
    const machine = new Machine({ sharedScheduler: tb.scheduler, ram: [{ base: 0, size: 32 << 20, name: 'ram' }] });
    const mon = attachMonitor(machine); // watching from the start: negotiation, the rings, the control queue
    const g = tb.addGuest({ machine });
    const port = tb.sw.attach({ name: 'inj', receive: () => {} });
    g.driver.setCoalescing('rx', 3, 30);
    // A device that forgets the coalesced notification: receive queue 0's flush (the notification
    // the coalescing timer sends) does nothing; used entries are still written.
    const s = (g.device as unknown as { s: { ctx: { queue(i: number): object } } }).s;
    const real = s.ctx;
    s.ctx = new Proxy(real, {
      get(t, p) {
        if (p === 'queue') return (i: number) => (i === 0 ? new Proxy(t.queue(i), { get: (q, k) => (k === 'flush' ? () => {} : Reflect.get(q, k, q)) }) : t.queue(i));
        const v = Reflect.get(t, p, t);
        return typeof v === 'function' ? v.bind(t) : v;
      },
    });
    const usedBefore = mon.stats.used;
    port.send({ data: frame(g.driver.mac) });
    mon.deviceTime(() => tb.scheduler.runFor(200_000)); // the driver does not poll: it waits for the interrupt
    mon.detach();
    expect(mon.stats.used).toBeGreaterThan(usedBefore);
    expect(mon.violations.map((v) => v.statement)).toContain('split.device.13');
  });
});
