import { performance } from 'node:perf_hooks'
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises'
import type { Providers } from '../../providers/index.ts'
import { startWakers, type Wakers } from './wakers.ts'
import { eventsFor, type CloudEvent } from './events.ts'
import type { Logger } from '../ops/log.ts'
import type { Metrics } from '../ops/metrics.ts'
import { BrokerUnavailable, type Publisher } from './publisher.ts'
import type { Store, StoredWebhook } from '../db/webhooks.ts'

export interface WorkerOptions {
  /** How many webhooks one claim takes and publishes side by side. */
  readonly concurrency: number
  /** The safety-net poll, for notifications missed while disconnected and for retries coming due. */
  readonly pollMs: number
  readonly leaseSeconds: number
  /** The number this process's claims carry (see ClaimOwner). */
  readonly claimOwner: number
  /** Delay before each retry; a failure after the last one makes the webhook dead. */
  readonly retryDelaysSeconds: readonly number[]
  readonly log: Logger
  readonly metrics: Metrics
  /**
   * When this process also serves intake: how many deliveries it has taken so far, and how many of them had
   * to wait for a commit slot. While most new ones wait (intake is saturated) and the event loop is nearly
   * full, the worker keeps to `shareUnderLoad` of it, so that acknowledging a delivery never waits behind
   * publishing; what it leaves is published as soon as the load eases. A flow intake keeps up with is
   * published (and sent to destinations) at once.
   */
  readonly intakeCounts?: (() => { readonly submitted: number; readonly queued: number }) | undefined
  /** The worker's share of a saturated event loop while intake is active (0 to 1; default 0.1). */
  readonly shareUnderLoad?: number | undefined
  /** Called after deliveries to destinations were written, to wake this process's sender. */
  readonly onFannedOut?: (() => void) | undefined
}

/** One webhook after a publishing attempt: published, or waiting for the broker; failures are recorded. */
type Handled =
  | { readonly kind: 'published'; readonly webhook: StoredWebhook; readonly events: CloudEvent[] }
  | { readonly kind: 'waiting'; readonly webhook: StoredWebhook; readonly events: CloudEvent[] }

/** Received -> published: milliseconds when idle, seconds under a burst, minutes while the broker is away. */
const lagBuckets = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800]

/** Webhooks mapped and handed to the broker per turn of the event loop, so requests get in between. */
const publishChunk = 8

/**
 * How long the worker rests after a batch: nothing unless intake is saturated (most deliveries since the
 * last batch waited for a commit slot) and the event loop was more than 80% busy since then; then long enough that the worker's batches fill `share` of the
 * time (at most 250 ms, so a webhook is never held long), leaving the rest to acknowledging deliveries.
 */
export function pauseAfterBatch(options: {
  readonly batchMs: number
  readonly loopUtilization: number
  readonly intakeSaturated: boolean
  readonly share: number
}): number {
  if (!options.intakeSaturated || options.loopUtilization <= 0.8) return 0
  const share = Math.min(1, Math.max(0.01, options.share))
  return Math.min(250, (options.batchMs * (1 - share)) / share)
}

/** Claims stored webhooks, maps them, publishes them with confirms, and records the outcome. */
export class Worker {
  private running: Promise<void> | undefined
  /** The last batch was followed by a pause for intake's sake. */
  private holdingBack = false
  /** intakeCounts at the end of the last batch. */
  private countsBefore = { submitted: 0, queued: 0 }
  private again = false
  private stopped = false
  private wakers: Wakers | undefined

  constructor(
    private readonly store: Pick<
      Store,
      | 'claimDue'
      | 'reclaimAbandoned'
      | 'markPublished'
      | 'markFailed'
      | 'routeAndRelease'
      | 'listen'
      | 'hasDestinations'
    >,
    private readonly publisher: Pick<Publisher, 'connected' | 'whenConnected' | 'publish'>,
    private readonly providers: Providers,
    private readonly options: WorkerOptions,
  ) {}

