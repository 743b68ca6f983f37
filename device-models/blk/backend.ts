import * as fs from 'node:fs';
import { UsageError } from '../../spec-refs/errors.ts';

/**
 * Storage behind a virtio-blk device model. Offsets and lengths are in bytes (the device model
 * turns 512-byte sectors into bytes and checks ranges against the capacity before calling).
 *
 * A backend may throw (an fs error, say): the device model catches it and completes the request
 * with VIRTIO_BLK_S_IOERR, so nothing a backend does can escape to the bus. Add a backend by
 * implementing this interface; see RamDisk and FileDisk for the two built in.
 */
export interface BlkBackend {
  readonly kind: string;
  /** Size in bytes (a multiple of 512). */
  readonly size: number;
  /** True when the storage itself cannot be written (the device then offers VIRTIO_BLK_F_RO). */
  readonly readOnly: boolean;
  /** True when the backend's data is persistent (a file): writes must reach it on flush. */
  readonly persistent: boolean;
  /**
   * Copy `len` bytes at disk `offset` into `dst[dstOffset..]`. `dst` is typically the bytes of a
   * guest RAM region: passing the region and an offset avoids a view per request.
   */
  read(offset: number, dst: Uint8Array, dstOffset: number, len: number): void;
  /** Store `src[srcOffset..srcOffset+len)` at disk `offset`. */
  write(offset: number, src: Uint8Array, srcOffset: number, len: number): void;
  /** Make every completed write stable (fsync for a file). */
  flush(): void;
  /** Deallocate `len` bytes at `offset`; later reads of the range return zeroes here. */
  discard(offset: number, len: number): void;
  /** Make the range read back as zeroes. */
  writeZeroes(offset: number, len: number): void;
  /** Erase the range so the old data cannot be recovered, then make that stable. */
  secureErase(offset: number, len: number): void;
  /** Change the size (a multiple of 512); new space reads as zeroes. */
  resize(size: number): void;
  /** Release the storage (close the file). */
  close(): void;
}

export const SECTOR = 512;

function checkSize(size: number): void {
  if (!Number.isSafeInteger(size) || size < 0 || size % SECTOR !== 0) {
    throw new UsageError('usage.blk.size', 'disk size must be a non-negative multiple of 512 bytes', { seen: String(size) });
  }
}

/** A disk held in one ArrayBuffer. Grows by reallocating (resize keeps the contents). */
export class RamDisk implements BlkBackend {
  readonly kind = 'ram';
  readonly persistent = false;
  private bytes: Uint8Array;

  constructor(size: number, readonly readOnly = false, init?: Uint8Array) {
    checkSize(size);
    this.bytes = new Uint8Array(size);
    if (init) this.bytes.set(init.subarray(0, size));
  }

  get size(): number {
    return this.bytes.length;
  }

  /** The disk's bytes (no copy): for tests and tools that inspect the medium. */
  get contents(): Uint8Array {
    return this.bytes;
  }

  read(offset: number, dst: Uint8Array, dstOffset: number, len: number): void {
    dst.set(this.bytes.subarray(offset, offset + len), dstOffset);
  }
  write(offset: number, src: Uint8Array, srcOffset: number, len: number): void {
    this.bytes.set(src.subarray(srcOffset, srcOffset + len), offset);
  }
  flush(): void {}
  discard(offset: number, len: number): void {
    this.bytes.fill(0, offset, offset + len);
  }
  writeZeroes(offset: number, len: number): void {
    this.bytes.fill(0, offset, offset + len);
  }
  secureErase(offset: number, len: number): void {
    this.bytes.fill(0, offset, offset + len);
  }
  resize(size: number): void {
    checkSize(size);
    const next = new Uint8Array(size);
    next.set(this.bytes.subarray(0, Math.min(size, this.bytes.length)));
    this.bytes = next;
  }
  close(): void {}
}

const ZERO_CHUNK = new Uint8Array(64 * 1024);

/**
 * A raw image file, accessed with synchronous positioned reads and writes on one file
 * descriptor. Reads and writes go straight between the file and guest memory (no bounce
 * buffer). `flush` is fsync, so a completed FLUSH means the data is on stable storage.
 */
export class FileDisk implements BlkBackend {
  readonly kind = 'file';
  readonly persistent = true;
  private fd: number;
  private _size: number;

  /**
   * Open `path` (created with `size` bytes when it does not exist and `size` is given). The
   * size is the file's length rounded down to 512 bytes, unless `size` is given, in which case
   * the file is extended or truncated to it.
   */
  constructor(readonly path: string, opts: { size?: number; readOnly?: boolean } = {}) {
    this.readOnly = opts.readOnly ?? false;
    try {
      this.fd = fs.openSync(path, this.readOnly ? 'r' : fs.existsSync(path) ? 'r+' : 'w+');
    } catch (e) {
      throw new UsageError('usage.blk.file', `cannot open disk image ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    if (opts.size !== undefined) {
      checkSize(opts.size);
      if (this.readOnly) throw new UsageError('usage.blk.file', 'cannot set the size of a read-only image', { seen: path });
      fs.ftruncateSync(this.fd, opts.size);
      this._size = opts.size;
    } else {
      const st = fs.fstatSync(this.fd);
      this._size = st.size - (st.size % SECTOR);
    }
  }
  readonly readOnly: boolean;

  get size(): number {
    return this._size;
  }

  read(offset: number, dst: Uint8Array, dstOffset: number, len: number): void {
    let done = 0;
    while (done < len) {
      const n = fs.readSync(this.fd, dst, dstOffset + done, len - done, offset + done);
      if (n === 0) {
        // a file shorter than its nominal size (truncated behind our back): the rest reads as zeroes
        dst.fill(0, dstOffset + done, dstOffset + len);
        return;
      }
      done += n;
    }
  }
  write(offset: number, src: Uint8Array, srcOffset: number, len: number): void {
    let done = 0;
    while (done < len) done += fs.writeSync(this.fd, src, srcOffset + done, len - done, offset + done);
  }
  flush(): void {
    fs.fsyncSync(this.fd);
  }
  discard(offset: number, len: number): void {
    // Node has no portable hole punching; writing zeroes keeps the contract "reads return zeroes".
    this.writeZeroes(offset, len);
  }
  writeZeroes(offset: number, len: number): void {
    let done = 0;
    while (done < len) {
      const n = Math.min(ZERO_CHUNK.length, len - done);
      this.write(offset + done, ZERO_CHUNK, 0, n);
      done += n;
    }
  }
  secureErase(offset: number, len: number): void {
    this.writeZeroes(offset, len);
    fs.fdatasyncSync(this.fd);
  }
  resize(size: number): void {
    checkSize(size);
    fs.ftruncateSync(this.fd, size);
    this._size = size;
  }
  close(): void {
    if (this.fd >= 0) {
      fs.closeSync(this.fd);
      this.fd = -1;
    }
  }
}
