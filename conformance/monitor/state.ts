/**
 * What the monitor keeps per device: the registers the driver programmed, the negotiated features,
 * the rings it follows (split and packed) with their in-flight buffers, a virtio-pci function's
 * layout, and the interrupt counters. Plain data and small helpers only; the rules live in the
 * files named after their spec area.
 */
import type { Machine } from '../../device-models/machine/machine.ts';
import type { PlatformDevice } from '../../spec-refs/platform/platform.ts';

export interface InFlight {
  readonly head: number;
  /** Order in which the chain was made available (IN_ORDER batches retire every older chain). */
  seq: number;
  readonly writable: number;
  /** Descriptor-table bytes of the chain (addr/len/flags/next of each descriptor), as made available. */
  readonly descs: { readonly gpa: number; readonly bytes: Uint8Array }[];
  /** Device-readable buffer prefixes as made available. */
  readonly readable: { readonly gpa: number; readonly bytes: Uint8Array }[];
}

export interface RingState {
  readonly index: number;
  readonly size: number;
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  lastAvail: number;
  lastUsed: number;
  /** avail idx at the last notification of this queue. */
  notifiedAvail: number;
  readonly inflight: Map<number, InFlight[]>;
  inflightCount: number;
  /** A used entry was added at this used idx window without a notification yet: [from, to). */
  owed: { from: number; to: number; usedEvent: number; flags: number; irqsAt: number } | null;
  broken: boolean;
}

/** A packed ring as the monitor follows it: its own copies of the driver's and the device's positions and wrap counters. */
export interface PackedState {
  readonly index: number;
  readonly size: number;
  readonly desc: number;
  availPos: number;
  availWrap: boolean;
  usedPos: number;
  usedWrap: boolean;
  /** Buffers made available and not yet used, oldest first (n: ring slots the list took). */
  readonly inflight: { id: number; n: number; writable: number; readable: InFlight['readable']; seq: number }[];
  seq: number;
  broken: boolean;
}

export interface QueueRegs {
  size: number;
  /** Legacy virtio-mmio QueueAlign. */
  align: number;
  desc: number;
  driver: number;
  device: number;
  ready: boolean;
}

/** Where a virtio-pci function keeps its structures (read from its capability list). */
export interface PciLayout {
  readonly dev: number;
  readonly fn: number;
  /** ECAM address of the function's configuration space. */
  readonly cfg: number;
  readonly common?: { bar: number; off: number; len: number };
  readonly notify?: { bar: number; off: number; len: number; mult: number };
  readonly isr?: { bar: number; off: number; len: number };
  readonly device?: { bar: number; off: number; len: number };
  /** Offset of the PCI_CFG capability (0: none). */
  readonly pciCfg: number;
  /** Offset of the MSI-X capability (0: none), and where its table sits. */
  readonly msix: number;
  readonly msixBar: number;
  readonly msixOff: number;
  /** The transitional/legacy register block's BAR (0), or -1 for a modern-only function. */
  readonly legacyBar: number;
}

export interface DevState {
  /** The virtio-mmio platform device (undefined for virtio-pci functions). */
  readonly pd: PlatformDevice | undefined;
  readonly kind: 'mmio' | 'pci';
  readonly name: string;
  readonly pci?: PciLayout;
  /** Interrupt vectors this device signals on (mmio: its line; pci: INTx and the MSI-X messages the driver programmed). */
  readonly vectors: Set<number>;
  /** virtio-pci: the MSI-X vector the driver gave each queue (0xffff: none). */
  readonly queueVector: Map<number, number>;
  /** virtio-pci: queue_notify_off and queue_notif_config_data as read by the driver. */
  readonly notifyOff: Map<number, number>;
  readonly notifyData: Map<number, number>;
  /** Legacy virtio-mmio GuestPageSize. */
  pageSize: number;
  readMagic: boolean;
  readVersion: boolean;
  readDeviceId: boolean;
  deviceId: number | undefined;
  version: number | undefined;
  /** Last status the driver set or read (driver-owned bits). */
  status: number;
  sawReset: boolean;
  failedSet: boolean;
  featuresRefused: boolean;
  featuresOkWritten: boolean;
  driverOk: boolean;
  devFeatSelWritten: boolean;
  drvFeatSelWritten: boolean;
  devFeatSel: number;
  drvFeatSel: number;
  readonly offered: Map<number, number>;
  readonly accepted: Map<number, number>;
  queueSel: number;
  readonly queues: Map<number, QueueRegs>;
  readonly rings: Map<number, RingState>;
  readonly prings: Map<number, PackedState>;
  negotiated: { indirect: boolean; eventIdx: boolean; packed: boolean; notificationData: boolean; notifConfigData: boolean; inOrder: boolean };
  /** InterruptStatus bits read and not yet acknowledged. */
  unacked: number;
  /** Interrupts delivered on this device's vector so far, and the count when the current wait began. */
  irqsTotal: number;
  irqsAtEnter: number;
  /** irqsTotal when the driver last read InterruptStatus. */
  irqsHandled: number;
  /** irqsTotal when the driver last took an interrupt for this device's vector (wait/poll returned it). */
  irqsTaken: number;
  /**
   * virtio-net notification coalescing the driver asked for (NOTF_COAL_TX_SET / RX_SET / VQ_SET
   * commands seen on the control queue): [max_packets, max_usecs] for the transmit and receive
   * groups and per-queue overrides. Back to the group values when a queue is re-enabled
   * (net.device.109 / net.device.110), all cleared by a device reset.
   */
  coal: { tx: readonly [number, number]; rx: readonly [number, number]; readonly vq: Map<number, readonly [number, number]> };
}

export function u64(mem: Machine['mem'], gpa: number): number {
  return mem.read32(gpa) + mem.read32(gpa + 4) * 0x1_0000_0000;
}

/** vring_need_event: whether moving the index from old to new crossed event (all mod 2^16). */
export function needEvent(event: number, next: number, old: number): boolean {
  return ((next - event - 1) & 0xffff) < ((next - old) & 0xffff);
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function queue(d: DevState, i: number): QueueRegs {
  let q = d.queues.get(i);
  if (!q) d.queues.set(i, (q = { size: 0, align: 4096, desc: 0, driver: 0, device: 0, ready: false }));
  return q;
}
