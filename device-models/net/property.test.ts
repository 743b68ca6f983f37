/**
 * Property: between two NICs on the switch, with random negotiated features on each side
 * (MRG_RXBUF, CSUM / GUEST_CSUM, HOST/GUEST TSO, MQ, event idx, indirect), random receive-buffer
 * sizes and random frames (60 bytes to 64 KiB super-frames), every frame's bytes arrive exactly
 * once, intact, with correct checksums, in order per flow; and the receive header obeys what
 * was negotiated (net.device.28/.29/.30/.33/.35/.37/.54/.55/.56).
 */
import { describe, expect } from 'vitest';
import { fc, test } from '@fast-check/vitest';
import { NetF, F, bit } from '../../spec-refs/abi/virtio.ts';
import { NetHdr, netHdrSize } from '../../spec-refs/abi/net.ts';
import { IpProto, buildL4Frame, ip4FromString, parseFrame, readBe32, verifyChecksums } from '../../spec-refs/abi/packet.ts';
import { completeReceived, NET_DRIVER_FEATURES, type RxFrame } from '../../drivers/net/driver.ts';
import { segment } from './wire.ts';
import { NetTestbed, netConfigs } from '../../conformance/harness/net.ts';

interface Side {
  mrg: boolean;
  csum: boolean;
  guestCsum: boolean;
  tso: boolean;
  guestTso: boolean;
  mq: boolean;
  eventIdx: boolean;
  indirect: boolean;
  rxBuf: number;
}

const side = fc.record({
  mrg: fc.boolean(),
  csum: fc.boolean(),
  guestCsum: fc.boolean(),
  tso: fc.boolean(),
  guestTso: fc.boolean(),
  mq: fc.boolean(),
  eventIdx: fc.boolean(),
  indirect: fc.boolean(),
  rxBuf: fc.integer({ min: 0, max: 4000 }),
});

function features(s: Side): bigint {
  let f = NET_DRIVER_FEATURES & ~[NetF.MRG_RXBUF, NetF.CSUM, NetF.GUEST_CSUM, NetF.HOST_TSO4, NetF.HOST_TSO6, NetF.GUEST_TSO4, NetF.GUEST_TSO6, NetF.MQ, NetF.RSS, NetF.HASH_REPORT, F.EVENT_IDX, F.INDIRECT_DESC].reduce((a, b) => a | bit(b), 0n);
  if (s.mrg) f |= bit(NetF.MRG_RXBUF);
  if (s.csum) f |= bit(NetF.CSUM);
  if (s.guestCsum) f |= bit(NetF.GUEST_CSUM);
  if (s.tso) f |= bit(NetF.HOST_TSO4) | bit(NetF.HOST_TSO6);
  if (s.guestTso) f |= bit(NetF.GUEST_TSO4) | bit(NetF.GUEST_TSO6);
  if (s.mq) f |= bit(NetF.MQ);
  if (s.eventIdx) f |= bit(F.EVENT_IDX);
  if (s.indirect) f |= bit(F.INDIRECT_DESC);
  return f;
}

/** Receive buffer size for a side: mergeable buffers may be tiny (>= header); others must hold the largest frame. */
function rxBufSize(s: Side, f: bigint): number {
  const hl = netHdrSize(f | bit(F.VERSION_1));
  // Mergeable: any size from a few hundred bytes (the ring of 256 must still hold a 64 KiB frame).
  if (s.mrg) return hl + 300 + s.rxBuf;
  const gso = s.guestTso && s.guestCsum;
  return hl + (gso ? 65535 + 18 : 1518) + s.rxBuf;
}

const frameSpec = fc.record({
  flow: fc.integer({ min: 0, max: 3 }),
  v6: fc.boolean(),
  /** payload bytes: small frames (60..1514 on the wire) or GSO super-frames up to 64 KiB */
  size: fc.oneof(fc.integer({ min: 0, max: 1460 }), fc.integer({ min: 1461, max: 65000 })),
  mss: fc.integer({ min: 500, max: 1440 }),
  offload: fc.boolean(),
});

interface Sent {
  flow: number;
  v6: boolean;
  payload: Uint8Array;
}

