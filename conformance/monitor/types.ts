/**
 * The monitor's public types: a recorded violation, the options a monitor takes, and the chain
 * it hands to device-specific judges (`MonitorOptions.onChain`).
 */
import type { PlatformDevice } from '../../spec-refs/platform/platform.ts';


export interface Violation {
  readonly statement: string;
  /** The side that broke the statement. */
  readonly side: 'driver' | 'device';
  readonly device: string;
  readonly message: string;
  readonly expected?: string;
  readonly seen?: string;
  /** Virtual time (ns). */
  readonly at: number;
}

export interface MonitorOptions {
  /** Statement ids not to record (a scenario that breaks one on purpose). */
  readonly ignore?: readonly string[];
  /** Keep at most this many violations (default 1000); `count` keeps counting. */
  readonly max?: number;
  /** Monitor split rings in guest memory (default true). */
  readonly rings?: boolean;
  /** Bytes of each device-readable buffer snapshotted to detect device writes (default 512 per segment). */
  readonly snapshotBytes?: number;
  /**
   * Called for every chain a driver makes available (after the monitor's own judgement), with its
   * segments: device-specific judges (e.g. blk request rules) plug in here and report through
   * `report`.
   */
  readonly onChain?: (chain: ObservedChain, report: (statement: string, message: string, expected?: string, seen?: string) => void) => void;
}

/** A chain as the driver made it available. */
export interface ObservedChain {
  /** The virtio-mmio device (undefined for a virtio-pci function). */
  readonly device: PlatformDevice | undefined;
  readonly deviceName: string;
  readonly deviceId: number | undefined;
  readonly queue: number;
  readonly head: number;
  readonly readable: readonly { addr: number; len: number }[];
  readonly writable: readonly { addr: number; len: number }[];
  /** Reads device config (side-effect free, muted): for judges that need config values. */
  readonly config32: (offset: number) => number;
}
