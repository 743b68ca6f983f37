import type { QemuSession } from '../../conformance/qemu/launcher.ts';
import type { GuestPlatform } from '../../spec-refs/platform/platform.ts';
import type { VirtioTransport } from '../../drivers/transport/transport.ts';
import { discoverMmio } from '../../drivers/transport/mmio.ts';
import { VirtioBlkDriver } from '../../drivers/blk/driver.ts';
import { UsageError } from '../../spec-refs/errors.ts';
import { DeviceType } from '../../spec-refs/abi/virtio.ts';

/**
 * The reference drivers on a running QEMU: what `pvkit qemu smoke` and CI run.
 * - virtio-blk: write a pattern over several requests, read it back, flush.
 * - virtio-net: send frames of several sizes; each comes back through the looped-back netdev.
 * The virtio-pci transport and the net driver are loaded when they are in the tree (they land
 * from other branches); until then those devices are only probed.
 */
interface PciModule {
  discoverPci(p: GuestPlatform, opts?: { legacy?: boolean }): { transports: VirtioTransport[]; skipped: { reason: string }[] };
}
interface NetDriverLike {
  send(frame: Uint8Array): boolean;
  waitReceive(timeoutNs?: number): { data: Uint8Array };
  readonly mac: Uint8Array;
}
interface NetModule {
  VirtioNetDriver: { init(p: GuestPlatform, t: VirtioTransport, opts?: object): NetDriverLike };
}

async function optional<T>(path: string): Promise<T | undefined> {
  try {
    return (await import(path)) as T;
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_MODULE_NOT_FOUND') return undefined;
    throw e;
  }
}

export async function driverSmoke(s: QemuSession): Promise<string[]> {
  const p = s.platform;
  const out: string[] = [];
  let transports: VirtioTransport[];
  if (s.config.machine === 'microvm') {
    const found = discoverMmio(p);
    if (found.transports.length === 0) throw new UsageError('qemu.smoke', 'no virtio-mmio device found', { seen: found.skipped.map((x) => x.detail).join('; ') || 'nothing' });
    transports = found.transports;
  } else {
    const pci = await optional<PciModule>('../../drivers/transport/pci.ts');
    if (!pci) return probePci(s);
    const found = pci.discoverPci(p);
    if (found.transports.length === 0) throw new UsageError('qemu.smoke', 'no virtio-pci function found', { seen: found.skipped.map((x) => x.reason).join('; ') || 'nothing' });
    transports = found.transports;
  }
  for (const t of transports) {
    if (t.deviceType === DeviceType.BLOCK) out.push(`${t.kind}: ${blkRoundTrip(p, t)}`);
    else if (t.deviceType === DeviceType.NET) {
      const net = await optional<NetModule>('../../drivers/net/driver.ts');
      out.push(`${t.kind}: ${net ? netLoopback(p, t, net) : 'virtio-net found (the net driver is not in the tree yet)'}`);
    } else out.push(`${t.kind}: device type ${t.deviceType} found`);
  }
  return out;
}

function probePci(s: QemuSession): string[] {
  const p = s.platform;
  const ecam = p.pci!.ecamBase!;
  return s.config.devices.map((d) => {
    const id = p.mmioRead(ecam + ((d.slot ?? 0) << 15), 4) >>> 0;
    if ((id & 0xffff) !== 0x1af4) throw new UsageError('qemu.smoke', `no virtio function at 00:${(d.slot ?? 0).toString(16)}.0`, { seen: `0x${id.toString(16)}` });
    return `pci 00:${(d.slot ?? 0).toString(16).padStart(2, '0')}.0: virtio ${d.kind} found (0x${(id >>> 16).toString(16)}; the virtio-pci transport is not in the tree yet)`;
  });
}

function blkRoundTrip(p: GuestPlatform, t: VirtioTransport): string {
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

function netLoopback(p: GuestPlatform, t: VirtioTransport, m: NetModule): string {
  const net = m.VirtioNetDriver.init(p, t, {});
  const t0 = performance.now();
  const n = 16;
  for (let k = 0; k < n; k++) {
    const frame = new Uint8Array(60 + k * 89);
    frame.fill(0xff, 0, 6);
    frame.set(net.mac, 6);
    frame[12] = 0x88; // local experimental ethertype 0x88b5
    frame[13] = 0xb5;
    for (let i = 14; i < frame.length; i++) frame[i] = (i * 7 + k) & 0xff;
    if (!net.send(frame)) throw new UsageError('qemu.smoke', 'virtio-net transmit queue full');
    const r = net.waitReceive(2e9);
    if (r.data.length !== frame.length || r.data.some((b, i) => b !== frame[i])) {
      throw new UsageError('qemu.smoke', 'virtio-net frame did not come back intact', { expected: `${frame.length} bytes`, seen: `${r.data.length} bytes` });
    }
  }
  return `virtio-net ${n} frames sent and received back intact in ${(performance.now() - t0).toFixed(1)} ms`;
}
