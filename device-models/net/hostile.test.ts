/**
 * The device model against a hostile driver (ROBUSTNESS.md, "net TX / net RX / net control
 * queue"): bad headers, bad buffers and bad commands never throw, every head taken is completed
 * (or DEVICE_NEEDS_RESET is set with a config interrupt), used.len never exceeds the writable
 * bytes, and the queues keep working afterwards.
 */
import { describe, expect, it } from 'vitest';
import { fc, test } from '@fast-check/vitest';
import { NetF, bit } from '../../spec-refs/abi/virtio.ts';
import { NetCtrl, NetHdr } from '../../spec-refs/abi/net.ts';
import { buildL4Frame, ip4FromString, macFromString, verifyChecksums } from '../../spec-refs/abi/packet.ts';
import { normalize } from './wire.ts';
import { NET_SUPPORTED_FEATURES } from './device.ts';
import { RawNet } from './raw.ts';

const eth = { dst: macFromString('52:54:00:00:00:99'), src: macFromString('52:54:00:12:34:56') };
const v4 = { src: ip4FromString('10.0.0.1'), dst: ip4FromString('10.0.0.2') };
const tcpFrame = (n = 200, csum: 'full' | 'partial' = 'full') => buildL4Frame({ eth, ...v4, proto: 'tcp', srcPort: 1, dstPort: 2, csum }, new Uint8Array(n).fill(5));

/** A valid frame still goes out after whatever happened before. */
function stillWorks(r: RawNet): void {
  const before = r.sent.length;
  const f = tcpFrame(100);
  r.transmit(r.header(), f.frame);
  expect(r.sent.length).toBe(before + 1);
  expect(r.needsReset).toBe(false);
}

