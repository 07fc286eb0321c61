import { randomUUID } from 'node:crypto'
import { beforeAll, describe, expect, it } from 'vitest'
import { eventId } from '../../src/pipeline/events.ts'
import { usePayPalSigning } from '../support/paypal-pki.ts'
import { useTestDatabase, type Capture, type TestGateway } from '../support/services.ts'
import {
  paypalDelivery,
  paypalEvent,
  shopifyDelivery,
  shopifyOrder,
  twilioDelivery,
  twilioMessageStatus,
} from '../support/signed-providers.ts'

const twilioToken = 'twilio-e2e-token'
const shopifySecret = 'shopify-e2e-secret'
const paypalWebhookId = '8PT597110X687430LKGECATA'
// Twilio calls the public URL; the test reaches the gateway on 127.0.0.1, as a proxy would.
const publicBase = 'https://hooks.example.com'

/** Response bodies are the contract's JSON; tests read them loosely. */
const json = (response: Response): Promise<any> => response.json()

// Before the database: after-hooks run newest first, so the gateway stops before PayPal's side goes.
const paypalSigning = usePayPalSigning('CERT-360caa42-e2e')
const db = useTestDatabase()
// One gateway for the whole file.
let gw: TestGateway
let events: Capture

beforeAll(async () => {
  gw = await db.startGateway({
    PUBLIC_BASE_URL: publicBase,
    TWILIO_AUTH_TOKEN: `rotated-out-token,${twilioToken}`,
    SHOPIFY_WEBHOOK_SECRET: shopifySecret,
    PAYPAL_WEBHOOK_ID: paypalWebhookId,
    ...paypalSigning.env,
    FAILED_VERIFY_LIMIT: '1000',
  })
  events = await db.captureEvents(gw.config)
  await gw.gateway.publisher.whenConnected()
})

const eventsOf = (webhookId: string) => events.messages.filter((m) => m.event.webhookid === webhookId)

async function post(provider: string, delivery: { body: string; headers: Record<string, string> }) {
  const response = await gw.post(`/webhooks/${provider}`, delivery.body, delivery.headers)
  return { status: response.status, body: await json(response) }
}

/** Waits for a webhook's raw and internal events and returns them by routing key. */
async function published(webhookId: string, routingKeys: string[]) {
  await events.waitFor(() => eventsOf(webhookId).length >= routingKeys.length, 5000)
  const mine = eventsOf(webhookId)
  expect(mine.map((m) => m.routingKey).sort()).toEqual([...routingKeys].sort())
  return Object.fromEntries(mine.map((m) => [m.routingKey, m]))
}

/**
 * A duplicate answers the first id and publishes nothing: checked once a later webhook has been published,
 * so the worker has had its chance to publish anything the duplicate might have stored.
 */
async function expectNothingNewAfter(firstId: string, later: () => Promise<string>, count: number) {
  const laterId = await later()
  await events.waitFor(() => eventsOf(laterId).length > 0, 5000)
  expect(eventsOf(firstId)).toHaveLength(count)
}

describe('Twilio through HTTP to RabbitMQ', () => {
  const url = `${publicBase}/webhooks/twilio`
  const sid = `SM${randomUUID().replaceAll('-', '')}`

  it('publishes a signed status callback once, counts a repeat as a duplicate and refuses a forgery', async () => {
    const sent = twilioMessageStatus(sid, 'sent')
    const accepted = await post('twilio', twilioDelivery(sent, { authToken: twilioToken, url }))
    expect(accepted).toEqual({ status: 200, body: { status: 'accepted', id: expect.any(String) } })
    const id = accepted.body.id

    const byKey = await published(id, ['raw.twilio.message.status', 'sms.status_update'])
    expect(byKey['raw.twilio.message.status']!.event).toMatchObject({
      id: eventId('twilio', `${sid}:sent`, 'raw'),
      source: '/webhooks/twilio',
      type: 'raw.twilio.message.status',
      providereventid: `${sid}:sent`,
      data: sent,
    })
    expect(byKey['sms.status_update']!.event.data).toEqual({
      message_sid: sid,
      status: 'sent',
      to: '+14155552671',
      from: '+15005550006',
      error_code: null,
      error_message: null,
      provider: 'twilio',
    })

    const repeat = await post('twilio', twilioDelivery(sent, { authToken: twilioToken, url }))
    expect(repeat).toEqual({ status: 200, body: { status: 'duplicate', id } })

    const forged = await post('twilio', twilioDelivery(sent, { authToken: 'not-the-token', url }))
    expect(forged).toEqual({ status: 401, body: { error: 'invalid signature' } })

    // `delivered` is the same message's next status: a new event.
    await expectNothingNewAfter(
      id,
      async () => {
        const delivered = twilioDelivery(twilioMessageStatus(sid, 'delivered'), {
          authToken: twilioToken,
          url,
        })
        const answer = await post('twilio', delivered)
        expect(answer.body.status).toBe('accepted')
        return answer.body.id
      },
      2,
    )
  })
})

