/**
 * Initialisation one status bit at a time (identify, reset, ACKNOWLEDGE, DRIVER, features,
 * FEATURES_OK, queue set-up, DRIVER_OK), each step with the statements it honours; and the
 * status and feature helpers: status(), features(), want(), refuse(), feature names to bits.
 */
import { PciTransport, identifyVirtioPci } from '../../../drivers/transport/pci.ts';
import { SplitVirtqueue } from '../../../drivers/core/split.ts';
import { PackedVirtqueue } from '../../../drivers/core/packed.ts';
import { UsageError } from '../../../spec-refs/errors.ts';
import { BlkF, F, Mmio, NetF, Status, bit, featureNames, hasFeature, statusNames } from '../../../spec-refs/abi/virtio.ts';
import { RingWatcher } from '../ring-view.ts';
import { SessionMachine, type DeviceKind, type SessionOptions, type Token } from './machine.ts';
import { View, hex } from './view.ts';

interface InitStep {
  readonly name: string;
  readonly statements: readonly string[];
  run(): string;
}

function featureTable(device: DeviceKind): Record<string, number> {
  return device === 'blk' ? BlkF : NetF;
}

/** Resolve feature names ('EVENT_IDX', 'VIRTIO_F_EVENT_IDX', 'FLUSH', 'VIRTIO_BLK_F_FLUSH') or bit numbers. */
export function featureBit(name: string | number, device: DeviceKind): number {
  if (typeof name === 'number') return name;
  const n = name.toUpperCase().replace(/^VIRTIO_(F_|BLK_F_|NET_F_)/, '');
  const core = (F as Record<string, number>)[n];
  if (core !== undefined) return core;
  const dev = featureTable(device)[n];
  if (dev !== undefined) return dev;
  throw new UsageError('usage.repl.feature', `unknown feature name ${name}`, { expected: `one of ${[...Object.keys(F), ...Object.keys(featureTable(device))].join(', ')}` });
}

/** The session's initialisation steps and its status and feature helpers. */
export class InitSession extends SessionMachine {
  protected stepIndex = 0;
  protected steps: InitStep[];

  constructor(opts: SessionOptions = {}) {
    super(opts);
    this.steps = this.initSteps();
  }

