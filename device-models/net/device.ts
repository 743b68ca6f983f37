/**
 * The virtio-net device model, `VirtioNetDevice`: this path is kept for importers. The code is
 * in device/, one file per part of the spec (device/index.ts lists them).
 */
export { VirtioNetDevice, NET_SUPPORTED_FEATURES, type NetDeviceOptions, type NetBackend, type NetEndpoint, type NetViolation, type QueueStats } from './device/index.ts';
