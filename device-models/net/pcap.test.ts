import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildL4Frame, ip4FromString, ip6FromString, macFromString } from '../../spec-refs/abi/packet.ts';
import { GuestIpStack } from '../../drivers/net/stack.ts';
import { NetHdr } from '../../spec-refs/abi/net.ts';
import { HostPeer } from './host-peer.ts';
import { PcapWriter } from './pcap.ts';
import { plug } from './switch.ts';
import { NetTestbed } from '../../conformance/harness/net.ts';

const haveTshark = spawnSync('tshark', ['--version'], { stdio: 'ignore' }).status === 0;
if (!haveTshark && process.env.CI) throw new Error('tshark is required in CI (.ci/run installs it)');
if (!haveTshark) console.warn('pcap.test.ts: tshark not installed; skipping the tshark decode test (apt-get install -y tshark)');

/** Capture a mix of traffic from a guest: ping, checksum-offloaded UDP/TCP, a TSO super-frame, IPv6. */
function capture(path: string): { frames: number } {
  const tb = new NetTestbed();
  const g = tb.addGuest({ device: { mtu: 1500 } });
  const host = new HostPeer(tb.scheduler, { mac: macFromString('02:00:00:00:00:fe'), ip: ip4FromString('10.0.0.254') });
  const hp = plug(tb.sw, host);
  const pcap = new PcapWriter(path, () => tb.scheduler.now).attach(hp);
  const stack = new GuestIpStack(g.driver, ip4FromString('10.0.0.1'));
  stack.ping(host.ip, 1);
  const eth = { dst: host.mac, src: g.driver.mac };
  const v4 = { src: stack.ip, dst: host.ip };
  const udp = buildL4Frame({ eth, ...v4, proto: 'udp', srcPort: 4000, dstPort: 9999, csum: 'partial' }, new Uint8Array(300).fill(0x41));
  g.driver.send(udp.frame, { csum: { start: udp.csumStart, offset: udp.csumOffset } });
  const tcp = buildL4Frame({ eth, ...v4, proto: 'tcp', srcPort: 40000, dstPort: 80, seq: 1000, csum: 'partial' }, new Uint8Array(800).fill(0x42));
  g.driver.send(tcp.frame, { csum: { start: tcp.csumStart, offset: tcp.csumOffset } });
  const big = buildL4Frame({ eth, ...v4, proto: 'tcp', srcPort: 40000, dstPort: 80, seq: 1800, csum: 'partial' }, new Uint8Array(20000).map((_, i) => i & 0xff));
  g.driver.send(big.frame, { gso: { type: NetHdr.GSO_TCPV4, size: 1448 } });
  const six = buildL4Frame({ eth, v6: true, src: ip6FromString('fd00::1'), dst: ip6FromString('fd00::fe'), proto: 'udp', srcPort: 5, dstPort: 6, csum: 'partial' }, new Uint8Array(99).fill(7));
  g.driver.send(six.frame, { csum: { start: six.csumStart, offset: six.csumOffset } });
  g.driver.flushTx();
  tb.runAll(1_000_000);
  pcap.close();
  return { frames: pcap.frames };
}

describe('pcap writer', () => {
  it('writes a well-formed libpcap file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvkit-pcap-'));
    try {
      const path = join(dir, 'a.pcap');
      const { frames } = capture(path);
      const b = readFileSync(path);
      expect(b.readUInt32LE(0)).toBe(0xa1b2c3d4);
      expect(b.readUInt32LE(20)).toBe(1);
      let off = 24;
      let n = 0;
      while (off < b.length) {
        const incl = b.readUInt32LE(off + 8);
        off += 16 + incl;
        n++;
      }
      expect(off).toBe(b.length);
      expect(n).toBe(frames);
    } finally {
      if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true }); else console.log(dir);
    }
  });

  it.skipIf(!haveTshark)('opens cleanly in tshark, which decodes every frame with good checksums', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pvkit-pcap-'));
    try {
      const path = join(dir, 'b.pcap');
      const { frames } = capture(path);
      const out = execFileSync('tshark', ['-r', path, '-o', 'ip.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE',
        '-T', 'fields', '-E', 'separator=|', '-e', 'frame.protocols', '-e', 'ip.checksum.status', '-e', 'tcp.checksum.status', '-e', 'udp.checksum.status', '-e', 'icmp.checksum.status', '-e', '_ws.expert.severity'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      const rows = out.trim().split('\n').map((l) => l.split('|'));
      expect(rows.length).toBe(frames);
      const protos = rows.map((r) => r[0]!);
      expect(protos.filter((p) => p.includes('arp')).length).toBe(2);
      expect(protos.filter((p) => p.includes('icmp')).length).toBe(2);
      // 1 TCP frame + the 20000-byte super-frame cut into 14 segments of 1448
      expect(protos.filter((p) => p.endsWith(':tcp') || p.includes(':tcp:')).length).toBe(1 + Math.ceil(20000 / 1448));
      expect(protos.filter((p) => p.includes('ipv6:udp')).length).toBe(1);
      for (const r of rows) {
        // status 1 = good; empty = no such layer. Never 0 (bad).
        for (const s of r.slice(1, 5)) expect(['', '1', '2']).toContain(s);
        expect(r.slice(1, 5).every((s) => s !== '0')).toBe(true);
      }
      const checked = rows.flatMap((r) => r.slice(1, 5)).filter((s) => s === '1').length;
      expect(checked).toBeGreaterThan(frames);
      // no expert-info errors (malformed packets would be severity "error")
      expect(rows.filter((r) => (r[5] ?? '').split(',').some((s) => Number(s) >= 0x800000)).length).toBe(0);
    } finally {
      if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true }); else console.log(dir);
    }
  });
});
