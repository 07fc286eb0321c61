import { describe, expect, it } from 'vitest'
import { shopify } from '../../providers/shopify.ts'
import { rawRoutingKey } from '../../src/pipeline/events.ts'
import { MalformedWebhook } from '../../src/provider.ts'
import { internalEvents } from '../../src/pipeline/registry.ts'
import { request, verifyContext } from '../support/provider-request.ts'
import { shopifyDelivery, shopifyOrder } from '../support/signed-providers.ts'

const secret = 'shopify_client_secret_primary'
const path = '/webhooks/shopify'

function signed(
  topic: string,
  payload: Record<string, unknown>,
  options: Partial<Parameters<typeof shopifyDelivery>[2]> = {},
) {
  const delivery = shopifyDelivery(topic, payload, { secret, ...options })
  return request(delivery.body, delivery.headers, { path })
}

const verify = (req: ReturnType<typeof request>, key = secret) => {
  const ctx = verifyContext({ SHOPIFY_WEBHOOK_SECRET: secret })
  return { valid: shopify.verify(req, key, ctx), reasons: ctx.reasons }
}

const order = shopifyOrder(450789469)

describe('shopify.verify', () => {
  it('accepts a delivery signed with the app secret (base64 HMAC-SHA256 of the raw body)', () => {
    expect(verify(signed('orders/create', order)).valid).toBe(true)
  })

  it('accepts the newer unprefixed shopify-* header names', () => {
    const req = signed('orders/create', order, { unprefixed: true })
    expect(req.headers['shopify-hmac-sha256']).toBeDefined()
    expect(req.headers['x-shopify-hmac-sha256']).toBeUndefined()
    expect(verify(req).valid).toBe(true)
  })

  it('rejects a tampered body', () => {
    const req = signed('orders/create', order)
    const result = verify({ ...req, body: Buffer.from(req.body.toString().replace('49.90', '0.01')) })
    expect(result.valid).toBe(false)
    expect(result.reasons).toEqual(['shopify: X-Shopify-Hmac-Sha256 does not match'])
  })

  it('rejects a body that differs only in whitespace (verification is on the raw bytes)', () => {
    const req = signed('orders/create', order, { body: JSON.stringify(order, null, 2) })
    expect(verify({ ...req, body: Buffer.from(JSON.stringify(order)) }).valid).toBe(false)
  })

  it('rejects a signature made with another secret', () => {
    expect(verify(signed('orders/create', order, { secret: 'another_secret' })).valid).toBe(false)
  })

  it('accepts a delivery signed with the old secret while it is still listed (rotation)', () => {
    const req = signed('orders/create', order, { secret: 'old_secret' })
    expect(verify(req, 'new_secret').valid).toBe(false)
    expect(verify(req, 'old_secret').valid).toBe(true)
  })

  it('rejects a delivery without an HMAC header', () => {
    const { ['x-shopify-hmac-sha256']: _, ...headers } = signed('orders/create', order).headers
    const result = verify({ ...signed('orders/create', order), headers })
    expect(result.valid).toBe(false)
    expect(result.reasons).toEqual(['shopify: no X-Shopify-Hmac-Sha256 header'])
  })

  it('rejects a hex digest where Shopify sends base64', () => {
    const req = signed('orders/create', order)
    const hex = Buffer.from(req.headers['x-shopify-hmac-sha256']!, 'base64').toString('hex')
    expect(verify({ ...req, headers: { ...req.headers, 'x-shopify-hmac-sha256': hex } }).valid).toBe(false)
  })
})

