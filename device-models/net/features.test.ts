/**
 * Device and driver together, feature by feature: receive filtering through the control queue
 * (a property against a model of the spec's rules), link status and announce, MQ and RSS with
 * hash reports, notification coalescing on the simulated clock, device statistics, guest
 * offloads, MTU and MAC address changes.
 */
import { describe, expect, it } from 'vitest';
import { fc, test } from '@fast-check/vitest';
import { NetF, bit } from '../../spec-refs/abi/virtio.ts';
import { HashReport, HashTunnel, HashType, NetCfg, NetCtrl, NetFx, NetHdr, NetStatus, StatsType } from '../../spec-refs/abi/net.ts';
import { buildVxlan, gsoSegment, vxlanOffsets } from '../../spec-refs/abi/gso.ts';
import { BROADCAST, EtherType, buildEthernet, buildL4Frame, ip4FromString, macFromString, macToString, parseFrame, parseIp, verifyChecksums } from '../../spec-refs/abi/packet.ts';
import { NET_DRIVER_FEATURES, completeReceived, type RxFrame } from '../../drivers/net/driver.ts';
import { GuestIpStack } from '../../drivers/net/stack.ts';
import { NetTestbed } from '../../conformance/harness/net.ts';
import { DEFAULT_RSS_KEY, hashPacket } from './rss.ts';
import type { WireFrame } from './wire.ts';

function injector(tb: NetTestbed) {
  const seen: WireFrame[] = [];
  const port = tb.sw.attach({ name: 'inj', receive: (wf) => seen.push(wf) });
  return { port, seen, send: (data: Uint8Array) => port.send({ data }) };
}

const ownMac = macFromString('52:54:00:00:00:01');
const otherUni = macFromString('52:54:00:aa:bb:cc');
const tableUni = macFromString('52:54:00:77:77:77');
const tableMulti = macFromString('01:00:5e:00:00:05');
const otherMulti = macFromString('01:00:5e:00:00:09');

type Op =
  | { k: 'mode'; cmd: number; on: boolean }
  | { k: 'table'; uni: boolean; multi: boolean }
  | { k: 'vlan'; add: boolean; vid: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('mode' as const), cmd: fc.integer({ min: 0, max: 5 }), on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('table' as const), uni: fc.boolean(), multi: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('vlan' as const), add: fc.boolean(), vid: fc.constantFrom(5, 6) }) },
);

/** The spec's receive-filtering rules (net.device.76-.95), as a reference model. */
class FilterModel {
  promisc = false;
  allmulti = true;
  alluni = false;
  nomulti = false;
  nouni = false;
  nobcast = false;
  uni: string[] = [];
  multi: string[] = [];
  vlans = new Set<number>();
  apply(o: Op): void {
    if (o.k === 'mode') {
      const keys = ['promisc', 'allmulti', 'alluni', 'nomulti', 'nouni', 'nobcast'] as const;
      this[keys[o.cmd]!] = o.on;
    } else if (o.k === 'table') {
      this.uni = o.uni ? [macToString(tableUni)] : [];
      this.multi = o.multi ? [macToString(tableMulti)] : [];
    } else if (o.add) this.vlans.add(o.vid);
    else this.vlans.delete(o.vid);
  }
  accepts(dst: Uint8Array, vlan: number | undefined): boolean {
    if (this.promisc) return true; // net.device.77/.78
    if (vlan !== undefined && !this.vlans.has(vlan)) return false; // net.device.94/.95
    const d = macToString(dst);
    if (d === 'ff:ff:ff:ff:ff:ff') return !this.nobcast; // net.device.84/.87/.88
    if (dst[0]! & 1) {
      if (this.nomulti) return false; // net.device.82/.83
      return this.allmulti || this.multi.includes(d); // net.device.79
    }
    if (this.nouni) return false; // net.device.85/.86
    return this.alluni || d === macToString(ownMac) || this.uni.includes(d); // net.device.81/.92
  }
}

