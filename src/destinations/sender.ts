import { performance } from 'node:perf_hooks'
import { Webhook } from 'standardwebhooks'
import type { Dispatcher } from 'undici'
import { startWakers, type Wakers } from '../pipeline/wakers.ts'
import type { Logger } from '../ops/log.ts'
import type { Metrics } from '../ops/metrics.ts'
import type { DeliveryAttempt, DestinationStore, DueDelivery, Outcome, RecordedOutcome } from './store.ts'

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

/** Signers by secret: decoding a secret once, not once per request. */
const signers = new Map<string, Webhook>()
function signerFor(secret: string): Webhook {
  let signer = signers.get(secret)
  if (!signer) {
    signer = new Webhook(secret)
    if (signers.size > 10_000) signers.clear()
    signers.set(secret, signer)
  }
  return signer
}

/**
 * The Standard Webhooks headers for one request: `webhook-id` is the CloudEvent id (the same on every
 * attempt and replay), and `webhook-signature` holds a `v1,<base64>` signature per active secret,
 * space-separated, so a receiver holding either secret verifies while one is rotated out.
 */
export function signatureHeaders(
  eventId: string,
  payload: string,
  secrets: readonly string[],
  at: Date,
): Record<string, string> {
  return {
    'webhook-id': eventId,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': secrets.map((secret) => signerFor(secret).sign(eventId, at, payload)).join(' '),
  }
}

/** Reads at most `limit` bytes of an answer's body; the rest is not read (the connection is dropped). */
async function readCapped(body: Dispatcher.ResponseData['body'], limit: number): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    const buffer = chunk as Buffer
    chunks.push(buffer)
    size += buffer.length
    if (size >= limit) {
      body.destroy()
      break
    }
  }
  // Postgres text holds no NUL; an answer is for reading, so it becomes U+FFFD.
  return Buffer.concat(chunks).subarray(0, limit).toString('utf8').replaceAll('\u0000', '\uFFFD')
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
  /** Destinations whose last claim filled their free slots: more may be due (see claim). */
  private readonly capped = new Set<string>()
  /** Each destination's max_in_flight, as its deliveries last said. */
  private readonly limits = new Map<string, number>()
  private total = 0
  private claiming: Promise<void> | undefined
  private again = false
  private stopped = false
  private wakers: Wakers | undefined
  private readonly sending = new Set<Promise<void>>()
  /** Attempts made and not yet recorded; recorded together, in one transaction per batch. */
  private unrecorded: Unrecorded[] = []
  private recording: Promise<void> | undefined

  constructor(
    private readonly store: Pick<
      DestinationStore,
      'claimDue' | 'reclaimAbandoned' | 'recordAttempts' | 'listen'
    >,
    private readonly options: SenderOptions,
  ) {}

  async start(): Promise<void> {
    const { claimOwner, log, pollMs } = this.options
    this.wakers = startWakers({
      name: 'sender',
      rows: 'deliveries',
      pollMs,
      log,
      reclaim: () => this.store.reclaimAbandoned(claimOwner),
      listen: (onNotify) => this.store.listen(onNotify),
      wake: () => this.wake(),
    })
    await this.wakers.listening
    this.wake()
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
      const busy = new Map(this.inFlight)
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
      for (const delivery of claimed) this.dispatch(delivery)
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
      const left = (this.inFlight.get(delivery.destinationId) ?? 1) - 1
      if (left > 0) this.inFlight.set(delivery.destinationId, left)
      else this.inFlight.delete(delivery.destinationId)
      const wasFull = this.total >= concurrency
      this.total -= 1
      if (wasFull || this.capped.has(delivery.destinationId)) this.wake()
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
    this.recording ??= this.record().finally(() => (this.recording = undefined))
  }

  /** Records what has been sent, a batch per transaction, until nothing is left. */
  private async record(): Promise<void> {
    const { log } = this.options
    while (this.unrecorded.length > 0) {
      const batch = this.unrecorded.splice(0, 500)
      let recorded: RecordedOutcome[]
      try {
        recorded = await this.store.recordAttempts(batch)
      } catch (error) {
        // The leases bring them back: sent again with the same webhook-id, which receivers deduplicate on.
        log.error('sender: could not record attempts; those deliveries will be sent again', {
          deliveries: batch.length,
          error,
        })
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
    const signal = AbortSignal.timeout(delivery.timeoutMs)
    try {
      const response = await this.options.dispatcher.request({
        origin: new URL(delivery.url).origin,
        path: pathOf(delivery.url),
        method: 'POST',
        headers,
        body: delivery.payload,
        signal,
        headersTimeout: delivery.timeoutMs,
        bodyTimeout: delivery.timeoutMs,
      })
      const responseBody = await readCapped(response.body, responseBodyLimit)
      const redirect =
        response.statusCode >= 300 && response.statusCode < 400
          ? `redirected to ${String(response.headers.location ?? '(no location)')}; redirects are not followed`
          : null
      const ok = response.statusCode >= 200 && response.statusCode < 300
      return {
        attemptedAt,
        durationMs: performance.now() - started,
        statusCode: response.statusCode,
        responseHeaders: response.headers as Record<string, string | string[]>,
        responseBody,
        error: redirect ?? (ok ? null : `answered ${response.statusCode}`),
      }
    } catch (error) {
      return {
        attemptedAt,
        durationMs: performance.now() - started,
        statusCode: null,
        responseHeaders: null,
        responseBody: null,
        error: describeError(signal.aborted ? signal.reason : error, delivery.timeoutMs),
      }
    }
  }
}

const pathOf = (url: string) => {
  const parsed = new URL(url)
  return parsed.pathname + parsed.search
}

const retryAfterHeader = (headers: DeliveryAttempt['responseHeaders']): string | undefined => {
  const value = headers?.['retry-after']
  return Array.isArray(value) ? value[0] : value
}

const outcomeLabel = (outcome: Outcome) =>
  outcome.kind === 'retry' ? (outcome.retryInSeconds === undefined ? 'failed' : 'retry') : outcome.kind

const outcomeDelay = (outcome: Outcome) => (outcome.kind === 'retry' ? outcome.retryInSeconds : undefined)
