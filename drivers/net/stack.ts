/**
 * A minimal guest IPv4 stack over VirtioNetDriver: ARP (answers requests for its address, resolves
 * peers) and ICMP echo (answers pings, sends them and collects replies). It is what an
 * end-to-end test needs to ping from a guest driver; it is not a TCP/IP stack.
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
import { NetHdr } from '../../spec-refs/abi/net.ts';
import { completeReceived, type RxFrame, type VirtioNetDriver } from './driver.ts';
import { TimeoutError } from '../../spec-refs/errors.ts';

export interface PingReply {
  readonly from: string;
  readonly id: number;
  readonly seq: number;
  readonly data: Uint8Array;
}

/** Steps in a row that may leave target time where it was before a wait gives up. */
const MAX_STALLED_STEPS = 100_000;

export class GuestIpStack {
  private readonly arp = new Map<string, Uint8Array>();
  readonly replies: PingReply[] = [];
  /** Frames that were not ARP or ICMP echo for us (kept for the caller). */
  readonly other: RxFrame[] = [];
  badChecksums = 0;
  echoRequestsAnswered = 0;

  constructor(readonly drv: VirtioNetDriver, readonly ip: Uint8Array) {
    drv.onReceive((f) => this.input(f));
  }

  get mac(): Uint8Array {
    return this.drv.mac;
  }

  /** A gratuitous ARP announcing our address (what the driver sends on VIRTIO_NET_S_ANNOUNCE). */
  gratuitousArp(): Uint8Array {
    return buildEthernet({ dst: BROADCAST, src: this.mac }, EtherType.ARP, buildArp({ op: ArpOp.REQUEST, sha: this.mac, spa: this.ip, tha: new Uint8Array(6), tpa: this.ip }));
  }

  private input(f: RxFrame): void {
    const data = completeReceived(f);
    const info = parseFrame(data);
    if (info.ethertype === EtherType.ARP) {
      const a = parseArp(data, info.vlan >= 0 ? 18 : 14);
      if (!a) return;
      this.arp.set(ip4ToString(a.spa), a.sha);
      if (a.op === ArpOp.REQUEST && ip4ToString(a.tpa) === ip4ToString(this.ip) && ip4ToString(a.spa) !== ip4ToString(this.ip)) {
        this.drv.send(buildEthernet({ dst: a.sha, src: this.mac }, EtherType.ARP, buildArp({ op: ArpOp.REPLY, sha: this.mac, spa: this.ip, tha: a.sha, tpa: a.spa })));
      }
      return;
    }
    // net.driver.74: trust the checksum only when the device vouched for it (DATA_VALID) or we just completed it.
    if (!(f.flags & (NetHdr.F_DATA_VALID | NetHdr.F_NEEDS_CSUM))) {
      const ck = verifyChecksums(data, info);
      if (!ck.ip || !ck.l4) {
        this.badChecksums++;
        return;
      }
    }
    const e = parseIcmpEcho(data, info);
    if (!e || ip4ToString(e.dst) !== ip4ToString(this.ip)) {
      this.other.push(f);
      return;
    }
    if (e.type === IcmpType.ECHO_REQUEST) {
      this.echoRequestsAnswered++;
      this.drv.send(buildPing({ dst: data.slice(6, 12), src: this.mac }, this.ip, e.src, IcmpType.ECHO_REPLY, e.id, e.seq, e.data));
    } else {
      this.replies.push({ from: ip4ToString(e.src), id: e.id, seq: e.seq, data: e.data });
    }
  }

  /** Resolve `ip` with ARP (bounded wait). */
  resolve(ip: Uint8Array, timeoutNs = 10_000_000, step?: () => void): Uint8Array {
    const key = ip4ToString(ip);
    const known = this.arp.get(key);
    if (known) return known;
    this.drv.send(buildEthernet({ dst: BROADCAST, src: this.mac }, EtherType.ARP, buildArp({ op: ArpOp.REQUEST, sha: this.mac, spa: this.ip, tha: new Uint8Array(6), tpa: ip })));
    this.until(() => this.arp.has(key), timeoutNs, `ARP reply from ${key}`, step);
    return this.arp.get(key)!;
  }

  /** Ping `ip` once and wait for the reply (bounded). `step` lets other guests run meanwhile. */
  ping(ip: Uint8Array, seq: number, data: Uint8Array = new Uint8Array(56).map((_, i) => i), timeoutNs = 10_000_000, step?: () => void): PingReply {
    const mac = this.resolve(ip, timeoutNs, step);
    const id = 0x5076;
    this.drv.send(buildPing({ dst: mac, src: this.mac }, this.ip, ip, IcmpType.ECHO_REQUEST, id, seq, data, seq));
    const match = () => this.replies.findIndex((r) => r.seq === seq && r.id === id && r.from === ip4ToString(ip));
    this.until(() => match() >= 0, timeoutNs, `echo reply ${seq} from ${ip4ToString(ip)}`, step);
    return this.replies.splice(match(), 1)[0]!;
  }

  private until(done: () => boolean, timeoutNs: number, what: string, step?: () => void): void {
    if (!step) {
      this.drv.dev.waitUntil(() => {
        this.drv.poll();
        return done();
      }, what, timeoutNs);
      return;
    }
    const p = this.drv.platform;
    const end = p.now() + timeoutNs;
    // the deadline bounds the wait only if step() lets target time pass: a step that never does
    // would spin for ever, so a long run of steps without progress in time ends the wait too
    let last = p.now();
    let stalled = 0;
    while (!done()) {
      const now = p.now();
      if (now >= end) throw new TimeoutError('net.stack.timeout', `timed out waiting for ${what}`, { expected: `within ${timeoutNs} ns` });
      if (now === last) {
        if (++stalled >= MAX_STALLED_STEPS) throw new TimeoutError('net.stack.stalled', `timed out waiting for ${what}: step() let no target time pass`, { expected: `within ${timeoutNs} ns`, seen: `${stalled} steps at ${now} ns` });
      } else {
        last = now;
        stalled = 0;
      }
      step();
    }
  }
}
