import { createHmac } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LinearWebhookClient } from '@linear/sdk/webhooks'
import { isValidSlackRequest, verifySlackRequest } from '@slack/bolt'
import { WebhooksHelper } from 'square'
import { Webhook as StandardWebhook } from 'standardwebhooks'
import { Webhook as SvixWebhook } from 'svix'
import { afterAll, describe, expect, it } from 'vitest'
import { configuredProvider, signedHeaders } from '../../providers/configured.ts'
import type { WebhookRequest } from '../../src/provider.ts'
import { readProvidersFile, type HmacSpec, type ProviderSpec } from '../../src/providers-file.ts'
import { request, verifyContext } from '../support/provider-request.ts'
import { librarySigned } from '../support/signed.ts'

const contractExample = fileURLToPath(new URL('../fixtures/providers/contract-example.yaml', import.meta.url))
const fixture = Object.fromEntries(readProvidersFile(contractExample).map((spec) => [spec.name, spec]))
const specOf = (name: string): ProviderSpec => fixture[name]!

const directory = mkdtempSync(join(tmpdir(), 'configured-providers-'))
afterAll(() => rmSync(directory, { recursive: true, force: true }))

let written = 0
/** An hmac entry read from a PROVIDERS_FILE as the gateway reads it: `acme`, its fields over these. */
function hmacSpec(fields: Record<string, unknown> = {}): HmacSpec {
  const path = join(directory, `providers-${++written}.json`)
  const entry = {
    name: 'acme',
    kind: 'hmac',
    secret_env: 'ACME_WEBHOOK_SECRET',
    signature_header: 'x-acme-signature',
    id: 'header:x-acme-delivery',
    ...fields,
  }
  writeFileSync(path, JSON.stringify({ providers: [entry] }))
  return readProvidersFile(path)[0] as HmacSpec
}

/** Whether the provider of `spec` accepts `req` signed with `secret` at `now`, and why not. */
async function verify(
  spec: ProviderSpec,
  req: WebhookRequest,
  secret: string,
  now = req.receivedAt.getTime(),
) {
  const ctx = verifyContext({}, now)
  const valid = await configuredProvider(spec).verify(req, secret, ctx)
  return { valid, reasons: ctx.reasons }
}

/** What the gateway does with a verified request: its key, type and reply. */
function read(spec: ProviderSpec, req: WebhookRequest) {
  const provider = configuredProvider(spec)
  const payload = provider.parse(req)
  return {
    key: provider.eventKey(req, payload),
    type: provider.eventType(req, payload),
    reply: provider.reply?.(req, payload),
  }
}

/** An HMAC computed here, independently of providers/configured.ts. */
const hmac = (
  algorithm: 'sha1' | 'sha256' | 'sha512',
  key: string | Buffer,
  message: string | Buffer,
  encoding: 'hex' | 'base64' = 'hex',
) => createHmac(algorithm, key).update(message).digest(encoding)

const seconds = (at: Date) => Math.floor(at.getTime() / 1000)

