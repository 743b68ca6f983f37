import { locateQemu } from './find.ts';

/**
 * Whether tests that need QEMU run here. In CI (`CI` or `PVKIT_REQUIRE_QEMU` set; .ci/run installs
 * QEMU) a missing binary is a failure, not a skip. Elsewhere the tests skip with this message.
 */
export const qemuBinary = locateQemu();
export const haveQemu = qemuBinary !== undefined;
const truthy = (v: string | undefined): boolean => v !== undefined && v !== '' && v !== '0' && v !== 'false';
export const requireQemu = truthy(process.env['CI']) || truthy(process.env['PVKIT_REQUIRE_QEMU']);
export const skipQemuReason = 'QEMU tests skipped: qemu-system-x86_64 not found (apt-get install qemu-system-x86; set PVKIT_REQUIRE_QEMU=1 to make this a failure)';
/** True when the QEMU tests should be skipped. */
export const skipQemu = !haveQemu && !requireQemu;
if (skipQemu) process.stderr.write(`pvkit: ${skipQemuReason}\n`);
