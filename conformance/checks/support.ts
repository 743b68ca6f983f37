/**
 * Shared pieces of the checks: bringing up a device under test with the reference drivers (and
 * the monitor), raw register access for hostile drivers, a small I/O workload per device kind,
 * and a blk request judge for the monitor (driver-side blk rules).
 */
import type { VirtioTransport } from '../../drivers/transport/transport.ts';
import { Machine } from '../../device-models/machine/machine.ts';
import { discoverMmio, type MmioTransport } from '../../drivers/transport/mmio.ts';
import { discoverPci, type PciTransport } from '../../drivers/transport/pci.ts';
import { VirtioDriverDevice } from '../../drivers/core/device.ts';
import { VirtioBlkDriver, type BlkDriverOptions } from '../../drivers/blk/driver.ts';
import { NET_DRIVER_FEATURES, VirtioNetDriver } from '../../drivers/net/driver.ts';
import { VirtioNetDevice } from '../../device-models/net/device.ts';
import { BlkConfig, BlkDwz, BlkReqHeader } from '../../spec-refs/abi/blk-layout.ts';
import type { VirtioCore } from '../../device-models/virtio/core.ts';
import type { VirtioMmioDevice } from '../../device-models/virtio/mmio.ts';
import type { VirtioDeviceModel } from '../../device-models/virtio/model.ts';
import { Blk, DeviceType, F, Status, featureSet } from '../../spec-refs/abi/virtio.ts';
import { CheckFailure, CheckSkip } from '../check.ts';
import { RawMmio, RawSplitRing } from '../hostile.ts';
import { requestQueue } from './requests.ts';
import { attachMonitor, type Monitor, type MonitorOptions, type ObservedChain } from '../monitor.ts';
import type { DeviceOptions, DeviceUnderTest, TargetContext } from '../target.ts';

/** A tiny deterministic PRNG for workloads (fast-check drives the property inputs). */
export class Prng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 1;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  below(n: number): number {
    return this.next() % n;
  }
}

export function mmioBase(dut: DeviceUnderTest): number {
  if (dut.location.kind !== 'virtio-mmio') throw new CheckSkip('this check drives virtio-mmio registers');
  return dut.location.base;
}

export function raw(dut: DeviceUnderTest): RawMmio {
  return new RawMmio(dut.platform, mmioBase(dut));
}

/** A live device driven through raw virtio-mmio registers, one raw split ring on its request queue. */
export interface RawLive {
  dut: DeviceUnderTest;
  r: RawMmio;
  ring: RawSplitRing;
  deviceId: number;
  accepted: bigint;
  /** The queue requests go on (virtio-net: transmitq1; others: 0), see requests.ts. */
  q: number;
}

/**
 * Probe, negotiate `offered & want`, set up a raw split ring of `size` on the request queue and
 * set DRIVER_OK. With `requireFeaturesOk`, a device refusing that subset of its own offer fails
 * (features.device.2) right after the negotiation.
 */
export function rawLive(ctx: TargetContext, o: { size: number; want: bigint; opts?: DeviceOptions; requireFeaturesOk?: boolean }): RawLive {
  const dut = ctx.newDevice(o.opts ?? {});
  const r = raw(dut);
  const { deviceId } = r.probe();
  const n = r.negotiate((x) => x & o.want);
  if (o.requireFeaturesOk && !n.featuresOk) throw new CheckFailure('device refused a subset of its own offer', { statements: ['features.device.2'] });
  const ring = new RawSplitRing(dut.platform, o.size);
  const q = requestQueue(deviceId);
  r.setupQueue(q, o.size, ring.desc, ring.avail, ring.used);
  r.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
  return { dut, r, ring, deviceId, accepted: n.accepted, q };
}

