import { request as httpRequest } from 'node:http'
import { beforeAll, describe, expect, it } from 'vitest'
import { eventId } from '../../src/pipeline/events.ts'
import {
  startTestGateway,
  testEnv,
  useTestDatabase,
  waitFor,
  type Capture,
  type TestGateway,
} from '../support/services.ts'
import {
  githubDelivery,
  githubExample,
  stripeDelivery,
  stripeEvent,
  stripeFixture,
} from '../support/signed.ts'

const stripeSecret = 'whsec_pipeline'
const githubSecret = 'gh-pipeline'
const uniqueStripe = (type: string) => {
  const event = stripeFixture(type)
  event.id = `evt_${crypto.randomUUID().replaceAll('-', '')}`
  return event
}

/** Response bodies are the contract's JSON; tests read them loosely. */
const json = (response: Response): Promise<any> => response.json()

const db = useTestDatabase()
// One gateway for the whole file.
let gw: TestGateway
let events: Capture

beforeAll(async () => {
  gw = await db.startGateway({
    STRIPE_WEBHOOK_SECRET: `whsec_rotated_out,${stripeSecret}`,
    GITHUB_WEBHOOK_SECRET: githubSecret,
    ADMIN_TOKEN: 'admin-secret',
    MAX_BODY_BYTES: '4096',
    FAILED_VERIFY_LIMIT: '1000',
    // A slow poll: events that arrive quickly prove the hand-off, not the poll, woke the worker.
    WORKER_POLL_MS: '60000',
  })
  events = await db.captureEvents(gw.config)
  await gw.gateway.publisher.whenConnected()
})

const postStripe = (
  event: Record<string, unknown>,
  options: { secret?: string; timestamp?: number } = {},
) => {
  const { body, headers } = stripeDelivery(event, { secret: options.secret ?? stripeSecret, ...options })
  return gw.post('/webhooks/stripe', body, headers)
}
const eventsOf = (webhookId: string) => events.messages.filter((m) => m.event.webhookid === webhookId)

