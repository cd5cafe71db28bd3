import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Starts (or finds) the test database server, migrates a template and the pg_cron database.
    globalSetup: ['test/setup/database.ts'],
    // Each file clones its own database, so files run in parallel; statements can take a while
    // when both cores are busy.
    testTimeout: 30_000,
    hookTimeout: 120_000,
  },
});
