import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { stringify as toYaml } from 'yaml'
import { loadConfig, type Env } from '../../src/config.ts'
import type { CloudEvent } from '../../src/pipeline/events.ts'
import { startGatewayProcess } from '../support/gateway-process.ts'
import { startReceiver, verifyStandardWebhook, type Receiver } from '../support/receiver.ts'
import { deleteTopology, services, testEnv, useTestDatabase, waitFor } from '../support/services.ts'
import { paymentIntentSucceeded, stripeDelivery } from '../support/signed.ts'

const stripeSecret = 'whsec_destination_faults'
const adminToken = 'destination-faults-admin-token'

const db = useTestDatabase()

// Destinations outlive a test's gateways in the file's database: without this, every later payment would
// also fan out to the earlier tests' endpoints.
afterEach(async () => {
  await db.sql`DELETE FROM destinations`
})

/** What every gateway here needs to deliver to a receiver on loopback over plain HTTP. */
const destinationEnv: Env = {
  STRIPE_WEBHOOK_SECRET: stripeSecret,
  ADMIN_TOKEN: adminToken,
  ALLOW_HTTP_DESTINATIONS: 'true',
  DESTINATION_ALLOWED_HOSTS: '127.0.0.1',
  DELIVERY_POLL_MS: '50',
}

/** A destination as GET /admin/destinations/:id shows it (the fields these tests read). */
interface DestinationView {
  id: string
  name: string | null
  source: 'api' | 'file'
  url: string
  enabled: boolean
  disabled_reason: string | null
  consecutive_failures: number
  timeout_ms: number
  pending: number
  failed: number
  delivered: number
  secret?: string
}

interface DeliveryView {
  id: string
  destination_id: string
  webhook_id: string
  event_id: string
  event_type: string
  status: 'pending' | 'delivered' | 'failed'
  attempt_count: number
  attempts: { status_code: number | null; error: string | null }[]
}

