/**
 * Zoned block devices from the driver (device-types/blk/description.tex, VIRTIO_BLK_F_ZONED):
 * ZONE_REPORT (blk.driver.28, .29), the zone management requests OPEN / CLOSE / FINISH / RESET /
 * RESET_ALL (blk.driver.30, .31), ZONE_APPEND and its append_sector (blk.driver.32 to .35), and
 * single OUT requests whose zone status matters. The zone limits a request must respect are
 * checked in request-checks.ts, the zoned config fields read in config.ts. VirtioBlkDriver's zone
 * methods call these.
 */
import type { BlkRequester, BlkZonedInfo, BlkZoneInfo } from './types.ts';
import { Blk } from '../../spec-refs/abi/virtio.ts';
import { DeviceMisbehaviourError, UsageError } from '../../spec-refs/errors.ts';
import { BlkZoneReport } from '../../spec-refs/abi/blk-layout.ts';
import { run } from './sync.ts';

const SECTOR = 512;
const TWO32 = 0x1_0000_0000;

/** The zoned characteristics, or a UsageError when the device is not zoned (or ZONED was declined). */
export function needZoned(drv: BlkRequester): BlkZonedInfo {
  const z = drv.info.zoned;
  if (!z) throw new UsageError('usage.blk.zoned', 'not a zoned device (ZONED not negotiated or model NONE)');
  return z;
}

/** Up to `max` zones from the one holding `sector` (ZONE_REPORT; blk.driver.28, .29). */
export function reportZones(drv: BlkRequester, sector: number, max: number): BlkZoneInfo[] {
  needZoned(drv);
  const bytes = BlkZoneReport.HEADER_SIZE + Math.max(0, max) * BlkZoneReport.DESC_SIZE;
  const dma = drv.platform.dma;
  const mem = drv.platform.mem;
  const buf = dma.alloc(bytes, 16);
  try {
    run(drv, Blk.T_ZONE_REPORT, sector, buf, bytes);
    const nr = mem.read32(buf) + mem.read32(buf + 4) * TWO32;
    // the device reports how many descriptors it filled: never more than fit
    if (nr > max) throw new DeviceMisbehaviourError('blk.zone_report', 'nr_zones larger than the buffer holds', { expected: `<= ${max}`, seen: String(nr) });
    const out: BlkZoneInfo[] = [];
    for (let i = 0; i < nr; i++) {
      const d = buf + BlkZoneReport.HEADER_SIZE + i * BlkZoneReport.DESC_SIZE;
      const r64 = (o: number) => mem.read32(d + o) + mem.read32(d + o + 4) * TWO32;
      out.push({ cap: r64(BlkZoneReport.Z_CAP), start: r64(BlkZoneReport.Z_START), wp: r64(BlkZoneReport.Z_WP), type: mem.read8(d + BlkZoneReport.Z_TYPE), state: mem.read8(d + BlkZoneReport.Z_STATE) });
    }
    return out;
  } finally {
    dma.free(buf);
  }
}

/** A zone management request (ZONE_OPEN / CLOSE / FINISH / RESET at a zone start, RESET_ALL); returns the status. */
export function zoneManage(drv: BlkRequester, type: number, sector: number): number {
  needZoned(drv);
  const h = drv.submit({ type, sector });
  const r = drv.wait(h);
  if (r.error) throw r.error;
  return r.status;
}

/** ZONE_APPEND `data` to the zone starting at `zoneStart`: the status and, on success, where the data went. */
export function zoneAppend(drv: BlkRequester, zoneStart: number, data: Uint8Array): { status: number; sector?: number } {
  needZoned(drv);
  const dma = drv.platform.dma;
  const buf = dma.alloc(Math.max(SECTOR, data.length), 4096);
  try {
    drv.platform.mem.writeBytes(buf, data);
    const h = drv.submit({ type: Blk.T_ZONE_APPEND, sector: zoneStart, data: [{ addr: buf, len: data.length }] });
    const r = drv.wait(h);
    if (r.error) throw r.error;
    return r.appendSector !== undefined ? { status: r.status, sector: r.appendSector } : { status: r.status };
  } finally {
    dma.free(buf);
  }
}

/** One OUT request (no splitting): the status, for zoned writes whose status matters. */
export function writeOnce(drv: BlkRequester, sector: number, data: Uint8Array): number {
  const dma = drv.platform.dma;
  const buf = dma.alloc(Math.max(SECTOR, data.length), 4096);
  try {
    drv.platform.mem.writeBytes(buf, data);
    const r = drv.wait(drv.submit({ type: Blk.T_OUT, sector, data: [{ addr: buf, len: data.length }] }));
    if (r.error) throw r.error;
    return r.status;
  } finally {
    dma.free(buf);
  }
}
