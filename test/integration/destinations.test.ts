import { beforeAll, describe, expect, it } from 'vitest'
import { startReceiver, verifyStandardWebhook, type Receiver } from '../support/receiver.ts'
import { adminApi, useTestDatabase, waitFor, type Capture, type TestGateway } from '../support/services.ts'
import { githubDelivery, githubExample, paymentIntentSucceeded, stripeDelivery } from '../support/signed.ts'

const stripeSecret = 'whsec_destinations'
const githubSecret = 'gh-destinations'
const adminToken = 'admin-destinations'

const db = useTestDatabase()
let gw: TestGateway
let events: Capture

beforeAll(async () => {
  gw = await db.startGateway({
    STRIPE_WEBHOOK_SECRET: stripeSecret,
    GITHUB_WEBHOOK_SECRET: githubSecret,
    ADMIN_TOKEN: adminToken,
    ALLOW_HTTP_DESTINATIONS: 'true',
    DESTINATION_ALLOWED_HOSTS: '127.0.0.1',
    DELIVERY_POLL_MS: '50',
  })
  events = await db.captureEvents(gw.config)
})

const admin = adminApi(() => gw, adminToken)

/** A receiver on loopback, closed after the test. */
async function receiver(...args: Parameters<typeof startReceiver>): Promise<Receiver> {
  const started = await startReceiver(...args)
  db.defer(() => started.close())
  return started
}

/** Creates a destination (deleted after the test) and returns it with its secret. */
async function createDestination(fields: Record<string, unknown>): Promise<{ id: string; secret: string }> {
  const created = await admin('POST', '/destinations', fields)
  expect(created.status, JSON.stringify(created.body)).toBe(201)
  db.defer(() => admin('DELETE', `/destinations/${created.body.id}`))
  return created.body
}

/** Posts a signed Stripe payment_intent.succeeded; returns the webhook id the gateway answered. */
async function postPayment(fields: Parameters<typeof paymentIntentSucceeded>[0] = {}): Promise<string> {
  const { body, headers } = stripeDelivery(paymentIntentSucceeded(fields), { secret: stripeSecret })
  const response = await gw.post('/webhooks/stripe', body, headers)
  const answer = (await response.json()) as { status: string; id: string }
  expect(answer.status).toBe('accepted')
  return answer.id
}

/**
 * The one attempt at a payment for a destination with no retries whose endpoint answers as `answer` says,
 * once the delivery has failed.
 */
async function onlyAttempt(answer: Parameters<typeof startReceiver>[0]): Promise<any> {
  const endpoint = await receiver(answer)
  const destination = await createDestination({
    url: endpoint.url,
    events: ['payment.*'],
    retry_schedule_seconds: [],
  })
  await postPayment()
  await waitFor(async () => (await deliveriesOf(destination.id, '?status=failed')).length === 1)
  const [delivery] = await deliveriesOf(destination.id)
  expect(delivery.attempts).toHaveLength(1)
  return delivery.attempts[0]
}

const deliveriesOf = async (destinationId: string, query = '') =>
  (await admin('GET', `/destinations/${destinationId}/deliveries${query}`)).body.deliveries as any[]

