import type { EventCounts } from '../machine/cost.ts';
import { PAGE_SIZE, pagesPerEntry, type WalkResult } from '../../spec-refs/abi/x86-paging.ts';

/**
 * Shadow paging: the hypervisor keeps, per guest page-table root (guest CR3), a shadow table
 * that maps guest-virtual pages straight to (host-)physical frames, fills it lazily on hidden
 * page faults, and write-protects every guest page-table page it read while filling so that a
 * guest write to one traps and the shadow entries derived from it are zapped.
 *
 * Roots are kept in an LRU of the current root plus `prevRoots` previous ones (KVM's
 * `prev_roots`, 3 entries since Linux 4.19): a hit there is KVM's fast CR3 switch
 * (`shadow.root_hit`). A root that fell out of the LRU is either kept with its shadow pages
 * (`keepPages`, KVM's hashed shadow-page cache since early 2007: finding it again is the slow
 * path, `shadow.root_slow`, but nothing is refaulted) or freed (KVM before that cache, which
 * threw the shadow away at every CR3 switch: the next use rebuilds it, `shadow.root_new`, and
 * refaults every page). Roots pinned in a CR3-target slot are never evicted from the LRU.
 *
 * The shadow "tables" are kept as one map per root from virtual page number to a packed
 * spte (`frame * 4 + global*2 + writable`), which is what the hardware walk of the shadow
 * yields; their layout in host memory is not guest-visible and not modelled.
 */
export class ShadowRoot {
  readonly sptes = new Map<number, number>();
  /** Guest page-table pages this root has reverse-map entries for. */
  readonly tables = new Set<number>();
  alive = true;
  /** Number of CR3-target slots holding this root. */
  pinned = 0;
  constructor(
    readonly hostCr3: number,
    readonly gcr3: number,
  ) {}
}

interface Rmap {
  root: ShadowRoot;
  level: number;
  vpnBase: number;
}

/** Deliberate defects for the property tests (each must make a property fail). */
export interface ShadowBugs {
  /** Do not zap shadow entries when the guest writes a write-protected page table. */
  noZapOnWrite?: boolean;
  /** Evict roots even while they are pinned in a CR3-target slot (and leave the slot pointing at them). */
  evictPinned?: boolean;
}

/** Fake host-physical addresses for shadow roots: far above any guest RAM, never reused. */
const HOST_ROOT_BASE = 0x7f00_0000_0000;

export class ShadowMmu {
  /** Most recently used first; index 0 is the current root when there is one. */
  private readonly lru: ShadowRoot[] = [];
  /** Roots evicted from the LRU but kept (keepPages), by guest CR3. */
  private readonly hashed = new Map<number, ShadowRoot>();
  readonly byHost = new Map<number, ShadowRoot>();
  private readonly rmap = new Map<number, Rmap[]>();
  private nextHost = HOST_ROOT_BASE;
  current: ShadowRoot | undefined;

  constructor(
    private readonly events: EventCounts,
    public prevRoots: number,
    private readonly onZap: (root: ShadowRoot, vpn: number) => void,
    readonly bugs: ShadowBugs = {},
    readonly keepPages = true,
  ) {}

  get liveRoots(): readonly ShadowRoot[] {
    return this.lru;
  }

  isHostRoot(v: number): boolean {
    return v >= HOST_ROOT_BASE;
  }

  /** A guest CR3 load that reached the hypervisor: find or build the root for `gcr3`. */
  switchTo(gcr3: number): ShadowRoot {
    const base = gcr3 - (gcr3 % PAGE_SIZE);
    let i = -1;
    for (let j = 0; j < this.lru.length; j++) {
      if (this.lru[j]!.gcr3 === base) {
        i = j;
        break;
      }
    }
    let root: ShadowRoot;
    if (i >= 0) {
      root = this.lru[i]!;
      this.lru.splice(i, 1);
      this.events.add(i === 0 ? 'shadow.root_same' : 'shadow.root_hit');
    } else if (this.hashed.has(base)) {
      root = this.hashed.get(base)!;
      this.hashed.delete(base);
      this.events.add('shadow.root_slow');
    } else {
      root = new ShadowRoot(this.nextHost, base);
      this.nextHost += PAGE_SIZE;
      this.byHost.set(root.hostCr3, root);
      this.events.add('shadow.root_new');
    }
    this.lru.unshift(root);
    this.current = root;
    this.evict();
    return root;
  }

  /** Make an already-built root current without a lookup (a CR3-target hit: no exit happened). */
  activate(root: ShadowRoot): void {
    const i = this.lru.indexOf(root);
    if (i > 0) {
      this.lru.splice(i, 1);
      this.lru.unshift(root);
    }
    this.current = root;
  }

