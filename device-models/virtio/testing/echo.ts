/**
 * A tiny virtio device model for tests of the shared core, transports and rings: each chain's
 * device-readable bytes are copied into its device-writable buffers ("echo"), and the chain is
 * completed with the number of bytes copied. Not a real device type: it exists so that the core
 * can be tested end to end without virtio-blk or virtio-net.
 */
import type { Chain, DeviceContext, DeviceHost, DeviceQueue, VirtioDeviceModel } from '../model.ts';
import { gatherInto, scatter } from '../chain-io.ts';
import { F, featureSet } from '../../../spec-refs/abi/virtio.ts';

/** Device id used by the echo model (outside the ids VIRTIO assigns to pvkit's devices). */
export const ECHO_DEVICE_ID = 0xec;
export const ECHO_CONFIG_SIZE = 16;
/** Config layout: u32 magic at 0, u32 counter at 4 (bumped by bumpConfig), u32 scratch at 8 (driver-writable), u32 at 12 = 0. */
export const ECHO_CONFIG_MAGIC = 0xec40ec40;

export interface EchoOptions {
  numQueues?: number;
  queueMaxSize?: number;
  features?: bigint;
  /** Complete each chain this long after taking it (0: at once, in the same notify). */
  completionDelayNs?: number;
  /** Complete the chains of one notify batch in reverse order (out-of-order completion). */
  reverse?: boolean;
  /** Refuse FEATURES_OK when the driver accepts this feature set (for negotiation tests). */
  refuse?: (features: bigint) => boolean;
}

export class EchoModel implements VirtioDeviceModel {
  readonly deviceType = ECHO_DEVICE_ID;
  readonly name = 'echo';
  readonly numQueues: number;
  readonly offeredFeatures: bigint;
  readonly configSize = ECHO_CONFIG_SIZE;
  private readonly maxSize: number;
  private readonly opts: EchoOptions;
  ctx: DeviceContext | null = null;
  counter = 0;
  scratch = 0;
  /** Chains completed so far, and their readable byte totals. */
  completed = 0;
  activations = 0;
  resets = 0;
  private buf = new Uint8Array(64 * 1024);

  constructor(opts: EchoOptions = {}) {
    this.opts = opts;
    this.numQueues = opts.numQueues ?? 2;
    this.maxSize = opts.queueMaxSize ?? 256;
    this.offeredFeatures = opts.features ?? featureSet(F.VERSION_1, F.INDIRECT_DESC, F.EVENT_IDX);
  }

  queueMaxSize(index: number): number {
    return index < this.numQueues ? this.maxSize : 0;
  }

  readConfig(offset: number, size: 1 | 2 | 4): number {
    const b = new DataView(new ArrayBuffer(16));
    b.setUint32(0, ECHO_CONFIG_MAGIC, true);
    b.setUint32(4, this.counter, true);
    b.setUint32(8, this.scratch, true);
    if (offset + size > 16) return 0;
    return size === 1 ? b.getUint8(offset) : size === 2 ? b.getUint16(offset, true) : b.getUint32(offset, true);
  }

  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void {
    if (offset === 8 && size === 4) this.scratch = value >>> 0;
  }

  acceptFeatures(features: bigint): boolean {
    return !(this.opts.refuse?.(features) ?? false);
  }

  activate(ctx: DeviceContext): void {
    this.ctx = ctx;
    this.activations++;
  }

  reset(): void {
    this.ctx = null;
    this.resets++;
  }

  /** RING_RESET: completions still pending for the queue are dropped (vq_reset.device.1). */
  queueReset(index: number): void {
    this.queueEpoch[index] = (this.queueEpoch[index] ?? 0) + 1;
  }
  private readonly queueEpoch: number[] = [];

  host: DeviceHost | null = null;

  bind(host: DeviceHost): void {
    this.host = host;
  }

  /** Change the config space (counter++) the way a device does on its own, before or after DRIVER_OK. */
  bumpConfig(): void {
    this.counter++;
    this.host?.configChanged();
  }

  private complete(q: DeviceQueue, c: Chain): void {
    const ctx = this.ctx!;
    const n = Math.min(c.readableLen, c.writableLen, this.buf.length);
    const got = gatherInto(ctx.mem, c.readable, 0, this.buf, n);
    const w = scatter(ctx.mem, c.writable, 0, this.buf.subarray(0, got));
    q.push(c, w);
    this.completed++;
  }

  queueNotify(index: number): void {
    const ctx = this.ctx;
    if (!ctx) return;
    const q = ctx.queue(index);
    const delay = this.opts.completionDelayNs ?? 0;
    for (let rounds = 0; rounds < 1 << 16; rounds++) {
      q.disableNotify();
      const batch: Chain[] = [];
      for (let c = q.pop(); c; c = q.pop()) batch.push(c);
      if (this.opts.reverse) batch.reverse();
      if (delay > 0) {
        const epoch = this.queueEpoch[index] ?? 0;
        for (const c of batch) {
          ctx.scheduler.schedule(delay, 'echo:complete', () => {
            if (this.ctx !== ctx || (this.queueEpoch[index] ?? 0) !== epoch) return;
            this.complete(q, c);
            q.flush();
          });
        }
      } else {
        for (const c of batch) this.complete(q, c);
        q.flush();
      }
      if (q.enableNotify()) break;
    }
  }
}
