import { readFileSync } from 'node:fs'
import { stripeId } from '../ids.ts'

/** The Stripe events `npm run send` offers; each is a recorded event from test/fixtures/stripe. */
export const stripeEvents = [
  'payment_intent.succeeded',
  'payment_intent.payment_failed',
  'customer.subscription.created',
  'invoice.payment_succeeded',
  'charge.refunded',
] as const

const fixtures = new URL('../../../test/fixtures/stripe/', import.meta.url)

/**
 * The recorded event with a fresh `evt_` id and a fresh id for its object (everywhere the old one appears,
 * as in a payment intent's client secret), created now: each delivery is a new event to the gateway.
 */
export function stripePayload(type: (typeof stripeEvents)[number]): Record<string, unknown> {
  const recorded = readFileSync(new URL(`${type}.json`, fixtures), 'utf8')
  const { id: eventId, data } = JSON.parse(recorded) as { id: string; data: { object: { id: string } } }
  const objectId = data.object.id
  const objectPrefix = objectId.slice(0, objectId.indexOf('_'))
  const fresh = recorded.replaceAll(eventId, stripeId('evt')).replaceAll(objectId, stripeId(objectPrefix))
  return { ...JSON.parse(fresh), created: Math.floor(Date.now() / 1000) }
}
