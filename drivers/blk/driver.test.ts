import { describe, expect, it } from 'vitest';
import { simBlk, type SimBlkOptions } from '../../conformance/harness/blk.ts';
import { RamDisk } from '../../device-models/blk/backend.ts';
import { BlkConfig } from '../../spec-refs/abi/blk-layout.ts';
import { VirtioBlkDevice } from '../../device-models/blk/device.ts';
import type { Chain, DeviceContext, VirtioDeviceModel } from '../../device-models/virtio/model.ts';
import { Machine } from '../../device-models/machine/machine.ts';
import { attachVirtioMmio } from '../../device-models/virtio/mmio.ts';
import { discoverMmio } from '../transport/mmio.ts';
import { VirtioBlkDriver, type BlkDriverOptions } from './driver.ts';
import { Blk, BlkF, F, Status, bit, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { DeviceMisbehaviourError, DeviceNeedsResetError, DriverMisbehaviourError, NegotiationError, RequestError, TimeoutError, UsageError } from '../../spec-refs/errors.ts';

const KiB = 1024;

function boot(dev: Partial<SimBlkOptions['device']> = {}, drv: BlkDriverOptions = {}, sim: Partial<SimBlkOptions> = {}) {
  const s = simBlk({ ...sim, device: { backend: new RamDisk(1024 * KiB), ...dev } });
  const blk = VirtioBlkDriver.probe(s.machine.platform, s.transport, drv);
  return { ...s, blk, disk: s.device.backend as RamDisk };
}

function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (i * 13 + seed * 101 + (i >> 8)) & 0xff;
  return b;
}

