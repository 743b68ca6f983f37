import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['drivers/**/*.test.ts', 'device-models/**/*.test.ts', 'conformance/**/*.test.ts', 'spec-refs/**/*.test.ts', 'tools/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // PVKIT_MONITOR=strict|report: every simulated machine with a virtio-mmio device runs under the conformance monitor
    setupFiles: process.env['PVKIT_MONITOR'] ? ['conformance/monitor-setup.ts'] : [],
  },
});