/** The driver-side transport for the device under test (probing, as a driver does). */
export function transportOf(dut: DeviceUnderTest): MmioTransport | PciTransport {
  const loc = dut.location;
  if (loc.kind === 'pci') {
    const found = discoverPci(dut.platform, { legacy: dut.transport === 'pci-legacy' });
    const t = found.transports.find((x) => x.addr.dev === loc.dev && x.addr.fn === loc.fn);
    if (!t) throw new CheckFailure('the reference driver did not find the device by enumeration', { statements: ['pci.device.2', 'pci.device.3'], seen: found.skipped.map((s) => s.reason).join('; ') || 'nothing' });
    return t;
  }
  mmioBase(dut);
  const vector = (dut.location as { vector: number }).vector;
  const found = discoverMmio(dut.platform);
  const t = found.transports.find((x) => x.vectors[0] === vector);
  if (!t) throw new CheckFailure('the reference driver did not find the device by probing', { statements: ['mmio.device.1', 'mmio.device.2'], seen: found.skipped.map((s) => s.detail).join('; ') || 'nothing' });
  return t;
}

/** White-box handles of a simulated device (driver-side checks need them). */
export function simInternals(dut: DeviceUnderTest): { machine: Machine; core: VirtioCore; transport: VirtioMmioDevice; model: VirtioDeviceModel } {
  const i = dut.internals;
  if (!dut.machine || !i || !i['core']) throw new CheckSkip('needs a simulated device (white-box)');
  return { machine: dut.machine, core: i['core'] as VirtioCore, transport: i['transport'] as VirtioMmioDevice, model: i['model'] as VirtioDeviceModel };
}

export function monitor(dut: DeviceUnderTest, opts: MonitorOptions = {}): Monitor {
  if (!dut.machine) throw new CheckSkip('the monitor needs a simulated machine');
  return attachMonitor(dut.machine, opts);
}

const RING = featureSet(F.VERSION_1, F.INDIRECT_DESC, F.EVENT_IDX, F.RING_PACKED);

/** A reference driver session on the device under test: init, some I/O, shutdown. */
export interface RefSession {
  readonly dev: VirtioDriverDevice;
  readonly blk?: VirtioBlkDriver;
  /** `n` verified I/O operations (blk: write/read-back/flush; echo: echo round trips). */
  io(n: number, seed: number): void;
  shutdown(): void;
}

export function startRef(ctx: TargetContext, dut: DeviceUnderTest, opts: { without?: bigint; queueSize?: number; extraRing?: bigint } = {}): RefSession {
  const t = transportOf(dut);
  const p = dut.platform;
  if (t.deviceType === DeviceType.BLOCK) {
    const o: BlkDriverOptions = { ...(opts.without !== undefined ? { withoutFeatures: opts.without } : {}), ...(opts.queueSize !== undefined ? { queueSize: opts.queueSize } : {}), ringFeatures: (ctx.ring === 'split' ? featureSet(F.INDIRECT_DESC, F.EVENT_IDX) : featureSet(F.INDIRECT_DESC, F.EVENT_IDX, F.RING_PACKED)) | (opts.extraRing ?? 0n) };
    const blk = VirtioBlkDriver.probe(p, t, o);
    return {
      dev: blk.dev,
      blk,
      io(n, seed) {
        const rng = new Prng(seed);
        const cap = blk.info.capacity;
        for (let i = 0; i < n; i++) {
          const sectors = 1 + rng.below(8);
          const sector = rng.below(Math.max(1, cap - sectors));
          const data = new Uint8Array(sectors * 512);
          for (let k = 0; k < data.length; k++) data[k] = (rng.next() >>> 24) & 0xff;
          if (blk.info.readOnly) {
            blk.read(sector, new Uint8Array(sectors * 512));
            continue;
          }
          blk.write(sector, data);
          const back = new Uint8Array(data.length);
          blk.read(sector, back);
          for (let k = 0; k < data.length; k++) if (back[k] !== data[k]) throw new CheckFailure('data read back differs from data written', { statements: ['split.device.16'], expected: `byte ${k} = ${data[k]}`, seen: String(back[k]) });
          if (i % 4 === 3 && blk.info.flush) blk.flush();
        }
      },
      shutdown: () => blk.shutdown(),
    };
  }
  if (t.deviceType === DeviceType.NET) return startNet(ctx, dut, t, opts);
  const dev = VirtioDriverDevice.init(p, t, { features: ((RING | (opts.extraRing ?? 0n)) & ~(opts.without ?? 0n)) & (ctx.ring === 'split' ? ~featureSet(F.RING_PACKED) : -1n), queues: 1, ...(opts.queueSize !== undefined ? { queueSize: opts.queueSize } : {}) });
  return {
    dev,
    io(n, seed) {
      const rng = new Prng(seed);
      const vq = dev.queue<number>(0);
      for (let i = 0; i < n; i++) {
        const len = 1 + rng.below(3000);
        const src = p.dma.alloc(len);
        const dst = p.dma.alloc(len);
        for (let k = 0; k < len; k += 97) p.mem.write8(src + k, rng.below(256));
        vq.add([{ addr: src, len }], [{ addr: dst, len }], i);
        vq.kick();
        const u = dev.waitUsed<number>(0);
        if (u.token !== i || u.len !== len) throw new CheckFailure('echo completed wrongly', { statements: ['split.device.16'], expected: `token ${i} len ${len}`, seen: `token ${u.token} len ${u.len}` });
        p.dma.free(src);
        p.dma.free(dst);
      }
    },
    shutdown: () => dev.shutdown(),
  };
}

