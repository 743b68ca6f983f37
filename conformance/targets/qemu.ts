/**
 * The `qemu` target: QEMU's own virtio device models, driven over qtest (docs/qemu.md).
 *
 * Each newDevice starts a fresh QEMU (about 0.1 s) for the configuration that matches the
 * device, transport and ring, and returns its QtestPlatform; dispose kills it. By default the
 * grid maps to DEFAULT_GRID (conformance/qemu/configs.ts); with a configuration pinned
 * (configureQemuTarget({ config }), `--qemu-config NAME`) every check runs on that one.
 *
 * Driver-side checks do not run here: QEMU is the device under test.
 */
import type { RingLayout, TransportName } from '../check.ts';
import { CheckSkip } from '../check.ts';
import { registerTarget, type DeviceOptions, type DeviceUnderTest, type Target } from '../target.ts';
import { CONFIGS, DEFAULT_GRID, MICROVM, RAM_SIZE, devicesOf, findConfig, ringsOf, transportsOf, type QemuConfig } from '../qemu/configs.ts';
import { launchQemuSync, type QemuSession } from '../qemu/launcher.ts';
import { UsageError } from '../../spec-refs/errors.ts';
import { F, Mmio } from '../../spec-refs/abi/virtio.ts';
import { QEMU_XFAIL, xfailFor } from './qemu-xfail.ts';

export interface QemuTargetOptions {
  /** QEMU binary (default $PVKIT_QEMU, else qemu-system-x86_64 on PATH). */
  readonly qemu?: string;
  /** Pin every check to this built-in configuration. */
  readonly config?: string;
  /** Extra arguments for QEMU's command line. */
  readonly extraArgs?: readonly string[];
  /** Target time = host time / timeScale (default 20, $PVKIT_QEMU_TIME_SCALE): see QtestPlatformOptions.timeScale. */
  readonly timeScale?: number;
}

export const DEFAULT_TIME_SCALE = 20;

let options: QemuTargetOptions = fromEnv();
const featureCache = new Map<string, bigint>();

function fromEnv(): QemuTargetOptions {
  const e = process.env;
  return {
    ...(e['PVKIT_QEMU'] ? { qemu: e['PVKIT_QEMU'] } : {}),
    ...(e['PVKIT_QEMU_CONFIG'] ? { config: e['PVKIT_QEMU_CONFIG'] } : {}),
    ...(e['PVKIT_QEMU_ARGS'] ? { extraArgs: e['PVKIT_QEMU_ARGS'].split(/\s+/).filter(Boolean) } : {}),
    ...(Number(e['PVKIT_QEMU_TIME_SCALE']) > 0 ? { timeScale: Number(e['PVKIT_QEMU_TIME_SCALE']) } : {}),
  };
}

export function configureQemuTarget(o: QemuTargetOptions): void {
  if (o.config !== undefined && !findConfig(o.config)) throw new UsageError('usage.qemu_config', `unknown QEMU configuration ${JSON.stringify(o.config)} (pvkit qemu list shows them)`);
  options = { ...fromEnv(), ...o };
}

export function qemuTargetOptions(): QemuTargetOptions {
  return options;
}

function pinned(): QemuConfig | undefined {
  return options.config !== undefined ? findConfig(options.config) : undefined;
}

/** The configuration a (device, transport, ring) runs on, or undefined. */
export function configFor(device: string, transport: TransportName, ring: RingLayout = 'split'): QemuConfig | undefined {
  const p = pinned();
  if (p) return devicesOf(p).includes(device as never) && transportsOf(p).includes(transport) && ringsOf(p).includes(ring) ? p : undefined;
  const name = DEFAULT_GRID[`${device}/${transport}/${ring}`];
  return name !== undefined ? findConfig(name) : undefined;
}

function gridConfigs(): QemuConfig[] {
  const p = pinned();
  if (p) return [p];
  return [...new Set(Object.values(DEFAULT_GRID))].map((n) => findConfig(n)!);
}

/** A configuration with the device options QEMU can honour applied as device properties. */
function tailor(cfg: QemuConfig, opts: DeviceOptions): { cfg: QemuConfig; diskBytes?: number; readOnly: boolean } {
  const extra: string[] = [];
  if (opts.queueMaxSize !== undefined) {
    const n = opts.queueMaxSize;
    const pow2 = n > 0 && (n & (n - 1)) === 0;
    const blk = cfg.devices.some((d) => d.kind === 'blk');
    // QEMU 7.2: virtio-blk queue-size is a power of two in 2..1024 (VIRTQUEUE_MAX_SIZE); virtio-net rx/tx_queue_size 256..1024
    if (blk && pow2 && n >= 2 && n <= 1024) extra.push(`queue-size=${n}`);
    else if (!blk && pow2 && n >= 256 && n <= 1024) extra.push(`rx_queue_size=${n},tx_queue_size=${n}`);
    else throw new CheckSkip(`QEMU cannot offer queue size ${n} on ${cfg.name}`);
  }
  if (opts.offerMask !== undefined) {
    const m = opts.offerMask;
    if ((m & (1n << BigInt(F.EVENT_IDX))) === 0n) extra.push('event_idx=off');
    if ((m & (1n << BigInt(F.INDIRECT_DESC))) === 0n) extra.push('indirect_desc=off');
  }
  const params = opts.params ?? {};
  const cap = params['capacitySectors'];
  const readOnly = params['readOnly'] === true;
  const devices = cfg.devices.map((d) => ({ ...d, props: [d.props, ...extra].filter(Boolean).join(',') }));
  return { cfg: { ...cfg, devices }, ...(typeof cap === 'number' && cap > 0 ? { diskBytes: cap * 512 } : {}), readOnly };
}

