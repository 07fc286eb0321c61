import { githubEvents, githubPayload, loadGitHubExamples } from './payloads/github.ts'
import { paypalEvents, paypalPayload } from './payloads/paypal.ts'
import { shopDomain, shopifyEvents, shopifyPayload } from './payloads/shopify.ts'
import { stripeEvents, stripePayload } from './payloads/stripe.ts'
import { twilioEvents, twilioPayload } from './payloads/twilio.ts'
import {
  signGitHub,
  signPayPal,
  signShopify,
  signStripe,
  signTwilio,
  type PayPalSigningKey,
  type SignedRequest,
} from './sign.ts'

/** Where a delivery goes and what signs it. */
export interface Target {
  /** GATEWAY_URL without a trailing slash. */
  readonly gatewayUrl: string
  /** PUBLIC_BASE_URL, the URL Twilio signs when set. */
  readonly publicBaseUrl: string | undefined
  /** The first of the provider's configured secrets: the one a rotation puts first. */
  readonly secret: string
  /** PayPal only: the local test certificate and its key. */
  readonly paypal?: PayPalSigningKey
}

/** A delivery ready to post to `/webhooks/<provider>`. */
export interface Delivery extends SignedRequest {
  /** What the provider itself calls this delivery: the event id, delivery GUID, SID or webhook id. */
  readonly providerId: string
}

export interface Offer {
  /** The variable the gateway reads this provider's secret from (`npm run send` reads the same one). */
  readonly secretVariable: string
  readonly events: readonly string[]
  /** Loads what deliveries are made from, before the first one is timed. */
  prepare?(): Promise<unknown>
  deliver(event: string, target: Target): Delivery | Promise<Delivery>
}

// The hook of @octokit/webhooks-examples' ping, on its Hello-World repository.
const githubHook = { id: 109948940, repositoryId: 186853002 }

/** Every provider and event `npm run send` can sign, with what it needs. */
export const offered = {
  stripe: {
    secretVariable: 'STRIPE_WEBHOOK_SECRET',
    events: stripeEvents,
    deliver(event, target) {
      const payload = stripePayload(event as (typeof stripeEvents)[number])
      return { ...signStripe(payload, target.secret), providerId: String(payload.id) }
    },
  },
  github: {
    secretVariable: 'GITHUB_WEBHOOK_SECRET',
    events: githubEvents,
    prepare: loadGitHubExamples,
    async deliver(event, target) {
      const { event: name, payload } = await githubPayload(event as (typeof githubEvents)[number])
      const signed = await signGitHub(name, payload, target.secret, githubHook)
      return { ...signed, providerId: signed.delivery }
    },
  },
  twilio: {
    secretVariable: 'TWILIO_AUTH_TOKEN',
    events: twilioEvents,
    deliver(event, target) {
      const params = twilioPayload(event as (typeof twilioEvents)[number])
      // Twilio signs the URL it calls: the public one when the gateway is behind a proxy.
      const url = `${target.publicBaseUrl ?? target.gatewayUrl}/webhooks/twilio`
      return {
        ...signTwilio(params, target.secret, url),
        providerId: params.MessageSid ?? params.CallSid ?? '',
      }
    },
  },
  shopify: {
    secretVariable: 'SHOPIFY_WEBHOOK_SECRET',
    events: shopifyEvents,
    deliver(event, target) {
      const payload = shopifyPayload(event as (typeof shopifyEvents)[number])
      const signed = signShopify(event, payload, target.secret, shopDomain)
      return { ...signed, providerId: signed.webhookId }
    },
  },
  paypal: {
    secretVariable: 'PAYPAL_WEBHOOK_ID',
    events: paypalEvents,
    deliver(event, target) {
      if (!target.paypal) throw new Error('paypal: no test certificate to sign with')
      const payload = paypalPayload(event as (typeof paypalEvents)[number])
      return { ...signPayPal(payload, target.secret, target.paypal), providerId: String(payload.id) }
    },
  },
} satisfies Record<string, Offer>

export type ProviderName = keyof typeof offered

/** The offer for `provider` and `event`, matched exactly or else ignoring case; undefined when not offered. */
export function findOffer(
  provider: string,
  event: string,
): { provider: ProviderName; event: string; offer: Offer } | undefined {
  const name = (Object.keys(offered) as ProviderName[]).find((key) => key === provider.toLowerCase())
  if (!name) return undefined
  const offer: Offer = offered[name]
  const exact = offer.events.find((candidate) => candidate === event)
  const found = exact ?? offer.events.find((candidate) => candidate.toLowerCase() === event.toLowerCase())
  return found ? { provider: name, event: found, offer } : undefined
}

/** What `npm run send` offers: every provider, or only `provider`'s events; one provider a line, wrapped. */
export function offeredList(provider?: ProviderName): string {
  const names = provider ? [provider] : (Object.keys(offered) as ProviderName[])
  const width = Math.max(...names.map((name) => name.length))
  const lines = names.map((name) => {
    const events: readonly string[] = offered[name].events
    const rows = events.reduce<string[]>((wrapped, event) => {
      const last = wrapped.at(-1)
      if (last !== undefined && last.length + event.length + 2 <= listWidth - width - 4) {
        wrapped[wrapped.length - 1] = `${last}, ${event}`
        return wrapped
      }
      if (last !== undefined) wrapped[wrapped.length - 1] = `${last},`
      return [...wrapped, event]
    }, [])
    return rows.map((row, index) => `  ${(index === 0 ? name : '').padEnd(width)}  ${row}`).join('\n')
  })
  return lines.join('\n')
}

const listWidth = 100
