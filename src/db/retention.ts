import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from '../ops/log.ts'
import type { Sql } from './client.ts'

export interface RetentionOptions {
  /** Published webhooks and delivered deliveries older than this many days are deleted. */
  readonly days: number
  /** Dead webhooks and failed deliveries are kept longer, for a replay after a fix. */
  readonly failedDays: number
  readonly log: Logger
  /** How often a pass runs (default every 10 minutes). */
  readonly everyMs?: number
  /** Rows one statement deletes: small, so a pass never holds long locks or bloats one transaction. */
  readonly batchSize?: number
}

/**
 * Deletes what is old enough, in small batches, in the background of the worker. Only finished rows go, aged
 * from when they finished (published, delivered, or their last failed attempt), so a replay or a retry
 * starts the clock again; a webhook not yet published or a delivery still pending is never deleted.
 */
export class Retention {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<unknown> | undefined
  private stopped = false

  constructor(
    private readonly sql: Sql,
    private readonly options: RetentionOptions,
  ) {}

  start(): void {
    const everyMs = this.options.everyMs ?? 10 * 60_000
    const pass = () => {
      if (this.running || this.stopped) return
      this.running = this.runOnce()
        .catch((error: unknown) => this.options.log.warn('retention: pass failed', { error }))
        .finally(() => (this.running = undefined))
    }
    this.timer = setInterval(pass, everyMs)
    this.timer.unref()
    // The first pass waits a little, so a start is not slowed by a large first clean-up.
    setTimeout(pass, Math.min(everyMs, 60_000)).unref()
  }

  stop(): void {
    this.stopped = true
    clearInterval(this.timer)
  }

  /** One pass over every kind of finished row; returns how many of each were deleted. */
  async runOnce(): Promise<{ webhooks: number; deliveries: number }> {
    const { days, failedDays } = this.options
    // Each kind aged from when it finished: a dead webhook's or failed delivery's last attempt is its
    // next_attempt_at. A delivery's attempts go with it (the deliveries_delete_attempts trigger).
    const webhooks =
      (await this.deleteFinished('webhooks', 'published', 'published_at', days)) +
      (await this.deleteFinished('webhooks', 'dead', 'next_attempt_at', failedDays))
    const deliveries =
      (await this.deleteFinished('deliveries', 'delivered', 'delivered_at', days)) +
      (await this.deleteFinished('deliveries', 'failed', 'next_attempt_at', failedDays))
    if (webhooks + deliveries > 0)
      this.options.log.info('retention: deleted old rows', { webhooks, deliveries })
    return { webhooks, deliveries }
  }

  /** Deletes rows of `table` in `status` whose `finishedAt` column is more than `olderThanDays` ago. */
  private async deleteFinished(
    table: 'webhooks' | 'deliveries',
    status: string,
    finishedAt: string,
    olderThanDays: number,
  ): Promise<number> {
    const { sql } = this
    return this.inBatches(
      (limit) => sql`
        DELETE FROM ${sql(table)} WHERE id IN (
          SELECT id FROM ${sql(table)}
          WHERE status = ${status} AND ${sql(finishedAt)} < now() - make_interval(secs => ${olderThanDays * 86400})
          LIMIT ${limit} FOR UPDATE SKIP LOCKED)`,
    )
  }

  private async inBatches(deleteSome: (limit: number) => Promise<{ count: number }>): Promise<number> {
    const batchSize = this.options.batchSize ?? 1000
    let total = 0
    while (!this.stopped) {
      const { count } = await deleteSome(batchSize)
      total += count
      if (count < batchSize) break
      // Room for the rest of the worker's queries between batches.
      await sleep(50)
    }
    return total
  }
}
