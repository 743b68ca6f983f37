/**
 * Rules broken on purpose (breakRule): DRIVER_OK without FEATURES_OK, a writable descriptor
 * before a readable one, a status bit cleared without a reset, a notification before DRIVER_OK;
 * the monitor (or the device) names the statement.
 */
import { UsageError } from '../../../spec-refs/errors.ts';
import { Blk, F, Status, bit, statusNames } from '../../../spec-refs/abi/virtio.ts';
import { SteppingSession } from './stepping.ts';
import type { View } from './view.ts';

/** The session's rule-breaking scenarios. */
export class RuleBreakingSession extends SteppingSession {
  /**
   * Break a rule on purpose and watch the monitor (and the device) react:
   * 'skip-features-ok' (DRIVER_OK without FEATURES_OK), 'bad-descriptor' (a writable descriptor
   * before a readable one), 'clear-status' (clear a status bit without a reset),
   * 'notify-early' (QueueNotify before DRIVER_OK).
   */
  breakRule(rule: string): View {
    const t = this.transport;
    switch (rule) {
      case 'skip-features-ok':
        this.stepIndex = this.steps.length;
        return this.report('breaking status_init.driver.6 on purpose: DRIVER_OK without FEATURES_OK', () => {
          this.dropQueues();
          t.reset();
          t.setStatus(Status.ACKNOWLEDGE);
          t.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
          this.offered = t.deviceFeatures();
          this.chosen = (this.wanted & this.offered) | bit(F.VERSION_1);
          t.setDriverFeatures(this.chosen);
          t.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.DRIVER_OK);
          return `  status now ${statusNames(t.getStatus())}`;
        });
      case 'bad-descriptor': {
        const bq = this.device === 'net' ? 1 : 0;
        const q = this.vq(bq);
        if (q.layout !== 'split') throw new UsageError('usage.repl.break', 'bad-descriptor is written for the split ring; start the REPL with --ring split');
        return this.report('breaking split.driver.2 on purpose: a device-writable descriptor before a device-readable one', () => {
          const { out, inp, token } = this.device === 'net' ? this.txFrame(this.arpFrame('10.0.2.2')) : this.blkRequest('write', Blk.T_OUT, 0, 512, false, undefined);
          // Post a well-formed chain, then swap the direction flags of its first two descriptors before publishing it.
          q.add(out, inp, token);
          const mem = this.machine.mem;
          const a = q.addresses;
          const availShadow = mem.read16(a.driver + 2); // published idx; the new entry sits at this position
          const head = mem.read16(a.driver + 4 + 2 * (availShadow % q.size));
          const second = mem.read16(a.desc + 16 * head + 14);
          mem.write16(a.desc + 16 * head + 12, mem.read16(a.desc + 16 * head + 12) | 2); // header: WRITE
          mem.write16(a.desc + 16 * second + 12, mem.read16(a.desc + 16 * second + 12) & ~2); // data: not WRITE
          q.kick();
          return `  chain at descriptor ${head}: descriptor ${head} now WRITE, ${second} readable; published and notified. tick() lets the device see it.`;
        });
      }
      case 'clear-status':
        return this.report('breaking status_init.driver.2 on purpose: clearing a status bit without a reset', () => {
          const st = t.getStatus();
          t.setStatus(st & ~Status.ACKNOWLEDGE);
          return `  wrote ${statusNames(st & ~Status.ACKNOWLEDGE)} over ${statusNames(st)}; status reads ${statusNames(t.getStatus())}`;
        });
      case 'notify-early':
        return this.report('breaking status_init.driver.12 on purpose: a notification before DRIVER_OK', () => {
          this.dropQueues();
          t.reset();
          this.stepIndex = 0;
          t.notify(0);
          return '  reset, then QueueNotify for queue 0';
        });
      default:
        throw new UsageError('usage.repl.break', `no rule-breaking scenario named ${rule}`, { expected: 'skip-features-ok | bad-descriptor | clear-status | notify-early' });
    }
  }
}
