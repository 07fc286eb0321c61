import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Dispatcher } from 'undici'
import { FailedRecords, recordRetryMs } from '../pipeline/failed-records.ts'
import { Linger } from '../pipeline/linger.ts'
import { post } from './post.ts'
import { signatureHeaders } from './signing.ts'
import { startWakers, type Wakers, type WakersStore } from '../pipeline/wakers.ts'
import type { Logger } from '../ops/log.ts'
import type { Metrics } from '../ops/metrics.ts'
import {
  defaultMaxInFlight,
  type DeliveryAttempt,
  type DestinationStore,
  type DueDelivery,
  type Outcome,
  type RecordedOutcome,
} from './store.ts'

/** An attempt made, waiting to be recorded. */
interface Unrecorded {
  readonly delivery: DueDelivery
  readonly attempt: DeliveryAttempt
  readonly outcome: Outcome
}

/** How much of an answer's body the attempt log keeps. */
export const responseBodyLimit = 10 * 1024
/** The longest Retry-After honoured; a longer one is read as this. */
const maxRetryAfterSeconds = 24 * 3600
/**
 * How long attempts with the usual outcomes (delivered, or retried later) wait to be recorded together:
 * their claim keeps the delivery from being sent again meanwhile, so at a steady trickle one statement
 * records many (at 20/s, a second's worth rather than four; each statement is a commit Postgres pays a
 * millisecond or two of CPU for). Never more than a quarter of the lease's margin, so a claim cannot lapse
 * while its attempt waits. A delivery failed for good, or a 410, is recorded at once: it changes its
 * destination.
 */
const attemptsLingerMs = 1000
/** Attempts recorded in one statement at most; this many are recorded at once however recent. */
const attemptsBatch = 500
/** Deliveries handed over and queued per slot of their destination, at least (see room). */
const queuedPerSlot = 4
/** Deliveries handed over and queued for one destination, at most. */
const maxQueued = 2000
/** Consecutive failed deliveries at which a destination is warned about (the last one also disables it). */
const warnAt = new Set([3, 5, 10])

/** Headers the request must carry as the gateway sets them; a destination's extra headers cannot replace them. */
export const reservedHeaders = new Set([
  'content-type',
  'content-length',
  'host',
  'connection',
  'transfer-encoding',
  'webhook-id',
  'webhook-timestamp',
  'webhook-signature',
])

export interface SenderOptions {
  readonly dispatcher: Dispatcher
  /** Requests in flight at once in this process, over all destinations. */
  readonly concurrency: number
  readonly pollMs: number
  /** A claim lasts the destination's timeout plus this, then another sender may take the delivery. */
  readonly leaseMarginSeconds: number
  /** The number this process's claims carry (see ClaimOwner). */
  readonly claimOwner: number
  readonly log: Logger
  readonly metrics: Metrics
  readonly userAgent: string
}

/** Seconds from a Retry-After header (delay-seconds or an HTTP date), or undefined when absent or unreadable. */
export function retryAfterSeconds(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined
  const trimmed = value.trim()
  const seconds = /^\d+$/.test(trimmed) ? Number(trimmed) : (Date.parse(trimmed) - now) / 1000
  if (!Number.isFinite(seconds)) return undefined
  return Math.min(maxRetryAfterSeconds, Math.max(0, seconds))
}

/** The schedule's delay before retry number `attempt` (1 = the first retry), with ±10% jitter. */
export function scheduledDelaySeconds(
  schedule: readonly number[],
  attempt: number,
  random = Math.random,
): number | undefined {
  const delay = schedule[attempt - 1]
  if (delay === undefined) return undefined
  return delay * (0.9 + 0.2 * random())
}

/**
 * What an answer means for the delivery after `attemptsBefore` earlier attempts. 2xx is delivered; 410
 * disables the destination; 429 and 503 wait at least their Retry-After; everything else (other codes,
 * redirects, timeouts, connection errors: `status` undefined) is retried on the schedule, then failed.
 */
