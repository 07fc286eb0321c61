import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import type { ProviderName } from '../src/send/offered.ts'
import type { SignedRequest } from '../src/send/sign.ts'
import type { Kind, Prepared, Signing } from './deliveries.ts'
import type { History } from './history.ts'
import type { Random } from './options.ts'

/**
 * The clients: an open loop that starts new deliveries on a fixed schedule whatever the answers, and retries
 * each one like a provider (any non-2xx, refused connection or 10 s timeout, with exponential backoff) until it
 * is acknowledged or the run ends. Some acknowledged deliveries are sent again later, as providers do; a few
 * deliveries are bad and must never be acknowledged.
 */

/** One delivery and what became of it. */
export interface DeliveryRecord {
  readonly seq: number
  readonly provider: ProviderName
  readonly event: string
  readonly kind: Kind
  readonly key: string | undefined
  /** Milliseconds since the run began. */
  readonly firstSentAt: number
  attempts: number
  /** When the first 2xx arrived. */
  ackedAt: number | undefined
  ackedAtAttempt: number | undefined
  answer: 'accepted' | 'duplicate' | undefined
  /** The gateway's id in the first 2xx answer. */
  webhookId: string | undefined
  /** Bad deliveries: how many 2xx they got (must stay 0). */
  wronglyAcked: number
  /** The request maker, kept while the delivery may still be sent; dropped after, to keep memory flat. */
  prepared: Prepared | undefined
}

/** The answers to a batch of re-sent deliveries. */
export interface ResendTally {
  sent: number
  accepted: number
  duplicate: number
  /** Never got a 2xx before the run's end. */
  unacked: number
}

interface Answer {
  readonly ok: boolean
  readonly status: number
  readonly outcome: 'accepted' | 'duplicate' | undefined
  readonly id: string | undefined
  /** `200 accepted`, `503`, `refused`, `timeout`...: what the report counts. */
  readonly label: string
}

const clientTimeoutMs = 10_000
const firstBackoffMs = 500
const maxBackoffMs = 10_000
const badShare = 0.03
const resendShare = 0.1
/** Of the resends, this share goes out twice at once. */
const concurrentShare = 0.3
const badAttempts = 3
const tickMs = 10
const redeliveryConcurrency = 128
/**
 * Requests on the wire at once, as a provider bounds its concurrent deliveries to one endpoint. Beyond it,
 * sends wait for a slot: a gateway that hangs gets a queue, not a storm of tens of thousands of sockets.
 */
const maxRequestsAtOnce = 1024

/** A counting semaphore: `acquire` waits while `size` are taken. */
class Slots {
  private taken = 0
  private readonly waiting: (() => void)[] = []

  constructor(private readonly size: number) {}

  acquire(): Promise<void> {
    if (this.taken < this.size) {
      this.taken += 1
      return Promise.resolve()
    }
    return new Promise((resolve) => this.waiting.push(resolve))
  }

  release(): void {
    const next = this.waiting.shift()
    if (next) next()
    else this.taken -= 1
  }
}

export class Load {
  readonly records: DeliveryRecord[] = []
  /** Answers by label, over every attempt. */
  readonly labels = new Map<string, number>()
  /** 2xx answers: when the request started and how long it took (ms). */
  readonly okStartedAt: number[] = []
  readonly okLatencyMs: number[] = []
  /** When each 2xx arrived, in arrival order (so sorted). */
  readonly okArrivedAt: number[] = []
  readonly resends: ResendTally = { sent: 0, accepted: 0, duplicate: 0, unacked: 0 }
  /** Resends of an acknowledged delivery answered `accepted`: only a restore that lost its row explains one. */
  readonly resendsAccepted: {
    readonly seq: number
    readonly ackedAt: number
    readonly answeredAt: number
  }[] = []
  /** Resends whose two copies went out at once. */
  concurrentResends = 0
  /** Requests that found no gateway in rotation (all stopped). */
  noTarget = 0
  /** Acknowledged deliveries keep their requests while this is on: the restore resends them. */
  retainAcked = false

  private readonly agent = new Agent({
    connections: maxRequestsAtOnce,
    keepAliveTimeout: 4000,
    pipelining: 1,
  })
  private readonly slots = new Slots(maxRequestsAtOnce)
  private launched = 0
  private startedAt = 0
  private ticker: NodeJS.Timeout | undefined
  private launching = false
  private resending = false
  private retryUntil = Number.POSITIVE_INFINITY
  private readonly inFlight = new Set<Promise<unknown>>()
  private next = 0

