import { beforeAll, describe, expect, it } from 'vitest'
import { useTestDatabase, type TestGateway } from '../support/services.ts'
import { stripeDelivery, stripeEvent } from '../support/signed.ts'

const secret = 'whsec_ratelimit'
const db = useTestDatabase()
let gw: TestGateway

beforeAll(async () => {
  gw = await db.startGateway({ STRIPE_WEBHOOK_SECRET: secret, FAILED_VERIFY_LIMIT: '3' })
})

const post = (signingSecret: string) => {
  const { body, headers } = stripeDelivery(stripeEvent('payment_intent.created', { id: 'pi_1' }), {
    secret: signingSecret,
  })
  return gw.post('/webhooks/stripe', body, headers)
}

describe('failed-verification limit', () => {
  it('answers 429 once an address exceeds the limit, and never throttles verified deliveries', async () => {
    for (let i = 0; i < 3; i++) expect((await post('whsec_forged')).status).toBe(401)
    const throttled = await post('whsec_forged')
    expect(throttled.status).toBe(429)
    expect(await throttled.json()).toEqual({ error: 'too many failed verifications' })

    const verified = await post(secret)
    expect(verified.status).toBe(200)
    expect(((await verified.json()) as { status: string }).status).toBe('accepted')
  })
})
