/**
 * A simulated Ethernet switch joining any number of NICs and host-side peers: it learns which
 * port each source MAC lives behind, forwards known unicast frames to that port only, and floods
 * broadcast, multicast and unknown unicast to every other port. Taps (the pcap writer) see
 * every frame a port sends or receives.
 *
 * Forwarding is synchronous; endpoints that do real work on receipt (device models, the host
 * peer) queue it on the scheduler, so a frame's journey never recurses without bound.
 */
import { isMulticast, macKey } from '../../spec-refs/abi/packet.ts';
import type { NetBackend, NetEndpoint } from './device.ts';
import type { WireFrame } from './wire.ts';

export type TapDirection = 'in' | 'out';
/** Sees frames at a port: 'out' leaves the endpoint into the switch, 'in' goes to the endpoint. */
export type Tap = (frame: WireFrame, dir: TapDirection) => void;

export class SwitchPort implements NetBackend {
  readonly taps: Tap[] = [];
  /** Frames sent into the switch / delivered to the endpoint through this port. */
  sent = 0;
  delivered = 0;
  constructor(readonly sw: L2Switch, readonly index: number, readonly endpoint: NetEndpoint) {}

  send(frame: WireFrame): void {
    this.sent++;
    for (const t of this.taps) t(frame, 'out');
    this.sw.forward(this, frame);
  }

  deliver(frame: WireFrame): void {
    this.delivered++;
    for (const t of this.taps) t(frame, 'in');
    this.endpoint.receive(frame);
  }

  tap(t: Tap): void {
    this.taps.push(t);
  }
}

export interface SwitchOptions {
  /** Entries the MAC table holds before it starts over (flooding until it relearns). Default 4096. */
  macTableSize?: number;
}

export class L2Switch {
  readonly ports: SwitchPort[] = [];
  private readonly table = new Map<number, SwitchPort>();
  private readonly macTableSize: number;
  /** Frames flooded (destination unknown, broadcast or multicast) and forwarded to one port. */
  flooded = 0;
  unicast = 0;

  constructor(opts: SwitchOptions = {}) {
    this.macTableSize = opts.macTableSize ?? 4096;
  }

  /** Plug an endpoint in; the returned port is the endpoint's backend (NIC: `dev.connect(port)`). */
  attach(endpoint: NetEndpoint): SwitchPort {
    const p = new SwitchPort(this, this.ports.length, endpoint);
    this.ports.push(p);
    return p;
  }

  /** The port a MAC was learned on, if any. */
  lookup(mac: Uint8Array): SwitchPort | undefined {
    return this.table.get(macKey(mac, 0));
  }

  forward(from: SwitchPort, frame: WireFrame): void {
    const d = frame.data;
    if (d.length < 14) return;
    if (!isMulticast(d, 6)) {
      if (this.table.size >= this.macTableSize && !this.table.has(macKey(d, 6))) this.table.clear();
      this.table.set(macKey(d, 6), from);
    }
    if (!isMulticast(d, 0)) {
      const to = this.table.get(macKey(d, 0));
      if (to) {
        if (to !== from) {
          this.unicast++;
          to.deliver(frame);
        }
        return;
      }
    }
    this.flooded++;
    for (const p of this.ports) if (p !== from) p.deliver(frame);
  }
}

/** Join NICs (anything with `connect(backend)` that is also an endpoint) to a switch in one call. */
export function plug(sw: L2Switch, nic: NetEndpoint & { connect(b: NetBackend): void }): SwitchPort {
  const p = sw.attach(nic);
  nic.connect(p);
  return p;
}