export function outcomeOf(
  status: number | undefined,
  retryAfter: string | undefined,
  schedule: readonly number[],
  attemptsBefore: number,
  random = Math.random,
): Outcome {
  if (status !== undefined && status >= 200 && status < 300) return { kind: 'delivered' }
  if (status === 410) return { kind: 'gone' }
  const scheduled = scheduledDelaySeconds(schedule, attemptsBefore + 1, random)
  if (scheduled === undefined) return { kind: 'retry', retryInSeconds: undefined }
  const asked = status === 429 || status === 503 ? retryAfterSeconds(retryAfter) : undefined
  return { kind: 'retry', retryInSeconds: Math.max(scheduled, asked ?? 0) }
}

const describeError = (error: unknown, timeoutMs: number): string => {
  if (error instanceof Error) {
    if (error.name === 'TimeoutError' || error.name === 'AbortError')
      return `no answer within the ${timeoutMs} ms timeout`
    const code = (error as { code?: string }).code
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : ''
    return `${code ? `${code} ` : ''}${error.message}${cause}`.slice(0, 1000)
  }
  return String(error).slice(0, 1000)
}

/**
 * Sends due deliveries to destinations over keep-alive pools, records every attempt, and applies the
 * schedule and the disabling rules. Each destination has its own limit of requests in flight, so a slow or
 * dead one holds its own slots only and the others keep flowing. It needs nothing from RabbitMQ.
 */
export class DeliverySender {
  private readonly inFlight = new Map<string, number>()
  /**
   * Deliveries handed over (take) when their destination had no free slot, oldest first: sent as slots free.
   * Each with when it was claimed: one held past half its lease is left to be claimed again instead.
   */
  private readonly queued = new Map<
    string,
    { readonly delivery: DueDelivery; readonly claimedAt: number }[]
  >()
  /** Destinations whose last claim filled their free slots: more may be due (see claim). */
  private readonly capped = new Set<string>()
  /** Each destination's max_in_flight, as its deliveries last said. */
  private readonly limits = new Map<string, number>()
  /** Answers from each destination in the current and the previous second (see room). */
  private readonly answered = new Map<string, { second: number; current: number; previous: number }>()
  private total = 0
  private claiming: Promise<void> | undefined
  private again = false
  private stopped = false
  private wakers: Wakers | undefined
  private readonly sending = new Set<Promise<void>>()
  /** Attempts made and not yet recorded; recorded together, in one transaction per batch. */
  private unrecorded: Unrecorded[] = []
  private recording: Promise<void> | undefined
  private readonly linger = new Linger()
  private readonly failedRecords = new FailedRecords<Unrecorded>()

  constructor(
    private readonly store: Pick<DestinationStore, 'claimDue' | 'recordAttempts' | 'release'> & WakersStore,
    private readonly options: SenderOptions,
  ) {}

  async start(): Promise<void> {
    const { claimOwner, log, pollMs } = this.options
    this.wakers = startWakers({
      name: 'sender',
      rows: 'deliveries',
      pollMs,
      log,
      claimOwner,
      store: this.store,
      wake: () => this.wake(),
    })
    await this.wakers.listening
    this.wake()
  }

  /**
   * How many more deliveries to `destinationId` this process takes now (the outbox claims that many for it
   * when it writes them): its free slots, and a queue of what the destination answered in about the last
   * second (at least a few times its limit), sent as slots free. A destination not seen yet is taken to have
   * the usual limit.
   */
  room(destinationId: string): number {
    if (this.stopped) return 0
    const limit = this.limits.get(destinationId) ?? defaultMaxInFlight
    const answered = this.answered.get(destinationId)
    const perSecond = answered ? Math.max(answered.current, answered.previous) : 0
    return Math.min(maxQueued, Math.max(queuedPerSlot * limit, limit + perSecond)) - this.busy(destinationId)
  }

  /**
   * Deliveries to `destinationIds` were written unclaimed (no room for them here): a destination with a free
   * slot is claimed now; one without is claimed as its slots free (it is `capped`).
   */
  due(destinationIds: Iterable<string>): void {
    let claimNow = false
    for (const destinationId of destinationIds) {
      if (this.busy(destinationId) >= (this.limits.get(destinationId) ?? defaultMaxInFlight))
        this.capped.add(destinationId)
      else claimNow = true
    }
    if (claimNow) this.wake()
  }

