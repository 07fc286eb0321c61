import { hmac, safeEqual } from '../src/crypto.ts'
import { parseJsonObject } from '../src/parse.ts'
import { header, type Provider, type WebhookRequest } from '../src/provider.ts'

type ShopifyPayload = Record<string, any>

/** `X-Shopify-<name>`, or the unprefixed `shopify-<name>` that newer (event-based) deliveries send. */
const shopifyHeader = (req: WebhookRequest, name: string): string | undefined =>
  header(req, `x-shopify-${name}`) ?? header(req, `shopify-${name}`)

const shopDomain = (req: WebhookRequest): string | null => shopifyHeader(req, 'shop-domain') ?? null

/** Shopify ids can pass 2^53, which JSON.parse rounds; the GraphQL id keeps the exact digits. */
function idOf(record: ShopifyPayload | null | undefined): string | null {
  const exact = /\/(\d+)$/.exec(String(record?.admin_graphql_api_id ?? ''))?.[1]
  if (exact) return exact
  return record?.id === undefined || record.id === null ? null : String(record.id)
}

export const shopify: Provider<ShopifyPayload> = {
  name: 'shopify',

  verify(req, secret, { reject }) {
    const signature = shopifyHeader(req, 'hmac-sha256')
    if (!signature) return reject('shopify: no X-Shopify-Hmac-Sha256 header')
    const expected = hmac('sha256', secret, req.body).toString('base64')
    return safeEqual(signature, expected) || reject('shopify: X-Shopify-Hmac-Sha256 does not match')
  },

  parse: (req) => parseJsonObject(req.body, 'shopify'),

  // A retry keeps its webhook id. The newer event deliveries (`shopify-*` headers) carry no webhook id, only
  // an event id that every subscription to the event shares: the subscription's handle, else the topic,
  // tells them apart (header names as in Shopify's own shopify-app-js).
  eventKey(req) {
    const webhookId = shopifyHeader(req, 'webhook-id')
    if (webhookId) return webhookId
    const eventId = shopifyHeader(req, 'event-id')
    const subscription = shopifyHeader(req, 'handle') ?? shopifyHeader(req, 'topic')
    return eventId && subscription ? `event:${eventId}:${subscription}` : undefined
  },

  eventType: (req) => shopifyHeader(req, 'topic'),

  handlers: {
    'orders/create': (order, req) => ({
      type: 'order.created',
      data: {
        order_id: idOf(order),
        order_number: order.order_number ?? null,
        customer_id: idOf(order.customer),
        total_price: order.total_price ?? null,
        currency: order.currency ?? null,
        line_items_count: Array.isArray(order.line_items) ? order.line_items.length : 0,
        shop_domain: shopDomain(req),
      },
    }),
    'orders/paid': (order, req) => ({
      type: 'order.paid',
      data: {
        order_id: idOf(order),
        order_number: order.order_number ?? null,
        total_price: order.total_price ?? null,
        currency: order.currency ?? null,
        financial_status: order.financial_status ?? null,
        shop_domain: shopDomain(req),
      },
    }),
    'customers/create': (customer, req) => ({
      type: 'customer.created',
      data: {
        customer_id: idOf(customer),
        email: customer.email ?? null,
        first_name: customer.first_name ?? null,
        last_name: customer.last_name ?? null,
        orders_count: customer.orders_count ?? null,
        shop_domain: shopDomain(req),
      },
    }),
  },
}
