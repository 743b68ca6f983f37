/**
 * Rings and requests by hand: ring() shows a virtqueue as it sits in guest memory; read(),
 * write(), flush() post virtio-blk requests; rx(), send(), arp(), ping() post virtio-net buffers;
 * kick() publishes them and says why a notification was or was not sent.
 */
import { BlkReqHeader } from '../../../spec-refs/abi/blk-layout.ts';
import { ArpOp, BROADCAST, EtherType, IcmpType, buildArp, buildEthernet, buildPing, ip4FromString } from '../../../spec-refs/abi/packet.ts';
import { netHdrSize } from '../../../spec-refs/abi/net.ts';
import { UsageError } from '../../../spec-refs/errors.ts';
import { Blk, F, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { readPacked, readSplit, renderPacked, renderSplit } from '../ring-view.ts';
import { InitSession } from './init.ts';
import type { DeviceKind, Seg, Token } from './machine.ts';
import { View, describeFrame, hex, preview } from './view.ts';

/** The session's ring viewer and the buffers it posts by hand. */
export class RequestSession extends InitSession {
  private reqs = 0;

  // ------------------------------------------------------------------ rings and requests

  protected vq(index: number) {
    const q = this.queues.get(index);
    if (!q) throw new UsageError('usage.repl.queue', `queue ${index} is not set up yet: step() through initialisation (or init()) first`);
    return q;
  }

  /** Pretty-print a virtqueue from guest memory: descriptors, rings, event positions, which descriptors are free / in flight / used. */
  ring(index = 0, opts: { all?: boolean } = {}): View {
    const q = this.vq(index);
    const w = this.watchers.get(index)!;
    this.syncWatchers();
    const mem = this.machine.mem;
    const title = `queue ${index}`;
    const pending = this.unpublished.get(index) ?? 0;
    let text = w.layout === 'packed' ? renderPacked(readPacked(mem, q.addresses), w, { ...opts, title }) : renderSplit(readSplit(mem, q.addresses), w, { ...opts, title, added: w.unpublished(pending) });
    if (pending && w.layout === 'split') text += `\n  ${pending} buffer(s) added but not published: descriptors and ring entry written, avail idx not moved yet; kick() publishes`;
    return new View(text, { counts: w.counts(), buffers: [...w.buffers.values()] });
  }

  /** A virtio-blk request: header (device-readable), data, status byte (device-writable). */
  protected blkRequest(kind: string, type: number, sector: number, dataLen: number, dataWritable: boolean, fill?: Uint8Array): { out: Seg[]; inp: Seg[]; token: Token; parts: string[] } {
    const dma = this.machine.platform.dma;
    const mem = this.machine.mem;
    const hdr = dma.alloc(BlkReqHeader.SIZE, 16);
    mem.write32(hdr + BlkReqHeader.TYPE, type);
    mem.write32(hdr + BlkReqHeader.RESERVED, 0);
    mem.write64(hdr + BlkReqHeader.SECTOR, sector);
    const data = dataLen ? dma.alloc(dataLen, 16) : 0;
    if (fill) mem.writeBytes(data, fill);
    const status = dma.alloc(1, 1);
    mem.write8(status, 0xff);
    const n = ++this.reqs;
    const token: Token = {
      n,
      kind,
      postedAt: this.machine.scheduler.now,
      allocations: data ? [hdr, status, data] : [hdr, status],
      done: (len: number) => {
        const st = mem.read8(status);
        const stName = st === Blk.S_OK ? 'OK' : st === Blk.S_IOERR ? 'IOERR' : st === Blk.S_UNSUPP ? 'UNSUPP' : `?${st}`;
        let line = `#${n} ${kind} sector ${sector}: status ${stName}, device wrote ${len} byte(s)`;
        if (kind === 'read' && dataLen) line += `\n     data: ${preview(mem.readBytes(data, Math.min(32, dataLen)))}`;
        return line;
      },
    };
    const out: Seg[] = [{ addr: hdr, len: BlkReqHeader.SIZE }];
    const inp: Seg[] = [];
    if (dataLen) (dataWritable ? inp : out).push({ addr: data, len: dataLen });
    inp.push({ addr: status, len: 1 });
    const parts = [`header ${hex(hdr)} (16 bytes, device-readable)`];
    if (dataLen) parts.push(`data ${hex(data)} (${dataLen} bytes, device-${dataWritable ? 'writable' : 'readable'})`);
    parts.push(`status ${hex(status)} (1 byte, device-writable)`);
    return { out, inp, token, parts };
  }

  /** Add one buffer to `queue` by hand, and kick unless told not to. */
  private postBuffer(queue: number, title: string, make: () => { out: Seg[]; inp: Seg[]; token: Token; parts: string[] }, kick: boolean): View {
    const q = this.vq(queue);
    return this.report(`${title} on queue ${queue}${kick ? '' : ' (not kicked: kick() publishes and notifies)'}`, () => {
      const { out, inp, token, parts } = make();
      if (!q.add(out, inp, token)) {
        for (const a of token.allocations) this.machine.platform.dma.free(a);
        return '  no room in the ring: collect() used buffers first';
      }
      let text = '  ' + parts.join(', ');
      this.unpublished.set(queue, (this.unpublished.get(queue) ?? 0) + 1);
      if (kick) {
        this.unpublished.set(queue, 0);
        text += q.kick() ? '\n  kicked: the device asked to be notified, so the driver wrote its notification register' : `\n  published; no notification: ${this.whySuppressed(queue)}`;
      }
      return text;
    });
  }

  private post(kind: string, type: number, sector: number, dataLen: number, dataWritable: boolean, fill: Uint8Array | undefined, kick: boolean, queue: number): View {
    this.needDevice('blk', kind);
    return this.postBuffer(queue, `${kind}: request #${this.reqs + 1}`, () => this.blkRequest(kind, type, sector, dataLen, dataWritable, fill), kick);
  }

  private needDevice(d: DeviceKind, what: string): void {
    if (this.device !== d) throw new UsageError('usage.repl.device', `${what}() is a virtio-${d} helper; this session drives virtio-${this.device}`);
  }

  /** Post a blk read (VIRTIO_BLK_T_IN) of `sectors` 512-byte sectors at `sector`; kicks unless {kick:false}. */
  read(sector = 0, sectors = 1, opts: { kick?: boolean; queue?: number } = {}): View {
    return this.post('read', Blk.T_IN, sector, sectors * Blk.SECTOR_SIZE, true, undefined, opts.kick ?? true, opts.queue ?? 0);
  }

  /** Post a blk write (VIRTIO_BLK_T_OUT) of `data` (a string or bytes, padded to whole sectors) at `sector`. */
  write(sector: number, data: string | Uint8Array, opts: { kick?: boolean; queue?: number } = {}): View {
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
    const len = Math.max(1, Math.ceil(bytes.length / Blk.SECTOR_SIZE)) * Blk.SECTOR_SIZE;
    const buf = new Uint8Array(len);
    buf.set(bytes);
    return this.post('write', Blk.T_OUT, sector, len, false, buf, opts.kick ?? true, opts.queue ?? 0);
  }

  /** Post a blk FLUSH. */
  flush(opts: { kick?: boolean; queue?: number } = {}): View {
    return this.post('flush', Blk.T_FLUSH, 0, 0, false, undefined, opts.kick ?? true, opts.queue ?? 0);
  }

  // ------------------------------------------------------------------ virtio-net by hand

  private netHdrBytes(): number {
    return netHdrSize(this.chosen);
  }

  /** A transmit buffer: the virtio-net header (all zero: no offloads asked) and the frame, both device-readable. */
  protected txFrame(frame: Uint8Array): { out: Seg[]; inp: Seg[]; token: Token; parts: string[] } {
    const dma = this.machine.platform.dma;
    const mem = this.machine.mem;
    const hl = this.netHdrBytes();
    const hdr = dma.alloc(hl, 16);
    const data = dma.alloc(frame.length, 16);
    mem.writeBytes(data, frame);
    const n = ++this.reqs;
    const what = describeFrame(frame);
    const token: Token = { n, kind: 'tx', postedAt: this.machine.scheduler.now, allocations: [hdr, data], done: (len) => `#${n} tx ${what}: sent (device reports ${len} byte(s) written, as it should for a transmit buffer)` };
    return { out: [{ addr: hdr, len: hl }, { addr: data, len: frame.length }], inp: [], token, parts: [`virtio-net header ${hex(hdr)} (${hl} bytes, device-readable)`, `frame ${hex(data)} (${frame.length} bytes, device-readable): ${what}`] };
  }

  /** A receive buffer: one device-writable descriptor for the header and a whole frame. */
  private rxBuffer(): { out: Seg[]; inp: Seg[]; token: Token; parts: string[] } {
    const dma = this.machine.platform.dma;
    const mem = this.machine.mem;
    const hl = this.netHdrBytes();
    const size = hl + 1514;
    const buf = dma.alloc(size, 16);
    const n = ++this.reqs;
    const token: Token = {
      n,
      kind: 'rx',
      postedAt: this.machine.scheduler.now,
      allocations: [buf],
      done: (len) => {
        if (len < hl) return `#${n} rx: only ${len} byte(s), shorter than the ${hl}-byte header`;
        const frame = mem.readBytes(buf + hl, len - hl);
        return `#${n} rx ${len} byte(s) = ${hl}-byte header + ${describeFrame(frame)}`;
      },
    };
    return { out: [], inp: [{ addr: buf, len: size }], token, parts: [`receive buffer ${hex(buf)} (${size} bytes, device-writable: ${hl}-byte header + a 1514-byte frame)`] };
  }

  protected arpFrame(ip: string): Uint8Array {
    const n = this.netSim!;
    return buildEthernet({ dst: BROADCAST, src: n.guestMac }, EtherType.ARP, buildArp({ op: ArpOp.REQUEST, sha: n.guestMac, spa: n.guestIp, tha: new Uint8Array(6), tpa: ip4FromString(ip) }));
  }

  /** Post `count` receive buffers on receiveq1 (queue 0) and kick: frames for the guest land in them. */
  rx(count = 4, opts: { kick?: boolean } = {}): View {
    this.needDevice('net', 'rx');
    const views: string[] = [];
    for (let i = 0; i < count; i++) views.push(this.postBuffer(0, `rx: buffer #${this.reqs + 1}`, () => this.rxBuffer(), (opts.kick ?? true) && i === count - 1).text);
    return new View(views.join('\n'));
  }

  /** Transmit a frame (bytes) on transmitq1 (queue 1). */
  send(frame: Uint8Array, opts: { kick?: boolean } = {}): View {
    this.needDevice('net', 'send');
    return this.postBuffer(1, `send: buffer #${this.reqs + 1}`, () => this.txFrame(frame), opts.kick ?? true);
  }

  /** Transmit an ARP request for `ip` (the host peer is 10.0.2.2 and answers). */
  arp(ip = '10.0.2.2', opts: { kick?: boolean } = {}): View {
    this.needDevice('net', 'arp');
    return this.send(this.arpFrame(ip), opts);
  }

  /** Transmit an ICMP echo request to the host peer (10.0.2.2), which answers with an echo reply. */
  ping(seq = 1, opts: { kick?: boolean } = {}): View {
    this.needDevice('net', 'ping');
    const n = this.netSim!;
    const frame = buildPing({ dst: n.peer.mac, src: n.guestMac }, n.guestIp, n.peer.ip, IcmpType.ECHO_REQUEST, 0x7076, seq, new TextEncoder().encode('pvkit repl ping'));
    return this.send(frame, opts);
  }

  /** Publish what was added and notify the device if it wants a notification. */
  kick(queue = 0): View {
    const q = this.vq(queue);
    const pending = this.unpublished.get(queue) ?? 0;
    this.unpublished.set(queue, 0);
    return this.report(`kick queue ${queue}`, () => {
      const notified = q.kick();
      const lines = [pending ? `  published ${pending} buffer(s)` : '  nothing new to publish'];
      lines.push(notified ? '  notified the device (QueueNotify)' : `  no notification: ${this.whySuppressed(queue)}`);
      return lines.join('\n');
    });
  }

  /** Why the last kick did not notify, from what the device wrote in shared memory. */
  private whySuppressed(queue: number): string {
    const q = this.vq(queue);
    const mem = this.machine.mem;
    const a = q.addresses;
    if (q.layout === 'packed') {
      const flags = mem.read16(a.device + 2) & 3;
      return flags === 1 ? 'the device event suppression says DISABLE' : flags === 2 ? 'the device event suppression names a later descriptor (event idx)' : 'nothing was published';
    }
    if (hasFeature(this.chosen, F.EVENT_IDX)) {
      const ev = mem.read16(a.device + 4 + 8 * q.size);
      return `avail_event is ${ev} and no new entry went in at that index, so the driver does not notify (split.driver.24, split.driver.25): the device has not caught up with what it was already told about and will find these buffers when it runs`;
    }
    return 'the used ring flags say NO_NOTIFY (split.driver.21)';
  }
}
