/**
 * virtio-net device configuration layout (device-types/net/description.tex, "Device configuration
 * layout"; net.driver.65 from "Setting Up Receive Buffers"):
 *
 *   net.device.config          net.device.1, .2, .4, .7, .8, .10, .11 (config fields in range)
 *   net.device.mtu             net.device.5, .6
 *   net.driver.config-buffers  net.driver.1, .3, .8, .11, .65
 */
import { VirtioNetDriver, NET_DRIVER_FEATURES } from '../../../drivers/net/driver.ts';
import { buildEthernet, macToString } from '../../../spec-refs/abi/packet.ts';
import { NetCfg } from '../../../spec-refs/abi/net.ts';
import { NetF, bit, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { defineCheck, expectEqual, expectThat } from '../../check.ts';
import { transportOf } from '../support.ts';
import { PEER, withRing, rigWith, rig, udpTo, same, strictRig } from './rig.ts';

defineCheck({
  id: 'net.device.config',
  title: 'config fields are in range: max_virtqueue_pairs, mtu (and constant), RSS limits, speed and duplex',
  statements: ['net.device.1', 'net.device.2', 'net.device.4', 'net.device.7', 'net.device.8', 'net.device.10', 'net.device.11'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'] },
  run(ctx) {
    const r = rig(ctx, { maxPairs: 3, mtu: 1400 });
    const d = r.drv.dev;
    const has = (b: number) => hasFeature(d.features, b);
    if (has(NetF.MQ)) {
      const n = d.config16(NetCfg.MAX_VIRTQUEUE_PAIRS);
      expectThat(n >= 1 && n <= 0x8000, ['net.device.1'], 'max_virtqueue_pairs out of range', '1..0x8000', `${n}`);
    }
    if (has(NetF.MTU)) {
      const mtu = d.config16(NetCfg.MTU);
      expectThat(mtu >= 68 && mtu <= 65535, ['net.device.2'], 'mtu out of range', '68..65535', `${mtu}`);
      r.inject(udpTo(r.drv.mac, 100));
      r.drv.send(buildEthernet({ dst: PEER, src: r.drv.mac }, 0x88b5, new Uint8Array(100)));
      r.run();
      expectEqual(d.config16(NetCfg.MTU), mtu, ['net.device.4'], 'mtu changed after traffic');
      r.drv.shutdown();
      const again = VirtioNetDriver.init(r.dut.platform, transportOf(r.dut), withRing(ctx, {}));
      expectEqual(again.dev.config16(NetCfg.MTU), mtu, ['net.device.4'], 'mtu changed across a reset');
    }
    if (has(NetF.RSS) || has(NetF.HASH_REPORT)) expectThat(d.config8(NetCfg.RSS_MAX_KEY_SIZE) >= 40, ['net.device.7'], 'rss_max_key_size below 40', '>= 40', `${d.config8(NetCfg.RSS_MAX_KEY_SIZE)}`);
    if (has(NetF.RSS)) expectThat(d.config16(NetCfg.RSS_MAX_INDIRECTION_TABLE_LENGTH) >= 128, ['net.device.8'], 'rss_max_indirection_table_length below 128', '>= 128', `${d.config16(NetCfg.RSS_MAX_INDIRECTION_TABLE_LENGTH)}`);
    if (has(NetF.SPEED_DUPLEX)) {
      const sp = d.config32(NetCfg.SPEED) >>> 0;
      expectThat(sp <= 0x7fffffff || sp === 0xffffffff, ['net.device.10'], 'speed out of range', '0..0x7fffffff or 0xffffffff', `0x${sp.toString(16)}`);
      const du = d.config8(NetCfg.DUPLEX);
      expectThat(du === 0 || du === 1 || du === 0xff, ['net.device.11'], 'duplex out of range', '0, 1 or 0xff', `${du}`);
    }
  },
});

defineCheck({
  id: 'net.device.mtu',
  title: 'with MTU negotiated: frames up to mtu + Ethernet header go out whole; longer ones are not delivered',
  statements: ['net.device.5', 'net.device.6'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'], features: [NetF.MTU] },
  run(ctx) {
    const r = rigWith(ctx, NetF.MTU, 'MTU', { mtu: 1280 });
    const mtu = r.drv.mtu;
    const f = buildEthernet({ dst: PEER, src: r.drv.mac }, 0x88b5, new Uint8Array(mtu));
    r.drv.send(f);
    r.run();
    expectThat(r.wire.length === 1 && r.wire[0]!.data.length === mtu + 14 && !r.wire[0]!.gso, ['net.device.6'], 'a frame of mtu + 14 bytes did not go out whole', `1 frame of ${mtu + 14} bytes`, r.wire.map((w) => w.data.length).join(',') || 'nothing');
    r.inject(buildEthernet({ dst: r.drv.mac, src: PEER }, 0x88b5, new Uint8Array(mtu + 100)));
    r.inject(buildEthernet({ dst: r.drv.mac, src: PEER }, 0x88b5, new Uint8Array(mtu)));
    r.run();
    const got = r.received();
    const tooLong = got.filter((x) => x.gsoType === 0 && x.data.length > mtu + 14).length + r.drv.deviceErrors.filter((e) => e.id === 'net.device.5').length;
    expectEqual(tooLong, 0, ['net.device.5'], 'frames longer than mtu + 14 delivered');
    expectEqual(got.length, 1, ['net.device.5'], 'frames delivered (the mtu-sized one only)');
  },
});

defineCheck({
  id: 'net.driver.config-buffers',
  title: 'no config writes; the config MAC is used; speed/duplex out of range read as unknown; receive buffers fit the MTU and, mergeable, the header',
  statements: ['net.driver.1', 'net.driver.3', 'net.driver.8', 'net.driver.11', 'net.driver.65'],
  side: 'driver',
  kind: 'example',
  applies: { devices: ['net'] },
  run(ctx) {
    const r = strictRig(ctx, { mtu: 4000, speed: 0x8000_0000, duplex: 7 }, { features: NET_DRIVER_FEATURES & ~bit(NetF.MRG_RXBUF), rxBuffers: 16 });
    r.inject(buildEthernet({ dst: r.drv.mac, src: PEER }, 0x88b5, new Uint8Array(3000)));
    r.run();
    r.verdict(['net.driver.1', 'net.driver.8']);
    const cfg = new Uint8Array(Array.from({ length: 6 }, (_, i) => r.drv.dev.config8(NetCfg.MAC + i)));
    if (hasFeature(r.drv.features, NetF.MAC)) expectThat(same(r.drv.mac, cfg), ['net.driver.3'], 'the driver does not use the config MAC', macToString(cfg), macToString(r.drv.mac));
    if (hasFeature(r.drv.features, NetF.SPEED_DUPLEX)) {
      expectEqual(r.drv.speed, 0xffffffff, ['net.driver.11'], 'speed above 0x7fffffff not read as unknown', true);
      expectEqual(r.drv.duplex, 0xff, ['net.driver.11'], 'duplex 7 not read as unknown', true);
    }
    const m = strictRig(ctx, {}, { features: NET_DRIVER_FEATURES | bit(NetF.MRG_RXBUF) });
    m.inject(buildEthernet({ dst: m.drv.mac, src: PEER }, 0x88b5, new Uint8Array(1400)));
    m.run();
    m.verdict(['net.driver.65']);
    expectEqual(m.received().length, 1, ['net.driver.65'], 'frame over mergeable buffers');
  },
});