describe('receive filtering through the control queue', () => {
  test.prop([fc.array(op, { maxLength: 8 })], { numRuns: 40 })('delivers exactly what the spec rules allow', (ops) => {
    const tb = new NetTestbed();
    const g = tb.addGuest();
    const inj = injector(tb);
    const model = new FilterModel();
    for (const o of ops) {
      if (o.k === 'mode') g.driver.setRxMode(o.cmd, o.on);
      else if (o.k === 'table') g.driver.setMacTable(o.uni ? [tableUni] : [], o.multi ? [tableMulti] : []);
      else g.driver.vlan(o.add, o.vid);
      model.apply(o);
    }
    const got: RxFrame[] = [];
    g.driver.onReceive((f) => got.push(f));
    const expected: string[] = [];
    let n = 0;
    for (const dst of [ownMac, otherUni, tableUni, tableMulti, otherMulti, BROADCAST]) {
      for (const vlan of [undefined, 5, 6]) {
        const payload = new Uint8Array(46);
        payload[0] = n;
        const tag = `${macToString(dst)}/${vlan ?? '-'}`;
        inj.send(buildEthernet({ dst, src: macFromString('02:00:00:00:00:42'), vlan }, 0x88b5, payload));
        if (model.accepts(dst, vlan)) expected.push(tag);
        n++;
      }
    }
    tb.runAll(500_000);
    const gotTags = got.map((f) => {
      const info = parseFrame(f.data);
      return `${macToString(f.data.subarray(0, 6))}/${info.vlan >= 0 ? info.vlan : '-'}`;
    });
    expect(gotTags).toEqual(expected);
  });

  it('MAC_ADDR_SET shows in config mac before the command completes (net.device.91) and filters by it', () => {
    const tb = new NetTestbed();
    const g = tb.addGuest();
    const inj = injector(tb);
    const nm = macFromString('52:54:00:de:ad:01');
    g.driver.setMac(nm);
    expect(Array.from({ length: 6 }, (_, i) => g.driver.dev.config8(NetCfg.MAC + i))).toEqual(Array.from(nm));
    inj.send(buildEthernet({ dst: nm, src: otherUni }, 0x88b5, new Uint8Array(46)));
    inj.send(buildEthernet({ dst: ownMac, src: otherUni }, 0x88b5, new Uint8Array(46)));
    tb.runAll(200_000);
    const f = g.driver.receive();
    expect(f && macToString(f.data)).toBe(macToString(nm));
    expect(g.driver.receive()).toBeNull();
  });

  it('without CTRL_VLAN, tagged frames are delivered whatever the tag (net.device.93)', () => {
    const tb = new NetTestbed();
    const g = tb.addGuest({ driver: { features: NET_DRIVER_FEATURES & ~bit(NetF.CTRL_VLAN) } });
    const inj = injector(tb);
    inj.send(buildEthernet({ dst: ownMac, src: otherUni, vlan: 123 }, 0x88b5, new Uint8Array(46)));
    tb.runAll(200_000);
    expect(g.driver.receive()).not.toBeNull();
  });
});

describe('link status and announce', () => {
  it('link down/up reaches the driver with a config interrupt; no traffic while down', () => {
    const tb = new NetTestbed();
    const g = tb.addGuest();
    const inj = injector(tb);
    const cfgBefore = g.driver.dev.stats.configInterrupts;
    g.device.setLink(false);
    tb.runAll(100_000);
    expect(g.driver.linkUp).toBe(false);
    expect(g.driver.dev.stats.configInterrupts).toBe(cfgBefore + 1);
    inj.send(buildEthernet({ dst: ownMac, src: otherUni }, 0x88b5, new Uint8Array(46)));
    tb.runAll(100_000);
    expect(g.driver.receive()).toBeNull();
    g.device.setLink(true);
    tb.runAll(100_000);
    expect(g.driver.linkUp).toBe(true);
  });

  it('ANNOUNCE: the driver sends a gratuitous ARP, then ANNOUNCE_ACK clears the bit (net.driver.87/.88, net.device.96)', () => {
    const tb = new NetTestbed();
    let stack: GuestIpStack | undefined;
    const g = tb.addGuest({ driver: { announce: () => [stack!.gratuitousArp()] } });
    stack = new GuestIpStack(g.driver, ip4FromString('10.0.0.1'));
    const inj = injector(tb);
    expect(g.device.requestAnnounce()).toBe(true);
    expect(g.device.readConfig(NetCfg.STATUS, 2) & NetStatus.ANNOUNCE).toBe(NetStatus.ANNOUNCE);
    tb.runAll(300_000);
    expect(g.driver.stats.announces).toBe(1);
    expect(g.device.readConfig(NetCfg.STATUS, 2) & NetStatus.ANNOUNCE).toBe(0);
    const arps = inj.seen.filter((wf) => parseFrame(wf.data).ethertype === EtherType.ARP);
    expect(arps).toHaveLength(1);
  });
});

