import { describe, expect, it } from 'vitest';
import { fc, test } from '@fast-check/vitest';
import { buildL4Frame, ip4FromString, ip6FromString, macFromString, parseFrame, readBe16, readBe32, verifyChecksums, TcpFlag } from '../../spec-refs/abi/packet.ts';
import { NetHdr } from '../../spec-refs/abi/net.ts';
import { normalize, segment } from './wire.ts';
import { toeplitz } from './rss.ts';
import { DEFAULT_RSS_KEY } from './rss.ts';

const eth = { dst: macFromString('52:54:00:00:00:02'), src: macFromString('52:54:00:00:00:01') };

describe('checksum completion and segmentation', () => {
  it('completes a partial checksum', () => {
    const { frame, csumStart, csumOffset } = buildL4Frame({ eth, src: ip4FromString('10.0.0.1'), dst: ip4FromString('10.0.0.2'), proto: 'udp', srcPort: 5, dstPort: 6, csum: 'partial' }, new Uint8Array(100).fill(3));
    expect(verifyChecksums(frame).l4).toBe(false);
    const [out] = normalize({ data: frame, csum: { start: csumStart, offset: csumOffset } });
    expect(verifyChecksums(out!)).toMatchObject({ ip: true, l4: true });
  });
  test.prop([fc.integer({ min: 1, max: 65000 }), fc.integer({ min: 536, max: 9000 }), fc.boolean(), fc.integer({ min: 0, max: 0xffffffff })], { numRuns: 40 })(
    'TCP segmentation: every segment valid, payload and sequence numbers contiguous',
    (len, mss, v6, seq) => {
      const payload = new Uint8Array(len);
      for (let i = 0; i < len; i++) payload[i] = (i * 7 + 3) & 0xff;
      const src = v6 ? ip6FromString('fd00::1') : ip4FromString('10.0.0.1');
      const dst = v6 ? ip6FromString('fd00::2') : ip4FromString('10.0.0.2');
      const { frame, l4 } = buildL4Frame({ eth, v6, src, dst, proto: 'tcp', srcPort: 1, dstPort: 2, seq, tcpFlags: TcpFlag.ACK | TcpFlag.PSH | TcpFlag.FIN, csum: 'partial' }, payload);
      const segs = segment(frame, { type: v6 ? NetHdr.GSO_TCPV6 : NetHdr.GSO_TCPV4, size: mss, hdrLen: l4 + 20 })!;
      expect(segs.length).toBe(Math.ceil(len / mss));
      const joined: number[] = [];
      segs.forEach((s, i) => {
        const info = parseFrame(s);
        expect(verifyChecksums(s, info)).toMatchObject({ ip: true, l4: true });
        expect(readBe32(s, info.l4 + 4)).toBe((seq + i * mss) >>> 0);
        const fin = (s[info.l4 + 13]! & TcpFlag.FIN) !== 0;
        expect(fin).toBe(i === segs.length - 1);
        if (!v6) expect(readBe16(s, info.l3 + 2)).toBe(s.length - info.l3);
        joined.push(...s.subarray(info.headerLen, info.ipEnd));
      });
      expect(Buffer.from(joined).equals(Buffer.from(payload))).toBe(true);
    },
  );
  it('refuses a GSO type that does not match the frame', () => {
    const { frame } = buildL4Frame({ eth, src: ip4FromString('10.0.0.1'), dst: ip4FromString('10.0.0.2'), proto: 'udp', srcPort: 1, dstPort: 2 }, new Uint8Array(10));
    expect(segment(frame, { type: NetHdr.GSO_TCPV4, size: 100, hdrLen: 0 })).toBeNull();
    expect(segment(frame, { type: NetHdr.GSO_TCPV6, size: 100, hdrLen: 0 })).toBeNull();
  });
});

describe('Toeplitz hash', () => {
  it('matches the published RSS verification vectors', () => {
    // Microsoft "Verifying the RSS Hash Calculation": 66.9.149.187:2794 -> 161.142.100.80:1766
    const ip = new Uint8Array([66, 9, 149, 187, 161, 142, 100, 80]);
    expect(toeplitz(DEFAULT_RSS_KEY, ip)).toBe(0x323e8fc2);
    const withPorts = new Uint8Array([...ip, 2794 >> 8, 2794 & 0xff, 1766 >> 8, 1766 & 0xff]);
    expect(toeplitz(DEFAULT_RSS_KEY, withPorts)).toBe(0x51ccc178);
  });
});
