/**
 * Packed driver: used descriptors without VIRTQ_DESC_F_WRITE (packed-ring.tex "Write Flag",
 * "Element Address and Length"). The driver takes the length of such a descriptor when the buffer
 * had device-writable parts (QEMU 7.2 interop, as Linux), bounded by the writable length posted,
 * and reads 0 for a buffer with nothing device-writable; anything longer is still a misbehaviour.
 */
import { describe, expect, it } from 'vitest';
import { GuestMemory } from '../../device-models/machine/memory.ts';
import { ExtentAllocator } from '../../spec-refs/platform/dma.ts';
import { Packed } from '../../spec-refs/abi/virtio.ts';
import { DeviceMisbehaviourError } from '../../spec-refs/errors.ts';
import { PackedVirtqueue } from './packed.ts';

function world() {
  const mem = new GuestMemory([{ base: 0, size: 1 << 20 }]);
  const dma = new ExtentAllocator([{ base: 0x1000, size: (1 << 20) - 0x1000 }], (g, l) => mem.fill(g, l, 0));
  const q = new PackedVirtqueue<string>(mem, dma, 0, 8, () => {});
  /** Play the device: mark slot 0 used with this id, length and WRITE flag (wrap counter 1). */
  const use = (id: number, len: number, write: boolean) => {
    const d = q.descAddr;
    mem.write32(d + 8, len);
    mem.write16(d + 12, id);
    mem.write16(d + 14, Packed.DESC_F_AVAIL | Packed.DESC_F_USED | (write ? Packed.DESC_F_WRITE : 0));
  };
  return { mem, dma, q, use };
}

describe('packed driver: used length and the WRITE flag', () => {
  it('WRITE set: the length is taken (the spec case)', () => {
    const { dma, q, use } = world();
    q.add([{ addr: dma.alloc(16, 16), len: 16 }], [{ addr: dma.alloc(513, 16), len: 513 }], 'r');
    use(0, 513, true);
    expect(q.getUsed()).toEqual({ token: 'r', len: 513 });
    expect(q.interop.lenWithoutWriteFlag).toBe(0);
  });

  it('WRITE clear on a buffer with writable parts: the length is taken and counted (QEMU 7.2, Linux)', () => {
    const { dma, q, use } = world();
    q.add([{ addr: dma.alloc(16, 16), len: 16 }], [{ addr: dma.alloc(513, 16), len: 513 }], 'r');
    use(0, 1, false);
    expect(q.getUsed()).toEqual({ token: 'r', len: 1 });
    expect(q.interop.lenWithoutWriteFlag).toBe(1);
  });

  it('WRITE clear on a buffer with writable parts: a length above the writable length is still rejected', () => {
    const { dma, q, use } = world();
    q.add([{ addr: dma.alloc(16, 16), len: 16 }], [{ addr: dma.alloc(512, 16), len: 512 }], 'r');
    use(0, 513, false);
    expect(() => q.getUsed()).toThrow(DeviceMisbehaviourError);
  });

  it('WRITE clear on a device-readable-only buffer: the reserved length is ignored (0)', () => {
    const { dma, q, use } = world();
    q.add([{ addr: dma.alloc(64, 16), len: 64 }], [], 'tx');
    use(0, 0xdead, false);
    expect(q.getUsed()).toEqual({ token: 'tx', len: 0 });
    expect(q.interop.lenWithoutWriteFlag).toBe(0);
  });
});
