import { describe, expect, it } from 'vitest'
import { stripe } from '../../providers/stripe.ts'
import { MalformedWebhook } from '../../src/provider.ts'
import { internalEvents } from '../../src/pipeline/registry.ts'
import { request, verifyContext } from '../support/provider-request.ts'
import { stripeDelivery, stripeFixture } from '../support/signed.ts'

const secret = 'whsec_test_primary'
const now = Date.UTC(2026, 10, 22, 12, 0, 0)
const nowSeconds = Math.floor(now / 1000)

function signed(
  event: Record<string, unknown>,
  options: { secret?: string; timestamp?: number; payload?: string } = {},
) {
  const delivery = stripeDelivery(event, {
    secret: options.secret ?? secret,
    timestamp: options.timestamp ?? nowSeconds,
    ...(options.payload ? { payload: options.payload } : {}),
  })
  return request(delivery.body, delivery.headers, { path: '/webhooks/stripe' })
}

describe('stripe.verify', () => {
  const event = stripeFixture('payment_intent.succeeded')

  it('accepts a delivery signed by Stripe’s SDK', async () => {
    expect(await stripe.verify(signed(event), secret, verifyContext({}, now))).toBe(true)
  })

  it('rejects a tampered body', async () => {
    const req = signed(event)
    const tampered = { ...req, body: Buffer.from(req.body.toString().replace('2000', '2001')) }
    const ctx = verifyContext({}, now)
    expect(await stripe.verify(tampered, secret, ctx)).toBe(false)
    expect(ctx.reasons[0]).toMatch(/^stripe: No signatures found matching/)
  })

  it('rejects a body that differs only in whitespace (verification is on the raw bytes)', async () => {
    const req = signed(event, { payload: JSON.stringify(event, null, 2) })
    const reserialized = { ...req, body: Buffer.from(JSON.stringify(event)) }
    expect(await stripe.verify(reserialized, secret, verifyContext({}, now))).toBe(false)
  })

  it('rejects a signature made with another secret', async () => {
    expect(
      await stripe.verify(signed(event, { secret: 'whsec_other' }), secret, verifyContext({}, now)),
    ).toBe(false)
  })

  it('accepts a delivery signed with the old secret while it is still listed (rotation)', async () => {
    const req = signed(event, { secret: 'whsec_old' })
    expect(await stripe.verify(req, 'whsec_new', verifyContext({}, now))).toBe(false)
    expect(await stripe.verify(req, 'whsec_old', verifyContext({}, now))).toBe(true)
  })

  it('rejects a Stripe signature older than the tolerance', async () => {
    const ctx = verifyContext({}, now)
    expect(await stripe.verify(signed(event, { timestamp: nowSeconds - 301 }), secret, ctx)).toBe(false)
    expect(ctx.reasons[0]).toMatch(/tolerance/i)
  })

  it('accepts a timestamp just inside the tolerance, in both directions', async () => {
    expect(
      await stripe.verify(signed(event, { timestamp: nowSeconds - 299 }), secret, verifyContext({}, now)),
    ).toBe(true)
    expect(
      await stripe.verify(signed(event, { timestamp: nowSeconds + 299 }), secret, verifyContext({}, now)),
    ).toBe(true)
  })

  it('rejects a Stripe signature from further in the future than the tolerance', async () => {
    const ctx = verifyContext({}, now)
    expect(await stripe.verify(signed(event, { timestamp: nowSeconds + 301 }), secret, ctx)).toBe(false)
    expect(ctx.reasons[0]).toBe('stripe: timestamp 301 s in the future, outside the 300 s tolerance')
  })

  it('honours a configured tolerance', async () => {
    const req = signed(event, { timestamp: nowSeconds - 100 })
    expect(await stripe.verify(req, secret, verifyContext({ STRIPE_TOLERANCE_SECONDS: '60' }, now))).toBe(
      false,
    )
  })

  it('rejects a delivery without a Stripe-Signature header', async () => {
    const req = signed(event)
    const { ['stripe-signature']: _, ...headers } = req.headers
    const ctx = verifyContext({}, now)
    expect(await stripe.verify({ ...req, headers }, secret, ctx)).toBe(false)
    expect(ctx.reasons).toEqual(['stripe: no Stripe-Signature header'])
  })

  it('rejects a header with no v1 signature', async () => {
    const req = signed(event)
    const headers = { ...req.headers, 'stripe-signature': `t=${nowSeconds},v0=abc` }
    expect(await stripe.verify({ ...req, headers }, secret, verifyContext({}, now))).toBe(false)
  })

  it('accepts a header carrying several v1 signatures when one matches', async () => {
    const req = signed(event)
    const headers = {
      ...req.headers,
      'stripe-signature': `${req.headers['stripe-signature']},v1=${'0'.repeat(64)}`,
    }
    expect(await stripe.verify({ ...req, headers }, secret, verifyContext({}, now))).toBe(true)
  })
})

