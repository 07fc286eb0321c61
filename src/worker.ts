import { performance } from 'node:perf_hooks'
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises'
import type { Providers } from '../providers/index.ts'
import { eventsFor } from './events.ts'
import type { Logger } from './log.ts'
import type { Metrics } from './metrics.ts'
import { BrokerUnavailable, type Publisher } from './publisher.ts'
import type { Store, StoredWebhook } from './store.ts'

export interface WorkerOptions {
  /** How many webhooks one claim takes and publishes side by side. */
  readonly concurrency: number
  /** The safety-net poll, for notifications missed while disconnected and for retries coming due. */
  readonly pollMs: number
  readonly leaseSeconds: number
  /** Delay before each retry; a failure after the last one makes the webhook dead. */
  readonly retryDelaysSeconds: readonly number[]
  readonly log: Logger
  readonly metrics: Metrics
  /**
   * When this process also serves intake: how many deliveries it has taken so far. While the count grows
   * and the event loop is nearly full, the worker keeps to `shareUnderLoad` of it, so that acknowledging a
   * delivery never waits behind publishing; what it leaves is published as soon as the load eases.
   */
  readonly deliveriesSubmitted?: (() => number) | undefined
  /** The worker's share of a saturated event loop while intake is active (0 to 1; default 0.1). */
  readonly shareUnderLoad?: number | undefined
}

/** Webhooks mapped and handed to the broker per turn of the event loop, so requests get in between. */
const publishChunk = 8

/**
 * How long the worker rests after a batch: nothing unless deliveries are arriving and the event loop was
 * more than 80% busy since the last batch; then long enough that the worker's batches fill `share` of the
 * time (at most a second), leaving the rest to acknowledging deliveries.
 */
export function pauseAfterBatch(options: {
  readonly batchMs: number
  readonly loopUtilization: number
  readonly intakeActive: boolean
  readonly share: number
}): number {
  if (!options.intakeActive || options.loopUtilization <= 0.8) return 0
  const share = Math.min(1, Math.max(0.01, options.share))
  return Math.min(1000, (options.batchMs * (1 - share)) / share)
}

/** Claims stored webhooks, maps them, publishes them with confirms, and records the outcome. */
export class Worker {
  private running: Promise<void> | undefined
  /** The last batch was followed by a pause for intake's sake. */
  private holdingBack = false
  /** deliveriesSubmitted at the end of the last batch. */
  private submittedBefore = 0
  private again = false
  private stopped = false
  private poll: NodeJS.Timeout | undefined
  private listener: { unlisten: () => Promise<void> } | undefined

  constructor(
    private readonly store: Pick<Store, 'claimDue' | 'markPublished' | 'markFailed' | 'release' | 'listen'>,
    private readonly publisher: Pick<Publisher, 'connected' | 'whenConnected' | 'publish'>,
    private readonly providers: Providers,
    private readonly options: WorkerOptions,
  ) {}

  async start(): Promise<void> {
    this.poll = setInterval(() => this.wake(), this.options.pollMs)
    try {
      this.listener = await this.store.listen(() => this.wake())
    } catch (error) {
      this.options.log.warn('worker: LISTEN failed, relying on the poll', { error })
    }
    this.wake()
  }

  /** Asks for a pass over due webhooks; cheap to call often (the in-process hand-off after a commit). */
  wake(): void {
    if (this.stopped) return
    if (this.running) {
      this.again = true
      return
    }
    this.running = this.drain().finally(() => {
      this.running = undefined
      if (this.again && !this.stopped) this.wake()
    })
  }

  /**
   * Stops claiming and waits up to `graceMs` for what is in flight to be published and recorded. What is
   * still in flight then (a stalled database or broker) stays claimed until its lease runs out, and is
   * published by whichever worker claims it next.
   */
  async stop(graceMs = 5000): Promise<void> {
    this.stopped = true
    clearInterval(this.poll)
    const deadline = new Promise((resolve) => setTimeout(resolve, graceMs).unref())
    await Promise.race([Promise.all([this.listener?.unlisten().catch(() => {}), this.running]), deadline])
  }

