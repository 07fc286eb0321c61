import { randomBytes, randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { LinearWebhookClient } from '@linear/sdk/webhooks'
import { isValidSlackRequest } from '@slack/bolt'
import { WebhooksHelper } from 'square'
import { Webhook as StandardWebhook } from 'standardwebhooks'
import { beforeAll, describe, expect, it } from 'vitest'
import { signedHeaders } from '../../providers/configured.ts'
import { startReceiver, verifyStandardWebhook, type Receiver } from '../support/receiver.ts'
import {
  adminApi,
  flushRedisPrefix,
  useTestDatabase,
  waitFor,
  type Capture,
  type Received,
  type TestGateway,
} from '../support/services.ts'
import { librarySigned } from '../support/signed.ts'

// PROVIDERS_FILE: CONTRACT.md's example as written there (clerk, acme, slack), then linear, square and intercom.
const contractExample = fileURLToPath(new URL('../fixtures/providers/contract-example.yaml', import.meta.url))
const publicBaseUrl = 'https://hooks.example.com'
const adminToken = 'configured-providers-admin'
const secrets = {
  CLERK_WEBHOOK_SECRET: `whsec_${randomBytes(24).toString('base64')}`,
  // Rotating: the new secret first, the old one still accepted.
  ACME_WEBHOOK_SECRET: 'acme-current,acme-previous',
  SLACK_SIGNING_SECRET: '8f742231b10e8888abcd99yyyzzz85a5',
  LINEAR_WEBHOOK_SECRET: 'lin_wh_configured_providers',
  SQUARE_SIGNATURE_KEY: 'square-configured-providers',
  INTERCOM_CLIENT_SECRET: 'intercom-configured-providers',
}
const secretOf = {
  clerk: secrets.CLERK_WEBHOOK_SECRET,
  acme: 'acme-current',
  slack: secrets.SLACK_SIGNING_SECRET,
  linear: secrets.LINEAR_WEBHOOK_SECRET,
  square: secrets.SQUARE_SIGNATURE_KEY,
  intercom: secrets.INTERCOM_CLIENT_SECRET,
}
type Name = keyof typeof secretOf

const db = useTestDatabase()
let gw: TestGateway
let events: Capture

beforeAll(async () => {
  const env: Record<string, string> = {
    PROVIDERS_FILE: contractExample,
    PUBLIC_BASE_URL: publicBaseUrl,
    ADMIN_TOKEN: adminToken,
    ALLOW_HTTP_DESTINATIONS: 'true',
    DESTINATION_ALLOWED_HOSTS: '127.0.0.1',
    DELIVERY_POLL_MS: '50',
    FAILED_VERIFY_LIMIT: '1000',
    ...secrets,
  }
  gw = await db.startGateway(env)
  // The rejection log lives in Redis under this file's own prefix: removed with the file.
  db.defer(() => flushRedisPrefix(gw.gateway, gw.config.redisPrefix))
  events = await db.captureEvents(gw.config)
})

const specOf = (name: Name) => gw.config.configuredProviders.find((spec) => spec.name === name)!
const urlOf = (name: string) => `${publicBaseUrl}/webhooks/${name}`

interface Signed {
  readonly body: string
  readonly headers: Record<string, string>
}

/** A delivery signed as `name`'s sender signs it (providers/configured.ts signedHeaders). */
function signed(
  name: Name,
  body: string,
  options: { id?: string; at?: Date; secret?: string; contentType?: string } = {},
): Signed {
  const headers = signedHeaders(specOf(name), options.secret ?? secretOf[name], {
    body: Buffer.from(body),
    url: urlOf(name),
    id: options.id ?? randomUUID(),
    at: options.at ?? new Date(),
  })
  return { body, headers: { 'content-type': options.contentType ?? 'application/json', ...headers } }
}

interface Answer {
  readonly status: number
  readonly text: string
  readonly body: any
}

async function post(name: string, delivery: Signed, requestId?: string): Promise<Answer> {
  const response = await gw.post(`/webhooks/${name}`, delivery.body, {
    ...delivery.headers,
    ...(requestId ? { 'x-request-id': requestId } : {}),
  })
  const text = await response.text()
  let body: any
  try {
    body = JSON.parse(text)
  } catch {
    body = undefined
  }
  return { status: response.status, text, body }
}

/** Posts and expects `accepted`; the webhook's id. */
async function accepted(name: string, delivery: Signed): Promise<string> {
  const answer = await post(name, delivery)
  expect(answer.status, answer.text).toBe(200)
  expect(answer.body).toEqual({ status: 'accepted', id: expect.stringMatching(/^[0-9a-f-]{36}$/) })
  return answer.body.id
}

const admin = adminApi(() => gw, adminToken)

/** The raw event published for a webhook, once it is. */
async function rawEventOf(webhookId: string): Promise<Received> {
  const messages = await events.waitFor((all) =>
    all.some((m) => m.event.webhookid === webhookId && m.routingKey.startsWith('raw.')),
  )
  return messages.find((m) => m.event.webhookid === webhookId && m.routingKey.startsWith('raw.'))!
}

/** The value of one sample, e.g. `webhooks_received_total{provider="acme",outcome="accepted"}`. */
async function sample(series: string): Promise<number | undefined> {
  const text = await (await fetch(`${gw.url}/metrics`)).text()
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

/** The rejection log's entry for a request id, once it is there. */
async function rejection(provider: string, requestId: string): Promise<any> {
  return waitFor(async () => {
    const { status, body } = await admin('GET', `/rejections?provider=${provider}&limit=200`)
    expect(status).toBe(200)
    return (body.rejections as any[]).find((entry) => entry.requestId === requestId)
  })
}

const acmeEvent = (type: string, fields: Record<string, unknown> = {}) =>
  JSON.stringify({
    event: { type },
    invoice: { id: `in_${randomBytes(4).toString('hex')}`, amount: 4200 },
    ...fields,
  })

/** One realistic delivery per sender: its body and headers, the routing key and event id it should have. */
function deliveries() {
  const clerkId = `msg_${randomBytes(8).toString('hex')}`
  const clerkBody = JSON.stringify({
    type: 'user.created',
    object: 'event',
    data: { id: 'user_29w83sxmDNGwOuEthce5gg56FcC', email_addresses: [] },
  })
  const now = new Date()
  // Clerk delivers through Svix: svix-* headers, signed by Svix's own library.
  const clerk: Signed = {
    body: clerkBody,
    headers: {
      'content-type': 'application/json',
      ...librarySigned('svix', secrets.CLERK_WEBHOOK_SECRET, clerkId, now, clerkBody),
    },
  }
  const acmeId = `dlv_${randomBytes(6).toString('hex')}`
  const slackEventId = `Ev${randomBytes(5).toString('hex').toUpperCase()}`
  const linearDelivery = randomUUID()
  const squareEventId = randomUUID()
  const intercomId = `notif_${randomUUID()}`
  return {
    clerk: { delivery: clerk, routingKey: 'raw.clerk.user.created', key: clerkId },
    acme: {
      delivery: signed('acme', acmeEvent('invoice.paid'), { id: acmeId }),
      routingKey: 'raw.acme.invoice.paid',
      key: acmeId,
    },
    slack: {
      delivery: signed(
        'slack',
        JSON.stringify({
          token: 'XXYYZZ',
          team_id: 'T123ABC456',
          api_app_id: 'A123ABC456',
          event: { type: 'app_mention', user: 'U123ABC456', text: 'hello', channel: 'C123ABC456' },
          type: 'event_callback',
          event_id: slackEventId,
          event_time: Math.floor(Date.now() / 1000),
        }),
      ),
      routingKey: 'raw.slack.app_mention',
      key: slackEventId,
    },
    linear: {
      delivery: signed(
        'linear',
        JSON.stringify({
          action: 'create',
          type: 'Issue',
          data: { id: randomUUID(), title: 'Crash on start' },
          createdAt: new Date().toISOString(),
          webhookTimestamp: Date.now(),
          webhookId: randomUUID(),
        }),
        { id: linearDelivery },
      ),
      routingKey: 'raw.linear.Issue.create',
      key: linearDelivery,
    },
    square: {
      delivery: signed(
        'square',
        JSON.stringify({
          merchant_id: '6SSW7HV8K2ST5',
          type: 'payment.updated',
          event_id: squareEventId,
          created_at: new Date().toISOString(),
          data: {
            type: 'payment',
            id: 'KkAkhdMsgzn59SM8A89WgKwekxLZY',
            object: { payment: { status: 'COMPLETED' } },
          },
        }),
      ),
      routingKey: 'raw.square.payment.updated',
      key: squareEventId,
    },
    intercom: {
      delivery: signed(
        'intercom',
        JSON.stringify({
          type: 'notification_event',
          app_id: 'abc123',
          id: intercomId,
          topic: 'conversation.user.created',
          created_at: Math.floor(Date.now() / 1000),
          data: { item: { type: 'conversation', id: '147' } },
        }),
      ),
      routingKey: 'raw.intercom.conversation.user.created',
      key: intercomId,
    },
  } satisfies Record<Name, { delivery: Signed; routingKey: string; key: string }>
}

describe('providers by configuration', () => {
  it('signs deliveries that the senders’ own libraries verify', async () => {
    const all = deliveries()
    // Svix signed clerk's; the others are ours, checked with each sender's library where one exists.
    expect(
      new StandardWebhook(secrets.CLERK_WEBHOOK_SECRET).verify(all.clerk.delivery.body, {
        'webhook-id': all.clerk.delivery.headers['svix-id']!,
        'webhook-timestamp': all.clerk.delivery.headers['svix-timestamp']!,
        'webhook-signature': all.clerk.delivery.headers['svix-signature']!,
      }),
    ).toBeTruthy()
    expect(
      isValidSlackRequest({
        signingSecret: secrets.SLACK_SIGNING_SECRET,
        body: all.slack.delivery.body,
        headers: {
          'x-slack-signature': all.slack.delivery.headers['x-slack-signature']!,
          'x-slack-request-timestamp': Number(all.slack.delivery.headers['x-slack-request-timestamp']),
        },
      }),
    ).toBe(true)
    expect(
      new LinearWebhookClient(secrets.LINEAR_WEBHOOK_SECRET).verify(
        Buffer.from(all.linear.delivery.body),
        all.linear.delivery.headers['linear-signature']!,
      ),
    ).toBe(true)
    expect(
      await WebhooksHelper.verifySignature({
        requestBody: all.square.delivery.body,
        signatureHeader: all.square.delivery.headers['x-square-hmacsha256-signature']!,
        signatureKey: secrets.SQUARE_SIGNATURE_KEY,
        notificationUrl: urlOf('square'),
      }),
    ).toBe(true)
  })

  it('accepts a delivery from each sender and publishes it as raw.<name>.<type>', async () => {
    const all = deliveries()
    const ids = {} as Record<Name, string>
    for (const [name, { delivery }] of Object.entries(all)) ids[name as Name] = await accepted(name, delivery)

    for (const [name, { delivery, routingKey, key }] of Object.entries(all)) {
      const message = await rawEventOf(ids[name as Name])
      expect(message.routingKey, name).toBe(routingKey)
      expect(message.event, name).toMatchObject({
        specversion: '1.0',
        type: routingKey,
        source: `/webhooks/${name}`,
        datacontenttype: 'application/json',
        provider: name,
        providereventid: key,
        webhookid: ids[name as Name],
        data: JSON.parse(delivery.body),
      })
      expect(message.properties).toMatchObject({
        messageId: message.event.id,
        contentType: 'application/cloudevents+json',
      })
    }
  })

  it('accepts clerk with webhook-* headers signed by the standardwebhooks package (OpenAI’s, Replicate’s)', async () => {
    const id = `msg_${randomBytes(8).toString('hex')}`
    const at = new Date()
    const body = JSON.stringify({ type: 'session.created', data: { id: 'sess_1' } })
    const webhookId = await accepted('clerk', {
      body,
      headers: {
        'content-type': 'application/json',
        ...librarySigned('standardwebhooks', secrets.CLERK_WEBHOOK_SECRET, id, at, body),
      },
    })
    expect((await rawEventOf(webhookId)).routingKey).toBe('raw.clerk.session.created')
  })

  it('counts accepted deliveries per configured provider in /metrics', async () => {
    const series = 'webhooks_received_total{provider="acme",outcome="accepted"}'
    const before = await sample(series)
    expect(before).toBeDefined()
    await accepted('acme', signed('acme', acmeEvent('invoice.paid')))
    expect(await sample(series)).toBe(before! + 1)
    expect(
      await sample('webhooks_received_total{provider="slack",outcome="invalid_signature"}'),
    ).toBeDefined()
  })

  it('answers a redelivery as a duplicate with the first id, and publishes nothing new', async () => {
    const delivery = signed('acme', acmeEvent('invoice.paid'), { id: 'dlv_duplicate_1' })
    const first = await accepted('acme', delivery)
    await rawEventOf(first)
    // A retry: the same delivery id, signed again later.
    const again = await post('acme', signed('acme', delivery.body, { id: 'dlv_duplicate_1' }))
    expect(again.status).toBe(200)
    expect(again.body).toEqual({ status: 'duplicate', id: first })
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(events.messages.filter((m) => m.event.providereventid === 'dlv_duplicate_1')).toHaveLength(1)
  })

  it('republishes the same CloudEvent id when replayed through the admin API', async () => {
    const webhookId = await accepted('acme', signed('acme', acmeEvent('invoice.paid')))
    const first = await rawEventOf(webhookId)
    await waitFor(async () => (await admin('GET', `/webhooks/${webhookId}`)).body.status === 'published')
    const replay = await admin('POST', `/webhooks/${webhookId}/replay`)
    expect(replay.status).toBe(202)
    const published = await events.waitFor(
      (all) => all.filter((m) => m.event.webhookid === webhookId).length >= 2,
    )
    const raw = published.filter((m) => m.event.webhookid === webhookId)
    expect(raw.map((m) => m.event.id)).toEqual([first.event.id, first.event.id])
    expect(raw[1]!.routingKey).toBe('raw.acme.invoice.paid')
  })

  it('delivers raw.acme.* to an HTTP destination that verifies it as Standard Webhooks', async () => {
    const endpoint: Receiver = await startReceiver()
    db.defer(() => endpoint.close())
    const created = await admin('POST', '/destinations', { url: endpoint.url, events: ['raw.acme.*'] })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    db.defer(() => admin('DELETE', `/destinations/${created.body.id}`))

    const body = acmeEvent('deployed', { release: 'v1.2.3' })
    const webhookId = await accepted('acme', signed('acme', body))
    const [request] = await endpoint.waitForRequests(1)
    const event = verifyStandardWebhook(request!, created.body.secret) as any
    expect(event).toMatchObject({
      type: 'raw.acme.deployed',
      source: '/webhooks/acme',
      provider: 'acme',
      webhookid: webhookId,
      data: JSON.parse(body),
    })
    expect(request!.headers['webhook-id']).toBe(event.id)
    expect((await rawEventOf(webhookId)).event.id).toBe(event.id)
  })

  it('accepts a delivery signed with either secret while ACME_WEBHOOK_SECRET rotates', async () => {
    await accepted('acme', signed('acme', acmeEvent('invoice.paid'), { secret: 'acme-current' }))
    await accepted('acme', signed('acme', acmeEvent('invoice.paid'), { secret: 'acme-previous' }))
  })

  it('refuses a forged delivery with 401 and logs why, secret by secret', async () => {
    const forged = signed('acme', acmeEvent('invoice.paid'), { secret: 'acme-someone-else' })
    const answer = await post('acme', forged, 'cfg-forged')
    expect(answer.status).toBe(401)
    expect(answer.body).toEqual({ error: 'invalid signature' })
    const entry = await rejection('acme', 'cfg-forged')
    expect(entry).toMatchObject({
      provider: 'acme',
      outcome: 'invalid_signature',
      status: 401,
      secretsTried: 2,
    })
    expect(entry.reasons).toEqual([
      'secret 1: acme: x-acme-signature does not match',
      'secret 2: acme: x-acme-signature does not match',
    ])
  })

  it('refuses a stale and a future timestamp with 401, the log saying which', async () => {
    const stale = signed('acme', acmeEvent('invoice.paid'), { at: new Date(Date.now() - 400_000) })
    const future = signed('acme', acmeEvent('invoice.paid'), { at: new Date(Date.now() + 400_000) })
    expect((await post('acme', stale, 'cfg-stale')).status).toBe(401)
    expect((await post('acme', future, 'cfg-future')).status).toBe(401)
    const staleEntry = await rejection('acme', 'cfg-stale')
    expect(staleEntry.reasons[0]).toMatch(
      /^secret 1: acme: timestamp 40\d s in the past, outside the 300 s tolerance$/,
    )
    expect(staleEntry.reasons[1]).toBe('secret 2: acme: x-acme-signature does not match')
    const futureEntry = await rejection('acme', 'cfg-future')
    expect(futureEntry.reasons[0]).toMatch(
      /^secret 1: acme: timestamp (39\d|40\d) s in the future, outside the 300 s tolerance$/,
    )
  })

  it('refuses a clerk delivery outside the tolerance', async () => {
    const id = `msg_${randomBytes(8).toString('hex')}`
    const at = new Date(Date.now() - 600_000)
    const body = JSON.stringify({ type: 'user.created', data: {} })
    const answer = await post('clerk', {
      body,
      headers: {
        'content-type': 'application/json',
        ...librarySigned('svix', secrets.CLERK_WEBHOOK_SECRET, id, at, body),
      },
    })
    expect(answer.status).toBe(401)
  })

  it('answers 400 naming the missing event id, and stores nothing', async () => {
    const delivery = signed('acme', acmeEvent('invoice.paid'))
    const { ['x-acme-delivery']: _, ...headers } = delivery.headers
    const answer = await post('acme', { body: delivery.body, headers }, 'cfg-no-id')
    expect(answer.status).toBe(400)
    expect(answer.body).toEqual({ error: 'acme: no event id in the delivery' })
    expect((await rejection('acme', 'cfg-no-id')).outcome).toBe('malformed')
  })

  it('answers 400 naming a missing event type, or a verified body that is not JSON', async () => {
    const untyped = await post('acme', signed('acme', JSON.stringify({ event: {} })))
    expect(untyped.status).toBe(400)
    expect(untyped.body).toEqual({ error: 'acme: no event type in the delivery' })
    const notJson = await post('acme', signed('acme', 'not json'))
    expect(notJson.status).toBe(400)
    expect(notJson.body.error).toMatch(/^acme: body is not valid JSON/)
  })

  it('answers 413 over the entry’s max_body_bytes', async () => {
    const small = JSON.stringify({ id: `notif_${randomUUID()}`, topic: 'ping', padding: 'x'.repeat(3000) })
    await accepted('intercom', signed('intercom', small))
    const big = JSON.stringify({ id: `notif_${randomUUID()}`, topic: 'ping', padding: 'x'.repeat(5000) })
    const answer = await post('intercom', signed('intercom', big), 'cfg-big')
    expect(answer.status).toBe(413)
    expect(await rejection('intercom', 'cfg-big')).toMatchObject({ outcome: 'too_large', status: 413 })
  })

  it('verifies square over PUBLIC_BASE_URL, not the address the request reached', async () => {
    const body = JSON.stringify({ type: 'payment.created', event_id: randomUUID(), data: {} })
    const reached = `${gw.url}/webhooks/square`
    const overReached = signedHeaders(specOf('square'), secretOf.square, {
      body: Buffer.from(body),
      url: reached,
      id: '',
      at: new Date(),
    })
    expect((await post('square', { body, headers: overReached })).status).toBe(401)
    await accepted('square', signed('square', body))
  })

  it('answers 404 for a sender the file does not declare', async () => {
    const answer = await post('zendesk', { body: '{}', headers: { 'content-type': 'application/json' } })
    expect(answer.status).toBe(404)
  })
})

describe('the slack preset', () => {
  it('answers a verified url_verification with its challenge, and stores nothing', async () => {
    const challenge = randomBytes(24).toString('base64url')
    const body = JSON.stringify({ token: 'Jhj5dZrVaK7ZwHHjRyZWjbDl', challenge, type: 'url_verification' })
    const answer = await post('slack', signed('slack', body))
    expect(answer.status).toBe(200)
    expect(answer.body?.challenge ?? answer.text).toBe(challenge)
    const listed = await admin('GET', '/webhooks?provider=slack&limit=1000')
    expect(listed.body.webhooks.some((webhook: any) => webhook.type === 'url_verification')).toBe(false)
  })

  it('answers an unsigned ssl_check 200, storing nothing and counting no failed verification', async () => {
    const requestId = `ssl-check-${randomBytes(6).toString('hex')}`
    const answer = await post(
      'slack',
      {
        body: 'ssl_check=1&token=Jhj5dZrVaK7ZwHHjRyZWjbDl',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      },
      requestId,
    )
    expect(answer.status).toBe(200)
    expect(answer.text).toBe('')
    const logged = await admin('GET', '/rejections?provider=slack&limit=200')
    expect(logged.body.rejections.some((entry: any) => entry.requestId === requestId)).toBe(false)
    expect(await sample('webhooks_received_total{provider="slack",outcome="replied"}')).toBeGreaterThan(0)
  })

  it('refuses a forged url_verification with 401', async () => {
    const body = JSON.stringify({ token: 't', challenge: 'forged-challenge', type: 'url_verification' })
    const answer = await post('slack', signed('slack', body, { secret: 'not-the-signing-secret' }))
    expect(answer.status).toBe(401)
    expect(answer.text).not.toContain('forged-challenge')
  })

  it('accepts an interactivity form post verified on its raw bytes, keyed by trigger_id', async () => {
    const triggerId = `${Date.now()}.1395872398.${randomBytes(16).toString('hex')}`
    const payload = {
      type: 'block_actions',
      user: { id: 'U123ABC456' },
      trigger_id: triggerId,
      actions: [{ action_id: 'approve', value: 'yes please' }],
    }
    const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString()
    const webhookId = await accepted(
      'slack',
      signed('slack', body, { contentType: 'application/x-www-form-urlencoded' }),
    )
    const message = await rawEventOf(webhookId)
    expect(message.routingKey).toBe('raw.slack.block_actions')
    expect(message.event).toMatchObject({ providereventid: triggerId, data: payload })
  })

  it('accepts a slash command as slash_command, keyed by trigger_id', async () => {
    const triggerId = `${Date.now()}.47445629121.${randomBytes(16).toString('hex')}`
    const body = new URLSearchParams({
      token: 'xyzz0WbapA4vBCDEFasx0q6G',
      team_id: 'T1DC2JH3J',
      channel_id: 'G8PSS9T3V',
      user_id: 'U2CERLKJA',
      command: '/webhook-collect',
      text: 'hello there',
      response_url: 'https://hooks.slack.com/commands/T1DC2JH3J/397700885554/96rGlfmibIGlgcZRskXaIFfN',
      trigger_id: triggerId,
    }).toString()
    const webhookId = await accepted(
      'slack',
      signed('slack', body, { contentType: 'application/x-www-form-urlencoded' }),
    )
    const detail = await admin('GET', `/webhooks/${webhookId}`)
    expect(detail.body).toMatchObject({ event_key: triggerId, type: 'slash_command' })
    const message = await rawEventOf(webhookId)
    expect(message.routingKey).toBe('raw.slack.slash_command')
    expect(message.event.data).toMatchObject({ command: '/webhook-collect', trigger_id: triggerId })
  })

  it('answers a retried Events API event as a duplicate of the first', async () => {
    const body = JSON.stringify({
      type: 'event_callback',
      event_id: `Ev${randomBytes(5).toString('hex').toUpperCase()}`,
      event: { type: 'message', text: 'hi' },
    })
    const first = await accepted('slack', signed('slack', body))
    const retry = signed('slack', body)
    const answer = await post('slack', {
      body,
      headers: { ...retry.headers, 'x-slack-retry-num': '1', 'x-slack-retry-reason': 'http_timeout' },
    })
    expect(answer.body).toEqual({ status: 'duplicate', id: first })
  })
})