describe('VirtioBlkDriver over virtio-mmio and the split ring', () => {
  for (const transport of ['mmio', 'mmio-legacy'] as const) {
    it(`${transport}: probes, negotiates, writes, reads back, flushes (status_init.driver.6)`, () => {
      const { blk, disk, core, device } = boot({ id: 'pvkit-disk-0' }, {}, { transport });
      expect(core.status & Status.DRIVER_OK).toBe(Status.DRIVER_OK);
      expect(blk.info.capacity).toBe(2048);
      if (transport === 'mmio') {
        expect(hasFeature(blk.features, F.VERSION_1)).toBe(true);
        expect(hasFeature(blk.features, BlkF.DISCARD)).toBe(true);
      }
      // blk.driver.3: FLUSH negotiated -> writeback cache assumed (CONFIG_WCE says 1 here)
      expect(blk.info.cache).toBe('writeback');
      const data = pattern(40 * KiB, 1);
      blk.write(100, data);
      expect(disk.contents.subarray(100 * 512, 100 * 512 + data.length)).toEqual(data);
      const back = new Uint8Array(data.length);
      blk.read(100, back);
      expect(back).toEqual(data);
      blk.flush();
      expect(device.stats.flushes).toBe(1);
      expect(blk.getId()).toBe('pvkit-disk-0');
      expect(blk.outstanding).toBe(0);
    });
  }

  it('splits transfers larger than seg_max * size_max and segments larger than size_max', () => {
    const { blk, disk, device } = boot({ segMax: 2, sizeMax: 4096 });
    expect(blk.info.segMax).toBe(2);
    expect(blk.info.sizeMax).toBe(4096);
    expect(blk.maxTransfer).toBe(8192);
    const data = pattern(64 * KiB, 2);
    blk.write(0, data);
    expect(disk.contents.subarray(0, data.length)).toEqual(data);
    expect(device.stats.writes).toBe(8);
    expect(device.stats.ioerr).toBe(0);
    // a caller-built request with too many segments is refused before it reaches the device
    const buf = blk.platform.dma.alloc(3 * 512);
    expect(() => blk.submit({ type: Blk.T_IN, sector: 0, data: [0, 1, 2].map((i) => ({ addr: buf + i * 512, len: 512 })) })).toThrow(UsageError);
    // one large buffer is cut into size_max pieces
    const big = blk.platform.dma.alloc(8192);
    const r = blk.wait(blk.submit({ type: Blk.T_IN, sector: 0, data: [{ addr: big, len: 8192 }] }));
    expect(r.status).toBe(Blk.S_OK);
    expect(r.len).toBe(8193);
  });

  it('keeps any depth up to the queue size in flight, and waits for room beyond it', () => {
    const { blk, disk, device, machine } = boot({ queueSize: 16 }, { ringFeatures: bit(F.EVENT_IDX) });
    disk.contents.set(pattern(disk.size, 3));
    const buf = machine.dma.alloc(200 * 512);
    const handles: number[] = [];
    for (let i = 0; i < 200; i++) handles.push(blk.submit({ type: Blk.T_IN, sector: (i * 7) % 2048, data: [{ addr: buf + i * 512, len: 512 }] }));
    blk.waitAll();
    for (let i = 0; i < 200; i++) {
      const r = blk.result(handles[i]!)!;
      expect(r.status).toBe(Blk.S_OK);
      expect(r.len).toBe(513);
      const s = (i * 7) % 2048;
      expect(machine.mem.readBytes(buf + i * 512, 512)).toEqual(disk.contents.subarray(s * 512, s * 512 + 512));
    }
    expect(device.stats.reads).toBe(200);
    expect(() => blk.result(handles[0]!)).toThrow(UsageError); // collected already
  });

  it('uses every queue with MQ (num_queues from config)', () => {
    const { blk, device, machine } = boot({ numQueues: 3 }, { maxQueues: 4 });
    expect(hasFeature(blk.features, BlkF.MQ)).toBe(true);
    expect(blk.numQueues).toBe(3);
    const buf = machine.dma.alloc(4096);
    for (let q = 0; q < 3; q++) expect(blk.wait(blk.submit({ type: Blk.T_IN, sector: q, data: [{ addr: buf, len: 512 }], queue: q })).status).toBe(Blk.S_OK);
    expect(device.stats.batches).toBeGreaterThanOrEqual(3);
    expect(() => blk.submit({ type: Blk.T_IN, sector: 0, data: [{ addr: buf, len: 512 }], queue: 3 })).toThrow(UsageError);
  });

  it('discards, writes zeroes and erases, splitting ranges at the device limits (blk.driver.19-21)', () => {
    const { blk, disk, device } = boot({ discard: { maxSectors: 16, maxSeg: 2, alignment: 8 }, writeZeroes: { maxSectors: 8, maxSeg: 3 }, secureErase: { maxSectors: 32, maxSeg: 1, alignment: 8 } });
    disk.contents.fill(0xaa);
    blk.writeZeroes([{ sector: 3, sectors: 50 }, { sector: 100, sectors: 1, unmap: true }]);
    expect(disk.contents.subarray(3 * 512, 53 * 512).every((b) => b === 0)).toBe(true);
    expect(disk.contents[3 * 512 - 1]).toBe(0xaa);
    expect(disk.contents[53 * 512]).toBe(0xaa);
    expect(disk.contents.subarray(100 * 512, 101 * 512).every((b) => b === 0)).toBe(true);
    blk.discard([{ sector: 200, sectors: 64 }]);
    blk.secureErase([{ sector: 400, sectors: 100 }]);
    expect(disk.contents.subarray(400 * 512, 500 * 512).every((b) => b === 0)).toBe(true);
    expect(device.stats.ioerr + device.stats.unsupp).toBe(0);
    expect(() => blk.discard([{ sector: 0, sectors: 8, unmap: true }])).toThrow(UsageError); // blk.driver.24
    expect(() => blk.discard([{ sector: 2040, sectors: 16 }])).toThrow(UsageError); // blk.driver.12
  });

  it('refuses to write to a read-only device (blk.driver.13: RO accepted)', () => {
    const { blk, disk } = boot({ readOnly: true });
    expect(blk.info.readOnly).toBe(true);
    expect(() => blk.write(0, new Uint8Array(512))).toThrow(RequestError);
    // sent anyway (unchecked), the device fails it and writes nothing (blk.device.21)
    const buf = blk.platform.dma.alloc(512);
    blk.platform.mem.fill(buf, 512, 0x55);
    const r = blk.wait(blk.submit({ type: Blk.T_OUT, sector: 0, data: [{ addr: buf, len: 512 }], unchecked: true }));
    expect(r.status).toBe(Blk.S_IOERR);
    expect(disk.contents.subarray(0, 512).every((b) => b === 0)).toBe(true);
  });

  it('follows a capacity change during I/O (blk.driver.11, blk.device.20)', () => {
    const { blk, device, machine } = boot();
    const buf = machine.dma.alloc(512);
    expect(() => blk.submit({ type: Blk.T_IN, sector: 3000, data: [{ addr: buf, len: 512 }] })).toThrow(UsageError); // blk.driver.12
    const h = blk.submit({ type: Blk.T_IN, sector: 0, data: [{ addr: buf, len: 512 }] });
    device.resize(2 * 1024 * KiB);
    blk.wait(h);
    expect(blk.configChanges).toBe(1);
    expect(blk.info.capacity).toBe(4096);
    expect(blk.wait(blk.submit({ type: Blk.T_IN, sector: 3000, data: [{ addr: buf, len: 512 }] })).status).toBe(Blk.S_OK);
  });

  it('drives two devices on one machine side by side, each taking only its own interrupts', () => {
    const m = new Machine();
    const disks = [new RamDisk(256 * KiB), new RamDisk(512 * KiB)];
    const devs = disks.map((backend, i) => new VirtioBlkDevice({ backend, id: `disk${i}`, reorder: i === 1 }));
    for (const d of devs) attachVirtioMmio(m, d, { notifyLatencyNs: 700 });
    const ts = discoverMmio(m.platform).transports;
    expect(ts).toHaveLength(2);
    const drivers = ts.map((t) => VirtioBlkDriver.probe(m.platform, t));
    expect(drivers.map((d) => d.getId())).toEqual(['disk0', 'disk1']);
    const bufs = [m.dma.alloc(64 * 512), m.dma.alloc(64 * 512)];
    for (let i = 0; i < 64; i++) {
      for (let k = 0; k < 2; k++) {
        m.mem.fill(bufs[k]! + i * 512, 512, (i + k * 100) & 0xff);
        drivers[k]!.submit({ type: Blk.T_OUT, sector: i, data: [{ addr: bufs[k]! + i * 512, len: 512 }] }, (st) => expect(st).toBe(Blk.S_OK));
      }
      if (i % 16 === 15) drivers[i % 2]!.waitAll();
    }
    drivers[0]!.waitAll();
    drivers[1]!.waitAll();
    for (let k = 0; k < 2; k++) for (let i = 0; i < 64; i++) expect(disks[k]!.contents[i * 512 + 3]).toBe((i + k * 100) & 0xff);
  });

  it('switches the cache mode with CONFIG_WCE', () => {
    const { blk, device } = boot();
    blk.setWriteback(false);
    expect(blk.info.cache).toBe('writethrough');
    expect(device.writeback).toBe(0);
    // blk.driver.23: earlier volatile writes are flushed when leaving writeback mode
    expect(device.stats.flushes).toBe(1);
    blk.setWriteback(true);
    expect(blk.info.cache).toBe('writeback');
    expect(device.stats.flushes).toBe(1);
  });

  it('reports IOERR and UNSUPP from the device as request failures', () => {
    const { blk, machine } = boot({ blkFeatures: [BlkF.SEG_MAX] });
    const buf = machine.dma.alloc(512);
    const r = blk.wait(blk.submit({ type: Blk.T_IN, sector: 5000, data: [{ addr: buf, len: 512 }], unchecked: true }));
    expect(r).toEqual({ status: Blk.S_IOERR, len: 513 });
    const u = blk.wait(blk.submit({ type: 99, unchecked: true }));
    expect(u).toEqual({ status: Blk.S_UNSUPP, len: 1 });
    expect(() => blk.flush()).not.toThrow(); // FLUSH not negotiated: writethrough, nothing to do
    expect(() => blk.discard([{ sector: 0, sectors: 8 }])).toThrow(UsageError);
  });
});

