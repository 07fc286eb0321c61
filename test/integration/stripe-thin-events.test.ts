import Stripe from 'stripe'
import { beforeAll, describe, expect, it } from 'vitest'
import { eventId } from '../../src/pipeline/events.ts'
import { usage } from '../../src/send/command-line.ts'
import { send } from '../../src/send/send.ts'
import { startReceiver, verifyStandardWebhook, type Receiver } from '../support/receiver.ts'
import {
  adminApi,
  useTestDatabase,
  waitFor,
  type Capture,
  type TestGateway,
  sink,
} from '../support/services.ts'

const stripeSecret = 'whsec_thin_events'
const adminToken = 'admin-thin-events'
const meterError = 'v1.billing.meter.error_report_triggered'

const db = useTestDatabase()
let gw: TestGateway
let events: Capture

beforeAll(async () => {
  gw = await db.startGateway({
    STRIPE_WEBHOOK_SECRET: stripeSecret,
    ADMIN_TOKEN: adminToken,
    ALLOW_HTTP_DESTINATIONS: 'true',
    DESTINATION_ALLOWED_HOSTS: '127.0.0.1',
    DELIVERY_POLL_MS: '50',
  })
  events = await db.captureEvents(gw.config)
  await gw.gateway.publisher.whenConnected()
})

/** A thin event as an event destination sends it, with a fresh id: no data, `created` in ISO 8601. */
function thinEvent(fields: Record<string, unknown> = {}): Record<string, unknown> {
  const meter = `mtr_test_${crypto.randomUUID().replaceAll('-', '')}`
  return {
    id: `evt_test_${crypto.randomUUID().replaceAll('-', '')}`,
    object: 'v2.core.event',
    type: meterError,
    livemode: false,
    created: new Date().toISOString(),
    context: null,
    reason: null,
    related_object: { id: meter, type: 'billing.meter', url: `/v1/billing/meters/${meter}` },
    ...fields,
  }
}

/** Signs `body` with Stripe's SDK, as Stripe signs every delivery, and posts it to /webhooks/stripe. */
async function postSigned(
  body: string,
  options: { timestamp?: number; secret?: string } = {},
): Promise<{ status: number; body: any }> {
  const signature = Stripe.webhooks.generateTestHeaderString({
    payload: body,
    secret: options.secret ?? stripeSecret,
    ...(options.timestamp === undefined ? {} : { timestamp: options.timestamp }),
  })
  const response = await gw.post('/webhooks/stripe', body, {
    'content-type': 'application/json; charset=utf-8',
    'stripe-signature': signature,
  })
  return { status: response.status, body: await response.json() }
}

const admin = adminApi(() => gw, adminToken)

/** A receiver on loopback and a destination for it (both gone after the test); returns them with the secret. */
async function destinationFor(events: string[]): Promise<{ endpoint: Receiver; secret: string }> {
  const endpoint = await startReceiver()
  db.defer(() => endpoint.close())
  const created = await admin('POST', '/destinations', { url: endpoint.url, events })
  expect(created.status, JSON.stringify(created.body)).toBe(201)
  db.defer(() => admin('DELETE', `/destinations/${created.body.id}`))
  return { endpoint, secret: created.body.secret }
}

/** The webhook once marked published: its published event ids are everything that came out for it. */
const published = (webhookId: string) =>
  waitFor(async () => {
    const row = await gw.gateway.store.get(webhookId)
    return row?.status === 'published' ? row : undefined
  })

