/** The ring layouts the device-side core can build a queue with, by name. */
import type { RingLayout } from './ring.ts';
import { splitLayout } from './split-queue.ts';
import { packedLayout } from './packed-queue.ts';

const layouts = new Map<'split' | 'packed', RingLayout>([
  ['split', splitLayout],
  ['packed', packedLayout],
]);

/** Install (or replace) a ring layout, e.g. a test's instrumented one. */
export function registerRingLayout(layout: RingLayout): void {
  layouts.set(layout.name, layout);
}

export function ringLayout(name: 'split' | 'packed'): RingLayout | undefined {
  return layouts.get(name);
}
