import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { stripeId } from '../ids.ts'

/** Snapshot events (`"object": "event"`); each is a recorded event from test/fixtures/stripe. */
const snapshotEvents = [
  'payment_intent.succeeded',
  'payment_intent.payment_failed',
  'customer.subscription.created',
  'invoice.payment_succeeded',
  'charge.refunded',
] as const

/** Thin events (`"object": "v2.core.event"`), as Stripe's event destinations send them; no internal event. */
const thinEvents = ['v1.billing.meter.error_report_triggered', 'v2.core.event_destination.ping'] as const

/** The Stripe events `npm run send` offers. */
export const stripeEvents = [...snapshotEvents, ...thinEvents] as const

type SnapshotType = (typeof snapshotEvents)[number]
type ThinType = (typeof thinEvents)[number]

const isThin = (type: string): type is ThinType => (thinEvents as readonly string[]).includes(type)

const fixtures = new URL('../../../test/fixtures/stripe/', import.meta.url)

/** A fresh Stripe event of `type`, created now: each delivery is a new event to the gateway. */
export function stripePayload(type: (typeof stripeEvents)[number]): Record<string, unknown> {
  return isThin(type) ? thinPayload(type) : snapshotPayload(type)
}

/**
 * The recorded event with a fresh `evt_` id and a fresh id for its object (everywhere the old one appears,
 * as in a payment intent's client secret), created now.
 */
function snapshotPayload(type: SnapshotType): Record<string, unknown> {
  const recorded = readFileSync(new URL(`${type}.json`, fixtures), 'utf8')
  const { id: eventId, data } = JSON.parse(recorded) as { id: string; data: { object: { id: string } } }
  const objectId = data.object.id
  const objectPrefix = objectId.slice(0, objectId.indexOf('_'))
  const fresh = recorded.replaceAll(eventId, stripeId('evt')).replaceAll(objectId, stripeId(objectPrefix))
  return { ...JSON.parse(fresh), created: Math.floor(Date.now() / 1000) }
}

/**
 * A thin event notification in test mode: no `data`, `created` in ISO 8601, and the object it is about. A meter's
 * error report is Stripe's own doing (no `reason`); a ping answers the API request that asked for it.
 */
function thinPayload(type: ThinType): Record<string, unknown> {
  const ping = type === 'v2.core.event_destination.ping'
  const relatedId = stripeId(ping ? 'ed_test' : 'mtr_test')
  return {
    id: stripeId('evt_test'),
    object: 'v2.core.event',
    type,
    livemode: false,
    created: new Date().toISOString(),
    context: null,
    reason: ping
      ? { type: 'request', request: { id: stripeId('req'), idempotency_key: randomUUID() } }
      : null,
    related_object: ping
      ? { id: relatedId, type: 'v2.core.event_destination', url: `/v2/core/event_destinations/${relatedId}` }
      : { id: relatedId, type: 'billing.meter', url: `/v1/billing/meters/${relatedId}` },
  }
}