describe('standard-webhooks kind', () => {
  const clerk = specOf('clerk')
  // The spec's own test vector (standard-webhooks, javascript/src/index.test.ts).
  const vector = {
    secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
    timestamp: 1614265330,
    body: '{"test": 2432232314}',
    signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
  }
  const secret = vector.secret
  const body = JSON.stringify({ type: 'user.created', data: { id: 'user_29w83sxmDNGwOuEthce5gg56FcC' } })

  const vectorRequest = (headers: Record<string, string> = {}) =>
    request(vector.body, {
      'webhook-id': vector.id,
      'webhook-timestamp': String(vector.timestamp),
      'webhook-signature': vector.signature,
      ...headers,
    })

  it('accepts the spec’s test vector', async () => {
    expect(await verify(clerk, vectorRequest(), secret, vector.timestamp * 1000)).toEqual({
      valid: true,
      reasons: [],
    })
  })

  it('signs the spec’s test vector exactly', () => {
    const headers = signedHeaders(clerk, secret, {
      body: Buffer.from(vector.body),
      url: 'https://hooks.example.com/webhooks/clerk',
      id: vector.id,
      at: new Date(vector.timestamp * 1000),
    })
    expect(headers).toEqual({
      'webhook-id': vector.id,
      'webhook-timestamp': String(vector.timestamp),
      'webhook-signature': vector.signature,
    })
  })

  it('accepts a delivery signed by the standardwebhooks package (webhook-* headers)', async () => {
    const req = request(body, librarySigned('standardwebhooks', secret, 'msg_sw_1', new Date(), body))
    expect((await verify(clerk, req, secret)).valid).toBe(true)
    expect(read(clerk, req)).toMatchObject({ key: 'msg_sw_1', type: 'user.created' })
  })

  it('accepts a delivery signed by svix with svix-* headers (Clerk’s and Resend’s)', async () => {
    const req = request(body, librarySigned('svix', secret, 'msg_svix_1', new Date(), body))
    expect((await verify(clerk, req, secret)).valid).toBe(true)
    expect(read(clerk, req)).toMatchObject({ key: 'msg_svix_1', type: 'user.created' })
  })

  it('signs deliveries that standardwebhooks and svix verify, under webhook-* and svix-* names', () => {
    const headers = signedHeaders(clerk, secret, {
      body: Buffer.from(body),
      url: 'https://hooks.example.com/webhooks/clerk',
      id: 'msg_ours_1',
      at: new Date(),
    })
    expect(new StandardWebhook(secret).verify(body, headers)).toEqual(JSON.parse(body))
    expect(new SvixWebhook(secret).verify(body, headers)).toEqual(JSON.parse(body))
    const svixHeaders = Object.fromEntries(
      Object.entries(headers).map(([name, value]) => [name.replace('webhook-', 'svix-'), value]),
    )
    expect(new SvixWebhook(secret).verify(body, svixHeaders)).toEqual(JSON.parse(body))
  })

  it('accepts any v1 signature of several, space-separated, while the sender rotates', async () => {
    const other = 'v1,' + Buffer.alloc(32, 1).toString('base64')
    expect(
      (
        await verify(
          clerk,
          vectorRequest({ 'webhook-signature': `${other} ${vector.signature}` }),
          secret,
          vector.timestamp * 1000,
        )
      ).valid,
    ).toBe(true)
    expect(
      (
        await verify(
          clerk,
          vectorRequest({ 'webhook-signature': `${vector.signature} ${other}` }),
          secret,
          vector.timestamp * 1000,
        )
      ).valid,
    ).toBe(true)
  })

  it('rejects a signature under another scheme than v1', async () => {
    const v2 = vector.signature.replace('v1,', 'v2,')
    expect(
      (await verify(clerk, vectorRequest({ 'webhook-signature': v2 }), secret, vector.timestamp * 1000))
        .valid,
    ).toBe(false)
  })

  it('rejects a delivery signed with another secret', async () => {
    const result = await verify(
      clerk,
      vectorRequest(),
      'whsec_' + Buffer.from('another secret').toString('base64'),
      vector.timestamp * 1000,
    )
    expect(result).toEqual({ valid: false, reasons: ['clerk: no v1 signature in webhook-signature matches'] })
  })

  it('rejects a tampered body, or another webhook-id', async () => {
    const tampered = { ...vectorRequest(), body: Buffer.from('{"test": 2432232315}') }
    expect((await verify(clerk, tampered, secret, vector.timestamp * 1000)).valid).toBe(false)
    expect(
      (await verify(clerk, vectorRequest({ 'webhook-id': 'msg_other' }), secret, vector.timestamp * 1000))
        .valid,
    ).toBe(false)
  })

  it('rejects a timestamp older or later than the 300 s tolerance', async () => {
    const stale = await verify(clerk, vectorRequest(), secret, (vector.timestamp + 301) * 1000)
    expect(stale).toEqual({
      valid: false,
      reasons: ['clerk: timestamp 301 s in the past, outside the 300 s tolerance'],
    })
    const future = await verify(clerk, vectorRequest(), secret, (vector.timestamp - 301) * 1000)
    expect(future).toEqual({
      valid: false,
      reasons: ['clerk: timestamp 301 s in the future, outside the 300 s tolerance'],
    })
    expect((await verify(clerk, vectorRequest(), secret, (vector.timestamp + 299) * 1000)).valid).toBe(true)
    expect((await verify(clerk, vectorRequest(), secret, (vector.timestamp - 299) * 1000)).valid).toBe(true)
  })

  it('rejects a delivery without its three headers', async () => {
    for (const missing of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) {
      const { [missing]: _, ...headers } = vectorRequest().headers
      const result = await verify(clerk, request(vector.body, headers), secret, vector.timestamp * 1000)
      expect(result.valid, missing).toBe(false)
      expect(result.reasons[0]).toMatch(/^clerk: no webhook-id, webhook-timestamp and webhook-signature/)
    }
  })
})