  private initSteps(): InitStep[] {
    const t = this.transport;
    const legacy = t.legacy;
    const p = this.machine.platform;
    const base = this.machine.platform.devices()[0]?.base ?? 0;
    const identify: InitStep =
      t instanceof PciTransport
        ? {
            name: 'identify the device: PCI vendor and device id (virtio-pci; found by enumerating the bus)',
            statements: ['pci.driver.1', 'pci.driver.2', 'pci.driver.3'],
            run: () => {
              const i = t.info;
              const id = identifyVirtioPci(i);
              return `  ${i.bus}:${i.dev}.${i.fn} vendor ${hex(i.vendorId)}, device ${hex(i.deviceId)}, subsystem ${hex(i.subsystemId)}: ${id ? `${id.transitional ? 'transitional' : 'modern'} virtio device type ${id.deviceType}${id.deviceType === 2 ? ' (block)' : ''}` : 'not virtio'}; driven through its ${t.legacy ? 'legacy (I/O BAR)' : 'modern (capabilities)'} interface`;
            },
          }
        : {
        name: 'identify the device: MagicValue, Version, DeviceID (virtio-mmio)',
        statements: ['mmio.driver.24', 'mmio.driver.25'],
        run: () => {
          const magic = p.mmioRead(base + Mmio.MAGIC_VALUE, 4) >>> 0;
          const version = p.mmioRead(base + Mmio.VERSION, 4) >>> 0;
          const id = p.mmioRead(base + Mmio.DEVICE_ID, 4) >>> 0;
          const ok = magic === Mmio.MAGIC && (version === 1 || version === 2);
          return `  magic ${hex(magic)}${magic === Mmio.MAGIC ? ' ("virt")' : ' (WRONG)'}, version ${version}${version === 2 ? ' (modern)' : version === 1 ? ' (legacy)' : ' (unknown)'}, device id ${id}${id === 2 ? ' (block)' : id === 1 ? ' (network)' : ''}${ok ? '' : ': not a device to drive'}`;
        },
      };
    const steps: InitStep[] = [
      identify,
      {
        name: 'reset the device (write 0 to status, wait until it reads 0)',
        statements: ['status_init.driver.6', 'status_init.driver.5', 'status_init.device.4'],
        run: () => {
          this.dropQueues();
          t.reset();
          return `  status now ${statusNames(t.getStatus())}`;
        },
      },
      {
        name: 'set ACKNOWLEDGE: the guest has noticed the device',
        statements: ['status_init.driver.6', 'status_init.driver.1'],
        run: () => {
          t.setStatus(Status.ACKNOWLEDGE);
          return `  status now ${statusNames(t.getStatus())}`;
        },
      },
      {
        name: 'set DRIVER: the guest knows how to drive it',
        statements: ['status_init.driver.6', 'status_init.driver.1'],
        run: () => {
          t.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
          return `  status now ${statusNames(t.getStatus())}`;
        },
      },
      {
        name: 'read the device features and write the subset the driver understands',
        statements: ['status_init.driver.6', 'features.driver.1', 'features.driver.5', 'features.driver.9'],
        run: () => {
          this.offered = t.deviceFeatures();
          let chosen = this.wanted & this.offered;
          if (legacy) chosen &= 0xffff_ffffn;
          else chosen |= bit(F.VERSION_1);
          t.setDriverFeatures(chosen);
          this.chosen = chosen;
          return this.featureText();
        },
      },
    ];
    if (!legacy) {
      steps.push({
        name: 'set FEATURES_OK, then re-read status: the device says yes by keeping the bit',
        statements: ['status_init.driver.6', 'status_init.driver.9', 'features.device.3'],
        run: () => {
          t.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
          const back = t.getStatus();
          return back & Status.FEATURES_OK ? `  status now ${statusNames(back)}: features accepted` : `  status now ${statusNames(back)}: the device REFUSED these features (FEATURES_OK stayed clear); reset() and choose again`;
        },
      });
    }
    steps.push(
      {
        name: this.device === 'net' ? 'set up queues 0 (receiveq1) and 1 (transmitq1): size, ring addresses, then enable each' : 'set up queue 0: size, ring addresses, then enable it',
        statements: ['status_init.driver.6', ...(t instanceof PciTransport ? [] : ['mmio.driver.14']), this.ringKind === 'packed' ? 'packed.driver.1' : 'split.driver.1', ...(this.ringKind === 'packed' ? [] : ['split.driver.19'])],
        run: () => (this.device === 'net' ? [0, 1] : [0]).map((i) => this.setupQueue(i)).join('\n'),
      },
      {
        name: 'set DRIVER_OK: the device is live',
        statements: ['status_init.driver.6', 'status_init.driver.12'],
        run: () => {
          const st = legacy ? Status.ACKNOWLEDGE | Status.DRIVER : Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK;
          t.setStatus(st | Status.DRIVER_OK);
          return `  status now ${statusNames(t.getStatus())}`;
        },
      },
    );
    return steps;
  }

