import { createHmac, randomBytes, randomUUID, sign as rsaSign } from 'node:crypto'
import { crc32 } from 'node:zlib'
import { sign as githubSign } from '@octokit/webhooks-methods'
import Stripe from 'stripe'
import twilio from 'twilio'
import { guid } from './ids.ts'

/** One signed request, as the provider would send it: the exact body and its headers. */
export interface SignedRequest {
  readonly body: string
  readonly headers: Readonly<Record<string, string>>
}

/** Stripe sends its events pretty-printed, signed with `t=<unix s>,v1=<hex>` by Stripe's own SDK. */
export function signStripe(event: Record<string, unknown>, secret: string): SignedRequest {
  const body = JSON.stringify(event, null, 2)
  return {
    body,
    headers: {
      'content-type': 'application/json; charset=utf-8',
      'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
      'stripe-signature': Stripe.webhooks.generateTestHeaderString({ payload: body, secret }),
    },
  }
}

/** Where a GitHub hook lives: every delivery of one hook carries its id. */
export interface GitHubHook {
  readonly id: number
  readonly repositoryId: number
}

/** A GitHub delivery: a new delivery GUID, `sha256=` by @octokit/webhooks-methods (and the legacy SHA-1). */
export async function signGitHub(
  event: string,
  payload: Record<string, unknown>,
  secret: string,
  hook: GitHubHook,
): Promise<SignedRequest & { readonly delivery: string }> {
  const body = JSON.stringify(payload)
  const delivery = guid()
  return {
    body,
    delivery,
    headers: {
      'content-type': 'application/json',
      'user-agent': 'GitHub-Hookshot/a1b2c3d',
      'x-github-event': event,
      'x-github-delivery': delivery,
      'x-github-hook-id': String(hook.id),
      'x-github-hook-installation-target-type': 'repository',
      'x-github-hook-installation-target-id': String(hook.repositoryId),
      'x-hub-signature': `sha1=${createHmac('sha1', secret).update(body).digest('hex')}`,
      'x-hub-signature-256': await githubSign(secret, body),
    },
  }
}

/** A form-encoded Twilio callback, signed by Twilio's SDK over the exact URL Twilio calls. */
export function signTwilio(params: Record<string, string>, authToken: string, url: string): SignedRequest {
  return {
    body: new URLSearchParams(params).toString(),
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'user-agent': 'TwilioProxy/1.1',
      'i-twilio-idempotency-token': randomUUID(),
      'x-twilio-signature': twilio.getExpectedTwilioSignature(authToken, url, params),
    },
  }
}

/** A Shopify delivery: base64 HMAC-SHA256 of the body with the app's client secret, a new webhook id. */
export function signShopify(
  topic: string,
  payload: Record<string, unknown>,
  secret: string,
  shopDomain: string,
): SignedRequest & { readonly webhookId: string } {
  const body = JSON.stringify(payload)
  const webhookId = guid()
  return {
    body,
    webhookId,
    headers: {
      'content-type': 'application/json',
      'user-agent': 'Shopify-Captain-Hook',
      'x-shopify-hmac-sha256': createHmac('sha256', secret).update(body).digest('base64'),
      'x-shopify-topic': topic,
      'x-shopify-shop-domain': shopDomain,
      'x-shopify-api-version': '2025-07',
      'x-shopify-webhook-id': webhookId,
      'x-shopify-event-id': guid(),
      'x-shopify-triggered-at': new Date().toISOString(),
    },
  }
}

/** The certificate PayPal names in `paypal-cert-url`, and the key that signs with it. */
export interface PayPalSigningKey {
  readonly certUrl: string
  readonly privateKey: string
}

/**
 * A PayPal delivery: RSA-SHA256 (PKCS#1 v1.5) over `transmission id|transmission time|webhook id|crc32(body)`,
 * the CRC32 as an unsigned decimal and the webhook id the one from PayPal's dashboard.
 */
export function signPayPal(
  event: Record<string, unknown>,
  webhookId: string,
  key: PayPalSigningKey,
): SignedRequest {
  const body = JSON.stringify(event)
  const transmissionId = randomUUID()
  const transmissionTime = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
  const message = `${transmissionId}|${transmissionTime}|${webhookId}|${crc32(Buffer.from(body)) >>> 0}`
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'user-agent': `PayPal/AUHD-214.0-${randomBytes(4).readUInt32BE() % 100_000_000}`,
      'paypal-transmission-id': transmissionId,
      'paypal-transmission-time': transmissionTime,
      'paypal-transmission-sig': rsaSign('sha256', Buffer.from(message), key.privateKey).toString('base64'),
      'paypal-cert-url': key.certUrl,
      'paypal-auth-algo': 'SHA256withRSA',
    },
  }
}
