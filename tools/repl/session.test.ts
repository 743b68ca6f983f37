import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Session, featureBit } from './session.ts';
import { validateTrace } from '../../device-models/machine/trace-format.ts';
import { UsageError } from '../../spec-refs/errors.ts';
import { BlkF, F, Status } from '../../spec-refs/abi/virtio.ts';

describe('REPL session', () => {
  it('steps through initialisation one status bit at a time, in the order the spec gives', () => {
    const s = new Session();
    const seen: number[] = [];
    for (let i = 0; i < 8; i++) {
      const v = s.step();
      expect(v.text).toMatch(new RegExp(`^step ${i + 1}/8: `));
      seen.push(s.core.status);
    }
    expect(seen).toEqual([0, 0, 1, 3, 3, 11, 11, 15]);
    expect(s.step().text).toMatch(/initialisation is complete/);
    expect(s.monitor.violations).toEqual([]);
  });

  it('fills and drains a packed ring, with wrap counters, and no violations', () => {
    const s = new Session({ ring: 'packed', queueSize: 6 });
    s.init();
    s.read(0);
    s.read(1);
    expect(s.ring().text).toContain('6 in flight');
    s.run();
    expect(s.ring().text).toContain('0 in flight, 6 used');
    expect(s.collect().text).toMatch(/#2 read sector 1: status OK/);
    expect(s.ring().text).toContain('driver: next avail slot 0, wrap counter 0   device: next used slot 0, wrap counter 0');
    s.read(2);
    s.read(3);
    s.run();
    s.collect();
    const r = s.ring();
    expect(r.text).toContain('6 free, 0 in flight, 0 used');
    expect(r.text).toContain('driver: next avail slot 0, wrap counter 1   device: next used slot 0, wrap counter 1');
    expect(s.monitor.violations).toEqual([]);
  });

  it('runs over legacy virtio-mmio (no FEATURES_OK step)', () => {
    const s = new Session({ transport: 'mmio-legacy' });
    const text = s.init().text;
    expect(text).not.toContain('FEATURES_OK, then re-read');
    expect(text).toContain('step 7/7: set DRIVER_OK');
    s.write(0, 'legacy');
    s.run();
    expect(s.collect().text).toMatch(/write sector 0: status OK/);
    expect(s.monitor.violations).toEqual([]);
  });

  it.each(['pci', 'pci-transitional', 'pci-transitional-modern'] as const)('runs over virtio-pci (%s): enumeration, MSI-X or INTx, the ring fills and drains', (transport) => {
    const s = new Session({ transport });
    const text = s.init().text;
    expect(text).toMatch(/vendor 0x1af4, device 0x10(42|01)/);
    expect(text).toMatch(/status now ACKNOWLEDGE\|DRIVER\|DRIVER_OK/);
    s.read(0);
    s.write(1, 'over pci');
    expect(s.ring().text).toContain('6 in flight');
    s.run();
    expect(s.collect().text).toMatch(/#2 write sector 1: status OK/);
    expect(s.ring().text).toMatch(/: (10|250) free, 0 in flight, 0 used|16 free, 0 in flight, 0 used|256 free, 0 in flight, 0 used/);
    expect(s.core.errors).toEqual([]);
  });

  it.each([
    ['skip-features-ok', ['status_init.driver.6'], true],
    ['bad-descriptor', ['split.driver.2'], true],
    ['clear-status', ['status_init.driver.2'], false],
    ['notify-early', ['status_init.driver.12'], false],
  ] as const)('breakRule(%s) is named by the monitor', (rule, ids, needsReset) => {
    const s = new Session();
    s.init();
    const v = s.breakRule(rule);
    const after = s.machine.scheduler.pending ? s.tick() : v;
    const text = v.text + '\n' + after.text;
    for (const id of ids) expect(text).toContain(`monitor: driver broke ${id}`);
    expect(s.monitor.violations.map((x) => x.statement)).toEqual(expect.arrayContaining([...ids]));
    expect((s.core.status & Status.DEVICE_NEEDS_RESET) !== 0).toBe(needsReset);
  });

  it.each([
    ['skip-features-ok', ['status_init.driver.6']],
    ['bad-descriptor', ['split.driver.2']],
    ['clear-status', ['status_init.driver.2']],
    // (notify-early: the pci transport refuses to notify a queue it has not set up, so the REPL cannot break that rule over pci)
  ] as const)('over virtio-pci too, breakRule(%s) is named by the monitor', (rule, ids) => {
    const s = new Session({ transport: 'pci' });
    s.init();
    expect(s.monitor.violations).toEqual([]);
    const v = s.breakRule(rule);
    const after = s.machine.scheduler.pending ? s.tick() : v;
    const text = v.text + '\n' + after.text;
    for (const id of ids) expect(text).toContain(`monitor: driver broke ${id}`);
  });

  it('refused features stay refused, and want/refuse take names or numbers', () => {
    const s = new Session();
    s.refuse('EVENT_IDX');
    s.want('VIRTIO_BLK_F_DISCARD', F.INDIRECT_DESC);
    s.init();
    const f = s.features();
    expect(f.text).toMatch(/chosen: .*DISCARD/);
    expect(f.text).toMatch(/chosen: .*VIRTIO_F_INDIRECT_DESC/);
    expect(f.text).toMatch(/refused \(offered, not taken\): .*VIRTIO_F_EVENT_IDX/);
    expect(featureBit('flush', 'blk')).toBe(BlkF.FLUSH);
    expect(() => featureBit('NOPE', 'blk')).toThrow(UsageError);
    // without event idx the ring's flags, not avail_event, suppress notifications
    s.read(0);
    s.run();
    s.collect();
    expect(s.monitor.violations).toEqual([]);
  });

  it('after driver(), the ring view follows the reference driver (its collections free descriptors)', () => {
    const s = new Session();
    s.driver();
    s.blk!.write(4, new Uint8Array(1024).fill(7));
    expect(s.ring().text).toContain('16 free, 0 in flight, 0 used');
    const back = new Uint8Array(1024);
    s.blk!.read(4, back);
    expect(back.every((b) => b === 7)).toBe(true);
  });

  it('records a valid Chrome trace of the session', () => {
    const s = new Session({ trace: true });
    s.init();
    s.read(0);
    s.run();
    s.collect();
    const f = join(mkdtempSync(join(tmpdir(), 'pvkit-session-')), 't.json');
    s.writeTrace(f);
    const t = JSON.parse(readFileSync(f, 'utf8'));
    expect(validateTrace(t)).toEqual([]);
    expect(t.traceEvents.some((e: { cat?: string }) => e.cat === 'irq')).toBe(true);
    // the ring filling and draining, as a counter track
    const inFlight = t.traceEvents.filter((e: { ph: string; name: string }) => e.ph === 'C' && e.name === 'queue 0 descriptors').map((e: { args: Record<string, number> }) => e.args['in flight']);
    expect(inFlight).toContain(3);
    expect(inFlight.at(-1)).toBe(0);
  });

  it.each([
    [{ device: 'scsi' as never }, /unknown device scsi/],
    [{ transport: 'usb' as never }, /unknown transport usb/],
    [{ transport: 'mmio-legacy' as const, ring: 'packed' as const }, /legacy interface has no packed ring/],
  ])('refuses what it cannot do yet: %o', (opts, msg) => {
    expect(() => new Session(opts)).toThrow(msg);
  });

  it('spec() prints a paraphrase and location, or suggests ids', () => {
    const s = new Session();
    expect(s.spec('split.driver.2').text).toMatch(/^split\.driver\.2 \(driver MUST\) .*\n {2}spec: split-ring\.tex:\d+/);
    expect(s.spec('split.driver.2').data).toMatchObject({ id: 'split.driver.2' });
    expect(s.spec('split.drive').text).toMatch(/no statement split\.drive; ids starting so: split\.driver\.1/);
  });

  it.each(['split', 'packed'] as const)('virtio-net (%s): receive buffers, ARP and ping through the host peer; the rings fill and drain', (ring) => {
    const s = new Session({ device: 'net', ring });
    expect(s.init().text).toContain('set up queues 0 (receiveq1) and 1 (transmitq1)');
    s.rx(2);
    expect(s.ring(0).text).toContain('2 in flight');
    s.arp();
    s.run();
    let c = s.collect().text;
    expect(c).toMatch(/q0 #1 rx 54 byte\(s\) = 12-byte header \+ 42-byte frame .* ARP 10\.0\.2\.2 is-at 52:54:00:00:00:01/);
    expect(c).toMatch(/q1 #3 tx .* ARP who-has 10\.0\.2\.2 tell 10\.0\.2\.15: sent/);
    s.ping(7);
    s.run();
    c = s.collect().text;
    expect(c).toMatch(/ICMP echo reply 10\.0\.2\.2 -> 10\.0\.2\.15 seq 7/);
    expect(s.ring(0).text).toContain('0 in flight, 0 used');
    expect(s.ring(1).text).toContain('0 in flight, 0 used');
    expect(s.monitor.violations).toEqual([]);
    expect(s.core.errors).toEqual([]);
  });

  it('virtio-net: the reference driver takes over and the ring view follows its receive buffers', () => {
    const s = new Session({ device: 'net' });
    s.driver();
    expect(s.ring(0).text).toContain('0 free, 16 in flight, 0 used');
    expect(s.net).toBeDefined();
    expect(() => s.read(0)).toThrow(/read\(\) is a virtio-blk helper; this session drives virtio-net/);
  });
});