describe('multiqueue and RSS', () => {
  it('only receiveq1 before VQ_PAIRS_SET (net.device.97); spreads flows over the pairs in use after', () => {
    const tb = new NetTestbed();
    const g = tb.addGuest({ device: { maxPairs: 4 }, driver: { pairs: 4 } });
    expect(g.driver.activePairs).toBe(4);
    const inj = injector(tb);
    const got: RxFrame[] = [];
    g.driver.onReceive((f) => got.push(f));
    for (let i = 0; i < 64; i++) {
      const f = buildL4Frame({ eth: { dst: ownMac, src: otherUni }, src: ip4FromString('10.0.0.9'), dst: ip4FromString('10.0.0.1'), proto: 'udp', srcPort: 1000 + i, dstPort: 53 }, new Uint8Array(20));
      inj.send(f.frame);
    }
    tb.runAll(500_000);
    expect(got).toHaveLength(64);
    const pairs = new Set(got.map((f) => f.pair));
    expect(pairs.size).toBeGreaterThan(1);
    for (const p of pairs) expect(p).toBeLessThan(4);
    g.driver.setPairs(2); // net.device.98: nothing above the pairs in use
    got.length = 0;
    for (let i = 0; i < 32; i++) inj.send(buildL4Frame({ eth: { dst: ownMac, src: otherUni }, src: ip4FromString('10.0.0.9'), dst: ip4FromString('10.0.0.1'), proto: 'udp', srcPort: 2000 + i, dstPort: 53 }, new Uint8Array(20)).frame);
    tb.runAll(500_000);
    expect(got).toHaveLength(32);
    expect(got.every((f) => f.pair < 2)).toBe(true);
  });

  it('RSS: the indirection table picks the queue from the Toeplitz hash, reported in the header (net.device.101)', () => {
    const tb = new NetTestbed();
    const g = tb.addGuest({ device: { maxPairs: 4 }, driver: { pairs: 4 } });
    const inj = injector(tb);
    const table = [3, 1, 2, 0, 1, 3, 0, 2];
    const types = HashType.TCPv4 | HashType.UDPv4 | HashType.IPv4;
    g.driver.setRss({ hashTypes: types, table, key: DEFAULT_RSS_KEY, unclassified: 2 });
    const got: RxFrame[] = [];
    g.driver.onReceive((f) => got.push(f));
    const sent: Uint8Array[] = [];
    for (let i = 0; i < 40; i++) {
      const f = buildL4Frame({ eth: { dst: ownMac, src: otherUni }, src: ip4FromString(`10.0.${i}.9`), dst: ip4FromString('10.0.0.1'), proto: i % 2 ? 'tcp' : 'udp', srcPort: 1000 + 7 * i, dstPort: 80 }, new Uint8Array(20)).frame;
      sent.push(f);
      inj.send(f);
    }
    inj.send(buildEthernet({ dst: ownMac, src: otherUni }, 0x88b5, new Uint8Array(46))); // no hash: unclassified
    tb.runAll(500_000);
    expect(got).toHaveLength(41);
    for (const f of got) {
      const info = parseFrame(f.data);
      const h = hashPacket(f.data, info, types, DEFAULT_RSS_KEY);
      if (h.report === HashReport.NONE) {
        expect(f.pair).toBe(2);
        expect(f.hashReport).toBe(HashReport.NONE);
      } else {
        expect(f.pair).toBe(table[h.value & 7]);
        expect(f.hashValue).toBe(h.value);
        expect(f.hashReport).toBe(info.proto === 6 ? HashReport.TCPv4 : HashReport.UDPv4);
      }
    }
  });
});

