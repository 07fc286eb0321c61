import { createHmac } from 'node:crypto'
import { safeEqual } from '../src/crypto.ts'
import { isFormEncoded, parseForm, parseJsonObject } from '../src/parse.ts'
import {
  header,
  MalformedWebhook,
  outsideTolerance,
  type Provider,
  type WebhookRequest,
} from '../src/provider.ts'
import {
  secretKey,
  type HmacSpec,
  type Lookup,
  type ProviderSpec,
  type Source,
  type StandardWebhooksSpec,
} from '../src/providers-file.ts'
import { standardWebhooksSignature } from '../src/standard-webhooks.ts'

/**
 * The senders of PROVIDERS_FILE as Providers, like the five built in: the same verify -> parse -> key and
 * type path, limits, rejection log, metrics and dashboard. Two kinds: `standard-webhooks` and a generic
 * `hmac`; the presets are entries of these kinds (src/providers-file.ts), plus what Slack asks beyond a
 * signature (its url_verification handshake).
 */

type Payload = Record<string, unknown>

export function configuredProviders(specs: readonly ProviderSpec[]): Record<string, Provider<Payload>> {
  return Object.fromEntries(specs.map((spec) => [spec.name, configuredProvider(spec)]))
}

export function configuredProvider(spec: ProviderSpec): Provider<Payload> {
  const slack = spec.preset === 'slack'
  return {
    name: spec.name,
    verify: spec.kind === 'standard-webhooks' ? verifyStandardWebhooks(spec) : verifyHmac(spec),
    parse: (req) => parsePayload(req, spec.name),
    eventKey: (req, payload) => find(spec.id, req, payload),
    eventType: (req, payload) =>
      find(spec.type, req, payload) ??
      // Slash commands name no type: their command is in `command`, which a routing key cannot hold.
      (slack && typeof payload.command === 'string' ? 'slash_command' : undefined),
    // Slack checks a slash command's TLS setup with an unsigned ssl_check=1 form post, answered 200 before
    // any verification, as Slack's own Bolt does.
    ...(slack && {
      unsignedReply: (req: WebhookRequest) =>
        isFormEncoded(header(req, 'content-type')) && parseForm(req.body).ssl_check === '1'
          ? { contentType: 'text/plain', body: '' }
          : undefined,
    }),
    // Slack checks a new Events API URL with a signed url_verification: answered with its challenge.
    ...(slack && {
      reply: (_req: WebhookRequest, payload: Payload) =>
        payload.type === 'url_verification' && typeof payload.challenge === 'string'
          ? { contentType: 'application/json', body: JSON.stringify({ challenge: payload.challenge }) }
          : undefined,
    }),
    // Raw events only: a configured sender's events are `raw.<name>.<type>`.
    handlers: {},
  }
}

/**
 * A JSON object, or a form's fields (Slack's slash commands); a form whose `payload` field is JSON (Slack's
 * interactivity, as GitHub's form deliveries) is that JSON.
 */
function parsePayload(req: WebhookRequest, name: string): Payload {
  if (!isFormEncoded(header(req, 'content-type'))) return parseJsonObject(req.body, name)
  const fields = parseForm(req.body)
  return typeof fields.payload === 'string' ? parseJsonObject(fields.payload, name) : fields
}

/** A value as text: a header, or a string or number at a dotted path of the payload. */
function valueAt(source: Source, req: WebhookRequest, payload: Payload | undefined): string | undefined {
  if (source.from === 'header') return header(req, source.name)
  let value: unknown = payload
  for (const key of source.name.split('.')) {
    if (!value || typeof value !== 'object' || !Object.hasOwn(value, key)) return undefined
    value = (value as Record<string, unknown>)[key]
  }
  if (typeof value === 'number' && Number.isFinite(value)) return String(value)
  return typeof value === 'string' && value !== '' ? value : undefined
}

/** The first candidate whose sources are all present, joined with `.`. */
function find(lookup: Lookup, req: WebhookRequest, payload: Payload | undefined): string | undefined {
  for (const candidate of lookup) {
    const values = candidate.map((source) => valueAt(source, req, payload))
    if (values.every((value) => value !== undefined)) return values.join('.')
  }
  return undefined
}

/** Milliseconds since the epoch of a timestamp in the configured format, or undefined when it is not one. */
export function timestampMs(text: string, format: HmacSpec['timestampFormat']): number | undefined {
  if (format === 'iso8601') {
    if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/.test(text)) return undefined
    const ms = Date.parse(text)
    return Number.isNaN(ms) ? undefined : ms
  }
  if (!/^\d{1,16}$/.test(text)) return undefined
  return format === 'unix_ms' ? Number(text) : Number(text) * 1000
}

function verifyStandardWebhooks(spec: StandardWebhooksSpec): Provider<Payload>['verify'] {
  // The spec's webhook-* headers, or Svix's svix-* (Clerk's and Resend's deliveries).
  const either = (req: WebhookRequest, name: string) =>
    header(req, `webhook-${name}`) ?? header(req, `svix-${name}`)
  return (req, secret, { now, reject }) => {
    const id = either(req, 'id')
    const timestamp = either(req, 'timestamp')
    const signatures = either(req, 'signature')
    if (!id || !timestamp || !signatures)
      return reject(
        `${spec.name}: no webhook-id, webhook-timestamp and webhook-signature (or svix-*) headers`,
      )
    if (!/^\d{1,12}$/.test(timestamp)) return reject(`${spec.name}: webhook-timestamp is not Unix seconds`)
    const expected = standardWebhooksSignature(secret, id, timestamp, req.body)
    // Several signatures, space-separated, while the sender rotates: any `v1,` one may match.
    const matches = signatures
      .split(' ')
      .some((candidate) => candidate.startsWith('v1,') && safeEqual(candidate.slice(3), expected))
    if (!matches) return reject(`${spec.name}: no v1 signature in webhook-signature matches`)
    const late = outsideTolerance(
      `${spec.name}: timestamp`,
      Number(timestamp) * 1000,
      now,
      spec.toleranceSeconds,
    )
    return late ? reject(late) : true
  }
}

