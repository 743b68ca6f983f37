/**
 * Expected failures of QEMU 7.2's virtio devices under pvkit's checks: each entry names the
 * check, the configurations it fails in, and the evidence (statement id, what QEMU did, and the
 * QEMU source location or upstream report). A listed check that passes is reported as an
 * unexpected pass, so this list cannot go stale. See docs/qemu.md for the investigation notes.
 */
export interface QemuXfail {
  readonly check: string;
  /** Configuration names (conformance/qemu/configs.ts) where it fails, or 'all'. */
  readonly configs: readonly string[] | 'all';
  readonly reason: string;
}

/** virtio-mmio version 2 configurations (the modern MMIO register set). */
const MMIO_V2 = ['microvm-blk', 'microvm-blk-packed', 'microvm-net', 'microvm-net-packed'];

export const QEMU_XFAIL: readonly QemuXfail[] = [
  {
    check: 'blk.device.config',
    configs: ['microvm-blk', 'microvm-blk-packed'],
    reason:
      'blk.device.3: with VIRTIO_BLK_F_CONFIG_WCE negotiated and VIRTIO_BLK_F_FLUSH not, QEMU 7.2 leaves writeback at 1: ' +
      'virtio_blk_set_status (hw/block/virtio-blk.c) switches the backend to writethrough only when CONFIG_WCE is NOT ' +
      'negotiated (on purpose, see the comment there), and virtio_blk_update_config reports wce = blk_enable_write_cache(), ' +
      'which is on with the default cache mode. (The padding bytes of the same check pass.)',
  },
  {
    check: 'features.device.offer',
    configs: MMIO_V2,
    reason:
      'features.device.4: QEMU 7.2 virtio-mmio folds every DeviceFeaturesSel/DriverFeaturesSel above 0 onto window 1 ' +
      "(hw/virtio/virtio-mmio.c virtio_mmio_write: 'if (value) host_features_sel = 1'), so windows 2 and 3 read as copies " +
      'of window 1: the device appears to offer bits 64, 72, 96, 104 (VERSION_1 and RING_RESET again)',
  },
  {
    check: 'features.device.negotiation',
    configs: MMIO_V2,
    reason:
      'features.device.3: QEMU 7.2 keeps FEATURES_OK when the driver accepts a bit it did not offer: ' +
      'virtio_set_features_nocheck (hw/virtio/virtio.c) masks the bit away and returns -1, but the STATUS write ' +
      '(hw/virtio/virtio-mmio.c, VIRTIO_MMIO_STATUS) ignores that result and virtio_set_status sets FEATURES_OK',
  },
  {
    check: 'mmio.device.queue-reset',
    configs: MMIO_V2,
    reason:
      'mmio.device.10/12: QEMU 7.2 offers VIRTIO_F_RING_RESET on every transport (queue_reset=on by default in ' +
      'DEFINE_VIRTIO_COMMON_FEATURES, include/hw/virtio/virtio.h, commit 69e1c14aa2 "virtio: core: vq reset feature ' +
      'negotation support") but virtio-mmio has no QueueReset (0x0c0) register: writes are ignored, QueueReady stays 1. ' +
      'Workaround: the device property queue_reset=off',
  },
  {
    check: 'mmio.device.interrupt-status',
    configs: ['microvm-blk', 'microvm-blk-packed'],
    reason:
      'mmio.device.4: on a configuration change QEMU 7.2 sets both InterruptStatus bits, the used-buffer bit included ' +
      'although no buffer was used: virtio_notify_config (hw/virtio/virtio.c) calls virtio_set_isr(vdev, 0x3). ' +
      '(Found with a QMP block_resize; the net configurations fail this check for a reason of ours, see docs/qemu.md)',
  },
  {
    check: 'split.device.framing',
    configs: ['microvm-blk'],
    reason:
      'split.device.8: QEMU 7.2 follows VRING_DESC_F_INDIRECT only on the head descriptor (virtqueue_split_pop and ' +
      'virtqueue_split_get_avail_bytes, hw/virtio/virtio.c): in a chain of ordinary descriptors ending in an indirect one, ' +
      'the table is taken for a data buffer; virtio-blk reports "virtio-blk missing headers" and sets DEVICE_NEEDS_RESET. ' +
      'Shrunk on fresh devices (SharedDevice): [[],1,false], header direct, data and status in an indirect table at the end',
  },
  {
    check: 'split.device.framing',
    configs: ['microvm-net'],
    reason:
      'split.device.7/8: a transmit chain whose last descriptor is an indirect table with the WRITE flag set (which the device ' +
      'must ignore) kills QEMU 7.2: virtqueue_split_pop (hw/virtio/virtio.c) follows VRING_DESC_F_INDIRECT only on the head, ' +
      'maps the table as a device-writable buffer, and virtio_net_flush_tx (hw/net/virtio-net.c) is left with fewer readable ' +
      'bytes than the 12-byte virtio_net_hdr; with a backend without vnet headers (here -netdev socket) it calls iov_copy at ' +
      'offset guest_hdr_len past the end and aborts: "util/iov.c:269: iov_copy: Assertion `offset == 0\' failed" (any transmit ' +
      'buffer shorter than the header does the same; reproduced by hand with 1 and 11 readable bytes). Shrunk: [[1],1,true]',
  },
  {
    check: 'status_init.device.idle-before-driver-ok',
    configs: ['microvm-blk', 'microvm-blk-packed'],
    reason:
      'status_init.device.1: QEMU 7.2 processes a notified queue before DRIVER_OK: virtio_queue_notify (hw/virtio/virtio.c) ' +
      'calls the device handle_output whatever the status (on purpose, for legacy drivers that kick early: see ' +
      'start_on_kick in the same function); virtio-blk completes the request and raises the interrupt',
  },
  {
    check: 'status_init.device.suspend-needs-init',
    configs: MMIO_V2,
    reason:
      'status_init.device.6: QEMU 7.2 predates VIRTIO_F_SUSPEND (VIRTIO 1.3) and stores any status byte the driver writes ' +
      '(virtio_set_status, hw/virtio/virtio.c: vdev->status = val), so SUSPEND reads back set before DRIVER_OK',
  },
];

/** The xfail table (check id -> reason) for one configuration. */
export function xfailFor(config: string, list: readonly QemuXfail[] = QEMU_XFAIL): Record<string, string> {
  const out: Record<string, string> = {};
  for (const x of list) if (x.configs === 'all' || x.configs.includes(config)) out[x.check] = x.reason;
  return out;
}
