/**
 * virtio-blk benchmark on the simulated machine: random reads (or writes) of a fixed block size
 * at a fixed queue depth, through the reference driver, the virtio core and the device model,
 * for a wall-clock duration. It reports what a storage benchmark reports (requests, IOPS,
 * bytes per second) plus what a paravirtual one must: VM exits per request.
 *
 * A scenario is independent of the transport and the ring layout: both are parameters, so
 * virtio-pci and the packed ring are benchmarked by the same code once they exist.
 */
import { simBlk, type BlkRingKind, type BlkTransportKind } from '../../conformance/harness/blk.ts';
import { RamDisk } from '../../device-models/blk/backend.ts';
import { VirtioBlkDriver, type BlkRequest } from '../../drivers/blk/driver.ts';
import type { DmaBuffer } from '../../drivers/core/virtqueue.ts';
import { Blk, F, bit } from '../../spec-refs/abi/virtio.ts';
import { RequestError } from '../../spec-refs/errors.ts';

export interface BlkScenario {
  readonly name: string;
  readonly op: 'randread' | 'randwrite';
  readonly blockSize: number;
  readonly depth: number;
}

export const BLK_SCENARIOS: readonly BlkScenario[] = [
  { name: '4k-randread', op: 'randread', blockSize: 4096, depth: 128 },
  { name: '512-randread', op: 'randread', blockSize: 512, depth: 128 },
  { name: '64k-randread', op: 'randread', blockSize: 65536, depth: 128 },
];

export interface BlkBenchOptions {
  readonly transport: BlkTransportKind;
  readonly ring: BlkRingKind;
  /** Wall-clock seconds to measure, after a short warm-up. */
  readonly seconds: number;
  /** Override the scenario's queue depth. */
  readonly depth?: number;
  readonly eventIdx?: boolean;
  readonly indirect?: boolean;
  /** Disk size in bytes (default 64 MiB). */
  readonly diskBytes?: number;
  readonly warmupSeconds?: number;
}

export interface BlkBenchResult {
  readonly scenario: string;
  readonly transport: BlkTransportKind;
  readonly ring: BlkRingKind;
  readonly blockSize: number;
  readonly depth: number;
  readonly requests: number;
  readonly seconds: number;
  readonly iops: number;
  readonly bytesPerSecond: number;
  readonly exitsPerRequest: number;
  /** CPU time the process used while measuring (on a shared machine, IOPS per CPU second is the steadier figure). */
  readonly cpuSeconds: number;
  readonly iopsPerCpuSecond: number;
  readonly exits: Record<string, number>;
  readonly interruptsPerRequest: number;
  /** Modelled guest-visible cost of the exits, per request (cost profile of the machine). */
  readonly exitCyclesPerRequest: number;
}

