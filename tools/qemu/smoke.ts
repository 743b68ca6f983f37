import type { QemuSession } from './launcher.ts';
import { discoverMmio } from '../../drivers/transport/mmio.ts';
import { VirtioBlkDriver } from '../../drivers/blk/driver.ts';
import { UsageError } from '../../spec-refs/errors.ts';
import { DeviceType } from '../../spec-refs/virtio.ts';

/**
 * The reference drivers on a running QEMU: what `pvkit qemu smoke` and CI run. virtio-blk: write a
 * pattern across several requests, read it back, flush. Devices whose driver or transport is
 * not in the tree yet are only probed (their presence checked).
 */
export function driverSmoke(s: QemuSession): string[] {
  const p = s.platform;
  const out: string[] = [];
  if (s.config.machine === 'microvm') {
    const { transports, skipped } = discoverMmio(p);
    if (transports.length === 0) throw new UsageError('qemu.smoke', 'no virtio-mmio device found', { seen: skipped.map((x) => x.detail).join('; ') || 'nothing' });
    for (const t of transports) {
      if (t.deviceType === DeviceType.BLOCK) out.push(`${t.kind}: ${blkRoundTrip(p, t)}`);
      else out.push(`${t.kind}: device type ${t.deviceType} found (no I/O smoke for it yet)`);
    }
  } else {
    // the virtio-pci transport driver is not in the tree yet: check the function is there
    const ecam = p.pci!.ecamBase!;
    for (const d of s.config.devices) {
      const id = p.mmioRead(ecam + ((d.slot ?? 0) << 15), 4) >>> 0;
      if ((id & 0xffff) !== 0x1af4) throw new UsageError('qemu.smoke', `no virtio function at 00:${(d.slot ?? 0).toString(16)}.0`, { seen: `0x${id.toString(16)}` });
      out.push(`pci 00:${(d.slot ?? 0).toString(16).padStart(2, '0')}.0: virtio ${d.kind} found (0x${(id >>> 16).toString(16)})`);
    }
  }
  return out;
}

function blkRoundTrip(p: QemuSession['platform'], t: Parameters<typeof VirtioBlkDriver.probe>[1]): string {
  const blk = VirtioBlkDriver.probe(p, t, {});
  const data = new Uint8Array(192 * 1024);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 9)) & 0xff;
  const t0 = performance.now();
  blk.write(16, data);
  const back = new Uint8Array(data.length);
  blk.read(16, back);
  blk.flush();
  const ms = performance.now() - t0;
  for (let i = 0; i < data.length; i++) {
    if (back[i] !== data[i]) throw new UsageError('qemu.smoke', 'virtio-blk read back different data', { expected: `byte ${i} = ${data[i]}`, seen: String(back[i]) });
  }
  blk.dev.shutdown();
  return `virtio-blk ${blk.info.capacity} sectors, wrote and read back ${data.length >> 10} KiB and flushed in ${ms.toFixed(1)} ms`;
}
