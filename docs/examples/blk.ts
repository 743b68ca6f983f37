// docs/examples/blk.ts — chapter 5: the virtio-blk reference driver.
import assert from 'node:assert/strict';
import { simBlk } from '../../conformance/harness/blk.ts';
import { RamDisk } from '../../device-models/blk/backend.ts';
import { VirtioBlkDriver } from '../../drivers/blk/driver.ts';
import { Blk } from '../../spec-refs/abi/virtio.ts';

export function run(): string[] {
  const lines: string[] = [];
  for (const ring of ['split', 'packed'] as const) {
    const sim = simBlk({ ring, device: { backend: new RamDisk(1 << 20), id: 'guide-disk' } });
    const blk = VirtioBlkDriver.probe(sim.machine.platform, sim.transport);
    assert.equal(blk.info.capacity, 2048); // 1 MiB in 512-byte sectors, read from config space
    // The bounce-buffered helpers: one request each, waited for, status checked.
    const data = new Uint8Array(1024).map((_, i) => i & 0xff);
    blk.write(8, data);
    const back = new Uint8Array(1024);
    blk.read(8, back);
    assert.deepEqual(back, data);
    assert.equal(blk.getId(), 'guide-disk');
    // The asynchronous form: submit several requests, kick once, wait for all.
    const p = sim.machine.platform;
    const bufs = [0, 1, 2, 3].map(() => p.dma.alloc(512));
    const handles = bufs.map((addr, i) => blk.submit({ type: Blk.T_IN, sector: 8 + i, data: [{ addr, len: 512 }] }));
    blk.kick();
    blk.waitAll();
    for (const h of handles) assert.equal(blk.result(h)!.status, Blk.S_OK);
    assert.equal(p.mem.read8(bufs[1]!), 0); // sector 9 starts at byte 512 of `data`: 512 & 0xff = 0
    assert.equal(p.mem.read8(bufs[1]! + 1), 1);
    lines.push(`${ring}: ${blk.completed} requests, ${sim.machine.exits()} exits`);
  }
  return lines;
}
