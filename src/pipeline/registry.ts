import type { Handler, InternalEvent, Provider, WebhookRequest } from '../provider.ts'

/** The handler for an event type: an exact key first, then the longest `prefix.*` key that matches. */
export function handlerFor<P>(provider: Provider<P>, eventType: string): Handler<P> | undefined {
  const exact = provider.handlers[eventType]
  if (exact) return exact
  let best: { handler: Handler<P>; length: number } | undefined
  for (const [key, handler] of Object.entries(provider.handlers)) {
    if (!key.endsWith('.*')) continue
    const prefix = key.slice(0, -1)
    if (eventType.startsWith(prefix) && (!best || prefix.length > best.length))
      best = { handler, length: prefix.length }
  }
  return best?.handler
}

/** The internal events a provider event maps to (none for unmapped types); every `data` names its provider. */
export function internalEvents<P>(
  provider: Provider<P>,
  eventType: string,
  payload: P,
  req: WebhookRequest,
): InternalEvent[] {
  const handler = handlerFor(provider, eventType)
  if (!handler) return []
  const produced = handler(payload, req)
  const events = produced === null ? [] : Array.isArray(produced) ? produced : [produced as InternalEvent]
  return events.map((event) => ({ type: event.type, data: { ...event.data, provider: provider.name } }))
}
