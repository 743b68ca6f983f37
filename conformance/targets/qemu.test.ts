import { describe, expect, it } from 'vitest';
import { makeCheck, expectEqual } from '../check.ts';
import { runConformance } from '../runner.ts';
import { configFor, configureQemuTarget, qemuTarget } from './qemu.ts';
import { xfailFor } from './qemu-xfail.ts';
import { skipQemu } from '../qemu/testing.ts';
import { discoverMmio } from '../../drivers/transport/mmio.ts';
import { VirtioDriverDevice } from '../../drivers/core/device.ts';
import { F, Status, bit, hasFeature } from '../../spec-refs/abi/virtio.ts';

describe('qemu target: configuration mapping', () => {
  it('maps the grid to built-in configurations, and pins one when asked', () => {
    configureQemuTarget({});
    expect(configFor('blk', 'pci', 'split')?.name).toBe('q35-blk-modern');
    expect(configFor('blk', 'pci-legacy', 'split')?.name).toBe('q35-blk');
    expect(configFor('net', 'mmio', 'packed')?.name).toBe('microvm-net-packed');
    expect(configFor('blk', 'mmio-legacy', 'packed')).toBeUndefined();
    expect(qemuTarget.transports).toEqual(expect.arrayContaining(['pci', 'pci-legacy', 'mmio', 'mmio-legacy']));
    configureQemuTarget({ config: 'q35-blk' });
    expect(qemuTarget.devices).toEqual(['blk']);
    expect(qemuTarget.transports).toEqual(['pci', 'pci-legacy']);
    expect(qemuTarget.rings).toEqual(['split']);
    expect(configFor('blk', 'pci-legacy', 'split')?.name).toBe('q35-blk');
    expect(configFor('blk', 'mmio', 'split')).toBeUndefined();
    expect(() => configureQemuTarget({ config: 'nope' })).toThrow(/unknown QEMU configuration/);
    configureQemuTarget({});
  });

  it('applies xfail entries only to the configurations they name', () => {
    const list = [
      { check: 'a.device.x', configs: ['q35-blk'], reason: 'r1' },
      { check: 'b.device.y', configs: 'all' as const, reason: 'r2' },
    ];
    expect(xfailFor('q35-blk', list)).toEqual({ 'a.device.x': 'r1', 'b.device.y': 'r2' });
    expect(xfailFor('microvm-blk', list)).toEqual({ 'b.device.y': 'r2' });
  });

  it('gives the runner the xfail table of the result configuration, whatever started last', () => {
    configureQemuTarget({});
    const blkMmio = qemuTarget.xfailFor!({ device: 'blk', transport: 'mmio', ring: 'split' });
    const netMmio = qemuTarget.xfailFor!({ device: 'net', transport: 'mmio', ring: 'split' });
    const blkPci = qemuTarget.xfailFor!({ device: 'blk', transport: 'pci', ring: 'split' });
    expect(blkMmio['split.device.framing']).toMatch(/missing headers|head descriptor/);
    expect(netMmio['split.device.framing']).toMatch(/iov_copy/);
    expect(blkMmio['blk.device.config']).toBeDefined();
    expect(netMmio['blk.device.config']).toBeUndefined();
    expect(blkPci['features.device.offer']).toBeUndefined();
    expect(qemuTarget.xfailFor!({ device: 'blk', transport: 'mmio-legacy', ring: 'packed' })).toEqual({});
  });
});

// A check of the kind the suite holds, run by the real runner on the qemu target: the reference
// driver initialises QEMU's device and FEATURES_OK / DRIVER_OK stick.
const initCheck = makeCheck({
  id: 'status_init.device.qemu-target-smoke',
  title: 'the device accepts the reference driver initialisation',
  statements: ['status_init.driver.6'],
  side: 'device',
  kind: 'example',
  applies: { transports: ['mmio', 'mmio-legacy'] },
  run(ctx) {
    const dut = ctx.newDevice();
    const { transports } = discoverMmio(dut.platform);
    expectEqual(transports.length, 1, ['status_init.driver.6'], 'one virtio-mmio device');
    const dev = VirtioDriverDevice.init(dut.platform, transports[0]!, { features: bit(F.VERSION_1) | bit(F.EVENT_IDX) | bit(F.INDIRECT_DESC) });
    expectEqual(transports[0]!.getStatus() & Status.DRIVER_OK, Status.DRIVER_OK, ['status_init.driver.6'], 'DRIVER_OK set');
    ctx.note(`features ${dev.features.toString(16)} on ${String(dut.internals?.['config'])}`);
    dev.shutdown();
  },
});

describe.skipIf(skipQemu)('qemu target on real QEMU', () => {
  it('runs a check on fresh QEMU devices through the conformance runner', async () => {
    configureQemuTarget({});
    const rep = await runConformance(qemuTarget, [initCheck], { target: 'qemu', devices: ['blk'], transports: ['mmio', 'mmio-legacy'], rings: ['split'], seed: 1, runs: 1 });
    expect(rep.results.map((r) => [r.config.transport, r.status, r.message])).toEqual([
      ['mmio', 'pass', undefined],
      ['mmio-legacy', 'pass', undefined],
    ]);
    expect(rep.results[0]!.notes?.[0]).toMatch(/on microvm-blk$/);
  });

  it('knows what the devices offer (packed from the packed=on configurations; event_idx=off honoured)', () => {
    configureQemuTarget({});
    const f = qemuTarget.offeredFeatures!('blk')!;
    expect(hasFeature(f, F.VERSION_1)).toBe(true);
    expect(hasFeature(f, F.RING_PACKED)).toBe(true);
    configureQemuTarget({ config: 'q35-blk-noevidx' });
    expect(hasFeature(qemuTarget.offeredFeatures!('blk')!, F.EVENT_IDX)).toBe(false);
    configureQemuTarget({});
  });

  it('puts PCI devices where the location says', () => {
    configureQemuTarget({});
    const dut = qemuTarget.newDevice('net', 'pci', {}, 'split');
    try {
      expect(dut.location).toMatchObject({ kind: 'pci', bus: 0, dev: 5, fn: 0 });
      const ecam = dut.platform.pci!.ecamBase!;
      expect(dut.platform.mmioRead(ecam + (5 << 15), 4) >>> 0).toBe(0x1041_1af4);
    } finally {
      dut.dispose();
    }
  });
});
