import { setTimeout as sleep } from 'node:timers/promises'
import { fetch, type Agent } from 'undici'
import { errorText, type EventWatch, type SeenEvent } from './event-watch.ts'

const pollMs = 100
/** Detail requests in flight at once while several webhooks are polled. */
const concurrency = 8
const requestTimeoutMs = 5000

/** What `GET /admin/webhooks/:id` says that the report needs. */
interface Detail {
  readonly status: string
  readonly lastError: string | undefined
  readonly events: readonly SeenEvent[]
  readonly eventsError: string | undefined
}

/** Nothing more to wait for: processed, given up on, or a handler that fails on it whatever the wait. */
const settled = (detail: Detail | undefined) =>
  detail !== undefined &&
  (detail.status === 'published' || detail.status === 'dead' || detail.eventsError !== undefined)

/**
 * Reads each webhook's events from the gateway's `GET /admin/webhooks/:id` (Bearer ADMIN_TOKEN), for a gateway
 * with no broker: polled until the webhook is processed (`published`), `dead`, or its handler fails on it.
 */
export function watchAdminApi(gatewayUrl: string, token: string, agent: Agent): EventWatch {
  const details = new Map<string, Detail>()

  async function read(webhookId: string): Promise<Detail> {
    const path = `/admin/webhooks/${encodeURIComponent(webhookId)}`
    let response
    try {
      response = await fetch(gatewayUrl + path, {
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(requestTimeoutMs),
        dispatcher: agent,
      })
    } catch (error) {
      throw new Error(`cannot reach the gateway's admin API at ${gatewayUrl}: ${errorText(error)}`)
    }
    const text = await response.text()
    if (response.status === 401)
      throw new Error(
        `the gateway's admin API refused ADMIN_TOKEN (401): give npm run send the gateway's ADMIN_TOKEN`,
      )
    if (response.status === 404)
      throw new Error(`the gateway answers 404 for GET ${path}: is ADMIN_TOKEN set where it runs?`)
    if (response.status !== 200)
      throw new Error(`the gateway answered ${response.status} for GET ${path}: ${text.slice(0, 200)}`)
    let body: Record<string, unknown>
    try {
      body = JSON.parse(text) as Record<string, unknown>
    } catch {
      throw new Error(`the gateway's answer to GET ${path} is not JSON`)
    }
    if (!Array.isArray(body['events']))
      throw new Error(`the gateway's GET ${path} does not list the webhook's events (an older gateway?)`)
    return {
      status: String(body['status']),
      lastError: typeof body['last_error'] === 'string' ? body['last_error'] : undefined,
      events: body['events'].map((entry: { routing_key?: unknown; cloudevent?: unknown }) => ({
        routingKey: String(entry.routing_key),
        event:
          entry.cloudevent && typeof entry.cloudevent === 'object'
            ? (entry.cloudevent as Record<string, unknown>)
            : JSON.stringify(entry.cloudevent),
      })),
      eventsError: typeof body['events_error'] === 'string' ? body['events_error'] : undefined,
    }
  }

  return {
    source: "from the gateway's admin API (no broker configured)",
    eventsOf: (webhookId) => details.get(webhookId)?.events ?? [],
    noteOf(webhookId) {
      const detail = details.get(webhookId)
      if (!detail || detail.status === 'published') return undefined
      if (detail.eventsError) return `the gateway cannot map webhook ${webhookId}: ${detail.eventsError}`
      const lastError = detail.lastError ? `, last error: ${detail.lastError}` : ''
      return detail.status === 'dead'
        ? `webhook ${webhookId} is dead${lastError}: replay it once the cause is fixed`
        : `webhook ${webhookId} is not processed yet (still ${detail.status}${lastError}): its events go out ` +
            'once a worker (npm start, or ROLE=worker) processes it'
    },
    // The events are computed from the stored webhook, so there is no count to reach: only its status to wait on.
    async waitFor(expected, timeoutMs) {
      const deadline = Date.now() + timeoutMs
      const webhookIds = [...expected.keys()]
      try {
        for (;;) {
          const waiting = webhookIds.filter((webhookId) => !settled(details.get(webhookId)))
          for (let start = 0; start < waiting.length; start += concurrency)
            await Promise.all(
              waiting
                .slice(start, start + concurrency)
                .map(async (webhookId) => details.set(webhookId, await read(webhookId))),
            )
          if (webhookIds.every((webhookId) => settled(details.get(webhookId))) || Date.now() >= deadline)
            return undefined
          await sleep(pollMs)
        }
      } catch (error) {
        return errorText(error)
      }
    },
    close: async () => {},
  }
}
