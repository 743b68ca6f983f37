import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GuestMemory } from '../../device-models/machine/memory.ts';
import { RingWatcher, readPacked, readSplit, renderPacked, renderSplit, type DescState } from './ring-view.ts';

const SIZE = 8;
const Q = { size: SIZE, desc: 0x1000, driver: 0x2000, device: 0x3000 };

/**
 * A plain-spec split ring written by hand (independent of the ring watcher): a driver posting
 * chains from a free list, a device completing any outstanding chain (in any order), and the
 * driver collecting used entries. `expect` is the state each descriptor must show.
 */
class HandSplit {
  free: number[] = Array.from({ length: SIZE }, (_, i) => i);
  expect: DescState[] = new Array(SIZE).fill('free');
  outstanding: { head: number; descs: number[] }[] = [];
  usedQueue: { head: number; descs: number[] }[] = [];
  availIdx = 0;
  usedIdx = 0;
  constructor(readonly mem: GuestMemory) {}
  post(n: number): boolean {
    if (n > this.free.length) return false;
    const descs = this.free.splice(0, n);
    descs.forEach((d, k) => {
      const o = Q.desc + 16 * d;
      this.mem.write64(o, 0x10000 + d * 0x100);
      this.mem.write32(o + 8, 64);
      this.mem.write16(o + 12, (k + 1 < n ? 1 : 0) | (k === n - 1 ? 2 : 0));
      this.mem.write16(o + 14, k + 1 < n ? descs[k + 1]! : 0);
      this.expect[d] = 'in-flight';
    });
    this.mem.write16(Q.driver + 4 + 2 * (this.availIdx % SIZE), descs[0]!);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.mem.write16(Q.driver + 2, this.availIdx);
    this.outstanding.push({ head: descs[0]!, descs });
    return true;
  }
  complete(pick: number): boolean {
    if (this.outstanding.length === 0) return false;
    const [c] = this.outstanding.splice(pick % this.outstanding.length, 1);
    this.mem.write32(Q.device + 4 + 8 * (this.usedIdx % SIZE), c!.head);
    this.mem.write32(Q.device + 8 + 8 * (this.usedIdx % SIZE), 17);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    this.mem.write16(Q.device + 2, this.usedIdx);
    for (const d of c!.descs) this.expect[d] = 'used';
    this.usedQueue.push(c!);
    return true;
  }
  collect(): boolean {
    const c = this.usedQueue.shift();
    if (!c) return false;
    for (const d of c.descs) this.expect[d] = 'free';
    this.free.push(...c.descs);
    return true;
  }
}

/** The same for a packed ring: in-order slots, wrap counters, buffer ids, out-of-order completion. */
class HandPacked {
  expect: DescState[] = new Array(SIZE).fill('free');
  nextAvail = 0;
  availWrap = 1;
  nextUsed = 0;
  usedWrap = 1;
  freeSlots = SIZE;
  nextId = 0;
  outstanding: { id: number; slots: number[] }[] = [];
  usedQueue: { id: number; slots: number[] }[] = [];
  constructor(readonly mem: GuestMemory) {}
  post(n: number): boolean {
    if (n > this.freeSlots) return false;
    const id = this.nextId++ & 0x7fff;
    const slots: number[] = [];
    const flagsToWrite: number[] = [];
    for (let k = 0; k < n; k++) {
      const s = this.nextAvail;
      slots.push(s);
      const o = Q.desc + 16 * s;
      this.mem.write64(o, 0x20000 + s * 0x100);
      this.mem.write32(o + 8, 32);
      this.mem.write16(o + 12, id);
      flagsToWrite.push((k + 1 < n ? 1 : 0) | (this.availWrap << 7) | ((this.availWrap ^ 1) << 15));
      if (++this.nextAvail === SIZE) {
        this.nextAvail = 0;
        this.availWrap ^= 1;
      }
    }
    // flags of the head last, as the spec asks, so the chain appears at once
    for (let k = n - 1; k >= 0; k--) this.mem.write16(Q.desc + 16 * slots[k]! + 14, flagsToWrite[k]!);
    for (const s of slots) this.expect[s] = 'in-flight';
    this.freeSlots -= n;
    this.outstanding.push({ id, slots });
    return true;
  }
  complete(pick: number): boolean {
    if (this.outstanding.length === 0) return false;
    const [c] = this.outstanding.splice(pick % this.outstanding.length, 1);
    const o = Q.desc + 16 * this.nextUsed;
    this.mem.write16(o + 12, c!.id);
    this.mem.write32(o + 8, 5);
    this.mem.write16(o + 14, (this.usedWrap << 7) | (this.usedWrap << 15));
    // the used element takes the slot(s) at the device's position, whatever buffer they held
    for (let k = 0; k < c!.slots.length; k++) {
      if (++this.nextUsed === SIZE) {
        this.nextUsed = 0;
        this.usedWrap ^= 1;
      }
    }
    for (const s of c!.slots) this.expect[s] = 'used';
    this.usedQueue.push(c!);
    return true;
  }
  collect(): boolean {
    const c = this.usedQueue.shift();
    if (!c) return false;
    for (const s of c.slots) this.expect[s] = 'free';
    this.freeSlots += c.slots.length;
    return true;
  }
}

