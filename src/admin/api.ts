import { Hono } from 'hono'
import { z } from 'zod'
import { safeEqual } from '../crypto.ts'
import { isUuid } from '../ids.ts'
import type { Providers } from '../../providers/index.ts'
import { eventsFor, serializeEvent, type CloudEvent } from '../pipeline/events.ts'
import type { RejectionLog } from '../ops/rejections.ts'
import type { Store, StoredWebhook } from '../db/webhooks.ts'

const statuses = ['pending', 'retrying', 'published', 'dead'] as const

const filterSchema = z.object({
  provider: z.string().min(1).optional(),
  status: z.enum(statuses).optional(),
  type: z.string().min(1).optional(),
  /** The provider's event id. */
  key: z.string().min(1).optional(),
  since: z.coerce.date().optional(),
  until: z.coerce.date().optional(),
})

/**
 * A webhook filter from form or query fields (empty ones mean "any"), or why it is not one: a filter that
 * cannot be read is refused, never narrowed silently, since a replay by filter acts on what it matches.
 */
export function parseWebhookFilter(
  fields: Readonly<Record<string, string | undefined>>,
): { filter: z.output<typeof filterSchema> } | { error: string } {
  const given = Object.fromEntries(
    Object.keys(filterSchema.shape)
      .map((name) => [name, fields[name]?.trim()] as const)
      .filter(([, value]) => value !== undefined && value !== ''),
  )
  const parsed = filterSchema.strict().safeParse(given)
  return parsed.success ? { filter: parsed.data } : { error: z.prettifyError(parsed.error) }
}

export const listSchema = filterSchema.extend({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
})

const rejectionsQuery = z.object({
  provider: z.string().min(1).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
})

const summary = (webhook: StoredWebhook) => ({
  id: webhook.id,
  provider: webhook.provider,
  event_key: webhook.eventKey,
  type: webhook.eventType,
  status: webhook.status,
  attempts: webhook.attempts,
  received_at: webhook.receivedAt.toISOString(),
  next_attempt_at:
    webhook.status === 'published' || webhook.status === 'dead' ? null : webhook.nextAttemptAt.toISOString(),
  published_at: webhook.publishedAt?.toISOString() ?? null,
  last_error: webhook.lastError,
})

const detail = (webhook: StoredWebhook) => ({
  ...summary(webhook),
  method: webhook.method,
  path: webhook.path,
  public_url: webhook.publicUrl,
  headers: webhook.headers,
  // The bytes as received: base64 is exact; the text form is for reading.
  body: webhook.body.toString('utf8'),
  body_base64: webhook.body.toString('base64'),
  published_event_ids: webhook.publishedEventIds,
})

/** A stored webhook's CloudEvents as its provider's handlers map it now (what the worker publishes), or why not. */
function mapped(
  webhook: StoredWebhook,
  providers: Providers,
): { readonly events: readonly CloudEvent[]; readonly error?: string } {
  const provider = Object.hasOwn(providers, webhook.provider) ? providers[webhook.provider] : undefined
  if (!provider)
    return { events: [], error: `no provider "${webhook.provider}" is configured to map this webhook` }
  try {
    return { events: eventsFor(webhook, provider) }
  } catch (error) {
    return {
      events: [],
      error: `the handler fails on this webhook: ${error instanceof Error ? error.message : String(error)}`,
    }
  }
}

/** The detail's JSON with `events` (and `events_error`) after the stored fields. */
function detailWithEvents(webhook: StoredWebhook, providers: Providers): string {
  const { events, error } = mapped(webhook, providers)
  // Each CloudEvent spliced in as the bytes published: a parse and re-stringify would round integers beyond
  // 2^53 in a raw event's data.
  const list = events.map(
    (event) =>
      `{"routing_key":${JSON.stringify(event.type)},"cloudevent":${serializeEvent(event).toString('utf8')}}`,
  )
  const head = JSON.stringify(detail(webhook))
  const tail = error === undefined ? '' : `,"events_error":${JSON.stringify(error)}`
  return `${head.slice(0, -1)},"events":[${list.join(',')}]${tail}}`
}

/**
 * `/admin/*`: inspect stored webhooks and replay them, and the destination routes given. Mounted only when
 * ADMIN_TOKEN is set.
 */
export function adminRoutes(options: {
  readonly store: Pick<Store, 'get' | 'list' | 'replay'>
  readonly token: string
  /** Maps a webhook's events for its detail (`events`, `events_error`); without them the detail has neither. */
  readonly providers?: Providers | undefined
  /** Mounted as they are: /admin/destinations and /admin/deliveries. */
  readonly destinations?: Hono | undefined
  /** The rejection log, and the providers it may name. */
  readonly rejections?:
    { readonly log: Pick<RejectionLog, 'list'>; readonly providers: readonly string[] } | undefined
}): Hono {
  const { store, token, providers, destinations, rejections } = options
  const admin = new Hono()

  admin.use(async (c, next) => {
    const given = /^Bearer (.+)$/i.exec(c.req.header('authorization') ?? '')?.[1]
    if (!safeEqual(given, token))
      return c.json({ error: 'unauthorized' }, 401, { 'www-authenticate': 'Bearer' })
    return next()
  })

  admin.get('/webhooks', async (c) => {
    const parsed = listSchema.safeParse(c.req.query())
    if (!parsed.success) return c.json({ error: z.prettifyError(parsed.error) }, 400)
    return c.json({ webhooks: (await store.list(parsed.data)).map(summary) })
  })

  admin.get('/webhooks/:id', async (c) => {
    const id = c.req.param('id')
    const webhook = isUuid(id) ? await store.get(id) : undefined
    if (!webhook) return c.json({ error: 'not found' }, 404)
    if (!providers) return c.json(detail(webhook))
    return c.body(detailWithEvents(webhook, providers), 200, { 'content-type': 'application/json' })
  })

  admin.post('/webhooks/:id/replay', async (c) => {
    const id = c.req.param('id')
    const replayed = isUuid(id) ? await store.replay({ id }) : 0
    return replayed ? c.json({ replayed }, 202) : c.json({ error: 'not found' }, 404)
  })

  admin.post('/replay', async (c) => {
    const body: unknown = await c.req.json().catch(() => undefined)
    const parsed = filterSchema.strict().safeParse(body ?? {})
    if (!parsed.success) return c.json({ error: z.prettifyError(parsed.error) }, 400)
    return c.json({ replayed: await store.replay(parsed.data) }, 202)
  })

  // The last refused requests per provider: why, from where, which secrets were tried; never a value.
  admin.get('/rejections', async (c) => {
    const parsed = rejectionsQuery.safeParse(c.req.query())
    if (!parsed.success) return c.json({ error: z.prettifyError(parsed.error) }, 400)
    const { provider, limit } = parsed.data
    if (!rejections) return c.json({ rejections: [] })
    if (provider && !rejections.providers.includes(provider))
      return c.json({ error: 'unknown provider' }, 400)
    const found = await rejections.log
      .list(provider ? [provider] : rejections.providers, limit)
      .catch(() => undefined)
    return found
      ? c.json({ rejections: found })
      : c.json({ error: 'the rejection log is in Redis, which does not answer' }, 503)
  })

  if (destinations) admin.route('/', destinations)

  return admin
}