  async start(): Promise<void> {
    const { claimOwner, log, pollMs } = this.options
    this.wakers = startWakers({
      name: 'worker',
      rows: 'webhooks',
      pollMs,
      log,
      reclaim: () => this.store.reclaimAbandoned(claimOwner),
      listen: (onNotify) => this.store.listen(onNotify),
      wake: () => this.wake(),
    })
    await this.wakers.listening
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
    const wakersStopped = this.wakers?.stop()
    const deadline = new Promise((resolve) => setTimeout(resolve, graceMs).unref())
    await Promise.race([Promise.all([wakersStopped, this.running]), deadline])
  }

  private async drain(): Promise<void> {
    const { log, concurrency, leaseSeconds, claimOwner } = this.options
    let loop = performance.eventLoopUtilization()
    while (!this.stopped) {
      const batchStarted = performance.eventLoopUtilization()
      this.again = false
      if (!this.publisher.connected) {
        // Destinations need nothing from the broker: route what is due to them meanwhile.
        if (await this.routeWhileBrokerAway()) continue
        // Wait for the broker rather than spend attempts on webhooks that cannot be published.
        await Promise.race([
          this.publisher.whenConnected(),
          new Promise((resolve) => setTimeout(resolve, this.options.pollMs)),
        ])
        continue
      }
      let claimed: StoredWebhook[]
      // While holding back, small batches: each one blocks the event loop for less time.
      const limit = this.holdingBack ? publishChunk : concurrency
      try {
        claimed = await this.store.claimDue(claimOwner, limit, leaseSeconds)
      } catch (error) {
        log.warn('worker: cannot claim webhooks, postgres unavailable', { error })
        return
      }
      if (claimed.length === 0) return
      const publishing: Promise<Handled | undefined>[] = []
      for (let at = 0; at < claimed.length; at += publishChunk) {
        if (at > 0) await nextTurn()
        for (const webhook of claimed.slice(at, at + publishChunk)) publishing.push(this.publish(webhook))
      }
      const handled = (await Promise.all(publishing)).filter((result) => result !== undefined)
      await this.record(handled)
      // The batch's cost is the event loop's busy time while it ran, not its wall time: a batch mostly
      // waiting on the broker's confirms and Postgres took little from intake and earns no long pause.
      loop = await this.holdBackUnderLoad(performance.eventLoopUtilization(batchStarted).active, loop)
      // A claim short of its limit took everything due: no claim again until woken (a commit, a
      // notification from another process, the poll), which at a steady trickle halves the claims.
      if (claimed.length < limit && !this.again) return
    }
  }

  /**
   * Records a batch: published webhooks in one statement, with their fan-out to destinations in the same
   * transaction; those the broker did not take are routed to destinations and given back for later.
   * Should it fail, the leases bring them back and the same event ids go out again.
   */
  private async record(handled: readonly Handled[]): Promise<void> {
    const { log } = this.options
    const published = handled
      .filter((item) => item.kind === 'published')
      .map((item) => ({ id: item.webhook.id, events: item.events, routed: item.webhook.routedAt !== null }))
    const waiting = handled
      .filter((item) => item.kind === 'waiting')
      .map((item) => ({ webhookId: item.webhook.id, events: item.events }))
    const [fannedOut, routed] = await Promise.all([
      this.store.markPublished(published).catch((error: unknown) => {
        log.error('worker: could not record published webhooks; they will be published again', { error })
        return 0
      }),
      this.store.routeAndRelease(waiting).catch((error: unknown) => {
        log.warn('worker: could not give back webhooks the broker did not take; their lease will', { error })
        return 0
      }),
    ])
    if (fannedOut + routed > 0) this.options.onFannedOut?.()
  }

  /**
   * While the broker is away: claims webhooks not yet routed, maps them and writes their deliveries to
   * destinations, then gives them back for publishing later (no attempt spent). False when there was
   * nothing to do (no destinations, nothing unrouted, or Postgres unavailable).
   */
  private async routeWhileBrokerAway(): Promise<boolean> {
    const { log, concurrency, leaseSeconds, claimOwner } = this.options
    try {
      if (!(await this.store.hasDestinations())) return false
      const claimed = await this.store.claimDue(claimOwner, concurrency, leaseSeconds, { unroutedOnly: true })
      if (claimed.length === 0) return false
      const mapped: Handled[] = []
      for (const webhook of claimed) {
        const events = await this.map(webhook)
        if (events) mapped.push({ kind: 'waiting', webhook, events })
      }
      await this.record(mapped)
      return true
    } catch (error) {
      log.warn('worker: cannot route webhooks to destinations, postgres unavailable', { error })
      return false
    }
  }

