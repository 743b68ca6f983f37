/**
 * virtio-blk config space, driver side (device-types/blk/description.tex, "Device configuration
 * layout" and "Driver Requirements: Device Initialization"): struct virtio_blk_config read in one
 * generation (config_space.driver.2) and judged field by field, values the device got wrong
 * corrected with a warning; the cache mode (blk.driver.3, blk.driver.4); the zoned
 * characteristics (blk.device.9, blk.device.10 as the driver checks them).
 */
import type { VirtioTransport } from '../transport/transport.ts';
import type { VirtioDriverDevice } from '../core/device.ts';
import type { BlkDeviceInfo, RangeLimits } from './types.ts';
import { BlkF, hasFeature } from '../../spec-refs/abi/virtio.ts';
import { DeviceMisbehaviourError } from '../../spec-refs/errors.ts';
import { BlkConfig, BlkZonedConfig, BlkZoneModel } from '../../spec-refs/abi/blk-layout.ts';

const SECTOR = 512;
const TWO32 = 0x1_0000_0000;

export function read64(t: VirtioTransport, off: number): number {
  const lo = t.readConfig(off, 4) >>> 0;
  const hi = t.readConfig(off + 4, 4) >>> 0;
  if (hi >= 0x20_0000) throw new DeviceMisbehaviourError('blk.capacity', 'capacity beyond 2^53 sectors', { expected: '< 2^53', seen: `hi word 0x${hi.toString(16)}` });
  return hi * TWO32 + lo;
}

