import { loadConfig, type Env } from '../../src/config.ts'
import type { VerifyContext, WebhookRequest } from '../../src/provider.ts'

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
