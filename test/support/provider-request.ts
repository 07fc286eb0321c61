import { loadConfig, type Env } from '../../src/config.ts'
import type { VerifyContext, WebhookRequest } from '../../src/provider.ts'
import type { StoredWebhook } from '../../src/db/webhooks.ts'

/** A verify context like ingest builds, collecting the refusal reasons. */
export function verifyContext(env: Env = {}, now = Date.now()): VerifyContext & { reasons: string[] } {
  const reasons: string[] = []
  return {
    config: loadConfig(env as Record<string, string>),
    now,
    reasons,
    reject: (reason) => (reasons.push(reason), false),
  }
}

/** A received request, as ingest hands it to a provider. */
export function request(
  body: string | Buffer,
  headers: Record<string, string>,
  options: { path?: string; publicUrl?: string; receivedAt?: Date } = {},
): WebhookRequest {
  const path = options.path ?? '/webhooks/test'
  return {
    method: 'POST',
    pathAndQuery: path,
    publicUrl: options.publicUrl ?? `https://hooks.example.com${path}`,
    headers: Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value])),
    body: Buffer.isBuffer(body) ? body : Buffer.from(body),
    receivedAt: options.receivedAt ?? new Date(),
  }
}

/** A stored webhook as the worker claims it: a pending row holding `body` as received. */
export function storedWebhook(
  provider: string,
  body: string,
  fields: Partial<StoredWebhook> = {},
): StoredWebhook {
  return {
    id: '0b9c3f4e-8a55-4b8e-9a39-2f1c0c7d1a11',
    provider,
    eventKey: 'key-1',
    eventType: 'test',
    method: 'POST',
    path: `/webhooks/${provider}`,
    publicUrl: `https://hooks.example.com/webhooks/${provider}`,
    headers: {},
    body: Buffer.from(body),
    receivedAt: new Date('2026-11-22T10:00:00.000Z'),
    status: 'pending',
    attempts: 0,
    nextAttemptAt: new Date(),
    lastError: null,
    publishedEventIds: [],
    publishedAt: null,
    routedAt: null,
    ...fields,
  }
}
