import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { freePort } from '../../src/free-port.ts'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'
import { offered } from '../../src/send/offered.ts'
import { paypalTestCertificate } from '../../src/send/paypal-test-certificate.ts'
import { send, type SendOptions } from '../../src/send/send.ts'
import { uniqueName, useTestDatabase, withChannel, type TestGateway, sink } from '../support/services.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))
const secrets = {
  STRIPE_WEBHOOK_SECRET: 'whsec_send_test',
  GITHUB_WEBHOOK_SECRET: 'github-send-test',
  TWILIO_AUTH_TOKEN: 'twilio-send-test',
  SHOPIFY_WEBHOOK_SECRET: 'shopify-send-test',
  PAYPAL_WEBHOOK_ID: 'SENDTEST0WEBHOOK0ID',
}

/** What the contract says comes out for each offered event: the raw event, then the catalog's internal one. */
const published: Record<string, Record<string, string[]>> = {
  stripe: {
    'payment_intent.succeeded': ['raw.stripe.payment_intent.succeeded', 'payment.completed'],
    'payment_intent.payment_failed': ['raw.stripe.payment_intent.payment_failed', 'payment.failed'],
    'customer.subscription.created': ['raw.stripe.customer.subscription.created', 'subscription.created'],
    'invoice.payment_succeeded': ['raw.stripe.invoice.payment_succeeded', 'invoice.paid'],
    'charge.refunded': ['raw.stripe.charge.refunded'],
    'v1.billing.meter.error_report_triggered': ['raw.stripe.v1.billing.meter.error_report_triggered'],
    'v2.core.event_destination.ping': ['raw.stripe.v2.core.event_destination.ping'],
  },
  github: {
    push: ['raw.github.push', 'git.push'],
    'pull_request.opened': ['raw.github.pull_request.opened', 'pull_request.opened'],
    'issues.opened': ['raw.github.issues.opened', 'issue.opened'],
    'issues.closed': ['raw.github.issues.closed', 'issue.closed'],
    ping: ['raw.github.ping'],
  },
  twilio: {
    'sms.delivered': ['raw.twilio.message.status', 'sms.status_update'],
    'sms.failed': ['raw.twilio.message.status', 'sms.status_update'],
    'call.completed': ['raw.twilio.call.status', 'call.status_update'],
  },
  shopify: {
    'orders/create': ['raw.shopify.orders.create', 'order.created'],
    'orders/paid': ['raw.shopify.orders.paid', 'order.paid'],
    'customers/create': ['raw.shopify.customers.create', 'customer.created'],
  },
  paypal: {
    'PAYMENT.CAPTURE.COMPLETED': ['raw.paypal.PAYMENT.CAPTURE.COMPLETED', 'payment.completed'],
    'PAYMENT.CAPTURE.DENIED': ['raw.paypal.PAYMENT.CAPTURE.DENIED', 'payment.failed'],
    'BILLING.SUBSCRIPTION.CREATED': ['raw.paypal.BILLING.SUBSCRIPTION.CREATED', 'subscription.created'],
  },
}

const db = useTestDatabase()
let gw: TestGateway
/** The sender's environment: what .env would give npm run send next to this gateway. */
let senderEnv: Record<string, string | undefined>
/** Where the send tool keeps its PayPal test CA, instead of the working directory's .send/. */
let stateDir: string

async function sendQuietly(options: Omit<SendOptions, 'stdout' | 'stderr' | 'stateDir'>) {
  const stdout = sink()
  const stderr = sink()
  const result = await send({ stateDir, ...options, stdout: stdout.stream, stderr: stderr.stream })
  return { result, stdout: stdout.text(), stderr: stderr.text() }
}

beforeAll(async () => {
  stateDir = mkdtempSync(join(tmpdir(), 'send-test-'))
  db.defer(async () => rmSync(stateDir, { recursive: true, force: true }))
  // The gateway reads PAYPAL_CA_FILE when it starts, so the send tool's test CA comes first.
  const { caFile } = paypalTestCertificate(stateDir)
  const paypalTrust = { PAYPAL_CERT_ORIGINS: `http://127.0.0.1:${await freePort()}`, PAYPAL_CA_FILE: caFile }
  gw = await db.startGateway({ ...secrets, ...paypalTrust })
  await gw.gateway.publisher.whenConnected()
  senderEnv = {
    ...secrets,
    ...paypalTrust,
    GATEWAY_URL: gw.url,
    AMQP_URL: gw.config.amqpUrl,
    AMQP_EXCHANGE: gw.config.exchange,
  }
})