export function runBlkScenario(sc: BlkScenario, o: BlkBenchOptions): BlkBenchResult {
  const depth = o.depth ?? sc.depth;
  const bs = sc.blockSize;
  const diskBytes = o.diskBytes ?? 64 << 20;
  let ring = 0n;
  if (o.eventIdx ?? true) ring |= bit(F.EVENT_IDX);
  if (o.indirect ?? false) ring |= bit(F.INDIRECT_DESC);
  // Direct descriptors need 3 per request: the queue must hold `depth` of them.
  let qsize = 1;
  while (qsize < (o.indirect ? depth : 3 * depth)) qsize *= 2;
  qsize = Math.min(qsize, 32768);
  const sim = simBlk({
    transport: o.transport,
    ring: o.ring,
    device: { backend: new RamDisk(diskBytes), queueSize: qsize, sizeMax: Math.max(bs, 4096), segMax: 16 },
    ringFeatures: ring,
    machine: { ram: [{ base: 0, size: 16 << 20 }, { base: 0x1_0000_0000, size: Math.max(16 << 20, depth * bs * 2) }] },
  });
  const m = sim.machine;
  const drvRing = o.ring === 'packed' ? ring | bit(F.RING_PACKED) : ring;
  const blk = VirtioBlkDriver.probe(m.platform, sim.transport, { ringFeatures: drvRing, queueSize: qsize, maxQueues: 1, indirectThreshold: o.indirect ? 2 : Infinity });
  if (blk.queue(0).layout !== o.ring) throw new RequestError('bench.ring', 'the ring layout asked for was not negotiated', { expected: o.ring, seen: blk.queue(0).layout });
  if (blk.queue(0).size < (o.indirect ? depth : 3 * depth)) throw new RequestError('bench.depth', 'queue too small for the depth', { expected: `>= ${3 * depth} descriptors`, seen: String(blk.queue(0).size) });

  // one data buffer per request in flight, found again through the request's slot
  const base = m.dma.alloc(depth * bs, 4096);
  const bufs: DmaBuffer[][] = [];
  for (let i = 0; i < depth; i++) bufs.push([{ addr: base + i * bs, len: bs }]);
  const freeBufs: number[] = [];
  for (let i = depth - 1; i >= 0; i--) freeBufs.push(i);
  const bufOfSlot = new Int32Array(32768);
  const type = sc.op === 'randread' ? Blk.T_IN : Blk.T_OUT;
  const req = { type, sector: 0, data: bufs[0]!, queue: 0 } as { type: number; sector: number; data: readonly DmaBuffer[]; queue: number };
  const sectorsPerBlock = bs / 512;
  const blocks = Math.floor(diskBytes / bs);
  let x = 0x2545f491;
  let done = 0;
  let failed = 0;
  const onDone = (status: number, handle: number) => {
    done++;
    if (status !== Blk.S_OK) failed++;
    freeBufs.push(bufOfSlot[handle % 32768]!);
  };
  const submitOne = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const bi = freeBufs.pop()!;
    req.sector = ((x >>> 0) % blocks) * sectorsPerBlock;
    req.data = bufs[bi]!;
    const h = blk.submit(req as BlkRequest, onDone);
    bufOfSlot[h % 32768] = bi;
  };
  const runFor = (seconds: number): { requests: number; seconds: number; cpuSeconds: number } => {
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    const end = start + seconds * 1000;
    const d0 = done;
    // each round tops the queue up to `depth` and waits for a batch of completions
    do {
      while (freeBufs.length > 0) submitOne();
      blk.waitSome();
    } while (performance.now() < end);
    blk.waitAll();
    const cpu = process.cpuUsage(cpu0);
    return { requests: done - d0, seconds: (performance.now() - start) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
  };

  runFor(o.warmupSeconds ?? Math.min(0.5, o.seconds / 4));
  const exits0 = snapshotExits(m.vcpu.events.snapshot());
  const irq0 = m.irq.delivered;
  const r = runFor(o.seconds);
  const exits1 = snapshotExits(m.vcpu.events.snapshot());
  const exits: Record<string, number> = {};
  let exitTotal = 0;
  let exitCycles = 0;
  for (const [k, v] of Object.entries(exits1)) {
    const n = v - (exits0[k] ?? 0);
    if (n === 0) continue;
    exits[k] = n;
    exitTotal += n;
    exitCycles += n * (m.profile.constants[`exit.${k}`]?.cycles ?? 0);
  }
  if (failed > 0) throw new RequestError('bench.failed', `${failed} benchmark requests failed`, { expected: 'all VIRTIO_BLK_S_OK' });
  return {
    scenario: sc.name,
    transport: o.transport,
    ring: o.ring,
    blockSize: bs,
    depth,
    requests: r.requests,
    seconds: r.seconds,
    iops: r.requests / r.seconds,
    bytesPerSecond: (r.requests * bs) / r.seconds,
    exitsPerRequest: exitTotal / r.requests,
    cpuSeconds: r.cpuSeconds,
    iopsPerCpuSecond: r.requests / r.cpuSeconds,
    exits,
    interruptsPerRequest: (m.irq.delivered - irq0) / r.requests,
    exitCyclesPerRequest: exitCycles / r.requests,
  };
}

function snapshotExits(s: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(s)) if (k.startsWith('exit.')) out[k.slice(5)] = v;
  return out;
}
