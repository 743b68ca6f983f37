/**
 * The whole firmware pvkit gives QEMU: a 64 KiB image whose reset vector (its last 16 bytes, at
 * 0xFFFFFFF0) is `cli; hlt; jmp $-1` (FA F4 EB FD). The vCPU halts with interrupts off and stays
 * halted, so QEMU's main loop is free to serve qtest commands and device I/O.
 */
export const BIOS_SIZE = 64 * 1024;
export const RESET_VECTOR_CODE = Uint8Array.of(0xfa, 0xf4, 0xeb, 0xfd);

export function biosImage(): Uint8Array {
  const img = new Uint8Array(BIOS_SIZE);
  // rest is zero; 0xF4 padding would also halt, but the jmp keeps it halted after an NMI/SMI
  img.set(RESET_VECTOR_CODE, BIOS_SIZE - 16);
  return img;
}