  /**
   * Deliveries claimed for this process (by the outbox as it wrote them, or by a claim): sent now, or queued
   * for their destination's next free slot. The limit of requests in flight holds whichever way they came.
   */
  take(deliveries: readonly DueDelivery[]): void {
    const claimedAt = performance.now()
    for (const delivery of deliveries) {
      this.limits.set(delivery.destinationId, delivery.maxInFlight)
      // Once stopped, queued: given back at the end of the stop.
      if (!this.stopped && this.hasSlot(delivery.destinationId)) {
        this.dispatch(delivery)
        continue
      }
      const waiting = this.queued.get(delivery.destinationId) ?? []
      waiting.push({ delivery, claimedAt })
      this.queued.set(delivery.destinationId, waiting)
    }
  }

  private countAnswer(destinationId: string): void {
    const second = Math.floor(performance.now() / 1000)
    const answered = this.answered.get(destinationId)
    if (!answered) this.answered.set(destinationId, { second, current: 1, previous: 0 })
    else if (answered.second === second) answered.current += 1
    else
      Object.assign(answered, {
        second,
        previous: answered.second === second - 1 ? answered.current : 0,
        current: 1,
      })
  }

  /** In flight or queued here for `destinationId`. */
  private busy(destinationId: string): number {
    return (this.inFlight.get(destinationId) ?? 0) + (this.queued.get(destinationId)?.length ?? 0)
  }

  private hasSlot(destinationId: string): boolean {
    const limit = this.limits.get(destinationId) ?? defaultMaxInFlight
    return (this.inFlight.get(destinationId) ?? 0) < limit && this.total < this.options.concurrency
  }

  /** The oldest queued delivery to `destinationId` whose claim still holds, if a slot is free for it. */
  private nextQueued(destinationId: string): DueDelivery | undefined {
    const waiting = this.queued.get(destinationId)
    while (waiting && waiting.length > 0 && this.hasSlot(destinationId)) {
      const { delivery, claimedAt } = waiting.shift()!
      if (waiting.length === 0) this.queued.delete(destinationId)
      const leaseMs = delivery.timeoutMs + this.options.leaseMarginSeconds * 1000
      if (performance.now() - claimedAt < leaseMs / 2) return delivery
    }
    return undefined
  }

  /** Asks for a claim of due deliveries; cheap to call often. */
  wake(): void {
    if (this.stopped) return
    if (this.claiming) {
      this.again = true
      return
    }
    this.claiming = this.claim().finally(() => {
      this.claiming = undefined
      if (this.again && !this.stopped) {
        this.again = false
        this.wake()
      }
    })
  }

  /**
   * Stops claiming and waits up to `graceMs` for requests in flight to be answered and recorded. What is
   * still out then stays claimed until its lease ends and is sent again, with the same webhook-id.
   */
  async stop(graceMs = 5000): Promise<void> {
    this.stopped = true
    const wakersStopped = this.wakers?.stop()
    const deadline = new Promise((resolve) => setTimeout(resolve, graceMs).unref())
    const finished = async () => {
      await Promise.all([wakersStopped, this.claiming, ...this.sending])
      // Handed over and not sent: given back, due at once, for the other gateways.
      const left = [...this.queued.values()].flat().map((item) => item.delivery.id)
      this.queued.clear()
      if (left.length > 0)
        await this.store.release(this.options.claimOwner, left).catch((error: unknown) => {
          this.options.log.warn('sender: could not give back unsent deliveries; their lease will', { error })
        })
      this.linger.end()
      while (this.recording) await this.recording
    }
    await Promise.race([finished(), deadline])
  }

