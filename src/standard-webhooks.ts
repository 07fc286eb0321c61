import { createHmac } from 'node:crypto'

/**
 * The Standard Webhooks scheme (https://www.standardwebhooks.com/), both ways: the gateway signs what it sends
 * to destinations with it, and verifies configured senders that use it (Svix, Clerk, Resend, OpenAI, ...).
 * `v1,` and the base64 HMAC-SHA256, keyed by the secret's bytes (base64 after `whsec_`), of
 * `<webhook-id>.<webhook-timestamp>.<body>`. Hashed with node:crypto: the `standardwebhooks` package hashes in
 * JavaScript (fast-sha256), several times the CPU per request; it stays the reference our tests check against.
 */

/** Secrets decoded once, not once per request. */
const keys = new Map<string, Buffer>()

/** The key bytes of a `whsec_…` secret (the prefix is optional); throws for an empty one. */
export function standardWebhooksKey(secret: string): Buffer {
  let key = keys.get(secret)
  if (!key) {
    key = Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64')
    if (key.length === 0) throw new Error('standard webhooks: an empty secret')
    if (keys.size > 10_000) keys.clear()
    keys.set(secret, key)
  }
  return key
}

/** The base64 signature (without `v1,`) of one message. */
export function standardWebhooksSignature(
  secret: string,
  id: string,
  timestamp: string,
  body: Buffer | string,
): string {
  return createHmac('sha256', standardWebhooksKey(secret))
    .update(`${id}.${timestamp}.`)
    .update(body)
    .digest('base64')
}
