import { describe, expect, it } from 'vitest';
import { createMachine, MACHINE_TRANSPORTS, type MachineTransport } from './machine.ts';
import { VirtioBlkDriver } from '../../drivers/blk/driver.ts';
import { discoverMmio } from '../../drivers/transport/mmio.ts';
import { discoverPci } from '../../drivers/transport/pci.ts';
import type { VirtioTransport } from '../../drivers/transport/transport.ts';
import { EchoModel, ECHO_DEVICE_ID } from '../../device-models/virtio/testing/echo.ts';
import { VirtioBlkDevice } from '../../device-models/blk/device.ts';
import { DeviceType, F, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { UsageError } from '../../spec-refs/errors.ts';

function found(t: MachineTransport, sim: ReturnType<typeof createMachine>): VirtioTransport {
  if (t.startsWith('pci')) {
    const pci = discoverPci(sim.platform, { legacy: false }).transports;
    const hit = pci.find((x) => x.addr.bus === sim.pci!.bus && x.addr.dev === sim.pci!.device && x.addr.fn === sim.pci!.function);
    expect(hit, `a virtio-pci function at ${JSON.stringify(sim.pci)}`).toBeDefined();
    return hit!;
  }
  const mmio = discoverMmio(sim.platform).transports;
  expect(mmio.map((x) => x.vectors[0])).toEqual([sim.mmio!.vector]);
  return mmio[0]!;
}

describe('createMachine', () => {
  it.each(MACHINE_TRANSPORTS)('blk over %s: found where it says, driven by the reference driver with the monitor clean', (transport) => {
    const sim = createMachine({ transport, diskBytes: 64 * 1024 });
    expect(sim.device).toBeInstanceOf(VirtioBlkDevice);
    expect(sim.transport).toBe(transport);
    expect(transport.startsWith('pci') ? sim.mmio : sim.pci).toBeUndefined();
    const blk = VirtioBlkDriver.probe(sim.platform, found(transport, sim));
    expect(blk.info.capacity).toBe(128);
    const data = new Uint8Array(1024).map((_, i) => i & 0xff);
    blk.write(3, data);
    const back = new Uint8Array(1024);
    blk.read(3, back);
    expect(back).toEqual(data);
    expect(sim.monitor!.stats.accesses).toBeGreaterThan(0);
    expect(sim.monitor!.violations).toEqual([]);
    expect(hasFeature(sim.core.deviceFeatures, F.VERSION_1)).toBe(transport !== 'mmio-legacy');
  });

  it('offers the packed ring when asked, and attaches a device model of your own', () => {
    expect(hasFeature(createMachine({ ring: 'packed' }).device.offeredFeatures, F.RING_PACKED)).toBe(true);
    expect(hasFeature(createMachine().device.offeredFeatures, F.RING_PACKED)).toBe(false);
    const echo = createMachine({ device: 'echo' });
    expect(echo.device.deviceType).toBe(ECHO_DEVICE_ID);
    const mine = new EchoModel({ numQueues: 1 });
    const sim = createMachine({ device: mine, transport: 'pci', monitor: false });
    expect(sim.device).toBe(mine);
    expect(sim.monitor).toBeUndefined();
    expect(createMachine().device.deviceType).toBe(DeviceType.BLOCK);
  });

  it('refuses a transport it does not know and the packed ring on legacy virtio-mmio', () => {
    expect(() => createMachine({ transport: 'usb' as MachineTransport })).toThrow(UsageError);
    expect(() => createMachine({ transport: 'mmio-legacy', ring: 'packed' })).toThrow(/packed ring needs VIRTIO_F_VERSION_1/);
  });
});