  /**
   * Claims due deliveries up to every limit and starts sending them. A destination whose claim filled its
   * free slots may have more due (it is `capped`): each of its answers claims again. One that got fewer has
   * none due now; it is claimed again on a notification, a retry asked for, or the poll.
   */
  private async claim(): Promise<void> {
    const { concurrency, leaseMarginSeconds, claimOwner, log } = this.options
    while (!this.stopped && this.total < concurrency) {
      let claimed: DueDelivery[]
      const limit = concurrency - this.total
      const busy = new Map([...this.inFlight.keys(), ...this.queued.keys()].map((id) => [id, this.busy(id)]))
      try {
        claimed = await this.store.claimDue(claimOwner, Object.fromEntries(busy), limit, leaseMarginSeconds)
      } catch (error) {
        log.warn('sender: cannot claim deliveries, postgres unavailable', { error })
        return
      }
      const got = new Map<string, number>()
      for (const delivery of claimed) {
        got.set(delivery.destinationId, (got.get(delivery.destinationId) ?? 0) + 1)
        this.limits.set(delivery.destinationId, delivery.maxInFlight)
      }
      // Below the global limit, a destination that got fewer than its free slots has nothing more due.
      if (claimed.length < limit) {
        for (const destination of [...this.capped, ...got.keys()]) {
          const free = (this.limits.get(destination) ?? 0) - (busy.get(destination) ?? 0)
          if ((got.get(destination) ?? 0) < free) this.capped.delete(destination)
          else this.capped.add(destination)
        }
      }
      // Sent now if a slot is still free: deliveries handed over while this claim ran may have taken it.
      this.take(claimed)
      // Short of the limit: another claim now would come back empty.
      if (claimed.length < limit) return
    }
  }

  /** Sends one claimed delivery; its answer frees its slot. */
  private dispatch(delivery: DueDelivery): void {
    const { concurrency } = this.options
    this.inFlight.set(delivery.destinationId, (this.inFlight.get(delivery.destinationId) ?? 0) + 1)
    this.total += 1
    const sent: Promise<void> = this.send(delivery).finally(() => {
      this.sending.delete(sent)
      this.countAnswer(delivery.destinationId)
      const left = (this.inFlight.get(delivery.destinationId) ?? 1) - 1
      if (left > 0) this.inFlight.set(delivery.destinationId, left)
      else this.inFlight.delete(delivery.destinationId)
      const wasFull = this.total >= concurrency
      this.total -= 1
      const next = this.nextQueued(delivery.destinationId)
      if (next) this.dispatch(next)
      else if (wasFull || this.capped.has(delivery.destinationId)) this.wake()
    })
    this.sending.add(sent)
  }

  /**
   * One attempt: the request, then its record. The slot is free once the answer is in; the record follows
   * with others (until then the claim's lease keeps the delivery from being sent again).
   */
  private async send(delivery: DueDelivery): Promise<void> {
    const attempt = await this.attempt(delivery)
    const outcome = outcomeOf(
      attempt.statusCode ?? undefined,
      retryAfterHeader(attempt.responseHeaders),
      delivery.retryScheduleSeconds,
      delivery.attempts,
    )
    this.unrecorded.push({ delivery, attempt, outcome })
    if (!usualOutcome(outcome) || this.unrecorded.length >= attemptsBatch) this.linger.end()
    this.recording ??= this.record().finally(() => (this.recording = undefined))
  }

  /** Records what has been sent, a batch per transaction, until nothing is left. */
  private async record(): Promise<void> {
    const { log } = this.options
    while (this.unrecorded.length > 0) {
      const usual = this.unrecorded.every((item) => usualOutcome(item.outcome))
      if (!this.stopped && usual && this.unrecorded.length < attemptsBatch)
        await this.linger.wait(Math.min(attemptsLingerMs, this.options.leaseMarginSeconds * 250))
      const batch = this.unrecorded.splice(0, attemptsBatch)
      let recorded: RecordedOutcome[]
      try {
        recorded = await this.store.recordAttempts(batch)
      } catch (error) {
        // Tried again for a quarter of the lease's margin; after that the leases bring them back, sent again
        // with the same webhook-id, which receivers deduplicate on.
        const retried = this.stopped
          ? []
          : this.failedRecords.retried(batch, this.options.leaseMarginSeconds * 250)
        if (retried.length < batch.length)
          log.error('sender: could not record attempts; those deliveries will be sent again', {
            deliveries: batch.length - retried.length,
            error,
          })
        if (retried.length > 0) {
          log.warn('sender: could not record attempts; trying again', { deliveries: retried.length, error })
          this.unrecorded.unshift(...retried)
          await sleep(recordRetryMs)
        }
        continue
      }
      batch.forEach((item, index) => this.report(item, recorded[index] ?? { recorded: false }))
    }
  }

