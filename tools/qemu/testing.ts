import { locateQemu } from './find.ts';

/**
 * Whether tests that need QEMU run here. In CI (`CI` set) QEMU is required: a missing binary is
 * a failure, not a skip (.ci/run installs it). Elsewhere the tests skip with this message.
 */
export const qemuBinary = locateQemu();
export const haveQemu = qemuBinary !== undefined;
export const requireQemu = process.env['CI'] !== undefined && process.env['CI'] !== '' && process.env['CI'] !== 'false';
export const skipQemuReason = 'QEMU tests skipped: qemu-system-x86_64 not found (apt-get install qemu-system-x86; set CI=1 to make this a failure)';
/** True when the QEMU tests should be skipped. */
export const skipQemu = !haveQemu && !requireQemu;
if (skipQemu) process.stderr.write(`pvkit: ${skipQemuReason}\n`);
