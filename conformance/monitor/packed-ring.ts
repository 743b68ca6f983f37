/**
 * Packed virtqueues, followed with the monitor's own copies of both sides' positions and wrap
 * counters: a descriptor is available when AVAIL = the driver's wrap and USED differs, used when
 * both equal the device's wrap.
 *
 * Spec: Packed Virtqueues (The Virtqueue Descriptor Table, Indirect descriptors, Driver
 * notifications).
 * Statements: packed.driver.1, .4, .7, .8, .11-13, .15; packed.device.4, .6;
 * status_init.driver.13, status_init.device.1, features.driver.13.
 */
import { Packed } from '../../spec-refs/abi/virtio.ts';
import type { MonitorCore } from './core.ts';
import { sameBytes, u64, type DevState, type InFlight, type PackedState, type QueueRegs } from './state.ts';
import { config32 } from './pci-layout.ts';

/** A packed queue was enabled: check the area alignment and start following it from position 0, wrap 1. */
export function packedEnabled(m: MonitorCore, d: DevState, index: number, q: QueueRegs): void {
  // packed.driver.1: descriptor ring 16-byte aligned, both event suppression areas 4-byte aligned
  if (q.desc % 16 || q.driver % 4 || q.device % 4) {
    m.violate(d, 'packed.driver.1', 'driver', `packed queue ${index} areas misaligned`, 'descriptor ring 16, event suppression areas 4 byte aligned', `desc 0x${q.desc.toString(16)} driver 0x${q.driver.toString(16)} device 0x${q.device.toString(16)}`);
  }
  if (!m.ringsOn || q.size === 0 || !m.machine.mem.isRam(q.desc, 16 * q.size)) return;
  d.prings.set(index, { index, size: q.size, desc: q.desc, availPos: 0, availWrap: true, usedPos: 0, usedWrap: true, inflight: [], seq: 0, broken: false });
}

export function pguard(r: PackedState, fn: () => void): void {
  try {
    fn();
  } catch {
    r.broken = true;
  }
}

/** Follow the chains the driver made available since the last look (AVAIL = wrap, USED = !wrap at the driver's position). */
export function scanAvailPacked(m: MonitorCore, d: DevState, r: PackedState): void {
  const mem = m.machine.mem;
  for (let guard = 0; guard < r.size && !r.broken; guard++) {
    const first = r.desc + 16 * r.availPos;
    const f0 = mem.read16(first + 14);
    if (((f0 & Packed.DESC_F_AVAIL) !== 0) !== r.availWrap || ((f0 & Packed.DESC_F_USED) !== 0) === r.availWrap) return;
    let writable = 0;
    let sawWritable = false;
    const readable: InFlight['readable'] = [];
    const rsegs: { addr: number; len: number }[] = [];
    const wsegs: { addr: number; len: number }[] = [];
    let k = 0;
    let id = 0;
    const seg = (addr: number, len: number, flags: number, where: string): void => {
      if (len > 0 && !mem.isRam(addr, len)) m.violate(d, 'features.driver.13', 'driver', `packed queue ${r.index}: ${where} points outside guest RAM (no VIRTIO_F_ACCESS_PLATFORM)`, 'a guest-physical RAM address', `0x${addr.toString(16)}+${len}`);
      if (flags & Packed.DESC_F_WRITE) {
        sawWritable = true;
        writable += len;
        wsegs.push({ addr, len });
      } else {
        // packed.driver.8: device-readable elements come before device-writable ones
        if (sawWritable) m.violate(d, 'packed.driver.8', 'driver', `packed queue ${r.index}: device-readable ${where} after a device-writable one`);
        rsegs.push({ addr, len });
        if (len > 0 && mem.isRam(addr, Math.min(len, m.snapBytes))) readable.push({ gpa: addr, bytes: mem.readBytes(addr, Math.min(len, m.snapBytes)) });
      }
    };
    for (;; k++) {
      if (k >= r.size) {
        // packed.driver.7: no list longer than the queue size (so no loops around the ring)
        m.violate(d, 'packed.driver.7', 'driver', `packed queue ${r.index}: descriptor list from position ${r.availPos} longer than the queue size ${r.size}`);
        r.broken = true;
        return;
      }
      const pos = (r.availPos + k) % r.size;
      const wrap = r.availPos + k >= r.size ? !r.availWrap : r.availWrap;
      const a = r.desc + 16 * pos;
      const flags = mem.read16(a + 14);
      if (k > 0 && (((flags & Packed.DESC_F_AVAIL) !== 0) !== wrap || ((flags & Packed.DESC_F_USED) !== 0) === wrap)) {
        // packed.driver.11: the list's head became available before the rest of the list
        m.violate(d, 'packed.driver.11', 'driver', `packed queue ${r.index}: head at position ${r.availPos} is available but descriptor ${k} of its list (position ${pos}) is not`, `AVAIL=${wrap ? 1 : 0} USED=${wrap ? 0 : 1}`, `flags 0x${flags.toString(16)}`);
        r.broken = true;
        return;
      }
      const addr = u64(mem, a);
      const len = mem.read32(a + 8);
      id = mem.read16(a + 12);
      if (flags & Packed.DESC_F_INDIRECT) {
        // packed.driver.12: INDIRECT only with VIRTIO_F_INDIRECT_DESC; packed.driver.15: not inside a NEXT-linked list
        if (!d.negotiated.indirect) m.violate(d, 'packed.driver.12', 'driver', `packed queue ${r.index}: INDIRECT descriptor without VIRTIO_F_INDIRECT_DESC (position ${pos})`);
        if (flags & Packed.DESC_F_NEXT || k > 0) m.violate(d, 'packed.driver.15', 'driver', `packed queue ${r.index}: INDIRECT descriptor in a list linked by NEXT (position ${pos})`);
        const n = Math.floor(len / 16);
        if (n > 0 && mem.isRam(addr, 16 * n)) {
          for (let i = 0; i < n && i < 4096; i++) {
            const e = addr + 16 * i;
            const ef = mem.read16(e + 14);
            // packed.driver.13: within an indirect table only DESC_F_WRITE may be set
            if (ef & ~Packed.DESC_F_WRITE) m.violate(d, 'packed.driver.13', 'driver', `packed queue ${r.index}: indirect entry ${i} has flags 0x${ef.toString(16)}`, 'WRITE only', `0x${ef.toString(16)}`);
            seg(u64(mem, e), mem.read32(e + 8), ef, `indirect entry ${i}`);
          }
        }
      } else seg(addr, len, flags, `descriptor at position ${pos}`);
      if (!(flags & Packed.DESC_F_NEXT)) break;
    }
    const n = k + 1;
    r.availPos += n;
    if (r.availPos >= r.size) {
      r.availPos -= r.size;
      r.availWrap = !r.availWrap;
    }
    r.inflight.push({ id, n, writable, readable, seq: r.seq++ });
    m.stats.chains++;
    if (m.onChain) {
      const report = (statement: string, message: string, expected?: string, seen?: string) => m.violate(d, statement, 'driver', `packed queue ${r.index} buffer ${id}: ${message}`, expected, seen);
      m.onChain({ device: d.pd, deviceName: d.name, deviceId: d.deviceId, queue: r.index, head: id, readable: rsegs, writable: wsegs, config32: (o) => config32(m, d, o) }, report);
    }
  }
}