describe('notification coalescing on the simulated clock', () => {
  function flood(maxPackets: number, maxUsecs: number, frames: number) {
    const tb = new NetTestbed();
    const g = tb.addGuest();
    const inj = injector(tb);
    if (maxPackets || maxUsecs) g.driver.setCoalescing('rx', maxPackets, maxUsecs);
    const before = g.core.stats.usedSignals;
    const t0 = tb.scheduler.now;
    const arrivals: number[] = [];
    g.driver.onReceive(() => arrivals.push(tb.scheduler.now - t0));
    for (let i = 0; i < frames; i++) {
      tb.scheduler.schedule(i * 1000, 'inj', () => inj.send(buildEthernet({ dst: ownMac, src: otherUni }, 0x88b5, new Uint8Array(46))));
    }
    // Wait with the guest halted, so only interrupts wake it.
    g.driver.dev.waitUntil(() => arrivals.length >= frames, 'frames', 10_000_000);
    return { signals: g.core.stats.usedSignals - before, arrivals };
  }

  it('max_packets batches interrupts; max_usecs bounds the delay', () => {
    const plain = flood(0, 0, 16);
    const coal = flood(8, 50, 16);
    expect(coal.signals).toBe(2);
    expect(plain.signals).toBeGreaterThan(coal.signals);
    // A lone packet waits for max_usecs (50 µs) before its interrupt.
    const lone = flood(8, 50, 1);
    expect(lone.signals).toBe(1);
    expect(lone.arrivals[0]!).toBeGreaterThanOrEqual(50_000);
    expect(lone.arrivals[0]!).toBeLessThan(60_000);
  });

  it('VQ_SET / VQ_GET per queue; GET on a queue that is not an enabled data queue is ERR (net.device.108)', () => {
    const tb = new NetTestbed();
    const g = tb.addGuest();
    g.driver.setCoalescing('rx', 4, 10);
    expect(g.driver.getQueueCoalescing(0)).toEqual({ maxPackets: 4, maxUsecs: 10 });
    g.driver.setQueueCoalescing(0, 9, 99);
    expect(g.driver.getQueueCoalescing(0)).toEqual({ maxPackets: 9, maxUsecs: 99 });
    expect(g.driver.getQueueCoalescing(1)).toEqual({ maxPackets: 0, maxUsecs: 0 });
    expect(() => g.driver.getQueueCoalescing(7)).toThrow(/enabled data queue/);
    expect(g.driver.command(NetCtrl.CLASS_NOTF_COAL, NetCtrl.NOTF_COAL_VQ_GET, new Uint8Array([2, 0, 0, 0]), 8).ack).toBe(NetCtrl.ERR);
  });
});

describe('device statistics', () => {
  it('QUERY lists the types; GET counts what happened; a bad entry fails the whole command (net.device.114-.118)', () => {
    const tb = new NetTestbed();
    const g = tb.addGuest();
    const inj = injector(tb);
    const types = g.driver.statsQuery();
    expect(types).toEqual(expect.arrayContaining([StatsType.RX_BASIC, StatsType.TX_BASIC, StatsType.CVQ]));
    for (let i = 0; i < 5; i++) inj.send(buildEthernet({ dst: ownMac, src: otherUni }, 0x88b5, new Uint8Array(46)));
    g.driver.send(buildEthernet({ dst: otherUni, src: ownMac }, 0x88b5, new Uint8Array(46)));
    tb.runAll(300_000);
    const [rx] = g.driver.statsGet(0, [StatsType.RX_BASIC]);
    expect(rx).toMatchObject({ type: StatsType.RX_BASIC, vq: 0 });
    expect(rx!.counters[1]).toBe(5); // rx_packets
    expect(rx!.counters[2]).toBe(5 * 60); // rx_bytes
    const [tx] = g.driver.statsGet(1, [StatsType.TX_BASIC]);
    expect(tx!.counters[1]).toBe(1);
    const cvq = g.driver.statsGet(2, [StatsType.CVQ]);
    expect(cvq[0]!.counters[0]).toBeGreaterThanOrEqual(3);
    // rx type on a tx queue: ERR, and nothing partial
    const bad = new Uint8Array(32);
    const v = new DataView(bad.buffer);
    v.setUint16(0, 0, true);
    v.setUint32(8, 1 << StatsType.RX_BASIC, true);
    v.setUint16(16, 1, true);
    v.setUint32(24, 1 << StatsType.RX_BASIC, true);
    const r = g.driver.command(NetCtrl.CLASS_STATS, NetCtrl.STATS_GET, bad, 200);
    expect(r.ack).toBe(NetCtrl.ERR);
    expect(r.result.length).toBe(0);
  });
});

