/**
 * A small host-side network peer: it answers ARP requests for its IPv4 address and ICMP echo
 * requests sent to it, and can ping others itself (resolving their MAC with ARP first). Enough
 * for an end-to-end test to ping from a guest driver and get a reply, and to check what the
 * guest puts on the wire (received frames are normalised and checksum-verified).
 */
import {
  ArpOp,
  BROADCAST,
  EtherType,
  IcmpType,
  buildArp,
  buildEthernet,
  buildPing,
  ip4ToString,
  parseArp,
  parseFrame,
  parseIcmpEcho,
  verifyChecksums,
} from '../../spec-refs/abi/packet.ts';
import type { Scheduler } from '../machine/scheduler.ts';
import type { NetBackend, NetEndpoint } from './device.ts';
import { normalize, type WireFrame } from './wire.ts';

export interface HostPeerOptions {
  name?: string;
  mac: Uint8Array;
  ip: Uint8Array;
  /** Delay before the peer answers (ns of simulated time). Default 20 µs. */
  replyDelayNs?: number;
}

export interface EchoReply {
  readonly from: string;
  readonly id: number;
  readonly seq: number;
  readonly data: Uint8Array;
  readonly at: number;
}

export class HostPeer implements NetEndpoint {
  readonly name: string;
  readonly mac: Uint8Array;
  readonly ip: Uint8Array;
  private backend: NetBackend | undefined;
  private readonly arpCache = new Map<string, Uint8Array>();
  private readonly pendingPings: { ip: Uint8Array; id: number; seq: number; data: Uint8Array }[] = [];
  private readonly delay: number;
  /** Counters and what the peer saw. */
  arpRequestsAnswered = 0;
  echoRequestsAnswered = 0;
  readonly replies: EchoReply[] = [];
  /** Frames whose checksums did not verify (they are ignored). */
  badChecksums = 0;
  received = 0;

  constructor(private readonly scheduler: Scheduler, opts: HostPeerOptions) {
    this.name = opts.name ?? 'host';
    this.mac = opts.mac.slice(0, 6);
    this.ip = opts.ip.slice(0, 4);
    this.delay = opts.replyDelayNs ?? 20_000;
  }

  connect(backend: NetBackend): void {
    this.backend = backend;
  }

  receive(wf: WireFrame): void {
    for (const f of normalize(wf)) this.handle(f);
  }

  private send(frame: Uint8Array): void {
    const b = this.backend;
    if (!b) return;
    this.scheduler.schedule(this.delay, `${this.name}:tx`, () => b.send({ data: frame, dataValid: true }));
  }

  private handle(f: Uint8Array): void {
    this.received++;
    const info = parseFrame(f);
    if (info.ethertype === EtherType.ARP) {
      const a = parseArp(f, 14 + (info.vlan >= 0 ? 4 : 0));
      if (!a) return;
      this.arpCache.set(ip4ToString(a.spa), a.sha);
      if (a.op === ArpOp.REQUEST && macEqualsIp(a.tpa, this.ip)) {
        this.arpRequestsAnswered++;
        const reply = buildArp({ op: ArpOp.REPLY, sha: this.mac, spa: this.ip, tha: a.sha, tpa: a.spa });
        this.send(buildEthernet({ dst: a.sha, src: this.mac }, EtherType.ARP, reply));
      }
      if (a.op === ArpOp.REPLY) this.flushPings();
      return;
    }
    if (info.ipVersion !== 4) return;
    const ck = verifyChecksums(f, info);
    if (!ck.ip || !ck.l4) {
      this.badChecksums++;
      return;
    }
    const e = parseIcmpEcho(f, info);
    if (!e || !macEqualsIp(e.dst, this.ip)) return;
    if (e.type === IcmpType.ECHO_REQUEST) {
      this.echoRequestsAnswered++;
      this.send(buildPing({ dst: f.slice(6, 12), src: this.mac }, this.ip, e.src, IcmpType.ECHO_REPLY, e.id, e.seq, e.data));
    } else {
      this.replies.push({ from: ip4ToString(e.src), id: e.id, seq: e.seq, data: e.data, at: this.scheduler.now });
    }
  }

  /** Send an ICMP echo request to `ip` (ARP first when its MAC is unknown). */
  ping(ip: Uint8Array, id: number, seq: number, data: Uint8Array = new Uint8Array(56)): void {
    this.pendingPings.push({ ip, id, seq, data });
    if (this.arpCache.has(ip4ToString(ip))) {
      this.flushPings();
      return;
    }
    const req = buildArp({ op: ArpOp.REQUEST, sha: this.mac, spa: this.ip, tha: new Uint8Array(6), tpa: ip });
    this.send(buildEthernet({ dst: BROADCAST, src: this.mac }, EtherType.ARP, req));
  }

  private flushPings(): void {
    for (let i = 0; i < this.pendingPings.length; ) {
      const p = this.pendingPings[i]!;
      const mac = this.arpCache.get(ip4ToString(p.ip));
      if (!mac) {
        i++;
        continue;
      }
      this.pendingPings.splice(i, 1);
      this.send(buildPing({ dst: mac, src: this.mac }, this.ip, p.ip, IcmpType.ECHO_REQUEST, p.id, p.seq, p.data));
    }
  }

  knows(ip: Uint8Array): boolean {
    return this.arpCache.has(ip4ToString(ip));
  }
}

function macEqualsIp(a: Uint8Array, b: Uint8Array): boolean {
  return a.length >= 4 && b.length >= 4 && a[0] === b[0] && a[1] === b[1] && a[2] === b[2] && a[3] === b[3];
}

