/**
 * A hand-written (possibly hostile) driver for virtio-net device tests: it programs the core
 * directly and builds split-ring chains byte by byte on the receive, transmit and control
 * queues, so tests can hand the device any header, frame or command.
 */
import { Machine } from '../machine/machine.ts';
import { attachVirtioMmio, type AttachedMmio } from '../virtio/mmio.ts';
import { RawSplitRing } from '../virtio/testing/raw-ring.ts';
import { F, NetF, Status, Split, bit, featureWord } from '../../spec-refs/abi/virtio.ts';
import { NetHdr, netHdrSize, pruneNetFeatures } from '../../spec-refs/abi/net.ts';
import { VirtioNetDevice, type NetDeviceOptions } from './device.ts';
import type { WireFrame } from './wire.ts';

export interface RawNetOptions {
  features?: bigint;
  device?: NetDeviceOptions;
  size?: number;
}

/** Buffers the raw driver hands out live in this area, one fresh slice per call. */
const HEAP = 0x10_0000;

export class RawNet {
  readonly m: Machine;
  readonly dev: VirtioNetDevice;
  readonly mmio: AttachedMmio;
  readonly rings: RawSplitRing[] = [];
  readonly hdrLen: number;
  readonly features: bigint;
  /** What the device put on the wire. */
  readonly sent: WireFrame[] = [];
  private heap = HEAP;
  private nextDesc: number[] = [];

  constructor(o: RawNetOptions = {}) {
    this.m = new Machine({ ram: [{ base: 0, size: 4 << 20, name: 'ram' }] });
    this.dev = new VirtioNetDevice({ maxPairs: 1, ...o.device });
    this.dev.connect({ send: (wf) => this.sent.push(wf) });
    this.mmio = attachVirtioMmio(this.m, this.dev, { notifyLatencyNs: 100 });
    const core = this.mmio.core;
    // RING_PACKED / RING_RESET only when the core carries them; EVENT_IDX off: the raw driver never writes used_event.
    const feats = pruneNetFeatures(((o.features ?? this.dev.offeredFeatures) & core.deviceFeatures & ~bit(F.RING_PACKED) & ~bit(F.EVENT_IDX) & ~bit(F.RING_RESET)) | bit(F.VERSION_1));
    this.features = feats;
    this.hdrLen = netHdrSize(feats);
    core.writeStatus(Status.ACKNOWLEDGE);
    core.writeStatus(Status.ACKNOWLEDGE | Status.DRIVER);
    for (let w = 0; w < 4; w++) core.writeDriverFeatureWord(w, featureWord(feats, w));
    core.writeStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
    const size = o.size ?? 16;
    for (let q = 0; q < this.dev.numQueues; q++) {
      const ring = new RawSplitRing(this.m.mem, 0x10000 + q * 0x4000, size);
      this.m.mem.fill(ring.desc, ring.end - ring.desc, 0);
      core.setQueueSize(q, size);
      core.setQueueArea(q, 'desc', ring.desc);
      core.setQueueArea(q, 'driver', ring.avail);
      core.setQueueArea(q, 'device', ring.used);
      core.setQueueReady(q, true);
      this.rings.push(ring);
      this.nextDesc.push(0);
    }
    core.writeStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
  }

  get status(): number {
    return this.mmio.core.status;
  }

  get needsReset(): boolean {
    return (this.status & Status.DEVICE_NEEDS_RESET) !== 0;
  }

  get ctrlIndex(): number {
    return (this.features & bit(NetF.MQ)) !== 0n ? 2 * this.dev.maxPairs : 2;
  }

  alloc(len: number): number {
    const a = this.heap;
    this.heap += Math.ceil(Math.max(len, 1) / 16) * 16;
    if (this.heap > 3 << 20) this.heap = HEAP;
    return a;
  }

  /** Put bytes in fresh guest memory. */
  put(data: Uint8Array): number {
    const a = this.alloc(data.length);
    this.m.mem.writeBytes(a, data);
    return a;
  }

