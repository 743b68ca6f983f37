/**
 * The driver-side rules a virtio-blk request must follow before it is posted
 * (device-types/blk/description.tex, "Driver Requirements: Device Operation"): whole sectors and
 * the capacity (blk.driver.12, .16, .27), FLUSH (blk.driver.1, .14, .15), GET_ID (blk.driver.18),
 * DISCARD / WRITE_ZEROES / SECURE_ERASE segments (blk.driver.17, .19, .20, .21), read-only devices
 * (blk.device.21), and the zoned requests (blk.driver.28, .30 to .34, .36). VirtioBlkDriver.submit
 * runs them unless the request is `unchecked`.
 */
import type { DmaBuffer } from '../core/virtqueue.ts';
import type { BlkDeviceInfo } from './types.ts';
import { Blk } from '../../spec-refs/abi/virtio.ts';
import { RequestError, UsageError } from '../../spec-refs/errors.ts';
import { BlkDwz, BlkZoneReport, BlkZoneType } from '../../spec-refs/abi/blk-layout.ts';

const SECTOR = 512;

/** Driver-side rules for a request (the spec's driver requirements). */
export function checkRequest(info: BlkDeviceInfo, type: number, sector: number, data: readonly DmaBuffer[]): void {
  let bytes = 0;
  for (const b of data) bytes += b.len;
  // blk.driver.27: sector addresses are whole 512-byte sectors
  if (!Number.isSafeInteger(sector) || sector < 0) bad('bad sector', ['blk.driver.27'], 'a non-negative integer', String(sector));
  const z = info.zoned;
  switch (type) {
    case Blk.T_IN:
    case Blk.T_OUT:
      if (bytes % SECTOR !== 0) bad('data is not a multiple of 512 bytes', ['blk.driver.16'], 'a multiple of 512', String(bytes));
      if (sector + bytes / SECTOR > info.capacity) bad('request beyond the capacity', ['blk.driver.12'], `sectors below ${info.capacity}`, `${sector}+${bytes / SECTOR}`);
      if (type === Blk.T_OUT && info.readOnly) throw new RequestError('blk.ro', 'the device is read-only', { statements: ['blk.device.21'] });
      if (type === Blk.T_OUT && z && bytes > 0) {
        // blk.driver.36: writes to sequential zones are aligned to write_granularity and stay in their zone
        const zi = Math.floor(sector / z.zoneSectors);
        if (z.types[zi] === BlkZoneType.SWR || z.types[zi] === BlkZoneType.SWP) {
          if ((sector * SECTOR) % z.writeGranularity !== 0 || bytes % z.writeGranularity !== 0) bad('write to a sequential zone not aligned to write_granularity', ['blk.driver.36'], `multiples of ${z.writeGranularity} bytes`, `sector ${sector}, ${bytes} bytes`);
          if (sector + bytes / SECTOR > (zi + 1) * z.zoneSectors) bad('write runs past the end of its sequential zone', ['blk.driver.36'], `end <= ${(zi + 1) * z.zoneSectors}`, String(sector + bytes / SECTOR));
        }
      }
      return;
    case Blk.T_FLUSH:
      if (!info.flush) bad('FLUSH not negotiated', ['blk.driver.1'], 'VIRTIO_BLK_F_FLUSH', 'not negotiated');
      // blk.driver.14 / blk.driver.15: sector 0 and no data
      if (sector !== 0 || bytes !== 0) bad('FLUSH takes no sector and no data', ['blk.driver.14', 'blk.driver.15'], 'sector 0, no data', `sector ${sector}, ${bytes} bytes`);
      return;
    case Blk.T_GET_ID:
      if (bytes !== Blk.ID_BYTES) bad('GET_ID needs 20 bytes of data', ['blk.driver.18'], '20', String(bytes));
      return;
    case Blk.T_DISCARD:
    case Blk.T_WRITE_ZEROES:
    case Blk.T_SECURE_ERASE: {
      const lim = type === Blk.T_DISCARD ? info.discard : type === Blk.T_WRITE_ZEROES ? info.writeZeroes : info.secureErase;
      if (!lim) bad('request type not negotiated', [], 'the feature negotiated', `type ${type}`);
      if (info.readOnly) throw new RequestError('blk.ro', 'the device is read-only', { statements: ['blk.device.21'] });
      if (bytes === 0 || bytes % BlkDwz.SIZE !== 0) bad('range list is not a whole number of 16-byte segments', ['blk.driver.17'], 'n * 16, n >= 1', String(bytes));
      const nseg = bytes / BlkDwz.SIZE;
      const id = type === Blk.T_DISCARD ? 'blk.driver.19' : type === Blk.T_SECURE_ERASE ? 'blk.driver.20' : 'blk.driver.21';
      if (nseg > lim!.maxSeg) bad('too many segments', [id], `<= ${lim!.maxSeg}`, String(nseg));
      return;
    }
    case Blk.T_ZONE_REPORT:
      if (!z) bad('zone request without a zoned device', [], 'ZONED negotiated, model HM or HA', 'not zoned');
      // blk.driver.28: a sector inside the first zone to report
      if (sector >= info.capacity) bad('ZONE_REPORT sector outside the disk', ['blk.driver.28'], `< ${info.capacity}`, String(sector));
      if (bytes < BlkZoneReport.HEADER_SIZE) bad('ZONE_REPORT buffer smaller than the report header', [], `>= ${BlkZoneReport.HEADER_SIZE}`, String(bytes));
      return;
    case Blk.T_ZONE_OPEN:
    case Blk.T_ZONE_CLOSE:
    case Blk.T_ZONE_FINISH:
    case Blk.T_ZONE_RESET:
      if (!z) bad('zone request without a zoned device', [], 'ZONED negotiated, model HM or HA', 'not zoned');
      // blk.driver.30: the first sector of the target zone
      if (sector % z.zoneSectors !== 0 || sector >= info.capacity) bad('zone management sector is not a zone start', ['blk.driver.30'], `a multiple of ${z.zoneSectors} below ${info.capacity}`, String(sector));
      if (bytes !== 0) bad('zone management requests carry no data', [], '0', String(bytes));
      return;
    case Blk.T_ZONE_RESET_ALL:
      if (!z) bad('zone request without a zoned device', [], 'ZONED negotiated, model HM or HA', 'not zoned');
      if (sector !== 0 || bytes !== 0) bad('ZONE_RESET_ALL takes sector 0 and no data', ['blk.driver.31'], 'sector 0', String(sector));
      return;
    case Blk.T_ZONE_APPEND:
      if (!z) bad('zone request without a zoned device', [], 'ZONED negotiated, model HM or HA', 'not zoned');
      if (info.readOnly) throw new RequestError('blk.ro', 'the device is read-only', { statements: ['blk.device.21'] });
      // blk.driver.32: the zone's start; .33: whole write_granularity units; .34: at most max_append_sectors
      if (sector % z.zoneSectors !== 0 || sector >= info.capacity) bad('ZONE_APPEND sector is not a zone start', ['blk.driver.32'], `a multiple of ${z.zoneSectors}`, String(sector));
      if (bytes === 0 || bytes % z.writeGranularity !== 0 || bytes % SECTOR !== 0) bad('ZONE_APPEND size is not a multiple of write_granularity', ['blk.driver.33'], `n * ${z.writeGranularity}`, String(bytes));
      if (bytes / SECTOR > z.maxAppendSectors) bad('ZONE_APPEND larger than max_append_sectors', ['blk.driver.34'], `<= ${z.maxAppendSectors} sectors`, String(bytes / SECTOR));
      return;
    default:
      bad('request type this driver does not send', [], 'IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES, SECURE_ERASE, zone requests', String(type));
  }
}

function bad(msg: string, statements: string[], expected: string, seen: string): never {
  throw new UsageError('usage.blk.request', msg, { statements, expected, seen });
}
