import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { Hono } from 'hono'
import type { Providers } from '../../providers/index.ts'
import type { Health } from './health.ts'
import { ingest, type Delivery, type IngestDeps } from './ingest.ts'
import { adminRoutes } from '../admin/api.ts'
import type { Rejections } from '../ops/rejections.ts'
import type { Store } from '../db/webhooks.ts'

export interface AppDeps extends IngestDeps {
  readonly providers: Providers
  readonly health: () => Promise<Health>
  readonly store: Pick<Store, 'get' | 'list' | 'replay'>
  /** The /admin/destinations and /admin/deliveries routes, when destinations are wired in. */
  readonly destinationRoutes?: Hono | undefined
  /** The dashboard's pages under /admin (cookie sign-in), when ADMIN_TOKEN is set. */
  readonly dashboard?: Hono | undefined
  /** Read by GET /admin/rejections; `rejections` (from IngestDeps) writes to it. */
  readonly rejectionLog?: Pick<Rejections, 'list'> | undefined
}

interface NodeBindings {
  readonly incoming?: IncomingMessage
}

interface Env {
  Bindings: NodeBindings
  Variables: { requestId: string }
}

/** A request id we pass on: short, and nothing that could forge a log line. */
const requestIdPattern = /^[\w.:-]{1,128}$/

/**
 * The delivery straight from Node's request when the server is @hono/node-server: reading the body from
 * the Node stream skips building a web Request around it, a large part of each request's CPU.
 */
function deliveryFromNode(incoming: IncomingMessage): Delivery {
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(incoming.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value
  }
  return {
    method: incoming.method ?? 'POST',
    pathAndQuery: incoming.url ?? '/',
    origin: `${'encrypted' in incoming.socket && incoming.socket.encrypted ? 'https' : 'http'}://${incoming.headers.host ?? 'localhost'}`,
    headers,
    body: incoming,
    address: incoming.socket.remoteAddress ?? 'unknown',
  }
}

/** The delivery from a web Request (app.request() in tests, other runtimes). */
function deliveryFromFetch(request: Request): Delivery {
  const url = new URL(request.url)
  return {
    method: request.method,
    pathAndQuery: url.pathname + url.search,
    origin: url.origin,
    headers: Object.fromEntries(request.headers),
    body: request.body,
    address: 'unknown',
  }
}

/** The HTTP surface. No I/O happens here until a request arrives. */
export function createApp(deps: AppDeps): Hono<Env> {
  const app = new Hono<Env>()

  // Every answer carries an x-request-id, the caller's when it sent a sane one, and the request's log lines
  // carry it too, so one delivery can be followed from the provider's dashboard to our logs.
  app.use(async (c, next) => {
    const given = c.req.header('x-request-id')
    const requestId = given && requestIdPattern.test(given) ? given : randomUUID()
    c.set('requestId', requestId)
    c.header('x-request-id', requestId)
    await next()
  })

  app.post('/webhooks/:provider', async (c) => {
    const name = c.req.param('provider')
    const provider = Object.hasOwn(deps.providers, name) ? deps.providers[name] : undefined
    const secrets = deps.config.secrets[name] ?? []
    // A provider with no secret configured is disabled: it looks exactly like an unknown one.
    if (!provider || secrets.length === 0) return c.json({ error: 'not found' }, 404)
    const incoming = c.env?.incoming
    const delivery = incoming ? deliveryFromNode(incoming) : deliveryFromFetch(c.req.raw)
    const answer = await ingest(deps, provider, secrets, delivery, c.get('requestId'))
    if ('reply' in answer) return c.body(answer.reply.body, 200, { 'content-type': answer.reply.contentType })
    return c.json(answer.body, answer.status)
  })

  app.get('/health', async (c) => {
    const health = await deps.health()
    return c.json({ status: health.status, checks: health.checks }, health.accepting ? 200 : 503)
  })

  app.get('/metrics', async (c) =>
    c.body(await deps.metrics.render(), 200, { 'content-type': deps.metrics.contentType }),
  )

  // The pages first: their paths are the dashboard's, everything else under /admin is the bearer-token API.
  if (deps.config.adminToken && deps.dashboard) app.route('/admin', deps.dashboard)
  if (deps.config.adminToken)
    app.route(
      '/admin',
      adminRoutes({
        store: deps.store,
        token: deps.config.adminToken,
        providers: deps.providers,
        destinations: deps.destinationRoutes,
        rejections: deps.rejectionLog && {
          log: deps.rejectionLog,
          providers: Object.keys(deps.providers).filter(
            (name) => (deps.config.secrets[name] ?? []).length > 0,
          ),
        },
      }),
    )

  app.notFound((c) => c.json({ error: 'not found' }, 404))
  app.onError((error, c) => {
    deps.log.error('unhandled error', { path: c.req.path, requestId: c.get('requestId'), error })
    return c.json({ error: 'internal error' }, 500)
  })
  return app
}
