import type { CommandModule } from 'yargs';
import { simBlk } from '../../conformance/harness/blk.ts';
import { FileDisk, RamDisk, type BlkBackend } from '../../device-models/blk/backend.ts';
import { VirtioBlkDriver } from '../../drivers/blk/driver.ts';
import { BlkF, featureNames } from '../../spec-refs/abi/virtio.ts';
import { UsageError } from '../../spec-refs/errors.ts';

/** A bad flag: the CLI prints it on one line and exits 2 (codes starting with 'usage'). */
function usage(msg: string): UsageError {
  return new UsageError('usage.cli', msg);
}

interface DemoArgs {
  json: boolean;
  image?: string;
}

export interface DemoSummary {
  machine: { ram: { name: string; base: number; size: number }[]; profile: string };
  device: { transport: string; ring: string; id: string; capacitySectors: number; features: string[]; queues: number; queueSize: number };
  io: { written: number; read: number; requests: number; verified: boolean; mismatches: number };
  virtualNs: number;
  exits: Record<string, number>;
  exitsTotal: number;
  cost: { cycles: number; micros: number; byKind: Record<string, { count: number; cycles: number }>; uncosted: string[] };
}

/**
 * The end-to-end run: boot the simulated machine, put virtio-blk on virtio-mmio, probe it with
 * the reference driver, write a pattern over several areas of the disk, flush, read it back and
 * compare. Returns the summary (VM exits by reason and modelled cycles included).
 */
export function runDemo(backend: BlkBackend = new RamDisk(16 << 20)): DemoSummary {
  const sim = simBlk({ device: { backend, id: 'pvkit-demo' } });
  const m = sim.machine;
  const blk = VirtioBlkDriver.probe(m.platform, sim.transport);
  const id = blk.getId();
  // a pattern over a few areas: the start, an unaligned middle, the very end
  const chunk = 256 * 1024;
  const areas = [0, Math.floor(blk.info.capacity / 3) + 7, blk.info.capacity - chunk / 512];
  let written = 0;
  let read = 0;
  let mismatches = 0;
  const data = new Uint8Array(chunk);
  for (let a = 0; a < areas.length; a++) {
    for (let i = 0; i < chunk; i++) data[i] = (i * 31 + a * 97 + (i >>> 9)) & 0xff;
    blk.write(areas[a]!, data);
    written += chunk;
  }
  blk.flush();
  const back = new Uint8Array(chunk);
  for (let a = 0; a < areas.length; a++) {
    blk.read(areas[a]!, back);
    read += chunk;
    for (let i = 0; i < chunk; i++) if (back[i] !== ((i * 31 + a * 97 + (i >>> 9)) & 0xff)) mismatches++;
  }
  const exits: Record<string, number> = {};
  for (const [k, v] of Object.entries(m.vcpu.events.snapshot())) if (k.startsWith('exit.')) exits[k.slice(5)] = v;
  const cost = m.cost();
  const summary: DemoSummary = {
    machine: { ram: m.mem.regions.map((r) => ({ name: r.name, base: r.base, size: r.size })), profile: m.profile.name },
    device: {
      transport: sim.transport.kind,
      ring: sim.ring,
      id,
      capacitySectors: blk.info.capacity,
      features: featureNames(blk.features, BlkF),
      queues: blk.numQueues,
      queueSize: blk.queue(0).size,
    },
    io: { written, read, requests: blk.completed, verified: mismatches === 0, mismatches },
    virtualNs: m.scheduler.now,
    exits,
    exitsTotal: m.exits(),
    cost: { cycles: cost.cycles, micros: cost.micros, byKind: cost.byKind, uncosted: cost.uncosted },
  };
  blk.shutdown();
  return summary;
}

function printText(s: DemoSummary): void {
  const out: string[] = [];
  out.push(`simulated machine: ${s.machine.ram.map((r) => `${r.name} ${r.size >> 20} MiB @0x${r.base.toString(16)}`).join(', ')}; cost profile ${s.machine.profile}`);
  out.push(`virtio-blk over ${s.device.transport} (${s.device.ring} ring): id "${s.device.id}", ${s.device.capacitySectors} sectors, ${s.device.queues} queue(s) of ${s.device.queueSize}`);
  out.push(`  negotiated: ${s.device.features.join(' ')}`);
  out.push(`I/O: wrote ${s.io.written} bytes, read ${s.io.read} bytes back in ${s.io.requests} requests: ${s.io.verified ? 'verified OK' : `VERIFICATION FAILED (${s.io.mismatches} bytes differ)`}`);
  out.push(`virtual time: ${(s.virtualNs / 1000).toFixed(1)} us`);
  out.push(`VM exits: ${s.exitsTotal}`);
  for (const [k, v] of Object.entries(s.exits).sort((a, b) => b[1] - a[1])) {
    const c = s.cost.byKind[`exit.${k}`]?.cycles ?? 0;
    out.push(`  ${k.padEnd(20)} ${String(v).padStart(8)}  ${String(c).padStart(12)} cycles`);
  }
  out.push(`modelled cost: ${s.cost.cycles} cycles = ${s.cost.micros.toFixed(1)} us${s.cost.uncosted.length ? ` (no constant for: ${s.cost.uncosted.join(', ')})` : ''}`);
  console.log(out.join('\n'));
}

/** `pvkit demo`: the end-to-end virtio-blk run on the simulated machine. Exit 1 when the data does not verify. */
export const demoCommand: CommandModule<object, DemoArgs> = {
  command: 'demo',
  describe: 'boot the simulated machine, attach virtio-blk over virtio-mmio, write, read back and verify',
  builder: (y) =>
    y
      .option('json', { type: 'boolean', default: false, describe: 'print the summary as JSON' })
      .option('image', { type: 'string', describe: 'use this raw image file as the disk (created with 16 MiB if missing; its data is overwritten)' }) as never,
  handler: (args) => {
    let backend: BlkBackend | undefined;
    if (args.image !== undefined) {
      if (args.image === '') throw usage('--image needs a file name');
      backend = new FileDisk(args.image, { size: 16 << 20 });
    }
    try {
      const s = runDemo(backend);
      if (args.json) console.log(JSON.stringify(s));
      else printText(s);
      if (!s.io.verified) process.exitCode = 1;
    } finally {
      backend?.close();
    }
  },
};
