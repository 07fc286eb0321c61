import { randomUUID } from 'node:crypto'
import { serve } from '@hono/node-server'
import amqp from 'amqplib'
import { Hono } from 'hono'
import postgres from 'postgres'
import { Webhook } from 'standardwebhooks'
import Stripe from 'stripe'
import { Agent, request } from 'undici'
import { onShutdown } from './shutdown.ts'

/**
 * The steady bench's reference: the same I/O per webhook as the gateway's whole way, written by hand with
 * nothing else. Per Stripe delivery: the SDK's signature check, one INSERT ... ON CONFLICT DO NOTHING
 * (committed, synchronous_commit as the server has it) before the 200, then at once the two CloudEvents
 * CONTRACT.md asks for published persistent with publisher confirms to a topic exchange (the raw event,
 * which nothing binds and so lands in the alternate exchange's bounded queue, and `payment.completed`),
 * and the internal event POSTed to one destination, signed with `standardwebhooks`, on a keep-alive
 * connection.
 *
 * No retries, no record of what was published or sent, no claims, leases, metrics or logs: what a webhook
 * costs on this machine before any of the work that makes it reliable. A floor, not a product.
 * Env: PORT, HOST, DATABASE_URL, STRIPE_WEBHOOK_SECRET, AMQP_URL, AMQP_EXCHANGE, DESTINATION_URL,
 * DESTINATION_SECRET.
 */

const env = (name: string): string => {
  const value = process.env[name]
  if (!value) throw new Error(`handwritten-pipeline: ${name} is not set`)
  return value
}
const stripeSecret = env('STRIPE_WEBHOOK_SECRET')
const exchange = env('AMQP_EXCHANGE')
const destination = new URL(env('DESTINATION_URL'))
const signer = new Webhook(env('DESTINATION_SECRET'))

const sql = postgres(env('DATABASE_URL'), { max: 10, onnotice: () => {} })
await sql`
  CREATE TABLE IF NOT EXISTS received (
    event_id    text PRIMARY KEY,
    headers     jsonb NOT NULL,
    body        bytea NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
  )`

const connection = await amqp.connect(env('AMQP_URL'))
const channel = await connection.createConfirmChannel()
const unrouted = `${exchange}.unrouted`
await channel.assertExchange(unrouted, 'fanout', { durable: true })
await channel.assertQueue(unrouted, {
  durable: true,
  arguments: { 'x-max-length': 100_000, 'x-overflow': 'drop-head' },
})
await channel.bindQueue(unrouted, unrouted, '')
await channel.assertExchange(exchange, 'topic', { durable: true, alternateExchange: unrouted })

const agent = new Agent({ connections: 10, keepAliveTimeout: 60_000 })

function publish(routingKey: string, body: Buffer): Promise<void> {
  return new Promise((resolve, reject) =>
    channel.publish(
      exchange,
      routingKey,
      body,
      { persistent: true, contentType: 'application/cloudevents+json' },
      (error) => (error ? reject(error) : resolve()),
    ),
  )
}

async function send(id: string, body: string): Promise<void> {
  const at = new Date()
  const response = await request(destination, {
    method: 'POST',
    dispatcher: agent,
    body,
    headers: {
      'content-type': 'application/json',
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
      'webhook-signature': signer.sign(id, at, body),
    },
  })
  await response.body.dump()
  if (response.statusCode >= 300) throw new Error(`destination answered ${response.statusCode}`)
}

const cloudEvent = (id: string, type: string, received: Date, data: unknown) =>
  JSON.stringify({
    specversion: '1.0',
    id,
    source: '/webhooks/stripe',
    type,
    time: received.toISOString(),
    datacontenttype: 'application/json',
    data,
  })

function forward(event: Stripe.Event, received: Date): void {
  const intent = event.data.object as Stripe.PaymentIntent
  const raw = cloudEvent(randomUUID(), `raw.stripe.${event.type}`, received, event)
  const id = randomUUID()
  const body = cloudEvent(id, 'payment.completed', received, {
    paymentId: intent.id,
    amount: intent.amount,
    currency: intent.currency,
  })
  Promise.all([
    publish(`raw.stripe.${event.type}`, Buffer.from(raw)),
    publish('payment.completed', Buffer.from(body)),
    send(id, body),
  ]).catch((error: unknown) => console.error(`handwritten-pipeline: ${String(error)}`))
}

const app = new Hono()
app.get('/health', (c) => c.json({ status: 'ok' }))

app.post('/webhooks/stripe', async (c) => {
  const received = new Date()
  const body = Buffer.from(await c.req.arrayBuffer())
  let event: Stripe.Event
  try {
    event = Stripe.webhooks.constructEvent(body, c.req.header('stripe-signature') ?? '', stripeSecret)
  } catch {
    return c.json({ error: 'invalid signature' }, 401)
  }
  const inserted = await sql`
    INSERT INTO received (event_id, headers, body) VALUES (${event.id}, ${sql.json(c.req.header())}, ${body})
    ON CONFLICT DO NOTHING RETURNING 1`
  if (inserted.length === 0) return c.json({ status: 'duplicate' })
  forward(event, received)
  return c.json({ status: 'accepted' })
})

const server = serve({
  fetch: app.fetch,
  port: Number(process.env.PORT),
  hostname: process.env.HOST ?? '127.0.0.1',
})
onShutdown(server, async () => {
  await connection.close().catch(() => {})
  await agent.close()
  await sql.end({ timeout: 2 })
})