/** A device model that wraps a real one and lies in ways a driver must survive. */
class LyingModel implements VirtioDeviceModel {
  ctx: DeviceContext | undefined;
  unstableNow = false;
  constructor(readonly inner: VirtioBlkDevice, readonly lie: { config?: Record<number, number>; status?: number; shortLen?: boolean; silent?: boolean; unstable?: boolean; refuse?: boolean; noQueue?: boolean; giveUp?: boolean }) {}
  get deviceType() {
    return this.inner.deviceType;
  }
  get name() {
    return 'liar';
  }
  get numQueues() {
    return this.inner.numQueues;
  }
  queueMaxSize(i: number) {
    return this.lie.noQueue ? 0 : this.inner.queueMaxSize(i);
  }
  get offeredFeatures() {
    return this.inner.offeredFeatures;
  }
  get configSize() {
    return this.inner.configSize;
  }
  readConfig(offset: number, size: 1 | 2 | 4): number {
    if (this.lie.unstable && this.unstableNow) this.ctx?.configChanged(); // the generation moves on every read
    const v = this.lie.config?.[offset];
    return v !== undefined ? v : this.inner.readConfig(offset, size);
  }
  writeConfig(offset: number, size: 1 | 2 | 4, value: number) {
    this.inner.writeConfig(offset, size, value);
  }
  acceptFeatures(f: bigint) {
    return !this.lie.refuse && this.inner.acceptFeatures(f);
  }
  activate(ctx: DeviceContext) {
    this.ctx = ctx;
    this.inner.activate(ctx);
  }
  reset() {
    this.inner.reset();
  }
  queueNotify(index: number) {
    if (this.lie.silent) return;
    if (this.lie.giveUp) {
      this.ctx!.needsReset(new DriverMisbehaviourError('test.give_up', 'the device gives up'));
      return;
    }
    const q = this.ctx!.queue(index);
    let c: Chain | null;
    while ((c = q.pop()) !== null) {
      let len = this.inner.handle(c);
      const last = c.writable[c.writable.length - 1]!;
      if (this.lie.status !== undefined) this.ctx!.mem.write8(last.addr + last.len - 1, this.lie.status);
      if (this.lie.shortLen) len = 0;
      q.push(c, len);
    }
    q.flush();
  }
}

