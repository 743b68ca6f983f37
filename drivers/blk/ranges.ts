/**
 * DISCARD, WRITE_ZEROES and SECURE_ERASE from the driver (device-types/blk/description.tex,
 * "Device Operation", struct virtio_blk_discard_write_zeroes): ranges split into segments within
 * max_*_sectors, cut at the *_sector_alignment, batched within max_*_seg (blk.driver.17, .19,
 * .20, .21), inside the capacity (blk.driver.12); unmap only for write zeroes (blk.driver.24).
 * VirtioBlkDriver.discard / writeZeroes / secureErase call these.
 */
import type { BlkRange, BlkRequester, RangeLimits } from './types.ts';
import { Blk } from '../../spec-refs/abi/virtio.ts';
import { UsageError } from '../../spec-refs/errors.ts';
import { BlkDwz } from '../../spec-refs/abi/blk-layout.ts';
import { run } from './sync.ts';

const TWO32 = 0x1_0000_0000;

export function discard(drv: BlkRequester, ranges: readonly BlkRange[]): void {
  for (const r of ranges) if (r.unmap) throw new UsageError('usage.blk.unmap', 'unmap is not allowed in a discard', { statements: ['blk.driver.24'] });
  rangeOp(drv, Blk.T_DISCARD, drv.info.discard, ranges);
}

export function writeZeroes(drv: BlkRequester, ranges: readonly BlkRange[]): void {
  rangeOp(drv, Blk.T_WRITE_ZEROES, drv.info.writeZeroes, ranges);
}

export function secureErase(drv: BlkRequester, ranges: readonly BlkRange[]): void {
  for (const r of ranges) if (r.unmap) throw new UsageError('usage.blk.unmap', 'unmap only applies to write zeroes');
  rangeOp(drv, Blk.T_SECURE_ERASE, drv.info.secureErase, ranges);
}

/** Split ranges into segments within max_*_sectors and requests within max_*_seg, then run them. */
function rangeOp(drv: BlkRequester, type: number, lim: RangeLimits | undefined, ranges: readonly BlkRange[]): void {
  if (!lim) throw new UsageError('usage.blk.unsupported', 'the device does not support this request type', { seen: `type ${type}` });
  const segs: { sector: number; num: number; flags: number }[] = [];
  for (const r of ranges) {
    if (!Number.isSafeInteger(r.sector) || !Number.isSafeInteger(r.sectors) || r.sector < 0 || r.sectors < 0 || r.sector + r.sectors > drv.info.capacity) {
      throw new UsageError('usage.blk.request', 'range outside the disk', { statements: ['blk.driver.12'], expected: `within ${drv.info.capacity} sectors`, seen: `${r.sector}+${r.sectors}` });
    }
    let s = r.sector;
    let left = r.sectors;
    while (left > 0) {
      let n = Math.min(left, lim.maxSectors);
      // keep later pieces aligned: cut at an alignment boundary when the piece is not the last
      if (lim.alignment > 1 && n < left) {
        const end = s + n;
        const cut = end - (end % lim.alignment);
        if (cut > s) n = cut - s;
      }
      segs.push({ sector: s, num: n, flags: r.unmap ? Blk.WRITE_ZEROES_FLAG_UNMAP : 0 });
      s += n;
      left -= n;
    }
  }
  const mem = drv.platform.mem;
  const dma = drv.platform.dma;
  for (let i = 0; i < segs.length; i += lim.maxSeg) {
    const batch = segs.slice(i, i + lim.maxSeg);
    const buf = dma.alloc(batch.length * BlkDwz.SIZE, 16);
    try {
      batch.forEach((sg, k) => {
        const o = buf + k * BlkDwz.SIZE;
        mem.write32(o + BlkDwz.SECTOR, sg.sector % TWO32);
        mem.write32(o + BlkDwz.SECTOR + 4, Math.floor(sg.sector / TWO32));
        mem.write32(o + BlkDwz.NUM_SECTORS, sg.num);
        mem.write32(o + BlkDwz.FLAGS, sg.flags);
      });
      run(drv, type, 0, buf, batch.length * BlkDwz.SIZE);
    } finally {
      dma.free(buf);
    }
  }
}
