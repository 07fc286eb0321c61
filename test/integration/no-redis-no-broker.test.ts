import { beforeAll, describe, expect, it } from 'vitest'
import { startReceiver, verifyStandardWebhook } from '../support/receiver.ts'
import { adminApi, useTestDatabase, waitFor, type TestGateway } from '../support/services.ts'
import { paymentIntentSucceeded, stripeDelivery } from '../support/signed.ts'

/**
 * The embedded defaults past the database: REDIS_URL and AMQP_URL unset (empty means unset). The database is
 * the real Postgres of the other tests; the embedded one has its own test file.
 */

const secret = 'whsec_no_services'
const adminToken = 'admin-no-services'
const db = useTestDatabase()
let gw: TestGateway

beforeAll(async () => {
  gw = await db.startGateway({
    REDIS_URL: '',
    AMQP_URL: '',
    STRIPE_WEBHOOK_SECRET: secret,
    ADMIN_TOKEN: adminToken,
    ALLOW_HTTP_DESTINATIONS: 'true',
    DESTINATION_ALLOWED_HOSTS: '127.0.0.1',
    DELIVERY_POLL_MS: '50',
    FAILED_VERIFY_LIMIT: '3',
  })
})

const admin = adminApi(() => gw, adminToken)

async function postPayment(): Promise<string> {
  const { body, headers } = stripeDelivery(paymentIntentSucceeded({ amount: 4200 }), { secret })
  const answer = (await (await gw.post('/webhooks/stripe', body, headers)).json()) as {
    status: string
    id: string
  }
  expect(answer.status).toBe('accepted')
  return answer.id
}

const sample = (text: string, series: string): number | undefined => {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

describe('no broker (AMQP_URL unset)', () => {
  it('maps the events, keeps them with the webhook, and delivers them verified to a destination', async () => {
    const endpoint = await startReceiver()
    db.defer(() => endpoint.close())
    const created = await admin('POST', '/destinations', { url: endpoint.url, events: ['payment.*'] })
    expect(created.status).toBe(201)
    db.defer(() => admin('DELETE', `/destinations/${created.body.id}`))

    const id = await postPayment()
    const [request] = await endpoint.waitForRequests(1)
    const delivered = verifyStandardWebhook(request!, created.body.secret) as any
    expect(delivered).toMatchObject({
      type: 'payment.completed',
      webhookid: id,
      data: { amount_minor: 4200 },
    })

    await waitFor(async () => (await admin('GET', `/webhooks/${id}`)).body.status === 'published')
    const detail = (await admin('GET', `/webhooks/${id}`)).body
    expect(detail.events.map((event: any) => event.routing_key)).toEqual([
      'raw.stripe.payment_intent.succeeded',
      'payment.completed',
    ])
    expect(detail.published_event_ids).toContain(delivered.id)
  })

  it('leaves nothing waiting as a backlog, and no metric counts one', async () => {
    const ids = await Promise.all(Array.from({ length: 20 }, () => postPayment()))
    await waitFor(async () => {
      const { body } = await admin('GET', '/webhooks?status=pending&limit=1000')
      return !body.webhooks.some((webhook: any) => ids.includes(webhook.id))
    })
    const text = await (await fetch(`${gw.url}/metrics`)).text()
    expect(sample(text, 'webhooks_unpublished{status="pending"}')).toBe(0)
    expect(sample(text, 'webhooks_unpublished{status="retrying"}')).toBe(0)
    expect(sample(text, 'webhooks_oldest_unpublished_age_seconds')).toBe(0)
    // Off is not down: only what is configured is reported.
    expect(sample(text, 'dependency_up{dependency="postgres"}')).toBe(1)
    expect(text).not.toMatch(/dependency_up\{dependency="(rabbitmq|redis)"\}/)
  })
})

describe('no Redis (REDIS_URL unset)', () => {
  it('answers /health ok, with the services not configured as off', async () => {
    const response = await fetch(`${gw.url}/health`)
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({
      status: 'ok',
      checks: { postgres: 'up', redis: 'off', rabbitmq: 'off' },
    })
  })

  it('counts failed verifications in the process: 429 past the limit, verified traffic untouched', async () => {
    const forged = stripeDelivery(paymentIntentSucceeded(), { secret: 'whsec_wrong' })
    const statuses: number[] = []
    for (let i = 0; i < 5; i++)
      statuses.push((await gw.post('/webhooks/stripe', forged.body, forged.headers)).status)
    expect(statuses).toEqual([401, 401, 401, 429, 429])
    await postPayment()
  })

  it('keeps the rejection log in the process, with the reason per secret', async () => {
    const forged = stripeDelivery(paymentIntentSucceeded(), { secret: 'whsec_other' })
    await gw.post('/webhooks/stripe', forged.body, forged.headers)
    const { status, body } = await admin('GET', '/rejections?provider=stripe&limit=50')
    expect(status).toBe(200)
    expect(body.rejections.length).toBeGreaterThan(0)
    expect(body.rejections[0]).toMatchObject({ provider: 'stripe', secretsTried: 1 })
    expect(body.rejections[0].reasons[0]).toMatch(/^secret 1: /)
  })
})