describe('guest offloads, GSO receive and MTU', () => {
  const big = (g: { driver: { mac: Uint8Array } }) => buildL4Frame({ eth: { dst: g.driver.mac, src: macFromString('52:54:00:00:00:01') }, src: ip4FromString('10.0.0.1'), dst: ip4FromString('10.0.0.2'), proto: 'tcp', srcPort: 1, dstPort: 2, csum: 'partial' }, new Uint8Array(20000).fill(3));

  it('a GUEST_TSO receiver gets the super-frame; after GUEST_OFFLOADS_SET(0) it gets segments with complete checksums', () => {
    const tb = new NetTestbed();
    const a = tb.addGuest();
    const b = tb.addGuest();
    a.driver.send(big(b).frame, { gso: { type: NetHdr.GSO_TCPV4, size: 1000 } });
    tb.runAll(500_000);
    const f = b.driver.receive()!;
    expect(f.gsoType).toBe(NetHdr.GSO_TCPV4);
    expect(f.gsoSize).toBe(1000);
    expect(f.flags & NetHdr.F_NEEDS_CSUM).toBe(NetHdr.F_NEEDS_CSUM);
    b.driver.setGuestOffloads(0n);
    a.driver.send(big(b).frame, { gso: { type: NetHdr.GSO_TCPV4, size: 1000 } });
    tb.runAll(500_000);
    const segs: RxFrame[] = [];
    for (let x = b.driver.receive(); x; x = b.driver.receive()) segs.push(x);
    expect(segs).toHaveLength(20);
    expect(segs.every((s) => s.flags === 0 && s.gsoType === 0)).toBe(true);
    expect(() => b.driver.setGuestOffloads(bit(NetF.GUEST_UFO))).toThrow();
  });

  it('MTU 9000: the driver reads it and sends jumbo frames whole (net.device.6)', () => {
    const tb = new NetTestbed();
    const a = tb.addGuest({ device: { mtu: 9000 } });
    const b = tb.addGuest({ device: { mtu: 9000 } });
    expect(a.driver.mtu).toBe(9000);
    const f = buildEthernet({ dst: b.driver.mac, src: a.driver.mac }, 0x88b5, new Uint8Array(9000).fill(1));
    expect(a.driver.send(f)).toBe(true);
    tb.runAll(300_000);
    expect(b.driver.receive()?.data.length).toBe(9014);
    expect(() => a.driver.send(new Uint8Array(9100))).toThrow(/MTU/);
  });
});

describe('per-queue reset (VIRTIO_F_RING_RESET)', () => {
  it('traffic for a receive queue being reset is dropped; the queue works again after; coalescing returns to the RX_SET values', () => {
    const tb = new NetTestbed();
    const g = tb.addGuest();
    const inj = injector(tb);
    g.driver.setCoalescing('rx', 3, 30);
    g.driver.setQueueCoalescing(0, 7, 70);
    const got: RxFrame[] = [];
    g.driver.onReceive((f) => got.push(f));
    g.driver.resetQueue(0, () => {
      inj.send(buildEthernet({ dst: ownMac, src: otherUni }, 0x88b5, new Uint8Array(46)));
      tb.runAll(100_000);
    });
    tb.runAll(200_000);
    expect(got).toHaveLength(0); // net.device.100
    expect(g.driver.getQueueCoalescing(0)).toEqual({ maxPackets: 3, maxUsecs: 30 }); // net.device.110
    inj.send(buildEthernet({ dst: ownMac, src: otherUni }, 0x88b5, new Uint8Array(46)));
    tb.runAll(200_000);
    expect(got).toHaveLength(1);
    // transmit queue: back to TX_SET values (0 when never set), and it still sends
    g.driver.setQueueCoalescing(1, 5, 5);
    g.driver.flushTx();
    g.driver.resetQueue(1);
    expect(g.driver.getQueueCoalescing(1)).toEqual({ maxPackets: 0, maxUsecs: 0 }); // net.device.109
    expect(g.driver.send(buildEthernet({ dst: otherUni, src: ownMac }, 0x88b5, new Uint8Array(46)))).toBe(true);
    tb.runAll(200_000);
    expect(inj.seen.length).toBeGreaterThan(0);
  });
});

