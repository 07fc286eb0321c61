import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { providers } from '../../providers/index.ts'
import { stripe } from '../../providers/stripe.ts'
import { eventId } from '../../src/pipeline/events.ts'
import type { Provider } from '../../src/provider.ts'
import { postStripe, useTestDatabase, waitFor, type TestGateway } from '../support/services.ts'
import { paymentIntentSucceeded, stripeEvent } from '../support/signed.ts'

const secret = 'whsec_retries'
const adminToken = 'retries-admin-token'

const database = useTestDatabase()

/** A copy of the Stripe provider whose payment_intent.succeeded handler throws until `fixed` is set. */
function brokenStripe() {
  const state = { fixed: false, calls: [] as number[] }
  const succeeded = stripe.handlers['payment_intent.succeeded']!
  const provider: Provider = {
    ...stripe,
    handlers: {
      ...stripe.handlers,
      'payment_intent.succeeded': (event, req) => {
        state.calls.push(Date.now())
        if (!state.fixed) throw new Error('payment_intent.succeeded handler exploded')
        return succeeded(event, req)
      },
    },
  }
  return { state, provider }
}

const admin = (gateway: TestGateway, method: string, path: string, token = adminToken) =>
  fetch(`${gateway.url}/admin${path}`, { method, headers: { authorization: `Bearer ${token}` } })

describe('a handler that throws', () => {
  it('retries on the RETRY_DELAYS_SECONDS schedule, then keeps the webhook dead and unpublished, and a replay publishes it under the same ids', async () => {
    const { state, provider } = brokenStripe()
    const gateway = await database.startGateway(
      { STRIPE_WEBHOOK_SECRET: secret, ADMIN_TOKEN: adminToken },
      { providers: { ...providers, stripe: provider } },
    )
    const capture = await database.captureEvents(gateway.config)
    expect(gateway.config.retryDelaysSeconds).toEqual([0.2, 0.4, 0.6])

    const payment = paymentIntentSucceeded({ id: 'pi_retries', amount: 4200, customer: 'cus_retries' })
    // A webhook of another type goes through the same worker at the same time, unaffected.
    const subscription = stripeEvent('customer.subscription.created', {
      id: 'sub_retries',
      object: 'subscription',
      customer: 'cus_retries',
      status: 'active',
      items: { data: [{ price: { id: 'price_1' }, current_period_start: 1, current_period_end: 2 }] },
    })
    const accepted = await postStripe(gateway, payment, secret)
    const other = await postStripe(gateway, subscription, secret)
    expect(accepted).toMatchObject({ status: 200, body: { status: 'accepted' } })
    expect(other).toMatchObject({ status: 200, body: { status: 'accepted' } })
    const id = accepted.body.id!

    const dead = await waitFor(async () => {
      const webhook = await gateway.gateway.store.get(id)
      return webhook?.status === 'dead' && webhook
    }, 10_000)
    expect(dead.attempts).toBe(4)
    expect(dead.lastError).toContain('payment_intent.succeeded handler exploded')
    expect(dead.publishedEventIds).toEqual([])

    expect(state.calls).toHaveLength(4)
    const gaps = state.calls.slice(1).map((at, index) => at - state.calls[index]!)
    const margin = 25 // Postgres' now() schedules the retry; Date.now() records the call
    gaps.forEach((gap, index) => {
      const delayMs = gateway.config.retryDelaysSeconds[index]! * 1000
      expect(gap).toBeGreaterThanOrEqual(delayMs - margin)
      // The configured schedule, not the 5/30/300 s default.
      expect(gap).toBeLessThan(delayMs + 2000)
    })

    // Dead means no more attempts, and the raw event never went out on its own.
    await sleep(700)
    expect(state.calls).toHaveLength(4)
    expect(capture.messages.filter((message) => message.event.providereventid === payment.id)).toEqual([])
    const otherWebhook = await gateway.gateway.store.get(other.body.id!)
    expect(otherWebhook).toMatchObject({ status: 'published', attempts: 1 })

    const detail = await admin(gateway, 'GET', `/webhooks/${id}`)
    expect(detail.status).toBe(200)
    expect(await detail.json()).toMatchObject({
      id,
      status: 'dead',
      attempts: 4,
      last_error: expect.stringContaining('handler exploded'),
      published_event_ids: [],
    })

    state.fixed = true
    expect((await admin(gateway, 'POST', `/webhooks/${id}/replay`, 'wrong-token')).status).toBe(401)
    const replay = await admin(gateway, 'POST', `/webhooks/${id}/replay`)
    expect(replay.status).toBe(202)
    expect(await replay.json()).toEqual({ replayed: 1 })

    // The ids a retry would have used: derived from (provider, event key, name), never from the attempt.
    const rawId = eventId('stripe', payment.id, 'raw')
    const internalId = eventId('stripe', payment.id, 'internal:0:payment.completed')
    const published = await capture.waitFor((messages) =>
      messages.some((message) => message.event.id === internalId),
    )
    const ofPayment = published.filter((message) => message.event.providereventid === payment.id)
    expect(
      ofPayment.map((message) => [message.routingKey, message.event.id, message.properties.messageId]),
    ).toEqual([
      ['raw.stripe.payment_intent.succeeded', rawId, rawId],
      ['payment.completed', internalId, internalId],
    ])
    const replayed = await waitFor(async () => {
      const webhook = await gateway.gateway.store.get(id)
      return webhook?.status === 'published' && webhook
    })
    expect(replayed).toMatchObject({ attempts: 1, lastError: null, publishedEventIds: [rawId, internalId] })

    // A second replay republishes the very same ids, so consumers can deduplicate.
    expect((await admin(gateway, 'POST', `/webhooks/${id}/replay`)).status).toBe(202)
    await capture.waitFor(
      (messages) => messages.filter((message) => message.event.providereventid === payment.id).length === 4,
    )
    expect(
      capture.messages
        .filter((message) => message.event.providereventid === payment.id)
        .map((message) => message.event.id),
    ).toEqual([rawId, internalId, rawId, internalId])
  })
})
