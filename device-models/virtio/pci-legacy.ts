/**
 * virtio-pci legacy interface, device side (transport-pci.tex, "Legacy Interfaces: A Note on PCI
 * Device Layout" and "Virtqueue Layout"): the register block in I/O BAR0 of a legacy or
 * transitional device: features (one 32-bit word), queue select / size / PFN (the split ring at
 * PFN * 4096, used ring aligned to 4096), notify, status, ISR, the MSI-X vectors, and the device
 * config after them (offset 20, or 24 with MSI-X enabled). Writing here makes the legacy
 * interface the active one.
 */
import type { AccessSize, RegisterHandler } from '../machine/bus.ts';
import { Legacy, VIRTIO_MSI_NO_VECTOR } from '../../spec-refs/abi/virtio-pci.ts';
import { legacySplitLayout } from './split-queue.ts';
import { PciTransportBase } from './pci-transport.ts';

/** The legacy register block; the modern interface (pci.ts) builds on it. */
export abstract class PciLegacyInterface extends PciTransportBase {
  readonly legacyBar: RegisterHandler = {
    read: (off, size) => this.guard(() => this.legacyRead(off, size), 'bar0', 'read', off, size),
    write: (off, size, v) => void this.guard(() => (this.legacyWrite(off, size, v >>> 0), 0), 'bar0', 'write', off, size),
  };

  private get legacyConfigOffset(): number {
    return this.fn.msixEnabled ? Legacy.CONFIG_OFF_MSIX : Legacy.CONFIG_OFF;
  }

  private legacyRead(off: number, size: AccessSize): number {
    const core = this.legacyCore!;
    const cfgOff = this.legacyConfigOffset;
    if (off >= cfgOff) {
      // Legacy config space: any access width gives the bytes of the natural layout (guest
      // endian: the simulated guest is x86, little-endian).
      const n = size === 8 ? 4 : size;
      const o = off - cfgOff;
      if (o % n === 0) return core.readConfig(o, n as 1 | 2 | 4);
      let v = 0;
      for (let i = 0; i < n; i++) v |= core.readConfig(o + i, 1) << (8 * i);
      return v >>> 0;
    }
    const q = core.queueConfig(this.legacyQueueSel);
    switch (off) {
      case Legacy.HOST_FEATURES:
        return core.deviceFeatureWord(0);
      case Legacy.GUEST_FEATURES:
        return core.driverFeatureWord(0);
      case Legacy.QUEUE_PFN:
        return this.legacyPfn[this.legacyQueueSel] ?? 0;
      case Legacy.QUEUE_NUM:
        return q ? q.maxSize : 0;
      case Legacy.QUEUE_SEL:
        return this.legacyQueueSel;
      case Legacy.QUEUE_NOTIFY:
        return 0;
      case Legacy.STATUS:
        return this.active === core ? core.status : 0;
      case Legacy.ISR:
        return this.readIsr();
      case Legacy.CONFIG_VECTOR:
        return this.configVector;
      case Legacy.QUEUE_VECTOR:
        return q ? this.queueVectors[q.index]! : VIRTIO_MSI_NO_VECTOR;
      default:
        this.bad('bar0', 'read', off, size, 'not a legacy register');
        return 0;
    }
  }

  private legacyWrite(off: number, size: AccessSize, v: number): void {
    const core = this.legacyCore!;
    const cfgOff = this.legacyConfigOffset;
    if (off >= cfgOff) {
      this.use(core);
      const n = size === 8 ? 4 : size;
      core.writeConfig(off - cfgOff, n as 1 | 2 | 4, v);
      return;
    }
    const sel = this.legacyQueueSel;
    switch (off) {
      case Legacy.GUEST_FEATURES:
        this.use(core);
        core.writeDriverFeatureWord(0, v);
        return;
      case Legacy.QUEUE_PFN:
        this.use(core);
        this.writePfn(sel, v);
        return;
      case Legacy.QUEUE_SEL:
        this.legacyQueueSel = v & 0xffff;
        return;
      case Legacy.QUEUE_NOTIFY:
        this.stats.notifies++;
        core.notify(v & 0xffff);
        return;
      case Legacy.STATUS:
        this.use(core);
        core.writeStatus(v & 0xff);
        return;
      case Legacy.CONFIG_VECTOR:
        this.configVector = this.mapVector(v & 0xffff);
        return;
      case Legacy.QUEUE_VECTOR:
        if (sel < this.numQueues) this.queueVectors[sel] = this.mapVector(v & 0xffff);
        return;
      default:
        this.bad('bar0', 'write', off, size, 'read-only or undefined legacy register');
    }
  }

  /** Legacy Queue Address: the split ring at PFN * 4096, used ring aligned to 4096; 0 stops the queue. */
  private writePfn(sel: number, pfn: number): void {
    const core = this.legacyCore!;
    const q = core.queueConfig(sel);
    if (!q) {
      this.driverError(core, 'queue.index', 'legacy queue address for a queue that does not exist', [], String(sel));
      return;
    }
    if (pfn === 0) {
      this.legacyPfn[sel] = 0;
      core.setQueueReady(sel, false);
      return;
    }
    if (q.ready) {
      this.driverError(core, 'queue.ready_write', 'legacy queue address rewritten while the queue is in use', [], `queue ${sel}`);
      return;
    }
    const l = legacySplitLayout(pfn * Legacy.PAGE, q.size, Legacy.ALIGN);
    core.setQueueArea(sel, 'desc', l.desc);
    core.setQueueArea(sel, 'driver', l.driver);
    core.setQueueArea(sel, 'device', l.device);
    core.setQueueReady(sel, true);
    this.legacyPfn[sel] = q.ready ? pfn : 0;
  }
}