describe('slack preset', () => {
  const slack = specOf('slack')
  const url = 'https://hooks.example.com/webhooks/slack'
  // Slack's verification guide (docs.slack.dev, "Verifying requests from Slack"): a slash command.
  const vector = {
    secret: '8f742231b10e8888abcd99yyyzzz85a5',
    timestamp: 1531420618,
    body:
      'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V' +
      '&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=' +
      '&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN' +
      '&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c',
    signature: 'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503',
  }
  const secret = vector.secret
  const form = { 'content-type': 'application/x-www-form-urlencoded' }
  const json = { 'content-type': 'application/json' }

  /** A request signed by signedHeaders, as Slack would send it. */
  const signed = (body: string, contentType: Record<string, string>, at = new Date()) =>
    request(body, {
      ...contentType,
      ...signedHeaders(slack, secret, { body: Buffer.from(body), url, id: '', at }),
    })

  /** What @slack/bolt's verifier says of a request. */
  const bolt = (req: WebhookRequest, nowMilliseconds = Date.now()) =>
    isValidSlackRequest({
      signingSecret: secret,
      body: req.body.toString('utf8'),
      headers: {
        'x-slack-signature': req.headers['x-slack-signature']!,
        'x-slack-request-timestamp': Number(req.headers['x-slack-request-timestamp']),
      },
      nowMilliseconds,
    })

  const eventCallback = JSON.stringify({
    token: 'XXYYZZ',
    team_id: 'T123ABC456',
    api_app_id: 'A123ABC456',
    event: {
      type: 'app_mention',
      user: 'U123ABC456',
      text: 'hi',
      ts: '1515449522.000016',
      channel: 'C123ABC456',
    },
    type: 'event_callback',
    event_id: 'Ev123ABC456',
    event_time: 1515449522,
  })

  it('accepts Slack’s slash-command test vector', async () => {
    const req = request(vector.body, {
      ...form,
      'x-slack-request-timestamp': String(vector.timestamp),
      'x-slack-signature': vector.signature,
    })
    expect(await verify(slack, req, secret, vector.timestamp * 1000)).toEqual({ valid: true, reasons: [] })
    expect(bolt(req, vector.timestamp * 1000)).toBe(true)
  })

  it('signs Slack’s slash-command test vector exactly', () => {
    const headers = signedHeaders(slack, secret, {
      body: Buffer.from(vector.body),
      url,
      id: '',
      at: new Date(vector.timestamp * 1000),
    })
    expect(headers).toEqual({
      'x-slack-request-timestamp': String(vector.timestamp),
      'x-slack-signature': vector.signature,
    })
  })

  it('signs an Events API delivery that @slack/bolt’s verifySlackRequest accepts', async () => {
    const req = signed(eventCallback, json)
    expect(() =>
      verifySlackRequest({
        signingSecret: secret,
        body: eventCallback,
        headers: {
          'x-slack-signature': req.headers['x-slack-signature']!,
          'x-slack-request-timestamp': Number(req.headers['x-slack-request-timestamp']),
        },
      }),
    ).not.toThrow()
    expect((await verify(slack, req, secret)).valid).toBe(true)
  })

  it('keys an Events API event_callback by event_id, typed by the event’s own type', () => {
    expect(read(slack, signed(eventCallback, json))).toEqual({
      key: 'Ev123ABC456',
      type: 'app_mention',
      reply: undefined,
    })
  })

  it('answers a verified url_verification with its challenge', async () => {
    const body = JSON.stringify({
      token: 'Jhj5dZrVaK7ZwHHjRyZWjbDl',
      challenge: '3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P',
      type: 'url_verification',
    })
    const req = signed(body, json)
    expect((await verify(slack, req, secret)).valid).toBe(true)
    const { reply } = read(slack, req)
    expect(reply).toBeDefined()
    expect(JSON.parse(reply!.body)).toEqual({
      challenge: '3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P',
    })
    expect(reply!.contentType).toMatch(/^application\/json/)
  })

  it('rejects a url_verification signed with another secret', async () => {
    const body = JSON.stringify({ token: 't', challenge: 'c', type: 'url_verification' })
    const headers = signedHeaders(slack, 'not-the-signing-secret', {
      body: Buffer.from(body),
      url,
      id: '',
      at: new Date(),
    })
    const result = await verify(slack, request(body, { ...json, ...headers }), secret)
    expect(result).toEqual({ valid: false, reasons: ['slack: x-slack-signature does not match'] })
  })

  it('verifies an interactivity form post on its raw bytes and keys it by trigger_id', async () => {
    const payload = {
      type: 'block_actions',
      user: { id: 'U123ABC456', username: 'roadrunner' },
      trigger_id: '12466734323.1395872398.b6c1a63d7d4d2e9e8f0b2a1e6d5f1c0a',
      actions: [{ action_id: 'approve', value: 'yes please' }],
    }
    const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString()
    const req = signed(body, form)
    expect((await verify(slack, req, secret)).valid).toBe(true)
    expect(bolt(req)).toBe(true)
    expect(read(slack, req)).toEqual({ key: payload.trigger_id, type: 'block_actions', reply: undefined })
    // The same fields encoded otherwise (%20 for a space instead of +) are other bytes: not what was signed.
    const reencoded = { ...req, body: Buffer.from(body.replaceAll('+', '%20')) }
    expect(reencoded.body.equals(req.body)).toBe(false)
    expect((await verify(slack, reencoded, secret)).valid).toBe(false)
  })

  it('types a slash command slash_command and keys it by trigger_id', async () => {
    const req = signed(vector.body, form)
    expect((await verify(slack, req, secret)).valid).toBe(true)
    expect(read(slack, req)).toEqual({
      key: '398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c',
      type: 'slash_command',
      reply: undefined,
    })
  })

  it('rejects a stale timestamp, as @slack/bolt does', async () => {
    const req = signed(eventCallback, json, new Date(Date.now() - 301_000))
    const result = await verify(slack, req, secret)
    expect(result.valid).toBe(false)
    expect(result.reasons[0]).toMatch(/^slack: timestamp 30\d s in the past, outside the 300 s tolerance$/)
    expect(bolt(req)).toBe(false)
  })

  it('rejects a timestamp beyond the tolerance in the future, which @slack/bolt lets through', async () => {
    const req = signed(eventCallback, json, new Date(Date.now() + 600_000))
    const result = await verify(slack, req, secret)
    expect(result.valid).toBe(false)
    expect(result.reasons[0]).toMatch(/^slack: timestamp \d+ s in the future/)
    expect(bolt(req)).toBe(true)
  })

  it('rejects a request without x-slack-request-timestamp', async () => {
    const { ['x-slack-request-timestamp']: _, ...headers } = signed(eventCallback, json).headers
    const result = await verify(slack, request(eventCallback, headers), secret)
    expect(result).toEqual({ valid: false, reasons: ['slack: no x-slack-request-timestamp header'] })
  })
})

