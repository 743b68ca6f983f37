/**
 * What the built-in `sim` target is made of: pvkit's transports and device models, registered by
 * name. Add a device model or transport here when it lands.
 */
import { VirtioNetDevice, NET_SUPPORTED_FEATURES, type NetDeviceOptions } from '../../device-models/net/device.ts';
import { attachVirtioMmio } from '../../device-models/virtio/mmio.ts';
import { attachVirtioPci } from '../../device-models/virtio/pci.ts';
import { EchoModel } from '../../device-models/virtio/testing/echo.ts';
import { VirtioBlkDevice, DEFAULT_BLK_FEATURES, type VirtioBlkOptions } from '../../device-models/blk/device.ts';
import { RamDisk } from '../../device-models/blk/backend.ts';
import { featureSet, F, bit } from '../../spec-refs/abi/virtio.ts';
import { registerSimDevice, registerSimRing, registerSimTransport } from './sim.ts';
import type { DeviceOptions } from '../target.ts';

for (const legacy of [false, true]) {
  registerSimTransport({
    name: legacy ? 'mmio-legacy' : 'mmio',
    attach(machine, model, opts) {
      const a = attachVirtioMmio(machine, model, { legacy, notifyLatencyNs: Number(opts.params?.['notifyLatencyNs'] ?? 500) });
      // VIRTIO_F_SUSPEND timing knobs (params suspendLatencyNs / resumeLatencyNs), for driver-side checks
      if (opts.params?.['suspendLatencyNs'] !== undefined) a.core.suspendLatencyNs = Number(opts.params['suspendLatencyNs']);
      if (opts.params?.['resumeLatencyNs'] !== undefined) a.core.resumeLatencyNs = Number(opts.params['resumeLatencyNs']);
      const pd = machine.platform.devices().find((d) => d.base === a.base)!;
      return { location: pd, internals: { core: a.core, transport: a.transport, line: a.line } };
    },
  });
}

// virtio-pci: 'pci' is a modern function; 'pci-legacy' a transitional one driven through its legacy
// interface. params: msixVectors, mappableVectors, notifyOffMultiplier (VirtioPciOptions).
for (const legacy of [false, true]) {
  registerSimTransport({
    name: legacy ? 'pci-legacy' : 'pci',
    attach(machine, model, opts) {
      const p = opts.params ?? {};
      const num = (k: string): number | undefined => (typeof p[k] === 'number' ? (p[k] as number) : undefined);
      const a = attachVirtioPci(machine, model, {
        mode: legacy ? 'transitional' : 'modern',
        notifyLatencyNs: Number(p['notifyLatencyNs'] ?? 500),
        ...(num('msixVectors') !== undefined ? { msixVectors: num('msixVectors') } : {}),
        ...(num('mappableVectors') !== undefined ? { mappableVectors: num('mappableVectors') } : {}),
        ...(num('notifyOffMultiplier') !== undefined ? { notifyOffMultiplier: num('notifyOffMultiplier') } : {}),
      });
      const core = legacy ? a.transport.legacyCore! : a.core;
      if (p['suspendLatencyNs'] !== undefined) core.suspendLatencyNs = Number(p['suspendLatencyNs']);
      if (p['resumeLatencyNs'] !== undefined) core.resumeLatencyNs = Number(p['resumeLatencyNs']);
      return { location: { kind: 'pci', bus: 0, dev: a.fn.dev, fn: a.fn.fn, name: `virtio-pci:${model.name}` }, internals: { core, transport: a.transport, fn: a.fn } };
    },
  });
}

registerSimRing('packed');

/** The built-in devices offer VIRTIO_F_SUSPEND (the core implements it) unless params.suspend is false. */
function suspendBit(opts: DeviceOptions): bigint {
  return opts.params?.['suspend'] === false ? 0n : bit(F.SUSPEND);
}

const ECHO_RING = featureSet(F.VERSION_1, F.INDIRECT_DESC, F.EVENT_IDX);

registerSimDevice({
  name: 'echo',
  hidden: true,
  offeredFeatures: ECHO_RING | bit(F.SUSPEND),
  create: (_m, opts) => {
    const { suspend: _s, ...rest } = (opts.params ?? {}) as Record<string, unknown>;
    return new EchoModel({
      ...(opts.queueMaxSize !== undefined ? { queueMaxSize: opts.queueMaxSize } : {}),
      features: (ECHO_RING | suspendBit(opts) | (opts.extraFeatures ?? 0n)) & (opts.offerMask ?? -1n),
      ...(rest as object),
    });
  },
});

const BLK_RING = featureSet(F.VERSION_1, F.INDIRECT_DESC, F.EVENT_IDX, F.RING_PACKED);

/** virtio-blk on a RAM disk (default 4 MiB). params: any VirtioBlkOptions field, plus diskBytes. */
registerSimDevice({
  name: 'blk',
  offeredFeatures: DEFAULT_BLK_FEATURES.reduce((s, b) => s | bit(b), BLK_RING | bit(F.SUSPEND)),
  create(_m, opts) {
    const p = (opts.params ?? {}) as Partial<VirtioBlkOptions> & { diskBytes?: number };
    let ring = (p.ringFeatures ?? BLK_RING | suspendBit(opts)) | (opts.extraFeatures ?? 0n);
    if (opts.offerMask !== undefined) ring &= opts.offerMask;
    const { diskBytes, __wrap: _w, suspend: _s, suspendLatencyNs: _sl, resumeLatencyNs: _rl, notifyLatencyNs: _nl, ...rest } = p as typeof p & { __wrap?: unknown; suspend?: unknown; suspendLatencyNs?: unknown; resumeLatencyNs?: unknown; notifyLatencyNs?: unknown };
    const dev = new VirtioBlkDevice({
      backend: new RamDisk(diskBytes ?? 4 << 20, p.readOnly ?? false),
      ...(opts.queueMaxSize !== undefined ? { queueSize: opts.queueMaxSize } : {}),
      ...rest,
      ...(opts.offerMask !== undefined ? { blkFeatures: (p.blkFeatures ?? DEFAULT_BLK_FEATURES).filter((b) => (opts.offerMask! & bit(b)) !== 0n) } : {}),
      ringFeatures: ring,
    });
    return dev;
  },
});

/** virtio-net: pvkit's device model; params are NetDeviceOptions (the checks plug the NIC into their own switch). */
registerSimDevice({
  name: 'net',
  offeredFeatures: NET_SUPPORTED_FEATURES,
  create(_m, opts) {
    const p = (opts.params ?? {}) as NetDeviceOptions;
    return new VirtioNetDevice({
      ...(opts.queueMaxSize !== undefined ? { queueSize: opts.queueMaxSize } : {}),
      ...p,
      ...(opts.offerMask !== undefined || opts.extraFeatures !== undefined ? { features: ((p.features ?? NET_SUPPORTED_FEATURES) | (opts.extraFeatures ?? 0n)) & (opts.offerMask ?? -1n) } : {}),
    });
  },
});