describe('transmit header checks (net.driver.15-.47 seen from the device)', () => {
  it('accepts a header split over several descriptors', () => {
    const r = new RawNet();
    const f = tcpFrame();
    r.transmit(r.header(), f.frame, 4);
    expect(r.sent).toHaveLength(1);
    expect(Buffer.from(r.sent[0]!.data).equals(Buffer.from(f.frame))).toBe(true);
    expect(r.rings[1]!.usedIdx).toBe(1);
  });

  const bad: [string, string, (r: RawNet) => [Uint8Array, Uint8Array]][] = [
    ['short header', 'net.driver.15', (r) => [r.header().subarray(0, 5), new Uint8Array(0)]],
    ['csum_start beyond the frame', 'net.driver.44', (r) => [r.header({ flags: NetHdr.F_NEEDS_CSUM, csumStart: 4000, csumOffset: 16 }), tcpFrame().frame]],
    ['csum_offset beyond the frame', 'net.driver.44', (r) => [r.header({ flags: NetHdr.F_NEEDS_CSUM, csumStart: 34, csumOffset: 0xfff0 }), tcpFrame().frame]],
    ['GSO without NEEDS_CSUM', 'net.driver.46', (r) => [r.header({ gsoType: NetHdr.GSO_TCPV4, gsoSize: 500 }), tcpFrame(3000, 'partial').frame]],
    ['GSO with gso_size 0', 'net.driver.47', (r) => [r.header({ flags: 1, gsoType: NetHdr.GSO_TCPV4, gsoSize: 0, csumStart: 34, csumOffset: 16 }), tcpFrame(3000, 'partial').frame]],
    ['GSO type not matching the frame', 'net.driver.45', (r) => [r.header({ flags: 1, gsoType: NetHdr.GSO_TCPV6, gsoSize: 500, csumStart: 34, csumOffset: 16 }), tcpFrame(3000, 'partial').frame]],
    ['UFO never offered', 'net.driver.25', (r) => [r.header({ flags: 1, gsoType: NetHdr.GSO_UDP, gsoSize: 500, csumStart: 34, csumOffset: 6 }), tcpFrame(3000, 'partial').frame]],
    ['USO on a TCP frame', 'net.driver.45', (r) => [r.header({ flags: 1, gsoType: NetHdr.GSO_UDP_L4, gsoSize: 500, csumStart: 34, csumOffset: 6 }), tcpFrame(3000, 'partial').frame]],
    ['a tunnel bit on a frame that is no tunnel', 'net.driver.51', (r) => [r.header({ flags: 1, gsoType: NetHdr.GSO_TCPV4 | NetHdr.GSO_UDP_TUNNEL_IPV4, gsoSize: 500, csumStart: 34, csumOffset: 16 }), tcpFrame(3000, 'partial').frame]],
    ['both tunnel bits', 'net.driver.39', (r) => [r.header({ flags: 1, gsoType: NetHdr.GSO_TCPV4 | NetHdr.GSO_UDP_TUNNEL_IPV4 | NetHdr.GSO_UDP_TUNNEL_IPV6, gsoSize: 500, csumStart: 34, csumOffset: 16 }), tcpFrame(3000, 'partial').frame]],
    ['DATA_VALID on transmit', 'net.driver.59', (r) => [r.header({ flags: NetHdr.F_DATA_VALID }), tcpFrame().frame]],
    ['num_buffers set on transmit', 'net.driver.16', (r) => [r.header({ numBuffers: 3 }), tcpFrame().frame]],
    ['frame above the MTU without GSO', 'net.driver.9', (r) => [r.header(), tcpFrame(3000).frame]],
    ['frame shorter than Ethernet', 'net.driver.15', (r) => [r.header(), new Uint8Array(6)]],
  ];
  for (const [what, id, make] of bad) {
    it(`drops a frame with ${what}, completes the chain, records ${id}`, () => {
      const r = new RawNet();
      const [h, f] = make(r);
      r.transmit(h, f);
      expect(r.sent).toHaveLength(0);
      expect(r.rings[1]!.usedIdx).toBe(1);
      expect(r.rings[1]!.usedElem(0).len).toBe(0);
      expect(r.dev.violations.map((v) => v.id)).toContain(id);
      expect(r.dev.qstats[1]!.dropsSpecial).toBe(1);
      stillWorks(r);
    });
  }

  it('flags without CSUM negotiated are refused (net.driver.17)', () => {
    const r = new RawNet({ features: NET_SUPPORTED_FEATURES & ~bit(NetF.CSUM) });
    const f = tcpFrame(100, 'partial');
    r.transmit(r.header({ flags: NetHdr.F_NEEDS_CSUM, csumStart: f.csumStart, csumOffset: f.csumOffset }), f.frame);
    expect(r.sent).toHaveLength(0);
    expect(r.dev.violations.map((v) => v.id)).toContain('net.driver.17');
  });

  it('USO and UDP-tunnel GSO without their features are refused (net.driver.27, net.driver.31/.56)', () => {
    const r = new RawNet({ features: NET_SUPPORTED_FEATURES & ~bit(NetF.HOST_USO) });
    r.transmit(r.header({ flags: 1, gsoType: NetHdr.GSO_UDP_L4, gsoSize: 500, csumStart: 34, csumOffset: 6 }), tcpFrame(3000, 'partial').frame);
    expect(r.sent).toHaveLength(0);
    expect(r.dev.violations.map((v) => v.id)).toEqual(['net.driver.27']);
    r.transmit(r.header({ flags: 1, gsoType: NetHdr.GSO_TCPV4 | NetHdr.GSO_UDP_TUNNEL_IPV4, gsoSize: 500, csumStart: 34, csumOffset: 16 }), tcpFrame(3000, 'partial').frame);
    expect(r.sent).toHaveLength(0);
    expect(r.dev.violations.map((v) => v.id)).toEqual(expect.arrayContaining(['net.driver.27', 'net.driver.31', 'net.driver.56']));
  });

  it('GSO_ECN without HOST_ECN is refused (net.driver.28)', () => {
    const r = new RawNet({ features: NET_SUPPORTED_FEATURES & ~bit(NetF.HOST_ECN) });
    const f = tcpFrame(3000, 'partial');
    r.transmit(r.header({ flags: 1, gsoType: NetHdr.GSO_TCPV4 | NetHdr.GSO_ECN, gsoSize: 500, csumStart: f.csumStart, csumOffset: f.csumOffset }), f.frame);
    expect(r.sent).toHaveLength(0);
    expect(r.dev.violations.map((v) => v.id)).toContain('net.driver.28');
  });

  it('GSO_TCPV4 without HOST_TSO4 is refused (net.driver.21)', () => {
    const r = new RawNet({ features: NET_SUPPORTED_FEATURES & ~bit(NetF.HOST_TSO4) });
    const f = tcpFrame(3000, 'partial');
    r.transmit(r.header({ flags: 1, gsoType: NetHdr.GSO_TCPV4, gsoSize: 1000, csumStart: f.csumStart, csumOffset: f.csumOffset }), f.frame);
    expect(r.sent).toHaveLength(0);
    expect(r.dev.violations.map((v) => v.id)).toContain('net.driver.21');
  });

  it('ignores unknown flag bits (net.device.15) and does not use csum fields without NEEDS_CSUM (net.device.16)', () => {
    const r = new RawNet();
    const f = tcpFrame(100);
    r.transmit(r.header({ flags: 0x80, csumStart: 0xffff, csumOffset: 0xffff }), f.frame);
    expect(r.sent).toHaveLength(1);
    expect(r.sent[0]!.csum).toBeUndefined();
    // net.device.25: no NEEDS_CSUM, so the frame is passed on as it is, not vouched for
    expect(r.sent[0]!.dataValid).toBeFalsy();
  });

  it('does not trust hdr_len (net.device.21): a lying hdr_len still segments correctly', () => {
    const r = new RawNet();
    const f = tcpFrame(5000, 'partial');
    r.transmit(r.header({ flags: 1, gsoType: NetHdr.GSO_TCPV4, gsoSize: 1000, hdrLen: 3, csumStart: f.csumStart, csumOffset: f.csumOffset }), f.frame);
    expect(r.sent).toHaveLength(1);
    const segs = normalize(r.sent[0]!);
    expect(segs).toHaveLength(5);
    for (const s of segs) expect(verifyChecksums(s)).toMatchObject({ ip: true, l4: true });
  });

  it('completes a transmit chain that carries device-writable buffers without writing them', () => {
    const r = new RawNet();
    const f = tcpFrame(100);
    const bytes = new Uint8Array([...r.header(), ...f.frame]);
    const a = r.put(bytes);
    const w = r.alloc(64);
    r.m.mem.fill(w, 64, 0xab);
    r.post(1, [{ addr: a, len: bytes.length }], [{ addr: w, len: 64 }]);
    r.kick(1);
    expect(r.rings[1]!.usedElem(0).len).toBe(0);
    expect(Array.from(r.m.mem.readBytes(w, 64)).every((b) => b === 0xab)).toBe(true);
  });

  test.prop([fc.uint8Array({ minLength: 0, maxLength: 24 }), fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.integer({ min: 1, max: 4 })], { numRuns: 100 })(
    'random headers and frames: never throws, every head completed with len 0, whatever goes out normalizes',
    (hdr, frame, split) => {
      const r = new RawNet();
      r.transmit(hdr, frame, split);
      expect(r.rings[1]!.usedIdx).toBe(1);
      expect(r.rings[1]!.usedElem(0).len).toBe(0);
      for (const wf of r.sent) for (const s of normalize(wf)) expect(s.length).toBeGreaterThanOrEqual(14);
      stillWorks(r);
    },
  );
});