describe('a verified Stripe delivery', () => {
  it('is committed, answered accepted, and published once as raw and internal CloudEvents', async () => {
    const event = uniqueStripe('payment_intent.succeeded')
    const response = await postStripe(event)
    expect(response.status).toBe(200)
    const answer = await json(response)
    expect(answer).toEqual({ status: 'accepted', id: expect.stringMatching(/^[0-9a-f-]{36}$/) })

    const received = await events.waitFor(() => eventsOf(answer.id).length >= 2, 5000)
    const mine = received.filter((m) => m.event.webhookid === answer.id)
    expect(mine.map((m) => m.routingKey).sort()).toEqual([
      'payment.completed',
      'raw.stripe.payment_intent.succeeded',
    ])

    const raw = mine.find((m) => m.routingKey.startsWith('raw.'))!
    expect(raw.event).toEqual({
      specversion: '1.0',
      id: eventId('stripe', event.id, 'raw'),
      source: '/webhooks/stripe',
      type: 'raw.stripe.payment_intent.succeeded',
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      datacontenttype: 'application/json',
      data: event,
      provider: 'stripe',
      providereventid: event.id,
      webhookid: answer.id,
    })
    expect(raw.properties).toMatchObject({
      messageId: raw.event.id,
      contentType: 'application/cloudevents+json',
      deliveryMode: 2,
    })

    const internal = mine.find((m) => m.routingKey === 'payment.completed')!
    expect(internal.event).toMatchObject({
      type: 'payment.completed',
      source: '/webhooks/stripe',
      provider: 'stripe',
      providereventid: event.id,
      webhookid: answer.id,
      data: {
        payment_id: event.data.object.id,
        amount: 20,
        amount_minor: 2000,
        currency: 'USD',
        customer_id: 'cus_RkLmNoPqRsTuVw',
        metadata: { order_id: '6735' },
        provider: 'stripe',
      },
    })
    expect(internal.properties.messageId).toBe(internal.event.id)

    // The row is marked published after the broker confirms, a moment after the consumer may see the events.
    const stored = await waitFor(async () => {
      const row = await gw.gateway.store.get(answer.id)
      return row?.status === 'published' ? row : undefined
    })
    expect(stored).toMatchObject({ status: 'published', attempts: 1, provider: 'stripe', eventKey: event.id })
    expect(stored!.publishedEventIds).toEqual(
      mine.map((m) => m.event.id).sort((a, b) => (a === raw.event.id ? -1 : b === raw.event.id ? 1 : 0)),
    )
  })

  it('is stored byte for byte, with its headers', async () => {
    const event = uniqueStripe('invoice.payment_succeeded')
    // Odd spacing and non-ASCII text: nothing may be re-serialized along the way.
    const payload = JSON.stringify(event, null, 3).replace('"paid"', '"paid"  ') + '\n'
    const signed = stripeDelivery(event, { secret: stripeSecret })
    const { headers } = stripeDelivery(event, { secret: stripeSecret, payload })
    expect(signed.body).not.toBe(payload)
    const response = await gw.post('/webhooks/stripe', payload, { ...headers, 'x-custom': 'kept' })
    const { id } = await json(response)
    const stored = await gw.gateway.store.get(id)
    expect(stored!.body.equals(Buffer.from(payload))).toBe(true)
    expect(stored!.headers).toMatchObject({
      'stripe-signature': headers['stripe-signature'],
      'x-custom': 'kept',
    })
  })

  it('is answered duplicate with the first id when delivered again, and nothing new is published', async () => {
    const event = uniqueStripe('payment_intent.payment_failed')
    const first = await json(await postStripe(event))
    await events.waitFor(() => eventsOf(first.id).length >= 2)
    // A retry from Stripe carries a new timestamp and signature but the same event id.
    const again = await postStripe(event, { timestamp: Math.floor(Date.now() / 1000) - 5 })
    expect(again.status).toBe(200)
    expect(await json(again)).toEqual({ status: 'duplicate', id: first.id })

    // A later event is published after anything the duplicate could have caused.
    const marker = await json(await postStripe(uniqueStripe('payment_intent.succeeded')))
    await events.waitFor(() => eventsOf(marker.id).length >= 2)
    expect(eventsOf(first.id)).toHaveLength(2)
    expect(events.messages.filter((m) => m.event.providereventid === event.id)).toHaveLength(2)
  })

  it('answers duplicates correctly when many copies arrive at once', async () => {
    const event = uniqueStripe('payment_intent.succeeded')
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => postStripe(event).then((r) => json(r))),
    )
    const accepted = answers.filter((a) => a.status === 'accepted')
    expect(accepted).toHaveLength(1)
    expect(new Set(answers.map((a) => a.id))).toEqual(new Set([accepted[0].id]))
    const rows = await gw.gateway.store
      .sql`SELECT count(*)::int AS n FROM webhooks WHERE event_key = ${event.id}`
    expect(rows[0]!.n).toBe(1)
  })

  it('publishes only the raw event for an unmapped type', async () => {
    const event = stripeEvent('charge.refunded', { id: 'ch_1', object: 'charge' })
    const { id } = await json(await postStripe(event))
    await waitFor(async () => (await gw.gateway.store.get(id))?.status === 'published')
    expect(eventsOf(id).map((m) => m.routingKey)).toEqual(['raw.stripe.charge.refunded'])
  })
})

