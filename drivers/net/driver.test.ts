/**
 * The reference driver against a hostile device (ROBUSTNESS.md, "Drivers, run against a hostile
 * device"): bad num_buffers and header fields, config values out of range, a control queue that
 * never answers. The driver drops what it cannot trust, records the breach, and never waits
 * without bound.
 */
import { describe, expect, it } from 'vitest';
import { NetTestbed } from '../../conformance/harness/net.ts';
import { VirtioNetDevice } from '../../device-models/net/device.ts';
import { attachVirtioMmio } from '../../device-models/virtio/mmio.ts';
import { Machine } from '../../device-models/machine/machine.ts';
import { MmioTransport } from '../transport/mmio.ts';
import { NetCfg, NetCtrl, NetHdr } from '../../spec-refs/abi/net.ts';
import { NetF, bit } from '../../spec-refs/abi/virtio.ts';
import { DeviceMisbehaviourError, TimeoutError } from '../../spec-refs/errors.ts';
import { buildEthernet, macFromString } from '../../spec-refs/abi/packet.ts';
import { NET_DRIVER_FEATURES, VirtioNetDriver, type RxFrame } from './driver.ts';

const PEER = macFromString('02:00:00:00:00:42');

function hostile(rewrite: (h: Uint8Array) => void, features = NET_DRIVER_FEATURES) {
  const tb = new NetTestbed();
  const g = tb.addGuest({ device: { rxHeaderHook: (h) => rewrite(h) }, driver: { features } });
  const port = tb.sw.attach({ name: 'peer', receive: () => {} });
  const got: RxFrame[] = [];
  g.driver.onReceive((f) => got.push(f));
  const send = (n = 200) => {
    port.send({ data: buildEthernet({ dst: g.driver.mac, src: PEER }, 0x88b5, new Uint8Array(n)) });
    tb.runAll(200_000);
  };
  return { tb, g, got, send };
}

describe('receive headers from a hostile device', () => {
  it('num_buffers 0 or beyond the ring with MRG_RXBUF: dropped and recorded; the next frame still arrives', () => {
    let nb = 0;
    const h = hostile((hdr) => {
      hdr[NetHdr.OFF_NUM_BUFFERS] = nb & 0xff;
      hdr[NetHdr.OFF_NUM_BUFFERS + 1] = nb >> 8;
    });
    nb = 0;
    h.send();
    nb = 60000;
    h.send();
    expect(h.got).toHaveLength(0);
    expect(h.g.driver.deviceErrors.map((e) => e.id)).toEqual(['net.device.30', 'net.device.30']);
    nb = 1;
    h.send();
    expect(h.got).toHaveLength(1);
  });

  it('num_buffers other than 1 without MRG_RXBUF: dropped (net.device.29)', () => {
    const h = hostile((hdr) => (hdr[NetHdr.OFF_NUM_BUFFERS] = 2), NET_DRIVER_FEATURES & ~bit(NetF.MRG_RXBUF));
    h.send();
    expect(h.got).toHaveLength(0);
    expect(h.g.driver.deviceErrors[0]?.id).toBe('net.device.29');
  });

  it('GSO types, flags and checksum positions that were never negotiated or fall outside the frame are dropped', () => {
    const cases: [(h: Uint8Array) => void, string][] = [
      [(h) => (h[NetHdr.OFF_GSO_TYPE] = NetHdr.GSO_UDP), 'net.device.36'],
      [(h) => {
        h[NetHdr.OFF_FLAGS] = 0;
        h[NetHdr.OFF_GSO_TYPE] = NetHdr.GSO_TCPV4;
        h[NetHdr.OFF_GSO_SIZE] = 100;
      }, 'net.device.55'],
      [(h) => {
        h[NetHdr.OFF_FLAGS] = NetHdr.F_NEEDS_CSUM;
        h[NetHdr.OFF_CSUM_START] = 0xff;
        h[NetHdr.OFF_CSUM_START + 1] = 0xff;
      }, 'net.device.48'],
      [(h) => (h[NetHdr.OFF_FLAGS] = NetHdr.F_RSC_INFO), 'net.device.58'],
      [(h) => (h[NetHdr.OFF_GSO_TYPE] = NetHdr.GSO_TCPV4 | NetHdr.GSO_UDP_TUNNEL_IPV4 | NetHdr.GSO_UDP_TUNNEL_IPV6), 'net.driver.75'],
    ];
    for (const [rw, id] of cases) {
      const h = hostile(rw);
      h.send();
      expect(h.got, id).toHaveLength(0);
      expect(h.g.driver.deviceErrors.map((e) => e.id)).toContain(id);
    }
    const noCsum = hostile((h) => (h[NetHdr.OFF_FLAGS] = NetHdr.F_DATA_VALID), NET_DRIVER_FEATURES & ~[NetF.GUEST_CSUM, NetF.GUEST_TSO4, NetF.GUEST_TSO6, NetF.GUEST_ECN].reduce((s, b) => s | bit(b), 0n));
    noCsum.send();
    expect(noCsum.got).toHaveLength(0);
    expect(noCsum.g.driver.deviceErrors[0]?.id).toBe('net.device.33');
  });
});

