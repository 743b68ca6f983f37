/**
 * Split virtqueues: the ring areas when a queue is enabled (also from a legacy page frame number),
 * the chains a driver makes available, the used entries a device adds, and the in-flight
 * snapshots that tell a driver rewriting a descriptor from a device writing one.
 *
 * Spec: Split Virtqueues (Virtqueues; The Virtqueue Descriptor Table, Indirect Descriptors,
 * The Virtqueue Available Ring, The Virtqueue Used Ring, In-order use of descriptors).
 * Statements: split.driver.1, .2, .4-12, .14, .19; split.device.3, .6, .16, .18, .20;
 * status_init.driver.13, status_init.device.1 (used entries), features.driver.13.
 * Notification suppression is judged in notifications.ts.
 */
import { Split, DeviceType } from '../../spec-refs/abi/virtio.ts';
import type { MonitorCore } from './core.ts';
import { queue, sameBytes, u64, type DevState, type InFlight, type QueueRegs, type RingState } from './state.ts';
import { packedEnabled } from './packed-ring.ts';
import { noteCoalescing } from './net-coalescing.ts';
import { config32 } from './pci-layout.ts';

/** A legacy queue address (page frame number): the split ring's three areas follow from it. */
export function legacyPfn(m: MonitorCore, d: DevState, index: number, pfn: number, page: number, align: number): void {
  const q = queue(d, index);
  if (pfn === 0) {
    q.ready = false;
    d.rings.delete(index);
    d.prings.delete(index);
    return;
  }
  if (align <= 0 || q.size === 0) return;
  q.desc = pfn * page;
  q.driver = q.desc + 16 * q.size;
  q.device = Math.ceil((q.driver + 6 + 2 * q.size) / align) * align;
  if (!q.ready) queueEnabled(m, d, index, q);
  q.ready = true;
}

export function queueEnabled(m: MonitorCore, d: DevState, index: number, q: QueueRegs): void {
  if (d.version !== 1 && !d.negotiated.packed) {
    if (q.desc % Split.DESC_ALIGN || q.driver % Split.AVAIL_ALIGN || q.device % Split.USED_ALIGN) {
      m.violate(d, 'split.driver.1', 'driver', `queue ${index} ring areas misaligned`, 'desc 16, avail 2, used 4 byte aligned', `desc 0x${q.desc.toString(16)} avail 0x${q.driver.toString(16)} used 0x${q.device.toString(16)}`);
    }
  }
  if (d.negotiated.packed) {
    packedEnabled(m, d, index, q);
    return;
  }
  if (!m.ringsOn || q.size === 0) return;
  const mem = m.machine.mem;
  if (!mem.isRam(q.desc, 16 * q.size) || !mem.isRam(q.driver, 6 + 2 * q.size) || !mem.isRam(q.device, 6 + 8 * q.size)) return;
  try {
    const usedFlags = mem.read16(q.device);
    if (usedFlags !== 0) m.violate(d, 'split.driver.19', 'driver', `queue ${index}: used ring flags not 0 when the queue was enabled`, '0', String(usedFlags));
    const lastAvail = mem.read16(q.driver + 2);
    d.coal.vq.delete(index); // net.device.109 / .110: a re-enabled queue coalesces with its group's values again
    d.rings.set(index, { index, size: q.size, desc: q.desc, avail: q.driver, used: q.device, lastAvail, lastUsed: mem.read16(q.device + 2), notifiedAvail: lastAvail, inflight: new Map(), inflightCount: 0, owed: null, broken: false });
  } catch {
    /* not monitorable */
  }
}

/** Ring monitoring must never break the run it watches: a ring it cannot read is dropped. */
export function guard(r: RingState, fn: () => void): void {
  try {
    fn();
  } catch {
    r.broken = true;
  }
}

export function syncAvail(m: MonitorCore, d: DevState, r: RingState): void {
  const mem = m.machine.mem;
  const idx = mem.read16(r.avail + 2);
  const flags = mem.read16(r.avail);
  if (d.negotiated.eventIdx ? flags !== 0 : flags > 1) {
    m.violate(d, d.negotiated.eventIdx ? 'split.driver.14' : 'split.driver.12', 'driver', `queue ${r.index}: available ring flags ${flags}`, d.negotiated.eventIdx ? '0' : '0 or 1', String(flags));
  }
  const n = (idx - r.lastAvail) & 0xffff;
  if (n === 0) return;
  if (n > 0x8000) {
    m.violate(d, 'split.driver.11', 'driver', `queue ${r.index}: available idx went backwards`, `>= ${r.lastAvail}`, String(idx));
    r.lastAvail = idx;
    r.notifiedAvail = idx;
    return;
  }
  for (let k = 0; k < n && k < r.size; k++) {
    const head = mem.read16(r.avail + 4 + 2 * ((r.lastAvail + k) % r.size));
    const f = walk(m, d, r, head);
    if (f) {
      m.stats.chains++;
      const l = r.inflight.get(head);
      if (l) l.push(f);
      else r.inflight.set(head, [f]);
      r.inflightCount++;
    }
  }
  r.lastAvail = idx;
}