describe('a verified GitHub delivery', () => {
  const postGithub = async (
    name: string,
    payload: Record<string, unknown>,
    options: { form?: boolean; hookId?: string; delivery?: string } = {},
  ) => {
    const { body, headers } = await githubDelivery(name, payload, { secret: githubSecret, ...options })
    return gw.post('/webhooks/github', body, headers)
  }

  it('publishes a push as raw.github.push and git.push', async () => {
    const { id } = await json(await postGithub('push', await githubExample('push')))
    const mine = await events.waitFor(() => eventsOf(id).length >= 2).then(() => eventsOf(id))
    expect(mine.map((m) => m.routingKey).sort()).toEqual(['git.push', 'raw.github.push'])
  })

  it('publishes a pull request, form-encoded, as raw.github.pull_request.opened and pull_request.opened', async () => {
    const example = await githubExample('pull_request', 'opened')
    const response = await postGithub('pull_request', example, { form: true, hookId: '7' })
    const { id, status } = await json(response)
    expect(status).toBe('accepted')
    const mine = await events.waitFor(() => eventsOf(id).length >= 2).then(() => eventsOf(id))
    expect(mine.map((m) => m.routingKey).sort()).toEqual([
      'pull_request.opened',
      'raw.github.pull_request.opened',
    ])
    expect(mine.find((m) => m.routingKey.startsWith('raw.'))!.event.data).toEqual(example)
  })

  it('accepts ping and publishes it raw', async () => {
    const { id } = await json(await postGithub('ping', await githubExample('ping')))
    await waitFor(async () => (await gw.gateway.store.get(id))?.status === 'published')
    expect(eventsOf(id).map((m) => m.routingKey)).toEqual(['raw.github.ping'])
  })

  it('treats the same delivery to two hooks as two events, and a redelivery to one as a duplicate', async () => {
    const example = await githubExample('push')
    const delivery = crypto.randomUUID()
    const one = await json(await postGithub('push', example, { delivery, hookId: '1' }))
    const two = await json(await postGithub('push', example, { delivery, hookId: '2' }))
    const again = await json(await postGithub('push', example, { delivery, hookId: '1' }))
    expect(one.status).toBe('accepted')
    expect(two.status).toBe('accepted')
    expect(again).toEqual({ status: 'duplicate', id: one.id })
  })

  it('answers 400 to a verified delivery without X-GitHub-Event', async () => {
    const { body, headers } = await githubDelivery('push', await githubExample('push'), {
      secret: githubSecret,
    })
    const { ['x-github-event']: _, ...rest } = headers
    const response = await gw.post('/webhooks/github', body, rest)
    expect(response.status).toBe(400)
    expect((await json(response)).error).toMatch(/event type/)
  })
})

describe('a delivery through a web Request (app.request, runtimes other than Node)', () => {
  it('is read, verified, stored and limited the same way as through the Node server', async () => {
    const event = uniqueStripe('payment_intent.succeeded')
    const { body, headers } = stripeDelivery(event, { secret: stripeSecret })
    // A streamed body, as a fetch-style runtime hands it over.
    const stream = new Blob([body]).stream()
    const response = await gw.gateway.app.request('/webhooks/stripe', {
      method: 'POST',
      body: stream,
      headers,
      duplex: 'half',
    } as RequestInit)
    const answer = await json(response)
    expect(answer.status).toBe('accepted')
    const stored = await gw.gateway.store.get(answer.id)
    expect(stored!.body.equals(Buffer.from(body))).toBe(true)
    expect(stored!.path).toBe('/webhooks/stripe')

    const big = stripeDelivery(
      { ...uniqueStripe('payment_intent.succeeded'), padding: 'x'.repeat(5000) },
      { secret: stripeSecret },
    )
    const { ['content-length']: _, ...noLength } = big.headers
    const tooLarge = await gw.gateway.app.request('/webhooks/stripe', {
      method: 'POST',
      body: new Blob([big.body]).stream(),
      headers: noLength,
      duplex: 'half',
    } as RequestInit)
    expect(tooLarge.status).toBe(413)
  })
})

