import { performance } from 'node:perf_hooks'

/** How long after a failed record it is tried again. */
export const recordRetryMs = 1000

/**
 * Records whose statement failed (Postgres restarting, say), and since when: the worker's marks and the
 * sender's attempts are tried again while their claims have time, so that a moment without Postgres does not
 * leave them to be published or sent again when their lease ends.
 */
export class FailedRecords<T extends object> {
  private readonly since = new WeakMap<T, number>()

  /** Of `items`, whose record has just failed, those that first failed less than `windowMs` ago. */
  retried(items: readonly T[], windowMs: number): T[] {
    const now = performance.now()
    return items.filter((item) => {
      const since = this.since.get(item) ?? now
      this.since.set(item, since)
      return now - since < windowMs
    })
  }
}