describe('shopify.eventKey and eventType', () => {
  const keyAndType = (req: ReturnType<typeof request>) => {
    const payload = shopify.parse(req)
    return { key: shopify.eventKey(req, payload), type: shopify.eventType(req, payload) }
  }

  it('keys on X-Shopify-Webhook-Id and types on X-Shopify-Topic', () => {
    expect(
      keyAndType(signed('orders/create', order, { webhookId: 'b54557e4-bdd9-4b37-8a5f-bf7d70bcd043' })),
    ).toEqual({
      key: 'b54557e4-bdd9-4b37-8a5f-bf7d70bcd043',
      type: 'orders/create',
    })
  })

  it('gives a retry of the same delivery the same key, so it is a duplicate', () => {
    const first = signed('orders/paid', order, { webhookId: 'wh-1', eventId: 'ev-1' })
    const retry = signed('orders/paid', order, { webhookId: 'wh-1', eventId: 'ev-1' })
    expect(keyAndType(retry).key).toBe(keyAndType(first).key)
  })

  it('reads the unprefixed shopify-* names too', () => {
    expect(keyAndType(signed('customers/create', {}, { webhookId: 'wh-2', unprefixed: true }))).toEqual({
      key: 'wh-2',
      type: 'customers/create',
    })
  })

  it('falls back to the event id and topic when a delivery carries no webhook id', () => {
    const req = signed('orders/create', order, { eventId: 'ev-9', unprefixed: true })
    const { ['shopify-webhook-id']: _, ...headers } = req.headers
    expect(keyAndType({ ...req, headers })).toEqual({
      key: 'event:ev-9:orders/create',
      type: 'orders/create',
    })
  })

  it('tells two subscriptions to one event apart by their handle when there is no webhook id', () => {
    const req = signed('orders/create', order, { eventId: 'ev-10', unprefixed: true })
    const { ['shopify-webhook-id']: _, ...headers } = req.headers
    const keyFor = (handle: string) =>
      keyAndType({ ...req, headers: { ...headers, 'shopify-handle': handle } }).key
    expect(keyFor('erp-sync')).toBe('event:ev-10:erp-sync')
    expect(keyFor('analytics')).toBe('event:ev-10:analytics')
  })

  it('has no key without a webhook id or event id, and no type without a topic (answered 400)', () => {
    const req = signed('orders/create', order)
    const { ['x-shopify-webhook-id']: _, ['x-shopify-event-id']: __, ...noIds } = req.headers
    expect(keyAndType({ ...req, headers: noIds }).key).toBeUndefined()
    const { ['x-shopify-topic']: ___, ...noTopic } = req.headers
    expect(keyAndType({ ...req, headers: noTopic }).type).toBeUndefined()
  })

  it('throws MalformedWebhook for a body that is not a JSON object', () => {
    expect(() => shopify.parse(signed('orders/create', {}, { body: '[1,2]' }))).toThrow(MalformedWebhook)
  })

  it('routes raw events with the topic’s slash turned into a dot', () => {
    expect(rawRoutingKey('shopify', 'orders/create')).toBe('raw.shopify.orders.create')
  })
})

describe('shopify handlers', () => {
  const mapped = (topic: string, payload: Record<string, unknown>, options = {}) => {
    const req = signed(topic, payload, { shopDomain: 'acme.myshopify.com', ...options })
    return internalEvents(shopify, topic, shopify.parse(req), req)
  }

  it('maps orders/create to order.created', () => {
    expect(mapped('orders/create', order)).toEqual([
      {
        type: 'order.created',
        data: {
          order_id: '450789469',
          order_number: 1001,
          customer_id: '7001',
          total_price: '49.90',
          currency: 'EUR',
          line_items_count: 2,
          shop_domain: 'acme.myshopify.com',
          provider: 'shopify',
        },
      },
    ])
  })

  it('keeps ids beyond 2^53 exact, from the GraphQL id', () => {
    const body = '{"id":820982911946154508,"admin_graphql_api_id":"gid://shopify/Order/820982911946154508"}'
    const req = signed('orders/create', {}, { body })
    const [event] = internalEvents(shopify, 'orders/create', shopify.parse(req), req)
    expect(event?.data.order_id).toBe('820982911946154508')
  })

  it('maps orders/paid to order.paid', () => {
    expect(mapped('orders/paid', order, { unprefixed: true })).toEqual([
      {
        type: 'order.paid',
        data: {
          order_id: '450789469',
          order_number: 1001,
          total_price: '49.90',
          currency: 'EUR',
          financial_status: 'paid',
          shop_domain: 'acme.myshopify.com',
          provider: 'shopify',
        },
      },
    ])
  })

  it('maps customers/create to customer.created', () => {
    const customer = {
      id: 706405506930370000,
      admin_graphql_api_id: 'gid://shopify/Customer/706405506930370084',
      email: 'bob@example.com',
      first_name: 'Bob',
      last_name: 'Biller',
      orders_count: 0,
    }
    expect(mapped('customers/create', customer)).toEqual([
      {
        type: 'customer.created',
        data: {
          customer_id: '706405506930370084',
          email: 'bob@example.com',
          first_name: 'Bob',
          last_name: 'Biller',
          orders_count: 0,
          shop_domain: 'acme.myshopify.com',
          provider: 'shopify',
        },
      },
    ])
  })

  it('publishes only the raw event for unmapped topics', () => {
    expect(mapped('products/update', { id: 1 })).toEqual([])
  })
})
