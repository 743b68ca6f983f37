/**
 * Synchronous virtio-blk requests built on VirtioBlkDriver's submit/wait: run one request and
 * throw unless it completes with VIRTIO_BLK_S_OK, and the bounce-buffered read/write that splits
 * a transfer within the device's limits (seg_max * size_max) and, on a zoned device, at zone
 * boundaries (blk.device.50); GET_ID (blk.driver.18).
 */
import type { DmaBuffer } from '../core/virtqueue.ts';
import type { BlkRequester } from './types.ts';
import { Blk } from '../../spec-refs/abi/virtio.ts';
import { PvkitError, RequestError, UsageError } from '../../spec-refs/errors.ts';

const SECTOR = 512;

export const NO_DATA: readonly DmaBuffer[] = [];

/** One request, waited for; throws its error or a RequestError unless the status is OK. */
export function run(drv: BlkRequester, type: number, sector: number, buf: number, len: number, queue?: number): void {
  const h = drv.submit({ type, sector, data: len > 0 ? [{ addr: buf, len }] : NO_DATA, queue });
  const r = drv.wait(h);
  if (r.error) throw r.error;
  if (r.status !== Blk.S_OK) throw new RequestError('blk.status', `request type ${type} failed`, { expected: 'VIRTIO_BLK_S_OK', seen: r.status === Blk.S_IOERR ? 'VIRTIO_BLK_S_IOERR' : 'VIRTIO_BLK_S_UNSUPP' });
}

/** Read into / write from `buf` through a bounce buffer, in requests of at most maxTransfer bytes. */
export function transfer(drv: BlkRequester, type: number, sector: number, buf: Uint8Array): void {
  if (buf.length % SECTOR !== 0) throw new UsageError('usage.blk.request', 'buffer is not a multiple of 512 bytes', { statements: ['blk.driver.16'], seen: String(buf.length) });
  if (buf.length === 0) return;
  const dma = drv.platform.dma;
  const mem = drv.platform.mem;
  const chunk = drv.maxTransfer;
  const bounce = dma.alloc(buf.length, 4096);
  try {
    if (type === Blk.T_OUT) mem.writeBytes(bounce, buf);
    const handles: number[] = [];
    const zs = drv.info.zoned?.zoneSectors;
    for (let o = 0; o < buf.length; ) {
      let n = Math.min(chunk, buf.length - o);
      if (zs) {
        // blk.device.50: on a zoned device a request stays inside one zone
        const s = sector + o / SECTOR;
        n = Math.min(n, ((Math.floor(s / zs) + 1) * zs - s) * SECTOR);
      }
      handles.push(drv.submit({ type, sector: sector + o / SECTOR, data: [{ addr: bounce + o, len: n }] }));
      o += n;
    }
    let failure: PvkitError | undefined;
    for (const h of handles) {
      const r = drv.wait(h);
      if (!failure && r.error) failure = r.error;
      else if (!failure && r.status !== Blk.S_OK) failure = new RequestError('blk.status', `${type === Blk.T_IN ? 'read' : 'write'} failed`, { expected: 'VIRTIO_BLK_S_OK', seen: String(r.status) });
    }
    if (failure) throw failure;
    if (type === Blk.T_IN) buf.set(mem.readBytes(bounce, buf.length));
  } finally {
    dma.free(bounce);
  }
}

/** The device ID string (up to 20 ASCII characters). */
export function getId(drv: BlkRequester): string {
  const dma = drv.platform.dma;
  const buf = dma.alloc(Blk.ID_BYTES, 16);
  try {
    run(drv, Blk.T_GET_ID, 0, buf, Blk.ID_BYTES);
    const b = drv.platform.mem.readBytes(buf, Blk.ID_BYTES);
    let end = b.indexOf(0);
    if (end < 0) end = Blk.ID_BYTES;
    let s = '';
    for (let i = 0; i < end; i++) s += String.fromCharCode(b[i]! & 0x7f);
    return s;
  } finally {
    dma.free(buf);
  }
}