  private async drain(): Promise<void> {
    const { log, concurrency, leaseSeconds } = this.options
    let loop = performance.eventLoopUtilization()
    while (!this.stopped) {
      const batchStarted = performance.now()
      this.again = false
      if (!this.publisher.connected) {
        // Wait for the broker rather than spend attempts on webhooks that cannot be published.
        await Promise.race([
          this.publisher.whenConnected(),
          new Promise((resolve) => setTimeout(resolve, this.options.pollMs)),
        ])
        continue
      }
      let claimed: StoredWebhook[]
      try {
        // While holding back, small batches: each one blocks the event loop for less time.
        claimed = await this.store.claimDue(this.holdingBack ? publishChunk : concurrency, leaseSeconds)
      } catch (error) {
        log.warn('worker: cannot claim webhooks, postgres unavailable', { error })
        return
      }
      if (claimed.length === 0) return
      const publishing: Promise<{ id: string; eventIds: string[] } | undefined>[] = []
      for (let at = 0; at < claimed.length; at += publishChunk) {
        if (at > 0) await nextTurn()
        for (const webhook of claimed.slice(at, at + publishChunk)) publishing.push(this.publish(webhook))
      }
      const published = (await Promise.all(publishing)).filter((result) => result !== undefined)
      // One statement for the batch; should it fail, the leases bring these back and the same ids go out again.
      await this.store.markPublished(published).catch((error: unknown) => {
        log.error('worker: could not record published webhooks; they will be published again', { error })
      })
      loop = await this.holdBackUnderLoad(performance.now() - batchStarted, loop)
    }
  }

  /** Pauses after a batch that took `batchMs` while intake keeps the event loop busy (see deliveriesSubmitted). */
  private async holdBackUnderLoad(
    batchMs: number,
    since: ReturnType<typeof performance.eventLoopUtilization>,
  ): Promise<ReturnType<typeof performance.eventLoopUtilization>> {
    const now = performance.eventLoopUtilization()
    const submitted = this.options.deliveriesSubmitted?.() ?? 0
    const pauseMs = pauseAfterBatch({
      batchMs,
      loopUtilization: performance.eventLoopUtilization(now, since).utilization,
      intakeActive: submitted !== this.submittedBefore,
      share: this.options.shareUnderLoad ?? 0.1,
    })
    this.submittedBefore = submitted
    this.holdingBack = pauseMs > 0
    if (pauseMs > 0) await sleep(pauseMs, undefined, { ref: false })
    // The next window includes this pause: intake that eased during it lets the worker run at full speed.
    return now
  }

  /** Publishes one webhook's events; undefined when it failed (the failure is then already recorded). */
  private async publish(webhook: StoredWebhook): Promise<{ id: string; eventIds: string[] } | undefined> {
    const { log, metrics, retryDelaysSeconds } = this.options
    try {
      const provider = this.providers[webhook.provider]
      if (!provider) throw new Error(`no provider named ${webhook.provider}`)
      const events = eventsFor(webhook, provider)
      await this.publisher.publish(events)
      metrics.count(
        'events_published_total',
        'Events published to RabbitMQ',
        { provider: webhook.provider },
        events.length,
      )
      log.debug('published', { id: webhook.id, events: events.map((event) => event.type) })
      return { id: webhook.id, eventIds: events.map((event) => event.id) }
    } catch (error) {
      if (error instanceof BrokerUnavailable) {
        log.warn('worker: broker unavailable, webhook waits', { id: webhook.id, error })
        await this.store.release(webhook.id).catch(() => {})
        return undefined
      }
      const message = error instanceof Error ? error.message : String(error)
      const retryInSeconds = retryDelaysSeconds[webhook.attempts]
      metrics.count('webhook_failures_total', 'Failed publishing attempts', { provider: webhook.provider })
      if (retryInSeconds === undefined) {
        metrics.count('webhooks_dead_total', 'Webhooks that ran out of attempts', {
          provider: webhook.provider,
        })
        log.error('worker: webhook is dead', {
          id: webhook.id,
          attempts: webhook.attempts + 1,
          error: message,
        })
      } else {
        log.warn('worker: attempt failed, will retry', {
          id: webhook.id,
          attempt: webhook.attempts + 1,
          retryInSeconds,
          error: message,
        })
      }
      await this.store.markFailed(webhook.id, message, retryInSeconds).catch((storeError: unknown) => {
        log.error('worker: could not record the failure; the lease will bring it back', {
          id: webhook.id,
          error: storeError,
        })
        return undefined
      })
    }
  }
}
