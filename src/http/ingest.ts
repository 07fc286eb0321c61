import { performance } from 'node:perf_hooks'
import { Readable } from 'node:stream'
import { randomUUID } from 'node:crypto'
import type { Config } from '../config.ts'
import type { FailedVerifications } from '../ops/ratelimit.ts'
import { eventsFor, outgoing, type Mapped } from '../pipeline/events.ts'
import type { Intake } from '../pipeline/intake.ts'
import type { Logger } from '../ops/log.ts'
import type { Metrics } from '../ops/metrics.ts'
import type { Rejections } from '../ops/rejections.ts'
import { MalformedWebhook, type Provider, type Reply, type WebhookRequest } from '../provider.ts'

export interface IngestDeps {
  readonly config: Config
  readonly intake: Pick<Intake, 'submit' | 'mapsOnReceipt'>
  readonly failedVerifications: FailedVerifications
  readonly metrics: Metrics
  readonly log: Logger
  /** Where refused requests are kept for operators (the last ones per provider). */
  readonly rejections?: Pick<Rejections, 'record'> | undefined
}

/** One HTTP request as the server received it, before anything is read from its body. */
export interface Delivery {
  readonly method: string
  /** Path and query exactly as received. */
  readonly pathAndQuery: string
  /** Scheme and host as the server saw them; the public URL when PUBLIC_BASE_URL is unset. */
  readonly origin: string
  /** Header names lower-cased, repeated headers joined with `, `. */
  readonly headers: Readonly<Record<string, string>>
  readonly body: AsyncIterable<Uint8Array> | null
  /** The client's address, for the failed-verification limit. */
  readonly address: string
}

export type Answer =
  | {
      readonly status: 200
      readonly body: { readonly status: 'accepted' | 'duplicate'; readonly id: string }
    }
  | { readonly status: 400 | 401 | 413 | 429 | 503; readonly body: { readonly error: string } }
  /** The provider's own answer to a request that is not an event (nothing stored). */
  | { readonly status: 200; readonly reply: Reply }

class BodyTooLarge extends Error {}

/** Reads the body as bytes, refusing more than `limit` whether or not Content-Length tells the truth. */
async function readBody(delivery: Delivery, limit: number): Promise<Buffer> {
  const declared = Number(delivery.headers['content-length'] ?? NaN)
  if (declared > limit) throw new BodyTooLarge()
  if (!delivery.body) return Buffer.alloc(0)
  if (delivery.body instanceof Readable) return readStream(delivery.body, limit)
  const chunks: Uint8Array[] = []
  let size = 0
  // Leaving the loop early (the throw) ends the stream: nothing more is buffered.
  for await (const chunk of delivery.body) {
    size += chunk.byteLength
    if (size > limit) throw new BodyTooLarge()
    chunks.push(chunk)
  }
  return Buffer.concat(chunks, size)
}

/**
 * A Node stream's bytes, by its events: what `for await` does, without an async iterator and a promise per
 * chunk. Over the limit, reading stops (paused, as leaving that loop leaves it): nothing more is buffered,
 * and the answer still goes out on the connection.
 */
function readStream(stream: Readable, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const done = (error?: Error) => {
      stream.off('data', onData).off('end', onEnd).off('error', done).off('close', onClose)
      if (error) reject(error)
      else resolve(Buffer.concat(chunks, size))
    }
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength
      if (size > limit) {
        done(new BodyTooLarge())
        stream.pause()
        return
      }
      chunks.push(chunk)
    }
    const onEnd = () => done()
    const onClose = () => done(new Error('the request was closed before its body was read'))
    stream.on('data', onData).on('end', onEnd).on('error', done).on('close', onClose)
  })
}

/** Longest event id or type stored: Postgres' btree (the unique key) refuses entries over about 2.7 KB. */
const maxIdentifierBytes = 1024

/**
 * The event id or type, or MalformedWebhook when it is missing or Postgres could not store it as text: a
 * value that fails the group's commit would take every delivery committed with it down too.
 */
function storable(value: string | undefined, what: string, provider: Provider): string {
  const fail = (problem: string) => new MalformedWebhook(`${provider.name}: ${problem}`)
  if (!value) throw fail(`no ${what} in the delivery`)
  if (value.includes('\u0000')) throw fail(`${what} contains a NUL character`)
  if (value.length > maxIdentifierBytes / 3 && Buffer.byteLength(value) > maxIdentifierBytes)
    throw fail(`${what} is longer than ${maxIdentifierBytes} bytes`)
  return value
}

export function bodyLimit(config: Config, provider: Provider): number {
  return config.maxBodyBytes[provider.name] ?? provider.maxBodyBytes ?? config.maxBodyBytes.default
}

function toRequest(delivery: Delivery, body: Buffer, config: Config, receivedAt: Date): WebhookRequest {
  return {
    method: delivery.method,
    pathAndQuery: delivery.pathAndQuery,
    // Twilio signs the public URL, not the one a proxy handed us.
    publicUrl: (config.publicBaseUrl ?? delivery.origin) + delivery.pathAndQuery,
    headers: delivery.headers,
    body,
    receivedAt,
  }
}