describe('receive buffers from a hostile driver', () => {
  const incoming = () => ({ data: buildL4Frame({ eth: { dst: macFromString('52:54:00:12:34:56'), src: macFromString('02:00:00:00:00:01') }, ...v4, proto: 'udp', srcPort: 1, dstPort: 2 }, new Uint8Array(500).fill(1)).frame });

  it('1-byte buffers without MRG_RXBUF are handed back empty; the frame waits for a real buffer', () => {
    const r = new RawNet({ features: NET_SUPPORTED_FEATURES & ~bit(NetF.MRG_RXBUF) });
    r.postRx(2, 1);
    r.dev.receive(incoming());
    r.m.scheduler.runFor(1_000_000);
    expect(r.rings[0]!.usedIdx).toBe(2);
    expect(r.rings[0]!.usedElem(0).len).toBe(0);
    const [a] = r.postRx(1, 2000);
    expect(r.rings[0]!.usedIdx).toBe(3);
    expect(r.rings[0]!.usedElem(2).len).toBe(r.hdrLen + 542);
    expect(r.m.mem.read16(a! + 10)).toBe(1); // num_buffers (net.device.29)
  });

  it('an undersized (but header-sized) buffer drops the frame and is kept for a smaller one', () => {
    const r = new RawNet({ features: NET_SUPPORTED_FEATURES & ~bit(NetF.MRG_RXBUF) });
    r.postRx(1, 100);
    r.dev.receive(incoming());
    r.m.scheduler.runFor(1_000_000);
    expect(r.rings[0]!.usedIdx).toBe(0);
    expect(r.dev.qstats[0]!.dropsSpecial).toBe(1);
    r.dev.receive({ data: new Uint8Array(60).fill(0xff) });
    r.m.scheduler.runFor(1_000_000);
    expect(r.rings[0]!.usedIdx).toBe(1);
    expect(r.rings[0]!.usedElem(0).len).toBe(r.hdrLen + 60);
  });

  it('mergeable buffers smaller than the header: DEVICE_NEEDS_RESET with a config interrupt (net.driver.65)', () => {
    const r = new RawNet();
    r.postRx(2, 4);
    const cfgBefore = r.mmio.core.stats.configSignals;
    r.dev.receive(incoming());
    r.m.scheduler.runFor(1_000_000);
    expect(r.needsReset).toBe(true);
    expect(r.mmio.core.stats.configSignals).toBe(cfgBefore + 1);
    expect(r.dev.violations.map((v) => v.id)).toContain('net.driver.65');
    // the head taken was completed (with nothing written); the device stopped taking more
    expect(r.rings[0]!.usedIdx).toBe(1);
    expect(r.rings[0]!.usedElem(0).len).toBe(0);
  });

  it('mergeable: small buffers are all filled except the last (net.device.31), num_buffers counts them (net.device.30)', () => {
    const r = new RawNet();
    const bufs = r.postRx(8, 100);
    r.dev.receive(incoming());
    r.m.scheduler.runFor(1_000_000);
    const n = Math.ceil((r.hdrLen + 542) / 100);
    expect(r.rings[0]!.usedIdx).toBe(n);
    for (let k = 0; k < n - 1; k++) expect(r.rings[0]!.usedElem(k).len).toBe(100);
    expect(r.rings[0]!.usedElem(n - 1).len).toBe((r.hdrLen + 542) - 100 * (n - 1));
    expect(r.m.mem.read16(bufs[0]! + 10)).toBe(n);
  });

  it('receive queue full while traffic arrives: frames wait and arrive when buffers come (no lost wake-up)', () => {
    const r = new RawNet();
    for (let i = 0; i < 5; i++) r.dev.receive(incoming());
    r.m.scheduler.runFor(1_000_000);
    expect(r.rings[0]!.usedIdx).toBe(0);
    r.postRx(3, 2048);
    expect(r.rings[0]!.usedIdx).toBe(3);
    r.postRx(3, 2048);
    expect(r.rings[0]!.usedIdx).toBe(5);
  });
});