/**
 * virtio-net under the reference driver. The I/O workload loops the NIC's wire back to itself
 * (white-box: the model's backend), so every frame sent comes back through the receive queue.
 */
function startNet(ctx: TargetContext, dut: DeviceUnderTest, t: VirtioTransport, opts: { without?: bigint; queueSize?: number; extraRing?: bigint }): RefSession {
  const nic = dut.internals?.['model'];
  if (!(nic instanceof VirtioNetDevice)) throw new CheckSkip('virtio-net I/O needs the simulated device (its wire is looped back)');
  nic.connect({ send: (wf) => nic.receive(wf) });
  const ring = ctx.ring === 'split' ? ~featureSet(F.RING_PACKED) : -1n;
  const features = ((NET_DRIVER_FEATURES | (opts.extraRing ?? 0n)) & ~(opts.without ?? 0n)) & ring;
  const drv = VirtioNetDriver.init(dut.platform, t, { features, ...(opts.queueSize !== undefined ? { queueSize: opts.queueSize } : {}) });
  return {
    dev: drv.dev,
    io(n, seed) {
      const rng = new Prng(seed);
      for (let i = 0; i < n; i++) {
        const len = 60 + rng.below(1400);
        const f = new Uint8Array(len);
        f.set(drv.mac, 0);
        f.set(drv.mac, 6);
        f[12] = 0x88;
        f[13] = 0xb5;
        for (let k = 14; k < len; k++) f[k] = (rng.next() >>> 24) & 0xff;
        while (!drv.send(f)) drv.run(50_000);
        const got = drv.waitReceive();
        if (got.data.length !== len || got.data.some((b, k) => b !== f[k])) throw new CheckFailure('a looped-back frame came back different', { statements: ['split.device.16'], expected: `${len} bytes as sent`, seen: `${got.data.length} bytes` });
      }
    },
    shutdown: () => drv.shutdown(),
  };
}

/** Wrap a device model so a check can override members (a hostile or refusing device). */
export function overrideModel<T extends VirtioDeviceModel>(model: T, over: Partial<VirtioDeviceModel>): T {
  return Object.assign(Object.create(model) as T, over);
}

/** New sim device whose model is first replaced by `wrap(model)` (driver-side checks: a device that behaves in a chosen way). */
export function newDeviceWith(ctx: TargetContext, wrapModel: (m: VirtioDeviceModel) => Partial<VirtioDeviceModel>, opts: DeviceOptions = {}): DeviceUnderTest {
  if (ctx.target.name !== 'sim') throw new CheckSkip('needs the simulated target');
  return ctx.newDevice({ ...opts, params: { ...(opts.params ?? {}), __wrap: wrapModel } });
}

// ------------------------------------------------------------------ blk request judge (driver side)

function gatherBytes(mem: Machine['mem'], segs: readonly { addr: number; len: number }[], max: number): Uint8Array {
  const out = new Uint8Array(Math.min(max, segs.reduce((n, s) => n + s.len, 0)));
  let o = 0;
  for (const s of segs) {
    if (o >= out.length) break;
    const n = Math.min(s.len, out.length - o);
    out.set(mem.readBytes(s.addr, n), o);
    o += n;
  }
  return out;
}

/** Statements the blk request judge enforces. */
export const BLK_JUDGE_STATEMENTS = ['blk.driver.12', 'blk.driver.14', 'blk.driver.16', 'blk.driver.17', 'blk.driver.18', 'blk.driver.19', 'blk.driver.20', 'blk.driver.21', 'blk.driver.24'] as const;

