import { setTimeout as sleep } from 'node:timers/promises'
import type { GetMessage } from 'amqplib'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { eventId } from '../../src/pipeline/events.ts'
import { startGatewayProcess } from '../support/gateway-process.ts'
import { hostAndPort, startProxy } from '../support/proxy.ts'
import {
  deleteTopology,
  postStripe,
  services,
  testEnv,
  useTestDatabase,
  waitFor,
  withChannel,
  type StripeAnswer,
  type TestGateway,
} from '../support/services.ts'
import { paymentIntentSucceeded, stripeDelivery } from '../support/signed.ts'

const secret = 'whsec_faults_broker'

// Each test stops its gateways before the next starts: they share the database, and a leftover worker
// would claim the next test's webhooks.
const database = useTestDatabase()

const paymentSucceeded = (n: number) => paymentIntentSucceeded({ amount: 1000 + n, customer: 'cus_faults' })

/** The ids the gateway must publish for one payment_intent.succeeded: the raw event and payment.completed. */
const expectedIds = (event: { id: string }) => [
  eventId('stripe', event.id, 'raw'),
  eventId('stripe', event.id, 'internal:0:payment.completed'),
]

async function health(gateway: TestGateway) {
  const response = await fetch(`${gateway.url}/health`)
  return { status: response.status, body: (await response.json()) as Record<string, unknown> }
}

async function rows(gateway: TestGateway, ids: readonly string[]) {
  return gateway.gateway.store.sql<{ id: string; status: string; attempts: number; event_key: string }[]>`
    SELECT id, status, attempts, event_key FROM webhooks WHERE id = ANY(${ids as string[]}::uuid[])`
}

/** A gateway whose RabbitMQ connection goes through a proxy the test controls. */
async function gatewayBehindBrokerProxy(options: { paused: boolean }) {
  const proxy = await startProxy(...hostAndPort(services.amqp, 5672))
  database.defer(() => proxy.close())
  if (options.paused) proxy.pause()
  const gateway = await database.startGateway({
    STRIPE_WEBHOOK_SECRET: secret,
    AMQP_URL: proxy.url(services.amqp),
  })
  // These tests are about the broker: Redis must be up before health is asserted.
  await waitFor(() => gateway.gateway.redis?.status === 'ready')
  // The test's own consumer talks to RabbitMQ directly: only the gateway suffers the outage.
  const direct = { ...gateway.config, amqpUrl: services.amqp }
  return { proxy, gateway, direct }
}

const exchangeExists = (name: string) =>
  withChannel((channel) => channel.checkExchange(name)).then(
    () => true,
    () => false,
  )

function duplicatesById(ids: readonly string[]): number {
  return ids.length - new Set(ids).size
}