/** Features a configuration's device offers, read over virtio-mmio version 2 from a microvm twin (same device properties). */
export function probeFeatures(cfg: QemuConfig): bigint {
  const hit = featureCache.get(cfg.name);
  if (hit !== undefined) return hit;
  const pciOnly = /^(disable-legacy|disable-modern|vectors|romfile|addr)=/;
  const twin: QemuConfig = {
    name: `${cfg.name}-features`,
    description: 'feature probe',
    machine: 'microvm',
    mmioVersion: 2,
    devices: cfg.devices.map((d) => ({ kind: d.kind, props: (d.props ?? '').split(',').filter((p) => p && !pciOnly.test(p)).join(',') })),
  };
  const s = launchQemuSync(twin, options.qemu !== undefined ? { qemu: options.qemu } : {});
  try {
    const p = s.platform;
    const dev = p.devices()[0];
    if (!dev) throw new UsageError('qemu.probe', `no virtio-mmio device in ${twin.name}`);
    let f = 0n;
    for (let w = 0; w < 4; w++) {
      p.mmioWrite(dev.base + Mmio.DEVICE_FEATURES_SEL, 4, w);
      f |= BigInt(p.mmioRead(dev.base + Mmio.DEVICE_FEATURES, 4) >>> 0) << BigInt(32 * w);
    }
    featureCache.set(cfg.name, f);
    return f;
  } finally {
    void s.close();
  }
}

export const qemuTarget: Target = {
  name: 'qemu',
  description: "QEMU's virtio device models (qemu-system-x86_64, q35 and microvm) over the qtest protocol",
  get devices() {
    return [...new Set(gridConfigs().flatMap(devicesOf))];
  },
  get transports() {
    return [...new Set(gridConfigs().flatMap(transportsOf))] as TransportName[];
  },
  get rings() {
    return [...new Set(gridConfigs().flatMap(ringsOf))];
  },
  /** The union over the configurations of the grid (or the pinned one); the runner uses xfailFor per result. */
  get xfail() {
    return Object.assign({}, ...gridConfigs().map((c) => xfailFor(c.name))) as Record<string, string>;
  },
  xfailFor(cfg: { readonly device: string; readonly transport: TransportName; readonly ring: RingLayout }) {
    const c = configFor(cfg.device, cfg.transport, cfg.ring);
    return c ? xfailFor(c.name) : {};
  },
  runsDriverChecks: false,
  offeredFeatures(device: string): bigint | undefined {
    // the union over the configurations this device runs on (packed=on ones make packed applicable)
    let f = 0n;
    let any = false;
    for (const c of gridConfigs()) {
      if (!devicesOf(c).includes(device as never)) continue;
      f |= probeFeatures(c);
      any = true;
    }
    return any ? f : undefined;
  },
  newDevice(device: string, transport: TransportName, opts: DeviceOptions = {}, ring: RingLayout = 'split'): DeviceUnderTest {
    const base = configFor(device, transport, ring);
    if (!base) throw new CheckSkip(`no QEMU configuration for ${device} over ${transport} with ${ring} rings${pinned() ? ` in ${pinned()!.name}` : ''}`);
    const t = tailor(base, opts);
    const s: QemuSession = launchQemuSync(t.readOnly ? { ...t.cfg, readOnlyDisks: true } : t.cfg, {
      ...(options.qemu !== undefined ? { qemu: options.qemu } : {}),
      extraArgs: options.extraArgs ?? [],
      timeScale: options.timeScale ?? DEFAULT_TIME_SCALE,
      ...(t.diskBytes !== undefined ? { diskBytes: t.diskBytes } : {}),
    });
    const p = s.platform;
    const d0 = base.devices[0]!;
    const location: DeviceUnderTest['location'] =
      base.machine === 'q35' ? { kind: 'pci', bus: 0, dev: d0.slot ?? 0, fn: 0, name: `${base.name} 00:${(d0.slot ?? 0).toString(16).padStart(2, '0')}.0` } : (p.devices()[0] ?? { kind: 'virtio-mmio', base: MICROVM.MMIO_BASE, size: MICROVM.MMIO_STRIDE, vector: 0x20 + MICROVM.GSI_BASE, name: 'absent' });
    return {
      platform: p,
      transport,
      location,
      ram: [{ base: 0, size: RAM_SIZE }],
      dmaOutsideRam: 'discard',
      internals: {
        qemu: s,
        config: base.name,
        // host-side configuration changes through QMP (what the white-box model offers on sim)
        ...(base.devices.some((d) => d.kind === 'blk')
          ? {
              model: {
                resize(bytes: number): void {
                  p.sync();
                  s.qmp.execute('block_resize', { device: 'disk0', size: bytes });
                },
              },
            }
          : {}),
      },
      dispose() {
        void s.close();
      },
    };
  },
};

export { QEMU_XFAIL, CONFIGS };
registerTarget(qemuTarget);
