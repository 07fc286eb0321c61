import { Hono } from 'hono'
import { z } from 'zod'
import { isUuid } from '../ids.ts'
import { destinationUrlProblem, type AddressPolicy } from './address.ts'
import {
  createSchema,
  deliveryView,
  destinationView,
  toChanges,
  toSettings,
  updateSchema,
} from './settings.ts'
import type { DestinationStore } from './store.ts'

const deliveriesQuery = z.object({
  status: z.enum(['pending', 'delivered', 'failed']).optional(),
  event_id: z.uuid().optional(),
  webhook_id: z.uuid().optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
})

const rotateSchema = z
  .object({
    expires_in_seconds: z
      .number()
      .int()
      .min(0)
      .max(30 * 24 * 3600)
      .default(24 * 3600),
  })
  .strict()

export interface DestinationRoutesDeps {
  readonly destinations: DestinationStore
  readonly policy: AddressPolicy
  /** Called when deliveries may have become due (a destination enabled, a retry asked for). */
  readonly onDue?: (() => void) | undefined
}

/** Reads a JSON body; undefined when it is absent or not JSON (then the schema says what is wrong). */
const jsonBody = async (request: { json: () => Promise<unknown> }) => request.json().catch(() => undefined)

/** `/admin/destinations` and `/admin/deliveries`, mounted under the admin routes (same bearer token). */
export function destinationRoutes({ destinations, policy, onDue }: DestinationRoutesDeps): Hono {
  const routes = new Hono()
  const notFound = { error: 'not found' }

  routes.post('/destinations', async (c) => {
    const parsed = createSchema.safeParse(await jsonBody(c.req))
    if (!parsed.success) return c.json({ error: z.prettifyError(parsed.error) }, 400)
    const urlProblem = destinationUrlProblem(parsed.data.url, policy)
    if (urlProblem) return c.json({ error: urlProblem }, 400)
    if (parsed.data.name && (await destinations.getByName(parsed.data.name)))
      return c.json({ error: `a destination named ${parsed.data.name} exists` }, 409)
    const { destination, secret } = await destinations.create({
      ...toSettings(parsed.data),
      name: parsed.data.name,
    })
    // The only time the secret is shown, with the rotation's.
    return c.json({ ...destinationView(destination), secret }, 201)
  })

  routes.get('/destinations', async (c) =>
    c.json({ destinations: (await destinations.list()).map(destinationView) }),
  )

  routes.get('/destinations/:id', async (c) => {
    const id = c.req.param('id')
    const destination = isUuid(id) ? await destinations.get(id) : undefined
    return destination ? c.json(destinationView(destination)) : c.json(notFound, 404)
  })

  routes.patch('/destinations/:id', async (c) => {
    const id = c.req.param('id')
    if (!isUuid(id)) return c.json(notFound, 404)
    const parsed = updateSchema.safeParse(await jsonBody(c.req))
    if (!parsed.success) return c.json({ error: z.prettifyError(parsed.error) }, 400)
    const urlProblem =
      parsed.data.url === undefined ? undefined : destinationUrlProblem(parsed.data.url, policy)
    if (urlProblem) return c.json({ error: urlProblem }, 400)
    const destination = await destinations.update(id, toChanges(parsed.data))
    if (!destination) return c.json(notFound, 404)
    if (parsed.data.enabled) onDue?.()
    return c.json(destinationView(destination))
  })

  routes.delete('/destinations/:id', async (c) => {
    const id = c.req.param('id')
    return isUuid(id) && (await destinations.remove(id)) ? c.body(null, 204) : c.json(notFound, 404)
  })

  routes.post('/destinations/:id/rotate-secret', async (c) => {
    const id = c.req.param('id')
    if (!isUuid(id)) return c.json(notFound, 404)
    const parsed = rotateSchema.safeParse((await jsonBody(c.req)) ?? {})
    if (!parsed.success) return c.json({ error: z.prettifyError(parsed.error) }, 400)
    const rotated = await destinations.rotateSecret(id, parsed.data.expires_in_seconds)
    if (!rotated) return c.json(notFound, 404)
    return c.json({
      id,
      secret: rotated.secret,
      previous_secrets_expire_at: rotated.previousExpireAt.toISOString(),
    })
  })

  routes.get('/destinations/:id/deliveries', async (c) => {
    const id = c.req.param('id')
    if (!isUuid(id) || !(await destinations.get(id))) return c.json(notFound, 404)
    const parsed = deliveriesQuery.safeParse(c.req.query())
    if (!parsed.success) return c.json({ error: z.prettifyError(parsed.error) }, 400)
    const { status, event_id: eventId, webhook_id: webhookId, limit } = parsed.data
    const found = await destinations.listDeliveries({ destinationId: id, status, eventId, webhookId, limit })
    return c.json({ deliveries: found.map(deliveryView) })
  })

  routes.post('/destinations/:id/retry-failed', async (c) => {
    const id = c.req.param('id')
    if (!isUuid(id) || !(await destinations.get(id))) return c.json(notFound, 404)
    const retried = await destinations.retry({ destinationId: id })
    if (retried > 0) onDue?.()
    return c.json({ retried }, 202)
  })

  // Deliveries across destinations, by event, webhook or status.
  routes.get('/deliveries', async (c) => {
    const parsed = deliveriesQuery.safeParse(c.req.query())
    if (!parsed.success) return c.json({ error: z.prettifyError(parsed.error) }, 400)
    const { status, event_id: eventId, webhook_id: webhookId, limit } = parsed.data
    const found = await destinations.listDeliveries({ status, eventId, webhookId, limit })
    return c.json({ deliveries: found.map(deliveryView) })
  })

  routes.get('/deliveries/:id', async (c) => {
    const id = c.req.param('id')
    const [delivery] = isUuid(id) ? await destinations.listDeliveries({ id, limit: 1 }) : []
    return delivery ? c.json(deliveryView(delivery)) : c.json(notFound, 404)
  })

  routes.post('/deliveries/:id/retry', async (c) => {
    const id = c.req.param('id')
    const retried = isUuid(id) ? await destinations.retry({ id }) : 0
    if (retried > 0) onDue?.()
    return retried > 0 ? c.json({ retried }, 202) : c.json(notFound, 404)
  })

  return routes
}
