import type { VCpu } from './vcpu.ts';

/**
 * Interrupt lines and MSI delivery. A level-triggered line (INTx, virtio-mmio's interrupt)
 * stays asserted until its device lowers it; while it is asserted, the end of interrupt
 * (EOI) makes its vector pending again, as an IOAPIC re-delivers a level interrupt.
 * An MSI is an edge: a write of `data` to an address in the 0xFEExxxxx window, whose low
 * byte is the vector (Intel SDM Vol. 3A, "Message Signalled Interrupts").
 */
export class IrqLine {
  private level = false;
  /** Times the line went from low to high (each is one interrupt the device raised). */
  raised = 0;
  constructor(readonly gsi: number, readonly vector: number, private readonly ctl: InterruptController) {}

  get asserted(): boolean {
    return this.level;
  }

  assert(): void {
    if (this.level) return;
    this.level = true;
    this.raised++;
    this.ctl.deliver(this.vector, `gsi${this.gsi}`);
  }

  deassert(): void {
    this.level = false;
  }

  set(level: boolean): void {
    if (level) this.assert();
    else this.deassert();
  }
}

export type DeliveryListener = (vector: number, source: string) => void;

export const MSI_ADDRESS_BASE = 0xfee0_0000;

export class InterruptController {
  private readonly lines = new Map<number, IrqLine>();
  private readonly byVector = new Map<number, IrqLine>();
  private readonly listeners: DeliveryListener[] = [];
  /** Interrupts delivered to the vCPU, by vector. */
  delivered = 0;

  constructor(private readonly vcpu: VCpu, private readonly deliveryHook: (vector: number) => void = () => {}) {}

  /** A level-triggered line for a device; the vector is 0x20 + gsi unless given. */
  line(gsi: number, vector = 0x20 + gsi): IrqLine {
    let l = this.lines.get(gsi);
    if (!l) {
      l = new IrqLine(gsi, vector, this);
      this.lines.set(gsi, l);
      this.byVector.set(vector, l);
    }
    return l;
  }

  addListener(l: DeliveryListener): void {
    this.listeners.push(l);
  }

  /** Deliver an MSI message; returns false when the address is not an interrupt address. */
  msi(address: number, data: number): boolean {
    if ((address & 0xfff0_0000) >>> 0 !== MSI_ADDRESS_BASE) return false;
    this.deliver(data & 0xff, 'msi');
    return true;
  }

  deliver(vector: number, source: string): void {
    this.delivered++;
    this.vcpu.raiseVector(vector);
    this.deliveryHook(vector);
    for (const l of this.listeners) l(vector, source);
  }

  /** End of interrupt: a level line still asserted is delivered again. */
  eoi(vector: number): void {
    const l = this.byVector.get(vector);
    if (l && l.asserted) this.deliver(vector, `gsi${l.gsi}`);
  }
}
