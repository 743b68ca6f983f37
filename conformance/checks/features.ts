/**
 * Feature bits and their negotiation (content.tex "Feature Bits", "Reserved Feature Bits").
 */
import fc from 'fast-check';
import { BlkF, DeviceType, F, NetF, Status, bit, featureSet, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { NET_FEATURE_REQUIRES, NetFx } from '../../spec-refs/abi/net.ts';
import { CheckFailure, checkProperty, defineCheck, expectThat } from '../check.ts';
import { RawSplitRing } from '../hostile.ts';
import { validRequest } from './requests.ts';
import { monitor, newDeviceWith, raw, simInternals, startRef } from './support.ts';

/** Bits VIRTIO 1.4 defines for a device type (core bits + the type's own). */
export function definedFeatureBits(deviceType: number): Set<number> {
  const s = new Set<number>(Object.values(F));
  const dev = deviceType === DeviceType.BLOCK ? BlkF : deviceType === DeviceType.NET ? NetF : undefined;
  if (dev) for (const b of Object.values(dev)) s.add(b);
  if (deviceType === DeviceType.NET) for (const b of Object.values(NetFx)) s.add(b);
  return s;
}

/**
 * Device feature bits the spec describes only for the legacy interface ("Legacy Interface: Feature
 * bits" of device-types/blk/description.tex and device-types/net/description.tex): blk BARRIER (0)
 * and SCSI (7); net GSO (6), GUEST_RSC4 (41), GUEST_RSC6 (42). A device used through the legacy
 * interface follows the legacy sections (content.tex, "Legacy Interface: A Note on Feature Bits"),
 * so offering them there is offering bits the spec describes (features.device.4 forbids only bits
 * it does not describe); through the modern interface they stay undefined and are flagged.
 */
export const LEGACY_ONLY_BITS: Readonly<Record<number, readonly number[]>> = {
  [DeviceType.BLOCK]: [0, 7],
  [DeviceType.NET]: [6, 41, 42],
};

/** Bits the spec describes for a device type on the given interface (legacy adds LEGACY_ONLY_BITS). */
export function describedFeatureBits(deviceType: number, legacy: boolean): Set<number> {
  const s = definedFeatureBits(deviceType);
  if (legacy) for (const b of LEGACY_ONLY_BITS[deviceType] ?? []) s.add(b);
  return s;
}

/**
 * Feature dependencies the spec states ("Requires ..."): feature -> groups, each group satisfied
 * by any one of its bits. Only virtio-net states any among pvkit's device types; CONFIG_WCE
 * needing FLUSH is a rule on what a blk device offers (blk.device.2), not a dependency.
 */
const DEPENDS: Record<number, Record<number, readonly (readonly number[])[]>> = {
  // virtio-net: the table of spec-refs/abi/net.ts ("Feature bit requirements"), with the bits above 63.
  [DeviceType.NET]: Object.fromEntries(NET_FEATURE_REQUIRES.map(([f, groups]) => [f, groups])),
};

function bits(set: bigint): number[] {
  const out: number[] = [];
  for (let b = 0; b < 128; b++) if (hasFeature(set, b)) out.push(b);
  return out;
}

// ---------------------------------------------------------------------------- device side

defineCheck({
  id: 'features.device.offer',
  title: 'the device offers VERSION_1, only bits the spec defines for its type and transport, and each with its prerequisites',
  statements: ['features.device.6', 'features.device.4', 'features.device.1', 'features.device.15', 'blk.device.2', 'blk.device.6'],
  side: 'device',
  kind: 'example',
  applies: { transports: ['mmio', 'mmio-legacy'] },
  run(ctx) {
    const dut = ctx.newDevice();
    const r = raw(dut);
    const { deviceId, version } = r.probe();
    r.reset();
    r.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
    const offered = r.deviceFeatures();
    const legacy = version === 1;
    if (!legacy) expectThat(hasFeature(offered, F.VERSION_1), ['features.device.6'], 'device does not offer VIRTIO_F_VERSION_1', 'bit 32 set', `0x${offered.toString(16)}`);
    const defined = describedFeatureBits(deviceId, legacy);
    const undefinedBits = bits(offered).filter((b) => !defined.has(b));
    expectThat(undefinedBits.length === 0, ['features.device.4'], `device offers feature bits the spec does not define for its type${legacy ? ' on the legacy interface' : ''}`, 'defined bits only', undefinedBits.join(', '));
    expectThat(!hasFeature(offered, F.SR_IOV), ['features.device.15'], 'a virtio-mmio device offers VIRTIO_F_SR_IOV');
    const deps = DEPENDS[deviceId] ?? {};
    for (const b of bits(offered)) {
      for (const group of deps[b] ?? []) expectThat(group.some((need) => hasFeature(offered, need)), ['features.device.1'], `device offers feature ${b} without its prerequisite (one of ${group.join(', ')})`);
    }
    if (deviceId === DeviceType.BLOCK && hasFeature(offered, BlkF.CONFIG_WCE)) expectThat(hasFeature(offered, BlkF.FLUSH), ['blk.device.2'], 'device offers VIRTIO_BLK_F_CONFIG_WCE without VIRTIO_BLK_F_FLUSH');
    if (deviceId === DeviceType.BLOCK && legacy) expectThat(!hasFeature(offered, BlkF.ZONED), ['blk.device.6'], 'legacy interface offers VIRTIO_BLK_F_ZONED');
  },
});

defineCheck({
  id: 'features.device.negotiation',
  title: 'the device accepts any consistent subset of its offer (again after a reset) and refuses FEATURES_OK for bits it did not offer',
  statements: ['features.device.3', 'features.device.2', 'features.device.5'],
  side: 'device',
  kind: 'property',
  applies: { transports: ['mmio'] },
  run(ctx) {
    const dut = ctx.newDevice();
    const r = raw(dut);
    const { deviceId } = r.probe();
    r.reset();
    r.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
    const offered = r.deviceFeatures();
    const deps = DEPENDS[deviceId] ?? {};
    const optional = bits(offered).filter((b) => b !== F.VERSION_1);
    const notOffered = [...Array(64).keys()].filter((b) => !hasFeature(offered, b));
    checkProperty(ctx, ['features.device.3'], [fc.subarray(optional), fc.option(fc.constantFrom(...notOffered), { freq: 2 })], (subset, extra) => {
      // close the subset under prerequisites so it is consistent
      const chosen = new Set(subset);
      // to a fixpoint: a prerequisite added may have prerequisites of its own (GUEST_ECN -> GUEST_TSO4 -> GUEST_CSUM)
      for (let changed = true; changed; ) {
        changed = false;
        for (const b of [...chosen])
          for (const group of deps[b] ?? [])
            if (!group.some((x) => chosen.has(x))) {
              chosen.add(group[0]!);
              changed = true;
            }
      }
      let want = featureSet(F.VERSION_1, ...chosen);
      if (extra !== null) want |= bit(extra);
      const tryOnce = () => {
        r.reset();
        r.setStatus(Status.ACKNOWLEDGE);
        r.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
        r.deviceFeatures();
        r.writeDriverFeatures(want);
        r.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
        return (r.status() & Status.FEATURES_OK) !== 0;
      };
      const ok = tryOnce();
      if (extra !== null) {
        expectThat(!ok, ['features.device.3'], `device kept FEATURES_OK although the driver accepted bit ${extra}, which it did not offer`, 'FEATURES_OK clear', 'FEATURES_OK set');
      } else {
        expectThat(ok, ['features.device.2'], 'device refused a consistent subset of its own offer', 'FEATURES_OK set', `refused 0x${want.toString(16)}`);
        expectThat(tryOnce(), ['features.device.5'], 'device refused, after a reset, a feature set it accepted before', 'FEATURES_OK set', `refused 0x${want.toString(16)}`);
      }
    });
    r.reset();
  },
});

defineCheck({
  id: 'features.device.in-order',
  title: 'with VIRTIO_F_IN_ORDER the device uses buffers in the order they were made available',
  statements: ['features.device.10'],
  side: 'device',
  kind: 'property',
  applies: { rings: ['split'], transports: ['mmio'], features: [F.IN_ORDER] },
  run(ctx) {
    checkProperty(ctx, ['features.device.10'], [fc.integer({ min: 2, max: 6 })], (n) => {
      const dut = ctx.newDevice({ params: { reorder: true } });
      const r = raw(dut);
      const { deviceId } = r.probe();
      const neg = r.negotiate((o) => o & (bit(F.VERSION_1) | bit(F.IN_ORDER) | 0xffffn));
      if (!hasFeature(neg.accepted, F.IN_ORDER)) throw new CheckFailure('device stopped offering VIRTIO_F_IN_ORDER', { statements: ['features.device.10'] });
      const ring = new RawSplitRing(dut.platform, 32);
      r.setupQueue(0, 32, ring.desc, ring.avail, ring.used);
      r.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
      const heads: number[] = [];
      let next = 0;
      for (let i = 0; i < n; i++) {
        const req = validRequest(dut.platform, deviceId);
        ring.chain(next, req.segs);
        heads.push(next);
        next += req.segs.length;
      }
      ring.publish(...heads);
      r.notify(0);
      ring.run(() => ring.usedIdx() === n);
      const used = ring.takeUsed().map((u) => u.id);
      expectThat(used.join(',') === heads.join(','), ['features.device.10'], 'buffers used out of order', heads.join(','), used.join(','));
    });
  },
});

// ---------------------------------------------------------------------------- driver side

/** Bits a device may offer in the property below: ring features and bits no spec defines for blk/echo. */
const RING_BITS = [F.INDIRECT_DESC, F.EVENT_IDX, F.ACCESS_PLATFORM, F.ORDER_PLATFORM, F.SR_IOV, F.NOTIFICATION_DATA, F.IN_ORDER, F.RING_RESET];
const UNDEFINED_BITS = [42, 44, 45, 46, 47, 48, 49, 50, 60, 63, 70, 100];

defineCheck({
  id: 'features.driver.acceptance',
  title: 'whatever a device offers, the driver accepts only offered bits it knows, always VERSION_1, and does not fail over unknown bits',
  statements: ['features.driver.1', 'features.driver.3', 'features.driver.4', 'features.driver.5', 'features.driver.8', 'features.driver.9', 'features.driver.18'],
  side: 'driver',
  kind: 'property',
  applies: { transports: ['mmio'] },
  run(ctx) {
    // bits the spec defines for the device under test are not "undefined" (virtio-net uses 50, 60, 63)
    const defined = definedFeatureBits(ctx.device === 'net' ? DeviceType.NET : ctx.device === 'blk' ? DeviceType.BLOCK : 0);
    const undefinedBits = UNDEFINED_BITS.filter((b) => !defined.has(b));
    checkProperty(ctx, ['features.driver.1'], [fc.subarray(RING_BITS), fc.subarray(undefinedBits)], (ring, undef) => {
      const extra = featureSet(...ring, ...undef);
      const dut = newDeviceWith(ctx, (m) => ({ offeredFeatures: m.offeredFeatures | extra, acceptFeatures: (f: bigint) => m.acceptFeatures(f & ~extra) }));
      const sim = simInternals(dut);
      const mon = monitor(dut);
      let err: unknown;
      let accepted = 0n;
      try {
        const s = startRef(ctx, dut);
        accepted = s.dev.features;
        expectThat(accepted === sim.core.features, ['features.driver.1'], 'driver and device disagree on the negotiated features', `0x${accepted.toString(16)}`, `0x${sim.core.features.toString(16)}`);
        s.io(1, ctx.seed);
        s.shutdown();
      } catch (e) {
        err = e;
      }
      mon.detach();
      mon.assertClean({ side: 'driver' });
      expectThat(err === undefined, ['features.driver.8'], 'driver failed on a device offering bits it does not know', 'a working device', err instanceof Error ? err.message : String(err));
      const unknown = bits(accepted).filter((b) => undefinedBits.includes(b));
      expectThat(unknown.length === 0, ['features.driver.5', 'features.driver.4', 'features.driver.3'], 'driver accepted bits the spec does not define', 'none', unknown.join(','));
    });
  },
});

/** Every bit some net feature depends on (the prerequisites a checking device may leave out of its offer). */
const NET_PREREQUISITES = [...new Set(NET_FEATURE_REQUIRES.flatMap(([, groups]) => groups.flat()))].sort((a, b) => a - b);

/** The dependencies `written` breaks (feature -> the group none of whose bits it has), as text. */
export function brokenDependencies(deviceId: number, written: bigint): string[] {
  const deps = DEPENDS[deviceId] ?? {};
  const out: string[] = [];
  for (const b of bits(written)) for (const group of deps[b] ?? []) if (!group.some((need) => hasFeature(written, need))) out.push(`${b} without any of ${group.join('/')}`);
  return out;
}

defineCheck({
  id: 'features.driver.prerequisites',
  title: 'offered features whose prerequisites are missing from the offer, the driver does not accept them',
  statements: ['features.driver.2'],
  side: 'driver',
  kind: 'property',
  // virtio-net is the only pvkit device type whose features state prerequisites (blk states none, nor do the core bits)
  applies: { devices: ['net'], transports: ['mmio'] },
  run(ctx) {
    // the checking device: the NIC with every feature it supports (MQ included, 2 pairs), minus a generated set of prerequisites
    checkProperty(ctx, ['features.driver.2'], [fc.subarray(NET_PREREQUISITES, { minLength: 1 })], (removed) => {
      const drop = featureSet(...removed);
      const written: bigint[] = [];
      const dut = newDeviceWith(ctx, (m) => ({
        offeredFeatures: m.offeredFeatures & ~drop,
        acceptFeatures: (f: bigint) => {
          written.push(f); // what the driver wrote to the driver-features register, seen at FEATURES_OK
          return m.acceptFeatures(f);
        },
      }), { params: { maxPairs: 2 } });
      const mon = monitor(dut);
      try {
        const s = startRef(ctx, dut);
        s.io(1, ctx.seed);
        s.shutdown();
      } catch {
        // a driver that accepted an inconsistent set is refused FEATURES_OK; judged below from what it wrote
      }
      mon.detach();
      expectThat(written.length > 0, ['features.driver.2'], 'the driver never set FEATURES_OK', 'a FEATURES_OK write', 'none');
      for (const w of written) {
        const broken = brokenDependencies(DeviceType.NET, w);
        expectThat(broken.length === 0, ['features.driver.2'], `the driver accepted features without their prerequisites (offer lacked ${removed.join(',')})`, 'every accepted feature with its prerequisites', `0x${w.toString(16)}: ${broken.join('; ')}`);
      }
      mon.assertClean({ side: 'driver' });
    });
  },
});
