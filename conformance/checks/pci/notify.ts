/**
 * virtio-pci notifications (transport-pci.tex, "PCI Device Layout / Notification capability",
 * "Available Buffer Notifications"):
 *
 *   pci.device.notify-cap       pci.device.30-.34 (without NOTIFICATION_DATA)
 *   pci.device.notify-cap-data  pci.device.35-.39 (with NOTIFICATION_DATA)
 *   pci.driver.notifications    pci.driver.38-.43
 */
import { F, bit, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { Common, PciCap } from '../../../spec-refs/abi/virtio-pci.ts';
import { CheckSkip, defineCheck, expectEqual, expectThat } from '../../check.ts';
import type { TargetContext } from '../../target.ts';
import { PCI, openPci, rc, rq, offered, internalsOf } from './raw.ts';
import { watch, refWorkload } from './watch.ts';

function notifyCapCheck(ctx: TargetContext, withData: boolean): void {
  const d = openPci(ctx, withData ? { extraFeatures: bit(F.NOTIFICATION_DATA) } : {});
  const nd = hasFeature(offered(d), F.NOTIFICATION_DATA);
  if (nd !== withData) throw new CheckSkip(withData ? 'device does not offer VIRTIO_F_NOTIFICATION_DATA' : 'device offers VIRTIO_F_NOTIFICATION_DATA');
  const n = d.cap(PciCap.NOTIFY_CFG);
  const S = withData ? { off: 'pci.device.36', mult: 'pci.device.35', min: 'pci.device.37', all: 'pci.device.38', each: 'pci.device.39' } : { off: 'pci.device.30', mult: 'pci.device.31', min: 'pci.device.32', all: 'pci.device.33', each: 'pci.device.34' };
  const w = withData ? 4 : 2;
  expectEqual(n.offset % w, 0, [S.off], `notify cap.offset modulo ${w}`);
  const m = n.mult;
  const pow2 = m > 0 && (m & (m - 1)) === 0;
  expectThat(m === 0 || (pow2 && (withData ? m % 4 === 0 : m % 2 === 0)), [S.mult], 'notify_off_multiplier is not 0 or a suitable power of two', withData ? '0 or a power of two that is a multiple of 4' : '0 or an even power of two', String(m));
  expectThat(n.length >= w, [S.min], `notify cap.length below ${w}`, `>= ${w}`, String(n.length));
  const nq = rc(d, Common.NUM_QUEUES, 2);
  for (let q = 0; q < nq; q++) {
    const off = rq(d, q, Common.QUEUE_NOTIFY_OFF, 2);
    expectThat(n.length >= off * m + w, [S.each, S.all], `queue ${q}'s notify address does not fit the notification structure`, `cap.length >= ${off} * ${m} + ${w}`, String(n.length));
  }
}

defineCheck({
  id: 'pci.device.notify-cap',
  title: 'without NOTIFICATION_DATA: notify offset 2-aligned, multiplier 0 or an even power of two, length covers every queue + 2',
  statements: ['pci.device.30', 'pci.device.31', 'pci.device.32', 'pci.device.33', 'pci.device.34'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run: (ctx) => notifyCapCheck(ctx, false),
});

defineCheck({
  id: 'pci.device.notify-cap-data',
  title: 'with NOTIFICATION_DATA: notify offset 4-aligned, multiplier 0 or a power of two multiple of 4, length covers every queue + 4',
  statements: ['pci.device.35', 'pci.device.36', 'pci.device.37', 'pci.device.38', 'pci.device.39'],
  side: 'device',
  kind: 'example',
  applies: { transports: [...PCI] },
  run: (ctx) => notifyCapCheck(ctx, true),
});

defineCheck({
  id: 'pci.driver.notifications',
  title: '16-bit notifications of the queue index (or queue_notif_config_data); 32-bit ones with NOTIFICATION_DATA',
  statements: ['pci.driver.38', 'pci.driver.39', 'pci.driver.40', 'pci.driver.41', 'pci.driver.42', 'pci.driver.43'],
  side: 'driver',
  kind: 'example',
  applies: { transports: [...PCI] },
  run(ctx) {
    const combos: [boolean, boolean][] = [[false, false], [true, false], [false, true], [true, true]];
    for (const [nd, ncd] of combos) {
      const extra = (nd ? bit(F.NOTIFICATION_DATA) : 0n) | (ncd ? bit(F.NOTIF_CONFIG_DATA) : 0n) | (ctx.ring === 'packed' ? bit(F.RING_PACKED) : 0n);
      const dut = ctx.newDevice({ extraFeatures: extra });
      const { core } = internalsOf(dut);
      const seen = watch(dut, () => refWorkload(ctx, dut, extra));
      const notes = seen.bar.filter((a) => a.kind === 'write' && a.window.endsWith('bar4') && a.offset >= 0x3000);
      expectThat(notes.length > 0, ['pci.driver.38'], 'driver never notified');
      for (const n of notes) {
        const q = (n.offset - 0x3000) / 4;
        expectEqual(n.size, nd ? 4 : 2, [nd ? 'pci.driver.39' : 'pci.driver.38'], `notification width (NOTIFICATION_DATA ${nd ? 'on' : 'off'})`);
        const low = n.value & 0xffff;
        const expectLow = ncd ? (q + 0x4000) & 0xffff : q;
        expectEqual(low, expectLow, [ncd ? (nd ? 'pci.driver.43' : 'pci.driver.42') : nd ? 'pci.driver.41' : 'pci.driver.40'], 'notification value (queue index or queue_notif_config_data)', true);
      }
      expectEqual(core.errors.filter((e) => e.error.code.startsWith('pci.notify')).length, 0, ['pci.driver.38'], 'notification errors the device recorded');
    }
  },
});
