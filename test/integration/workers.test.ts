import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { eventId } from '../../src/pipeline/events.ts'
import {
  postStripe,
  testEnv,
  useTestDatabase,
  waitFor,
  type StripeAnswer,
  type TestGateway,
} from '../support/services.ts'
import { paymentIntentSucceeded } from '../support/signed.ts'

const secret = 'whsec_workers'

const database = useTestDatabase()

const paymentSucceeded = (n: number) =>
  paymentIntentSucceeded({ amount: 100 + n, customer: 'cus_workers', metadata: { n: String(n) } })

/** Sends with at most `parallel` requests open at once. */
async function sendAll(gateway: TestGateway, events: readonly Record<string, unknown>[], parallel = 25) {
  const results: StripeAnswer[] = new Array(events.length)
  let next = 0
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < events.length) {
        const index = next++
        results[index] = await postStripe(gateway, events[index]!, secret)
      }
    }),
  )
  return results
}

/** events_published_total{provider="stripe"} of one gateway process, read from its own /metrics. */
async function publishedBy(gateway: TestGateway): Promise<number> {
  const text = await (await gateway.gateway.app.request('/metrics')).text()
  return Number(/^events_published_total\{provider="stripe"\} (\d+)$/m.exec(text)?.[1] ?? 0)
}

const duplicatesById = (ids: readonly string[]) => ids.length - new Set(ids).size

describe('several gateway processes on one database', () => {
  it('publishes each of 200 webhooks exactly once across three workers claiming with SKIP LOCKED', async () => {
    const env = testEnv(database.url, { STRIPE_WEBHOOK_SECRET: secret, WORKER_CONCURRENCY: '4' })
    const gateways = [
      await database.startGateway({ ...env, ROLE: 'all' }),
      await database.startGateway({ ...env, ROLE: 'worker' }),
      await database.startGateway({ ...env, ROLE: 'worker' }),
    ]
    const [api] = gateways as [TestGateway, ...TestGateway[]]
    const capture = await database.captureEvents(api.config)

    const events = Array.from({ length: 200 }, (_, n) => paymentSucceeded(n))
    const results = await sendAll(api, events)
    expect(results.map((result) => result.body.status)).toEqual(events.map(() => 'accepted'))

    const expected = new Set(
      events.flatMap((event) => [
        eventId('stripe', event.id, 'raw'),
        eventId('stripe', event.id, 'internal:0:payment.completed'),
      ]),
    )
    await capture.waitFor((messages) => messages.length >= expected.size, 20_000)
    // Time for a double publish to show up, had one happened.
    await sleep(500)

    const seen = capture.messages.map((message) => message.event.id)
    expect(new Set(seen)).toEqual(expected)
    expect(duplicatesById(seen)).toBe(0)
    expect(seen).toHaveLength(expected.size)

    const ids = results.map((result) => result.body.id!)
    const stored = await waitFor(async () => {
      const groups = await database.sql<{ status: string; attempts: number; count: number }[]>`
        SELECT status, attempts, count(*)::int AS count FROM webhooks WHERE id = ANY(${ids}::uuid[])
        GROUP BY status, attempts`
      return groups.every((group) => group.status === 'published') && groups
    })
    expect(stored).toEqual([{ status: 'published', attempts: 1, count: 200 }])

    const perProcess = await Promise.all(gateways.map(publishedBy))
    expect(perProcess.reduce((sum, count) => sum + count, 0)).toBe(expected.size)
    console.info(`[workers] events published per process (all, worker, worker): ${perProcess.join(', ')}`)
  })

  it('stops within 10 s with webhooks in flight, and every webhook answered 200 is stored and later published', async () => {
    const env = testEnv(database.url, { STRIPE_WEBHOOK_SECRET: secret })
    const first = await database.startGateway(env)
    const capture = await database.captureEvents(first.config)

    const events = Array.from({ length: 150 }, (_, n) => paymentSucceeded(n))
    const answers = events.map((event) =>
      postStripe(first, event, secret).catch((): StripeAnswer => ({ status: 0, body: {} })),
    )
    // Stop while requests are still arriving and the worker is publishing.
    await waitFor(() => capture.messages.length > 0, 10_000, 5)
    const stopStartedAt = performance.now()
    await first.stop()
    const stopMs = performance.now() - stopStartedAt
    const results = await Promise.all(answers)
    expect(stopMs).toBeLessThan(10_000)

    const acceptedIds = results.flatMap((result) => (result.status === 200 ? [result.body.id!] : []))
    expect(acceptedIds.length).toBeGreaterThan(0)
    // Anything that is not a 200 failed to connect or got a 503: the provider would retry it.
    expect(
      results.every((result) => result.status === 200 || result.status === 0 || result.status === 503),
    ).toBe(true)
    const stored = await database.sql<{ id: string; status: string; leased: boolean }[]>`
      SELECT id, status, next_attempt_at > now() + interval '1 second' AS leased
      FROM webhooks WHERE id = ANY(${acceptedIds}::uuid[])`
    expect(stored.map((row) => row.id).sort()).toEqual([...acceptedIds].sort())
    // The worker finished what it had claimed: nothing waits for a lease to run out.
    expect(stored.filter((row) => row.status !== 'published' && row.leased)).toEqual([])
    console.info(
      `[workers] stop took ${Math.round(stopMs)} ms; ${acceptedIds.length}/${events.length} answered 200, ` +
        `${stored.filter((row) => row.status === 'published').length} published before the stop`,
    )

    // A new process picks up whatever the stopped one had not published yet.
    await database.startGateway(env)
    const rawIds = new Set(
      events
        .filter((_, index) => results[index]!.status === 200)
        .map((event) => eventId('stripe', event.id, 'raw')),
    )
    await capture.waitFor((messages) => {
      const seen = new Set(messages.map((message) => message.event.id))
      return [...rawIds].every((id) => seen.has(id))
    }, 20_000)
    await waitFor(async () => {
      const [row] = await database.sql<{ count: number }[]>`
        SELECT count(*)::int AS count FROM webhooks
        WHERE id = ANY(${acceptedIds}::uuid[]) AND status <> 'published'`
      return row?.count === 0
    })
  })
})
