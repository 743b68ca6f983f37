import { PvkitError } from '../../spec-refs/errors.ts';
import type { SyncChannel } from '../../drivers/platform/qtest/sync-channel.ts';

/**
 * A synchronous QMP client (QEMU's JSON monitor), for what a guest cannot do by itself but a
 * check needs: changing a device's configuration from the host side (block_resize makes
 * virtio-blk's capacity change, with a config-change interrupt and a new config generation).
 * One JSON object per line; events ({"event": ...}) and the greeting are asynchronous lines.
 */
export class QmpError extends PvkitError {}

/**
 * Lines that are not replies: the greeting, and events. QEMU serializes an event's timestamp
 * first (`{"timestamp": {...}, "event": "SHUTDOWN", ...}`, seen on 7.2), so `{"event"` alone
 * never matched one and an event (BLOCK_IO_ERROR, say) would have been taken as a command's reply.
 */
export const QMP_ASYNC_PREFIXES = ['{"timestamp"', '{"event"', '{"QMP"'] as const;

export class QmpClient {
  private ready = false;
  constructor(private readonly chan: SyncChannel) {}

  /** Run a command; returns its "return" value, throws QmpError with QEMU's description. */
  execute(command: string, args?: Record<string, unknown>): unknown {
    if (!this.ready) {
      this.ready = true;
      this.execute('qmp_capabilities');
    }
    const line = JSON.stringify(args ? { execute: command, arguments: args } : { execute: command });
    const rep = this.chan.transact(line + '\n', 1);
    let msg: { return?: unknown; error?: { class?: string; desc?: string } };
    try {
      msg = JSON.parse(rep.lines[0]!) as typeof msg;
    } catch {
      throw new QmpError('qmp.protocol', 'malformed QMP reply', { seen: rep.lines[0]!.slice(0, 120) });
    }
    if (typeof msg !== 'object' || msg === null || (!('return' in msg) && !('error' in msg))) {
      // not a reply: the stream is out of step; nothing later on this channel can be trusted
      this.chan.poison(`QMP reply stream out of step at ${command}`);
      throw new QmpError('qmp.desync', 'QMP line is not a reply', { expected: '{"return": ...} or {"error": ...}', seen: rep.lines[0]!.slice(0, 120) });
    }
    if (msg.error) throw new QmpError('qmp.error', `QMP ${command} failed: ${msg.error.desc ?? msg.error.class ?? 'error'}`);
    return msg.return;
  }
}