/** Read and judge struct virtio_blk_config in one generation (config_space.driver.2). */
export function readInfo(dev: VirtioDriverDevice, warnings: string[]): BlkDeviceInfo {
  const f = dev.features;
  const has = (b: number) => hasFeature(f, b);
  let w: string[] = [];
  const info = dev.readConfigStable((t) => {
    w = [];
    const r32 = (o: number) => t.readConfig(o, 4) >>> 0;
    const capacity = read64(t, BlkConfig.CAPACITY);
    let segMax = Infinity;
    if (has(BlkF.SEG_MAX)) {
      segMax = r32(BlkConfig.SEG_MAX);
      if (segMax === 0) {
        w.push('seg_max is 0: taken as 1');
        segMax = 1;
      }
    }
    let sizeMax = Infinity;
    if (has(BlkF.SIZE_MAX)) {
      sizeMax = r32(BlkConfig.SIZE_MAX);
      if (sizeMax === 0) {
        w.push('size_max is 0: taken as 512');
        sizeMax = 512;
      }
    }
    let blkSize = 512;
    if (has(BlkF.BLK_SIZE)) {
      const bs = r32(BlkConfig.BLK_SIZE);
      // only a performance hint (the protocol unit stays 512): a bad value is ignored
      if (bs >= 512 && bs <= 65536 && (bs & (bs - 1)) === 0) blkSize = bs;
      else w.push(`blk_size ${bs} is not a power of two in 512..65536: 512 assumed`);
    }
    let numQueues = 1;
    if (has(BlkF.MQ)) {
      numQueues = t.readConfig(BlkConfig.NUM_QUEUES, 2);
      if (numQueues === 0) {
        w.push('num_queues is 0 with MQ: using 1 queue');
        numQueues = 1;
      }
    }
    const limits = (feat: number, secOff: number, segOff: number, alignOff: number | undefined, name: string): RangeLimits | undefined => {
      if (!has(feat)) return undefined;
      const maxSectors = r32(secOff);
      const maxSeg = r32(segOff);
      if (maxSectors === 0 || maxSeg === 0) {
        w.push(`${name}: max sectors ${maxSectors}, max segments ${maxSeg}: not usable, never sent`);
        return undefined;
      }
      const alignment = alignOff === undefined ? 1 : r32(alignOff) || 1;
      return { maxSectors, maxSeg: Math.min(maxSeg, 4096), alignment };
    };
    const discard = limits(BlkF.DISCARD, BlkConfig.MAX_DISCARD_SECTORS, BlkConfig.MAX_DISCARD_SEG, BlkConfig.DISCARD_SECTOR_ALIGNMENT, 'discard');
    const wz = limits(BlkF.WRITE_ZEROES, BlkConfig.MAX_WRITE_ZEROES_SECTORS, BlkConfig.MAX_WRITE_ZEROES_SEG, undefined, 'write zeroes');
    const secureErase = limits(BlkF.SECURE_ERASE, BlkConfig.MAX_SECURE_ERASE_SECTORS, BlkConfig.MAX_SECURE_ERASE_SEG, BlkConfig.SECURE_ERASE_SECTOR_ALIGNMENT, 'secure erase');
    const topology = has(BlkF.TOPOLOGY)
      ? { physicalBlockExp: t.readConfig(BlkConfig.TOPOLOGY_PHYSICAL_BLOCK_EXP, 1), alignmentOffset: t.readConfig(BlkConfig.TOPOLOGY_ALIGNMENT_OFFSET, 1), minIoSize: t.readConfig(BlkConfig.TOPOLOGY_MIN_IO_SIZE, 2), optIoSize: r32(BlkConfig.TOPOLOGY_OPT_IO_SIZE) }
      : undefined;
    // blk.driver.4: writeback is read only after FEATURES_OK (check() runs after it);
    // blk.driver.3: FLUSH without CONFIG_WCE means a writeback cache
    let cache: 'writeback' | 'writethrough' = has(BlkF.FLUSH) ? 'writeback' : 'writethrough';
    if (has(BlkF.CONFIG_WCE)) {
      const wb = t.readConfig(BlkConfig.WRITEBACK, 1);
      if (wb > 1) w.push(`writeback is ${wb}: taken as writeback`);
      cache = wb === 0 ? 'writethrough' : 'writeback';
    }
    const out: BlkDeviceInfo = {
      capacity,
      readOnly: has(BlkF.RO),
      blkSize,
      segMax,
      sizeMax,
      numQueues,
      cache,
      flush: has(BlkF.FLUSH),
      configWce: has(BlkF.CONFIG_WCE),
      ...(topology ? { topology } : {}),
      ...(discard ? { discard } : {}),
      ...(wz ? { writeZeroes: { ...wz, mayUnmap: t.readConfig(BlkConfig.WRITE_ZEROES_MAY_UNMAP, 1) !== 0 } } : {}),
      ...(secureErase ? { secureErase } : {}),
    };
    if (has(BlkF.ZONED)) {
      const o = BlkConfig.ZONED;
      const model = t.readConfig(o + BlkZonedConfig.MODEL, 1);
      if (model === BlkZoneModel.HM || model === BlkZoneModel.HA) {
        const zoneSectors = r32(o + BlkZonedConfig.ZONE_SECTORS);
        if (zoneSectors === 0) throw new DeviceMisbehaviourError('blk.zone_sectors', 'zoned device reports zone_sectors 0', { statements: ['blk.device.10'], expected: '> 0', seen: '0' });
        let wg = r32(o + BlkZonedConfig.WRITE_GRANULARITY);
        if (wg === 0 || wg % SECTOR !== 0) {
          w.push(`write_granularity ${wg}: taken as 512`);
          wg = SECTOR;
        }
        const nrZones = Math.ceil(capacity / zoneSectors);
        out.zoned = { model: model === BlkZoneModel.HM ? 'hm' : 'ha', zoneSectors, maxOpen: r32(o + BlkZonedConfig.MAX_OPEN_ZONES), maxActive: r32(o + BlkZonedConfig.MAX_ACTIVE_ZONES), maxAppendSectors: r32(o + BlkZonedConfig.MAX_APPEND_SECTORS), writeGranularity: wg, nrZones, types: new Uint8Array(nrZones) };
      } else if (model !== BlkZoneModel.NONE) {
        throw new DeviceMisbehaviourError('blk.zone_model', 'unknown zoned model', { statements: ['blk.device.9'], expected: '0, 1 or 2', seen: String(model) });
      }
    }
    return out;
  });
  warnings.push(...w);
  return info;
}
