/**
 * virtio-net device statistics (device-types/net/description.tex, "Control Virtqueue / Device
 * Statistics"):
 *
 *   net.device.stats       net.device.114-.119
 *   net.device.stats-wrap  net.device.120
 */
import { buildEthernet } from '../../../spec-refs/abi/packet.ts';
import { NetCtrl, StatsType } from '../../../spec-refs/abi/net.ts';
import { NetF } from '../../../spec-refs/abi/virtio.ts';
import { defineCheck, expectEqual, expectThat } from '../../check.ts';
import { PEER, rigWith, udpTo, same } from './rig.ts';

defineCheck({
  id: 'net.device.stats',
  title: 'STATS_QUERY answers; STATS_GET replies carry type, vq_index and their size, fail whole on any bad entry, never overrun the buffer',
  statements: ['net.device.114', 'net.device.115', 'net.device.116', 'net.device.117', 'net.device.118', 'net.device.119'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'], features: [NetF.DEVICE_STATS] },
  run(ctx) {
    const r = rigWith(ctx, NetF.DEVICE_STATS, 'DEVICE_STATS');
    const q = r.drv.command(NetCtrl.CLASS_STATS, NetCtrl.STATS_QUERY, new Uint8Array(0), 8);
    expectThat(q.ack === NetCtrl.OK && q.result.length === 8, ['net.device.114'], 'STATS_QUERY reply', 'OK + 8 bytes', `ack ${q.ack}, ${q.result.length} bytes`);
    const supported = r.drv.statsQuery();
    expectThat(supported.includes(StatsType.RX_BASIC) && supported.includes(StatsType.TX_BASIC), ['net.device.114'], 'basic statistics not reported as supported');
    r.inject(udpTo(r.drv.mac, 50));
    r.run();
    const entry = (vq: number, lo: number, hi = 0) => {
      const b = new Uint8Array(16);
      const v = new DataView(b.buffer);
      v.setUint16(0, vq, true);
      v.setUint32(8, lo, true);
      v.setUint32(12, hi, true);
      return b;
    };
    const two = new Uint8Array([...entry(0, 1 << StatsType.RX_BASIC), ...entry(1, 1 << StatsType.TX_BASIC)]);
    const ok = r.drv.command(NetCtrl.CLASS_STATS, NetCtrl.STATS_GET, two, 200);
    expectEqual(ok.ack, NetCtrl.OK, ['net.device.114'], 'STATS_GET of basic statistics');
    const rv = new DataView(ok.result.buffer, ok.result.byteOffset, ok.result.byteLength);
    expectEqual(ok.result[0], StatsType.RX_BASIC, ['net.device.118'], 'first reply type');
    expectEqual(rv.getUint16(2, true), 0, ['net.device.118'], 'first reply vq_index');
    const s0 = rv.getUint16(6, true);
    expectEqual(s0, 8 + 6 * 8, ['net.device.117'], 'size of an rx basic reply');
    expectEqual(ok.result[s0], StatsType.TX_BASIC, ['net.device.118'], 'second reply type');
    expectEqual(rv.getUint16(s0 + 2, true), 1, ['net.device.118'], 'second reply vq_index');
    expectEqual(Number(rv.getBigUint64(16, true)), 1, ['net.device.114'], 'rx_packets after one frame');
    // A short buffer: only whole valid bytes, nothing past it.
    const short = r.drv.command(NetCtrl.CLASS_STATS, NetCtrl.STATS_GET, two, 20);
    expectThat(short.result.length <= 20 && same(short.result, ok.result.subarray(0, short.result.length)), ['net.device.119'], 'a short result buffer got bytes that are not the reply prefix');
    for (const [what, bad] of [
      ['vq_index out of range', new Uint8Array([...entry(0, 1), ...entry(999, 1)])],
      ['an unknown type', new Uint8Array([...entry(0, 1), ...entry(0, 1 << 12)])],
      ['a type invalid for the queue', new Uint8Array([...entry(0, 1), ...entry(1, 1 << StatsType.RX_BASIC)])],
    ] as const) {
      const res = r.drv.command(NetCtrl.CLASS_STATS, NetCtrl.STATS_GET, bad, 200);
      expectEqual(res.ack, NetCtrl.ERR, ['net.device.115'], `STATS_GET with ${what}`);
      expectEqual(res.result.length, 0, ['net.device.116'], `a failed STATS_GET (${what}) still returned replies`);
    }
  },
});

defineCheck({
  id: 'net.device.stats-wrap',
  title: 'statistics counters wrap around to 0 past 2^64 - 1',
  statements: ['net.device.120'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'], features: [NetF.DEVICE_STATS] },
  run(ctx) {
    const r = rigWith(ctx, NetF.DEVICE_STATS, 'DEVICE_STATS', { mtu: 9000 });
    // White-box: bring rx_bytes of receiveq1 to 2^64 - 2048 (a value a double holds exactly), then receive 2048 bytes.
    r.nic.qstats[0]!.bytes = 2 ** 64 - 2048;
    r.inject(buildEthernet({ dst: r.drv.mac, src: PEER }, 0x88b5, new Uint8Array(2048 - 14)));
    r.run();
    expectEqual(r.received().length, 1, ['net.device.120'], 'frames received');
    const [rx] = r.drv.statsGet(0, [StatsType.RX_BASIC]);
    expectEqual(rx?.counters[2], 0, ['net.device.120'], 'rx_bytes after passing 2^64 - 1');
    r.inject(buildEthernet({ dst: r.drv.mac, src: PEER }, 0x88b5, new Uint8Array(100 - 14)));
    r.run();
    const [rx2] = r.drv.statsGet(0, [StatsType.RX_BASIC]);
    expectEqual(rx2?.counters[2], 100, ['net.device.120'], 'rx_bytes counting on from 0 after the wrap');
  },
});
