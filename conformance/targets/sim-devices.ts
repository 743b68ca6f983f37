/**
 * What the built-in `sim` target is made of: pvkit's transports and device models, registered by
 * name. Add a device model or transport here when it lands.
 */
import { attachVirtioMmio } from '../../device-models/virtio/mmio.ts';
import { EchoModel } from '../../device-models/virtio/testing/echo.ts';
import { featureSet, F } from '../../spec-refs/virtio.ts';
import { registerSimDevice, registerSimTransport } from './sim.ts';

for (const legacy of [false, true]) {
  registerSimTransport({
    name: legacy ? 'mmio-legacy' : 'mmio',
    attach(machine, model, opts) {
      const a = attachVirtioMmio(machine, model, { legacy, notifyLatencyNs: Number(opts.params?.['notifyLatencyNs'] ?? 500) });
      const pd = machine.platform.devices().find((d) => d.base === a.base)!;
      return { location: pd, internals: { core: a.core, transport: a.transport, line: a.line } };
    },
  });
}

registerSimDevice({
  name: 'echo',
  hidden: true,
  offeredFeatures: featureSet(F.VERSION_1, F.INDIRECT_DESC, F.EVENT_IDX),
  create: (_m, opts) =>
    new EchoModel({
      ...(opts.queueMaxSize !== undefined ? { queueMaxSize: opts.queueMaxSize } : {}),
      ...(opts.offerMask !== undefined ? { features: featureSet(F.VERSION_1, F.INDIRECT_DESC, F.EVENT_IDX) & opts.offerMask } : {}),
      ...((opts.params ?? {}) as object),
    }),
});