  /** Logs and metrics for one recorded attempt. */
  private report({ delivery, attempt, outcome }: Unrecorded, recorded: RecordedOutcome): void {
    const { log, metrics } = this.options
    const result = outcomeLabel(outcome)
    metrics.count('destination_attempts_total', 'Requests made to destinations, by outcome', {
      destination: delivery.destinationId,
      outcome: result,
    })
    metrics.observe(
      'destination_attempt_duration_seconds',
      'How long destinations took to answer',
      { destination: delivery.destinationId },
      attempt.durationMs / 1000,
    )
    const fields = {
      delivery: delivery.id,
      destination: delivery.destinationId,
      event: delivery.eventId,
      attempt: delivery.attempts + 1,
      status: attempt.statusCode,
      error: attempt.error,
    }
    if (result === 'delivered') log.debug('delivered', fields)
    else if (result === 'failed') log.warn('sender: delivery failed, no attempts left', fields)
    else log.info('sender: attempt failed', { ...fields, retryInSeconds: outcomeDelay(outcome) })
    if (recorded.consecutiveFailures !== undefined && warnAt.has(recorded.consecutiveFailures)) {
      metrics.count('destination_failure_warnings_total', 'Warnings about consecutive failed deliveries', {
        destination: delivery.destinationId,
        consecutive: String(recorded.consecutiveFailures),
      })
      log.warn('sender: destination keeps failing', {
        destination: delivery.destinationId,
        consecutiveFailures: recorded.consecutiveFailures,
      })
    }
    if (recorded.disabledReason) {
      metrics.count('destinations_disabled_total', 'Destinations disabled by the sender', {
        destination: delivery.destinationId,
      })
      log.warn('sender: destination disabled', {
        destination: delivery.destinationId,
        reason: recorded.disabledReason,
      })
    }
  }

  private async attempt(delivery: DueDelivery): Promise<DeliveryAttempt> {
    const attemptedAt = new Date()
    const started = performance.now()
    const headers: Record<string, string> = { 'user-agent': this.options.userAgent }
    for (const [name, value] of Object.entries(delivery.headers)) {
      if (!reservedHeaders.has(name.toLowerCase())) headers[name] = value
    }
    Object.assign(
      headers,
      signatureHeaders(delivery.eventId, delivery.payload, delivery.secrets, attemptedAt),
    )
    headers['content-type'] = 'application/cloudevents+json'
    try {
      const answer = await post(
        this.options.dispatcher,
        delivery.url,
        headers,
        delivery.payload,
        delivery.timeoutMs,
        responseBodyLimit,
      )
      const redirect =
        answer.statusCode >= 300 && answer.statusCode < 400
          ? `redirected to ${String(answer.headers.location ?? '(no location)')}; redirects are not followed`
          : null
      const ok = answer.statusCode >= 200 && answer.statusCode < 300
      return {
        attemptedAt,
        durationMs: performance.now() - started,
        statusCode: answer.statusCode,
        responseHeaders: answer.headers,
        responseBody: answer.body,
        error: redirect ?? (ok ? null : `answered ${answer.statusCode}`),
      }
    } catch (error) {
      return {
        attemptedAt,
        durationMs: performance.now() - started,
        statusCode: null,
        responseHeaders: null,
        responseBody: null,
        error: describeError(error, delivery.timeoutMs),
      }
    }
  }
}

const retryAfterHeader = (headers: DeliveryAttempt['responseHeaders']): string | undefined => {
  const value = headers?.['retry-after']
  return Array.isArray(value) ? value[0] : value
}

/** Delivered, or retried later: nothing but the delivery itself changes. */
const usualOutcome = (outcome: Outcome) =>
  outcome.kind === 'delivered' || (outcome.kind === 'retry' && outcome.retryInSeconds !== undefined)

const outcomeLabel = (outcome: Outcome) =>
  outcome.kind === 'retry' ? (outcome.retryInSeconds === undefined ? 'failed' : 'retry') : outcome.kind

const outcomeDelay = (outcome: Outcome) => (outcome.kind === 'retry' ? outcome.retryInSeconds : undefined)