/** Walk and judge a chain just made available; returns its in-flight record (null if unusable). */
function walk(m: MonitorCore, d: DevState, r: RingState, head: number): InFlight | null {
  const mem = m.machine.mem;
  if (head >= r.size) {
    m.violate(d, 'split.driver.8', 'driver', `queue ${r.index}: head index ${head} outside the descriptor table`, `< ${r.size}`, String(head));
    return null;
  }
  const descs: InFlight['descs'] = [];
  const rsegs: { addr: number; len: number }[] = [];
  const wsegs: { addr: number; len: number }[] = [];
  const readable: InFlight['readable'] = [];
  let writable = 0;
  let total = 0;
  let sawWritable = false;
  const visit = (table: number, count: number, first: number, indirect: boolean): boolean => {
    const seen = new Set<number>();
    let i = first;
    for (let steps = 0; ; steps++) {
      if (steps >= count) {
        m.violate(d, indirect ? 'split.driver.8' : 'split.driver.4', 'driver', `queue ${r.index}: chain from head ${head} ${indirect ? 'in an indirect table ' : ''}loops or is longer than ${count} descriptors`);
        return false;
      }
      if (seen.has(i)) {
        m.violate(d, 'split.driver.4', 'driver', `queue ${r.index}: chain from head ${head} loops at descriptor ${i}`);
        return false;
      }
      seen.add(i);
      const gpa = table + 16 * i;
      if (!mem.isRam(gpa, 16)) return false;
      descs.push({ gpa, bytes: mem.readBytes(gpa, 16) });
      const addr = u64(mem, gpa);
      const len = mem.read32(gpa + 8);
      const flags = mem.read16(gpa + 12);
      const next = mem.read16(gpa + 14);
      if (flags & Split.DESC_F_INDIRECT) {
        if (indirect) {
          m.violate(d, 'split.driver.7', 'driver', `queue ${r.index}: indirect descriptor inside an indirect table (head ${head})`);
          return false;
        }
        if (!d.negotiated.indirect) m.violate(d, 'split.driver.6', 'driver', `queue ${r.index}: INDIRECT descriptor without VIRTIO_F_INDIRECT_DESC (head ${head})`);
        if (flags & Split.DESC_F_NEXT) m.violate(d, 'split.driver.9', 'driver', `queue ${r.index}: descriptor with both INDIRECT and NEXT (head ${head})`);
        const n = Math.floor(len / 16);
        if (n === 0 || !mem.isRam(addr, len)) return false;
        if (n > r.size) m.violate(d, 'split.driver.8', 'driver', `queue ${r.index}: indirect table of ${n} descriptors, queue size ${r.size}`);
        return visit(addr, Math.min(n, r.size), 0, true);
      }
      total += len;
      if (len > 0 && !mem.isRam(addr, len)) m.violate(d, 'features.driver.13', 'driver', `queue ${r.index}: descriptor ${i} of chain ${head} points outside guest RAM (no VIRTIO_F_ACCESS_PLATFORM)`, 'a guest-physical RAM address', `0x${addr.toString(16)}+${len}`);
      if (flags & Split.DESC_F_WRITE) wsegs.push({ addr, len });
      else rsegs.push({ addr, len });
      if (flags & Split.DESC_F_WRITE) {
        sawWritable = true;
        writable += len;
      } else {
        if (sawWritable) m.violate(d, 'split.driver.2', 'driver', `queue ${r.index}: device-readable descriptor after a device-writable one (head ${head})`);
        if (len > 0 && mem.isRam(addr, Math.min(len, m.snapBytes))) readable.push({ gpa: addr, bytes: mem.readBytes(addr, Math.min(len, m.snapBytes)) });
      }
      if (!(flags & Split.DESC_F_NEXT)) return true;
      if (d.negotiated.inOrder) {
        // split.driver.5 / split.driver.10: with IN_ORDER a chain runs through consecutive descriptors
        // (wrapping to 0 after the last one of the ring; an indirect table from entry 0 upwards)
        const want = indirect ? i + 1 : (i + 1) % r.size;
        if (next !== want) m.violate(d, indirect ? 'split.driver.10' : 'split.driver.5', 'driver', `queue ${r.index}: with VIRTIO_F_IN_ORDER ${indirect ? 'indirect entry' : 'descriptor'} ${i} of chain ${head} links to ${next}`, `next ${want}`, `next ${next}`);
      }
      if (next >= count) {
        m.violate(d, 'split.driver.8', 'driver', `queue ${r.index}: next index ${next} outside the table (head ${head})`);
        return false;
      }
      i = next;
    }
  };
  const ok = visit(r.desc, r.size, head, false);
  if (total > 0xffff_ffff) m.violate(d, 'split.driver.4', 'driver', `queue ${r.index}: chain from head ${head} is longer than 2^32 bytes`, '<= 4 GiB', String(total));
  if (ok && d.deviceId === DeviceType.NET) noteCoalescing(m, d, r.index, rsegs);
  if (ok && m.onChain) {
    const report = (statement: string, message: string, expected?: string, seen?: string) => m.violate(d, statement, 'driver', `queue ${r.index} chain ${head}: ${message}`, expected, seen);
    m.onChain({ device: d.pd, deviceName: d.name, deviceId: d.deviceId, queue: r.index, head, readable: rsegs, writable: wsegs, config32: (o) => config32(m, d, o) }, report);
  }
  return ok ? { head, seq: m.seq++, writable, descs, readable } : null;
}

