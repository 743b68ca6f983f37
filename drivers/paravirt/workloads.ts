import type { GuestKernel, Process } from './kernel.ts';

/**
 * Guest workloads for the paravirtual-MMU table. They drive the guest-kernel model; what they
 * cost is whatever the CPU services they run on count (the caller snapshots the event counts).
 *
 * lat_ctx (lmbench): N processes in a ring of pipes pass a token; each process reads from its
 * pipe, then writes to the next one. lmbench reports the time per hop minus the "overhead" of
 * the same pipe reads and writes done by a single process, so the figure is the context switch
 * itself: `ring` and `overhead` are the two phases, timed separately by the caller.
 *
 * hackbench: groups of 20 senders and 20 receivers over socket pairs; every sender writes
 * `loops` 100-byte messages to each receiver of its group, every receiver reads them all. The
 * scheduler model is the O(1) scheduler's behaviour for this load: a receiver woken by a write
 * preempts the sender (sleepers get the interactivity bonus), reads what is queued and sleeps
 * again; a sender whose destination socket is full sleeps until that receiver has read.
 */

/** One system call's kernel path: entry, the kernel pages it touches, exit. */
function kernelPath(k: GuestKernel, kernelPages: number): void {
  k.enterKernel();
  k.touchKernel(kernelPages);
}

export interface LatCtxOptions {
  /** Kernel pages a pipe read or write touches (default: all the kernel model's pages). */
  kernelPages?: number;
  /** User pages each process touches per iteration (lat_ctx -s 0: stack and code; default all of its working set). */
  userPages?: number;
}

export class LatCtx {
  readonly procs: Process[] = [];
  private pos = 0;
  constructor(
    readonly k: GuestKernel,
    readonly n: number,
    readonly opts: LatCtxOptions = {},
  ) {
    for (let i = 0; i < n; i++) this.procs.push(k.fork());
    k.switchTo(this.procs[0]!.pid);
    k.exitKernel();
  }

  private get kp(): number {
    return this.opts.kernelPages ?? this.k.kernelVas.length;
  }

  /** `hops` token passes around the ring: read returns, user work, write, read blocks, switch. */
  ring(hops: number): void {
    const k = this.k;
    for (let h = 0; h < hops; h++) {
      k.touchUser(this.opts.userPages);
      kernelPath(k, this.kp); // write(next pipe)
      k.exitKernel();
      kernelPath(k, this.kp); // read(own pipe): empty, sleep
      this.pos = (this.pos + 1) % this.n;
      k.switchTo(this.procs[this.pos]!.pid);
      k.exitKernel(); // the next process's read returns
    }
  }

  /** The same reads and writes in one process, no switch (what lat_ctx subtracts). */
  overhead(iterations: number): void {
    const k = this.k;
    for (let h = 0; h < iterations; h++) {
      k.touchUser(this.opts.userPages);
      kernelPath(k, this.kp);
      k.exitKernel();
      kernelPath(k, this.kp);
      k.exitKernel();
    }
  }
}

export interface HackbenchOptions {
  groups: number;
  /** Messages each sender sends to each receiver (hackbench's default is 100). */
  loops?: number;
  /** Senders and receivers per group (hackbench: 20 each). */
  fdsPerGroup?: number;
  /** Messages a socket holds before the sender blocks. */
  socketCapacity?: number;
  kernelPages?: number;
}

interface Task {
  p: Process;
  sender: boolean;
  group: number;
  index: number;
  /** Sender: next receiver index and messages left to send; receiver: messages left to read. */
  next: number;
  left: number;
  blocked: boolean;
}

export interface HackbenchResult {
  messages: number;
  switches: number;
}

/** Build the tasks (forks them) without running; `run()` does the measured part. */
export class Hackbench {
  readonly tasks: Task[] = [];
  /** queue[g][r]: messages waiting in receiver r's socket of group g. */
  private readonly queued: number[][] = [];
  private readonly fds: number;
  private readonly loops: number;
  private readonly cap: number;
  private readonly kp: number;
  readonly socketVas: number[][] = [];

  constructor(
    readonly k: GuestKernel,
    readonly opts: HackbenchOptions,
  ) {
    this.fds = opts.fdsPerGroup ?? 20;
    this.loops = opts.loops ?? 100;
    this.cap = opts.socketCapacity ?? 128;
    this.kp = opts.kernelPages ?? Math.min(4, k.kernelVas.length);
    for (let g = 0; g < opts.groups; g++) {
      this.queued.push(new Array<number>(this.fds).fill(0));
      // each receiver's socket buffer: one kernel page (a slab page in the kernel half)
      this.socketVas.push(Array.from({ length: this.fds }, (_, r) => k.kernelVas[(g * this.fds + r) % k.kernelVas.length]!));
      for (let r = 0; r < this.fds; r++) this.tasks.push({ p: k.fork(), sender: false, group: g, index: r, next: 0, left: this.fds * this.loops, blocked: true });
      for (let s = 0; s < this.fds; s++) this.tasks.push({ p: k.fork(), sender: true, group: g, index: s, next: 0, left: this.fds * this.loops, blocked: false });
    }
  }

  run(): HackbenchResult {
    const k = this.k;
    const receivers = (g: number, r: number) => this.tasks[g * 2 * this.fds + r]!;
    const runq: Task[] = this.tasks.filter((t) => t.sender);
    const sendersBlockedOn: Task[][][] = this.queued.map((q) => q.map(() => []));
    let messages = 0;
    let switches = 0;
    let cur: Task | undefined;
    const switchTo = (t: Task) => {
      if (cur !== t) {
        k.switchTo(t.p.pid);
        switches++;
      }
      cur = t;
      k.exitKernel();
    };
    // A receiver drains its socket, waking any sender blocked on it; then sleeps.
    const receive = (r: Task) => {
      const q = this.queued[r.group]!;
      while (q[r.index]! > 0) {
        kernelPath(k, this.kp); // read()
        k.cpu.touch(this.socketVas[r.group]![r.index]!, true);
        q[r.index]!--;
        r.left--;
        k.exitKernel();
        k.touchUser(1, true); // look at the message
        const waiting = sendersBlockedOn[r.group]![r.index]!;
        while (waiting.length > 0) {
          const s = waiting.shift()!;
          s.blocked = false;
          runq.push(s);
        }
      }
      kernelPath(k, this.kp); // read() finds nothing: sleep
      r.blocked = true;
    };
    while (runq.length > 0) {
      const t = runq.shift()!;
      switchTo(t);
      if (!t.sender) {
        receive(t);
        continue;
      }
      // Sender: write to receivers round robin until done or blocked.
      while (t.left > 0) {
        const q = this.queued[t.group]!;
        const ri = t.next;
        if (q[ri]! >= this.cap) {
          sendersBlockedOn[t.group]![ri]!.push(t);
          t.blocked = true;
          kernelPath(k, this.kp); // the write that blocks
          break;
        }
        k.touchUser(1, true);
        kernelPath(k, this.kp); // write()
        k.cpu.touch(this.socketVas[t.group]![ri]!, true);
        k.cpu.execute('msg');
        q[ri]!++;
        messages++;
        t.left--;
        t.next = (ri + 1) % this.fds;
        const r = receivers(t.group, ri);
        if (r.blocked) {
          // Wakeup preemption: the receiver runs now, the sender resumes right after.
          r.blocked = false;
          switchTo(r);
          receive(r);
          switchTo(t);
        } else k.exitKernel();
      }
      if (t.left === 0) kernelPath(k, this.kp); // exit path of the sender's loop
    }
    return { messages, switches };
  }
}
