import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { onShutdown } from './shutdown.ts'

/**
 * (a) The floor: Hono on @hono/node-server reading the whole body and answering 200, nothing verified or
 * stored. Env: PORT, HOST.
 */

const app = new Hono()
app.get('/health', (c) => c.json({ status: 'ok' }))
app.post('/webhooks/:provider', async (c) => {
  await c.req.arrayBuffer()
  return c.json({ status: 'accepted' })
})

const server = serve({
  fetch: app.fetch,
  port: Number(process.env.PORT),
  hostname: process.env.HOST ?? '127.0.0.1',
})
onShutdown(server)