describe('linear preset', () => {
  const linear = specOf('linear')
  const secret = 'lin_wh_Zq1sTmV8yq0'
  const url = 'https://hooks.example.com/webhooks/linear'
  const client = new LinearWebhookClient(secret)

  const issue = (fields: Record<string, unknown> = {}) =>
    JSON.stringify({
      action: 'create',
      type: 'Issue',
      data: { id: '2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9', title: 'Crash on start' },
      url: 'https://linear.app/acme/issue/ENG-1',
      createdAt: new Date().toISOString(),
      organizationId: 'f22c56d1-6b33-4c2b-a6a2-5c5b3a0e2b3d',
      webhookTimestamp: Date.now(),
      webhookId: '000042e3-d123-4980-b49f-8e140eef9329',
      ...fields,
    })

  /** A delivery signed by signedHeaders, as Linear sends it: the id in linear-delivery. */
  const signed = (body: string, headers: Record<string, string> = {}) =>
    request(body, {
      'content-type': 'application/json',
      'linear-timestamp': String(Date.now()),
      ...signedHeaders(linear, secret, { body: Buffer.from(body), url, id: 'delivery-1', at: new Date() }),
      ...headers,
    })

  /** What @linear/sdk's LinearWebhookClient says of a request (it throws when it refuses). */
  const sdkAccepts = (req: WebhookRequest) => {
    try {
      return client.verify(req.body, req.headers['linear-signature']!)
    } catch {
      return false
    }
  }

  it('signs a delivery that @linear/sdk’s LinearWebhookClient verifies', async () => {
    const req = signed(issue())
    expect(req.headers['linear-delivery']).toBe('delivery-1')
    expect(sdkAccepts(req)).toBe(true)
    expect(await verify(linear, req, secret)).toEqual({ valid: true, reasons: [] })
  })

  it('accepts the signature as Linear documents it: bare hex HMAC-SHA256 of the raw body', async () => {
    const body = issue()
    const req = request(body, { 'linear-signature': hmac('sha256', secret, body), 'linear-delivery': 'd-2' })
    expect(sdkAccepts(req)).toBe(true)
    expect((await verify(linear, req, secret)).valid).toBe(true)
  })

  it('keys by the linear-delivery header and types by type and action', () => {
    expect(read(linear, signed(issue()))).toEqual({
      key: 'delivery-1',
      type: 'Issue.create',
      reply: undefined,
    })
    const { action: _, ...withoutAction } = JSON.parse(issue())
    expect(read(linear, signed(JSON.stringify(withoutAction))).type).toBe('Issue')
  })

  it('rejects a body whose webhookTimestamp is more than 60 s old or ahead, as the SDK does', async () => {
    for (const skew of [-61_000, 61_000]) {
      const req = signed(issue({ webhookTimestamp: Date.now() + skew }))
      const result = await verify(linear, req, secret)
      expect(result.valid, String(skew)).toBe(false)
      expect(result.reasons[0]).toMatch(
        /^linear: timestamp 6\d s in the (past|future), outside the 60 s tolerance$/,
      )
      expect(sdkAccepts(req)).toBe(false)
    }
    expect(
      (await verify(linear, signed(issue({ webhookTimestamp: Date.now() - 50_000 })), secret)).valid,
    ).toBe(true)
  })

  it('trusts the signed webhookTimestamp, not the unsigned linear-timestamp header', async () => {
    const req = signed(issue({ webhookTimestamp: Date.now() - 600_000 }), {
      'linear-timestamp': String(Date.now()),
    })
    expect((await verify(linear, req, secret)).valid).toBe(false)
  })

  it('rejects a body without webhookTimestamp', async () => {
    const { webhookTimestamp: _, ...body } = JSON.parse(issue())
    const result = await verify(linear, signed(JSON.stringify(body)), secret)
    expect(result).toEqual({ valid: false, reasons: ['linear: no timestamp at json:webhookTimestamp'] })
  })

  it('rejects a delivery signed with another secret', async () => {
    const body = issue()
    const req = request(body, { 'linear-signature': hmac('sha256', 'other', body), 'linear-delivery': 'd-3' })
    expect((await verify(linear, req, secret)).valid).toBe(false)
  })
})