  /**
   * Pauses after a batch that kept the event loop busy `batchMs` while intake is saturated (see
   * intakeCounts).
   */
  private async holdBackUnderLoad(
    batchMs: number,
    since: ReturnType<typeof performance.eventLoopUtilization>,
  ): Promise<ReturnType<typeof performance.eventLoopUtilization>> {
    const now = performance.eventLoopUtilization()
    const counts = this.options.intakeCounts?.() ?? this.countsBefore
    const arrived = counts.submitted - this.countsBefore.submitted
    const waited = counts.queued - this.countsBefore.queued
    const pauseMs = pauseAfterBatch({
      batchMs,
      loopUtilization: performance.eventLoopUtilization(now, since).utilization,
      intakeSaturated: arrived > 0 && waited * 2 >= arrived,
      share: this.options.shareUnderLoad ?? 0.1,
    })
    this.countsBefore = counts
    this.holdingBack = pauseMs > 0
    if (pauseMs > 0) await sleep(pauseMs, undefined, { ref: false })
    // The next window includes this pause: intake that eased during it lets the worker run at full speed.
    return now
  }

  /** Publishes one webhook's events; undefined when it failed (the failure is then already recorded). */
  private async publish(webhook: StoredWebhook): Promise<Handled | undefined> {
    const { log, metrics } = this.options
    const events = await this.map(webhook)
    if (!events) return undefined
    try {
      await this.publisher.publish(events)
      metrics.count(
        'events_published_total',
        'Events published to RabbitMQ (confirmed by the broker)',
        { provider: webhook.provider },
        events.length,
      )
      metrics.observe(
        'webhook_publish_lag_seconds',
        'From receiving a webhook to the broker confirming its events',
        { provider: webhook.provider },
        (Date.now() - webhook.receivedAt.getTime()) / 1000,
        lagBuckets,
      )
      log.debug('published', { id: webhook.id, events: events.map((event) => event.type) })
      return { kind: 'published', webhook, events }
    } catch (error) {
      metrics.count('events_publish_failures_total', 'Publishing attempts the broker did not confirm', {
        provider: webhook.provider,
        reason: error instanceof BrokerUnavailable ? 'broker_unavailable' : 'rejected',
      })
      if (error instanceof BrokerUnavailable) {
        log.warn('worker: broker unavailable, webhook waits', { id: webhook.id, error })
        return { kind: 'waiting', webhook, events }
      }
      await this.recordFailure(webhook, error)
      return undefined
    }
  }

  /** A webhook's events, or undefined when its handler failed (the failure is then already recorded). */
  private async map(webhook: StoredWebhook): Promise<CloudEvent[] | undefined> {
    try {
      const provider = this.providers[webhook.provider]
      if (!provider) throw new Error(`no provider named ${webhook.provider}`)
      return eventsFor(webhook, provider)
    } catch (error) {
      await this.recordFailure(webhook, error)
      return undefined
    }
  }

  /** Counts a failed attempt: retried on the schedule, or dead after the last one. */
  private async recordFailure(webhook: StoredWebhook, error: unknown): Promise<void> {
    const { log, metrics, retryDelaysSeconds } = this.options
    const message = error instanceof Error ? error.message : String(error)
    const retryInSeconds = retryDelaysSeconds[webhook.attempts]
    metrics.count('webhook_failures_total', 'Failed publishing attempts', { provider: webhook.provider })
    if (retryInSeconds === undefined) {
      metrics.count('webhooks_dead_total', 'Webhooks that ran out of attempts', {
        provider: webhook.provider,
      })
      log.error('worker: webhook is dead', { id: webhook.id, attempts: webhook.attempts + 1, error: message })
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
    })
  }
}
