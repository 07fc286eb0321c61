import type { Received } from '../../src/pipeline/intake.ts'

/**
 * The Postgres side of a worker in a unit test: its claims return `claims` in turn (none by default) and
 * `onClaim` sees each claim's limit; everything else does nothing.
 */
export const workerStore = (claims: Received[][] = [], onClaim: (limit: number) => void = () => {}) =>
  ({
    claimDue: async (_owner: number, limit: number) => {
      onClaim(limit)
      return (claims.shift() ?? []).map((webhook) => ({ ...webhook, attempts: 0, routedAt: null }))
    },
    reclaimAbandoned: async () => [],
    markFailed: async () => {},
    release: async () => {},
    listen: async () => ({ unlisten: async () => {} }),
    hasDestinations: async () => false,
  }) as never
