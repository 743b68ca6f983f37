/**
 * virtio-net driver: what it asks for and how it starts — the features it knows
 * (NET_DRIVER_FEATURES), its options, and the initialisation up to DRIVER_OK (status_init.driver.6):
 * feature selection with prerequisites (features.driver.2), the config checks that must hold
 * before queues are set up (net.device.1 max_virtqueue_pairs, net.device.2 mtu), and which
 * queues to set up. The probe that follows (reading the config, posting buffers) is state.ts.
 *
 * A leaf of driver/: it knows no driver state.
 */
import type { GuestPlatform } from '../../../spec-refs/platform/platform.ts';
import type { VirtioTransport } from '../../transport/transport.ts';
import { VirtioDriverDevice } from '../../core/device.ts';
import { DeviceMisbehaviourError } from '../../../spec-refs/errors.ts';
import { F, NetF, bit, hasFeature } from '../../../spec-refs/abi/virtio.ts';
import { NetCfg, NetFx, pruneNetFeatures } from '../../../spec-refs/abi/net.ts';

/** Everything this driver knows how to use. */
export const NET_DRIVER_FEATURES: bigint = [
  NetF.CSUM, NetF.GUEST_CSUM, NetF.CTRL_GUEST_OFFLOADS, NetF.MTU, NetF.MAC, NetF.GUEST_TSO4, NetF.GUEST_TSO6,
  NetF.HOST_TSO4, NetF.HOST_TSO6, NetF.MRG_RXBUF, NetF.STATUS, NetF.CTRL_VQ, NetF.CTRL_RX, NetF.CTRL_VLAN,
  NetF.CTRL_RX_EXTRA, NetF.GUEST_ANNOUNCE, NetF.MQ, NetF.CTRL_MAC_ADDR, NetF.DEVICE_STATS, NetF.VQ_NOTF_COAL,
  NetF.NOTF_COAL, NetF.HASH_REPORT, NetF.RSS, NetF.SPEED_DUPLEX, NetF.GUEST_ECN, NetF.HOST_ECN, NetF.GUEST_HDRLEN,
  NetF.HOST_USO, NetF.GUEST_USO4, NetF.GUEST_USO6, NetFx.HOST_UDP_TUNNEL_GSO, NetFx.HOST_UDP_TUNNEL_GSO_CSUM, NetFx.GUEST_UDP_TUNNEL_GSO, NetFx.GUEST_UDP_TUNNEL_GSO_CSUM,
  F.VERSION_1, F.EVENT_IDX, F.INDIRECT_DESC, F.RING_PACKED, F.RING_RESET,
].reduce((s, b) => s | bit(b), 0n);

export interface NetDriverOptions {
  /** Features the driver may accept (default NET_DRIVER_FEATURES); intersected with the offer. */
  features?: bigint;
  /** Queue pairs to use (default: all the device has, at most 8). */
  pairs?: number;
  queueSize?: number;
  /** Receive buffer size in bytes (header included). Default: what the negotiated features need. */
  rxBufferSize?: number;
  /** Receive buffers to keep posted per queue (default: queue size). */
  rxBuffers?: number;
  /** MAC to use when the device does not provide one (VIRTIO_NET_F_MAC not negotiated). */
  mac?: Uint8Array;
  /** Frames kept for receive() when no callback is set (beyond: dropped). Default 4096. */
  rxQueueLimit?: number;
  /** Frames handled per NAPI poll round before interrupts are reconsidered. Default 64. */
  napiBudget?: number;
  timeoutNs?: number;
  /** Called when the device asks for an announcement (VIRTIO_NET_S_ANNOUNCE): return frames to send (e.g. gratuitous ARP). */
  announce?: () => Uint8Array[];
}

/** Negotiate and set up the device (VirtioDriverDevice.init) with the net checks; how many pairs it has and how many will be used. */
export function negotiate(platform: GuestPlatform, transport: VirtioTransport, opts: NetDriverOptions): { dev: VirtioDriverDevice; maxPairs: number; pairs: number } {
  const wanted = opts.features ?? NET_DRIVER_FEATURES;
  let maxPairs = 1;
  let pairs = 1;
  let queues: number[] = [];
  const initOpts = {
    features: wanted,
    queueSize: opts.queueSize ?? 256,
    timeoutNs: opts.timeoutNs,
    // features.driver.2: never accept a feature without its prerequisites.
    select: (chosen: bigint) => pruneNetFeatures(chosen),
    check: (d: VirtioDriverDevice) => {
      const has = (b: number) => hasFeature(d.features, b);
      if (has(NetF.MQ)) {
        maxPairs = d.config16(NetCfg.MAX_VIRTQUEUE_PAIRS);
        if (maxPairs < 1 || maxPairs > 0x8000) throw new DeviceMisbehaviourError('net.config.pairs', 'max_virtqueue_pairs out of range', { statements: ['net.device.1'], expected: '1..0x8000', seen: `${maxPairs}` });
      }
      if (has(NetF.MTU)) {
        const mtu = d.config16(NetCfg.MTU);
        if (mtu < 68) throw new DeviceMisbehaviourError('net.config.mtu', 'mtu out of range', { statements: ['net.device.2'], expected: '68..65535', seen: `${mtu}` });
      }
      pairs = Math.max(1, Math.min(maxPairs, opts.pairs ?? Math.min(maxPairs, 8)));
      queues = [];
      for (let p = 0; p < pairs; p++) queues.push(2 * p, 2 * p + 1);
      if (has(NetF.CTRL_VQ)) queues.push(has(NetF.MQ) ? 2 * maxPairs : 2);
    },
    // Read after `check` ran (VirtioDriverDevice reads `queues` once the configuration is known).
    get queues(): number[] {
      return queues;
    },
  };
  const dev = VirtioDriverDevice.init(platform, transport, initOpts);
  return { dev, maxPairs, pairs };
}
