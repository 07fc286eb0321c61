import { randomUUID } from 'node:crypto'
import { beforeAll, describe, expect, it } from 'vitest'
import { providers } from '../../providers/index.ts'
import { eventId } from '../../src/pipeline/events.ts'
import { useTestDatabase, waitFor, type Capture, type TestGateway } from '../support/services.ts'
import { stripeDelivery, stripeFixture } from '../support/signed.ts'

const secret = 'whsec_admin_events'
const adminToken = 'admin-events-token'

/** Response bodies are the contract's JSON; tests read them loosely. */
const json = (response: Response): Promise<any> => response.json()

const db = useTestDatabase()
let gw: TestGateway
let events: Capture

beforeAll(async () => {
  gw = await db.startGateway({ STRIPE_WEBHOOK_SECRET: secret, ADMIN_TOKEN: adminToken })
  events = await db.captureEvents(gw.config)
  await gw.gateway.publisher.whenConnected()
})

const uniqueStripe = (type: string) => {
  const event = stripeFixture(type)
  event.id = `evt_${randomUUID().replaceAll('-', '')}`
  return event
}

async function postStripe(gateway: TestGateway, event: Record<string, unknown>, payload?: string) {
  const { body, headers } = stripeDelivery(event, { secret, ...(payload ? { payload } : {}) })
  const answer = await json(await gateway.post('/webhooks/stripe', body, headers))
  expect(answer.status).toBe('accepted')
  return answer.id as string
}

const detailOf = (gateway: TestGateway, id: string) =>
  fetch(`${gateway.url}/admin/webhooks/${id}`, { headers: { authorization: `Bearer ${adminToken}` } })

describe('GET /admin/webhooks/:id', () => {
  it('lists the webhook’s CloudEvents, with the ids and bodies they were published under', async () => {
    const event = uniqueStripe('payment_intent.succeeded')
    const id = await postStripe(gw, event)

    const detail = await waitFor(async () => {
      const body = await json(await detailOf(gw, id))
      return body.status === 'published' && body
    })

    expect(detail.events.map((entry: any) => entry.routing_key)).toEqual([
      'raw.stripe.payment_intent.succeeded',
      'payment.completed',
    ])
    expect(detail.events.map((entry: any) => entry.cloudevent.id).sort()).toEqual(
      [...detail.published_event_ids].sort(),
    )
    expect(detail.events[0].cloudevent).toEqual({
      specversion: '1.0',
      id: eventId('stripe', event.id, 'raw'),
      source: '/webhooks/stripe',
      type: 'raw.stripe.payment_intent.succeeded',
      time: detail.received_at,
      datacontenttype: 'application/json',
      data: event,
      provider: 'stripe',
      providereventid: event.id,
      webhookid: id,
    })
    expect(detail).not.toHaveProperty('events_error')
    const published = await events.waitFor((messages) =>
      messages.filter((message) => message.event.webhookid === id).length >= 2 ? true : false,
    )
    const byId = (a: { id: string }, b: { id: string }) => a.id.localeCompare(b.id)
    expect(detail.events.map((entry: any) => entry.cloudevent).sort(byId)).toEqual(
      published
        .filter((message) => message.event.webhookid === id)
        .map((message) => message.event)
        .sort(byId),
    )
  })

  it('keeps integers beyond 2^53 in a raw event’s data exactly as received', async () => {
    const event = uniqueStripe('charge.refunded')
    const payload = JSON.stringify(event).replace(/\}$/, ',"big_number":12345678901234567891}')
    const id = await postStripe(gw, event, payload)

    const response = await detailOf(gw, id)

    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toMatch(/^application\/json/)
    expect(await response.text()).toContain('"big_number":12345678901234567891}')
  })

  it('answers events [] and events_error when the provider’s handler fails on the webhook', async () => {
    const failing = {
      ...providers,
      stripe: {
        ...providers.stripe,
        handlers: {
          'payment_intent.succeeded': () => {
            throw new Error('no amount in this payment intent')
          },
        },
      },
    }
    // Intake and admin only: the file's gateway, on the same database, publishes with the real handlers.
    const broken = await db.startGateway(
      { STRIPE_WEBHOOK_SECRET: secret, ADMIN_TOKEN: adminToken, ROLE: 'api' },
      { providers: failing },
    )
    const id = await postStripe(broken, uniqueStripe('payment_intent.succeeded'))

    const detail = await json(await detailOf(broken, id))

    expect(detail).toMatchObject({ id, provider: 'stripe', events: [] })
    expect(detail.events_error).toBe('the handler fails on this webhook: no amount in this payment intent')
  })

  it('answers events [] and events_error for a webhook of a provider the gateway no longer has', async () => {
    const id = randomUUID()
    // Stored by an earlier version with a provider since removed; dead, so no worker claims it.
    await db.sql`
      INSERT INTO webhooks (id, provider, event_key, event_type, method, path, public_url, headers, body,
        received_at, status)
      VALUES (${id}, 'retired', ${`key_${id}`}, 'thing.happened', 'POST', '/webhooks/retired',
        'http://127.0.0.1/webhooks/retired', ${db.sql.json({})}, ${Buffer.from('{}')}, now(), 'dead')`

    const detail = await json(await detailOf(gw, id))

    expect(detail).toMatchObject({ id, provider: 'retired', status: 'dead', events: [] })
    expect(detail.events_error).toBe('no provider "retired" is configured to map this webhook')
  })
})