  constructor(
    private readonly options: {
      readonly rate: number
      readonly random: Random
      readonly history: History
      readonly signing: Signing
      /** The base URLs of the gateways in rotation. */
      readonly targets: () => readonly string[]
    },
  ) {}

  start(): void {
    this.startedAt = this.options.history.now()
    this.launching = true
    this.resending = true
    this.ticker = setInterval(() => this.tick(), tickMs)
  }

  /** No new deliveries and no more resends; what is unacknowledged keeps being retried. */
  stopNew(): void {
    this.launching = false
    this.resending = false
    clearInterval(this.ticker)
  }

  /** Retries go on until `deadlineMs` from now; resolves when every delivery is settled or given up. */
  async settle(deadlineMs: number): Promise<void> {
    this.retryUntil = this.options.history.now() + deadlineMs
    // Polled: a Promise.race over thousands of pending sends, once per settled one, costs quadratic memory.
    while (this.inFlight.size > 0) await sleep(200)
  }

  /** Requests in flight now (a delivery being retried counts once). */
  pending(): number {
    return this.inFlight.size
  }

  /** Sends `records` again, like an operator pressing "resend" in each provider's dashboard, and tallies the answers. */
  async redeliver(records: readonly DeliveryRecord[]): Promise<ResendTally> {
    const tally: ResendTally = { sent: 0, accepted: 0, duplicate: 0, unacked: 0 }
    const queue = [...records]
    // A dashboard's "resend all" goes out as a steady stream, not as one burst of thousands.
    const sender = async () => {
      for (let record = queue.shift(); record; record = queue.shift()) {
        const prepared = record.prepared
        if (!prepared) continue
        tally.sent += 1
        const answer = await this.track(
          this.deliver(record, prepared, Number.POSITIVE_INFINITY, false).catch(() => undefined),
        )
        if (answer?.outcome === 'accepted') tally.accepted += 1
        else if (answer?.outcome === 'duplicate') tally.duplicate += 1
        else tally.unacked += 1
      }
    }
    await Promise.all(Array.from({ length: redeliveryConcurrency }, sender))
    return tally
  }

  /** Lets go of the requests kept for the restore. */
  forgetAcked(): void {
    this.retainAcked = false
    for (const record of this.records) if (record.ackedAt !== undefined) record.prepared = undefined
  }

  /** Drops every connection, and any request still in flight (the run is over). */
  async close(): Promise<void> {
    await this.agent.destroy()
  }

  private tick(): void {
    if (!this.launching) return
    const due = Math.floor(((this.options.history.now() - this.startedAt) / 1000) * this.options.rate)
    // Open loop: what is due is sent now, however the earlier ones fare.
    while (this.launched < due) {
      this.launched += 1
      void this.track(
        this.launch().catch((error: unknown) => {
          // A bug of the run itself, not of the gateway: counted, so the report shows it.
          const label = `chaos internal error: ${(error as Error).message}`
          this.labels.set(label, (this.labels.get(label) ?? 0) + 1)
        }),
      )
    }
  }

  private track<T>(work: Promise<T>): Promise<T> {
    this.inFlight.add(work)
    void work.finally(() => this.inFlight.delete(work))
    return work
  }

  private async launch(): Promise<void> {
    const { random, signing, history } = this.options
    const bad = random.chance(badShare)
    const prepared = bad ? await signing.bad(random) : await signing.good(random)
    const record: DeliveryRecord = {
      seq: this.records.length,
      provider: prepared.provider,
      event: prepared.event,
      kind: prepared.kind,
      key: prepared.key,
      firstSentAt: history.now(),
      attempts: 0,
      ackedAt: undefined,
      ackedAtAttempt: undefined,
      answer: undefined,
      webhookId: undefined,
      wronglyAcked: 0,
      prepared,
    }
    this.records.push(record)
    await this.deliver(record, prepared, bad ? badAttempts : Number.POSITIVE_INFINITY, true)
    if (bad) {
      record.prepared = undefined
      return
    }
    if (record.ackedAt !== undefined && this.resending && random.chance(resendShare)) {
      this.scheduleResend(record, prepared)
      return
    }
    if (!this.retainAcked) record.prepared = undefined
  }