  private setupQueue(index: number): string {
    const t = this.transport;
    const max = t.queueMaxSize(index);
    if (max === 0) return `  the device has no queue ${index}`;
    const packed = hasFeature(this.chosen, F.RING_PACKED);
    const eventIdx = hasFeature(this.chosen, F.EVENT_IDX);
    const indirect = hasFeature(this.chosen, F.INDIRECT_DESC);
    let size = Math.min(max, this.queueSize);
    if (!packed) while (size & (size - 1)) size &= size - 1; // split rings: a power of two
    if (t.kind === 'pci-legacy') size = max; // legacy virtio-pci has no queue size register the driver may write
    const p = this.machine.platform;
    const vq = packed
      ? new PackedVirtqueue<Token>(p.mem, p.dma, index, size, (i, data) => t.notify(i, data), { eventIdx, indirect, indirectThreshold: Infinity })
      : new SplitVirtqueue<Token>(p.mem, p.dma, { index, size, eventIdx, indirect, indirectThreshold: Infinity, legacyAlign: t.legacy ? t.legacyAlign : undefined, notify: () => t.notify(index) });
    t.setupQueue(index, vq.addresses);
    this.queues.set(index, vq);
    this.watchers.set(index, new RingWatcher(p.mem, packed ? 'packed' : 'split', vq.addresses, () => this.machine.scheduler.now));
    const a = vq.addresses;
    return `  queue ${index}: device max ${max}, using ${size} (${packed ? 'packed' : 'split'}); ${packed ? 'descriptor ring' : 'descriptor table'} ${hex(a.desc)}, ${packed ? 'driver event suppression' : 'available ring'} ${hex(a.driver)}, ${packed ? 'device event suppression' : 'used ring'} ${hex(a.device)}`;
  }

  protected dropQueues(): void {
    this.unpublished.clear();
    for (const q of this.queues.values()) q.destroy();
    this.queues.clear();
    this.watchers.clear();
    this.blk = undefined;
    this.net = undefined;
  }

  /** Do the next initialisation step (one status bit at a time). */
  step(): View {
    if (this.stepIndex >= this.steps.length) return new View('initialisation is complete (status ' + statusNames(this.transport.getStatus()) + '); reset() starts again');
    const i = this.stepIndex++;
    const s = this.steps[i]!;
    return this.report(`step ${i + 1}/${this.steps.length}: ${s.name}  [${s.statements.join(', ')}]`, () => s.run());
  }

  /** Do every remaining initialisation step. */
  init(): View {
    const parts: string[] = [];
    while (this.stepIndex < this.steps.length) parts.push(this.step().text);
    return new View(parts.length ? parts.join('\n') : 'initialisation is already complete; reset() starts again');
  }

  /** Reset the device and start initialisation again (queues are dropped: status_init.driver.14). */
  reset(): View {
    this.stepIndex = 0;
    this.steps = this.initSteps();
    return this.report('reset: status 0 written; initialisation starts again at step 1', () => {
      this.dropQueues();
      this.transport.reset();
      return '';
    });
  }

  /** Device status, as both sides see it. */
  status(): View {
    const st = this.core.status;
    const lines = [`device status ${hex(st)} = ${statusNames(st)}`, `  next init step: ${this.stepIndex < this.steps.length ? `${this.stepIndex + 1}/${this.steps.length} ${this.steps[this.stepIndex]!.name}` : 'none (done)'}`];
    if (this.core.needsResetReason) lines.push(`  DEVICE_NEEDS_RESET because: ${this.core.needsResetReason.message}`);
    return new View(lines.join('\n'), { status: st, names: statusNames(st) });
  }

  private featureText(): string {
    const names = featureTable(this.device);
    const fmt = (s: bigint) => featureNames(s, names).join(' ') || '(none)';
    const refused = this.offered & ~this.chosen;
    const missing = this.wanted & ~this.offered;
    return [`  offered: ${fmt(this.offered)}`, `  chosen:  ${fmt(this.chosen)}`, `  refused (offered, not taken): ${fmt(refused)}`, `  wanted but not offered: ${fmt(missing)}`].join('\n');
  }

  /** Features offered, chosen and refused, with their names. */
  features(): View {
    if (this.offered === 0n) this.offered = this.core.deviceFeatures;
    return new View(`features (${this.device}):\n${this.featureText()}`, { offered: this.offered, chosen: this.chosen, wanted: this.wanted });
  }

  /** Add features to what the driver wants (before the feature step), by name or bit number. */
  want(...names: (string | number)[]): View {
    for (const n of names) this.wanted |= bit(featureBit(n, this.device));
    return this.features();
  }

  /** Remove features from what the driver wants (before the feature step). */
  refuse(...names: (string | number)[]): View {
    for (const n of names) this.wanted &= ~bit(featureBit(n, this.device));
    return this.features();
  }
}
