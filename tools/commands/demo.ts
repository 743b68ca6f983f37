import type { CommandModule } from 'yargs';
import { Machine } from '../../device-models/machine/machine.ts';

/** `pvkit demo`: boot the simulated machine and print what it counted. Grows into the end-to-end blk run. */
export const demoCommand: CommandModule<object, { json: boolean }> = {
  command: 'demo',
  describe: 'boot the simulated machine and run the end-to-end virtio demo',
  builder: (y) => y.option('json', { type: 'boolean', default: false, describe: 'print JSON' }) as never,
  handler: (args) => {
    const m = new Machine();
    const summary = { ram: m.mem.regions.map((r) => ({ name: r.name, base: r.base, size: r.size })), exits: m.vcpu.events.snapshot() };
    if (args.json) console.log(JSON.stringify(summary));
    else console.log(`simulated machine: ${summary.ram.map((r) => `${r.name} ${r.size >> 20} MiB @0x${r.base.toString(16)}`).join(', ')}`);
  },
};
