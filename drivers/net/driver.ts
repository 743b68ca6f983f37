/**
 * The reference virtio-net driver, `VirtioNetDriver`: this path is kept for importers. The code
 * is in driver/, one file per part of the spec (driver/index.ts lists them).
 */
export {
  VirtioNetDriver,
  NET_DRIVER_FEATURES,
  completeReceived,
  finishChecksum,
  type NetDriverOptions,
  type TxOffload,
  type RxFrame,
  type RssConfig,
  type DeviceErrorRecord,
  type CtrlResult,
} from './driver/index.ts';