describe('send', () => {
  it('offers exactly the events this file checks', () => {
    const offeredEvents = Object.fromEntries(
      Object.entries(offered).map(([provider, offer]) => [provider, [...offer.events]]),
    )
    const checked = Object.fromEntries(
      Object.entries(published).map(([provider, events]) => [provider, Object.keys(events)]),
    )
    expect(offeredEvents).toEqual(checked)
  })

  const cases = Object.entries(published).flatMap(([provider, events]) =>
    Object.entries(events).map(([event, routingKeys]) => ({ provider, event, routingKeys })),
  )
  it.each(cases)(
    'send({ provider: $provider, event: $event }) is accepted and its events come out on RabbitMQ',
    async ({ provider, event, routingKeys }) => {
      const { result, stdout, stderr } = await sendQuietly({ provider, event, env: senderEnv })

      expect(result.exitCode, stdout + stderr).toBe(0)
      const [delivery] = result.deliveries
      expect(delivery).toMatchObject({
        status: 200,
        outcome: 'accepted',
        answer: { status: 'accepted', id: expect.any(String) },
      })
      expect(delivery!.events.map((seen) => seen.routingKey).sort()).toEqual([...routingKeys].sort())
      for (const seen of delivery!.events) {
        expect(seen.event).toMatchObject({
          specversion: '1.0',
          type: seen.routingKey,
          source: `/webhooks/${provider}`,
          provider,
          webhookid: delivery!.webhookId,
        })
        expect(stdout).toContain(`\n${seen.routingKey}\n`)
      }
      expect(stdout).toContain(`200 {"status":"accepted","id":"${delivery!.webhookId}"}`)
      // The gateway was set up to trust the test certificate, so there is nothing to explain.
      expect(stderr).toBe('')
    },
  )

  it('maps the realistic payloads to the catalog data (a payment, an order, a call)', async () => {
    const dataOf = async (provider: string, event: string, type: string) => {
      const { result } = await sendQuietly({ provider, event, env: senderEnv })
      const seen = result.deliveries[0]!.events.find((candidate) => candidate.routingKey === type)
      return (seen?.event as { data?: Record<string, unknown> } | undefined)?.data
    }
    expect(await dataOf('stripe', 'payment_intent.succeeded', 'payment.completed')).toMatchObject({
      amount: 20,
      amount_minor: 2000,
      currency: 'USD',
      customer_id: 'cus_RkLmNoPqRsTuVw',
      provider: 'stripe',
    })
    expect(await dataOf('paypal', 'PAYMENT.CAPTURE.COMPLETED', 'payment.completed')).toMatchObject({
      amount: 49.8,
      amount_minor: 4980,
      currency: 'EUR',
      provider: 'paypal',
    })
    expect(await dataOf('shopify', 'orders/create', 'order.created')).toMatchObject({
      total_price: '49.80',
      currency: 'EUR',
      line_items_count: 2,
      shop_domain: 'example-store.myshopify.com',
    })
    expect(await dataOf('twilio', 'call.completed', 'call.status_update')).toMatchObject({
      status: 'completed',
      duration: 42,
    })
  })

  it('send({ count: 5, rate: 50 }) sends five new events, all accepted, and sums them up', async () => {
    const { result, stdout } = await sendQuietly({
      provider: 'stripe',
      event: 'payment_intent.succeeded',
      count: 5,
      rate: 50,
      env: senderEnv,
    })

    expect(result.exitCode).toBe(0)
    expect(result.deliveries.map((delivery) => delivery.outcome)).toEqual(Array(5).fill('accepted'))
    expect(new Set(result.deliveries.map((delivery) => delivery.webhookId)).size).toBe(5)
    expect(new Set(result.deliveries.map((delivery) => delivery.providerId)).size).toBe(5)
    for (const delivery of result.deliveries) expect(delivery.events).toHaveLength(2)
    expect(stdout).toContain('answers: 5 accepted, 0 duplicate, 0 rejected')
    expect(stdout).toMatch(/answer time: p50 [\d.]+ ms, p99 [\d.]+ ms/)
    expect(stdout).toContain(': 10 of 10 expected, for 5 accepted webhooks')
    // Count mode sums events up rather than printing them.
    expect(stdout).not.toContain('"specversion"')
  })

  it('signs Twilio over PUBLIC_BASE_URL when the gateway rebuilds the URL from it', async () => {
    const publicBase = { PUBLIC_BASE_URL: 'https://hooks.example.com' }
    // Intake only: the file's gateway, on the same database, publishes what this one stores.
    const proxied = await db.startGateway({ ...secrets, ...publicBase, ROLE: 'api' })
    const env = { ...senderEnv, ...publicBase, GATEWAY_URL: proxied.url }

    const { result } = await sendQuietly({ provider: 'twilio', event: 'sms.delivered', env })

    expect(result.exitCode).toBe(0)
    expect(result.deliveries[0]!.events.map((seen) => seen.routingKey)).toContain('sms.status_update')
  })

  it('still sends when RabbitMQ is unreachable, and says the events cannot be shown', async () => {
    const env = { ...senderEnv, AMQP_URL: `amqp://guest:guest@127.0.0.1:${await freePort()}` }

    const { result, stdout } = await sendQuietly({ provider: 'github', event: 'ping', env })

    expect(result.exitCode).toBe(0)
    expect(result.deliveries[0]!.outcome).toBe('accepted')
    expect(result.eventsUnavailable).toContain('cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:')
    expect(stdout).toContain('events: not shown (cannot connect to RabbitMQ')
  })

  describe('without AMQP_URL', () => {
    const adminToken = 'send-admin-token'
    /** A gateway with the admin API on; the file's gateway, on the same database, publishes what it stores. */
    const adminGateway = () => db.startGateway({ ...secrets, ADMIN_TOKEN: adminToken, ROLE: 'api' })

    it('reads the events from the gateway’s admin API, and says so', async () => {
      const withAdmin = await adminGateway()
      const env = { ...senderEnv, AMQP_URL: '', ADMIN_TOKEN: adminToken, GATEWAY_URL: withAdmin.url }

      const { result, stdout, stderr } = await sendQuietly({
        provider: 'stripe',
        event: 'payment_intent.succeeded',
        env,
      })

      expect(result.exitCode, stdout + stderr).toBe(0)
      const [delivery] = result.deliveries
      expect(delivery!.events.map((seen) => seen.routingKey)).toEqual([
        'raw.stripe.payment_intent.succeeded',
        'payment.completed',
      ])
      for (const seen of delivery!.events) {
        expect(seen.event).toMatchObject({
          specversion: '1.0',
          type: seen.routingKey,
          webhookid: delivery!.webhookId,
        })
        expect(stdout).toContain(`\n${seen.routingKey}\n`)
      }
      expect(stdout).toContain("\n2 events from the gateway's admin API (no broker configured):\n")
      // Read once processed: nothing to say about the webhook's state.
      expect(stdout).not.toContain('not processed yet')
      expect(stderr).toBe('')
    })

    it('sums up the events read from the admin API when sending several', async () => {
      const withAdmin = await adminGateway()
      const { AMQP_URL: _broker, ...rest } = senderEnv
      const env = { ...rest, ADMIN_TOKEN: adminToken, GATEWAY_URL: withAdmin.url }

      const { result, stdout } = await sendQuietly({ provider: 'github', event: 'push', count: 3, env })

      expect(result.exitCode).toBe(0)
      expect(stdout).toContain(
        "events seen from the gateway's admin API (no broker configured): 6 of 6 expected, for 3 accepted webhooks",
      )
    })

    it('says the events cannot be shown when ADMIN_TOKEN is not set either, and exits 0', async () => {
      const { AMQP_URL: _broker, ...env } = senderEnv

      const { result, stdout } = await sendQuietly({ provider: 'github', event: 'ping', env })

      expect(result.exitCode).toBe(0)
      expect(stdout).toMatch(/^200 \{"status":"accepted"/m)
      expect(stdout).toContain(
        "\nevents: not shown (no AMQP_URL to watch RabbitMQ and no ADMIN_TOKEN to read the gateway's admin API: " +
          'set AMQP_URL or ADMIN_TOKEN)\n',
      )
    })

    it('says in one line that the admin API refused a wrong ADMIN_TOKEN', async () => {
      const withAdmin = await adminGateway()
      const env = { ...senderEnv, AMQP_URL: '', ADMIN_TOKEN: 'not-the-token', GATEWAY_URL: withAdmin.url }

      const { result, stdout, stderr } = await sendQuietly({
        provider: 'shopify',
        event: 'orders/create',
        env,
      })

      expect(result.exitCode).toBe(0)
      expect(stdout).toContain(
        "\nevents: not shown (the gateway's admin API refused ADMIN_TOKEN (401): give npm run send the " +
          "gateway's ADMIN_TOKEN)\n",
      )
      expect(stderr).toBe('')
    })

    it('says in one line when the gateway has no admin API', async () => {
      // The file's gateway runs without ADMIN_TOKEN: /admin answers 404.
      const env = { ...senderEnv, AMQP_URL: '', ADMIN_TOKEN: adminToken }

      const { result, stdout } = await sendQuietly({ provider: 'twilio', event: 'sms.failed', env })

      expect(result.exitCode).toBe(0)
      expect(stdout).toMatch(
        /\nevents: not shown \(the gateway answers 404 for GET \/admin\/webhooks\/[0-9a-f-]{36}: is ADMIN_TOKEN set where it runs\?\)\n/,
      )
    })
  })

  it('exits 1 when the gateway refuses the signature, with a hint about the secret', async () => {
    const env = { ...senderEnv, SHOPIFY_WEBHOOK_SECRET: 'not-the-gateways-secret' }

    const { result, stderr } = await sendQuietly({ provider: 'shopify', event: 'orders/paid', env })

    expect(result.exitCode).toBe(1)
    expect(result.deliveries[0]).toMatchObject({ status: 401, outcome: 'rejected' })
    expect(stderr).toContain('SHOPIFY_WEBHOOK_SECRET must hold the same value')
  })

  it('explains which gateway variables trust the PayPal test certificate when the gateway does not', async () => {
    // The sender serves its certificate on an origin the gateway does not list, and knows no PAYPAL_CA_FILE.
    const origin = `http://127.0.0.1:${await freePort()}`
    const env = { ...senderEnv, PAYPAL_CERT_ORIGINS: origin, PAYPAL_CA_FILE: '' }

    const { result, stderr } = await sendQuietly({ provider: 'paypal', event: 'PAYMENT.CAPTURE.DENIED', env })

    expect(result.exitCode).toBe(1)
    expect(result.deliveries[0]).toMatchObject({ status: 401, outcome: 'rejected' })
    expect(stderr).toContain(`  PAYPAL_CERT_ORIGINS=${origin}\n`)
    expect(stderr).toContain(`  PAYPAL_CA_FILE=${join(stateDir, 'paypal', 'ca.pem')}\n`)
    expect(stderr).toContain('paypal: see the note above on trusting the test certificate')
  })

  it('says so when no event comes out for an accepted webhook', async () => {
    // An exchange no gateway publishes to: the webhook is accepted, its events go to the gateway's own.
    const elsewhere = uniqueName('send_elsewhere')
    await withChannel((channel) => channel.assertExchange(elsewhere, 'topic', { autoDelete: false }))
    db.defer(() => withChannel((channel) => channel.deleteExchange(elsewhere)))
    const env = { ...senderEnv, AMQP_EXCHANGE: elsewhere }

    const { result, stdout, stderr } = await sendQuietly({
      provider: 'stripe',
      event: 'payment_intent.payment_failed',
      env,
      eventWaitMs: 300,
    })

    expect(result.exitCode).toBe(0)
    expect(result.deliveries[0]!.events).toEqual([])
    expect(stdout).toContain(
      `no events on the RabbitMQ exchange "${elsewhere}" for webhook ${result.deliveries[0]!.webhookId}`,
    )
    expect(stderr).toContain('GET /health: {"postgres":"up"')
  })

  it('exits 2 and lists the offered events for an unknown event', async () => {
    const { result, stderr } = await sendQuietly({
      provider: 'stripe',
      event: 'no.such.event',
      env: senderEnv,
    })

    expect(result).toEqual({ exitCode: 2, deliveries: [] })
    expect(stderr).toContain('stripe has no event "no.such.event"')
    for (const event of offered.stripe.events) expect(stderr).toContain(event)
  })

  it('exits 2 and lists every provider for an unknown provider', async () => {
    const { result, stderr } = await sendQuietly({
      provider: 'square',
      event: 'payment.created',
      env: senderEnv,
    })

    expect(result.exitCode).toBe(2)
    for (const provider of Object.keys(offered)) expect(stderr).toContain(`  ${provider}`)
  })

  it('exits 2 when the provider has no secret to sign with', async () => {
    const { result, stderr } = await sendQuietly({
      provider: 'github',
      event: 'push',
      env: { ...senderEnv, GITHUB_WEBHOOK_SECRET: '' },
    })

    expect(result.exitCode).toBe(2)
    expect(stderr).toContain('GITHUB_WEBHOOK_SECRET is not set')
  })
})

describe('npm run send', () => {
  /** The script as a developer runs it, with the sender's variables in its environment. */
  function npmRunSend(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const child = spawn('npm', ['run', '--silent', 'send', '--', ...args], {
      cwd: root,
      env: { ...process.env, ...senderEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => (stdout += chunk))
    child.stderr.on('data', (chunk) => (stderr += chunk))
    return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })))
  }

  it('npm run send -- stripe payment_intent.succeeded prints the answer and the events, and exits 0', async () => {
    const { code, stdout, stderr } = await npmRunSend(['stripe', 'payment_intent.succeeded'])

    expect(code, stderr).toBe(0)
    expect(stdout).toMatch(/^200 \{"status":"accepted","id":"[0-9a-f-]{36}"\}/m)
    expect(stdout).toContain('\nraw.stripe.payment_intent.succeeded\n')
    expect(stdout).toContain('\npayment.completed\n')
  })

  it('npm run send -- stripe no.such.event exits 2 with the offered events', async () => {
    const { code, stderr } = await npmRunSend(['stripe', 'no.such.event'])

    expect(code).toBe(2)
    expect(stderr).toContain('payment_intent.succeeded')
  })
})
