import { readFileSync } from 'node:fs'
import { sign } from '@octokit/webhooks-methods'
import { Webhook as StandardWebhook } from 'standardwebhooks'
import Stripe from 'stripe'
import { Webhook as SvixWebhook } from 'svix'

/** A Stripe delivery signed by Stripe's own SDK. */
export function stripeDelivery(
  event: Record<string, unknown>,
  options: { secret: string; timestamp?: number; payload?: string },
): { body: string; headers: Record<string, string> } {
  const payload = options.payload ?? JSON.stringify(event)
  const signature = Stripe.webhooks.generateTestHeaderString({
    payload,
    secret: options.secret,
    ...(options.timestamp === undefined ? {} : { timestamp: options.timestamp }),
  })
  return { body: payload, headers: { 'content-type': 'application/json', 'stripe-signature': signature } }
}

export function stripeEvent(
  type: string,
  object: Record<string, unknown>,
  id = `evt_${Math.random().toString(36).slice(2)}`,
) {
  return {
    id,
    object: 'event',
    api_version: '2025-03-31.basil',
    created: Math.floor(Date.now() / 1000),
    type,
    data: { object },
  }
}

/** A payment_intent.succeeded event with a fresh `pi_` id; `amount` is also the amount received. */
export function paymentIntentSucceeded(
  fields: {
    id?: string
    amount?: number
    currency?: string
    customer?: string
    metadata?: Record<string, string>
  } = {},
) {
  const amount = fields.amount ?? 1000
  return stripeEvent('payment_intent.succeeded', {
    id: fields.id ?? `pi_${Math.random().toString(36).slice(2)}`,
    object: 'payment_intent',
    amount,
    amount_received: amount,
    currency: fields.currency ?? 'usd',
    customer: fields.customer ?? 'cus_test',
    metadata: fields.metadata ?? {},
  })
}

/** A Stripe event from test/fixtures/stripe, as Stripe sends it; a fresh copy each call. */
export const stripeFixture = (type: string): any =>
  JSON.parse(readFileSync(new URL(`../fixtures/stripe/${type}.json`, import.meta.url), 'utf8'))

/** A GitHub delivery signed with @octokit/webhooks-methods, as JSON or as the `payload=` form variant. */
export async function githubDelivery(
  event: string,
  payload: Record<string, unknown>,
  options: { secret: string; delivery?: string; hookId?: string; form?: boolean },
): Promise<{ body: string; headers: Record<string, string> }> {
  const json = JSON.stringify(payload)
  const body = options.form ? new URLSearchParams({ payload: json }).toString() : json
  const headers: Record<string, string> = {
    'content-type': options.form ? 'application/x-www-form-urlencoded' : 'application/json',
    'x-github-event': event,
    'x-github-delivery': options.delivery ?? crypto.randomUUID(),
    'x-hub-signature-256': await sign(options.secret, body),
  }
  if (options.hookId) headers['x-github-hook-id'] = options.hookId
  return { body, headers }
}

/** The first example payload @octokit/webhooks-examples has for an event (and action). */
export async function githubExample(event: string, action?: string): Promise<Record<string, any>> {
  const { default: examples } = await import('@octokit/webhooks-examples/api.github.com/index.json', {
    with: { type: 'json' },
  })
  const entry = (examples as { name: string; examples: Record<string, any>[] }[]).find(
    (item) => item.name === event,
  )
  const example = entry?.examples.find((item) => action === undefined || item.action === action)
  if (!example) throw new Error(`no example for ${event}${action ? `.${action}` : ''}`)
  return structuredClone(example)
}

/**
 * A Standard Webhooks delivery's id, timestamp and signature headers, signed by a sender's own library, never
 * by ours: `standardwebhooks` under webhook-* names, or `svix` under svix-* names (as Clerk and Resend send).
 */
export function librarySigned(
  library: 'standardwebhooks' | 'svix',
  secret: string,
  id: string,
  at: Date,
  body: string,
): Record<string, string> {
  const [prefix, signer] =
    library === 'svix' ? ['svix', new SvixWebhook(secret)] : ['webhook', new StandardWebhook(secret)]
  return {
    [`${prefix}-id`]: id,
    [`${prefix}-timestamp`]: String(Math.floor(at.getTime() / 1000)),
    [`${prefix}-signature`]: signer.sign(id, at, body),
  }
}
