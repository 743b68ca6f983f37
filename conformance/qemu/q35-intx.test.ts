import { describe, expect, it } from 'vitest';
import { launchQemu } from './launcher.ts';
import { findConfig } from './configs.ts';
import { skipQemu } from './testing.ts';
import { Blk } from '../../spec-refs/abi/virtio.ts';

// A hand-written legacy virtio-pci request on q35 (no driver from another branch needed): checks
// the platform's port I/O, PCI config access, guest memory and, above all, that INTx of slot 4
// arrives on the vector pci.intxVector names (ICH9 routing: INTA of slot 4 -> PIRQE -> GSI 20).
const CF8 = 0xcf8;
const CFC = 0xcfc;
const SLOT = 4;
// legacy virtio-pci header (transport-pci.tex, "Legacy Interfaces: A Note on PCI Device Layout")
const L = { HOST_FEATURES: 0x00, GUEST_FEATURES: 0x04, QUEUE_PFN: 0x08, QUEUE_NUM: 0x0c, QUEUE_SEL: 0x0e, QUEUE_NOTIFY: 0x10, STATUS: 0x12, ISR: 0x13 } as const;

describe.skipIf(skipQemu)('q35 legacy virtio-pci by hand', () => {
  it('a virtio-blk read completes with an INTx on the vector intxVector gives', async () => {
    const s = await launchQemu(findConfig('q35-blk')!);
    try {
      const p = s.platform;
      const cfg = (off: number): number => (0x8000_0000 | (SLOT << 11) | off) >>> 0;
      p.pioWrite(CF8, 4, cfg(0x00));
      expect(p.pioRead(CFC, 4) >>> 0).toBe(0x1001_1af4);
      p.pioWrite(CF8, 4, cfg(0x3c));
      const pin = (p.pioRead(CFC, 4) >>> 8) & 0xff;
      expect(pin).toBe(1);
      // BAR0 (I/O) at the start of the I/O window; I/O decode and bus mastering on
      const io = p.pci!.ioWindow.base;
      p.pioWrite(CF8, 4, cfg(0x10));
      p.pioWrite(CFC, 4, io);
      p.pioWrite(CF8, 4, cfg(0x04));
      p.pioWrite(CFC, 2, 0x0005);
      // reset, ACKNOWLEDGE | DRIVER, no features, queue 0 in one legacy area (4096-aligned used ring)
      p.pioWrite(io + L.STATUS, 1, 0);
      p.pioWrite(io + L.STATUS, 1, 3);
      expect(p.pioRead(io + L.HOST_FEATURES, 4)).not.toBe(0);
      p.pioWrite(io + L.GUEST_FEATURES, 4, 0);
      p.pioWrite(io + L.QUEUE_SEL, 2, 0);
      const n = p.pioRead(io + L.QUEUE_NUM, 2);
      expect(n).toBeGreaterThan(0);
      const usedOff = Math.ceil((16 * n + 6 + 2 * n) / 4096) * 4096;
      const ring = p.dma.alloc(usedOff + 6 + 8 * n, 4096);
      p.pioWrite(io + L.QUEUE_PFN, 4, ring / 4096);
      p.pioWrite(io + L.STATUS, 1, 7);
      // a one-sector read: header, data, status in three descriptors
      const buf = p.dma.alloc(1024, 16);
      p.mem.write32(buf, Blk.T_IN);
      p.mem.write8(buf + 528, 0xff);
      const desc = (i: number, addr: number, len: number, flags: number, next: number): void => {
        p.mem.write64(ring + 16 * i, addr);
        p.mem.write32(ring + 16 * i + 8, len);
        p.mem.write16(ring + 16 * i + 12, flags);
        p.mem.write16(ring + 16 * i + 14, next);
      };
      desc(0, buf, 16, 1, 1);
      desc(1, buf + 16, 512, 3, 2);
      desc(2, buf + 528, 1, 2, 0);
      const avail = ring + 16 * n;
      p.mem.write16(avail + 4, 0);
      p.mem.write16(avail + 2, 1);
      p.pioWrite(io + L.QUEUE_NOTIFY, 2, 0);
      const v = p.irq.wait(2e9);
      expect(v).toBe(p.pci!.intxVector(0, SLOT, 0, pin));
      expect(v).toBe(0x20 + 20);
      expect(p.pioRead(io + L.ISR, 1) & 1).toBe(1); // reading the ISR acknowledges: the line drops
      p.irq.eoi(v!);
      expect(p.irq.poll()).toBeNull();
      expect(p.mem.read16(ring + usedOff + 2)).toBe(1);
      expect(p.mem.read32(ring + usedOff + 4)).toBe(0); // used id: the head
      expect(p.mem.read8(buf + 528)).toBe(Blk.S_OK);
    } finally {
      await s.close();
    }
  });
});