  private evict(): void {
    const keep = 1 + this.prevRoots;
    if (this.lru.length <= keep) return;
    // Walk from the least recently used end; pinned roots stay (unless the bug is on).
    for (let i = this.lru.length - 1; i >= 1 && this.lru.length > keep; i--) {
      const r = this.lru[i]!;
      if (r.pinned > 0 && !this.bugs.evictPinned) continue;
      this.lru.splice(i, 1);
      if (this.keepPages) this.hashed.set(r.gcr3, r);
      else this.free(r);
    }
  }

  /** Free a root: drop its reverse-map entries; its entries count as zapped. */
  free(root: ShadowRoot): void {
    if (!root.alive) return;
    root.alive = false;
    this.events.add('shadow.zap', root.sptes.size);
    this.events.add('shadow.root_free');
    for (const gfn of root.tables) {
      const list = this.rmap.get(gfn);
      if (!list) continue;
      const kept = list.filter((e) => e.root !== root);
      if (kept.length > 0) this.rmap.set(gfn, kept);
      else this.rmap.delete(gfn);
    }
    root.tables.clear();
    // The sptes are left as they were: a freed host page still holds its old contents, which
    // is exactly what a stale reference would see.
    const i = this.lru.indexOf(root);
    if (i >= 0) this.lru.splice(i, 1);
    if (this.current === root) this.current = undefined;
  }

  /** Drop every root but the current one (not used by the ABI; for tests and resets). */
  freeAllButCurrent(): void {
    for (const r of [...this.lru, ...this.hashed.values()]) if (r !== this.current) this.free(r);
    this.hashed.clear();
  }

  /** Roots alive in the hashed pool (evicted from the LRU, pages kept). */
  get hashedRoots(): number {
    return this.hashed.size;
  }

  /** The shadow entry for `vpn` in the current root, or -1 (hidden page fault). */
  lookup(vpn: number): number {
    const r = this.current;
    if (!r) return -1;
    const v = r.sptes.get(vpn);
    return v === undefined ? -1 : v;
  }

  /** Fill the shadow entry for `vpn` from a successful guest walk; write-protect the tables walked. */
  fill(vpn: number, w: WalkResult): number {
    const r = this.current!;
    const value = w.frame * 4 + (w.global ? 2 : 0) + (w.writable ? 1 : 0);
    r.sptes.set(vpn, value);
    this.events.add('shadow.fill');
    for (let k = 0; k < w.refs; k++) {
      const level = 4 - k;
      const gfn = w.tables[k]!;
      const span = pagesPerEntry(level) * 512;
      const vpnBase = vpn - (vpn % span);
      let list = this.rmap.get(gfn);
      if (!list) {
        list = [];
        this.rmap.set(gfn, list);
      }
      let found = false;
      for (const e of list) if (e.root === r && e.level === level && e.vpnBase === vpnBase) { found = true; break; }
      if (!found) {
        list.push({ root: r, level, vpnBase });
        r.tables.add(gfn);
      }
    }
    return value;
  }

  isWriteProtected(gpa: number): boolean {
    return this.rmap.has(gpa - (gpa % PAGE_SIZE));
  }

  /**
   * The guest wrote 8 bytes at `gpa` inside a write-protected page table: zap every shadow
   * entry derived from that table entry, in every root that walked through it.
   */
  guestTableWrite(gpa: number): void {
    const gfn = gpa - (gpa % PAGE_SIZE);
    const list = this.rmap.get(gfn);
    this.events.add('shadow.wp_emulate');
    if (!list || this.bugs.noZapOnWrite) return;
    const idx = Math.floor((gpa % PAGE_SIZE) / 8);
    for (const e of list) {
      const per = pagesPerEntry(e.level);
      const lo = e.vpnBase + idx * per;
      const hi = lo + per;
      const sp = e.root.sptes;
      if (per === 1) {
        if (sp.delete(lo)) this.zapped(e.root, lo);
        continue;
      }
      for (const vpn of [...sp.keys()]) {
        if (vpn >= lo && vpn < hi) {
          sp.delete(vpn);
          this.zapped(e.root, vpn);
        }
      }
    }
  }

  /** INVLPG intercepted: drop the current root's entry for `vpn`. */
  invalidate(vpn: number): void {
    const r = this.current;
    if (r && r.sptes.delete(vpn)) this.zapped(r, vpn);
  }

  private zapped(root: ShadowRoot, vpn: number): void {
    this.events.add('shadow.zap');
    this.onZap(root, vpn);
  }
}