describe('refused deliveries', () => {
  it('answers 401 with the same generic body for a forged, stale or unsigned delivery, and stores nothing', async () => {
    const event = uniqueStripe('payment_intent.succeeded')
    const forged = await postStripe(event, { secret: 'whsec_attacker' })
    const stale = await postStripe(event, { timestamp: Math.floor(Date.now() / 1000) - 3600 })
    const future = await postStripe(event, { timestamp: Math.floor(Date.now() / 1000) + 3600 })
    const unsigned = await gw.post('/webhooks/stripe', JSON.stringify(event), {
      'content-type': 'application/json',
    })
    for (const response of [forged, stale, future, unsigned]) {
      expect(response.status).toBe(401)
      expect(await json(response)).toEqual({ error: 'invalid signature' })
    }
    const rows = await gw.gateway.store
      .sql`SELECT count(*)::int AS n FROM webhooks WHERE event_key = ${event.id}`
    expect(rows[0]!.n).toBe(0)
  })

  it('accepts a delivery signed with any listed secret (rotation)', async () => {
    const response = await postStripe(uniqueStripe('payment_intent.succeeded'), {
      secret: 'whsec_rotated_out',
    })
    expect((await json(response)).status).toBe('accepted')
  })

  it('answers 400 to a verified body that is not JSON', async () => {
    const payload = '{"id": "evt_broken", '
    const { headers } = stripeDelivery({}, { secret: stripeSecret, payload })
    const response = await gw.post('/webhooks/stripe', payload, headers)
    expect(response.status).toBe(400)
    expect((await json(response)).error).toMatch(/^stripe: body is not valid JSON/)
  })

  it('answers 400 to an event id Postgres could not store, and accepts the deliveries committed with it', async () => {
    const withNul = { ...uniqueStripe('payment_intent.succeeded'), id: 'evt_nul\u0000byte' }
    const tooLong = { ...uniqueStripe('payment_intent.succeeded'), id: `evt_${'x'.repeat(1100)}` }
    const good = uniqueStripe('payment_intent.succeeded')
    // Sent together so they would share a group commit: the bad ones must not take the good one down.
    const [nul, long, ok] = await Promise.all([postStripe(withNul), postStripe(tooLong), postStripe(good)])
    expect(nul.status).toBe(400)
    expect((await json(nul)).error).toBe('stripe: event id contains a NUL character')
    expect(long.status).toBe(400)
    expect((await json(long)).error).toBe('stripe: event id is longer than 1024 bytes')
    expect(ok.status).toBe(200)
    expect((await json(ok)).status).toBe('accepted')
  })

  it('answers 404 to an unknown provider and to one with no secret configured', async () => {
    expect((await gw.post('/webhooks/acme', '{}')).status).toBe(404)
    expect(
      (await gw.post('/webhooks/twilio', 'a=b', { 'content-type': 'application/x-www-form-urlencoded' }))
        .status,
    ).toBe(404)
    expect((await gw.post('/webhooks/__proto__', '{}')).status).toBe(404)
  })

  it('answers 413 to a body over the limit, declared or streamed without a length', async () => {
    const event = { ...uniqueStripe('payment_intent.succeeded'), padding: 'x'.repeat(5000) }
    const declared = await postStripe(event)
    expect(declared.status).toBe(413)

    const { body, headers } = stripeDelivery(event, { secret: stripeSecret })
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        `${gw.url}/webhooks/stripe`,
        { method: 'POST', headers: { ...headers, 'transfer-encoding': 'chunked' } },
        (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        },
      )
      req.on('error', reject)
      for (let i = 0; i < body.length; i += 1000) req.write(body.slice(i, i + 1000))
      req.end()
    })
    expect(chunked).toBe(413)
  })
})

describe('the worker', () => {
  it('picks up rows stored by another gateway process through LISTEN/NOTIFY, not the poll', async () => {
    // Not db.startGateway: that would delete the exchange this file's gateway goes on publishing to.
    const api = await startTestGateway({ ...testEnv(db.url), ...apiOnly() })
    try {
      const event = uniqueStripe('payment_intent.succeeded')
      const { body, headers } = stripeDelivery(event, { secret: stripeSecret })
      const { id } = await json(await api.post('/webhooks/stripe', body, headers))
      // This file's gateway polls once a minute; only the notification can wake it this fast.
      await events.waitFor(() => eventsOf(id).length >= 2, 5000)
    } finally {
      await api.stop()
    }
  })
})

