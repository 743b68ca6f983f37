/**
 * The guest-memory interface both sides use: a driver reaches the memory it shares with a device
 * through it (GuestPlatform.mem), and a device model reads rings and buffers through it. The
 * simulated machine's GuestMemory (device-models/machine/memory.ts) and the QEMU qtest memory
 * (drivers/platform/qtest/memory.ts) implement it.
 */
/** The narrow view of guest memory that drivers and device models need. */
export interface GuestMemoryAccess {
  read8(gpa: number): number;
  read16(gpa: number): number;
  read32(gpa: number): number;
  read64(gpa: number): number;
  write8(gpa: number, v: number): void;
  write16(gpa: number, v: number): void;
  write32(gpa: number, v: number): void;
  write64(gpa: number, v: number): void;
  /** Copy `len` bytes out of guest memory. */
  readBytes(gpa: number, len: number): Uint8Array;
  /** Copy `data` into guest memory. */
  writeBytes(gpa: number, data: Uint8Array): void;
  fill(gpa: number, len: number, value: number): void;
  /** True when [gpa, gpa+len) lies entirely in RAM (it may span adjacent regions only if contiguous). */
  isRam(gpa: number, len: number): boolean;
  /**
   * Optional fast path for targets whose guest memory is local (the simulated machine): a
   * DataView over the RAM region holding [gpa, gpa+len) and gpa's offset in it, or undefined
   * (the range is not in one region, or the target has no such view: use the accessors).
   * A driver may cache it for memory it allocated, e.g. its ring areas.
   */
  mapView?(gpa: number, len: number): { readonly view: DataView; readonly offset: number } | undefined;
}