describe('UDP-tunnel GSO and USO (VXLAN)', () => {
  const innerOf = (v6: boolean, proto: 'tcp' | 'udp', n: number) =>
    buildL4Frame({ eth: { dst: macFromString('02:bb:00:00:00:01'), src: macFromString('02:bb:00:00:00:02') }, v6, src: v6 ? new Uint8Array(16).fill(3) : ip4FromString('172.16.0.1'), dst: v6 ? new Uint8Array(16).fill(4) : ip4FromString('172.16.0.2'), proto, srcPort: 7000, dstPort: 8000, seq: 5, csum: 'partial' }, new Uint8Array(n).map((_, i) => (i * 13) & 0xff));

  /** Check every on-the-wire segment: inner checksums valid, outer UDP checksum 0 or valid; return the inner payload. */
  function innerPayload(segs: Uint8Array[]): number[] {
    const out: number[] = [];
    for (const s of segs) {
      const v = vxlanOffsets(s)!;
      expect(v).not.toBeNull();
      const inner = parseIp(s, v.innerNh);
      expect(verifyChecksums(s, inner).l4).toBe(true);
      const outer = parseFrame(s);
      const oc = (s[outer.l4 + 6]! << 8) | s[outer.l4 + 7]!;
      if (oc !== 0) expect(verifyChecksums(s, outer).l4).toBe(true);
      out.push(...s.subarray(inner.headerLen, inner.ipEnd));
    }
    return out;
  }

  for (const [hostTunnel, guestTunnel, v6, proto] of [
    [true, true, false, 'tcp'], [true, false, false, 'tcp'], [false, true, true, 'tcp'], [true, true, true, 'udp'], [true, false, false, 'udp'], [false, false, false, 'udp'],
  ] as const) {
    it(`sender ${hostTunnel ? 'with' : 'without'} HOST_UDP_TUNNEL_GSO, receiver ${guestTunnel ? 'with' : 'without'} GUEST_UDP_TUNNEL_GSO, inner ${proto}/ipv${v6 ? 6 : 4}`, () => {
      const tb = new NetTestbed();
      const feats = (on: boolean, host: boolean) => (on ? NET_DRIVER_FEATURES : NET_DRIVER_FEATURES & ~bit(host ? NetFx.HOST_UDP_TUNNEL_GSO : NetFx.GUEST_UDP_TUNNEL_GSO));
      const a = tb.addGuest({ device: { strict: true }, driver: { features: feats(hostTunnel, true) } });
      const b = tb.addGuest({ driver: { features: feats(guestTunnel, false) } });
      const inner = innerOf(v6, proto, 9000);
      const frame = buildVxlan({ eth: { dst: b.driver.mac, src: a.driver.mac }, src: ip4FromString('10.0.0.1'), dst: ip4FromString('10.0.0.2') }, inner.frame);
      const type = proto === 'udp' ? NetHdr.GSO_UDP_L4 : v6 ? NetHdr.GSO_TCPV6 : NetHdr.GSO_TCPV4;
      expect(a.driver.send(frame, { gso: { type, size: 1000, tunnel: true } })).toBe(true);
      a.driver.flushTx();
      tb.runAll(500_000);
      expect(a.device.violations).toEqual([]);
      const got: RxFrame[] = [];
      for (let f = b.driver.receive(); f; f = b.driver.receive()) got.push(f);
      expect(b.driver.deviceErrors).toEqual([]);
      const tunnelGso = got.length === 1 && (got[0]!.gsoType & (NetHdr.GSO_UDP_TUNNEL_IPV4 | NetHdr.GSO_UDP_TUNNEL_IPV6)) !== 0;
      expect(tunnelGso).toBe(hostTunnel && guestTunnel);
      let segs: Uint8Array[];
      if (tunnelGso) {
        const f = got[0]!;
        expect(f.gsoType & 0x60).toBe(v6 ? NetHdr.GSO_UDP_TUNNEL_IPV6 : NetHdr.GSO_UDP_TUNNEL_IPV4);
        const v = vxlanOffsets(f.data)!;
        expect([f.outerTh, f.innerNh]).toEqual([v.outerTh, v.innerNh]);
        const data = completeReceived(f);
        segs = gsoSegment(data, { type: f.gsoType & 0x1f, size: f.gsoSize, tunnel: { outerTh: f.outerTh, innerNh: f.innerNh } })!;
      } else {
        segs = got.map((f) => completeReceived(f));
        expect(got.every((f) => f.outerTh === 0 && f.innerNh === 0)).toBe(true);
      }
      expect(segs).toHaveLength(9);
      expect(Buffer.from(innerPayload(segs)).equals(Buffer.from(inner.frame.subarray(inner.l4 + (proto === 'tcp' ? 20 : 8))))).toBe(true);
    });
  }
});

