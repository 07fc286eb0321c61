import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import type { Env } from '../../src/config.ts'
import { eventId } from '../../src/pipeline/events.ts'
import { hostAndPort, startProxy } from '../support/proxy.ts'
import {
  flushRedisPrefix,
  services,
  useTestDatabase,
  waitFor,
  type TestGateway,
} from '../support/services.ts'
import { paymentIntentSucceeded, stripeDelivery } from '../support/signed.ts'

const secret = 'whsec_faults_storage'

const database = useTestDatabase()

async function start(overrides: Env = {}) {
  const gateway = await database.startGateway({ STRIPE_WEBHOOK_SECRET: secret, ...overrides })
  const capture = await database.captureEvents(gateway.config)
  // The publisher connects in the background; these tests are about the other two services.
  await waitFor(() => gateway.gateway.publisher.connected)
  return { gateway, capture }
}

/** A proxy to one of the services, closed after the test. */
async function proxyTo(url: string, defaultPort: number) {
  const proxy = await startProxy(...hostAndPort(url, defaultPort))
  database.defer(() => proxy.close())
  return proxy
}

const paymentSucceeded = () =>
  paymentIntentSucceeded({ amount: 2500, currency: 'eur', customer: 'cus_storage' })

type Delivery = ReturnType<typeof stripeDelivery>

/** Posts a delivery and times the answer: an outage must make answers wrong never, slow only boundedly. */
async function post(gateway: TestGateway, delivery: Delivery) {
  const startedAt = performance.now()
  const response = await gateway.post('/webhooks/stripe', delivery.body, delivery.headers)
  const body = (await response.json()) as Record<string, unknown>
  return { status: response.status, body, ms: performance.now() - startedAt }
}

async function health(gateway: TestGateway) {
  const startedAt = performance.now()
  const response = await fetch(`${gateway.url}/health`)
  const body = (await response.json()) as Record<string, unknown>
  return { status: response.status, body, ms: performance.now() - startedAt }
}

// The test's own view of the database, never through a proxy.
const storedFor = (eventKey: string) =>
  database.sql<{ id: string; status: string; attempts: number }[]>`
    SELECT id, status, attempts FROM webhooks WHERE provider = 'stripe' AND event_key = ${eventKey}`