function bootLiar(lie: LyingModel['lie'], dev: Partial<SimBlkOptions['device']> = {}) {
  const s = simBlk({ device: { backend: new RamDisk(64 * KiB), ...dev } });
  // a second machine with the lying wrapper around a fresh device of the same options
  const m = new Machine();
  const model = new LyingModel(s.device, lie);
  attachVirtioMmio(m, model);
  const t = discoverMmio(m.platform).transports[0]!;
  return { m, t, model };
}

describe('VirtioBlkDriver against a hostile device', () => {
  it('corrects bad config values: blk_size 0 or not a power of two, seg_max 0, num_queues 0, zero discard limits', () => {
    for (const bs of [0, 1000, 256, 1 << 20]) {
      const { m, t } = bootLiar({ config: { [BlkConfig.BLK_SIZE]: bs, [BlkConfig.SEG_MAX]: 0, [BlkConfig.NUM_QUEUES]: 0, [BlkConfig.MAX_DISCARD_SEG]: 0 } }, { numQueues: 2 });
      const blk = VirtioBlkDriver.probe(m.platform, t);
      expect(blk.info.blkSize).toBe(512);
      expect(blk.info.segMax).toBe(1);
      expect(blk.numQueues).toBe(1);
      expect(blk.info.discard).toBeUndefined();
      expect(blk.warnings.join('\n')).toMatch(/blk_size/);
      expect(blk.warnings.join('\n')).toMatch(/seg_max is 0/);
      expect(blk.warnings.join('\n')).toMatch(/num_queues is 0/);
      // and it still works, one segment per request
      const data = pattern(8 * KiB, 4);
      blk.write(0, data);
      const back = new Uint8Array(data.length);
      blk.read(0, back);
      expect(back).toEqual(data);
    }
  });

  it('takes at most the queues the device has when num_queues is huge', () => {
    const { m, t } = bootLiar({ config: { [BlkConfig.NUM_QUEUES]: 0xffff } }, { numQueues: 2 });
    const blk = VirtioBlkDriver.probe(m.platform, t, { maxQueues: 8 });
    expect(blk.numQueues).toBe(2);
  });

  it('flags a status byte outside OK/IOERR/UNSUPP as device misbehaviour', () => {
    const { m, t } = bootLiar({ status: 7 });
    const blk = VirtioBlkDriver.probe(m.platform, t);
    const buf = m.dma.alloc(512);
    const r = blk.wait(blk.submit({ type: Blk.T_IN, sector: 0, data: [{ addr: buf, len: 512 }] }));
    expect(r.status).toBe(-1);
    expect(r.error).toBeInstanceOf(DeviceMisbehaviourError);
    expect(() => blk.read(0, new Uint8Array(512))).toThrow(DeviceMisbehaviourError);
  });

  it('flags a used length that does not cover the status byte (split.device.16)', () => {
    const { m, t } = bootLiar({ shortLen: true });
    const blk = VirtioBlkDriver.probe(m.platform, t);
    expect(() => blk.flush()).toThrow(/used len/);
  });

  it('bounds the config generation loop when the generation never settles (config_space.driver.2)', () => {
    const { m, t, model } = bootLiar({ unstable: true });
    const blk = VirtioBlkDriver.probe(m.platform, t, { configRetries: 8 });
    const buf = m.dma.alloc(512);
    const h = blk.submit({ type: Blk.T_IN, sector: 0, data: [{ addr: buf, len: 512 }] });
    model.unstableNow = true;
    model.inner.resize(128 * KiB); // a config change: the driver re-reads capacity, and never gets a stable read
    blk.wait(h);
    expect(blk.error).toBeInstanceOf(DeviceMisbehaviourError);
    expect(blk.error!.message).toMatch(/generation/);
    expect(() => blk.submit({ type: Blk.T_IN, sector: 0, data: [{ addr: buf, len: 512 }] })).toThrow(DeviceMisbehaviourError);
  });

  it('fails the probe, marking the device FAILED, when FEATURES_OK is refused or queue 0 is missing', () => {
    for (const lie of [{ refuse: true }, { noQueue: true }]) {
      const { m, t } = bootLiar(lie);
      expect(() => VirtioBlkDriver.probe(m.platform, t)).toThrow(lie.refuse ? NegotiationError : DeviceMisbehaviourError);
      expect(t.getStatus() & Status.FAILED).toBe(Status.FAILED);
    }
  });

  it('reports DEVICE_NEEDS_RESET from the next wait and refuses further requests', () => {
    const { m, t } = bootLiar({ giveUp: true });
    const blk = VirtioBlkDriver.probe(m.platform, t);
    expect(() => blk.read(0, new Uint8Array(512))).toThrow(DeviceNeedsResetError);
    expect(() => blk.submit({ type: Blk.T_FLUSH })).toThrow(DeviceNeedsResetError);
  });

  it('gives up on a device that never answers, within its timeout', () => {
    const { m, t } = bootLiar({ silent: true });
    const blk = VirtioBlkDriver.probe(m.platform, t, { timeoutNs: 5_000_000 });
    const t0 = m.platform.now();
    expect(() => blk.read(0, new Uint8Array(512))).toThrow(TimeoutError);
    expect(m.platform.now() - t0).toBeLessThan(10_000_000);
  });
});
