/**
 * Hand-built requests for device-side checks on raw rings: one valid request per device kind,
 * laid out over any split of descriptors the check asks for.
 */
import type { GuestPlatform } from '../../spec-refs/platform/platform.ts';
import { Blk, DeviceType } from '../../spec-refs/abi/virtio.ts';
import { CheckSkip } from '../check.ts';

export interface Seg {
  addr: number;
  len: number;
  write?: boolean;
}

export interface RawRequest {
  /** The request's buffers in order: device-readable first. */
  readonly segs: Seg[];
  /** Bytes the device may write. */
  readonly writable: number;
  /** Whether the completion (used.len and written bytes) is right; a reason when not. */
  verify(usedLen: number): string | undefined;
}

const NO_REQUEST_QUEUE = 'virtio-net has no request/response queue 0 for raw-ring requests (receiveq1 completes when a frame arrives); its rings are judged by the net.* and under-load checks';

/** Call first in a check that posts validRequest()s on queue 0: skips device kinds without such a queue (virtio-net). Checks that can use another queue take validRequestOnQueue / requestQueue instead (virtio-net: a frame on transmitq1). */
export function needsRequestQueue(ctx: { readonly device: string }): void {
  if (ctx.device === 'net') throw new CheckSkip(NO_REQUEST_QUEUE);
}

/**
 * A valid request for the device type: blk = IN of `sectors` sectors at sector 0 (header,
 * data, status); others (echo) = `bytes` readable then as many writable.
 * `cuts` splits the byte stream into more descriptors at those offsets (framing independence).
 */
export function validRequest(p: GuestPlatform, deviceType: number, cuts: readonly number[] = []): RawRequest {
  if (deviceType === DeviceType.NET) throw new CheckSkip(NO_REQUEST_QUEUE);
  if (deviceType === DeviceType.BLOCK) {
    const total = 16 + 512 + 1;
    const buf = p.dma.alloc(total + 64, 16);
    p.mem.fill(buf, total, 0);
    p.mem.write32(buf, Blk.T_IN);
    p.mem.write8(buf + 16 + 512, 0xff);
    const segs = split(buf, [
      [0, 16, false],
      [16, 512, true],
      [528, 1, true],
    ], cuts);
    return {
      segs,
      writable: 513,
      verify(usedLen) {
        const st = p.mem.read8(buf + 528);
        if (st !== Blk.S_OK) return `status byte ${st}, expected VIRTIO_BLK_S_OK`;
        if (usedLen < 1 || usedLen > 513) return `used.len ${usedLen} outside 1..513`;
        return undefined;
      },
    };
  }
  const n = 64;
  const buf = p.dma.alloc(2 * n, 16);
  for (let i = 0; i < n; i++) p.mem.write8(buf + i, (i * 7 + 1) & 0xff);
  const segs = split(buf, [
    [0, n, false],
    [n, n, true],
  ], cuts);
  return {
    segs,
    writable: n,
    verify(usedLen) {
      if (usedLen !== n) return `used.len ${usedLen}, expected ${n}`;
      for (let i = 0; i < n; i++) if (p.mem.read8(buf + n + i) !== ((i * 7 + 1) & 0xff)) return `echoed byte ${i} wrong`;
      return undefined;
    },
  };
}

/** The queue a device kind takes raw-ring requests on: virtio-net's transmitq1 (1), else queue 0. */
export function requestQueue(deviceType: number): number {
  return deviceType === DeviceType.NET ? 1 : 0;
}

/**
 * A valid request for the queue `requestQueue(deviceType)` names: for virtio-net a frame to
 * transmit (a zeroed virtio_net_hdr of `netHdrLen` bytes: 12 with VIRTIO_F_VERSION_1 or
 * MRG_RXBUF, 10 without; then a 60-byte Ethernet frame to the broadcast address, EtherType 0x88b5,
 * local experimental), all device-readable, which the device uses without writing anything
 * (used.len 0: nothing was device-writable, split.device.16); other kinds as validRequest.
 * Where QEMU loops the NIC back (tools/qemu), the frame returns to the receive queue, which these
 * checks leave unconfigured, and is dropped there.
 */
export function validRequestOnQueue(p: GuestPlatform, deviceType: number, cuts: readonly number[] = [], netHdrLen = 12): RawRequest {
  if (deviceType !== DeviceType.NET) return validRequest(p, deviceType, cuts);
  const frame = 60;
  const total = netHdrLen + frame;
  const buf = p.dma.alloc(total + 16, 16);
  p.mem.fill(buf, netHdrLen, 0);
  const f = buf + netHdrLen;
  for (let i = 0; i < 6; i++) p.mem.write8(f + i, 0xff);
  const src = [0x52, 0x54, 0x00, 0x70, 0x76, 0x6b];
  src.forEach((b, i) => p.mem.write8(f + 6 + i, b));
  p.mem.write8(f + 12, 0x88);
  p.mem.write8(f + 13, 0xb5);
  for (let i = 14; i < frame; i++) p.mem.write8(f + i, (i * 13 + 5) & 0xff);
  return {
    segs: split(buf, [[0, total, false]], cuts),
    writable: 0,
    verify(usedLen) {
      if (usedLen !== 0) return `used.len ${usedLen} for a transmit buffer with nothing device-writable, expected 0`;
      return undefined;
    },
  };
}

/** Cut parts [offset, len, writable] of one buffer further at the given stream offsets. */
function split(base: number, parts: readonly [number, number, boolean][], cuts: readonly number[]): Seg[] {
  const out: Seg[] = [];
  for (const [off, len, write] of parts) {
    let start = off;
    const inner = [...new Set(cuts)].filter((c) => c > off && c < off + len).sort((a, b) => a - b);
    for (const c of [...inner, off + len]) {
      out.push({ addr: base + start, len: c - start, write });
      start = c;
    }
  }
  return out;
}
