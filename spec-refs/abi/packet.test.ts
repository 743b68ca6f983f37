import { describe, expect, it } from 'vitest';
import { fc, test } from '@fast-check/vitest';
import { UsageError } from '../errors.ts';
import {
  EtherType,
  IpProto,
  buildL4Frame,
  buildPing,
  csumAdd,
  csumFold,
  internetChecksum,
  ip4FromString,
  ip6FromString,
  macFromString,
  macToString,
  parseFrame,
  parseIcmpEcho,
  verifyChecksums,
} from './packet.ts';

const eth = { dst: macFromString('52:54:00:00:00:02'), src: macFromString('52:54:00:00:00:01') };

describe('Internet checksum', () => {
  it('matches the RFC 1071 worked example', () => {
    // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2 (folded).
    const b = new Uint8Array([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
    expect(csumFold(csumAdd(b, 0, b.length))).toBe(0xddf2);
    expect(internetChecksum(b)).toBe(~0xddf2 & 0xffff);
  });
  test.prop([fc.uint8Array({ minLength: 0, maxLength: 3000 })])('a buffer with its checksum appended sums to zero', (b) => {
    const even = b.length % 2 === 0 ? b : new Uint8Array([...b, 0]);
    const c = internetChecksum(even);
    const all = new Uint8Array([...even, c >> 8, c & 0xff]);
    expect(internetChecksum(all)).toBe(0);
  });
});

describe('frame builders and parser', () => {
  it('round-trips MAC and IPv6 text forms', () => {
    expect(macToString(macFromString('02:aB:00:10:ff:01'))).toBe('02:ab:00:10:ff:01');
    expect(Array.from(ip6FromString('fe80::1'))).toEqual([0xfe, 0x80, ...new Array(13).fill(0), 1]);
  });

  it('rejects malformed address text with a typed UsageError (nothing parses to a silent zero)', () => {
    expect(Array.from(ip6FromString('::'))).toEqual(new Array(16).fill(0));
    expect(Array.from(ip6FromString('1:2:3:4:5:6:7:8'))).toEqual([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]);
    for (const bad of ['zz::1', '1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7::8', '12345::1', 'fe80::1:']) {
      expect(() => ip6FromString(bad), bad).toThrow(UsageError);
    }
    for (const bad of ['1.2.3', '1.2.3.256', 'a.b.c.d']) expect(() => ip4FromString(bad), bad).toThrow(UsageError);
    for (const bad of ['02:00:00:00:00', '02:00:00:00:00:0g', '02:00:00:00:00:100']) expect(() => macFromString(bad), bad).toThrow(UsageError);
    expect(() => macFromString('nope')).toThrow('bad MAC address "nope"');
  });
  for (const v6 of [false, true]) {
    for (const proto of ['tcp', 'udp'] as const) {
      it(`builds a ${proto}/${v6 ? 'ipv6' : 'ipv4'} frame the parser and verifier accept`, () => {
        const src = v6 ? ip6FromString('fd00::1') : ip4FromString('10.0.0.1');
        const dst = v6 ? ip6FromString('fd00::2') : ip4FromString('10.0.0.2');
        const { frame, csumStart, csumOffset } = buildL4Frame({ eth: { ...eth, vlan: 7 }, v6, src, dst, proto, srcPort: 1000, dstPort: 2000 }, new Uint8Array(333).fill(9));
        const info = parseFrame(frame);
        expect(info.vlan).toBe(7);
        expect(info.ethertype).toBe(v6 ? EtherType.IPV6 : EtherType.IPV4);
        expect(info.proto).toBe(proto === 'tcp' ? IpProto.TCP : IpProto.UDP);
        expect(info.l4).toBe(csumStart);
        expect(csumOffset).toBe(proto === 'tcp' ? 16 : 6);
        expect([info.srcPort, info.dstPort]).toEqual([1000, 2000]);
        expect(verifyChecksums(frame)).toMatchObject({ ip: true, l4: true });
        frame[frame.length - 1]! ^= 1;
        expect(verifyChecksums(frame).l4).toBe(false);
      });
    }
  }
  it('parses ICMP echo', () => {
    const f = buildPing(eth, ip4FromString('10.0.0.1'), ip4FromString('10.0.0.2'), 8, 77, 3, new Uint8Array([1, 2, 3]));
    expect(verifyChecksums(f)).toMatchObject({ ip: true, l4: true, what: 'ipv4+icmp' });
    expect(parseIcmpEcho(f)).toMatchObject({ type: 8, id: 77, seq: 3 });
  });
  test.prop([fc.uint8Array({ minLength: 0, maxLength: 200 })])('never reads past a truncated or random frame', (b) => {
    const info = parseFrame(b);
    expect(info.l4 < b.length || info.l4 === -1).toBe(true);
    expect(info.ipEnd).toBeLessThanOrEqual(b.length);
    verifyChecksums(b, info);
  });
});
