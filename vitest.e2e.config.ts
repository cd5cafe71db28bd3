import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// `npm run test:e2e`: only test/e2e, against the compose stack that scripts/test-e2e.sh started;
// no test database of its own (so no globalSetup).
export default defineConfig({
  resolve: base.resolve,
  test: { include: ['test/e2e/**/*.test.ts'], testTimeout: 30_000 },
});