  /** Post a chain of (readable...) then (writable...) buffers on queue `q`; returns its head. */
  post(q: number, readable: { addr: number; len: number }[], writable: { addr: number; len: number }[]): number {
    const ring = this.rings[q]!;
    const parts = [...readable.map((r) => ({ ...r, w: false })), ...writable.map((r) => ({ ...r, w: true }))];
    const head = this.nextDesc[q]!;
    for (let i = 0; i < parts.length; i++) {
      const d = (head + i) % ring.size;
      const last = i === parts.length - 1;
      ring.setDesc(d, parts[i]!.addr, parts[i]!.len, (parts[i]!.w ? Split.DESC_F_WRITE : 0) | (last ? 0 : Split.DESC_F_NEXT), (d + 1) % ring.size);
    }
    this.nextDesc[q] = (head + parts.length) % ring.size;
    ring.publish(head);
    return head;
  }

  kick(q: number, runNs = 1_000_000): void {
    this.mmio.core.notify(q);
    this.m.scheduler.runFor(runNs);
  }

  /** Transmit a header + frame, the header split into `split` descriptors. */
  transmit(hdr: Uint8Array, frame: Uint8Array, split = 1): number {
    const bytes = new Uint8Array(hdr.length + frame.length);
    bytes.set(hdr);
    bytes.set(frame, hdr.length);
    const a = this.put(bytes);
    const cuts: { addr: number; len: number }[] = [];
    const step = Math.max(1, Math.floor(hdr.length / split));
    let off = 0;
    for (let i = 0; i < split - 1 && off + step < hdr.length; i++, off += step) cuts.push({ addr: a + off, len: step });
    cuts.push({ addr: a + off, len: bytes.length - off });
    const head = this.post(1, cuts, []);
    this.kick(1);
    return head;
  }

  /** Header bytes for transmit. */
  header(f: { flags?: number; gsoType?: number; hdrLen?: number; gsoSize?: number; csumStart?: number; csumOffset?: number; numBuffers?: number } = {}): Uint8Array {
    const h = new Uint8Array(this.hdrLen);
    const v = new DataView(h.buffer);
    h[NetHdr.OFF_FLAGS] = f.flags ?? 0;
    h[NetHdr.OFF_GSO_TYPE] = f.gsoType ?? 0;
    v.setUint16(NetHdr.OFF_HDR_LEN, f.hdrLen ?? 0, true);
    v.setUint16(NetHdr.OFF_GSO_SIZE, f.gsoSize ?? 0, true);
    v.setUint16(NetHdr.OFF_CSUM_START, f.csumStart ?? 0, true);
    v.setUint16(NetHdr.OFF_CSUM_OFFSET, f.csumOffset ?? 0, true);
    if (this.hdrLen >= 12) v.setUint16(NetHdr.OFF_NUM_BUFFERS, f.numBuffers ?? 0, true);
    return h;
  }

  /** Send a control command; returns the ack byte (0xff: untouched), the used length, and the result bytes. */
  ctrl(cls: number, cmd: number, data: Uint8Array = new Uint8Array(0), resultLen = 0): { ack: number; len: number; result: Uint8Array } {
    const q = this.ctrlIndex;
    const out = this.put(new Uint8Array([cls, cmd, ...data]));
    const inp = this.alloc(1 + resultLen);
    this.m.mem.fill(inp, 1 + resultLen, 0xff);
    const ring = this.rings[q]!;
    const before = ring.usedIdx;
    this.post(q, [{ addr: out, len: 2 + data.length }], [{ addr: inp, len: 1 + resultLen }]);
    this.kick(q);
    const len = ring.usedIdx !== before ? ring.usedElem(before).len : -1;
    return { ack: this.m.mem.read8(inp), len, result: this.m.mem.readBytes(inp + 1, resultLen) };
  }

  /** Post `n` receive buffers of `len` bytes on receive queue `q`; returns their addresses. */
  postRx(n: number, len: number, q = 0): number[] {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const a = this.alloc(len);
      this.m.mem.fill(a, len, 0xee);
      this.post(q, [], [{ addr: a, len }]);
      out.push(a);
    }
    this.kick(q);
    return out;
  }
}
