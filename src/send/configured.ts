import { randomBytes } from 'node:crypto'
import { formatTimestamp, signedHeaders } from '../../providers/configured.ts'
import type { ProviderSpec, Source } from '../providers-file.ts'
import type { Delivery, Offer, Target } from './offered.ts'

/**
 * What `npm run send -- <name> <type>` sends for a sender declared in PROVIDERS_FILE: a generic JSON event
 * with the id, type and timestamp where the entry says the gateway finds them, signed as the entry says the
 * sender signs. Any type may be sent; the presets' bodies look like their senders' (Slack's Events API
 * envelope, say), with a small made-up `data`.
 */
export function configuredOffer(spec: ProviderSpec): Offer {
  return {
    secretVariable: spec.secretEnv,
    events: [],
    deliver: (event, target) => configuredDelivery(spec, event, target),
  }
}

function configuredDelivery(spec: ProviderSpec, type: string, target: Target): Delivery {
  const at = new Date()
  const id = `${spec.name}_${randomBytes(12).toString('hex')}`
  const payload: Record<string, unknown> = { ...presetBody(spec, at) }
  const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'npm-run-send' }
  place(spec.id[0] ?? [], id, payload, headers)
  placeType(spec, type, payload, headers)
  if (spec.kind === 'hmac' && spec.timestamp?.from === 'json')
    setPath(payload, spec.timestamp.name, formatTimestamp(at, spec.timestampFormat), spec.timestampFormat)
  const body = JSON.stringify(payload)
  const url = `${target.publicBaseUrl ?? target.gatewayUrl}/webhooks/${spec.name}`
  return {
    body,
    headers: { ...headers, ...signedHeaders(spec, target.secret, { body: Buffer.from(body), url, id, at }) },
    providerId: id,
  }
}

/** The type where the first candidate that can hold it says: `Issue.create` fills `type` and `action`. */
function placeType(
  spec: ProviderSpec,
  type: string,
  payload: Record<string, unknown>,
  headers: Record<string, string>,
): void {
  for (const candidate of spec.type) {
    const pieces = type.split('.')
    if (pieces.length < candidate.length) continue
    // The last source takes what is left: `payment.succeeded` in one source stays whole.
    const values = [...pieces.slice(0, candidate.length - 1), pieces.slice(candidate.length - 1).join('.')]
    candidate.forEach((source, index) => place([source], values[index]!, payload, headers))
    return
  }
}

function place(
  sources: readonly Source[],
  value: string,
  payload: Record<string, unknown>,
  headers: Record<string, string>,
): void {
  for (const source of sources)
    if (source.from === 'header') headers[source.name] = value
    else setPath(payload, source.name, value)
}

function setPath(target: Record<string, unknown>, path: string, value: string, format?: string): void {
  const keys = path.split('.')
  let at = target
  for (const key of keys.slice(0, -1)) {
    const next = at[key]
    at = (next && typeof next === 'object' ? next : (at[key] = {})) as Record<string, unknown>
  }
  // Unix timestamps go as numbers, as senders send them.
  at[keys.at(-1)!] = format === 'unix_s' || format === 'unix_ms' ? Number(value) : value
}

/** A body in the shape of the preset's sender, before the id, type and timestamp are placed. */
function presetBody(spec: ProviderSpec, at: Date): Record<string, unknown> {
  switch (spec.preset) {
    case 'slack':
      return {
        token: 'npm-run-send',
        team_id: 'T0000SEND',
        api_app_id: 'A0000SEND',
        type: 'event_callback',
        event: {
          user: 'U0000SEND',
          text: 'sent by npm run send',
          ts: `${Math.floor(at.getTime() / 1000)}.000100`,
        },
        event_time: Math.floor(at.getTime() / 1000),
      }
    case 'linear':
      return {
        action: 'create',
        data: { id: randomBytes(16).toString('hex'), title: 'Sent by npm run send' },
        url: 'https://linear.app/example/issue/SEND-1',
        createdAt: at.toISOString(),
      }
    case 'square':
      return {
        merchant_id: 'MLSEND000000',
        created_at: at.toISOString(),
        data: { type: 'payment', id: randomBytes(8).toString('hex'), object: {} },
      }
    case 'intercom':
      return {
        type: 'notification_event',
        app_id: 'send0000',
        created_at: Math.floor(at.getTime() / 1000),
        data: { type: 'notification_event_data', item: { type: 'conversation', id: '1' } },
      }
    default:
      return { created_at: at.toISOString(), data: { message: 'sent by npm run send' } }
  }
}
