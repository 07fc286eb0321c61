import type { Config } from './config.ts'

/** One delivery as the gateway received it: raw bytes, never re-serialized. */
export interface WebhookRequest {
  readonly method: string
  /** Path and query exactly as received, e.g. `/webhooks/twilio?bodySHA256=…`. */
  readonly pathAndQuery: string
  /** The URL the provider called: PUBLIC_BASE_URL plus pathAndQuery (or the request's own URL when unset). */
  readonly publicUrl: string
  /** Header names lower-cased; repeated headers joined with `, ` as the Fetch API does. */
  readonly headers: Readonly<Record<string, string>>
  readonly body: Buffer
  readonly receivedAt: Date
}

export interface VerifyContext {
  readonly config: Config
  /** Milliseconds since the epoch at which the request arrived (tolerance checks use this, not the clock). */
  readonly now: number
  /** Where a verifier says why it refused, for the log only: the wire answer stays generic. */
  readonly reject: (reason: string) => false
}

export interface InternalEvent {
  readonly type: string
  readonly data: Readonly<Record<string, unknown>>
}

export type Handler<P> = (payload: P, req: WebhookRequest) => InternalEvent | readonly InternalEvent[] | null

/**
 * A provider is data plus small functions. `verify` returns false for a forged request and throws only
 * for a broken setup; `parse` throws MalformedWebhook for a verified body it cannot read.
 * Handlers are keyed by event type; a key ending in `.*` matches every type with that prefix.
 */
export interface Provider<P = any> {
  readonly name: string
  /** Default body limit in bytes; the configuration may override it. */
  readonly maxBodyBytes?: number
  /** Checks the provider's own setup when it is enabled, so a broken one fails at startup, not on a delivery. */
  checkSetup?(config: Config): void
  verify(req: WebhookRequest, secret: string, ctx: VerifyContext): boolean | Promise<boolean>
  parse(req: WebhookRequest): P
  eventKey(req: WebhookRequest, payload: P): string | undefined
  eventType(req: WebhookRequest, payload: P): string | undefined
  readonly handlers: Readonly<Record<string, Handler<P>>>
  /**
   * The provider's own answer to a verified request that is not an event (Slack's url_verification
   * challenge): sent instead of storing anything.
   */
  reply?(req: WebhookRequest, payload: P): Reply | undefined
  /**
   * The answer to a request the provider sends unsigned on purpose (Slack's ssl_check), recognized before
   * verification: a 200 that stores nothing, reveals nothing and counts as no failed verification.
   */
  unsignedReply?(req: WebhookRequest): Reply | undefined
}

/** A 200 with a body the provider asked for. */
export interface Reply {
  readonly contentType: string
  readonly body: string
}

/** A verified body the gateway cannot read: answered 400, never stored. */
export class MalformedWebhook extends Error {
  override readonly name = 'MalformedWebhook'
}

export function header(req: WebhookRequest, name: string): string | undefined {
  const value = req.headers[name.toLowerCase()]
  return value === undefined || value === '' ? undefined : value
}

/**
 * Why a signed time is refused, or undefined when it is within the tolerance both ways: "<what> N s in the
 * past (or future), outside the T s tolerance", `what` naming the provider and the field.
 */
export function outsideTolerance(
  what: string,
  signedAtMs: number,
  nowMs: number,
  toleranceSeconds: number,
): string | undefined {
  if (Math.abs(nowMs - signedAtMs) <= toleranceSeconds * 1000) return undefined
  const skew = Math.round(Math.abs(nowMs - signedAtMs) / 1000)
  return `${what} ${skew} s in the ${signedAtMs < nowMs ? 'past' : 'future'}, outside the ${toleranceSeconds} s tolerance`
}