describe('RabbitMQ outages', () => {
  it('publishes every webhook at least once when the AMQP connection is cut mid-stream, spending no attempt', async () => {
    const { proxy, gateway, direct } = await gatewayBehindBrokerProxy({ paused: false })
    const capture = await database.captureEvents(direct)
    await waitFor(() => gateway.gateway.publisher.connected)

    // Cut the connection right after the gateway sends something (a publish), up to three times in the
    // stream: the broker may have routed the message whose confirm never came back.
    let drops = 0
    let cutsAfterSend = 0
    let streaming = true
    const cutting = (async () => {
      while (streaming && cutsAfterSend < 3) {
        await waitFor(() => gateway.gateway.publisher.connected, 15_000)
        if (!(await proxy.dropWhenClientSends(500))) continue
        cutsAfterSend++
        drops++
      }
    })()

    const events = Array.from({ length: 50 }, (_, n) => paymentSucceeded(n))
    const answers: Promise<StripeAnswer>[] = []
    for (const [index, event] of events.entries()) {
      answers.push(postStripe(gateway, event, secret))
      // And one plain blip, wherever the publisher happens to be.
      if (index === 25 && proxy.open > 0) {
        proxy.dropConnections()
        drops++
      }
      await sleep(15)
    }
    const results = await Promise.all(answers)
    expect(results.map((result) => result.status)).toEqual(events.map(() => 200))
    expect(results.every((result) => result.body.status === 'accepted')).toBe(true)

    const webhookIds = results.map((result) => result.body.id!)
    const expected = new Set(events.flatMap(expectedIds))
    await capture.waitFor(
      (messages) => new Set(messages.map((message) => message.event.id)).size >= expected.size,
      30_000,
    )
    streaming = false
    await cutting

    const published = await waitFor(async () => {
      const found = await rows(gateway, webhookIds)
      return found.length === 50 && found.every((row) => row.status === 'published') && found
    }, 20_000)
    expect(cutsAfterSend).toBeGreaterThanOrEqual(1)
    // Every cut was followed by a reconnect through the proxy.
    expect(proxy.accepted).toBeGreaterThanOrEqual(drops + 1)
    expect(published.filter((row) => row.status === 'dead')).toEqual([])
    expect(published.map((row) => row.attempts)).toEqual(published.map(() => 1))

    const seen = capture.messages.map((message) => message.event.id)
    expect(new Set(seen)).toEqual(expected)
    const duplicates = duplicatesById(seen)
    console.info(
      `[faults-broker] ${drops} connection cut(s), ${proxy.accepted} AMQP connections, ` +
        `${seen.length} messages for ${expected.size} distinct ids: ${duplicates} duplicate(s) by id (at-least-once)`,
    )
  })

  it('accepts webhooks while RabbitMQ is unreachable from the start and drains the backlog when it returns', async () => {
    const { proxy, gateway, direct } = await gatewayBehindBrokerProxy({ paused: true })
    // startGateway returned although the broker was never reachable: the publisher connects in the background.
    expect(gateway.gateway.publisher.connected).toBe(false)
    const capture = await database.captureEvents(direct)

    const events = Array.from({ length: 10 }, (_, n) => paymentSucceeded(n))
    const results = await Promise.all(events.map((event) => postStripe(gateway, event, secret)))
    expect(results.map((result) => result.status)).toEqual(events.map(() => 200))
    expect(results.map((result) => result.body.status)).toEqual(events.map(() => 'accepted'))
    const webhookIds = results.map((result) => result.body.id!)

    expect(await health(gateway)).toEqual({
      status: 200,
      body: { status: 'degraded', checks: { postgres: 'up', redis: 'up', rabbitmq: 'down' } },
    })
    // Many worker polls (50 ms) later, nothing has been claimed for good nor spent an attempt.
    await sleep(500)
    const waiting = await rows(gateway, webhookIds)
    expect(waiting.map((row) => [row.status, row.attempts])).toEqual(webhookIds.map(() => ['pending', 0]))
    expect(capture.messages).toEqual([])

    proxy.resume()
    await capture.waitFor((messages) => messages.length >= events.length * 2, 20_000)
    const published = await waitFor(async () => {
      const found = await rows(gateway, webhookIds)
      return found.every((row) => row.status === 'published') && found
    })
    expect(published.map((row) => row.attempts)).toEqual(webhookIds.map(() => 1))
    expect(new Set(capture.messages.map((message) => message.event.id))).toEqual(
      new Set(events.flatMap(expectedIds)),
    )
    expect(await health(gateway)).toEqual({
      status: 200,
      body: { status: 'ok', checks: { postgres: 'up', redis: 'up', rabbitmq: 'up' } },
    })
  })

  it('declares the exchange, its alternate exchange and <exchange>.unrouted on connecting, and keeps unrouted events there', async () => {
    const { proxy, gateway } = await gatewayBehindBrokerProxy({ paused: true })
    const { exchange } = gateway.config
    const unrouted = `${exchange}.unrouted`
    expect(await exchangeExists(exchange)).toBe(false)

    // No consumer binds anything on this exchange: every routing key is one nobody binds.
    const events = Array.from({ length: 5 }, (_, n) => paymentSucceeded(n))
    const results = await Promise.all(events.map((event) => postStripe(gateway, event, secret)))
    expect(results.map((result) => result.body.status)).toEqual(events.map(() => 'accepted'))

    proxy.resume()
    await waitFor(async () => {
      const found = await rows(
        gateway,
        results.map((result) => result.body.id!),
      )
      return found.every((row) => row.status === 'published')
    }, 20_000)

    expect(await exchangeExists(exchange)).toBe(true)
    expect(await exchangeExists(unrouted)).toBe(true)
    const queue = await withChannel((channel) => channel.checkQueue(unrouted))
    expect(queue.messageCount).toBe(events.length * 2)

    const kept = await withChannel(async (channel) => {
      const messages: GetMessage[] = []
      for (let message = await channel.get(unrouted); message; message = await channel.get(unrouted))
        messages.push(message)
      // Leave them there: get without ack puts them back when the channel closes.
      return messages
    })
    expect(new Set(kept.map((message) => message.properties.messageId))).toEqual(
      new Set(events.flatMap(expectedIds)),
    )
    expect(new Set(kept.map((message) => message.fields.routingKey))).toEqual(
      new Set(['raw.stripe.payment_intent.succeeded', 'payment.completed']),
    )
    expect(kept.every((message) => message.fields.exchange === exchange)).toBe(true)
    expect(kept.every((message) => message.properties.deliveryMode === 2)).toBe(true)
  })

  // A stalled broker keeps the TCP connection open and answers nothing (a frozen node, a partition that
  // drops packets). amqplib would wait for the broker's Close-Ok forever; stop() cuts the socket instead.
  it('reports rabbitmq down on /health while the broker stops answering, and up once it answers again', async () => {
    const { proxy, gateway } = await gatewayBehindBrokerProxy({ paused: false })
    await waitFor(() => gateway.gateway.publisher.connected)
    expect(await health(gateway)).toMatchObject({ status: 200, body: { checks: { rabbitmq: 'up' } } })
    proxy.stall()
    expect(await health(gateway)).toMatchObject({
      status: 200,
      body: { status: 'degraded', checks: { postgres: 'up', rabbitmq: 'down' } },
    })
    proxy.resume()
    await waitFor(async () => (await health(gateway)).body.status === 'ok')
  })

  it('stops within 10 s when RabbitMQ stops answering', async () => {
    const { proxy, gateway } = await gatewayBehindBrokerProxy({ paused: false })
    await waitFor(() => gateway.gateway.publisher.connected)
    proxy.stall()
    const stopping = gateway.stop()
    try {
      expect(
        await Promise.race([stopping.then(() => 'stopped'), sleep(10_000).then(() => 'no answer')]),
      ).toBe('stopped')
    } finally {
      proxy.resume()
      await stopping
    }
  })
})