describe('stripe.parse, eventKey, eventType', () => {
  it('keys on the event id and types on the event type', () => {
    const req = signed(stripeFixture('payment_intent.succeeded'))
    const payload = stripe.parse(req)
    expect(stripe.eventKey(req, payload)).toBe('evt_3QxYz2LkdIwHu7ix0aBcDeFg')
    expect(stripe.eventType(req, payload)).toBe('payment_intent.succeeded')
  })

  it('refuses a body that is not JSON', () => {
    expect(() => stripe.parse(request('{"id":', {}))).toThrow(/not valid JSON/)
  })

  it('refuses a body whose object is neither a snapshot nor a thin event', () => {
    const req = signed({ ...stripeFixture('payment_intent.succeeded'), object: 'v3.core.event' })
    expect(() => stripe.parse(req)).toThrow(
      new MalformedWebhook('stripe: unknown object "v3.core.event" (expected "event" or "v2.core.event")'),
    )
  })

  it('has no key when the event has no id', () => {
    const req = request(JSON.stringify({ type: 'payment_intent.succeeded' }), {})
    expect(stripe.eventKey(req, stripe.parse(req))).toBeUndefined()
  })
})

/** A thin event as an event destination sends it (no data: the consumer fetches it from Stripe). */
const thinEvent = (fields: Record<string, unknown> = {}): Record<string, unknown> => ({
  id: 'evt_test_65R9Ijk8b1bHGrxgsTD16R9Ijk8bSQoNkqXyKMbmBT2Ra',
  object: 'v2.core.event',
  type: 'v1.billing.meter.error_report_triggered',
  livemode: false,
  created: '2026-11-22T11:59:58.246Z',
  context: null,
  reason: null,
  related_object: {
    id: 'mtr_test_61R9IjkxAxbMWxqjl41IvTlxxCJnwN8a',
    type: 'billing.meter',
    url: '/v1/billing/meters/mtr_test_61R9IjkxAxbMWxqjl41IvTlxxCJnwN8a',
  },
  ...fields,
})

describe('stripe thin events', () => {
  it('accepts a thin event signed by Stripe’s SDK, and keys and types it on its id and type', async () => {
    const event = thinEvent()
    const req = signed(event)
    expect(await stripe.verify(req, secret, verifyContext({}, now))).toBe(true)
    const payload = stripe.parse(req)
    expect(payload).toEqual(event)
    expect(stripe.eventKey(req, payload)).toBe('evt_test_65R9Ijk8b1bHGrxgsTD16R9Ijk8bSQoNkqXyKMbmBT2Ra')
    expect(stripe.eventType(req, payload)).toBe('v1.billing.meter.error_report_triggered')
  })

  it('keys and types an event destination’s ping', () => {
    const req = signed(thinEvent({ id: 'evt_test_ping1', type: 'v2.core.event_destination.ping' }))
    const payload = stripe.parse(req)
    expect(stripe.eventKey(req, payload)).toBe('evt_test_ping1')
    expect(stripe.eventType(req, payload)).toBe('v2.core.event_destination.ping')
  })

  it('rejects a thin event signed with another secret', async () => {
    const ctx = verifyContext({}, now)
    expect(await stripe.verify(signed(thinEvent(), { secret: 'whsec_other' }), secret, ctx)).toBe(false)
    expect(ctx.reasons[0]).toMatch(/^stripe: No signatures found matching/)
  })

  it('rejects a tampered thin event', async () => {
    const req = signed(thinEvent())
    const tampered = {
      ...req,
      body: Buffer.from(req.body.toString().replace('"livemode":false', '"livemode":true')),
    }
    expect(tampered.body.equals(req.body)).toBe(false)
    expect(await stripe.verify(tampered, secret, verifyContext({}, now))).toBe(false)
  })

  it('rejects a thin event signed longer ago than the tolerance', async () => {
    const ctx = verifyContext({}, now)
    expect(await stripe.verify(signed(thinEvent(), { timestamp: nowSeconds - 301 }), secret, ctx)).toBe(false)
    expect(ctx.reasons[0]).toMatch(/tolerance/i)
  })

  it('rejects a thin event signed further in the future than the tolerance', async () => {
    const ctx = verifyContext({}, now)
    expect(await stripe.verify(signed(thinEvent(), { timestamp: nowSeconds + 301 }), secret, ctx)).toBe(false)
    expect(ctx.reasons[0]).toBe('stripe: timestamp 301 s in the future, outside the 300 s tolerance')
  })

  it('maps no internal event for a thin event', () => {
    const req = signed(thinEvent())
    expect(internalEvents(stripe, 'v1.billing.meter.error_report_triggered', stripe.parse(req), req)).toEqual(
      [],
    )
  })

  it('maps no internal event for a thin event whose type is a snapshot handler’s', () => {
    // Even carrying a snapshot's data.object, a thin event never reaches the payment_intent.succeeded handler.
    const snapshot = stripeFixture('payment_intent.succeeded')
    const req = signed(thinEvent({ type: 'payment_intent.succeeded', data: snapshot.data }))
    const payload = stripe.parse(req)
    expect(stripe.eventType(req, payload)).toBe('payment_intent.succeeded')
    expect(internalEvents(stripe, 'payment_intent.succeeded', payload, req)).toEqual([])
  })

  it('refuses a thin event with no id', () => {
    const { id: _, ...event } = thinEvent()
    expect(() => stripe.parse(signed(event))).toThrow(new MalformedWebhook('stripe: thin event has no id'))
  })

  it('refuses a thin event with an empty or non-string id', () => {
    expect(() => stripe.parse(signed(thinEvent({ id: '' })))).toThrow(/thin event has no id/)
    expect(() => stripe.parse(signed(thinEvent({ id: 42 })))).toThrow(/thin event has no id/)
  })

  it('refuses a thin event with no type', () => {
    const { type: _, ...event } = thinEvent()
    expect(() => stripe.parse(signed(event))).toThrow(new MalformedWebhook('stripe: thin event has no type'))
  })
})

