import { standardWebhooksSignature } from '../standard-webhooks.ts'

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
  return {
    'webhook-id': eventId,
    'webhook-timestamp': timestamp,
    'webhook-signature': secrets
      .map((secret) => `v1,${standardWebhooksSignature(secret, eventId, timestamp, payload)}`)
      .join(' '),
  }
}