describe('configuration and control queue from a hostile device', () => {
  function withConfig(patch: (off: number, size: number, v: number) => number) {
    const m = new Machine({ ram: [{ base: 0, size: 8 << 20, name: 'ram' }] });
    const dev = new VirtioNetDevice({ maxPairs: 2 });
    const orig = dev.readConfig.bind(dev);
    dev.readConfig = (off, size) => patch(off, size, orig(off, size));
    const a = attachVirtioMmio(m, dev);
    const pd = m.platform.devices().find((d) => d.base === a.base)!;
    const r = MmioTransport.probe(m.platform, pd);
    if (!r.ok) throw new Error('probe');
    return { m, dev, t: r.transport };
  }

  it('max_virtqueue_pairs 0 and mtu below 68 make init fail cleanly (FAILED set), not hang', () => {
    for (const [field, value, id] of [[NetCfg.MAX_VIRTQUEUE_PAIRS, 0, 'net.device.1'], [NetCfg.MTU, 20, 'net.device.2']] as const) {
      const { m, t } = withConfig((off, size, v) => (off === field && size === 2 ? value : v));
      const err = (() => {
        try {
          VirtioNetDriver.init(m.platform, t);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err).toBeInstanceOf(DeviceMisbehaviourError);
      expect((err as DeviceMisbehaviourError).statements).toContain(id);
      expect(t.getStatus() & 128).toBe(128);
    }
  });

  it('speed and duplex out of range read as unknown (net.driver.11)', () => {
    const { m, t } = withConfig((off, size, v) => (off === NetCfg.SPEED && size === 4 ? 0x9000_0000 : off === NetCfg.DUPLEX && size === 1 ? 7 : v));
    const d = VirtioNetDriver.init(m.platform, t);
    expect(d.speed).toBe(0xffffffff);
    expect(d.duplex).toBe(0xff);
  });

  it('a control queue that never answers ends in a TimeoutError, bounded', () => {
    const tb = new NetTestbed();
    const g = tb.addGuest({ driver: { timeoutNs: 5_000_000 } });
    const dev = g.device;
    const orig = dev.queueNotify.bind(dev);
    dev.queueNotify = (i) => (i === g.driver.ctrlIndex ? undefined : orig(i));
    const t0 = g.machine.platform.now();
    expect(() => g.driver.command(NetCtrl.CLASS_RX, NetCtrl.RX_PROMISC, new Uint8Array([1]))).toThrow(TimeoutError);
    expect(g.machine.platform.now() - t0).toBeLessThanOrEqual(6_000_000);
  });
});