describe('stripe handlers', () => {
  const mapped = (type: string, change?: (event: any) => void) => {
    const event = stripeFixture(type)
    change?.(event)
    const req = signed(event)
    return internalEvents(stripe, type, stripe.parse(req), req)
  }

  it('maps payment_intent.succeeded to payment.completed', () => {
    expect(mapped('payment_intent.succeeded')).toEqual([
      {
        type: 'payment.completed',
        data: {
          payment_id: 'pi_3QxYz2LkdIwHu7ix0mNoPqRs',
          amount: 20,
          amount_minor: 2000,
          currency: 'USD',
          customer_id: 'cus_RkLmNoPqRsTuVw',
          metadata: { order_id: '6735' },
          provider: 'stripe',
        },
      },
    ])
  })

  it('maps a zero-decimal currency without dividing by 100', () => {
    const [event] = mapped('payment_intent.succeeded', (e) => {
      e.data.object.currency = 'jpy'
      e.data.object.amount = 1500
      e.data.object.amount_received = 1500
    })
    expect(event?.data).toMatchObject({ amount: 1500, amount_minor: 1500, currency: 'JPY' })
  })

  it('maps a three-decimal currency', () => {
    const [event] = mapped('payment_intent.succeeded', (e) => {
      e.data.object.currency = 'kwd'
      e.data.object.amount_received = 12345
    })
    expect(event?.data).toMatchObject({ amount: 12.345, amount_minor: 12345, currency: 'KWD' })
  })

  it('maps payment_intent.payment_failed to payment.failed with the reason', () => {
    expect(mapped('payment_intent.payment_failed')).toEqual([
      {
        type: 'payment.failed',
        data: {
          payment_id: 'pi_3QxZa1LkdIwHu7ix1oPqRsTu',
          amount: 5000,
          amount_minor: 5000,
          currency: 'JPY',
          customer_id: null,
          failure_reason: 'Your card has insufficient funds.',
          provider: 'stripe',
        },
      },
    ])
  })

  it('maps customer.subscription.created, period from the item on current API versions', () => {
    expect(mapped('customer.subscription.created')).toEqual([
      {
        type: 'subscription.created',
        data: {
          subscription_id: 'sub_1QxZb2LkdIwHu7ixDeFgHiJk',
          customer_id: 'cus_RkLmNoPqRsTuVw',
          status: 'active',
          plan_id: 'price_1QxZa9LkdIwHu7ixPlAnPrIc',
          current_period_start: '2025-11-22T08:30:00.000Z',
          current_period_end: '2025-12-22T08:30:00.000Z',
          provider: 'stripe',
        },
      },
    ])
  })

  it('maps customer.subscription.created from older API versions (period on the subscription)', () => {
    const [event] = mapped('customer.subscription.created', (e) => {
      e.data.object.current_period_start = 1700000000
      e.data.object.current_period_end = 1702592000
      e.data.object.items.data[0].price = undefined
      e.data.object.plan = { id: 'plan_legacy' }
    })
    expect(event?.data).toMatchObject({
      plan_id: 'plan_legacy',
      current_period_start: '2023-11-14T22:13:20.000Z',
      current_period_end: '2023-12-14T22:13:20.000Z',
    })
  })

  it('maps invoice.payment_succeeded to invoice.paid', () => {
    expect(mapped('invoice.payment_succeeded')).toEqual([
      {
        type: 'invoice.paid',
        data: {
          invoice_id: 'in_1QxZc3LkdIwHu7ixTuVwXyZa',
          subscription_id: 'sub_1QxZb2LkdIwHu7ixDeFgHiJk',
          customer_id: 'cus_RkLmNoPqRsTuVw',
          amount_paid: 15,
          amount_paid_minor: 1500,
          currency: 'EUR',
          provider: 'stripe',
        },
      },
    ])
  })

  it('maps nothing for an unmapped type (the raw event is still published)', () => {
    const req = signed({ id: 'evt_x', type: 'charge.refunded', data: { object: {} } })
    expect(internalEvents(stripe, 'charge.refunded', stripe.parse(req), req)).toEqual([])
  })
})
