import { createHmac } from 'node:crypto'

/**
 * Standard Webhooks signatures (https://www.standardwebhooks.com/): `v1,` and the base64 HMAC-SHA256, keyed by
 * the secret's bytes (base64 after `whsec_`), of `<webhook-id>.<webhook-timestamp>.<body>`. Signed with
 * node:crypto: the `standardwebhooks` package hashes in JavaScript (fast-sha256), several times the CPU per
 * request; it stays the reference our tests verify against.
 */

/** Secrets decoded once, not once per request. */
const keys = new Map<string, Buffer>()
function keyOf(secret: string): Buffer {
  let key = keys.get(secret)
  if (!key) {
    key = Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64')
    if (key.length === 0) throw new Error('signing: an empty secret')
    if (keys.size > 10_000) keys.clear()
    keys.set(secret, key)
  }
  return key
}

/**
 * The Standard Webhooks headers for one request: `webhook-id` is the CloudEvent id (the same on every
 * attempt and replay), and `webhook-signature` holds a `v1,<base64>` signature per active secret,
 * space-separated, so a receiver holding either secret verifies while one is rotated out.
 */
export function signatureHeaders(
  eventId: string,
  payload: string,
  secrets: readonly string[],
  at: Date,
): Record<string, string> {
  const timestamp = String(Math.floor(at.getTime() / 1000))
  const signed = `${eventId}.${timestamp}.${payload}`
  return {
    'webhook-id': eventId,
    'webhook-timestamp': timestamp,
    'webhook-signature': secrets
      .map((secret) => `v1,${createHmac('sha256', keyOf(secret)).update(signed).digest('base64')}`)
      .join(' '),
  }
}
