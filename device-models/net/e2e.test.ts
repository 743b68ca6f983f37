import { describe, expect, it } from 'vitest';
import { ip4FromString, macFromString } from '../../spec-refs/abi/packet.ts';
import { GuestIpStack } from '../../drivers/net/stack.ts';
import { HostPeer } from './host-peer.ts';
import { NetTestbed, netConfigs } from '../../conformance/harness/net.ts';
import { plug } from './switch.ts';

describe.each(netConfigs())('end to end over %s with %s rings', (transport, ring) => {
  it('a guest pings the host peer and gets replies', () => {
    const tb = new NetTestbed();
    const g = tb.addGuest({ transport, ring });
    const host = new HostPeer(tb.scheduler, { mac: macFromString('02:00:00:00:00:fe'), ip: ip4FromString('10.0.0.254') });
    plug(tb.sw, host);
    const stack = new GuestIpStack(g.driver, ip4FromString('10.0.0.1'));
    for (let seq = 1; seq <= 3; seq++) {
      const r = stack.ping(host.ip, seq);
      expect(r.from).toBe('10.0.0.254');
      expect(r.seq).toBe(seq);
      expect(Array.from(r.data.subarray(0, 4))).toEqual([0, 1, 2, 3]);
    }
    expect(host.echoRequestsAnswered).toBe(3);
    expect(host.badChecksums).toBe(0);
    expect(g.device.violations).toEqual([]);
    expect(g.driver.deviceErrors).toEqual([]);
  });

  it('two guests ping each other, and the host pings a guest', () => {
    const tb = new NetTestbed();
    const a = tb.addGuest({ transport, ring });
    const b = tb.addGuest({ transport, ring });
    const sa = new GuestIpStack(a.driver, ip4FromString('10.0.0.1'));
    const sb = new GuestIpStack(b.driver, ip4FromString('10.0.0.2'));
    const step = () => tb.step();
    expect(sa.ping(sb.ip, 1, undefined, 10_000_000, step).from).toBe('10.0.0.2');
    expect(sb.ping(sa.ip, 2, undefined, 10_000_000, step).from).toBe('10.0.0.1');
    const host = new HostPeer(tb.scheduler, { mac: macFromString('02:00:00:00:00:fe'), ip: ip4FromString('10.0.0.254') });
    plug(tb.sw, host);
    host.ping(sb.ip, 7, 9);
    tb.runAll(2_000_000);
    expect(host.replies.map((r) => [r.from, r.id, r.seq])).toEqual([['10.0.0.2', 7, 9]]);
    expect(sa.badChecksums + sb.badChecksums).toBe(0);
    expect(tb.sw.unicast).toBeGreaterThan(0);
  });
});

describe('GuestIpStack waits are bounded', () => {
  it('a step() that lets no target time pass ends the wait with a TimeoutError, not a hang', () => {
    const tb = new NetTestbed();
    const g = tb.addGuest({ transport: 'mmio', ring: 'split' });
    const stack = new GuestIpStack(g.driver, ip4FromString('10.0.0.1'));
    let steps = 0;
    // nobody answers 10.0.0.9, and the step does nothing: only the stall bound can end this wait
    expect(() => stack.ping(ip4FromString('10.0.0.9'), 1, undefined, 10_000_000, () => void steps++)).toThrow(/step\(\) let no target time pass/);
    expect(steps).toBe(100_000 - 1);
  });
});
