/**
 * A device shared by the runs of a property, honestly.
 *
 * Starting a device per run is cheap on the simulated target but costs a QEMU start (about 0.1 s)
 * on the qemu target, so some properties run all their inputs on one device. That is sound while
 * every run passes. Once a run fails, the device may be broken (DEVICE_NEEDS_RESET, a wedged
 * queue) and fast-check's shrinking would replay smaller inputs on the broken device: every one
 * fails, and the "counterexample" reported is whatever shrinks furthest, not the cause.
 *
 * `SharedDevice` keeps one device while runs pass; after the first failing run it drops (and
 * disposes) that device, and from then on every run, the shrinking replays included, gets a fresh
 * device of its own. The shrunk counterexample is thus one that fails on a fresh device.
 */
export class SharedDevice<T extends { dispose(): void }> {
  private current: T | undefined;
  private tainted = false;

  constructor(private readonly make: () => T) {}

  /** Whether a run has failed (every later run gets a fresh device). */
  get shrinking(): boolean {
    return this.tainted;
  }

  /** Run one property input on the shared device (or a fresh one once a run has failed). */
  run<R>(fn: (dev: T, fresh: boolean) => R): R {
    const fresh = this.current === undefined;
    const dev = this.current ?? (this.current = this.make());
    let ok = false;
    try {
      const r = fn(dev, fresh);
      ok = true;
      return r;
    } finally {
      if (!ok) this.tainted = true;
      if (this.tainted) this.drop();
    }
  }

  private drop(): void {
    const d = this.current;
    this.current = undefined;
    try {
      d?.dispose();
    } catch {
      /* the runner disposes again at the end; a failing dispose must not hide the run's result */
    }
  }
}