describe('control queue from a hostile driver', () => {
  it('short command, missing ack buffer, unknown class and command, bad arguments', () => {
    const r = new RawNet({ device: { maxPairs: 4 } });
    const q = r.ctrlIndex;
    // one readable byte only
    const a = r.put(new Uint8Array([0]));
    const ack = r.alloc(1);
    r.m.mem.write8(ack, 0xff);
    r.post(q, [{ addr: a, len: 1 }], [{ addr: ack, len: 1 }]);
    r.kick(q);
    expect(r.m.mem.read8(ack)).toBe(NetCtrl.ERR);
    // no writable byte at all: completed with len 0
    const used = r.rings[q]!.usedIdx;
    r.post(q, [{ addr: r.put(new Uint8Array([0, 0, 1])), len: 3 }], []);
    r.kick(q);
    expect(r.rings[q]!.usedIdx).toBe(used + 1);
    expect(r.rings[q]!.usedElem(used).len).toBe(0);
    expect(r.ctrl(99, 0).ack).toBe(NetCtrl.ERR);
    expect(r.ctrl(NetCtrl.CLASS_RX, 77, new Uint8Array([1])).ack).toBe(NetCtrl.ERR);
    expect(r.ctrl(NetCtrl.CLASS_RX, NetCtrl.RX_PROMISC, new Uint8Array([2])).ack).toBe(NetCtrl.ERR);
    expect(r.ctrl(NetCtrl.CLASS_RX, NetCtrl.RX_PROMISC, new Uint8Array([])).ack).toBe(NetCtrl.ERR);
    expect(r.ctrl(NetCtrl.CLASS_VLAN, NetCtrl.VLAN_ADD, new Uint8Array([0x00, 0x10])).ack).toBe(NetCtrl.ERR); // vid 4096
    expect(r.ctrl(NetCtrl.CLASS_VLAN, NetCtrl.VLAN_ADD, new Uint8Array([0xff, 0x0f])).ack).toBe(NetCtrl.OK); // vid 4095
    expect(r.ctrl(NetCtrl.CLASS_MQ, NetCtrl.MQ_VQ_PAIRS_SET, new Uint8Array([0, 0])).ack).toBe(NetCtrl.ERR); // net.driver.90
    expect(r.ctrl(NetCtrl.CLASS_MQ, NetCtrl.MQ_VQ_PAIRS_SET, new Uint8Array([5, 0])).ack).toBe(NetCtrl.ERR);
    expect(r.ctrl(NetCtrl.CLASS_MQ, NetCtrl.MQ_VQ_PAIRS_SET, new Uint8Array([4, 0])).ack).toBe(NetCtrl.OK);
    expect(r.dev.activePairs).toBe(4);
    // MAC table whose counts do not match its length (net.driver.85)
    expect(r.ctrl(NetCtrl.CLASS_MAC, NetCtrl.MAC_TABLE_SET, new Uint8Array([5, 0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0])).ack).toBe(NetCtrl.ERR);
    expect(r.ctrl(NetCtrl.CLASS_MAC, NetCtrl.MAC_TABLE_SET, new Uint8Array([1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0])).ack).toBe(NetCtrl.OK);
    expect(r.needsReset).toBe(false);
    expect(r.dev.violations.map((v) => v.id)).toEqual(expect.arrayContaining(['net.driver.90', 'net.driver.85']));
  });

  it('commands of features not negotiated are refused (net.driver.81/.82/.83/.93/.103)', () => {
    const feats = NET_SUPPORTED_FEATURES & ~[NetF.CTRL_RX, NetF.CTRL_RX_EXTRA, NetF.CTRL_MAC_ADDR, NetF.RSS, NetF.NOTF_COAL, NetF.GUEST_ANNOUNCE, NetF.CTRL_VLAN].reduce((s, b) => s | bit(b), 0n);
    const r = new RawNet({ features: feats });
    expect(r.ctrl(NetCtrl.CLASS_RX, NetCtrl.RX_PROMISC, new Uint8Array([1])).ack).toBe(NetCtrl.ERR);
    expect(r.ctrl(NetCtrl.CLASS_RX, NetCtrl.RX_NOBCAST, new Uint8Array([1])).ack).toBe(NetCtrl.ERR);
    expect(r.ctrl(NetCtrl.CLASS_MAC, NetCtrl.MAC_TABLE_SET, new Uint8Array(8)).ack).toBe(NetCtrl.ERR);
    expect(r.ctrl(NetCtrl.CLASS_MAC, NetCtrl.MAC_ADDR_SET, new Uint8Array(6)).ack).toBe(NetCtrl.ERR);
    expect(r.ctrl(NetCtrl.CLASS_NOTF_COAL, NetCtrl.NOTF_COAL_RX_SET, new Uint8Array(8)).ack).toBe(NetCtrl.ERR);
    expect(r.ctrl(NetCtrl.CLASS_ANNOUNCE, NetCtrl.ANNOUNCE_ACK).ack).toBe(NetCtrl.ERR);
    expect(r.ctrl(NetCtrl.CLASS_VLAN, NetCtrl.VLAN_ADD, new Uint8Array([1, 0])).ack).toBe(NetCtrl.ERR);
    expect(r.dev.violations.map((v) => v.id)).toEqual(expect.arrayContaining(['net.driver.81', 'net.driver.82', 'net.driver.83', 'net.driver.103']));
  });

  test.prop([fc.integer({ min: 0, max: 10 }), fc.integer({ min: 0, max: 5 }), fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 0, max: 80 })], { numRuns: 100 })(
    'random commands: an ack of OK or ERR, used.len within the writable bytes, nothing thrown',
    (cls, cmd, data, resultLen) => {
      const r = new RawNet({ device: { maxPairs: 2 } });
      const res = r.ctrl(cls, cmd, data, resultLen);
      expect([NetCtrl.OK, NetCtrl.ERR]).toContain(res.ack);
      expect(res.len).toBeGreaterThanOrEqual(1);
      expect(res.len).toBeLessThanOrEqual(1 + resultLen);
      stillWorks(r);
    },
  );
});


