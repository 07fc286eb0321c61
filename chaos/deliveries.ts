import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import Stripe from 'stripe'
import { offered, type ProviderName, type Target } from '../src/send/offered.ts'
import { serveCertificate, type CertServer } from '../src/send/paypal-cert-server.ts'
import { paypalTestCertificate } from '../src/send/paypal-test-certificate.ts'
import { shopDomain, shopifyPayload } from '../src/send/payloads/shopify.ts'
import { stripePayload } from '../src/send/payloads/stripe.ts'
import { signPayPal, signShopify, signStripe, type SignedRequest } from '../src/send/sign.ts'
import type { Random } from './options.ts'

/**
 * What the load sends: signed deliveries of every provider and offered event, made and signed by `npm run
 * send`'s own code (src/send), and the bad kinds the gateway must refuse. Also the gateway variables that make
 * it trust those signatures.
 */

export const providerNames = Object.keys(offered) as ProviderName[]

export type BadKind = 'forged' | 'stale' | 'oversized' | 'malformed'
export type Kind = 'good' | BadKind

/** One delivery the load sends, perhaps several times. */
export interface Prepared {
  readonly provider: ProviderName
  readonly event: string
  readonly kind: Kind
  /** The idempotency key the contract gives this delivery (good ones only): what the webhooks row is keyed by. */
  readonly key: string | undefined
  /** The request to send now: re-signed where the provider's signature carries a time, as providers do. */
  request(): SignedRequest | Promise<SignedRequest>
}

/** Secrets for the five providers, made for this run. */
export interface Secrets {
  readonly stripe: string
  readonly github: string
  readonly twilio: string
  readonly shopify: string
  readonly paypal: string
}

export interface Signing {
  readonly secrets: Secrets
  /** The gateway's variables for the providers: the secrets, PUBLIC_BASE_URL, PayPal's origins and CA. */
  readonly gatewayEnv: Readonly<Record<string, string>>
  readonly certServer: CertServer
  good(random: Random): Promise<Prepared>
  bad(random: Random): Promise<Prepared>
  close(): Promise<void>
}

/** What Twilio signs: the public URL, the same for every gateway process of the run. */
const publicBaseUrl = 'https://hooks.chaos.example'
const staleSeconds = 600
/** Over the 1 MiB default body limit (GitHub's is 25 MiB, so Shopify carries it). */
const oversizedBytes = 1024 * 1024 + 64 * 1024

const newSecrets = (): Secrets => ({
  stripe: `whsec_${randomBytes(24).toString('base64')}`,
  github: randomBytes(20).toString('hex'),
  twilio: randomBytes(16).toString('hex'),
  shopify: randomBytes(24).toString('hex'),
  paypal: `CHAOS${randomBytes(10).toString('hex').toUpperCase()}`,
})

/** The idempotency key per the contract, read from the request as sent (not from the gateway's own code). */
export function idempotencyKey(provider: ProviderName, request: SignedRequest): string {
  const header = (name: string) => {
    const value = request.headers[name]
    if (!value) throw new Error(`${provider}: the signed request has no ${name} header`)
    return value
  }
  switch (provider) {
    case 'stripe':
    case 'paypal':
      return String((JSON.parse(request.body) as { id: unknown }).id)
    case 'github':
      return `${header('x-github-hook-id')}:${header('x-github-delivery')}`
    case 'shopify':
      return header('x-shopify-webhook-id')
    case 'twilio': {
      const fields = new URLSearchParams(request.body)
      const callSid = fields.get('CallSid')
      if (callSid) return `${callSid}:${fields.get('SequenceNumber') ?? fields.get('CallStatus')}`
      return `${fields.get('MessageSid')}:${fields.get('MessageStatus')}`
    }
  }
}