describe('square preset', () => {
  const square = specOf('square')
  const signatureKey = 'square-signature-key-Z2xp'
  const notificationUrl = 'https://hooks.example.com/webhooks/square'
  const body = JSON.stringify({
    merchant_id: '6SSW7HV8K2ST5',
    type: 'payment.updated',
    event_id: '13b867cf-db3d-4b1c-90b6-2f32a9d78124',
    created_at: '2026-02-01T10:00:00Z',
    data: {
      type: 'payment',
      id: 'KkAkhdMsgzn59SM8A89WgKwekxLZY',
      object: { payment: { status: 'COMPLETED' } },
    },
  })

  const signed = (signedUrl = notificationUrl) =>
    request(
      body,
      {
        'content-type': 'application/json',
        ...signedHeaders(square, signatureKey, {
          body: Buffer.from(body),
          url: signedUrl,
          id: '',
          at: new Date(),
        }),
      },
      { path: '/webhooks/square', publicUrl: notificationUrl },
    )

  it('signs a delivery that square’s WebhooksHelper.verifySignature accepts', async () => {
    const req = signed()
    expect(
      await WebhooksHelper.verifySignature({
        requestBody: body,
        signatureHeader: req.headers['x-square-hmacsha256-signature']!,
        signatureKey,
        notificationUrl,
      }),
    ).toBe(true)
    expect(await verify(square, req, signatureKey)).toEqual({ valid: true, reasons: [] })
  })

  it('accepts the signature as Square documents it: base64 HMAC-SHA256 of the notification URL then the body', async () => {
    const signature = hmac('sha256', signatureKey, notificationUrl + body, 'base64')
    const req = request(body, { 'x-square-hmacsha256-signature': signature }, { publicUrl: notificationUrl })
    expect((await verify(square, req, signatureKey)).valid).toBe(true)
  })

  it('rejects a signature over another URL than the public one', async () => {
    const req = signed('https://hooks.example.com/webhooks/square-old')
    expect(
      await WebhooksHelper.verifySignature({
        requestBody: body,
        signatureHeader: req.headers['x-square-hmacsha256-signature']!,
        signatureKey,
        notificationUrl,
      }),
    ).toBe(false)
    expect(await verify(square, req, signatureKey)).toEqual({
      valid: false,
      reasons: ['square: x-square-hmacsha256-signature does not match'],
    })
  })

  it('keys by event_id and types by type', () => {
    expect(read(square, signed())).toEqual({
      key: '13b867cf-db3d-4b1c-90b6-2f32a9d78124',
      type: 'payment.updated',
      reply: undefined,
    })
  })
})

describe('intercom preset', () => {
  const intercom = specOf('intercom')
  const clientSecret = 'intercom-client-secret'
  const body = JSON.stringify({
    type: 'notification_event',
    app_id: 'abc123',
    id: 'notif_ccd8a4d0-f965-11e3-a367-c779cae3e1b3',
    topic: 'conversation.user.created',
    created_at: 1392731331,
    data: { item: { type: 'conversation', id: '147' } },
  })

  it('accepts the scheme PROVIDERS.md gives: sha1= and the hex HMAC-SHA1 of the raw body', async () => {
    const req = request(body, { 'x-hub-signature': `sha1=${hmac('sha1', clientSecret, body)}` })
    expect(await verify(intercom, req, clientSecret)).toEqual({ valid: true, reasons: [] })
  })

  it('signs as Intercom does', () => {
    const headers = signedHeaders(intercom, clientSecret, {
      body: Buffer.from(body),
      url: 'https://hooks.example.com/webhooks/intercom',
      id: '',
      at: new Date(),
    })
    expect(headers).toEqual({ 'x-hub-signature': `sha1=${hmac('sha1', clientSecret, body)}` })
  })

  it('rejects a SHA-256 signature where Intercom sends SHA-1', async () => {
    const req = request(body, { 'x-hub-signature': `sha1=${hmac('sha256', clientSecret, body)}` })
    expect((await verify(intercom, req, clientSecret)).valid).toBe(false)
  })

  it('keys by id and types by topic', () => {
    const req = request(body, { 'content-type': 'application/json' })
    expect(read(intercom, req)).toEqual({
      key: 'notif_ccd8a4d0-f965-11e3-a367-c779cae3e1b3',
      type: 'conversation.user.created',
      reply: undefined,
    })
  })
})