/** Calls the admin API of the gateway at `base`; fails the test on an unexpected status. */
async function admin<T>(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  expectedStatus = method === 'POST' && path === '/destinations' ? 201 : 200,
): Promise<T> {
  const response = await fetch(`${base}/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  const text = await response.text()
  if (response.status !== expectedStatus)
    throw new Error(`${method} /admin${path}: expected ${expectedStatus}, got ${response.status}: ${text}`)
  return (text ? JSON.parse(text) : undefined) as T
}

const createDestination = (base: string, settings: Record<string, unknown>) =>
  admin<DestinationView & { secret: string }>(base, 'POST', '/destinations', settings)

const getDestination = (base: string, id: string) =>
  admin<DestinationView>(base, 'GET', `/destinations/${id}`)

/** Posts a signed payment_intent.succeeded to the gateway at `base`; the stored webhook's id. */
async function postPayment(base: string, event = paymentIntentSucceeded()): Promise<string> {
  const { body, headers } = stripeDelivery(event, { secret: stripeSecret })
  const response = await fetch(`${base}/webhooks/stripe`, { method: 'POST', body, headers })
  const answer = (await response.json()) as { status?: string; id?: string }
  expect(response.status).toBe(200)
  expect(answer.status).toBe('accepted')
  return answer.id!
}

/** The CloudEvent a receiver got, verified with the destination's secret by the standardwebhooks package. */
const verifiedEvent = (request: Receiver['requests'][number], secret: string) =>
  verifyStandardWebhook(request, secret) as CloudEvent

/** A receiver closed after the test. */
async function receiver(...args: Parameters<typeof startReceiver>): Promise<Receiver> {
  const started = await startReceiver(...args)
  db.defer(() => started.close())
  return started
}

/** `npm start`'s command as a child process, killed with SIGKILL after the test whatever happens. */
const startProcess = (env: Record<string, string>) => startGatewayProcess(env, db.defer)

/**
 * An endpoint that never answers, counting the requests it holds open at once: a request stops counting
 * when the gateway gives up on it and closes the connection.
 */
async function deadEndpoint() {
  const state = { received: 0, open: 0, maxOpen: 0, arrivals: [] as number[] }
  const held = new Set<ServerResponse>()
  const server = createServer((req, res) => {
    req.resume()
    state.received += 1
    state.arrivals.push(performance.now())
    state.open += 1
    state.maxOpen = Math.max(state.maxOpen, state.open)
    held.add(res)
    res.on('close', () => {
      held.delete(res)
      state.open -= 1
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`
  db.defer(async () => {
    for (const res of held) res.destroy()
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return { url, state }
}

describe('destinations under faults', () => {
  // Two child processes start here, each compiling the gateway with tsx: seconds apiece on a busy machine.
  it(
    'delivers after a SIGKILL mid-delivery, with the same webhook-id, long before the lease ends',
    { timeout: 90_000 },
    async () => {
      // A lease of 1 s timeout + 60 s: only the killed process's lock going with its session sends it sooner.
      const env = {
        ...(testEnv(db.url, { ...destinationEnv, DELIVERY_LEASE_MARGIN_SECONDS: '60' }) as Record<
          string,
          string
        >),
        LOG_LEVEL: 'info',
      }
      db.defer(() => deleteTopology(loadConfig(env).exchange))

      let first: Awaited<ReturnType<typeof startProcess>> | undefined
      const endpoint = await receiver((_request, index) => {
        // Killed the moment the first request is in, long before its 1 s timeout could be recorded.
        if (index === 0) {
          first!.child.kill('SIGKILL')
          return { hang: true }
        }
        return { status: 200 }
      })
      first = await startProcess(env)
      const destination = await createDestination(first.base, {
        url: endpoint.url,
        events: ['payment.*'],
        timeout_ms: 1000,
      })
      const event = paymentIntentSucceeded()
      const webhookId = await postPayment(first.base, event)

      await endpoint.waitForRequests(1, 20_000)
      expect(await first.exited).toBe('SIGKILL')

      const second = await startProcess(env)
      const [interrupted, resent] = await endpoint.waitForRequests(2, 20_000)
      expect(resent!.at - interrupted!.at).toBeLessThan(40_000)
      expect(resent!.headers['webhook-id']).toBe(interrupted!.headers['webhook-id'])
      const sentFirst = verifiedEvent(interrupted!, destination.secret)
      const sentAgain = verifiedEvent(resent!, destination.secret)
      expect(sentAgain).toEqual(sentFirst)
      expect(sentAgain.id).toBe(interrupted!.headers['webhook-id'])
      expect(sentAgain).toMatchObject({ type: 'payment.completed', webhookid: webhookId })
      expect(sentAgain.data).toMatchObject({ payment_id: event.data.object.id })

      const [delivery] = await waitFor(async () => {
        const { deliveries } = await admin<{ deliveries: DeliveryView[] }>(
          second.base,
          'GET',
          `/deliveries?webhook_id=${webhookId}`,
        )
        return deliveries.length === 1 && deliveries[0]!.status === 'delivered' ? deliveries : undefined
      }, 20_000)
      expect(delivery).toMatchObject({ event_id: sentAgain.id, destination_id: destination.id })
      // The answered attempt is on record. The killed process recorded nothing, unless this test was starved
      // past the 1 s timeout before killing it: then its timeout is on record too, and nothing else.
      const statuses = delivery!.attempts.map((attempt) => attempt.status_code)
      expect(statuses.at(-1)).toBe(200)
      expect(statuses.slice(0, -1).every((status) => status === null)).toBe(true)
      expect(endpoint.requests).toHaveLength(2)
    },
  )

  it('keeps delivering to destinations while RabbitMQ is unreachable', async () => {
    const away = await db.startGateway({ ...destinationEnv, AMQP_URL: 'amqp://guest:guest@127.0.0.1:1' })
    const endpoint = await receiver()
    const destination = await createDestination(away.url, { url: endpoint.url, events: ['payment.*'] })

    const event = paymentIntentSucceeded()
    const webhookId = await postPayment(away.url, event)
    const [request] = await endpoint.waitForRequests(1, 20_000)
    const delivered = verifiedEvent(request!, destination.secret)
    expect(delivered).toMatchObject({ type: 'payment.completed', webhookid: webhookId })
    expect(delivered.data).toMatchObject({ payment_id: event.data.object.id })

    expect(away.gateway.publisher.connected).toBe(false)
    const waiting = await admin<{ status: string }>(away.url, 'GET', `/webhooks/${webhookId}`)
    expect(waiting.status).toBe('pending')
    await away.stop()

    // The broker is back (a gateway that can reach it, on the same database and exchange): it publishes
    // the webhook, and the destination, already served, gets nothing more.
    const capture = await db.captureEvents({ ...away.config, amqpUrl: services.amqp })
    const back = await db.startGateway({ ...destinationEnv, AMQP_EXCHANGE: away.config.exchange })
    await capture.waitFor(
      (messages) =>
        messages.some((m) => m.event.webhookid === webhookId && m.event.type === 'payment.completed'),
      20_000,
    )
    await waitFor(
      async () =>
        (await admin<{ status: string }>(back.url, 'GET', `/webhooks/${webhookId}`)).status === 'published',
      20_000,
    )
    const published = capture.messages.find((m) => m.event.type === 'payment.completed')!
    expect(published.event.id).toBe(delivered.id)
    // A negative: give a second request every chance to arrive.
    await sleep(1000)
    expect(endpoint.requests).toHaveLength(1)
    const { deliveries } = await admin<{ deliveries: DeliveryView[] }>(
      back.url,
      'GET',
      `/deliveries?webhook_id=${webhookId}`,
    )
    expect(deliveries.map((d) => [d.event_id, d.status])).toEqual([[delivered.id, 'delivered']])
  })

  it('one dead destination does not slow a healthy one', async () => {
    const gateway = await db.startGateway(destinationEnv)
    const dead = await deadEndpoint()
    const healthy = await receiver()
    await createDestination(gateway.url, {
      url: dead.url,
      events: ['payment.*'],
      timeout_ms: 3000,
      max_in_flight: 2,
    })
    const destination = await createDestination(gateway.url, { url: healthy.url, events: ['payment.*'] })

    const events = Array.from({ length: 20 }, () => paymentIntentSucceeded())
    await Promise.all(events.map((event) => postPayment(gateway.url, event)))

    // Ten of the dead destination's timeouts, one after another, would take 30 s.
    const requests = await healthy.waitForRequests(20, 10_000)
    const paymentIds = requests.map(
      (request) => (verifiedEvent(request, destination.secret).data as { payment_id: string }).payment_id,
    )
    expect(new Set(paymentIds)).toEqual(new Set(events.map((event) => event.data.object.id)))
    expect(new Set(requests.map((request) => request.headers['webhook-id'])).size).toBe(20)

    // The dead one is tried with its two slots, and after its first timeouts still with two at most: never
    // more than two requests within its 3 s timeout. (Its count of open requests can read 3 for a moment: a
    // request the gateway gave up on is closed at the endpoint a turn after the next one arrives.)
    await waitFor(() => dead.state.received >= 4, 20_000)
    const { arrivals } = dead.state
    const crowded = arrivals.filter(
      (at) => arrivals.filter((other) => other >= at && other < at + 2500).length > 2,
    )
    expect(crowded).toEqual([])
  })

  it('takes https destinations only, unless ALLOW_HTTP_DESTINATIONS is set', async () => {
    const { ALLOW_HTTP_DESTINATIONS: _allowed, ...httpsOnly } = destinationEnv
    const gateway = await db.startGateway(httpsOnly)
    const response = await fetch(`${gateway.url}/admin/destinations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ url: 'http://hooks.example.com/in', events: ['#'] }),
    })
    expect(response.status).toBe(400)
    expect(((await response.json()) as { error: string }).error).toMatch(/https/)
    await createDestination(gateway.url, {
      url: 'https://hooks.example.com/in',
      events: ['#'],
      enabled: false,
    })
  })

  it('sends a backlog larger than max_in_flight as answers come back, without waiting for the poll, on no more connections than max_in_flight and a spare', async () => {
    // A poll of a minute: only the sender's own wake-ups can move the backlog along within the test.
    const gateway = await db.startGateway({ ...destinationEnv, DELIVERY_POLL_MS: '60000' })
    const endpoint = await receiver()
    const destination = await createDestination(gateway.url, {
      url: endpoint.url,
      events: ['payment.*'],
      max_in_flight: 5,
      enabled: false,
    })
    await Promise.all(Array.from({ length: 40 }, () => postPayment(gateway.url)))
    await waitFor(async () => (await getDestination(gateway.url, destination.id)).pending === 40, 20_000)
    await admin(gateway.url, 'PATCH', `/destinations/${destination.id}`, { enabled: true })
    await endpoint.waitForRequests(40, 15_000)
    await waitFor(async () => (await getDestination(gateway.url, destination.id)).delivered === 40, 15_000)
    // A request sent as an answer frees its slot goes on a connection undici has back, not a new one; undici's
    // pool keeps one spare.
    expect(endpoint.connections()).toBeLessThanOrEqual(6)
  })

  it('disables a destination after 10 consecutive failed deliveries and warns at 3, 5 and 10', async () => {
    const gateway = await db.startGateway(destinationEnv)
    const endpoint = await receiver(() => ({ status: 500, body: 'broken' }))
    const destination = await createDestination(gateway.url, {
      url: endpoint.url,
      events: ['payment.*'],
      retry_schedule_seconds: [],
    })

    for (let n = 0; n < 10; n++) await postPayment(gateway.url)
    const disabled = await waitFor(async () => {
      const state = await getDestination(gateway.url, destination.id)
      return state.enabled ? undefined : state
    }, 20_000)
    expect(disabled.disabled_reason).toMatch(/10 consecutive failed deliveries/)
    expect(disabled).toMatchObject({ consecutive_failures: 10, failed: 10, pending: 0 })
    expect(endpoint.requests).toHaveLength(10)

    const metrics = await (await fetch(`${gateway.url}/metrics`)).text()
    const warnings = metrics
      .split('\n')
      .filter((line) => line.startsWith('destination_failure_warnings_total{'))
    // One warning each at 3, 5 and 10 consecutive failures, and none at the counts in between.
    const warnedAt = warnings
      .filter((line) => line.includes(`destination="${destination.id}"`) && / 1$/.test(line))
      .map((line) => /consecutive="(\d+)"/.exec(line)?.[1])
    expect(warnedAt.sort()).toEqual(['10', '3', '5'])

    // While disabled, later events wait.
    const later = [paymentIntentSucceeded(), paymentIntentSucceeded()]
    for (const event of later) await postPayment(gateway.url, event)
    await waitFor(async () => (await getDestination(gateway.url, destination.id)).pending === 2, 20_000)
    // A negative: several polls of the sender go by.
    await sleep(500)
    expect(endpoint.requests).toHaveLength(10)

    endpoint.answer(() => ({ status: 200 }))
    const resumed = await admin<DestinationView>(gateway.url, 'PATCH', `/destinations/${destination.id}`, {
      enabled: true,
    })
    expect(resumed).toMatchObject({ enabled: true, disabled_reason: null, consecutive_failures: 0 })
    const requests = await endpoint.waitForRequests(12, 20_000)
    const resent = requests
      .slice(10)
      .map(
        (request) => (verifiedEvent(request, destination.secret).data as { payment_id: string }).payment_id,
      )
    expect(new Set(resent)).toEqual(new Set(later.map((event) => event.data.object.id)))
    await waitFor(async () => {
      const state = await getDestination(gateway.url, destination.id)
      return state.delivered === 2 && state.pending === 0
    }, 20_000)
    expect(endpoint.requests).toHaveLength(12)
  })

  describe('DESTINATIONS_FILE', () => {
    async function tempFile(name: string) {
      const dir = await mkdtemp(join(tmpdir(), 'gateway-destinations-'))
      db.defer(() => rm(dir, { recursive: true, force: true }))
      return join(dir, name)
    }

    it('applies DESTINATIONS_FILE at startup, disables a destination removed from it and enables it when it is back', async () => {
      const file = await tempFile('destinations.yaml')
      const endpoint = await receiver()
      const secret = `whsec_${randomBytes(32).toString('base64')}`
      const name = 'payments-from-file'
      await writeFile(
        file,
        toYaml([{ name, url: endpoint.url, events: ['payment.*'], secret, timeout_ms: 5000 }]),
      )

      const first = await db.startGateway({ ...destinationEnv, DESTINATIONS_FILE: file })
      const { destinations } = await admin<{ destinations: DestinationView[] }>(
        first.url,
        'GET',
        '/destinations',
      )
      const declared = destinations.find((destination) => destination.name === name)
      expect(declared).toMatchObject({
        source: 'file',
        url: endpoint.url,
        enabled: true,
        timeout_ms: 5000,
      })
      expect(JSON.stringify(destinations)).not.toContain(secret)

      const event = paymentIntentSucceeded()
      const webhookId = await postPayment(first.url, event)
      const [request] = await endpoint.waitForRequests(1, 20_000)
      expect(verifiedEvent(request!, secret)).toMatchObject({
        type: 'payment.completed',
        webhookid: webhookId,
      })
      await waitFor(async () => (await getDestination(first.url, declared!.id)).delivered === 1, 20_000)
      await first.stop()

      await writeFile(file, '[]\n')
      const second = await db.startGateway({ ...destinationEnv, DESTINATIONS_FILE: file })
      expect(await getDestination(second.url, declared!.id)).toMatchObject({
        enabled: false,
        disabled_reason: 'removed from DESTINATIONS_FILE',
        delivered: 1,
      })
      await second.stop()

      // Put back in the file, it is enabled again, with the same id and its history.
      await writeFile(
        file,
        toYaml([{ name, url: endpoint.url, events: ['payment.*'], secret, timeout_ms: 5000 }]),
      )
      const third = await db.startGateway({ ...destinationEnv, DESTINATIONS_FILE: file })
      expect(await getDestination(third.url, declared!.id)).toMatchObject({
        enabled: true,
        disabled_reason: null,
        delivered: 1,
      })
    })

    it('refuses to start when an entry of DESTINATIONS_FILE is invalid, naming the file', async () => {
      const privateUrl = await tempFile('private-url.yaml')
      await writeFile(
        privateUrl,
        toYaml([{ name: 'internal', url: 'http://10.0.0.1/hooks', events: ['payment.*'] }]),
      )
      await expect(db.startGateway({ ...destinationEnv, DESTINATIONS_FILE: privateUrl })).rejects.toThrow(
        `DESTINATIONS_FILE ${privateUrl}: internal: url: 10.0.0.1 is a private address`,
      )

      const noEvents = await tempFile('no-events.json')
      await writeFile(
        noEvents,
        JSON.stringify([{ name: 'nothing', url: 'http://127.0.0.1:9/hooks', events: [] }]),
      )
      const refusal = db.startGateway({ ...destinationEnv, DESTINATIONS_FILE: noEvents })
      await expect(refusal).rejects.toThrow(noEvents)
      await expect(refusal).rejects.toThrow(/events must name at least one pattern/)
    })
  })
})
