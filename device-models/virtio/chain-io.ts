import type { GuestMemoryAccess } from '../../spec-refs/platform/guest-memory.ts';
import type { Segment } from './model.ts';

/**
 * Copy helpers over a chain's segments, for device models. They treat a list of segments as one
 * byte stream and never write past its end.
 */

/** Copy up to `len` bytes starting `offset` bytes into `segs` into `out` (returns bytes copied). */
export function gatherInto(mem: GuestMemoryAccess & { subarray?(gpa: number, len: number): Uint8Array }, segs: readonly Segment[], offset: number, out: Uint8Array, len = out.length): number {
  let copied = 0;
  let skip = offset;
  for (const s of segs) {
    if (copied >= len) break;
    if (skip >= s.len) {
      skip -= s.len;
      continue;
    }
    const n = Math.min(s.len - skip, len - copied);
    if (mem.subarray) out.set(mem.subarray(s.addr + skip, n), copied);
    else out.set(mem.readBytes(s.addr + skip, n), copied);
    copied += n;
    skip = 0;
  }
  return copied;
}

export function gather(mem: GuestMemoryAccess, segs: readonly Segment[], offset: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  const n = gatherInto(mem, segs, offset, out, len);
  return n === len ? out : out.subarray(0, n);
}

/** Copy `data` into `segs` starting `offset` bytes in; returns bytes written (never past the segments). */
export function scatter(mem: GuestMemoryAccess, segs: readonly Segment[], offset: number, data: Uint8Array): number {
  let written = 0;
  let skip = offset;
  for (const s of segs) {
    if (written >= data.length) break;
    if (skip >= s.len) {
      skip -= s.len;
      continue;
    }
    const n = Math.min(s.len - skip, data.length - written);
    mem.writeBytes(s.addr + skip, data.subarray(written, written + n));
    written += n;
    skip = 0;
  }
  return written;
}

export function totalLen(segs: readonly Segment[]): number {
  let n = 0;
  for (const s of segs) n += s.len;
  return n;
}
