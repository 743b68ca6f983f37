/**
 * virtio-net benchmark on the simulated machine: two guests (two machines on one virtual clock),
 * each with a virtio-net NIC on the L2 switch, driven by the reference driver. Guest A streams
 * frames of a fixed size to guest B for a wall-clock duration; we report frames and bits per
 * second of host time, and the VM exits both guests took per frame (notifications, interrupt
 * acknowledgements, halts), the figure a paravirtual NIC is judged by.
 */
import { NetTestbed, netRings, netTransports } from '../../conformance/harness/net.ts';
import { buildEthernet } from '../../spec-refs/abi/packet.ts';
import { UsageError } from '../../spec-refs/errors.ts';

export interface NetScenario {
  readonly name: string;
  /** Frame length in bytes (Ethernet header and payload, no FCS). */
  readonly frameBytes: number;
}

export const NET_SCENARIOS: readonly NetScenario[] = [
  { name: '64', frameBytes: 64 },
  { name: '1514', frameBytes: 1514 },
];

export interface NetBenchOptions {
  readonly transport: string;
  readonly ring?: 'split' | 'packed';
  readonly seconds: number;
  readonly warmupSeconds?: number;
  /** Frames sent per burst before the receiver runs (default 64). */
  readonly burst?: number;
  /** Run exactly this many bursts after one warm-up burst instead of running for `seconds` (tests: no wall-clock dependence). */
  readonly rounds?: number;
}

export interface NetBenchResult {
  readonly scenario: string;
  readonly transport: string;
  readonly ring: string;
  readonly frameBytes: number;
  readonly frames: number;
  readonly seconds: number;
  readonly framesPerSecond: number;
  readonly bitsPerSecond: number;
  readonly exitsPerFrame: number;
  readonly interruptsPerFrame: number;
  readonly cpuSeconds: number;
  readonly framesPerCpuSecond: number;
  readonly exits: Record<string, number>;
}

export function runNetScenario(sc: NetScenario, o: NetBenchOptions): NetBenchResult {
  const tb = new NetTestbed(7);
  const ring = o.ring ?? 'split';
  const a = tb.addGuest({ transport: o.transport, ring, ramMiB: 16 });
  const b = tb.addGuest({ transport: o.transport, ring, ramMiB: 16 });
  let received = 0;
  b.driver.onReceive(() => received++);
  const frame = buildEthernet({ dst: b.driver.mac, src: a.driver.mac }, 0x88b5, new Uint8Array(sc.frameBytes - 14).map((_, i) => i));
  const burst = o.burst ?? 64;
  const exitsOf = () => a.machine.exits() + b.machine.exits();
  const irqsOf = () => a.driver.dev.stats.interrupts + b.driver.dev.stats.interrupts;
  const byReason = () => {
    const out: Record<string, number> = {};
    for (const m of [a.machine, b.machine]) {
      for (const r of ['EPT_MISCONFIG', 'EPT_VIOLATION', 'HLT', 'EXTERNAL_INTERRUPT', 'IO_INSTRUCTION'] as const) out[r] = (out[r] ?? 0) + m.exits(r);
    }
    return out;
  };
  const round = (): void => {
    let sent = 0;
    while (sent < burst && a.driver.send(frame)) sent++;
    const target = received + sent;
    // B halts until its interrupts bring the frames in; A handles its completions.
    b.driver.dev.waitUntil(() => {
      b.driver.poll();
      return received >= target;
    }, 'frames at the receiver');
    a.driver.dev.poll();
  };
  const runFor = (seconds: number, rounds?: number) => {
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    const f0 = received;
    const e0 = exitsOf();
    const i0 = irqsOf();
    const r0 = byReason();
    if (rounds !== undefined) for (let i = 0; i < rounds; i++) round();
    else
      do round();
      while (performance.now() - start < seconds * 1000);
    const cpu = process.cpuUsage(cpu0);
    const r1 = byReason();
    const exits: Record<string, number> = {};
    for (const k of Object.keys(r1)) if (r1[k]! - (r0[k] ?? 0) > 0) exits[k] = r1[k]! - (r0[k] ?? 0);
    return { frames: received - f0, seconds: (performance.now() - start) / 1000, exits: exitsOf() - e0, irqs: irqsOf() - i0, cpuSeconds: (cpu.user + cpu.system) / 1e6, byReason: exits };
  };
  if (o.rounds !== undefined) runFor(0, 1);
  else runFor(o.warmupSeconds ?? Math.min(0.3, o.seconds / 4));
  const r = runFor(o.seconds, o.rounds);
  return {
    scenario: sc.name,
    transport: o.transport,
    ring,
    frameBytes: sc.frameBytes,
    frames: r.frames,
    seconds: r.seconds,
    framesPerSecond: r.frames / r.seconds,
    bitsPerSecond: (r.frames * sc.frameBytes * 8) / r.seconds,
    exitsPerFrame: r.exits / r.frames,
    interruptsPerFrame: r.irqs / r.frames,
    cpuSeconds: r.cpuSeconds,
    framesPerCpuSecond: r.frames / r.cpuSeconds,
    exits: r.byReason,
  };
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function formatNetResult(r: NetBenchResult): string {
  const ex = Object.entries(r.exits).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${fmt(v / r.frames, 3)}`).join(', ');
  return `${(r.scenario + '-byte').padEnd(10)} ${r.transport}/${r.ring}: ${fmt(r.frames)} frames in ${fmt(r.seconds, 2)} s = ${fmt(r.framesPerSecond)} frames/s, ${fmt(r.bitsPerSecond / 1e6, 1)} Mbit/s, ${fmt(r.exitsPerFrame, 3)} exits/frame (${ex}), ${fmt(r.interruptsPerFrame, 3)} interrupts/frame; ${fmt(r.framesPerCpuSecond)} frames per CPU second`;
}

export interface NetBenchArgs {
  json: boolean;
  seconds: number;
  transport: string;
  ring?: string;
  scenario?: string;
}

/** `pvkit bench net`: dispatched from tools/commands/bench.ts. */
export function netBench(args: NetBenchArgs, print: (line: string) => void = console.log): NetBenchResult[] {
  const transports = netTransports();
  if (!transports.includes(args.transport)) throw new UsageError('usage.cli', `--transport must be one of ${transports.join(', ')} for net`);
  const rings = netRings();
  const ring = (args.ring ?? 'split') as 'split' | 'packed';
  if (!(rings as string[]).includes(ring)) throw new UsageError('usage.cli', `--ring must be one of ${rings.join(', ')} for net`);
  if (!(args.seconds > 0) || !Number.isFinite(args.seconds)) throw new UsageError('usage.cli', '--seconds must be a positive number');
  const scenarios = args.scenario === undefined ? NET_SCENARIOS : NET_SCENARIOS.filter((s) => s.name === args.scenario);
  if (scenarios.length === 0) throw new UsageError('usage.cli', `unknown net scenario '${args.scenario}' (known: ${NET_SCENARIOS.map((s) => s.name).join(', ')})`);
  const out: NetBenchResult[] = [];
  for (const sc of scenarios) {
    const r = runNetScenario(sc, { transport: args.transport, ring, seconds: args.seconds });
    out.push(r);
    print(args.json ? JSON.stringify(r) : formatNetResult(r));
  }
  return out;
}
