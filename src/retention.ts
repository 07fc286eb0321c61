import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from './log.ts'
import type { Sql } from './store.ts'

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
    const webhooks =
      (await this.deleteWebhooks('published', days)) + (await this.deleteWebhooks('dead', failedDays))
    const deliveries =
      (await this.deleteDeliveries('delivered', days)) + (await this.deleteDeliveries('failed', failedDays))
    if (webhooks + deliveries > 0)
      this.options.log.info('retention: deleted old rows', { webhooks, deliveries })
    return { webhooks, deliveries }
  }

  private async deleteWebhooks(status: 'published' | 'dead', olderThanDays: number): Promise<number> {
    return this.inBatches(
      (limit) => this.sql`
        DELETE FROM webhooks WHERE id IN (
          SELECT id FROM webhooks
          WHERE status = ${status}
            AND ${status === 'published' ? this.sql`published_at` : this.sql`next_attempt_at`}
                < now() - make_interval(secs => ${olderThanDays * 86400})
          LIMIT ${limit} FOR UPDATE SKIP LOCKED)`,
    )
  }

  private async deleteDeliveries(status: 'delivered' | 'failed', olderThanDays: number): Promise<number> {
    // Their attempts go with them (ON DELETE CASCADE).
    return this.inBatches(
      (limit) => this.sql`
        DELETE FROM deliveries WHERE id IN (
          SELECT id FROM deliveries
          WHERE status = ${status}
            AND ${status === 'delivered' ? this.sql`delivered_at` : this.sql`next_attempt_at`}
                < now() - make_interval(secs => ${olderThanDays * 86400})
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
