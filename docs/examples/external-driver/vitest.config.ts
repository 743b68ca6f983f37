import { defineConfig } from 'vitest/config';

// Its own config, so that vitest does not pick up pvkit's when the example sits in pvkit's tree.
export default defineConfig({ test: { include: ['test/**/*.test.ts'] } });
