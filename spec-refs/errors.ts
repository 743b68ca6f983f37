/**
 * Typed errors shared by every layer of pvkit.
 *
 * An error carries, where one applies, the id of the VIRTIO statement it is about
 * (a census id such as `split.device.3`, see spec-refs/), and what was expected
 * versus what was seen, so that a message alone is enough to act on.
 */
export interface PvkitErrorDetails {
  /** Census id(s) of the spec statement(s) concerned, if any. */
  readonly statements?: readonly string[];
  readonly expected?: string;
  readonly seen?: string;
}

export class PvkitError extends Error {
  readonly code: string;
  readonly statements: readonly string[];
  readonly expected: string | undefined;
  readonly seen: string | undefined;

  constructor(code: string, message: string, details: PvkitErrorDetails = {}) {
    const parts = [message];
    if (details.expected !== undefined) parts.push(`expected ${details.expected}`);
    if (details.seen !== undefined) parts.push(`seen ${details.seen}`);
    if (details.statements && details.statements.length > 0) parts.push(`[${details.statements.join(', ')}]`);
    super(parts.join('; '));
    this.name = new.target.name;
    this.code = code;
    this.statements = details.statements ?? [];
    this.expected = details.expected;
    this.seen = details.seen;
  }
}

/** Guest-physical access outside RAM, misaligned, or otherwise invalid. */
export class GuestMemoryError extends PvkitError {}

/** A bus access that no device decodes, or with a size the target does not accept. */
export class BusError extends PvkitError {}

/** The driver found the device misbehaving (bad used id, bad length, bad config...). */
export class DeviceMisbehaviourError extends PvkitError {}

/** The device found the driver misbehaving (bad descriptor chain, bad register write...). */
export class DriverMisbehaviourError extends PvkitError {}

/** A wait that did not complete within its bound. */
export class TimeoutError extends PvkitError {}

/** A request the device completed with an error status. */
export class RequestError extends PvkitError {}

/** A fault the (simulated) CPU delivers to guest code: `cpu.gp` (#GP), `cpu.pf` (#PF), `cpu.ud` (#UD). */
export class GuestFault extends PvkitError {}

/** Invalid arguments to a library call (not a spec matter). */
export class UsageError extends PvkitError {}

export function hex(n: number, width = 0): string {
  return '0x' + n.toString(16).padStart(width, '0');
}

/** Feature negotiation failed: the device refused FEATURES_OK, or lacks a feature the driver cannot do without. */
export class NegotiationError extends PvkitError {}

/** The device set DEVICE_NEEDS_RESET: it cannot go on until the driver resets it. */
export class DeviceNeedsResetError extends PvkitError {}
