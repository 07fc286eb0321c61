import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests talk to real services; each file has its own database, exchange and Redis prefix.
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // The files wait on services more than they compute: run several at once even on two cores, which also
    // keeps their isolation (own database, exchange, Redis prefix) honest.
    maxWorkers: 3,
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
})
