import type { CommandModule } from 'yargs';
import { BLK_SCENARIOS, runBlkScenario, type BlkBenchResult } from '../bench/blk.ts';
import { BLK_RINGS, BLK_TRANSPORTS, isLegacyTransport, type BlkRingKind, type BlkTransportKind } from '../../conformance/harness/blk.ts';
import { UsageError } from '../../spec-refs/errors.ts';
import { TRACE_OPTION, startCommandTrace } from '../trace-cli.ts';
import { netBench } from '../bench/net.ts';

/** A bad flag: the CLI prints it on one line and exits 2 (codes starting with 'usage'). */
function usage(msg: string): UsageError {
  return new UsageError('usage.cli', msg);
}

interface BenchArgs {
  target: string;
  json: boolean;
  seconds: number;
  depth?: number;
  transport: string;
  ring: string;
  scenario?: string;
  'event-idx': boolean;
  indirect: boolean;
  trace?: string;
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function printText(r: BlkBenchResult): void {
  const exits = Object.entries(r.exits)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${fmt(v / r.requests, 4)}`)
    .join(', ');
  console.log(
    `${r.scenario.padEnd(14)} ${r.transport}/${r.ring} depth ${r.depth}: ${fmt(r.requests)} requests in ${fmt(r.seconds, 2)} s = ${fmt(r.iops)} IOPS, ${fmt(r.bytesPerSecond / 1e6, 1)} MB/s, ${fmt(r.exitsPerRequest, 4)} exits/request (${exits}); ${fmt(r.iopsPerCpuSecond)} IOPS per CPU second`,
  );
}

/** `pvkit bench blk`: virtio-blk random-read scenarios on the simulated machine. */
export const benchCommand: CommandModule<object, BenchArgs> = {
  command: 'bench <target>',
  describe: 'benchmark a device on the simulated machine (targets: blk, net)',
  builder: (y) =>
    y
      .positional('target', { type: 'string', describe: 'what to benchmark: blk, net' })
      .option('json', { type: 'boolean', default: false, describe: 'one JSON object per line per scenario' })
      .option('seconds', { type: 'number', default: 3, describe: 'wall-clock seconds measured per scenario' })
      .option('depth', { type: 'number', describe: 'queue depth (default: the scenario\'s, 128)' })
      .option('transport', { type: 'string', default: 'mmio', describe: `transport(s), comma-separated or 'all': ${BLK_TRANSPORTS.join(', ')}` })
      .option('ring', { type: 'string', default: 'split', describe: `ring layout(s), comma-separated or 'all': ${BLK_RINGS.join(', ')}` })
      .option('scenario', { type: 'string', describe: `run one scenario: ${BLK_SCENARIOS.map((s) => s.name).join(', ')}` })
      .option('event-idx', { type: 'boolean', default: true, describe: 'negotiate VIRTIO_F_EVENT_IDX' })
      .option('indirect', { type: 'boolean', default: false, describe: 'use indirect descriptors' })
      .option('trace', { ...TRACE_OPTION, describe: `${TRACE_OPTION.describe}; the first 200,000 events, and figures measured while tracing are slower` }) as never,
  handler: (args) => {
    if (args.target === 'net') {
      // the net scenarios keep their own ring depth: a --depth given here would be silently ignored
      if (args.depth !== undefined) throw usage('--depth applies to bench blk only (the net scenarios fill their rings)');
      const trace = startCommandTrace(args.trace, { bus: false, maxEvents: 200_000 });
      trace?.label('bench net');
      try {
        netBench({ json: args.json, seconds: args.seconds, transport: args.transport, ring: args.ring, scenario: args.scenario });
      } finally {
        if (trace) console.error(trace.finish());
      }
      return;
    }
    if (args.target !== 'blk') throw usage(`unknown bench target '${args.target}' (known: blk, net)`);
    if (!(args.seconds > 0) || !Number.isFinite(args.seconds)) throw usage('--seconds must be a positive number');
    if (args.depth !== undefined && !(Number.isInteger(args.depth) && args.depth >= 1 && args.depth <= 8192)) throw usage('--depth must be an integer from 1 to 8192');
    const transports = args.transport === 'all' ? [...BLK_TRANSPORTS] : args.transport.split(',');
    const rings = args.ring === 'all' ? [...BLK_RINGS] : args.ring.split(',');
    for (const t of transports) if (!(BLK_TRANSPORTS as readonly string[]).includes(t)) throw usage(`--transport must be one of ${BLK_TRANSPORTS.join(', ')} (or a comma-separated list, or all)`);
    for (const r of rings) if (!(BLK_RINGS as readonly string[]).includes(r)) throw usage(`--ring must be one of ${BLK_RINGS.join(', ')} (or a comma-separated list, or all)`);
    const combos: [BlkTransportKind, BlkRingKind][] = [];
    for (const t of transports as BlkTransportKind[]) {
      for (const r of rings as BlkRingKind[]) {
        // the packed ring needs VERSION_1 (feature bit 34): no legacy interface can carry it
        if (r === 'packed' && isLegacyTransport(t)) {
          if (transports.length === 1 && rings.length === 1) throw usage(`--ring packed cannot run over ${t}: a legacy interface negotiates feature bits 0..31 only`);
          if (!args.json) console.log(`(${t}/${r} skipped: a legacy interface cannot negotiate RING_PACKED)`);
          continue;
        }
        combos.push([t, r]);
      }
    }
    const scenarios = args.scenario === undefined ? BLK_SCENARIOS : BLK_SCENARIOS.filter((s) => s.name === args.scenario);
    if (scenarios.length === 0) throw usage(`unknown scenario '${args.scenario}' (known: ${BLK_SCENARIOS.map((s) => s.name).join(', ')})`);
    const trace = startCommandTrace(args.trace, { bus: false, maxEvents: 200_000 });
    for (const sc of scenarios) for (const [transport, ring] of combos) {
      trace?.label(`bench ${sc.name} ${transport}/${ring}`);
      const r = runBlkScenario(sc, {
        transport,
        ring,
        seconds: args.seconds,
        depth: args.depth,
        eventIdx: args['event-idx'],
        indirect: args.indirect,
      });
      if (args.json) console.log(JSON.stringify(r));
      else printText(r);
    }
    if (trace) console.error(trace.finish());
  },
};
