import { hash } from 'node:crypto'
import type { Provider, WebhookRequest } from '../provider.ts'
import { jsonSourceOf } from '../parse.ts'
import { internalEvents } from './registry.ts'
import type { NewWebhook } from '../db/webhooks.ts'

/** A CloudEvents 1.0 JSON document as published on the exchange. */
export interface CloudEvent {
  readonly specversion: '1.0'
  readonly id: string
  readonly source: string
  readonly type: string
  readonly time: string
  readonly datacontenttype: 'application/json'
  readonly data: unknown
  readonly provider: string
  readonly providereventid: string
  readonly webhookid: string
}

/**
 * A UUID derived from what the event is, so a retry or a replay republishes the same id and
 * consumers can deduplicate on it (RFC 9562 version 8, name-based with SHA-256).
 */
export function eventId(provider: string, eventKey: string, name: string): string {
  // crypto.hash, one call: half the cost of createHash().update().digest() for a short input.
  const digest = hash('sha256', `${provider}\u0000${eventKey}\u0000${name}`, 'buffer')
  digest[6] = (digest[6]! & 0x0f) | 0x80
  digest[8] = (digest[8]! & 0x3f) | 0x80
  const hex = digest.subarray(0, 16).toString('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

/** `raw.<provider>.<type>`, the provider's own type with `/` turned into `.`. */
export const rawRoutingKey = (provider: string, eventType: string) =>
  `raw.${provider}.${eventType.replaceAll('/', '.')}`

export function requestOf(webhook: NewWebhook): WebhookRequest {
  return {
    method: webhook.method,
    pathAndQuery: webhook.path,
    publicUrl: webhook.publicUrl,
    headers: webhook.headers,
    body: webhook.body,
    receivedAt: webhook.receivedAt,
  }
}

/** Raw events whose data is published as the provider's own JSON text rather than re-serialized. */
const verbatimData = new WeakMap<CloudEvent, string>()

/** The message body: the CloudEvent as JSON, a raw event's data exactly as the provider sent it. */
export function serializeEvent(event: CloudEvent): Buffer {
  const text = verbatimData.get(event)
  if (text === undefined) return Buffer.from(JSON.stringify(event))
  const { data: _data, ...envelope } = event
  const head = JSON.stringify(envelope)
  return Buffer.from(`${head.slice(0, -1)},"data":${text}}`)
}

/**
 * A CloudEvent ready to go out: its id, type and time, and its JSON as bytes (serializeEvent). Bytes rather
 * than the event: held from a webhook's receipt to its publish, a large payload's objects would outlive the
 * young generation and cost the collector more than the mapping.
 */
export interface OutgoingEvent {
  readonly id: string
  readonly type: string
  readonly time: string
  readonly body: Buffer
}

/** A webhook's events as mapped, or why its handler failed. */
export type Mapped = { readonly events: readonly OutgoingEvent[] } | { readonly error: unknown }

export const outgoing = (event: CloudEvent): OutgoingEvent => ({
  id: event.id,
  type: event.type,
  time: event.time,
  body: serializeEvent(event),
})

/**
 * The raw event and the internal events of one stored webhook, in publishing order; `payload` is the body
 * as the provider parses it, parsed here unless given.
 */
export function eventsFor(webhook: NewWebhook, provider: Provider, payload?: unknown): CloudEvent[] {
  const req = requestOf(webhook)
  if (payload === undefined) payload = provider.parse(req)
  const envelope = (type: string, name: string, data: unknown): CloudEvent => ({
    specversion: '1.0',
    id: eventId(webhook.provider, webhook.eventKey, name),
    source: `/webhooks/${webhook.provider}`,
    type,
    time: webhook.receivedAt.toISOString(),
    datacontenttype: 'application/json',
    data,
    provider: webhook.provider,
    providereventid: webhook.eventKey,
    webhookid: webhook.id,
  })
  const raw = envelope(rawRoutingKey(webhook.provider, webhook.eventType), 'raw', payload)
  const text = jsonSourceOf(payload)
  if (text !== undefined) verbatimData.set(raw, text.trim())
  const mapped = internalEvents(provider, webhook.eventType, payload, req).map((event, index) =>
    envelope(event.type, `internal:${index}:${event.type}`, event.data),
  )
  return [raw, ...mapped]
}