  /** The same delivery again, 1 to 15 s later, re-signed where the signature carries a time; some twice at once. */
  private scheduleResend(record: DeliveryRecord, prepared: Prepared): void {
    const { random } = this.options
    const delayMs = random.between(1000, 15_000)
    const copies = random.chance(concurrentShare) ? 2 : 1
    void this.track(
      (async () => {
        await sleep(delayMs)
        if (this.resending) {
          if (copies === 2) this.concurrentResends += 1
          await Promise.all(
            Array.from({ length: copies }, async () => {
              this.resends.sent += 1
              const answer = await this.deliver(record, prepared, Number.POSITIVE_INFINITY, false).catch(
                () => undefined,
              )
              if (answer?.outcome === 'accepted') {
                this.resends.accepted += 1
                this.resendsAccepted.push({
                  seq: record.seq,
                  ackedAt: record.ackedAt ?? 0,
                  answeredAt: this.options.history.now(),
                })
              } else if (answer?.outcome === 'duplicate') this.resends.duplicate += 1
              else this.resends.unacked += 1
            }),
          )
        }
        if (!this.retainAcked) record.prepared = undefined
      })(),
    )
  }

  /**
   * Sends until a 2xx, `maxAttempts` or the run's end, backing off 0.5 s doubling to 10 s. `first` marks the
   * delivery's own sends (what ack times and the record are about), as opposed to resends.
   */
  private async deliver(
    record: DeliveryRecord,
    prepared: Prepared,
    maxAttempts: number,
    first: boolean,
  ): Promise<Answer | undefined> {
    const { history } = this.options
    for (let attempt = 1; ; attempt++) {
      // Signed once a slot is free, so a signature's time is the time it is sent.
      await this.slots.acquire()
      let answer: Answer
      let startedAt: number
      try {
        startedAt = history.now()
        answer = await this.post(prepared.provider, await prepared.request())
      } finally {
        this.slots.release()
      }
      const arrivedAt = history.now()
      this.labels.set(answer.label, (this.labels.get(answer.label) ?? 0) + 1)
      if (first) record.attempts = attempt
      if (answer.ok) {
        this.okStartedAt.push(startedAt)
        this.okLatencyMs.push(arrivedAt - startedAt)
        this.okArrivedAt.push(arrivedAt)
        if (record.kind !== 'good') record.wronglyAcked += 1
        if (first && record.ackedAt === undefined) {
          record.ackedAt = arrivedAt
          record.ackedAtAttempt = attempt
          record.answer = answer.outcome
          record.webhookId = answer.id
        }
        return answer
      }
      if (attempt >= maxAttempts || history.now() >= this.retryUntil) return undefined
      const backoff = Math.min(firstBackoffMs * 2 ** (attempt - 1), maxBackoffMs)
      await sleep(backoff * (0.8 + 0.4 * Math.random()))
      if (history.now() >= this.retryUntil) return undefined
    }
  }

  private async post(provider: ProviderName, signed: SignedRequest): Promise<Answer> {
    const targets = this.options.targets()
    const base = targets[this.next++ % Math.max(1, targets.length)]
    if (base === undefined) {
      this.noTarget += 1
      return { ok: false, status: 0, outcome: undefined, id: undefined, label: 'no gateway in rotation' }
    }
    try {
      const response = await request(`${base}/webhooks/${provider}`, {
        method: 'POST',
        headers: signed.headers,
        body: signed.body,
        dispatcher: this.agent,
        headersTimeout: clientTimeoutMs,
        bodyTimeout: clientTimeoutMs,
        signal: AbortSignal.timeout(clientTimeoutMs),
      })
      const text = await response.body.text()
      const status = response.statusCode
      if (status < 200 || status > 299)
        return { ok: false, status, outcome: undefined, id: undefined, label: String(status) }
      let outcome: Answer['outcome']
      let id: string | undefined
      try {
        const parsed = JSON.parse(text) as { status?: unknown; id?: unknown }
        if (parsed.status === 'accepted' || parsed.status === 'duplicate') outcome = parsed.status
        if (typeof parsed.id === 'string') id = parsed.id
      } catch {
        // Not JSON: counted under its status alone.
      }
      return { ok: true, status, outcome, id, label: `${status} ${outcome ?? '(no status)'}` }
    } catch (error) {
      return { ok: false, status: 0, outcome: undefined, id: undefined, label: transportLabel(error) }
    }
  }
}

function transportLabel(error: unknown): string {
  const failure = error as { code?: unknown; name?: unknown; cause?: { code?: unknown } }
  const named = [failure.code, failure.cause?.code, failure.name].find((value) => typeof value === 'string')
  const code = typeof named === 'string' ? named : 'error'
  if (code === 'ECONNREFUSED') return 'connection refused'
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') return 'connection reset'
  if (code === 'TimeoutError' || code === 'AbortError' || code.includes('TIMEOUT')) return 'timeout (10 s)'
  return `transport error ${code}`
}
