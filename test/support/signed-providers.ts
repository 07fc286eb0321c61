import { createHmac, randomUUID, sign } from 'node:crypto'
import { crc32 } from 'node:zlib'
import twilio from 'twilio'

export type TwilioParams = Record<string, string | string[]>

/** A form-encoded Twilio callback signed by Twilio's own SDK over `url`; repeated keys as arrays. */
export function twilioDelivery(
  params: TwilioParams,
  options: { authToken: string; url: string },
): { body: string; headers: Record<string, string> } {
  const form = new URLSearchParams()
  for (const [key, value] of Object.entries(params))
    for (const item of Array.isArray(value) ? value : [value]) form.append(key, item)
  return {
    body: form.toString(),
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-twilio-signature': twilio.getExpectedTwilioSignature(options.authToken, options.url, params),
    },
  }
}

/** A JSON Twilio callback: the URL gains `bodySHA256`, and the signature covers that URL alone. */
export function twilioJsonDelivery(
  payload: Record<string, unknown>,
  options: { authToken: string; url: string },
): { url: string; body: string; headers: Record<string, string> } {
  const body = JSON.stringify(payload)
  const url = `${options.url}${options.url.includes('?') ? '&' : '?'}bodySHA256=${twilio.getExpectedBodyHash(body)}`
  return {
    url,
    body,
    headers: {
      'content-type': 'application/json',
      'x-twilio-signature': twilio.getExpectedTwilioSignature(options.authToken, url, {}),
    },
  }
}

/** A message status callback as Twilio sends it. */
export function twilioMessageStatus(sid: string, status: string, extra: TwilioParams = {}): TwilioParams {
  return {
    AccountSid: 'AC00000000000000000000000000000000',
    ApiVersion: '2010-04-01',
    From: '+15005550006',
    MessageSid: sid,
    MessageStatus: status,
    SmsSid: sid,
    SmsStatus: status,
    To: '+14155552671',
    ...extra,
  }
}

/** A Shopify delivery: base64 HMAC-SHA256 of the body; `X-Shopify-*` headers, or the unprefixed `shopify-*`. */
export function shopifyDelivery(
  topic: string,
  payload: Record<string, unknown>,
  options: {
    secret: string
    webhookId?: string
    eventId?: string
    shopDomain?: string
    unprefixed?: boolean
    body?: string
  },
): { body: string; headers: Record<string, string> } {
  const body = options.body ?? JSON.stringify(payload)
  const prefix = options.unprefixed ? 'shopify-' : 'x-shopify-'
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    [`${prefix}hmac-sha256`]: createHmac('sha256', options.secret).update(body).digest('base64'),
    [`${prefix}topic`]: topic,
    [`${prefix}shop-domain`]: options.shopDomain ?? 'example.myshopify.com',
    [`${prefix}api-version`]: '2025-07',
    [`${prefix}webhook-id`]: options.webhookId ?? randomUUID(),
    [`${prefix}event-id`]: options.eventId ?? randomUUID(),
    [`${prefix}triggered-at`]: new Date().toISOString(),
  }
  return { body, headers }
}

/** An orders/create payload in Shopify's shape (trimmed). */
export function shopifyOrder(id: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    admin_graphql_api_id: `gid://shopify/Order/${id}`,
    order_number: 1001,
    currency: 'EUR',
    total_price: '49.90',
    financial_status: 'paid',
    customer: { id: 7001, admin_graphql_api_id: 'gid://shopify/Customer/7001', email: 'ada@example.com' },
    line_items: [
      { id: 1, quantity: 1 },
      { id: 2, quantity: 3 },
    ],
    ...extra,
  }
}

/** PayPal's transmission time format: ISO 8601 to the second. */
export const paypalTime = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')

/**
 * A PayPal delivery signed like PayPal signs it: RSA-SHA256 over
 * `transmission id|transmission time|webhook id|crc32(body)`.
 */
export function paypalDelivery(
  event: Record<string, unknown>,
  options: {
    webhookId: string
    certUrl: string
    privateKey: string
    transmissionTime?: string
    transmissionId?: string
    body?: string
  },
): { body: string; headers: Record<string, string> } {
  const body = options.body ?? JSON.stringify(event)
  const transmissionId = options.transmissionId ?? randomUUID()
  const transmissionTime = options.transmissionTime ?? paypalTime(Date.now())
  const message = `${transmissionId}|${transmissionTime}|${options.webhookId}|${crc32(Buffer.from(body)) >>> 0}`
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'paypal-transmission-id': transmissionId,
      'paypal-transmission-time': transmissionTime,
      'paypal-transmission-sig': sign('sha256', Buffer.from(message), options.privateKey).toString('base64'),
      'paypal-cert-url': options.certUrl,
      'paypal-auth-algo': 'SHA256withRSA',
    },
  }
}

/** A PayPal webhook event envelope around a resource. */
export function paypalEvent(type: string, resource: Record<string, unknown>, id = `WH-${randomUUID()}`) {
  return {
    id,
    event_version: '1.0',
    create_time: new Date().toISOString(),
    resource_type: type.startsWith('BILLING.') ? 'subscription' : 'capture',
    event_type: type,
    summary: type,
    resource,
  }
}