describe('destinations', () => {
  it('delivers a Stripe payment to a destination as a payment.completed CloudEvent that standardwebhooks verifies', async () => {
    const endpoint = await receiver()
    const destination = await createDestination({ url: endpoint.url, events: ['payment.*'] })
    expect(destination.secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/)

    const webhookId = await postPayment({ id: 'pi_dest_1', amount: 1250, currency: 'eur' })
    const [request] = await endpoint.waitForRequests(1)
    const event = verifyStandardWebhook(request!, destination.secret) as any
    expect(request!.method).toBe('POST')
    expect(request!.path).toBe('/hooks')
    expect(request!.headers['content-type']).toBe('application/cloudevents+json')
    expect(event).toMatchObject({
      specversion: '1.0',
      type: 'payment.completed',
      source: '/webhooks/stripe',
      webhookid: webhookId,
      data: { payment_id: 'pi_dest_1', amount: 12.5, amount_minor: 1250, currency: 'EUR' },
    })
    // webhook-id is the CloudEvent id, and the body is the very document published on RabbitMQ.
    expect(request!.headers['webhook-id']).toBe(event.id)
    const published = await events.waitFor((messages) => messages.some((m) => m.event.id === event.id))
    expect(published.find((m) => m.event.id === event.id)!.content).toBe(request!.body)

    await waitFor(async () => (await deliveriesOf(destination.id))[0]?.status === 'delivered')
    const [delivery] = await deliveriesOf(destination.id)
    expect(delivery).toMatchObject({
      event_id: event.id,
      webhook_id: webhookId,
      status: 'delivered',
      attempt_count: 1,
    })
    expect(delivery.attempts).toHaveLength(1)
    expect(delivery.attempts[0]).toMatchObject({ status_code: 200, error: null })
    // Exactly once: nothing more arrives.
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(endpoint.requests).toHaveLength(1)
  })

  it('never shows the secret after creation, and shows the state, the defaults and counts', async () => {
    const endpoint = await receiver()
    const destination = await createDestination({ url: endpoint.url, events: ['#'], timeout_ms: 5000 })
    const shown = await admin('GET', `/destinations/${destination.id}`)
    expect(shown.status).toBe(200)
    expect(shown.body).toMatchObject({
      id: destination.id,
      url: endpoint.url,
      events: ['#'],
      enabled: true,
      disabled_reason: null,
      consecutive_failures: 0,
      timeout_ms: 5000,
      max_in_flight: 32,
      pending: 0,
      failed: 0,
    })
    expect(JSON.stringify(shown.body)).not.toContain(destination.secret)
    const listed = await admin('GET', '/destinations')
    expect(JSON.stringify(listed.body)).not.toContain(destination.secret)
    expect(listed.body.destinations.map((d: any) => d.id)).toContain(destination.id)
  })

  it('retries a 500 and delivers on the 200 that follows, with the same webhook-id', async () => {
    const endpoint = await receiver((_, index) => ({ status: index === 0 ? 500 : 200, body: 'try later' }))
    const destination = await createDestination({
      url: endpoint.url,
      events: ['payment.completed'],
      retry_schedule_seconds: [0.2, 0.2],
    })
    await postPayment()
    const [first, second] = await endpoint.waitForRequests(2)
    expect(second!.headers['webhook-id']).toBe(first!.headers['webhook-id'])
    verifyStandardWebhook(second!, destination.secret)
    await waitFor(async () => (await deliveriesOf(destination.id))[0]?.status === 'delivered')
    const [delivery] = await deliveriesOf(destination.id)
    expect(delivery.attempts.map((a: any) => a.status_code)).toEqual([500, 200])
    expect(delivery.attempts[0]).toMatchObject({ error: 'answered 500', response_body: 'try later' })
  })

  it('marks a delivery failed after the last retry, and replays it with the same webhook-id', async () => {
    const endpoint = await receiver(() => ({ status: 503 }))
    const destination = await createDestination({
      url: endpoint.url,
      events: ['payment.*'],
      retry_schedule_seconds: [0.1],
    })
    await postPayment()
    await waitFor(async () => (await deliveriesOf(destination.id, '?status=failed')).length === 1)
    expect(endpoint.requests).toHaveLength(2)
    const [failed] = await deliveriesOf(destination.id, '?status=failed')
    expect(failed.attempts).toHaveLength(2)
    expect((await admin('GET', `/destinations/${destination.id}`)).body).toMatchObject({
      failed: 1,
      consecutive_failures: 1,
    })

    endpoint.answer(() => ({ status: 204 }))
    expect((await admin('POST', `/deliveries/${failed.id}/retry`)).status).toBe(202)
    const requests = await endpoint.waitForRequests(3)
    expect(requests[2]!.headers['webhook-id']).toBe(requests[0]!.headers['webhook-id'])
    verifyStandardWebhook(requests[2]!, destination.secret)
    await waitFor(async () => (await deliveriesOf(destination.id, '?status=delivered')).length === 1)
    // A success ends the run of failures.
    expect((await admin('GET', `/destinations/${destination.id}`)).body.consecutive_failures).toBe(0)
  })

  it('sends every failed delivery of a destination again on retry-failed', async () => {
    const endpoint = await receiver(() => ({ status: 500 }))
    const destination = await createDestination({
      url: endpoint.url,
      events: ['payment.*'],
      retry_schedule_seconds: [],
    })
    await postPayment()
    await postPayment()
    await waitFor(async () => (await deliveriesOf(destination.id, '?status=failed')).length === 2)
    endpoint.answer(() => ({ status: 200 }))
    const retried = await admin('POST', `/destinations/${destination.id}/retry-failed`)
    expect(retried).toMatchObject({ status: 202, body: { retried: 2 } })
    await waitFor(async () => (await deliveriesOf(destination.id, '?status=delivered')).length === 2)
  })

  it('disables the destination at once on 410 Gone; its deliveries wait and go out when it is enabled again', async () => {
    const endpoint = await receiver(() => ({ status: 410 }))
    const destination = await createDestination({ url: endpoint.url, events: ['payment.*'] })
    await postPayment()
    await endpoint.waitForRequests(1)
    await waitFor(async () => (await admin('GET', `/destinations/${destination.id}`)).body.enabled === false)
    const disabled = (await admin('GET', `/destinations/${destination.id}`)).body
    expect(disabled.disabled_reason).toMatch(/410/)

    await postPayment()
    await waitFor(async () => (await deliveriesOf(destination.id)).length === 2)
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(endpoint.requests).toHaveLength(1)
    expect((await deliveriesOf(destination.id, '?status=pending')).length).toBe(2)

    endpoint.answer(() => ({ status: 200 }))
    const enabled = await admin('PATCH', `/destinations/${destination.id}`, { enabled: true })
    expect(enabled.body).toMatchObject({ enabled: true, disabled_reason: null })
    await waitFor(async () => (await deliveriesOf(destination.id, '?status=delivered')).length === 2)
    expect(endpoint.requests).toHaveLength(3)
  })

  it('retries an answer slower than the timeout', async () => {
    const endpoint = await receiver((_, index) =>
      index === 0 ? { status: 200, delayMs: 2000 } : { status: 200 },
    )
    const destination = await createDestination({
      url: endpoint.url,
      events: ['payment.*'],
      timeout_ms: 300,
      retry_schedule_seconds: [0.1],
    })
    await postPayment()
    await waitFor(async () => (await deliveriesOf(destination.id, '?status=delivered')).length === 1)
    const [delivery] = await deliveriesOf(destination.id)
    expect(delivery.attempts).toHaveLength(2)
    expect(delivery.attempts[0]).toMatchObject({ status_code: null })
    expect(delivery.attempts[0].error).toMatch(/300 ms timeout/)
    expect(delivery.attempts[0].duration_ms).toBeLessThan(1500)
  })

  it.each([429, 503])('waits for the Retry-After of a %i before sending again', async (status) => {
    const endpoint = await receiver((_, index) =>
      index === 0 ? { status, headers: { 'retry-after': '2' } } : { status: 200 },
    )
    const destination = await createDestination({
      url: endpoint.url,
      events: ['payment.*'],
      retry_schedule_seconds: [0.1, 0.1],
    })
    await postPayment()
    const [first, second] = await endpoint.waitForRequests(2)
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(1900)
    await waitFor(async () => (await deliveriesOf(destination.id, '?status=delivered')).length === 1)
  })

  it('retries a refused connection and fails the delivery after the schedule', async () => {
    // A port nothing listens on: the receiver is started to learn a free port, then closed.
    const closed = await startReceiver()
    await closed.close()
    const destination = await createDestination({
      url: closed.url,
      events: ['payment.*'],
      retry_schedule_seconds: [0.1],
    })
    await postPayment()
    await waitFor(async () => (await deliveriesOf(destination.id, '?status=failed')).length === 1)
    const [delivery] = await deliveriesOf(destination.id)
    expect(delivery.attempts).toHaveLength(2)
    for (const attempt of delivery.attempts) {
      expect(attempt.status_code).toBeNull()
      expect(attempt.error).toMatch(/ECONNREFUSED/)
    }
  })

  it('does not follow redirects: a 3xx is a failed attempt', async () => {
    const target = await receiver()
    const attempt = await onlyAttempt(() => ({ status: 307, headers: { location: target.url } }))
    expect(attempt.status_code).toBe(307)
    expect(attempt.error).toMatch(/redirects are not followed/)
    expect(target.requests).toHaveLength(0)
  })

  it('keeps the first 10 KB of an answer and its headers in the attempt log', async () => {
    const attempt = await onlyAttempt(() => ({
      status: 500,
      headers: { 'x-request-id': 'req-42' },
      body: 'x'.repeat(50_000),
    }))
    expect(attempt.response_body).toHaveLength(10 * 1024)
    expect(attempt.response_headers['x-request-id']).toBe('req-42')
  })

  it('routes by topic pattern: payment.* and raw.github.# get what they match and nothing else', async () => {
    const payments = await receiver()
    const github = await receiver()
    const orders = await receiver()
    await createDestination({ url: payments.url, events: ['payment.*'] })
    await createDestination({ url: github.url, events: ['raw.github.#'] })
    await createDestination({ url: orders.url, events: ['order.*'] })

    await postPayment()
    const push = await githubDelivery('push', await githubExample('push'), { secret: githubSecret })
    expect((await gw.post('/webhooks/github', push.body, push.headers)).status).toBe(200)

    await payments.waitForRequests(1)
    await github.waitForRequests(1)
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(payments.requests.map((r) => JSON.parse(r.body).type)).toEqual(['payment.completed'])
    expect(github.requests.map((r) => JSON.parse(r.body).type)).toEqual(['raw.github.push'])
    expect(orders.requests).toHaveLength(0)
  })

  it('delivers one event to two destinations, each signed with its own secret', async () => {
    const first = await receiver()
    const second = await receiver()
    const a = await createDestination({ url: first.url, events: ['payment.completed'] })
    const b = await createDestination({ url: second.url, events: ['payment.#'] })
    await postPayment()
    const [toA] = await first.waitForRequests(1)
    const [toB] = await second.waitForRequests(1)
    expect(toA!.headers['webhook-id']).toBe(toB!.headers['webhook-id'])
    verifyStandardWebhook(toA!, a.secret)
    verifyStandardWebhook(toB!, b.secret)
    expect(() => verifyStandardWebhook(toA!, b.secret)).toThrow()
  })

  it('signs with the old and the new secret while one is rotated out', async () => {
    const endpoint = await receiver()
    const destination = await createDestination({ url: endpoint.url, events: ['payment.*'] })
    const rotated = await admin('POST', `/destinations/${destination.id}/rotate-secret`, {
      expires_in_seconds: 3600,
    })
    expect(rotated.status).toBe(200)
    expect(rotated.body.secret).toMatch(/^whsec_/)
    expect(rotated.body.secret).not.toBe(destination.secret)

    await postPayment()
    const [request] = await endpoint.waitForRequests(1)
    expect(String(request!.headers['webhook-signature']).split(' ')).toHaveLength(2)
    verifyStandardWebhook(request!, destination.secret)
    verifyStandardWebhook(request!, rotated.body.secret)

    // Once the old secret expires, only the new one signs.
    await admin('POST', `/destinations/${destination.id}/rotate-secret`, { expires_in_seconds: 0 })
    const latest = (
      await admin('POST', `/destinations/${destination.id}/rotate-secret`, { expires_in_seconds: 0 })
    ).body.secret
    await postPayment()
    const requests = await endpoint.waitForRequests(2)
    expect(String(requests[1]!.headers['webhook-signature']).split(' ')).toHaveLength(1)
    verifyStandardWebhook(requests[1]!, latest)
    expect(() => verifyStandardWebhook(requests[1]!, destination.secret)).toThrow()
  })

  it('sends the extra headers of a destination but never lets them replace its signature', async () => {
    const endpoint = await receiver()
    await createDestination({ url: endpoint.url, events: ['payment.*'], headers: { 'x-team': 'billing' } })
    const refused = await admin('POST', '/destinations', {
      url: endpoint.url,
      events: ['payment.*'],
      headers: { 'webhook-signature': 'v1,forged' },
    })
    expect(refused.status).toBe(400)
    await postPayment()
    const [request] = await endpoint.waitForRequests(1)
    expect(request!.headers['x-team']).toBe('billing')
  })

  it('refuses a destination on a private address, at creation and at connection', async () => {
    const endpoint = await receiver()
    const literal = await admin('POST', '/destinations', { url: 'http://10.0.0.1/hooks', events: ['#'] })
    expect(literal.status).toBe(400)
    expect(literal.body.error).toMatch(/private address/)
    const metadata = await admin('POST', '/destinations', {
      url: 'http://169.254.169.254/latest',
      events: ['#'],
    })
    expect(metadata.status).toBe(400)

    // A hostname is checked on the address it resolves to, when connecting: localhost is not allowed here.
    const destination = await createDestination({
      url: `http://localhost:${endpoint.port}/hooks`,
      events: ['payment.*'],
      retry_schedule_seconds: [],
    })
    await postPayment()
    await waitFor(async () => (await deliveriesOf(destination.id, '?status=failed')).length === 1)
    const [delivery] = await deliveriesOf(destination.id)
    expect(delivery.attempts[0].error).toMatch(/refused: localhost resolved to .*loopback/)
    expect(endpoint.requests).toHaveLength(0)
  })

  it('answers 400 to a malformed destination and 404 to an unknown one', async () => {
    expect((await admin('POST', '/destinations', { url: 'http://127.0.0.1:1/x' })).status).toBe(400)
    expect((await admin('POST', '/destinations', { url: 'http://127.0.0.1:1/x', events: [] })).status).toBe(
      400,
    )
    expect((await admin('POST', '/destinations', { url: 'not a url', events: ['#'] })).status).toBe(400)
    expect(
      (await admin('POST', '/destinations', { url: 'http://127.0.0.1:1/x', events: ['#'], timeout_ms: 5 }))
        .status,
    ).toBe(400)
    expect((await admin('GET', '/destinations/00000000-0000-4000-8000-000000000000')).status).toBe(404)
    expect((await admin('GET', '/destinations/nope')).status).toBe(404)
    expect((await admin('POST', '/deliveries/00000000-0000-4000-8000-000000000000/retry')).status).toBe(404)
    const unauthorized = await fetch(`${gw.url}/admin/destinations`)
    expect(unauthorized.status).toBe(401)
  })

  it('lists deliveries by event across destinations', async () => {
    const first = await receiver()
    const second = await receiver()
    await createDestination({ url: first.url, events: ['payment.*'] })
    await createDestination({ url: second.url, events: ['payment.*'] })
    await postPayment()
    const [request] = await first.waitForRequests(1)
    await second.waitForRequests(1)
    const eventId = String(request!.headers['webhook-id'])
    await waitFor(async () => {
      const found = (await admin('GET', `/deliveries?event_id=${eventId}&status=delivered`)).body.deliveries
      return found.length === 2
    })
  })

  it('removes a destination with DELETE', async () => {
    const endpoint = await receiver()
    const created = await admin('POST', '/destinations', { url: endpoint.url, events: ['#'] })
    expect((await admin('DELETE', `/destinations/${created.body.id}`)).status).toBe(204)
    expect((await admin('GET', `/destinations/${created.body.id}`)).status).toBe(404)
  })
})
