/**
 * Clean runs: the reference driver and the device models never trip the monitor, over virtio-mmio
 * (v2 and legacy), virtio-pci (modern, transitional, legacy) and packed rings; and it really watched
 * (chains, used entries, interrupts counted).
 */
import { describe, expect, it } from 'vitest';
import { Machine } from '../../device-models/machine/machine.ts';
import { discoverMmio } from '../../drivers/transport/mmio.ts';
import { VirtioDriverDevice } from '../../drivers/core/device.ts';
import { F, Status, featureSet } from '../../spec-refs/abi/virtio.ts';
import { attachMonitor, type Monitor } from '../monitor.ts';
import { monitorMachine } from '../vitest.ts';
import { ALL, PACKED, echoTraffic, pciSim, sim } from './test-support.ts';

describe('monitor: the reference driver and the core device models never trip it', () => {
  for (const [name, legacy, features] of [
    ['v2, indirect + event idx', false, ALL],
    ['v2, no event idx, no indirect', false, featureSet(F.VERSION_1)],
    ['legacy v1', true, featureSet(F.INDIRECT_DESC, F.EVENT_IDX)],
  ] as const) {
    it(`${name}: init, traffic on two queues, shutdown, re-init`, () => {
      const { m } = sim({ legacy, features });
      const mon = monitorMachine(m);
      const t = discoverMmio(m.platform).transports[0]!;
      let d = VirtioDriverDevice.init(m.platform, t, { features: ALL, queues: 2 });
      echoTraffic(m, d, 0, 12);
      echoTraffic(m, d, 1, 6, 3);
      d.shutdown();
      d = VirtioDriverDevice.init(m.platform, t, { features: ALL, queues: 1 });
      echoTraffic(m, d, 0, 4, 2);
      expect(mon.violations).toEqual([]);
      // the monitor really watched: it saw every chain made available and used, and the interrupts
      expect(mon.stats).toMatchObject({ chains: 22, used: 22 });
      expect(mon.stats.irqs).toBeGreaterThan(0);
      expect(mon.stats.accesses).toBeGreaterThan(50);
    });
  }
});

describe('monitor over virtio-pci and legacy virtio-mmio: the reference components never trip it', () => {
  for (const mode of ['modern', 'transitional', 'legacy'] as const) {
    it(`pci ${mode}: init, traffic on two queues, shutdown, re-init`, () => {
      const { m, mon, t } = pciSim(mode);
      let d = VirtioDriverDevice.init(m.platform, t, { features: ALL, queues: 2 });
      echoTraffic(m, d, 0, 12);
      echoTraffic(m, d, 1, 6, 3);
      d.shutdown();
      d = VirtioDriverDevice.init(m.platform, t, { features: ALL, queues: 1 });
      echoTraffic(m, d, 0, 4, 2);
      mon.detach();
      expect(mon.violations).toEqual([]);
      // it decoded the rings (from common cfg, or from the legacy queue PFN) and saw the interrupts
      expect(mon.stats).toMatchObject({ chains: 22, used: 22 });
      expect(mon.stats.irqs).toBeGreaterThan(0);
      expect(mon.statusLog.map((s) => s.value).slice(0, 2)).toEqual([0, Status.ACKNOWLEDGE]);
    });
  }

  it('legacy virtio-mmio: rings found from QueuePFN are watched', () => {
    const { m } = sim({ legacy: true, features: featureSet(F.INDIRECT_DESC, F.EVENT_IDX) });
    const mon = attachMonitor(m);
    const d = VirtioDriverDevice.init(m.platform, discoverMmio(m.platform).transports[0]!, { features: ALL, queues: 1 });
    echoTraffic(m, d, 0, 5, 2);
    expect(mon.violations).toEqual([]);
    expect(mon.stats).toMatchObject({ chains: 5, used: 5 });
  });
});

describe('monitor on packed rings: the reference driver and devices never trip it', () => {
  for (const transport of ['mmio', 'pci'] as const) {
    for (const features of [PACKED, featureSet(F.VERSION_1, F.RING_PACKED), PACKED | featureSet(F.IN_ORDER)]) {
      it(`${transport}, features 0x${features.toString(16)}: traffic past several wraps, shutdown, re-init`, () => {
        let m: Machine;
        let mon: Monitor;
        let t;
        if (transport === 'mmio') {
          ({ m } = sim({ features }));
          mon = attachMonitor(m);
          t = discoverMmio(m.platform).transports[0]!;
        } else {
          ({ m, mon, t } = pciSim('modern', features));
        }
        let d = VirtioDriverDevice.init(m.platform, t, { features, queues: 2, queueSize: 8 });
        echoTraffic(m, d, 0, 20, 3); // 3-descriptor lists on an 8-entry ring: wraps many times
        echoTraffic(m, d, 1, 9);
        d.shutdown();
        d = VirtioDriverDevice.init(m.platform, t, { features, queues: 1, queueSize: 8 });
        echoTraffic(m, d, 0, 5, 2);
        mon.detach();
        expect(mon.violations).toEqual([]);
        expect(mon.stats).toMatchObject({ chains: 34, used: 34 });
      });
    }
  }
});