describe('a Stripe thin event', () => {
  it('is accepted, published as raw.stripe.<type> with the notification as data, and delivered to a destination', async () => {
    // `raw.stripe.*` matches one word only: thin types have several.
    const { endpoint, secret } = await destinationFor(['raw.stripe.v1.#'])
    const event = thinEvent()
    // Pretty-printed with a trailing newline: the data must be the bytes Stripe sent, not a re-serialization.
    const body = `${JSON.stringify(event, null, 2)}\n`

    const answer = await postSigned(body)
    expect(answer).toEqual({ status: 200, body: { status: 'accepted', id: expect.any(String) } })
    const webhookId = answer.body.id

    const routingKey = `raw.stripe.${meterError}`
    const [raw] = (
      await events.waitFor((messages) => messages.some((m) => m.event.webhookid === webhookId))
    ).filter((m) => m.event.webhookid === webhookId)
    expect(raw!.routingKey).toBe(routingKey)
    expect(raw!.event).toEqual({
      specversion: '1.0',
      id: eventId('stripe', event.id as string, 'raw'),
      source: '/webhooks/stripe',
      type: routingKey,
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      datacontenttype: 'application/json',
      data: event,
      provider: 'stripe',
      providereventid: event.id,
      webhookid: webhookId,
    })
    expect(raw!.content).toContain(`"data":${body.trim()}`)

    // No internal event: the raw event is all that was published for it.
    expect((await published(webhookId)).publishedEventIds).toEqual([raw!.event.id])

    const [request] = await endpoint.waitForRequests(1)
    const delivered = verifyStandardWebhook(request!, secret)
    expect(delivered).toEqual(raw!.event)
    expect(request!.headers['webhook-id']).toBe(raw!.event.id)
    expect(request!.body).toBe(raw!.content)
  })

  it('is answered duplicate with the first id when Stripe delivers it again, and nothing new is published', async () => {
    const body = JSON.stringify(thinEvent())
    const first = await postSigned(body)
    expect(first.body.status).toBe('accepted')
    await published(first.body.id)

    // A retry carries a new timestamp and signature; the event id is the key.
    const again = await postSigned(body, { timestamp: Math.floor(Date.now() / 1000) - 5 })
    expect(again).toEqual({ status: 200, body: { status: 'duplicate', id: first.body.id } })

    // A later event is published after anything the duplicate could have caused.
    const marker = await postSigned(JSON.stringify(thinEvent()))
    await events.waitFor((messages) => messages.some((m) => m.event.webhookid === marker.body.id))
    expect(events.messages.filter((m) => m.event.webhookid === first.body.id)).toHaveLength(1)
  })

  it('maps to no internal event even when its type is a snapshot type the catalog maps', async () => {
    const answer = await postSigned(JSON.stringify(thinEvent({ type: 'payment_intent.succeeded' })))
    expect(answer.body.status).toBe('accepted')
    const row = await published(answer.body.id)
    expect(row.publishedEventIds).toHaveLength(1)
    const mine = events.messages.filter((m) => m.event.webhookid === answer.body.id)
    expect(mine.map((m) => m.routingKey)).toEqual(['raw.stripe.payment_intent.succeeded'])
  })

  it('is answered 400 with the reason when it has no id', async () => {
    const { id: _, ...event } = thinEvent()
    expect(await postSigned(JSON.stringify(event))).toEqual({
      status: 400,
      body: { error: 'stripe: thin event has no id' },
    })
  })

  it('is answered 401 when signed with another secret', async () => {
    const answer = await postSigned(JSON.stringify(thinEvent()), { secret: 'whsec_someone_else' })
    expect(answer).toEqual({ status: 401, body: { error: 'invalid signature' } })
  })
})

describe('npm run send -- stripe <thin event>', () => {
  it('offers the thin events in its usage', () => {
    expect(usage).toContain(meterError)
    expect(usage).toContain('v2.core.event_destination.ping')
  })

  it.each([meterError, 'v2.core.event_destination.ping'])(
    'send({ provider: stripe, event: %s }) is accepted and only its raw event comes out',
    async (event) => {
      const stdout = sink()
      const stderr = sink()
      const result = await send({
        provider: 'stripe',
        event,
        env: {
          STRIPE_WEBHOOK_SECRET: stripeSecret,
          GATEWAY_URL: gw.url,
          AMQP_URL: gw.config.amqpUrl,
          AMQP_EXCHANGE: gw.config.exchange,
        },
        stdout: stdout.stream,
        stderr: stderr.stream,
      })

      expect(result.exitCode, stdout.text() + stderr.text()).toBe(0)
      const [delivery] = result.deliveries
      expect(delivery!.providerId).toMatch(/^evt_test_/)
      expect(delivery!.expected).toEqual([`raw.stripe.${event}`])
      expect(delivery!.events.map((seen) => seen.routingKey)).toEqual([`raw.stripe.${event}`])
      const data = (delivery!.events[0]!.event as { data: Record<string, any> }).data
      expect(data).toMatchObject({
        id: delivery!.providerId,
        object: 'v2.core.event',
        type: event,
        livemode: false,
        context: null,
        created: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        related_object: { id: expect.any(String), type: expect.any(String), url: expect.any(String) },
      })
      expect(data.related_object.url).toContain(data.related_object.id)
      expect(data).not.toHaveProperty('data')
    },
  )
})