/**
 * Judge each virtio-blk request a driver makes available: data sizes, sector ranges, FLUSH
 * sector, GET_ID buffer, range-request segment counts and flags, against the device's config.
 */
export function blkJudge(mem: Machine['mem']): NonNullable<MonitorOptions['onChain']> {
  return (c: ObservedChain, report) => {
    if (c.deviceId !== DeviceType.BLOCK) return;
    const rlen = c.readable.reduce((n, s) => n + s.len, 0);
    const wlen = c.writable.reduce((n, s) => n + s.len, 0);
    if (rlen < BlkReqHeader.SIZE || wlen < 1) return; // framing problems are the ring rules' business
    const hdr = gatherBytes(mem, c.readable, BlkReqHeader.SIZE);
    const dv = new DataView(hdr.buffer);
    const type = dv.getUint32(0, true);
    const sector = dv.getUint32(8, true) + dv.getUint32(12, true) * 0x1_0000_0000;
    const outData = rlen - BlkReqHeader.SIZE;
    const inData = wlen - 1;
    const cap = c.config32(BlkConfig.CAPACITY) + c.config32(BlkConfig.CAPACITY + 4) * 0x1_0000_0000;
    switch (type) {
      case Blk.T_IN:
      case Blk.T_OUT: {
        const len = type === Blk.T_IN ? inData : outData;
        if (len % 512 !== 0) report('blk.driver.16', `${type === Blk.T_IN ? 'IN' : 'OUT'} data length not a multiple of 512`, 'a multiple of 512', String(len));
        if (sector + Math.ceil(len / 512) > cap) report('blk.driver.12', 'request reaches past the capacity', `sector + sectors <= ${cap}`, `${sector} + ${Math.ceil(len / 512)}`);
        break;
      }
      case Blk.T_FLUSH:
        if (sector !== 0) report('blk.driver.14', 'FLUSH with a non-zero sector', '0', String(sector));
        break;
      case Blk.T_GET_ID:
        if (inData !== Blk.ID_BYTES) report('blk.driver.18', 'GET_ID data buffer is not 20 bytes', '20', String(inData));
        break;
      case Blk.T_DISCARD:
      case Blk.T_WRITE_ZEROES:
      case Blk.T_SECURE_ERASE: {
        if (outData % BlkDwz.SIZE !== 0) report('blk.driver.17', 'range request data not a multiple of 16 bytes', 'a multiple of 16', String(outData));
        const n = Math.floor(outData / BlkDwz.SIZE);
        const [stmt, off] = type === Blk.T_DISCARD ? ['blk.driver.19', BlkConfig.MAX_DISCARD_SEG] : type === Blk.T_WRITE_ZEROES ? ['blk.driver.21', BlkConfig.MAX_WRITE_ZEROES_SEG] : ['blk.driver.20', BlkConfig.MAX_SECURE_ERASE_SEG];
        const max = c.config32(off);
        if (n > max) report(stmt, 'more range segments than the device allows', `<= ${max}`, String(n));
        if (type === Blk.T_DISCARD) {
          const body = gatherBytes(mem, c.readable, BlkReqHeader.SIZE + outData).subarray(BlkReqHeader.SIZE);
          const bv = new DataView(body.buffer, body.byteOffset, body.byteLength);
          for (let k = 0; k < n; k++) if (bv.getUint32(k * 16 + BlkDwz.FLAGS, true) & Blk.WRITE_ZEROES_FLAG_UNMAP) report('blk.driver.24', `DISCARD segment ${k} has the unmap flag`, '0', '1');
        }
        for (let k = 0; k < n; k++) {
          const body = gatherBytes(mem, c.readable, BlkReqHeader.SIZE + 16 * (k + 1)).subarray(BlkReqHeader.SIZE + 16 * k);
          const bv = new DataView(body.buffer, body.byteOffset, body.byteLength);
          const s = bv.getUint32(0, true) + bv.getUint32(4, true) * 0x1_0000_0000;
          const num = bv.getUint32(8, true);
          if (s + num > cap) report('blk.driver.12', `range segment ${k} reaches past the capacity`, `<= ${cap}`, `${s}+${num}`);
        }
        break;
      }
    }
  };
}