export function checkSnapshots(m: MonitorCore, d: DevState, r: RingState, side: 'driver' | 'device'): void {
  const mem = m.machine.mem;
  for (const list of r.inflight.values()) {
    for (const f of list) {
      for (const s of f.descs) {
        if (!sameBytes(mem.subarray(s.gpa, s.bytes.length), s.bytes)) {
          if (side === 'driver') m.violate(d, 'status_init.driver.13', 'driver', `queue ${r.index}: driver modified a descriptor of in-flight chain ${f.head}`);
          else m.violate(d, 'split.device.6', 'device', `queue ${r.index}: the descriptor table changed while the device ran (chain ${f.head})`);
          s.bytes.set(mem.subarray(s.gpa, s.bytes.length));
        }
      }
      for (const s of f.readable) {
        if (!sameBytes(mem.subarray(s.gpa, s.bytes.length), s.bytes)) {
          if (side === 'device') m.violate(d, 'split.device.3', 'device', `queue ${r.index}: a device-readable buffer of chain ${f.head} changed while the device ran`, 'unchanged', `buffer at 0x${s.gpa.toString(16)}`);
          else m.violate(d, 'status_init.driver.13', 'driver', `queue ${r.index}: driver modified a device-readable buffer of in-flight chain ${f.head}`);
          s.bytes.set(mem.subarray(s.gpa, s.bytes.length));
        }
      }
    }
  }
}

export function scanUsed(m: MonitorCore, d: DevState, r: RingState, when: 'driver' | 'device'): void {
  const mem = m.machine.mem;
  const flags = mem.read16(r.used);
  if (d.negotiated.eventIdx ? flags !== 0 : flags > 1) m.violate(d, d.negotiated.eventIdx ? 'split.device.20' : 'split.device.18', 'device', `queue ${r.index}: used ring flags ${flags}`, d.negotiated.eventIdx ? '0' : '0 or 1', String(flags));
  const idx = mem.read16(r.used + 2);
  const n = (idx - r.lastUsed) & 0xffff;
  if (n === 0) return;
  if (!d.driverOk) m.violate(d, 'status_init.device.1', 'device', `queue ${r.index}: used entries added before DRIVER_OK`);
  if (n > r.inflightCount) {
    m.violate(d, 'split.device.16', 'device', `queue ${r.index}: used idx moved by ${n} with ${r.inflightCount} buffers in flight`, `<= ${r.inflightCount}`, String(n));
    r.lastUsed = idx;
    r.broken = true;
    return;
  }
  const from = r.lastUsed;
  for (let k = 0; k < n; ) {
    const e = r.used + 4 + 8 * ((r.lastUsed + k) % r.size);
    const id = mem.read32(e);
    const len = mem.read32(e + 4);
    const l = r.inflight.get(id);
    const f = l?.shift();
    if (!f) {
      m.violate(d, 'split.device.16', 'device', `queue ${r.index}: used id ${id} is not a buffer in flight`, 'the head of an available chain', String(id));
      k++;
      continue;
    }
    k++;
    m.stats.used++;
    if (l!.length === 0) r.inflight.delete(id);
    r.inflightCount--;
    if (d.negotiated.inOrder) {
      // IN_ORDER: one used entry may stand for its whole batch (every chain made available before
      // it); the device then skips the batch's other used slots and moves idx by the batch size
      for (const [h, list] of r.inflight) {
        while (list.length && list[0]!.seq < f.seq) {
          list.shift();
          r.inflightCount--;
          m.stats.used++;
          k++;
        }
        if (list.length === 0) r.inflight.delete(h);
      }
    }
    if (len > f.writable) m.violate(d, 'split.device.16', 'device', `queue ${r.index}: used len ${len} exceeds the ${f.writable} writable bytes of chain ${id}`, `<= ${f.writable}`, String(len));
  }
  r.lastUsed = idx;
  if (when === 'device' && !r.owed) {
    const availFlags = mem.read16(r.avail);
    const usedEvent = mem.read16(r.avail + 4 + 2 * r.size);
    r.owed = { from, to: idx, usedEvent, flags: availFlags, irqsAt: d.irqsAtEnter };
  } else if (r.owed) r.owed.to = idx;
}
