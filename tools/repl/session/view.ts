/**
 * What every REPL helper returns, and the text helpers that write it: View (printable text plus
 * the data behind it), number/time/byte formatting, a violation with its statement paraphrase,
 * and a one-line description of an Ethernet frame.
 */
import { inspect } from 'node:util';
import type { Violation } from '../../../conformance/monitor.ts';
import { catalog } from '../../../spec-refs/catalog.ts';
import { ArpOp, EtherType, IcmpType, IpProto, ip4ToString, macToString, parseArp, parseFrame } from '../../../spec-refs/abi/packet.ts';

/** What a helper returns: printable text and the data behind it. */
export class View<T = unknown> {
  constructor(
    readonly text: string,
    readonly data?: T,
  ) {}
  toString(): string {
    return this.text;
  }
  [inspect.custom](): string {
    return this.text;
  }
}

export const hex = (n: number) => '0x' + n.toString(16);

/** A one-line description of an Ethernet frame (ARP and ICMP echo decoded). */
export function describeFrame(f: Uint8Array): string {
  if (f.length < 14) return `a runt frame of ${f.length} bytes`;
  const info = parseFrame(f);
  const head = `${f.length}-byte frame ${macToString(f, 6)} -> ${macToString(f, 0)}`;
  if (info.ethertype === EtherType.ARP) {
    const a = parseArp(f, 14);
    if (a) return `${head}, ARP ${a.op === ArpOp.REQUEST ? `who-has ${ip4ToString(a.tpa)} tell ${ip4ToString(a.spa)}` : `${ip4ToString(a.spa)} is-at ${macToString(a.sha)}`}`;
  }
  if (info.ipVersion === 4 && info.proto === IpProto.ICMP && info.l4 >= 0) {
    const type = f[info.l4]!;
    const seq = (f[info.l4 + 6]! << 8) | f[info.l4 + 7]!;
    const name = type === IcmpType.ECHO_REQUEST ? 'echo request' : type === IcmpType.ECHO_REPLY ? 'echo reply' : `type ${type}`;
    return `${head}, ICMP ${name} ${ip4ToString(f, info.l3 + 12)} -> ${ip4ToString(f, info.l3 + 16)} seq ${seq}`;
  }
  return `${head}, ethertype 0x${info.ethertype.toString(16)}`;
}

export function formatViolation(v: Violation): string {
  const e = catalog().byId(v.statement);
  const lines = [`  monitor: ${v.side} broke ${v.statement}: ${v.message}${v.expected !== undefined ? `; expected ${v.expected}` : ''}${v.seen !== undefined ? `; seen ${v.seen}` : ''}`];
  if (e) lines.push(`           ${e.id} (${e.side} ${e.keyword}) ${e.paraphrase} [${e.location}]`);
  return lines.join('\n');
}

export function fmtNs(ns: number): string {
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(3)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(3)} us`;
  return `${Math.round(ns)} ns`;
}

export function preview(b: Uint8Array): string {
  const hx = [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');
  const txt = [...b].map((x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : '.')).join('');
  return `${hx}  |${txt}|`;
}

/** Collapse runs of the same item: ['a','a','b'] -> ['a x2','b']. */
export function compress(items: string[]): string[] {
  const out: string[] = [];
  let prev = '';
  let n = 0;
  for (const it of [...items, '\u0000']) {
    if (it === prev) {
      n++;
      continue;
    }
    if (n) out.push(n > 1 ? `${prev} x${n}` : prev);
    prev = it;
    n = 1;
  }
  return out;
}
