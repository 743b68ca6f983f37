/**
 * virtio-net receive filtering (device-types/net/description.tex, "Control Virtqueue / Packet
 * Receive Filtering", "Setting MAC Address Filtering", "VLAN Filtering"), the device side:
 *
 *   net.device.rx-filter  net.device.76, .80, .89, .90, .91, .93, .94
 *
 * The driver's use of these commands is checked with every other command in ctrl.ts.
 */
import { VirtioNetDriver, NET_DRIVER_FEATURES, type RxFrame } from '../../../drivers/net/driver.ts';
import { BROADCAST, buildEthernet, macFromString, macToString } from '../../../spec-refs/abi/packet.ts';
import { NetCfg, NetCtrl } from '../../../spec-refs/abi/net.ts';
import { NetF, bit, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { CheckSkip, defineCheck, expectEqual, expectThat } from '../../check.ts';
import { transportOf } from '../support.ts';
import { PEER, withRing, rig, same } from './rig.ts';

defineCheck({
  id: 'net.device.rx-filter',
  title: 'CTRL_RX modes, the MAC table (empty after reset, in force before the command completes), MAC_ADDR_SET, VLAN filtering',
  statements: ['net.device.76', 'net.device.80', 'net.device.89', 'net.device.90', 'net.device.91', 'net.device.93', 'net.device.94'],
  side: 'device',
  kind: 'example',
  applies: { devices: ['net'], features: [NetF.CTRL_RX] },
  run(ctx) {
    const r = rig(ctx);
    const has = (b: number) => hasFeature(r.drv.features, b);
    if (!has(NetF.CTRL_RX)) throw new CheckSkip('CTRL_RX not negotiated');
    const other = macFromString('52:54:00:aa:aa:aa');
    const multi = macFromString('01:00:5e:00:00:07');
    const arrives = (dst: Uint8Array, vlan?: number): boolean => {
      r.received();
      r.inject(buildEthernet({ dst, src: PEER, vlan }, 0x88b5, new Uint8Array(46)));
      r.run(100_000);
      return r.received().length === 1;
    };
    expectThat(!arrives(other), ['net.device.76'], 'a unicast frame for another MAC arrived outside promiscuous mode');
    r.drv.setPromisc(true);
    expectThat(arrives(other), ['net.device.76'], 'PROMISC on: a frame for another MAC did not arrive');
    r.drv.setPromisc(false);
    r.drv.setAllMulti(false);
    expectThat(!arrives(multi), ['net.device.76'], 'ALLMULTI off: a multicast frame not in the table arrived');
    r.drv.setAllMulti(true);
    expectThat(arrives(multi), ['net.device.76'], 'ALLMULTI on: a multicast frame did not arrive');
    if (has(NetF.CTRL_RX_EXTRA)) {
      r.drv.setRxMode(NetCtrl.RX_NOBCAST, true);
      expectThat(!arrives(BROADCAST), ['net.device.80'], 'NOBCAST on: broadcast arrived');
      r.drv.setRxMode(NetCtrl.RX_NOBCAST, false);
      r.drv.setRxMode(NetCtrl.RX_ALLUNI, true);
      expectThat(arrives(other), ['net.device.80'], 'ALLUNI on: unicast for another MAC did not arrive');
      r.drv.setRxMode(NetCtrl.RX_NOUNI, true);
      expectThat(!arrives(r.drv.mac), ['net.device.80'], 'NOUNI on: unicast arrived');
      r.drv.setRxMode(NetCtrl.RX_NOUNI, false);
      r.drv.setRxMode(NetCtrl.RX_ALLUNI, false);
      r.drv.setRxMode(NetCtrl.RX_NOMULTI, true);
      expectThat(!arrives(multi), ['net.device.80'], 'NOMULTI on: multicast arrived');
      r.drv.setRxMode(NetCtrl.RX_NOMULTI, false);
    }
    // net.device.90: the table is in force as soon as the command is used (no time passes in between).
    r.drv.setMacTable([other], []);
    r.received();
    r.inject(buildEthernet({ dst: other, src: PEER }, 0x88b5, new Uint8Array(46)));
    r.run(100_000);
    expectEqual(r.received().length, 1, ['net.device.90'], 'frames for a MAC just put in the table');
    if (has(NetF.CTRL_MAC_ADDR)) {
      const nm = macFromString('52:54:00:bb:bb:01');
      r.drv.setMac(nm);
      const cfg = Array.from({ length: 6 }, (_, i) => r.drv.dev.config8(NetCfg.MAC + i));
      if (has(NetF.MAC)) expectThat(same(new Uint8Array(cfg), nm), ['net.device.91'], 'config mac not updated by MAC_ADDR_SET', macToString(nm), macToString(new Uint8Array(cfg)));
      expectThat(arrives(nm), ['net.device.91'], 'frames to the address set by MAC_ADDR_SET do not arrive');
    }
    if (has(NetF.CTRL_VLAN)) {
      expectThat(!arrives(r.drv.mac, 42), ['net.device.94'], 'a frame of a VLAN not in the table arrived');
      r.drv.vlan(true, 42);
      expectThat(arrives(r.drv.mac, 42), ['net.device.94'], 'a frame of a VLAN in the table did not arrive');
    }
    // net.device.89: after a reset the MAC table is empty again.
    r.drv.shutdown();
    const d2 = VirtioNetDriver.init(r.dut.platform, transportOf(r.dut), withRing(ctx, {}));
    const got: RxFrame[] = [];
    d2.onReceive((f) => got.push(f));
    r.inject(buildEthernet({ dst: other, src: PEER }, 0x88b5, new Uint8Array(46)));
    d2.run(200_000);
    expectEqual(got.length, 0, ['net.device.89'], 'a frame for a MAC of the old table arrived after reset');
    // net.device.93: without CTRL_VLAN every tag passes.
    d2.shutdown();
    const d3 = VirtioNetDriver.init(r.dut.platform, transportOf(r.dut), withRing(ctx, { features: NET_DRIVER_FEATURES & ~bit(NetF.CTRL_VLAN) }));
    const got3: RxFrame[] = [];
    d3.onReceive((f) => got3.push(f));
    r.inject(buildEthernet({ dst: d3.mac, src: PEER, vlan: 77 }, 0x88b5, new Uint8Array(46)));
    d3.run(200_000);
    expectEqual(got3.length, 1, ['net.device.93'], 'VLAN-tagged frames without CTRL_VLAN');
  },
});
