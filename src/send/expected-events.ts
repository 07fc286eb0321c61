import type { Providers } from '../../providers/index.ts'
import { rawRoutingKey } from '../pipeline/events.ts'
import type { WebhookRequest } from '../provider.ts'
import { internalEvents } from '../pipeline/registry.ts'

/** A delivery as the gateway will receive it. */
export interface Received {
  readonly path: string
  /** The URL the gateway rebuilds: PUBLIC_BASE_URL, or GATEWAY_URL, plus the path. */
  readonly publicUrl: string
  readonly body: string
  readonly headers: Readonly<Record<string, string>>
}

/**
 * The routing keys the gateway will publish for a delivery (its raw event, then the mapped internal ones),
 * worked out with the gateway's own providers and registry; empty when it cannot tell.
 */
export function expectedRoutingKeys(providers: Providers, provider: string, delivery: Received): string[] {
  const handling = Object.hasOwn(providers, provider) ? providers[provider] : undefined
  if (!handling) return []
  const req: WebhookRequest = {
    method: 'POST',
    pathAndQuery: delivery.path,
    publicUrl: delivery.publicUrl,
    headers: Object.fromEntries(
      Object.entries(delivery.headers).map(([name, value]) => [name.toLowerCase(), value]),
    ),
    body: Buffer.from(delivery.body),
    receivedAt: new Date(),
  }
  try {
    const payload = handling.parse(req)
    const type = handling.eventType(req, payload)
    if (!type) return []
    const mapped = internalEvents(handling, type, payload, req).map((event) => event.type)
    return [rawRoutingKey(provider, type), ...mapped]
  } catch {
    return []
  }
}
