import { beforeAll, describe, expect, it } from 'vitest'
import { flushRedisPrefix, useTestDatabase, waitFor, type TestGateway } from '../support/services.ts'
import { paymentIntentSucceeded, stripeDelivery } from '../support/signed.ts'

const current = 'whsec_rejections_current'
const previous = 'whsec_rejections_previous'
const adminToken = 'rejections-admin'
const db = useTestDatabase()
let gw: TestGateway

beforeAll(async () => {
  gw = await db.startGateway({
    STRIPE_WEBHOOK_SECRET: `${current},${previous}`,
    GITHUB_WEBHOOK_SECRET: 'gh-rejections',
    ADMIN_TOKEN: adminToken,
    MAX_BODY_BYTES: '4096',
    FAILED_VERIFY_LIMIT: '1000',
  })
  // The log lives in Redis under this file's own prefix: removed with the file.
  db.defer(() => flushRedisPrefix(gw.gateway, gw.config.redisPrefix))
})

const rejections = async (query = '') => {
  const response = await fetch(`${gw.url}/admin/rejections${query}`, {
    headers: { authorization: `Bearer ${adminToken}` },
  })
  expect(response.status).toBe(200)
  return {
    text: await response.clone().text(),
    list: ((await response.json()) as { rejections: any[] }).rejections,
  }
}

describe('the rejection log', () => {
  it('keeps why a delivery was refused, per secret slot, with header names but no values and no body', async () => {
    const forged = stripeDelivery(paymentIntentSucceeded(), { secret: 'whsec_someone_else' })
    const response = await gw.post('/webhooks/stripe', forged.body, {
      ...forged.headers,
      'x-request-id': 'rej-1',
    })
    expect(response.status).toBe(401)

    const { list, text } = await waitFor(async () => {
      const found = await rejections('?provider=stripe')
      return found.list.some((entry) => entry.requestId === 'rej-1') ? found : undefined
    })
    const entry = list.find((candidate) => candidate.requestId === 'rej-1')
    expect(entry).toMatchObject({
      provider: 'stripe',
      outcome: 'invalid_signature',
      status: 401,
      secretsTried: 2,
      bodyBytes: Buffer.byteLength(forged.body),
    })
    expect(entry.reasons).toHaveLength(2)
    expect(entry.reasons[0]).toMatch(/^secret 1: /)
    expect(entry.reasons[1]).toMatch(/^secret 2: /)
    expect(entry.headerNames).toEqual(expect.arrayContaining(['stripe-signature', 'content-type']))
    expect(new Date(entry.time).getTime()).toBeGreaterThan(Date.now() - 60_000)
    expect(typeof entry.address).toBe('string')
    // Nothing a forger or an onlooker could use: no signature value, no secret, no body.
    expect(text).not.toContain(forged.headers['stripe-signature']!)
    expect(text).not.toContain(current)
    expect(text).not.toContain('payment_intent')
  })

  it('says a timestamp was stale, and keeps oversized and malformed refusals too', async () => {
    const stale = stripeDelivery(paymentIntentSucceeded(), {
      secret: current,
      timestamp: Math.floor(Date.now() / 1000) - 3600,
    })
    expect(
      (await gw.post('/webhooks/stripe', stale.body, { ...stale.headers, 'x-request-id': 'rej-stale' }))
        .status,
    ).toBe(401)
    const big = stripeDelivery(
      { ...paymentIntentSucceeded(), padding: 'x'.repeat(5000) },
      { secret: current },
    )
    expect(
      (await gw.post('/webhooks/stripe', big.body, { ...big.headers, 'x-request-id': 'rej-big' })).status,
    ).toBe(413)
    const notJson = stripeDelivery({}, { secret: current, payload: 'not json' })
    expect(
      (await gw.post('/webhooks/stripe', notJson.body, { ...notJson.headers, 'x-request-id': 'rej-bad' }))
        .status,
    ).toBe(400)

    const list = await waitFor(async () => {
      const found = (await rejections('?provider=stripe')).list
      return ['rej-stale', 'rej-big', 'rej-bad'].every((id) => found.some((entry) => entry.requestId === id))
        ? found
        : undefined
    })
    const byId = (id: string) => list.find((entry) => entry.requestId === id)
    expect(byId('rej-stale').reasons[0]).toMatch(/secret 1: .*timestamp/i)
    expect(byId('rej-big')).toMatchObject({ outcome: 'too_large', status: 413 })
    expect(byId('rej-bad')).toMatchObject({ outcome: 'malformed', status: 400 })
  })

  it('lists every provider newest first, keeps at most 200 per provider, and refuses an unknown provider', async () => {
    const forged = stripeDelivery(paymentIntentSucceeded(), { secret: 'whsec_flood' })
    for (let start = 0; start < 210; start += 30)
      await Promise.all(
        Array.from({ length: Math.min(30, 210 - start) }, () =>
          gw.post('/webhooks/stripe', forged.body, forged.headers),
        ),
      )
    await gw.post('/webhooks/github', '{}', {
      'x-github-event': 'push',
      'x-github-delivery': 'd-1',
      'x-request-id': 'rej-gh',
    })
    const all = await waitFor(async () => {
      const found = (await rejections('?limit=200')).list
      return found[0]?.requestId === 'rej-gh' ? found : undefined
    })
    expect(all.map((entry) => entry.time)).toEqual([...all.map((entry) => entry.time)].sort().reverse())
    expect((await rejections('?provider=stripe&limit=200')).list).toHaveLength(200)
    const unknown = await fetch(`${gw.url}/admin/rejections?provider=nope`, {
      headers: { authorization: `Bearer ${adminToken}` },
    })
    expect(unknown.status).toBe(400)
  })
})