/** Used descriptors the device wrote since the last look (AVAIL = USED = the device's wrap counter). */
export function scanUsedPacked(m: MonitorCore, d: DevState, r: PackedState): void {
  const mem = m.machine.mem;
  for (let guard = 0; guard < r.size && !r.broken; guard++) {
    const a = r.desc + 16 * r.usedPos;
    const flags = mem.read16(a + 14);
    if (((flags & Packed.DESC_F_AVAIL) !== 0) !== r.usedWrap || ((flags & Packed.DESC_F_USED) !== 0) !== r.usedWrap) return;
    const id = mem.read16(a + 12);
    if (!d.driverOk) m.violate(d, 'status_init.device.1', 'device', `packed queue ${r.index}: used descriptor written before DRIVER_OK`);
    const at = r.inflight.findIndex((f) => f.id === id);
    if (at < 0) {
      // packed.device.6: the device may only use what the driver made available
      m.violate(d, 'packed.device.6', 'device', `packed queue ${r.index}: used descriptor at position ${r.usedPos} names buffer id ${id}, which is not available`, 'the id of an available buffer', String(id));
      r.broken = true;
      return;
    }
    // with IN_ORDER one used descriptor may stand for every buffer made available before it
    const done = d.negotiated.inOrder ? r.inflight.splice(0, at + 1) : r.inflight.splice(at, 1);
    for (const f of done) {
      m.stats.used++;
      r.usedPos += f.n;
      if (r.usedPos >= r.size) {
        r.usedPos -= r.size;
        r.usedWrap = !r.usedWrap;
      }
    }
  }
}

/** Device-readable buffers must not change while in flight: the device's doing in device time, the driver's otherwise. */
export function snapshotsPacked(m: MonitorCore, d: DevState, r: PackedState, side: 'driver' | 'device'): void {
  const mem = m.machine.mem;
  for (const f of r.inflight) {
    for (const s of f.readable) {
      if (sameBytes(mem.subarray(s.gpa, s.bytes.length), s.bytes)) continue;
      if (side === 'device') m.violate(d, 'packed.device.4', 'device', `packed queue ${r.index}: a device-readable buffer of buffer ${f.id} changed while the device ran`, 'unchanged', `buffer at 0x${s.gpa.toString(16)}`);
      else m.violate(d, 'status_init.driver.13', 'driver', `packed queue ${r.index}: driver modified a device-readable buffer of in-flight buffer ${f.id}`);
      s.bytes.set(mem.subarray(s.gpa, s.bytes.length));
    }
  }
}

/** packed.driver.4: with NOTIFICATION_DATA, a notification carries the driver's next position and wrap counter. */
export function packedNotifyData(m: MonitorCore, d: DevState, r: PackedState, data: number): void {
  const off = (data >>> 16) & 0x7fff;
  const wrap = data >>> 31 === 1;
  if (off !== r.availPos || wrap !== r.availWrap) {
    m.violate(d, 'packed.driver.4', 'driver', `packed queue ${r.index}: notification data names position ${off} wrap ${wrap ? 1 : 0}`, `next_off ${r.availPos} next_wrap ${r.availWrap ? 1 : 0}`, `next_off ${off} next_wrap ${wrap ? 1 : 0}`);
  }
}
