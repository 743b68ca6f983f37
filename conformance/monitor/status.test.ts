/**
 * Status and feature negotiation rules (status.ts) on a hostile driver, and a device
 * notifying before DRIVER_OK (device-time.ts).
 */
import { describe, expect, it } from 'vitest';
import { F, Status, featureSet } from '../../spec-refs/abi/virtio.ts';
import { attachMonitor } from '../monitor.ts';
import { RawMmio } from '../hostile.ts';
import { hostile, sim, statements } from './test-support.ts';

describe('monitor: each driver rule fires on a hostile driver', () => {
  it('status: clearing a bit, DRIVER_OK without FEATURES_OK, features after FEATURES_OK, notify before DRIVER_OK', () => {
    const { raw, mon } = hostile();
    raw.reset();
    raw.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
    raw.setStatus(Status.ACKNOWLEDGE); // clears DRIVER
    expect(statements(mon)).toEqual(['status_init.driver.2']);
    raw.reset();
    raw.setStatus(Status.ACKNOWLEDGE);
    raw.setStatus(Status.ACKNOWLEDGE | Status.DRIVER);
    raw.notify(0);
    raw.setStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.DRIVER_OK);
    expect(statements(mon)).toEqual(['status_init.driver.12', 'status_init.driver.2', 'status_init.driver.6']);
    const { raw: r2, mon: m2 } = hostile();
    r2.negotiate((o) => o);
    r2.writeDriverFeatures(featureSet(F.VERSION_1));
    expect(statements(m2)).toEqual(['status_init.driver.9']);
  });

  it('features: unoffered bits, VERSION_1 declined, undefined bits', () => {
    const a = hostile(featureSet(F.VERSION_1));
    a.raw.negotiate(() => featureSet(F.VERSION_1, F.EVENT_IDX));
    expect(statements(a.mon)).toEqual(['features.driver.1']);
    const b = hostile();
    b.raw.negotiate(() => featureSet(F.INDIRECT_DESC));
    expect(statements(b.mon)).toEqual(['features.driver.9']);
  });
});

describe('monitor: device rules fire on a misbehaving device', () => {
  it('a used buffer notification before DRIVER_OK', () => {
    const { m, dev } = sim();
    const mon = attachMonitor(m);
    const raw = new RawMmio(m.platform, dev.base);
    raw.negotiate((o) => o);
    dev.transport.usedBuffer(); // the transport raising a used interrupt with DRIVER_OK clear
    expect(statements(mon)).toEqual(['status_init.device.1']);
  });
});
