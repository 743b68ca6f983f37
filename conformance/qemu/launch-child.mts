// Helper process for launcher.test.ts: starts QEMU, prints its pid, then ends in the way asked
// (argv[2]): 'exit' (returns normally without closing), 'throw' (uncaught error), 'hang' (waits
// to be killed by a signal), 'busy' (blocked in a synchronous wait on QEMU when signalled).
import { launchQemu } from './launcher.ts';
import { findConfig } from './configs.ts';

const how = process.argv[2];
const s = await launchQemu(findConfig('microvm-blk')!);
process.stdout.write(`pid ${s.pid}\n`);
// wait for the test's go-ahead, so that it can see QEMU alive first
await new Promise((r) => process.stdin.once('data', r));
if (how === 'exit') process.exit(0);
if (how === 'throw') throw new Error('boom');
if (how === 'hang') setInterval(() => {}, 1000);
if (how === 'busy') {
  for (;;) s.platform.irq.wait(1e9);
}
