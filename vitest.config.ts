import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // The package's own name, as its README examples import it (the published files are in dist/).
    alias: [
      { find: /^kpi-history\/server$/, replacement: new URL('./sdk/src/server.ts', import.meta.url).pathname },
      { find: /^kpi-history$/, replacement: new URL('./sdk/src/index.ts', import.meta.url).pathname },
    ],
  },
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