/** The bytes the sender signed: the template with each token's value, `{body}` the raw bytes. */
function signedMessage(spec: HmacSpec, req: WebhookRequest, timestamp: string | undefined): Buffer[] {
  return spec.signedPayload.split(/(\{[a-z]+\})/).map((part) => {
    switch (part) {
      case '{body}':
        return req.body
      case '{timestamp}':
        return Buffer.from(timestamp ?? '')
      case '{id}':
        return Buffer.from(find(spec.id, req, undefined) ?? '')
      case '{method}':
        return Buffer.from(req.method)
      case '{url}':
        // The public URL, as the sender called it (PUBLIC_BASE_URL), never a proxy's.
        return Buffer.from(req.publicUrl)
      default:
        return Buffer.from(part)
    }
  })
}

/** The signature header's value for a message, in the spec's algorithm, encoding and prefix. */
export function hmacSignature(spec: HmacSpec, secret: string, message: readonly Buffer[]): string {
  const digest = createHmac(spec.algorithm, secretKey(spec, secret))
  for (const part of message) digest.update(part)
  return spec.signaturePrefix + digest.digest(spec.encoding)
}

function verifyHmac(spec: HmacSpec): Provider<Payload>['verify'] {
  const timestampIn = spec.timestamp
  return (req, secret, { now, reject }) => {
    const received = header(req, spec.signatureHeader)
    if (!received) return reject(`${spec.name}: no ${spec.signatureHeader} header`)
    const timestamp = timestampIn?.from === 'header' ? header(req, timestampIn.name) : undefined
    if (timestampIn?.from === 'header' && !timestamp)
      return reject(`${spec.name}: no ${timestampIn.name} header`)
    const expected = hmacSignature(spec, secret, signedMessage(spec, req, timestamp))
    // Hex may come in either case; several signatures may be listed, space-separated, while rotating.
    const normalize = (value: string) => (spec.encoding === 'hex' ? value.toLowerCase() : value)
    const matches = received
      .trim()
      .split(/\s+/)
      .some((candidate) => safeEqual(normalize(candidate), normalize(expected)))
    if (!matches) return reject(`${spec.name}: ${spec.signatureHeader} does not match`)
    if (!timestampIn) return true
    // A timestamp in the body is read once the body is known to be the sender's (verified above).
    const text = timestamp ?? valueAt(timestampIn, req, tryParse(req, spec.name))
    if (text === undefined)
      return reject(`${spec.name}: no timestamp at ${timestampIn.from}:${timestampIn.name}`)
    const signedAt = timestampMs(text, spec.timestampFormat)
    if (signedAt === undefined)
      return reject(`${spec.name}: timestamp "${text.slice(0, 40)}" is not ${spec.timestampFormat}`)
    const late = outsideTolerance(`${spec.name}: timestamp`, signedAt, now, spec.toleranceSeconds)
    return late ? reject(late) : true
  }
}

function tryParse(req: WebhookRequest, name: string): Payload | undefined {
  try {
    return parsePayload(req, name)
  } catch (error) {
    if (error instanceof MalformedWebhook) return undefined
    throw error
  }
}

/**
 * The headers that sign `body` as the sender would (npm run send, the tests): the signature, and the
 * timestamp and id where the spec reads them from headers. A timestamp or id in the body must be there already.
 */
export function signedHeaders(
  spec: ProviderSpec,
  secret: string,
  request: {
    readonly body: Buffer
    readonly url: string
    readonly method?: string
    readonly id: string
    readonly at: Date
  },
): Record<string, string> {
  if (spec.kind === 'standard-webhooks') {
    const timestamp = String(Math.floor(request.at.getTime() / 1000))
    return {
      'webhook-id': request.id,
      'webhook-timestamp': timestamp,
      'webhook-signature': `v1,${standardWebhooksSignature(secret, request.id, timestamp, request.body)}`,
    }
  }
  const headers: Record<string, string> = {}
  const idSource = spec.id[0]?.[0]
  if (idSource?.from === 'header') headers[idSource.name] = request.id
  let timestamp: string | undefined
  if (spec.timestamp?.from === 'header') {
    timestamp = formatTimestamp(request.at, spec.timestampFormat)
    headers[spec.timestamp.name] = timestamp
  }
  const req: WebhookRequest = {
    method: request.method ?? 'POST',
    pathAndQuery: new URL(request.url).pathname,
    publicUrl: request.url,
    headers,
    body: request.body,
    receivedAt: request.at,
  }
  headers[spec.signatureHeader] = hmacSignature(spec, secret, signedMessage(spec, req, timestamp))
  return headers
}

export function formatTimestamp(at: Date, format: HmacSpec['timestampFormat']): string {
  if (format === 'iso8601') return at.toISOString()
  return format === 'unix_ms' ? String(at.getTime()) : String(Math.floor(at.getTime() / 1000))
}
