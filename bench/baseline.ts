import { createServer } from 'node:http'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import Stripe from 'stripe'

/**
 * The receiver that stores nothing: verifies the Stripe signature with Stripe's SDK (the same check the
 * gateway makes, plus the JSON parse that `constructEvent` does) and answers 200 {"status":"accepted"}.
 * `--hono` serves it through Hono on @hono/node-server, the gateway's own stack, to tell the framework's
 * cost from the cost of storing; the default is plain node:http.
 *
 * Env: PORT, HOST (127.0.0.1), STRIPE_WEBHOOK_SECRET, STRIPE_TOLERANCE_SECONDS (300).
 */

const port = Number(process.env.PORT ?? 3100)
const host = process.env.HOST ?? '127.0.0.1'
const secret = process.env.STRIPE_WEBHOOK_SECRET
if (!secret) throw new Error('baseline: STRIPE_WEBHOOK_SECRET is not set')
const toleranceSeconds = Number(process.env.STRIPE_TOLERANCE_SECONDS ?? 300)
// The gateway's default body limit, enforced the same way.
const maxBodyBytes = 1024 * 1024

const accepted = JSON.stringify({ status: 'accepted' })
const invalid = JSON.stringify({ error: 'invalid signature' })

function verified(body: Buffer, signature: string | undefined): boolean {
  if (!signature) return false
  try {
    Stripe.webhooks.constructEvent(body, signature, secret!, toleranceSeconds)
    return true
  } catch {
    return false
  }
}

function serveNode(): { close: () => void } {
  const server = createServer((req, res) => {
    const answer = (status: number, body: string) =>
      res
        .writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
        .end(body)
    if (req.method === 'GET' && req.url === '/health') return answer(200, '{"status":"ok"}')
    if (req.method !== 'POST' || req.url !== '/webhooks/stripe') return answer(404, '{"error":"not found"}')
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > maxBodyBytes) {
        answer(413, '{"error":"payload too large"}')
        req.destroy()
      } else chunks.push(chunk)
    })
    req.on('end', () => {
      const signature = req.headers['stripe-signature']
      const ok = verified(Buffer.concat(chunks, size), typeof signature === 'string' ? signature : undefined)
      answer(ok ? 200 : 401, ok ? accepted : invalid)
    })
  })
  server.listen(port, host)
  return {
    close: () => {
      server.close(() => process.exit(0))
      server.closeIdleConnections()
    },
  }
}

function serveHono(): { close: () => void } {
  const app = new Hono()
  app.get('/health', (c) => c.json({ status: 'ok' }))
  app.post('/webhooks/stripe', async (c) => {
    const body = Buffer.from(await c.req.arrayBuffer())
    return verified(body, c.req.header('stripe-signature'))
      ? c.json({ status: 'accepted' })
      : c.json({ error: 'invalid signature' }, 401)
  })
  const server = serve({ fetch: app.fetch, port, hostname: host })
  return {
    close: () => {
      server.close(() => process.exit(0))
      if ('closeIdleConnections' in server) server.closeIdleConnections()
    },
  }
}

const server = process.argv.includes('--hono') ? serveHono() : serveNode()
const stop = () => {
  setTimeout(() => process.exit(0), 5000).unref()
  server.close()
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