describe('a worker killed mid-publish', () => {
  // Its publish waits on a stalled broker when it is killed; its claim has a 60 s lease.
  it(
    'has its claimed webhook published by another gateway within seconds, under the same event ids',
    { timeout: 90_000 },
    async () => {
      const proxy = await startProxy(...hostAndPort(services.amqp, 5672))
      database.defer(() => proxy.close())
      const env = testEnv(database.url, {
        STRIPE_WEBHOOK_SECRET: secret,
        AMQP_URL: proxy.url(services.amqp),
        WORKER_LEASE_SECONDS: '60',
        LOG_LEVEL: 'info',
      }) as Record<string, string>
      database.defer(() => deleteTopology(env.AMQP_EXCHANGE!))
      const killed = await startGatewayProcess(env, database.defer)
      const direct = { ...loadConfig(env), amqpUrl: services.amqp }
      await waitFor(() => exchangeExists(direct.exchange), 20_000, 100)
      const capture = await database.captureEvents(direct)
      proxy.stall()

      const event = paymentSucceeded(1)
      const delivery = stripeDelivery(event, { secret })
      const answer = await fetch(`${killed.base}/webhooks/stripe`, {
        method: 'POST',
        body: delivery.body,
        headers: delivery.headers,
      })
      expect(answer.status).toBe(200)
      const { id } = (await answer.json()) as { id: string }
      await waitFor(async () => {
        const [row] = await database.sql`SELECT claimed_by FROM webhooks WHERE id = ${id}`
        return row?.claimed_by !== null && row?.claimed_by !== undefined
      }, 10_000)
      killed.child.kill('SIGKILL')
      expect(await killed.exited).toBe('SIGKILL')

      const killedAt = Date.now()
      await database.startGateway({ ...env, PORT: '0', AMQP_URL: services.amqp, LOG_LEVEL: 'silent' })
      await capture.waitFor(
        (messages) => expectedIds(event).every((eventId) => messages.some((m) => m.event.id === eventId)),
        20_000,
      )
      expect(Date.now() - killedAt).toBeLessThan(20_000)
      const row = await waitFor(async () => {
        const [found] = await database.sql`SELECT status, claimed_by FROM webhooks WHERE id = ${id}`
        return found?.status === 'published' ? found : undefined
      })
      expect(row.claimed_by).toBeNull()
    },
  )
})