async function verifyWithAny(
  provider: Provider,
  req: WebhookRequest,
  secrets: readonly string[],
  deps: IngestDeps,
) {
  // Why each secret failed, by its place in the configured list: which slot a rotation left behind.
  const reasons: string[] = []
  let said: string | undefined
  const ctx = {
    config: deps.config,
    now: req.receivedAt.getTime(),
    reject: (reason: string) => ((said ??= reason), false as const),
  }
  for (const [index, secret] of secrets.entries()) {
    said = undefined
    if (await provider.verify(req, secret, ctx)) return { valid: true, reasons }
    reasons.push(`secret ${index + 1}: ${said ?? 'signature does not match'}`)
  }
  return { valid: false, reasons }
}

/** Answer times: a commit takes milliseconds; providers give up at 5 to 10 s. */
const ackBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** One request: limit -> verify -> extract key and type -> store -> answer. */
export async function ingest(
  deps: IngestDeps,
  provider: Provider,
  secrets: readonly string[],
  delivery: Delivery,
  /** This request's id (x-request-id): on its log lines and in the rejection log. */
  requestId?: string,
): Promise<Answer> {
  const { log, metrics } = deps
  const started = performance.now()
  const outcome = (result: string) => {
    const labels = { provider: provider.name, outcome: result }
    metrics.count('webhooks_received_total', 'Deliveries received, by outcome', labels)
    metrics.observe(
      'webhook_ack_duration_seconds',
      'From the request to its answer (for accepted ones: after the commit), by outcome',
      labels,
      (performance.now() - started) / 1000,
      ackBuckets,
    )
  }
  const receivedAt = new Date()
  const rejected = (result: string, status: number, reasons: readonly string[], bodyBytes?: number) => {
    outcome(result)
    deps.rejections?.record({
      time: receivedAt.toISOString(),
      provider: provider.name,
      outcome: result,
      status,
      address: delivery.address,
      requestId,
      reasons,
      secretsTried: secrets.length,
      headerNames: Object.keys(delivery.headers),
      bodyBytes,
    })
  }

  const limit = bodyLimit(deps.config, provider)
  let body: Buffer
  try {
    body = await readBody(delivery, limit)
  } catch (error) {
    if (!(error instanceof BodyTooLarge)) throw error
    rejected('too_large', 413, [`body over the ${limit}-byte limit`])
    log.warn('rejected: body over the limit', { requestId, provider: provider.name, limit })
    return { status: 413, body: { error: 'payload too large' } }
  }
  const req = toRequest(delivery, body, deps.config, receivedAt)

  const unsigned = provider.unsignedReply?.(req)
  if (unsigned) {
    outcome('replied')
    log.info('replied to an unsigned check', { requestId, provider: provider.name })
    return { status: 200, reply: unsigned }
  }

  const { valid, reasons } = await verifyWithAny(provider, req, secrets, deps)
  if (!valid) {
    const throttled = await deps.failedVerifications.recordFailure(delivery.address)
    rejected(throttled ? 'throttled' : 'invalid_signature', throttled ? 429 : 401, reasons, body.length)
    log.warn('rejected: invalid signature', {
      requestId,
      provider: provider.name,
      address: delivery.address,
      reasons,
    })
    return throttled
      ? { status: 429, body: { error: 'too many failed verifications' } }
      : { status: 401, body: { error: 'invalid signature' } }
  }

  let eventKey: string
  let eventType: string
  let payload: unknown
  try {
    payload = provider.parse(req)
    const reply = provider.reply?.(req, payload)
    if (reply) {
      outcome('replied')
      log.info('replied', { requestId, provider: provider.name })
      return { status: 200, reply }
    }
    eventKey = storable(provider.eventKey(req, payload), 'event id', provider)
    eventType = storable(provider.eventType(req, payload), 'event type', provider)
  } catch (error) {
    if (!(error instanceof MalformedWebhook)) throw error
    rejected('malformed', 400, [error.message], body.length)
    log.warn('rejected: malformed', { requestId, provider: provider.name, reason: error.message })
    return { status: 400, body: { error: error.message } }
  }

  const webhook = {
    id: randomUUID(),
    provider: provider.name,
    eventKey,
    eventType,
    method: req.method,
    path: req.pathAndQuery,
    publicUrl: req.publicUrl,
    headers: req.headers,
    body,
    receivedAt,
  }
  // The events are mapped now, while the payload is at hand, for a worker in this process to publish
  // straight after the commit; the payload is not kept (held until the commit, a large payload's objects
  // would outlive the young generation, a cost to the collector beyond a second parse).
  let mapped: Mapped | undefined
  if (deps.intake.mapsOnReceipt) {
    try {
      mapped = { events: eventsFor(webhook, provider, payload).map(outgoing) }
    } catch (error) {
      mapped = { error }
    }
  }
  payload = undefined

  let stored
  try {
    stored = await deps.intake.submit({ ...webhook, mapped })
  } catch (error) {
    outcome('storage_unavailable')
    log.error('storage unavailable: answered 503', { requestId, provider: provider.name, eventKey, error })
    return { status: 503, body: { error: 'storage unavailable' } }
  }
  if (stored.duplicate) {
    outcome('duplicate')
    return { status: 200, body: { status: 'duplicate', id: stored.id } }
  }
  outcome('accepted')
  metrics.setGauge(
    'webhook_last_accepted_timestamp_seconds',
    'When the last delivery of each provider was accepted (Unix time), for "no webhook for an hour" alerts',
    { provider: provider.name },
    receivedAt.getTime() / 1000,
  )
  log.info('accepted', { requestId, provider: provider.name, id: stored.id, eventKey, eventType })
  return { status: 200, body: { status: 'accepted', id: stored.id } }
}