export async function setUpSigning(stateDir: string, certPort: number): Promise<Signing> {
  const secrets = newSecrets()
  const certificate = paypalTestCertificate(stateDir)
  const certOrigin = `http://127.0.0.1:${certPort}`
  const certServer = await serveCertificate(certOrigin, certificate.certId, certificate.leafPem)
  const paypalKey = { certUrl: certServer.certUrl, privateKey: certificate.privateKey }
  await offered.github.prepare()

  const target = (provider: ProviderName, secret = secrets[provider]): Target => ({
    gatewayUrl: publicBaseUrl,
    publicBaseUrl,
    secret,
    paypal: paypalKey,
  })

  /** Re-signs a Stripe or PayPal body now (their signatures carry a time); the others' bytes stay as they are. */
  const resigner =
    (provider: ProviderName, first: SignedRequest, secret = secrets[provider]) =>
    (): SignedRequest => {
      if (provider === 'stripe') return signStripe(JSON.parse(first.body) as Record<string, unknown>, secret)
      if (provider === 'paypal')
        return signPayPal(JSON.parse(first.body) as Record<string, unknown>, secret, paypalKey)
      return first
    }

  const good = async (random: Random): Promise<Prepared> => {
    const provider = random.pick(providerNames)
    const offer = offered[provider]
    const event = random.pick(offer.events)
    const first = await offer.deliver(event, target(provider))
    const again = resigner(provider, first)
    let sent = false
    return {
      provider,
      event,
      kind: 'good',
      key: idempotencyKey(provider, first),
      // The first request is the one just signed; later ones are signed again when they are sent.
      request: () => (sent ? again() : ((sent = true), first)),
    }
  }

  const stripeSignedBody = (body: string, timestamp?: number): SignedRequest => {
    const header = Stripe.webhooks.generateTestHeaderString({
      payload: body,
      secret: secrets.stripe,
      ...(timestamp === undefined ? {} : { timestamp }),
    })
    return {
      body,
      headers: {
        'content-type': 'application/json; charset=utf-8',
        'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
        'stripe-signature': header,
      },
    }
  }

  const bad = async (random: Random): Promise<Prepared> => {
    const roll = random.next()
    if (roll < 0.4) {
      // Forged: a real-looking delivery signed with a secret the gateway does not know.
      const provider = random.pick(providerNames)
      const event = random.pick(offered[provider].events)
      const wrong = newSecrets()[provider]
      const first = await offered[provider].deliver(event, target(provider, wrong))
      return { provider, event, kind: 'forged', key: undefined, request: resigner(provider, first, wrong) }
    }
    if (roll < 0.65) {
      // Stale: Stripe's timestamp ten minutes old, outside the 300 s tolerance, on every attempt.
      const event = 'payment_intent.succeeded'
      const body = JSON.stringify(stripePayload(event), null, 2)
      return {
        provider: 'stripe',
        event,
        kind: 'stale',
        key: undefined,
        request: () =>
          stripeSignedBody(body, Math.floor(Date.now() / 1000) - staleSeconds - random.between(0, 60)),
      }
    }
    if (roll < 0.8) {
      // Oversized: a correctly signed Shopify order padded past the 1 MiB body limit.
      const event = 'orders/create'
      const payload = { ...shopifyPayload(event), note: 'x'.repeat(oversizedBytes) }
      const signed = signShopify(event, payload, secrets.shopify, shopDomain)
      return { provider: 'shopify', event, kind: 'oversized', key: undefined, request: () => signed }
    }
    // Malformed: JSON cut short, correctly signed: verified, then refused as unreadable.
    const event = 'payment_intent.succeeded'
    const full = JSON.stringify(stripePayload(event), null, 2)
    const body = full.slice(0, Math.floor(full.length / 2))
    return {
      provider: 'stripe',
      event,
      kind: 'malformed',
      key: undefined,
      request: () => stripeSignedBody(body),
    }
  }

  return {
    secrets,
    gatewayEnv: {
      STRIPE_WEBHOOK_SECRET: secrets.stripe,
      GITHUB_WEBHOOK_SECRET: secrets.github,
      TWILIO_AUTH_TOKEN: secrets.twilio,
      SHOPIFY_WEBHOOK_SECRET: secrets.shopify,
      PAYPAL_WEBHOOK_ID: secrets.paypal,
      PUBLIC_BASE_URL: publicBaseUrl,
      PAYPAL_CERT_ORIGINS: certOrigin,
      PAYPAL_CA_FILE: join(stateDir, 'paypal', 'ca.pem'),
    },
    certServer,
    good,
    bad,
    close: () => certServer.close(),
  }
}