function run(transport: string, ring: 'split' | 'packed', a: Side, b: Side, frames: { flow: number; v6: boolean; size: number; mss: number; offload: boolean }[], seed: number): void {
  const tb = new NetTestbed(seed);
  const fa = features(a);
  const fb = features(b);
  const ga = tb.addGuest({ transport, ring, ramMiB: 12, device: { maxPairs: 2 }, driver: { features: fa, rxBufferSize: rxBufSize(a, fa), rxBuffers: a.mrg ? 256 : 24 } });
  const gb = tb.addGuest({ transport, ring, ramMiB: 12, device: { maxPairs: 2 }, driver: { features: fb, rxBufferSize: rxBufSize(b, fb), rxBuffers: b.mrg ? 256 : 24 } });
  const got: RxFrame[] = [];
  gb.driver.onReceive((f) => got.push(f));
  const src4 = ip4FromString('10.1.0.1');
  const dst4 = ip4FromString('10.1.0.2');
  const src6 = new Uint8Array(16).fill(1);
  const dst6 = new Uint8Array(16).fill(2);
  const sent: Sent[] = [];
  const seqs = new Map<number, number>();
  let counter = 0;
  for (const fs of frames) {
    const payload = new Uint8Array(fs.size);
    for (let i = 0; i < payload.length; i++) payload[i] = (counter * 131 + i * 7) & 0xff;
    counter++;
    const key = fs.flow * 2 + (fs.v6 ? 1 : 0);
    const seq = seqs.get(key) ?? 1000;
    seqs.set(key, (seq + fs.size) >>> 0);
    const big = fs.size > (fs.v6 ? 1440 : 1460);
    const built = buildL4Frame({
      eth: { dst: gb.driver.mac, src: ga.driver.mac }, v6: fs.v6, src: fs.v6 ? src6 : src4, dst: fs.v6 ? dst6 : dst4,
      proto: 'tcp', srcPort: 30000 + fs.flow, dstPort: 80, seq, csum: fs.offload || big ? 'partial' : 'full',
    }, payload);
    const off = big
      ? { gso: { type: fs.v6 ? NetHdr.GSO_TCPV6 : NetHdr.GSO_TCPV4, size: fs.mss } }
      : fs.offload ? { csum: { start: built.csumStart, offset: built.csumOffset } } : {};
    sent.push({ flow: key, v6: fs.v6, payload });
    let tries = 0;
    while (!ga.driver.send(built.frame, off)) {
      tb.step();
      if (++tries > 10_000) throw new Error('transmit ring never drained');
    }
  }
  // Let everything arrive.
  for (let i = 0; i < 200 && gb.driver.stats.rxFrames < frames.length; i++) tb.step(50_000);
  tb.runAll(500_000);

  // Per-flow byte streams, reconstructed from what B received.
  const stream = new Map<number, Buffer[]>();
  const streamLen = new Map<number, number>();
  const bHas = (n: number) => (gb.driver.features & bit(n)) !== 0n;
  for (const f of got) {
    // Header obeys what B negotiated.
    if (!bHas(NetF.GUEST_CSUM)) expect(f.flags).toBe(0); // net.device.33
    if (!bHas(NetF.MRG_RXBUF)) expect(f.numBuffers).toBe(1); // net.device.28/.29
    if (f.gsoType !== NetHdr.GSO_NONE) {
      expect(bHas(f.gsoType === NetHdr.GSO_TCPV4 ? NetF.GUEST_TSO4 : NetF.GUEST_TSO6)).toBe(true); // net.device.35/.37
      expect(f.flags & NetHdr.F_NEEDS_CSUM).toBe(NetHdr.F_NEEDS_CSUM); // net.device.55
      expect(f.gsoSize).toBeGreaterThan(0); // net.device.56
    }
    const data = completeReceived(f);
    const segs = f.gsoType !== NetHdr.GSO_NONE ? segment(data, { type: f.gsoType, size: f.gsoSize, hdrLen: 0 })! : [data];
    for (const s of segs) {
      const info = parseFrame(s);
      expect(info.proto).toBe(IpProto.TCP);
      const ck = verifyChecksums(s, info);
      expect(ck.ip && ck.l4).toBe(true);
      const key = (info.srcPort - 30000) * 2 + (info.ipVersion === 6 ? 1 : 0);
      const arr = stream.get(key) ?? [];
      const have = streamLen.get(key) ?? 0;
      // Sequence numbers must continue the stream exactly (in order, no gap, no repeat).
      expect(readBe32(s, info.l4 + 4)).toBe((1000 + have) >>> 0);
      arr.push(Buffer.from(s.subarray(info.headerLen, info.ipEnd)));
      stream.set(key, arr);
      streamLen.set(key, have + info.ipEnd - info.headerLen);
    }
  }
  for (const [key] of seqs) {
    const expected = Buffer.concat(sent.filter((s) => s.flow === key).map((s) => s.payload));
    const actual = Buffer.concat(stream.get(key) ?? []);
    expect(actual.length).toBe(expected.length);
    expect(actual.equals(expected)).toBe(true);
  }
  expect(ga.device.violations).toEqual([]);
  expect(gb.device.violations).toEqual([]);
  expect(gb.driver.deviceErrors).toEqual([]);
  expect(gb.driver.stats.rxDropped).toBe(0);
}

describe.each(netConfigs())('virtio-net data path over %s with %s rings', (transport, ring) => {
  test.prop([side, side, fc.array(frameSpec, { minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 1000 })], { numRuns: 10 })(
    'every frame arrives once, intact, checksummed, in order per flow',
    (a, b, frames, seed) => run(transport, ring, a, b, frames, seed),
  );
});