describe('Redis outages', () => {
  it('answers a redelivery duplicate with the first id after the Redis keys are lost, publishing nothing new', async () => {
    const { gateway, capture } = await start()
    const event = paymentSucceeded()
    const delivery = stripeDelivery(event, { secret })
    const rawId = eventId('stripe', event.id, 'raw')

    const first = await post(gateway, delivery)
    expect(first.status).toBe(200)
    expect(first.body.status).toBe('accepted')
    await capture.waitFor((messages) => messages.some((message) => message.event.id === rawId))
    // Redis holds nothing about accepted events: Postgres' unique key alone answers duplicates.
    await flushRedisPrefix(gateway.gateway, gateway.config.redisPrefix)

    const second = await post(gateway, delivery)
    expect(second).toMatchObject({ status: 200, body: { status: 'duplicate', id: first.body.id } })
    // Its mark recorded (marks linger up to a second), then several worker polls later: still one row,
    // published once, and no second copy on the exchange.
    await waitFor(async () => (await storedFor(event.id))[0]?.status === 'published')
    await sleep(400)
    expect(await storedFor(event.id)).toEqual([{ id: first.body.id, status: 'published', attempts: 1 }])
    expect(capture.messages.map((message) => message.event.id)).toEqual([
      rawId,
      eventId('stripe', event.id, 'internal:0:payment.completed'),
    ])
  })

  it('accepts a redelivery again when Postgres no longer has the event (a database restored from a backup)', async () => {
    const { gateway, capture } = await start()
    const event = paymentSucceeded()
    const delivery = stripeDelivery(event, { secret })
    const rawId = eventId('stripe', event.id, 'raw')

    const first = await post(gateway, delivery)
    expect(first.body.status).toBe('accepted')
    await capture.waitFor((messages) => messages.some((message) => message.event.id === rawId))
    // The backup predates the delivery: the row is gone, whatever any cache remembers.
    await database.sql`DELETE FROM webhooks WHERE provider = 'stripe' AND event_key = ${event.id}`

    const redelivered = await post(gateway, delivery)
    expect(redelivered).toMatchObject({ status: 200, body: { status: 'accepted' } })
    expect(redelivered.body.id).not.toBe(first.body.id)
    const [stored] = await waitFor(async () => {
      const found = await storedFor(event.id)
      return found[0]?.status === 'published' && found
    })
    expect(stored).toEqual({ id: redelivered.body.id, status: 'published', attempts: 1 })
    // Published again under the same CloudEvent id, so consumers that saw it the first time drop it.
    await capture.waitFor((messages) => messages.filter((message) => message.event.id === rawId).length === 2)
  })

  it('starts with Redis unreachable and answers accepted, then duplicate, promptly; health is degraded', async () => {
    const proxy = await proxyTo(services.redis, 6379)
    proxy.pause()
    const { gateway, capture } = await start({ REDIS_URL: proxy.url(services.redis) })

    const event = paymentSucceeded()
    const delivery = stripeDelivery(event, { secret })
    const first = await post(gateway, delivery)
    const again = await post(gateway, delivery)
    const state = await health(gateway)

    expect(first).toMatchObject({ status: 200, body: { status: 'accepted' } })
    expect(again).toMatchObject({ status: 200, body: { status: 'duplicate', id: first.body.id } })
    expect(state).toMatchObject({
      status: 200,
      body: { status: 'degraded', checks: { postgres: 'up', redis: 'down', rabbitmq: 'up' } },
    })
    // A bound on not hanging on Redis, not a performance claim.
    for (const answer of [first, again, state]) expect(answer.ms).toBeLessThan(3000)

    const rawId = eventId('stripe', event.id, 'raw')
    await capture.waitFor((messages) => messages.some((message) => message.event.id === rawId))
    // The confirm reaches the consumer's queue before the worker records it.
    const [published] = await waitFor(async () => {
      const found = await storedFor(event.id)
      return found[0]?.status === 'published' && found
    })
    expect(published).toEqual({ id: first.body.id, status: 'published', attempts: 1 })

    proxy.resume()
    await waitFor(async () => (await health(gateway)).body.status === 'ok', 15_000, 200)
  })

  it('keeps answering accepted and duplicate correctly when Redis goes away while running', async () => {
    const proxy = await proxyTo(services.redis, 6379)
    const { gateway, capture } = await start({ REDIS_URL: proxy.url(services.redis) })
    await waitFor(async () => (await health(gateway)).body.status === 'ok')

    const known = paymentSucceeded()
    const knownDelivery = stripeDelivery(known, { secret })
    const first = await post(gateway, knownDelivery)
    expect(first.body.status).toBe('accepted')

    proxy.pause()
    const fresh = paymentSucceeded()
    const freshDelivery = stripeDelivery(fresh, { secret })
    const answers = {
      knownAgain: await post(gateway, knownDelivery),
      fresh: await post(gateway, freshDelivery),
      freshAgain: await post(gateway, freshDelivery),
      health: await health(gateway),
    }
    expect(answers.knownAgain).toMatchObject({
      status: 200,
      body: { status: 'duplicate', id: first.body.id },
    })
    expect(answers.fresh).toMatchObject({ status: 200, body: { status: 'accepted' } })
    expect(answers.freshAgain).toMatchObject({
      status: 200,
      body: { status: 'duplicate', id: answers.fresh.body.id },
    })
    expect(answers.health).toMatchObject({
      status: 200,
      body: { status: 'degraded', checks: { postgres: 'up', redis: 'down', rabbitmq: 'up' } },
    })
    for (const answer of Object.values(answers)) expect(answer.ms).toBeLessThan(3000)

    const rawIds = [known, fresh].map((event) => eventId('stripe', event.id, 'raw'))
    await capture.waitFor((messages) => rawIds.every((id) => messages.some((m) => m.event.id === id)))
    await sleep(300)
    const seen = capture.messages.map((message) => message.event.id)
    expect(seen.filter((id) => rawIds.includes(id)).sort()).toEqual([...rawIds].sort())
  })
})

