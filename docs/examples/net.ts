// docs/examples/net.ts — chapter 6: the virtio-net reference driver pings a host on a simulated switch.
import assert from 'node:assert/strict';
import { NetTestbed } from '../../conformance/harness/net.ts';
import { HostPeer } from '../../device-models/net/host-peer.ts';
import { plug } from '../../device-models/net/switch.ts';
import { GuestIpStack } from '../../drivers/net/stack.ts';
import { ip4FromString, macFromString, macToString } from '../../spec-refs/abi/packet.ts';
import { NetF, hasFeature } from '../../spec-refs/abi/virtio.ts';

export function run(): string[] {
  const lines: string[] = [];
  for (const transport of ['mmio', 'mmio-legacy']) {
    // A machine with a virtio-net NIC on an L2 switch, driven by VirtioNetDriver.init.
    const tb = new NetTestbed();
    const g = tb.addGuest({ transport });
    const host = new HostPeer(tb.scheduler, { mac: macFromString('02:00:00:00:00:fe'), ip: ip4FromString('10.0.0.254') });
    plug(tb.sw, host);
    // The MAC the driver uses comes from config space when VIRTIO_NET_F_MAC is negotiated (net.driver.3).
    assert.ok(hasFeature(g.driver.dev.features, NetF.MAC));
    const stack = new GuestIpStack(g.driver, ip4FromString('10.0.0.1'));
    const reply = stack.ping(host.ip, 1); // ARP, then ICMP echo; receive buffers were posted at init
    assert.equal(reply.from, '10.0.0.254');
    assert.equal(host.badChecksums, 0);
    // Nothing the device returned broke a rule the driver checks, and the device saw no driver violation.
    assert.deepEqual(g.driver.deviceErrors, []);
    assert.deepEqual(g.device.violations, []);
    lines.push(`${transport}: ${macToString(g.driver.mac)} pinged 10.0.0.254, reply seq ${reply.seq}`);
  }
  return lines;
}
