import { serve } from '@hono/node-server'
import { verify } from '@octokit/webhooks-methods'
import { Hono, type Context } from 'hono'
import postgres from 'postgres'
import Stripe from 'stripe'
import twilio from 'twilio'
import { onShutdown } from './shutdown.ts'

/**
 * (c) The receiver a user writes in fifteen lines: Hono, the provider's own signature check, then one
 * INSERT ... ON CONFLICT DO NOTHING of the event id, the headers (jsonb) and the body (bytea) per request
 * on a postgres.js pool of 10, then 200. Env: PORT, HOST, DATABASE_URL, GITHUB_WEBHOOK_SECRET,
 * STRIPE_WEBHOOK_SECRET, TWILIO_AUTH_TOKEN.
 */

const env = (name: string): string => {
  const value = process.env[name]
  if (!value) throw new Error(`handwritten: ${name} is not set`)
  return value
}
const githubSecret = env('GITHUB_WEBHOOK_SECRET')
const stripeSecret = env('STRIPE_WEBHOOK_SECRET')
const twilioToken = env('TWILIO_AUTH_TOKEN')

const sql = postgres(env('DATABASE_URL'), { max: 10, onnotice: () => {} })
await sql`
  CREATE TABLE IF NOT EXISTS deliveries (
    event_id    text PRIMARY KEY,
    headers     jsonb NOT NULL,
    body        bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
  )`

async function store(c: Context, eventId: string, body: Buffer): Promise<Response> {
  await sql`
    INSERT INTO deliveries (event_id, headers, body) VALUES (${eventId}, ${sql.json(c.req.header())}, ${body})
    ON CONFLICT DO NOTHING`
  return c.json({ status: 'accepted' })
}

const rejected = (c: Context) => c.json({ error: 'invalid signature' }, 401)

const app = new Hono()
app.get('/health', (c) => c.json({ status: 'ok' }))

app.post('/webhooks/github', async (c) => {
  const body = Buffer.from(await c.req.arrayBuffer())
  const delivery = c.req.header('x-github-delivery')
  if (!(await verify(githubSecret, body.toString('utf8'), c.req.header('x-hub-signature-256') ?? '')))
    return rejected(c)
  return delivery ? store(c, delivery, body) : c.json({ error: 'no delivery id' }, 400)
})

app.post('/webhooks/stripe', async (c) => {
  const body = Buffer.from(await c.req.arrayBuffer())
  let event: Stripe.Event
  try {
    event = Stripe.webhooks.constructEvent(body, c.req.header('stripe-signature') ?? '', stripeSecret)
  } catch {
    return rejected(c)
  }
  return store(c, event.id, body)
})

app.post('/webhooks/twilio', async (c) => {
  const body = Buffer.from(await c.req.arrayBuffer())
  const params = Object.fromEntries(new URLSearchParams(body.toString('utf8')))
  if (!twilio.validateRequest(twilioToken, c.req.header('x-twilio-signature') ?? '', c.req.url, params))
    return rejected(c)
  return store(c, `${params.MessageSid}:${params.MessageStatus}`, body)
})

const server = serve({
  fetch: app.fetch,
  port: Number(process.env.PORT),
  hostname: process.env.HOST ?? '127.0.0.1',
})
onShutdown(server, () => sql.end({ timeout: 2 }))