describe('Shopify through HTTP to RabbitMQ', () => {
  it('publishes a signed order once, counts a retry as a duplicate and refuses a forgery', async () => {
    const order = shopifyOrder(5_600_000_000_001)
    const webhookId = randomUUID()
    const delivery = shopifyDelivery('orders/create', order, {
      secret: shopifySecret,
      webhookId,
      shopDomain: 'acme.myshopify.com',
    })
    const accepted = await post('shopify', delivery)
    expect(accepted).toEqual({ status: 200, body: { status: 'accepted', id: expect.any(String) } })
    const id = accepted.body.id

    const byKey = await published(id, ['raw.shopify.orders.create', 'order.created'])
    expect(byKey['raw.shopify.orders.create']!.event).toMatchObject({
      id: eventId('shopify', webhookId, 'raw'),
      source: '/webhooks/shopify',
      providereventid: webhookId,
      data: order,
    })
    expect(byKey['order.created']!.event.data).toEqual({
      order_id: '5600000000001',
      order_number: 1001,
      customer_id: '7001',
      total_price: '49.90',
      currency: 'EUR',
      line_items_count: 2,
      shop_domain: 'acme.myshopify.com',
      provider: 'shopify',
    })

    expect(await post('shopify', delivery)).toEqual({ status: 200, body: { status: 'duplicate', id } })
    const forged = shopifyDelivery('orders/create', order, { secret: 'not-the-secret' })
    expect(await post('shopify', forged)).toEqual({ status: 401, body: { error: 'invalid signature' } })

    await expectNothingNewAfter(
      id,
      async () => {
        const customer = { id: 7002, email: 'grace@example.com', first_name: 'Grace', last_name: 'Hopper' }
        const answer = await post(
          'shopify',
          shopifyDelivery('customers/create', customer, { secret: shopifySecret, unprefixed: true }),
        )
        expect(answer.body.status).toBe('accepted')
        return answer.body.id
      },
      2,
    )
  })
})

describe('Shopify ids beyond 2^53', () => {
  it('reach consumers digit for digit in the raw event', async () => {
    // JSON.parse would turn 820982911946154508 into 820982911946154500: the raw event must not.
    const body =
      '{"id":820982911946154508,"admin_graphql_api_id":"gid://shopify/Order/820982911946154508","order_number":1002,"total_price":"5.00","currency":"EUR","line_items":[]}'
    const accepted = await post(
      'shopify',
      shopifyDelivery('orders/create', {}, { secret: shopifySecret, body }),
    )
    const byKey = await published(accepted.body.id, ['raw.shopify.orders.create', 'order.created'])
    expect(byKey['raw.shopify.orders.create']!.content).toContain(`"data":${body}`)
    expect(byKey['order.created']!.event.data).toMatchObject({ order_id: '820982911946154508' })
  })
})

describe('PayPal through HTTP to RabbitMQ', () => {
  it('publishes a signed capture once, counts a resend as a duplicate and refuses a forgery', async () => {
    const event = paypalEvent('PAYMENT.CAPTURE.COMPLETED', {
      id: '0KG04581KL0418546',
      status: 'COMPLETED',
      amount: { currency_code: 'EUR', value: '12.34' },
    })
    const { certUrl, leaf } = paypalSigning
    const sign = (webhookId = paypalWebhookId) =>
      paypalDelivery(event, { webhookId, certUrl, privateKey: leaf.privateKey })
    const accepted = await post('paypal', sign())
    expect(accepted).toEqual({ status: 200, body: { status: 'accepted', id: expect.any(String) } })
    const id = accepted.body.id

    const byKey = await published(id, ['raw.paypal.PAYMENT.CAPTURE.COMPLETED', 'payment.completed'])
    expect(byKey['raw.paypal.PAYMENT.CAPTURE.COMPLETED']!.event).toMatchObject({
      id: eventId('paypal', event.id, 'raw'),
      source: '/webhooks/paypal',
      providereventid: event.id,
      data: event,
    })
    expect(byKey['payment.completed']!.event.data).toEqual({
      payment_id: '0KG04581KL0418546',
      amount: 12.34,
      amount_minor: 1234,
      currency: 'EUR',
      customer_id: null,
      metadata: {},
      provider: 'paypal',
    })

    // A resend is a new transmission (new id, time and signature) of the same event.
    expect(await post('paypal', sign())).toEqual({ status: 200, body: { status: 'duplicate', id } })
    expect(await post('paypal', sign('ANOTHER-WEBHOOK-ID'))).toEqual({
      status: 401,
      body: { error: 'invalid signature' },
    })

    await expectNothingNewAfter(
      id,
      async () => {
        const subscription = paypalEvent('BILLING.SUBSCRIPTION.CREATED', { id: 'I-E2E', plan_id: 'P-E2E' })
        const answer = await post(
          'paypal',
          paypalDelivery(subscription, { webhookId: paypalWebhookId, certUrl, privateKey: leaf.privateKey }),
        )
        expect(answer.body.status).toBe('accepted')
        return answer.body.id
      },
      2,
    )
    // One download served every verification.
    expect(paypalSigning.server.hits.get(new URL(certUrl).pathname)).toBe(1)
  })
})
