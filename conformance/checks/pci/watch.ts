/**
 * virtio-pci driver-side check support (no checks here): driver checks run pvkit's
 * PciTransport against the simulated device and watch the bus (every config cycle and BAR
 * access passes the monitor point).
 */
import { discoverPci } from '../../../drivers/transport/pci.ts';
import { CheckSkip } from '../../check.ts';
import type { DeviceUnderTest, TargetContext } from '../../target.ts';
import { startRef } from '../support.ts';

/** Watch config cycles and BAR accesses of one function while `fn` runs. */
export function watch(dut: DeviceUnderTest, fn: () => void): { cfgWrites: { off: number; size: number; v: number }[]; bar: { kind: 'read' | 'write'; window: string; offset: number; size: number; value: number }[] } {
  const m = dut.machine;
  if (!m) throw new CheckSkip('needs the simulated machine to watch the bus');
  const loc = dut.location as { dev: number; fn: number };
  const cfgWrites: { off: number; size: number; v: number }[] = [];
  const bar: { kind: 'read' | 'write'; window: string; offset: number; size: number; value: number }[] = [];
  let cf8 = 0;
  const stop = m.bus.addListener((a) => {
    if (a.window === 'pci-cf8') {
      if (a.kind === 'write' && a.offset === 0) cf8 = a.value;
      else if (a.kind === 'write' && ((cf8 >>> 11) & 0x1f) === loc.dev) cfgWrites.push({ off: (cf8 & 0xfc) + a.offset - 4, size: a.size, v: a.value });
    } else if (a.window === 'pci-ecam') {
      if (a.kind === 'write' && ((a.offset >>> 15) & 0x1f) === loc.dev && ((a.offset >>> 12) & 7) === loc.fn) cfgWrites.push({ off: a.offset & 0xfff, size: a.size, v: a.value });
    } else if (a.window.startsWith('virtio-pci:')) {
      bar.push({ kind: a.kind, window: a.window, offset: a.offset, size: a.size, value: a.value });
    }
  });
  try {
    fn();
  } finally {
    stop();
  }
  return { cfgWrites, bar };
}

/** pvkit's PciTransport for the device under test (found by its slot). */
export function driverTransport(dut: DeviceUnderTest, opts?: Parameters<typeof discoverPci>[1]) {
  return discoverPci(dut.platform, opts).transports.find((x) => x.addr.dev === (dut.location as { dev: number }).dev)!;
}

export function refWorkload(ctx: TargetContext, dut: DeviceUnderTest, extraRing = 0n): void {
  const s = startRef(ctx, dut, { extraRing });
  s.io(4, ctx.seed);
  s.shutdown();
}