const ops = fc.array(
  fc.oneof(
    fc.record({ k: fc.constant('post' as const), n: fc.integer({ min: 1, max: 3 }) }),
    fc.record({ k: fc.constant('complete' as const), pick: fc.nat() }),
    fc.record({ k: fc.constant('collect' as const) }),
    fc.record({ k: fc.constant('sync' as const) }),
  ),
  { minLength: 20, maxLength: 150, size: 'max' },
);

describe('RingWatcher (split)', () => {
  it('tracks free / in flight / used exactly as the driver and device left them, across wraps (property)', () => {
    fc.assert(
      fc.property(ops, (list) => {
        const mem = new GuestMemory([{ base: 0, size: 1 << 20 }]);
        const h = new HandSplit(mem);
        const w = new RingWatcher(mem, 'split', Q);
        for (const o of list) {
          if (o.k === 'post') h.post(o.n);
          else if (o.k === 'complete') h.complete(o.pick);
          else if (o.k === 'collect') {
            w.sync(); // the driver reads used entries before collecting: the watcher must have seen them
            if (h.collect()) w.collected(1);
          } else {
            w.sync();
            expect(w.state).toEqual(h.expect);
          }
          // a post right after a collect may reuse descriptors: sync now so the watcher sees each step
          w.sync();
        }
        w.sync();
        expect(w.state).toEqual(h.expect);
        expect(w.anomalies).toEqual([]);
      }),
    );
  });

  it('renders the descriptor table, rings and event idx words', () => {
    const mem = new GuestMemory([{ base: 0, size: 1 << 20 }]);
    const h = new HandSplit(mem);
    const w = new RingWatcher(mem, 'split', Q);
    h.post(2);
    h.post(1);
    h.complete(0);
    mem.write16(Q.driver + 4 + 2 * SIZE, 1); // used_event
    mem.write16(Q.device + 4 + 8 * SIZE, 2); // avail_event
    w.sync();
    const text = renderSplit(readSplit(mem, Q), w, { title: 'requestq' });
    expect(text).toContain('requestq (split, size 8): 5 free, 1 in flight, 2 used');
    expect(text).toMatch(/0\s+used\s+0x10000\s+64\s+NEXT\s+1/);
    expect(text).toMatch(/1\s+used\s+0x10100\s+64\s+WRITE\s+-/);
    expect(text).toMatch(/2\s+in-flight/);
    expect(text).toContain('idx=2  last entries [0]=0 [1]=2');
    expect(text).toContain('[0]={id 0, len 17}');
    expect(text).toContain('used_event=1');
    expect(text).toContain('avail_event=2');
    expect(text).toContain('5 free descriptors not shown');
  });

  it('reports a chain that loops or a used id never posted, without looping itself', () => {
    const mem = new GuestMemory([{ base: 0, size: 1 << 20 }]);
    const w = new RingWatcher(mem, 'split', Q);
    mem.write16(Q.desc + 12, 1); // desc 0: NEXT -> 0
    mem.write16(Q.desc + 14, 0);
    mem.write16(Q.driver + 4, 0);
    mem.write16(Q.driver + 2, 1);
    mem.write32(Q.device + 4, 5);
    mem.write16(Q.device + 2, 1);
    w.sync();
    expect(w.anomalies.map((a) => a.what).join('\n')).toMatch(/longer than the queue[\s\S]*id 5, which is not a buffer in flight/);
  });
});

describe('RingWatcher (packed)', () => {
  it('tracks slots and both wrap counters as the rings go round (property)', () => {
    fc.assert(
      fc.property(ops, (list) => {
        const mem = new GuestMemory([{ base: 0, size: 1 << 20 }]);
        const h = new HandPacked(mem);
        const w = new RingWatcher(mem, 'packed', Q);
        for (const o of list) {
          if (o.k === 'post') h.post(o.n);
          else if (o.k === 'complete') h.complete(o.pick);
          else if (o.k === 'collect') {
            w.sync();
            if (h.collect()) w.collected(1);
          }
          w.sync();
          expect([w.nextAvail, w.availWrap, w.nextUsed, w.usedWrap]).toEqual([h.nextAvail, h.availWrap, h.nextUsed, h.usedWrap]);
        }
        expect(w.state).toEqual(h.expect);
        expect(w.anomalies).toEqual([]);
        expect(w.posted - w.completed).toBe(h.outstanding.length);
      }),
    );
  });

  it('renders slots with A/U bits and the event suppression structures', () => {
    const mem = new GuestMemory([{ base: 0, size: 1 << 20 }]);
    const h = new HandPacked(mem);
    const w = new RingWatcher(mem, 'packed', Q);
    h.post(2);
    w.sync();
    h.post(1);
    w.sync(); // the REPL syncs after every step: a used element may overwrite a slot it has not seen yet
    h.complete(1);
    mem.write16(Q.driver, 3 | (1 << 15));
    mem.write16(Q.driver + 2, 2);
    mem.write16(Q.device + 2, 1);
    w.sync();
    const text = renderPacked(readPacked(mem, Q), w);
    expect(text).toContain('driver: next avail slot 3, wrap counter 1   device: next used slot 1, wrap counter 1');
    expect(text).toMatch(/0\s+in-flight\s+0x20000\s+5\s+1\s+A=1\|U=1/);
    expect(text).toMatch(/2\s+used\s+0x20200\s+32\s+1\s+A=1\|U=0/);
    expect(text).toContain('DESC at slot 3 wrap 1');
    expect(text).toContain('DISABLE');
  });
});
