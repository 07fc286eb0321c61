import Stripe from 'stripe'
import { fromMinor } from '../src/money.ts'
import { header, MalformedWebhook, type Handler, type InternalEvent, type Provider } from '../src/provider.ts'
import { parseJsonObject } from '../src/parse.ts'

// The SDK's own header check; it is set up when the module loads (typed nullable only for other runtimes).
const stripeSignature = Stripe.webhooks.signature!

type StripeObject = Record<string, any>

/** A snapshot event (`"object": "event"`): the object as it was, under `data.object`. */
interface SnapshotEvent {
  id?: unknown
  type?: unknown
  object?: unknown
  data?: { object?: StripeObject }
}

/**
 * A thin event (`"object": "v2.core.event"`, from an event destination): a notification with no data; consumers
 * fetch the event or its `related_object` from Stripe's API.
 */
interface ThinEvent {
  id: string
  type: string
  object: 'v2.core.event'
  created?: unknown
  livemode?: unknown
  context?: unknown
  related_object?: unknown
  reason?: unknown
}

type StripeEvent = SnapshotEvent | ThinEvent

const isThin = (event: StripeEvent): event is ThinEvent => event.object === 'v2.core.event'

const idOf = (value: unknown): string | null =>
  typeof value === 'string'
    ? value
    : value && typeof value === 'object' && 'id' in value
      ? String(value.id)
      : null

const isoFromUnix = (seconds: unknown): string | null =>
  typeof seconds === 'number' ? new Date(seconds * 1000).toISOString() : null

const objectOf = (event: SnapshotEvent): StripeObject => {
  const object = event.data?.object
  if (!object || typeof object !== 'object') throw new MalformedWebhook('stripe: event has no data.object')
  return object
}

/** The `t=` of a Stripe-Signature header, or undefined when it has none. */
function signedAt(signatureHeader: string): number | undefined {
  for (const part of signatureHeader.split(',')) {
    const [key, value] = part.split('=', 2)
    if (key?.trim() === 't' && value !== undefined && /^\d+$/.test(value.trim())) return Number(value)
  }
  return undefined
}

/**
 * Snapshot handlers that map nothing for a thin event: it has no object to map, even when its type is one of
 * these keys.
 */
function snapshotOnly(
  handlers: Record<string, (event: SnapshotEvent) => InternalEvent>,
): Record<string, Handler<StripeEvent>> {
  return Object.fromEntries(
    Object.entries(handlers).map(([type, map]) => [
      type,
      (event: StripeEvent) => (isThin(event) ? null : map(event)),
    ]),
  )
}

export const stripe: Provider<StripeEvent> = {
  name: 'stripe',

  verify(req, secret, { now, config, reject }) {
    const signature = header(req, 'stripe-signature')
    if (!signature) return reject('stripe: no Stripe-Signature header')
    const tolerance = config.toleranceSeconds['stripe'] ?? 300
    try {
      // The SDK checks the v1 signatures and rejects timestamps older than the tolerance.
      stripeSignature.verifyHeader(req.body, signature, secret, tolerance, undefined, now)
    } catch (error) {
      return reject(`stripe: ${(error as Error).message.split('\n')[0]}`)
    }
    // The SDK only looks backwards; a timestamp from the future is just as unacceptable.
    const skew = (signedAt(signature) ?? 0) - Math.floor(now / 1000)
    if (skew > tolerance)
      return reject(`stripe: timestamp ${skew} s in the future, outside the ${tolerance} s tolerance`)
    return true
  },

  // stripe-node's parseEventNotification adds nothing here: it is verifyHeader (done above, with the future
  // check it lacks), JSON.parse (ours keeps the text for the raw event) and this `object` check, plus API
  // fetchers that need a client with a key.
  parse(req) {
    const event = parseJsonObject(req.body, 'stripe')
    if (event.object === 'v2.core.event') {
      if (typeof event.id !== 'string' || !event.id)
        throw new MalformedWebhook('stripe: thin event has no id')
      if (typeof event.type !== 'string' || !event.type)
        throw new MalformedWebhook('stripe: thin event has no type')
    } else if (event.object !== undefined && event.object !== 'event') {
      throw new MalformedWebhook(
        `stripe: unknown object ${JSON.stringify(event.object)} (expected "event" or "v2.core.event")`,
      )
    }
    return event as StripeEvent
  },

  eventKey: (_req, event) => (typeof event.id === 'string' && event.id ? event.id : undefined),
  eventType: (_req, event) => (typeof event.type === 'string' && event.type ? event.type : undefined),

  handlers: snapshotOnly({
    'payment_intent.succeeded': (event) => {
      const intent = objectOf(event)
      const minor =
        typeof intent.amount_received === 'number' && intent.amount_received > 0
          ? intent.amount_received
          : intent.amount
      return {
        type: 'payment.completed',
        data: {
          payment_id: intent.id,
          ...fromMinor(minor, intent.currency),
          customer_id: idOf(intent.customer),
          metadata: intent.metadata ?? {},
        },
      }
    },
    'payment_intent.payment_failed': (event) => {
      const intent = objectOf(event)
      const error = intent.last_payment_error
      return {
        type: 'payment.failed',
        data: {
          payment_id: intent.id,
          ...fromMinor(intent.amount, intent.currency),
          customer_id: idOf(intent.customer),
          failure_reason: error?.message ?? error?.decline_code ?? error?.code ?? null,
        },
      }
    },
    'customer.subscription.created': (event) => {
      const subscription = objectOf(event)
      const item = subscription.items?.data?.[0]
      // API 2025-03-31 moved the billing period from the subscription onto its items.
      return {
        type: 'subscription.created',
        data: {
          subscription_id: subscription.id,
          customer_id: idOf(subscription.customer),
          status: subscription.status,
          plan_id: item?.price?.id ?? item?.plan?.id ?? subscription.plan?.id ?? null,
          current_period_start: isoFromUnix(subscription.current_period_start ?? item?.current_period_start),
          current_period_end: isoFromUnix(subscription.current_period_end ?? item?.current_period_end),
        },
      }
    },
    'invoice.payment_succeeded': (event) => {
      const invoice = objectOf(event)
      const paid = fromMinor(invoice.amount_paid, invoice.currency)
      // API 2025-03-31 moved `subscription` under `parent.subscription_details`.
      const subscription = invoice.subscription ?? invoice.parent?.subscription_details?.subscription
      return {
        type: 'invoice.paid',
        data: {
          invoice_id: invoice.id,
          subscription_id: idOf(subscription),
          customer_id: idOf(invoice.customer),
          amount_paid: paid.amount,
          amount_paid_minor: paid.amount_minor,
          currency: paid.currency,
        },
      }
    },
  }),
}
