/**
 * Expected failures of QEMU 7.2's virtio devices under pvkit's checks: each entry names the
 * check, the configurations it fails in, and the evidence (statement id, what QEMU did, and the
 * QEMU source location or upstream report). A listed check that passes is reported as an
 * unexpected pass, so this list cannot go stale. See docs/qemu.md for the investigation notes.
 */
export interface QemuXfail {
  readonly check: string;
  /** Configuration names (tools/qemu/configs.ts) where it fails, or 'all'. */
  readonly configs: readonly string[] | 'all';
  readonly reason: string;
}

export const QEMU_XFAIL: readonly QemuXfail[] = [];

/** The xfail table (check id -> reason) for one configuration. */
export function xfailFor(config: string, list: readonly QemuXfail[] = QEMU_XFAIL): Record<string, string> {
  const out: Record<string, string> = {};
  for (const x of list) if (x.configs === 'all' || x.configs.includes(config)) out[x.check] = x.reason;
  return out;
}