describe('OUT_NET_HEADER and RSC_EXT', () => {
  const tcp = (dst: Uint8Array, src: Uint8Array, n: number) => buildL4Frame({ eth: { dst, src }, src: ip4FromString('10.0.0.1'), dst: ip4FromString('10.0.0.2'), proto: 'tcp', srcPort: 1, dstPort: 2, csum: 'partial' }, new Uint8Array(n).fill(7));

  it('OUT_NET_HEADER: 32-byte headers; outer_nh_offset names the IP header on receive and is 0 for other frames', () => {
    const tb = new NetTestbed();
    const feats = NET_DRIVER_FEATURES | bit(NetFx.OUT_NET_HEADER);
    const a = tb.addGuest({ driver: { features: feats } });
    const b = tb.addGuest({ driver: { features: feats } });
    expect(b.driver.hdrLen).toBe(32);
    a.driver.send(tcp(b.driver.mac, a.driver.mac, 100).frame);
    a.driver.send(buildEthernet({ dst: b.driver.mac, src: a.driver.mac }, 0x88b5, new Uint8Array(60)));
    tb.runAll(300_000);
    const got: RxFrame[] = [];
    for (let x = b.driver.receive(); x; x = b.driver.receive()) got.push(x);
    expect(got.map((g) => g.outerNh)).toEqual([14, 0]);
    expect(b.driver.deviceErrors).toEqual([]);
  });

  it('RSC_EXT: a GSO frame arrives with RSC_INFO and its segment count; without RSC_EXT the bit stays clear', () => {
    const tb = new NetTestbed();
    const a = tb.addGuest();
    const b = tb.addGuest({ driver: { features: NET_DRIVER_FEATURES | bit(NetF.RSC_EXT) } });
    const c = tb.addGuest();
    for (const dst of [b, c]) a.driver.send(tcp(dst.driver.mac, a.driver.mac, 9999).frame, { gso: { type: NetHdr.GSO_TCPV4, size: 1000 } });
    tb.runAll(500_000);
    const fb = b.driver.receive()!;
    expect(fb.flags & NetHdr.F_RSC_INFO).toBe(NetHdr.F_RSC_INFO);
    expect([fb.rscSegments, fb.rscDupAcks]).toEqual([10, 0]);
    expect(verifyChecksums(completeReceived(fb)).l4).toBe(true);
    const fc2 = c.driver.receive()!;
    expect(fc2.flags & NetHdr.F_RSC_INFO).toBe(0);
    expect(fc2.rscSegments).toBe(0);
  });
});

