/**
 * virtio-net check rigs, shared by every file of this folder (no checks here).
 *
 * Device checks drive the device under test with the reference driver (or, for bad input, with
 * the driver-side virtqueue directly: rawTransmit) and watch the wire through a switch the check
 * plugs the NIC into (rig(): simulated targets only, the NIC's backend is white-box). Driver
 * checks run the reference driver against pvkit's device in strict mode (strictRig()), which
 * records every driver statement it sees broken, or against a device whose receive headers a
 * hook rewrites.
 */
import { VirtioNetDevice, type NetDeviceOptions } from '../../../device-models/net/device.ts';
import { L2Switch, plug } from '../../../device-models/net/switch.ts';
import type { WireFrame } from '../../../device-models/net/wire.ts';
import { VirtioNetDriver, NET_DRIVER_FEATURES, type NetDriverOptions, type RxFrame } from '../../../drivers/net/driver.ts';
import { buildL4Frame, ip4FromString, macFromString } from '../../../spec-refs/abi/packet.ts';
import { F, bit, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { CheckFailure, CheckSkip } from '../../check.ts';
import type { DeviceUnderTest, TargetContext } from '../../target.ts';
import { transportOf } from '../support.ts';

export const PEER = macFromString('02:00:00:00:00:42');

/** A NIC under test plugged into a switch with a traffic endpoint, and the reference driver on it. */
export interface Rig {
  readonly dut: DeviceUnderTest;
  readonly nic: VirtioNetDevice;
  readonly drv: VirtioNetDriver;
  /** Frames the NIC put on the wire. */
  readonly wire: WireFrame[];
  /** Send a frame to the NIC from the wire. */
  inject(wf: WireFrame | Uint8Array): void;
  /** Let `ns` of target time pass with the driver servicing the NIC. */
  run(ns?: number): void;
  received(): RxFrame[];
}

/** Driver options for the configuration under test: the ring layout of ctx.ring. */
export function withRing(ctx: TargetContext, o: NetDriverOptions = {}): NetDriverOptions {
  const f = o.features ?? NET_DRIVER_FEATURES;
  return { ...o, features: ctx.ring === 'packed' ? f | bit(F.RING_PACKED) : f & ~bit(F.RING_PACKED) };
}

/** rig(), skipping the check when the driver did not negotiate `feature` (`name` in the skip reason). */
export function rigWith(ctx: TargetContext, feature: number, name: string, dev: NetDeviceOptions = {}, drv: NetDriverOptions = {}): Rig {
  const r = rig(ctx, dev, drv);
  if (!hasFeature(r.drv.features, feature)) throw new CheckSkip(`${name} not negotiated`);
  return r;
}

export function rig(ctx: TargetContext, dev: NetDeviceOptions = {}, drv: NetDriverOptions = {}): Rig {
  const dut = ctx.newDevice({ params: dev as Record<string, unknown> });
  const nic = dut.internals?.['model'];
  if (!(nic instanceof VirtioNetDevice)) throw new CheckSkip('needs pvkit\'s simulated virtio-net (the check plugs the NIC into its own switch)');
  const sw = new L2Switch();
  plug(sw, nic);
  const wire: WireFrame[] = [];
  const port = sw.attach({ name: 'wire', receive: (wf) => wire.push(wf) });
  const driver = VirtioNetDriver.init(dut.platform, transportOf(dut), withRing(ctx, drv));
  const got: RxFrame[] = [];
  driver.onReceive((f) => got.push(f));
  return {
    dut,
    nic,
    drv: driver,
    wire,
    inject: (wf) => port.send(wf instanceof Uint8Array ? { data: wf } : wf),
    run: (ns = 300_000) => driver.run(ns),
    received: () => got.splice(0),
  };
}

export function udpTo(dst: Uint8Array, n: number, srcPort = 1000): Uint8Array {
  return buildL4Frame({ eth: { dst, src: PEER }, src: ip4FromString('10.9.0.2'), dst: ip4FromString('10.9.0.1'), proto: 'udp', srcPort, dstPort: 7 }, new Uint8Array(n).map((_, i) => i)).frame;
}

export function tcpTo(dst: Uint8Array, n: number, csum: 'full' | 'partial' = 'full', srcPort = 2000, src: Uint8Array = PEER): ReturnType<typeof buildL4Frame> {
  return buildL4Frame({ eth: { dst, src }, src: ip4FromString('10.9.0.2'), dst: ip4FromString('10.9.0.1'), proto: 'tcp', srcPort, dstPort: 80, seq: 77, csum }, new Uint8Array(n).map((_, i) => (i * 3) & 0xff));
}

/** Post a raw transmit chain (any header bytes) on transmitq1, as a hostile driver would. */
export function rawTransmit(r: Rig, hdr: Uint8Array, frame: Uint8Array): void {
  const p = r.drv.platform;
  const buf = p.dma.alloc(hdr.length + frame.length, 16);
  p.mem.writeBytes(buf, hdr);
  p.mem.writeBytes(buf + hdr.length, frame);
  const q = r.drv.dev.queue<unknown>(1);
  if (!q.add([{ addr: buf, len: hdr.length + frame.length }], [], { raw: true })) throw new CheckFailure('transmit ring full');
  q.kick();
  r.run(200_000);
}

export function hdr(r: Rig, f: { flags?: number; gsoType?: number; hdrLen?: number; gsoSize?: number; csumStart?: number; csumOffset?: number; outerTh?: number; innerNh?: number } = {}): Uint8Array {
  const h = new Uint8Array(r.drv.hdrLen);
  const v = new DataView(h.buffer);
  h[0] = f.flags ?? 0;
  h[1] = f.gsoType ?? 0;
  v.setUint16(2, f.hdrLen ?? 0, true);
  v.setUint16(4, f.gsoSize ?? 0, true);
  v.setUint16(6, f.csumStart ?? 0, true);
  v.setUint16(8, f.csumOffset ?? 0, true);
  if (h.length >= 24) {
    v.setUint16(20, f.outerTh ?? 0, true);
    v.setUint16(22, f.innerNh ?? 0, true);
  }
  return h;
}

export function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The reference driver on a strict (checking) device; returns it and a function that fails on any recorded breach. */
export function strictRig(ctx: TargetContext, dev: NetDeviceOptions = {}, drv: NetDriverOptions = {}): Rig & { verdict(ids?: readonly string[]): void } {
  if (!ctx.target.runsDriverChecks) throw new CheckSkip('driver checks need pvkit\'s checking device');
  const r = rig(ctx, { strict: true, ...dev }, drv);
  return Object.assign(r, {
    verdict(ids?: readonly string[]) {
      const v = r.nic.violations.find((x) => !ids || ids.includes(x.id));
      if (v) throw new CheckFailure(`the checking device saw the driver break ${v.id}: ${v.detail}`, { statements: [v.id] });
    },
  });
}