describe('Postgres outage', () => {
  it('answers 503 storage unavailable while Postgres is unreachable and accepts the same delivery once it is back', async () => {
    const proxy = await proxyTo(database.url, 5432)
    const { gateway, capture } = await start({ DATABASE_URL: proxy.url(database.url) })
    await waitFor(async () => (await health(gateway)).body.status === 'ok')

    const event = paymentSucceeded()
    const delivery = stripeDelivery(event, { secret })
    proxy.pause()

    const refused = await post(gateway, delivery)
    expect(refused).toMatchObject({ status: 503, body: { error: 'storage unavailable' } })
    expect(refused.ms).toBeLessThan(6000)
    const state = await health(gateway)
    expect(state).toMatchObject({
      status: 503,
      body: { status: 'degraded', checks: { postgres: 'down', redis: 'up', rabbitmq: 'up' } },
    })
    // Nothing was stored, so the provider's retry is the only copy.
    expect(await storedFor(event.id)).toEqual([])

    proxy.resume()
    // Reconnecting takes a moment, more on a machine busy with the rest of the suite (it once took over 15 s).
    await waitFor(async () => (await health(gateway)).status === 200, 30_000, 100)
    const retried = await post(gateway, delivery)
    expect(retried).toMatchObject({ status: 200, body: { status: 'accepted' } })

    const rawId = eventId('stripe', event.id, 'raw')
    // The worker's own connections come back on their own schedule: under the whole suite's load this has
    // taken over 10 s (the cause is not pinned down; npm run chaos measures 2 to 5 s from a Postgres restart).
    await capture.waitFor((messages) => messages.some((message) => message.event.id === rawId), 30_000)
    const published = await waitFor(async () => {
      const [row] = await storedFor(event.id)
      return row?.status === 'published' && row
    })
    expect(published).toEqual({ id: retried.body.id, status: 'published', attempts: 1 })
    await sleep(300)
    expect(capture.messages.filter((message) => message.event.id === rawId)).toHaveLength(1)
  }, 60_000)
})

// A stalled Postgres keeps its connections open and answers nothing (a frozen server, a partition that
// drops packets): unlike a refused connection, nothing ever errors. connect_timeout only covers new
// connections, and the pool's open ones have no query timeout.
describe('Postgres stalled', () => {
  async function stalledGateway() {
    const proxy = await proxyTo(database.url, 5432)
    const gateway = await database.startGateway({
      STRIPE_WEBHOOK_SECRET: secret,
      DATABASE_URL: proxy.url(database.url),
      DATABASE_POOL_SIZE: '3',
    })
    // Open the whole pool, so the next queries go out on connections that are already established.
    await Promise.all([1, 2, 3].map(() => gateway.gateway.store.sql`SELECT pg_sleep(0.05)`))
    proxy.stall()
    // Let the worker's next claim go out on a stalled connection.
    await sleep(200)
    return { proxy, gateway }
  }

  const within = <T>(promise: Promise<T>, ms: number) =>
    Promise.race([promise, sleep(ms).then(() => 'no answer' as const)])

  // Intake bounds every commit (STORE_TIMEOUT_MS), so a stalled database is answered 503, not a hang.
  it('answers 503 within 10 s (GitHub gives up at 10 s) when Postgres stops answering', async () => {
    const { proxy, gateway } = await stalledGateway()
    const delivery = stripeDelivery(paymentSucceeded(), { secret })
    const answer = post(gateway, delivery)
    try {
      expect(await within(answer, 10_000)).toMatchObject({
        status: 503,
        body: { error: 'storage unavailable' },
      })
    } finally {
      proxy.resume()
      await answer
      await gateway.stop()
    }
  })

  // stop() waits for the worker only so long; claimed rows come back when their lease runs out.
  it('stops within 10 s when Postgres stops answering', async () => {
    const { proxy, gateway } = await stalledGateway()
    const stopping = gateway.stop()
    try {
      expect(await within(stopping, 10_000)).toBeUndefined()
    } finally {
      proxy.resume()
      await stopping
    }
  })
})