describe('HASH_TUNNEL', () => {
  it('VXLAN hashes on the inner frame only while enabled; unsupported types are refused by the driver; undefined supported bits are ignored', () => {
    const tb = new NetTestbed();
    const feats = NET_DRIVER_FEATURES | bit(NetF.HASH_TUNNEL);
    const a = tb.addGuest();
    const b = tb.addGuest({ device: { maxPairs: 2, supportedTunnelTypes: HashTunnel.VXLAN | (1 << 20) }, driver: { pairs: 2, features: feats } });
    expect(b.driver.supportedTunnelTypes).toBe(HashTunnel.VXLAN);
    expect(() => b.driver.setHashTunnel(HashTunnel.GENEVE)).toThrow(/does not support/);
    expect(() => b.driver.setHashTunnel(1 << 20)).toThrow(/does not support/);
    const types = HashType.TCPv4 | HashType.IPv4 | HashType.UDPv4;
    b.driver.setRss({ hashTypes: types, table: [0, 1], key: DEFAULT_RSS_KEY });
    const inner = buildL4Frame({ eth: { dst: macFromString('02:aa:00:00:00:01'), src: macFromString('02:aa:00:00:00:02') }, src: ip4FromString('172.16.0.1'), dst: ip4FromString('172.16.0.2'), proto: 'tcp', srcPort: 4242, dstPort: 443 }, new Uint8Array(20)).frame;
    const frame = buildVxlan({ eth: { dst: b.driver.mac, src: a.driver.mac }, src: ip4FromString('10.0.0.1'), dst: ip4FromString('10.0.0.2') }, inner);
    const hashes = () => {
      a.driver.send(frame.slice());
      tb.runAll(200_000);
      return b.driver.receive()!.hashValue;
    };
    const outerHash = hashPacket(frame, parseFrame(frame), types, DEFAULT_RSS_KEY).value;
    const innerHash = hashPacket(inner, parseFrame(inner), types, DEFAULT_RSS_KEY).value;
    expect(outerHash).not.toBe(innerHash);
    expect(hashes()).toBe(outerHash);
    b.driver.setHashTunnel(HashTunnel.VXLAN);
    expect(hashes()).toBe(innerHash);
    b.driver.setHashTunnel(0);
    expect(hashes()).toBe(outerHash);
    expect(b.device.violations).toEqual([]);
    // A driver going around setHashTunnel(): the device answers VIRTIO_NET_ERR (net.device.74) and keeps its state.
    const geneve = new Uint8Array([HashTunnel.GENEVE, 0, 0, 0]);
    expect(() => b.driver['mustCommand'](NetCtrl.CLASS_HASH_TUNNEL, NetCtrl.HASH_TUNNEL_SET, geneve, 'HASH_TUNNEL_SET')).toThrow(/refused by the device/);
    expect(b.device.violations.map((v) => v.id)).toEqual(['net.driver.79']);
    expect(hashes()).toBe(outerHash);
  });
});

describe('RSS_CONTEXT', () => {
  it('contexts are added, modified and deleted by id; ids outside 1..max and VQ_PAIRS_SET with contexts are refused by the driver', () => {
    const tb = new NetTestbed();
    const feats = NET_DRIVER_FEATURES | bit(NetFx.RSS_CONTEXT);
    const g = tb.addGuest({ device: { maxPairs: 2, maxRssContexts: 2 }, driver: { pairs: 2, features: feats } });
    const cfg = { hashTypes: HashType.TCPv4, table: [0, 1], key: DEFAULT_RSS_KEY };
    expect(g.driver.rssContextMax()).toBe(2);
    expect(() => g.driver.setRssContext(3, cfg)).toThrow(/out of range/);
    g.driver.setRssContext(2, cfg);
    g.driver.setRssContext(2, { ...cfg, table: [1, 1] }, true);
    expect(() => g.driver.setRssContext(2, cfg)).toThrow(/refused by the device/);
    expect(() => g.driver.setRssContext(1, cfg, true)).toThrow(/refused by the device/);
    expect(g.driver.rssContexts).toEqual([2]);
    expect(() => g.driver.setPairs(1)).toThrow(/RSS contexts/);
    g.driver.deleteRssContext(2);
    g.driver.setPairs(1);
    expect(g.device.violations).toEqual([]);
  });
});

describe('VQ_PAIRS_SET and queue set-up (net.driver.89)', () => {
  it('the device refuses to enable pairs whose queues the driver has not set up, and records the breach', () => {
    const tb = new NetTestbed();
    const g = tb.addGuest({ device: { maxPairs: 2 }, driver: { pairs: 1 } });
    const d = new Uint8Array([2, 0]);
    // The driver's own setPairs() refuses this; go around it as a broken driver would.
    expect(() => g.driver['mustCommand'](NetCtrl.CLASS_MQ, NetCtrl.MQ_VQ_PAIRS_SET, d, 'VQ_PAIRS_SET')).toThrow(/refused by the device/);
    expect(g.device.violations.map((v) => v.id)).toEqual(['net.driver.89']);
    const ok = tb.addGuest({ device: { maxPairs: 2 }, driver: { pairs: 2 } });
    expect(ok.driver.activePairs).toBe(2);
    expect(ok.device.violations).toEqual([]);
  });
});