function apiOnly() {
  return {
    ROLE: 'api' as const,
    AMQP_EXCHANGE: gw.config.exchange,
    STRIPE_WEBHOOK_SECRET: stripeSecret,
  }
}

describe('/health and /metrics', () => {
  it('reports ok with every check up', async () => {
    const response = await fetch(`${gw.url}/health`)
    expect(response.status).toBe(200)
    expect(await json(response)).toEqual({
      status: 'ok',
      checks: { postgres: 'up', redis: 'up', rabbitmq: 'up' },
    })
  })

  it('serves Prometheus text', async () => {
    const response = await fetch(`${gw.url}/metrics`)
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/)
    const text = await response.text()
    expect(text).toMatch(/^webhooks_received_total\{provider="stripe",outcome="accepted"\} \d+$/m)
    for (const status of ['pending', 'retrying', 'dead'])
      expect(text).toMatch(new RegExp(`^webhooks_unpublished\\{status="${status}"\\} \\d+$`, 'm'))
  })
})

describe('/admin', () => {
  const admin = (path: string, init: RequestInit = {}) =>
    fetch(`${gw.url}/admin${path}`, {
      ...init,
      headers: { authorization: 'Bearer admin-secret', ...init.headers },
    })

  it('refuses a wrong token', async () => {
    const response = await fetch(`${gw.url}/admin/webhooks`, { headers: { authorization: 'Bearer nope' } })
    expect(response.status).toBe(401)
  })

  it('lists, shows the raw delivery, and replays with the same event ids', async () => {
    const event = uniqueStripe('payment_intent.succeeded')
    const { id } = await json(await postStripe(event))
    await events.waitFor(() => eventsOf(id).length >= 2)
    const firstIds = eventsOf(id)
      .map((m) => m.event.id)
      .sort()

    // Marked published within a fraction of a second of the broker's confirms (marks are recorded together).
    await waitFor(async () => {
      const list = await json(await admin('/webhooks?provider=stripe&status=published&limit=500'))
      return list.webhooks.some((w: { id: string }) => w.id === id)
    })

    const detail = await json(await admin(`/webhooks/${id}`))
    expect(detail).toMatchObject({
      id,
      provider: 'stripe',
      status: 'published',
      attempts: 1,
      event_key: event.id,
    })
    expect(JSON.parse(detail.body)).toEqual(event)
    expect(detail.headers['stripe-signature']).toMatch(/^t=\d+,v1=/)
    expect(detail.published_event_ids.sort()).toEqual(firstIds)

    const replay = await admin(`/webhooks/${id}/replay`, { method: 'POST' })
    expect(replay.status).toBe(202)
    await events.waitFor(() => eventsOf(id).length >= 4)
    expect(
      eventsOf(id)
        .map((m) => m.event.id)
        .sort(),
    ).toEqual([...firstIds, ...firstIds].sort())
  })

  it('replays by filter and answers 404 for an unknown id', async () => {
    expect((await admin('/webhooks/00000000-0000-4000-8000-000000000000')).status).toBe(404)
    expect(
      (await admin('/webhooks/00000000-0000-4000-8000-000000000000/replay', { method: 'POST' })).status,
    ).toBe(404)
    const response = await admin('/replay', {
      method: 'POST',
      body: JSON.stringify({ provider: 'github', type: 'ping' }),
    })
    expect(response.status).toBe(202)
    expect((await json(response)).replayed).toBeGreaterThanOrEqual(1)
    expect(
      (await admin('/replay', { method: 'POST', body: JSON.stringify({ status: 'bogus' }) })).status,
    ).toBe(400)
  })
})
