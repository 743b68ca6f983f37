import type { CommandModule } from 'yargs';
import { UsageError } from '../../spec-refs/errors.ts';
import { checkTracePath } from '../trace-cli.ts';
import { DEVICES, RINGS, TRANSPORTS, type DeviceKind, type RingKind, type TransportKind } from '../repl/session.ts';

interface ReplArgs {
  device: DeviceKind;
  transport: TransportKind;
  ring: RingKind;
  trace?: string;
  'queue-size': number;
}

/** `pvkit repl`: a Node REPL on a simulated machine with one virtio device wired and the monitor attached. */
export const replCommand: CommandModule<object, ReplArgs> = {
  command: 'repl',
  describe: 'explore the spec interactively: a simulated device, its rings in guest memory, the monitor',
  builder: (y) =>
    y
      .option('device', { type: 'string', choices: DEVICES, default: 'blk', describe: 'device to attach' })
      .option('transport', { type: 'string', choices: TRANSPORTS, default: 'mmio', describe: 'transport' })
      .option('ring', { type: 'string', choices: RINGS, default: 'split', describe: 'ring layout (packed needs a modern transport)' })
      .option('queue-size', { type: 'number', default: 16, describe: "largest queue size the REPL's driver uses" })
      .option('trace', { type: 'string', describe: 'write a Chrome trace-event JSON of the session to FILE on exit (open in Perfetto)' }) as never,
  handler: async (args) => {
    const { startRepl } = await import('../repl/repl.ts');
    const qs = args['queue-size'];
    if (!Number.isInteger(qs) || qs < 1 || qs > 32768) {
      throw new UsageError('usage.repl.queue_size', `--queue-size must be an integer from 1 to 32768, got ${qs}`);
    }
    // the session writes its trace on exit: refuse an unwritable path now, not after the session
    if (args.trace !== undefined) checkTracePath(args.trace);
    const { server } = startRepl({ device: args.device, transport: args.transport, ring: args.ring, queueSize: qs, ...(args.trace !== undefined ? { traceFile: args.trace } : {}) });
    await new Promise<void>((resolve) => server.on('exit', () => resolve()));
  },
};