describe('hmac kind', () => {
  const secret = 'acme-signing-secret'
  const body = JSON.stringify({ event: { type: 'invoice.paid' }, id: 'inv_1', sent_at: 0 })

  it.each([
    ['sha1', 'hex'],
    ['sha1', 'base64'],
    ['sha256', 'hex'],
    ['sha256', 'base64'],
    ['sha512', 'hex'],
    ['sha512', 'base64'],
  ] as const)('accepts %s in %s, and signs the same value', async (algorithm, encoding) => {
    const spec = hmacSpec({ algorithm, encoding })
    const signature = hmac(algorithm, secret, body, encoding)
    expect((await verify(spec, request(body, { 'x-acme-signature': signature }), secret)).valid).toBe(true)
    const headers = signedHeaders(spec, secret, {
      body: Buffer.from(body),
      url: 'https://x/y',
      id: 'd-1',
      at: new Date(),
    })
    expect(headers).toEqual({ 'x-acme-delivery': 'd-1', 'x-acme-signature': signature })
    // The other algorithms' digests of the same body are refused.
    for (const other of (['sha1', 'sha256', 'sha512'] as const).filter((name) => name !== algorithm)) {
      const forged = request(body, { 'x-acme-signature': hmac(other, secret, body, encoding) })
      expect((await verify(spec, forged, secret)).valid, other).toBe(false)
    }
  })

  it('defaults to the hex HMAC-SHA256 of the body, with no prefix', async () => {
    const spec = hmacSpec()
    expect(spec).toMatchObject({
      algorithm: 'sha256',
      encoding: 'hex',
      signaturePrefix: '',
      signedPayload: '{body}',
    })
    expect(
      (await verify(spec, request(body, { 'x-acme-signature': hmac('sha256', secret, body) }), secret)).valid,
    ).toBe(true)
  })

  it('requires the signature_prefix', async () => {
    const spec = hmacSpec({ signature_prefix: 'sha256=' })
    const digest = hmac('sha256', secret, body)
    expect(
      (await verify(spec, request(body, { 'x-acme-signature': `sha256=${digest}` }), secret)).valid,
    ).toBe(true)
    expect((await verify(spec, request(body, { 'x-acme-signature': digest }), secret)).valid).toBe(false)
    expect((await verify(spec, request(body, { 'x-acme-signature': `sha1=${digest}` }), secret)).valid).toBe(
      false,
    )
  })

  it('accepts upper-case hex', async () => {
    const spec = hmacSpec({ signature_prefix: 'sha256=' })
    const upper = `sha256=${hmac('sha256', secret, body).toUpperCase()}`
    expect((await verify(spec, request(body, { 'x-acme-signature': upper }), secret)).valid).toBe(true)
  })

  it('does not fold the case of base64', async () => {
    const spec = hmacSpec({ encoding: 'base64' })
    const signature = hmac('sha256', secret, body, 'base64')
    const swapped = [...signature]
      .map((c) => (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase()))
      .join('')
    expect((await verify(spec, request(body, { 'x-acme-signature': swapped }), secret)).valid).toBe(false)
  })

  it('accepts any of several signatures in the header, space-separated', async () => {
    const spec = hmacSpec({ signature_prefix: 'v1=' })
    const right = `v1=${hmac('sha256', secret, body)}`
    const wrong = `v1=${hmac('sha256', 'old-secret', body)}`
    expect(
      (await verify(spec, request(body, { 'x-acme-signature': `${wrong} ${right}` }), secret)).valid,
    ).toBe(true)
    expect(
      (await verify(spec, request(body, { 'x-acme-signature': `${right} ${wrong}` }), secret)).valid,
    ).toBe(true)
    expect(
      (await verify(spec, request(body, { 'x-acme-signature': `${wrong} ${wrong}` }), secret)).valid,
    ).toBe(false)
  })

  it('rejects a request without the signature header, saying so', async () => {
    expect(await verify(hmacSpec(), request(body, {}), secret)).toEqual({
      valid: false,
      reasons: ['acme: no x-acme-signature header'],
    })
  })

  describe('signed_payload tokens', () => {
    const at = new Date()
    const timestamp = String(seconds(at))
    const publicUrl = 'https://hooks.example.com/webhooks/acme?tenant=7'
    const headers = { 'x-acme-delivery': 'dlv_1', 'x-acme-timestamp': timestamp }
    const base = (signature: string) =>
      request(
        body,
        { ...headers, 'x-acme-signature': signature },
        { path: '/webhooks/acme?tenant=7', publicUrl, receivedAt: at },
      )
    const tokenFields = { timestamp: 'header:x-acme-timestamp' }

    /** Each token: its value in `base`, and the request with only that value changed. */
    const tokens = {
      '{body}': {
        value: body,
        changed: (req: WebhookRequest) => ({ ...req, body: Buffer.from(body.replace('inv_1', 'inv_2')) }),
      },
      '{timestamp}': {
        value: timestamp,
        changed: (req: WebhookRequest) => ({
          ...req,
          headers: { ...req.headers, 'x-acme-timestamp': String(Number(timestamp) - 1) },
        }),
      },
      '{id}': {
        value: 'dlv_1',
        changed: (req: WebhookRequest) => ({
          ...req,
          headers: { ...req.headers, 'x-acme-delivery': 'dlv_2' },
        }),
      },
      '{method}': { value: 'POST', changed: (req: WebhookRequest) => ({ ...req, method: 'PUT' }) },
      // The public URL (PUBLIC_BASE_URL and the path), never the one a proxy handed over.
      '{url}': {
        value: publicUrl,
        changed: (req: WebhookRequest) => ({
          ...req,
          publicUrl: 'http://gateway.internal:3000/webhooks/acme?tenant=7',
        }),
      },
    }

    it.each(Object.keys(tokens))('signs %s with its value, and refuses another value', async (token) => {
      const { value, changed } = tokens[token as keyof typeof tokens]
      const template = token === '{body}' ? '{body}' : `${token}|{body}`
      const spec = hmacSpec({ ...tokenFields, signed_payload: template })
      const message = template.replace(token, value).replace('{body}', body)
      const req = base(hmac('sha256', secret, message))
      expect(await verify(spec, req, secret)).toEqual({ valid: true, reasons: [] })
      expect((await verify(spec, changed(req), secret)).valid).toBe(false)
    })

    it('signs a template of every token and literal text as the sender would', async () => {
      const template = '{method}\n{url}\n{id}.{timestamp}.{body}'
      const spec = hmacSpec({
        ...tokenFields,
        signed_payload: template,
        encoding: 'base64',
        algorithm: 'sha512',
      })
      const message = `POST\n${publicUrl}\ndlv_1.${timestamp}.${body}`
      const expected = hmac('sha512', secret, message, 'base64')
      expect((await verify(spec, base(expected), secret)).valid).toBe(true)
      expect(
        signedHeaders(spec, secret, { body: Buffer.from(body), url: publicUrl, id: 'dlv_1', at }),
      ).toEqual({
        'x-acme-delivery': 'dlv_1',
        'x-acme-timestamp': timestamp,
        'x-acme-signature': expected,
      })
    })
  })

  describe('secret_encoding', () => {
    const keyBytes = Buffer.from('2b7e151628aed2a6abf7158809cf4f3c', 'hex')
    const whsec = `whsec_${keyBytes.toString('base64')}`

    it('uses a base64 secret’s decoded bytes, after stripping whsec_', async () => {
      const spec = hmacSpec({ secret_encoding: 'base64' })
      const req = request(body, { 'x-acme-signature': hmac('sha256', keyBytes, body) })
      expect(await verify(spec, req, whsec)).toEqual({ valid: true, reasons: [] })
      expect((await verify(spec, req, keyBytes.toString('base64'))).valid).toBe(true)
      // The same secret used as text signs something else.
      expect(
        (await verify(spec, request(body, { 'x-acme-signature': hmac('sha256', whsec, body) }), whsec)).valid,
      ).toBe(false)
    })

    it('uses an utf8 secret’s text as it is, whsec_ included', async () => {
      const spec = hmacSpec({ secret_encoding: 'utf8' })
      expect(
        (await verify(spec, request(body, { 'x-acme-signature': hmac('sha256', whsec, body) }), whsec)).valid,
      ).toBe(true)
      expect(
        (await verify(spec, request(body, { 'x-acme-signature': hmac('sha256', keyBytes, body) }), whsec))
          .valid,
      ).toBe(false)
    })
  })

  describe('timestamps', () => {
    const now = Date.parse('2026-03-01T12:00:00.000Z')
    const headerSpec = (format: string, tolerance = 300) =>
      hmacSpec({
        signed_payload: '{timestamp}.{body}',
        timestamp: 'header:x-acme-timestamp',
        timestamp_format: format,
        tolerance_seconds: tolerance,
      })
    const at = (timestamp: string) =>
      request(body, {
        'x-acme-timestamp': timestamp,
        'x-acme-signature': hmac('sha256', secret, `${timestamp}.${body}`),
      })

    it.each([
      ['unix_s', String(now / 1000)],
      ['unix_ms', String(now)],
      ['iso8601', '2026-03-01T12:00:00.000Z'],
      ['iso8601', '2026-03-01T13:00:00+01:00'],
    ])('reads a %s timestamp in a header (%s)', async (format, timestamp) => {
      expect(await verify(headerSpec(format), at(timestamp), secret, now)).toEqual({
        valid: true,
        reasons: [],
      })
    })

    it.each([
      ['unix_s', new Date(now).toISOString()],
      ['unix_ms', '1772366400.5'],
      ['iso8601', String(now / 1000)],
      ['iso8601', '2026-03-01 12:00'],
    ])('refuses a timestamp that is not %s (%s)', async (format, timestamp) => {
      const result = await verify(headerSpec(format), at(timestamp), secret, now)
      expect(result.valid).toBe(false)
      expect(result.reasons[0]).toContain(`is not ${format}`)
    })

    it('reads unix_s as seconds and unix_ms as milliseconds', async () => {
      // Seconds read as milliseconds are 1970: far outside the tolerance.
      expect((await verify(headerSpec('unix_ms'), at(String(now / 1000)), secret, now)).valid).toBe(false)
    })

    it('rejects a stale and a future timestamp, and accepts one inside the tolerance either way', async () => {
      const spec = headerSpec('unix_s', 300)
      const skewed = (deltaSeconds: number) => at(String(now / 1000 + deltaSeconds))
      expect(await verify(spec, skewed(-301), secret, now)).toEqual({
        valid: false,
        reasons: ['acme: timestamp 301 s in the past, outside the 300 s tolerance'],
      })
      expect(await verify(spec, skewed(301), secret, now)).toEqual({
        valid: false,
        reasons: ['acme: timestamp 301 s in the future, outside the 300 s tolerance'],
      })
      expect((await verify(spec, skewed(-299), secret, now)).valid).toBe(true)
      expect((await verify(spec, skewed(299), secret, now)).valid).toBe(true)
      expect((await verify(spec, skewed(-300), secret, now)).valid).toBe(true)
    })

    it('rejects a request without the timestamp header', async () => {
      const req = request(body, { 'x-acme-signature': hmac('sha256', secret, `.${body}`) })
      expect(await verify(headerSpec('unix_s'), req, secret, now)).toEqual({
        valid: false,
        reasons: ['acme: no x-acme-timestamp header'],
      })
    })

    describe('in the body', () => {
      const bodySpec = (format: string) =>
        hmacSpec({ timestamp: 'json:meta.sent_at', timestamp_format: format, tolerance_seconds: 60 })
      const delivery = (sentAt: unknown) => {
        const text = JSON.stringify({ event: { type: 'invoice.paid' }, meta: { sent_at: sentAt } })
        return request(text, {
          'content-type': 'application/json',
          'x-acme-signature': hmac('sha256', secret, text),
        })
      }

      it.each([
        ['unix_s', now / 1000],
        ['unix_s', String(now / 1000)],
        ['unix_ms', now],
        ['iso8601', '2026-03-01T12:00:30Z'],
      ])('reads a %s timestamp at a dotted path (%s)', async (format, sentAt) => {
        expect(await verify(bodySpec(format), delivery(sentAt), secret, now)).toEqual({
          valid: true,
          reasons: [],
        })
      })

      it('rejects a stale and a future body timestamp', async () => {
        expect((await verify(bodySpec('unix_ms'), delivery(now - 61_000), secret, now)).reasons).toEqual([
          'acme: timestamp 61 s in the past, outside the 60 s tolerance',
        ])
        expect((await verify(bodySpec('unix_ms'), delivery(now + 61_000), secret, now)).reasons).toEqual([
          'acme: timestamp 61 s in the future, outside the 60 s tolerance',
        ])
      })

      it('rejects a body without the timestamp, or with one of another type', async () => {
        expect((await verify(bodySpec('unix_s'), delivery(undefined), secret, now)).reasons).toEqual([
          'acme: no timestamp at json:meta.sent_at',
        ])
        expect((await verify(bodySpec('unix_s'), delivery({ seconds: 1 }), secret, now)).valid).toBe(false)
      })

      it('checks the signature before reading the body', async () => {
        const req = delivery(now - 3_600_000)
        const result = await verify(
          bodySpec('unix_ms'),
          { ...req, headers: { 'x-acme-signature': 'ff' } },
          secret,
          now,
        )
        expect(result.reasons).toEqual(['acme: x-acme-signature does not match'])
      })
    })
  })

  describe('event id and type', () => {
    it('reads them from headers, dotted JSON paths, the first candidate present, joined parts', () => {
      const spec = hmacSpec({
        id: ['header:x-acme-delivery', 'json:delivery.id'],
        type: ['json:kind+json:action', 'header:x-acme-event', 'json:event.type'],
      })
      const json = { 'content-type': 'application/json' }
      expect(
        read(spec, request('{"kind":"invoice","action":"paid"}', { ...json, 'x-acme-delivery': 'd-1' })),
      ).toMatchObject({
        key: 'd-1',
        type: 'invoice.paid',
      })
      expect(read(spec, request('{"delivery":{"id":42},"event":{"type":"ping"}}', json))).toMatchObject({
        key: '42',
        type: 'ping',
      })
      expect(read(spec, request('{"kind":"invoice"}', { ...json, 'x-acme-event': 'refund' }))).toMatchObject({
        key: undefined,
        type: 'refund',
      })
    })

    it('reads a form body’s fields', () => {
      const spec = hmacSpec({ id: 'json:MessageSid', type: 'json:MessageStatus' })
      const req = request('MessageSid=SM1&MessageStatus=delivered', {
        'content-type': 'application/x-www-form-urlencoded',
      })
      expect(read(spec, req)).toMatchObject({ key: 'SM1', type: 'delivered' })
    })
  })
})
