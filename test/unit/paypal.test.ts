import { beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { paypal } from '../../providers/paypal.ts'
import { loadConfig, type Env } from '../../src/config.ts'
import { rawRoutingKey } from '../../src/pipeline/events.ts'
import { clearCertificateCache } from '../../providers/paypal-certs.ts'
import { internalEvents } from '../../src/pipeline/registry.ts'
import { usePayPalSigning, type Leaf, type PayPalPki } from '../support/paypal-pki.ts'
import { request, verifyContext } from '../support/provider-request.ts'
import { paypalDelivery, paypalEvent, paypalTime } from '../support/signed-providers.ts'

const webhookId = '1JE4291016473214C'
const path = '/webhooks/paypal'

const signing = usePayPalSigning('CERT-360caa42-fca2a594-test')
let env: Env

beforeAll(() => {
  env = { PAYPAL_WEBHOOK_ID: webhookId, ...signing.env }
})

beforeEach(() => {
  clearCertificateCache()
  signing.server.hits.clear()
})

const capture = paypalEvent(
  'PAYMENT.CAPTURE.COMPLETED',
  {
    id: '2GG279541U471931P',
    status: 'COMPLETED',
    amount: { currency_code: 'USD', value: '10.50' },
    custom_id: 'order-42',
    supplementary_data: { related_ids: { order_id: '5O190127TN364715T' } },
  },
  'WH-2WR32451HC0233532-67976317FL4543714',
)

interface SignOptions {
  signer?: Leaf
  url?: string
  webhookId?: string
  transmissionTime?: string
  body?: string
}

function signed(event: Record<string, unknown>, options: SignOptions = {}) {
  const delivery = paypalDelivery(event, {
    webhookId: options.webhookId ?? webhookId,
    certUrl: options.url ?? signing.certUrl,
    privateKey: (options.signer ?? signing.leaf).privateKey,
    ...(options.transmissionTime === undefined ? {} : { transmissionTime: options.transmissionTime }),
    ...(options.body === undefined ? {} : { body: options.body }),
  })
  return request(delivery.body, delivery.headers, { path })
}

async function verify(
  req: ReturnType<typeof request>,
  options: { id?: string; env?: Env; now?: number } = {},
) {
  const ctx = verifyContext(options.env ?? env, options.now ?? Date.now())
  return { valid: await paypal.verify(req, options.id ?? webhookId, ctx), reasons: ctx.reasons }
}

/** Now, to the second, as PayPal's transmission times are. */
const wholeSecond = () => Math.floor(Date.now() / 1000) * 1000

/** A leaf signed by the test PKI, served at its own cert URL. */
function served(id: string, options: Parameters<PayPalPki['leaf']>[0]) {
  const signer = signing.pki.leaf(options)
  return { signer, url: signing.server.serve(id, signer.chainPem) }
}

describe('paypal.verify', () => {
  it('accepts a delivery signed with a certificate that chains to PAYPAL_CA_FILE', async () => {
    expect(await verify(signed(capture))).toEqual({ valid: true, reasons: [] })
  })

  it('accepts a certificate for the sandbox signing host', async () => {
    const sandbox = served('CERT-sandbox', { host: 'messageverificationcerts.sandbox.paypal.com' })
    expect((await verify(signed(capture, sandbox))).valid).toBe(true)
  })

  it('rejects a tampered body (its CRC32 changes)', async () => {
    const req = signed(capture)
    const result = await verify({ ...req, body: Buffer.from(req.body.toString().replace('10.50', '99.50')) })
    expect(result).toEqual({ valid: false, reasons: ['paypal: PAYPAL-TRANSMISSION-SIG does not match'] })
  })

  it('rejects a body that differs only in whitespace (the raw bytes are checked, never re-serialized)', async () => {
    const req = signed(capture, { body: JSON.stringify(capture, null, 2) })
    expect((await verify({ ...req, body: Buffer.from(JSON.stringify(capture)) })).valid).toBe(false)
  })

  it('rejects a delivery signed for another webhook id', async () => {
    expect((await verify(signed(capture, { webhookId: 'ANOTHERWEBHOOKID' }))).valid).toBe(false)
  })

  it('accepts a delivery for the old webhook id while it is still listed (rotation)', async () => {
    const req = signed(capture, { webhookId: 'OLDWEBHOOKID' })
    expect((await verify(req, { id: webhookId })).valid).toBe(false)
    expect((await verify(req, { id: 'OLDWEBHOOKID' })).valid).toBe(true)
  })

  it('rejects a signature made by another key than the certificate’s', async () => {
    const other = signing.pki.leaf()
    expect((await verify(signed(capture, { signer: other, url: signing.certUrl }))).valid).toBe(false)
  })

  for (const name of [
    'paypal-transmission-id',
    'paypal-transmission-time',
    'paypal-transmission-sig',
    'paypal-cert-url',
    'paypal-auth-algo',
  ]) {
    it(`rejects a delivery without ${name.toUpperCase()}`, async () => {
      const req = signed(capture)
      const headers = Object.fromEntries(Object.entries(req.headers).filter(([header]) => header !== name))
      expect(await verify({ ...req, headers })).toEqual({
        valid: false,
        reasons: [`paypal: no ${name.toUpperCase()} header`],
      })
    })
  }

  it('rejects an auth algorithm other than SHA256withRSA', async () => {
    const req = signed(capture)
    const result = await verify({ ...req, headers: { ...req.headers, 'paypal-auth-algo': 'SHA1withRSA' } })
    expect(result.reasons).toEqual(['paypal: auth algorithm SHA1withRSA is not SHA256withRSA'])
  })

  it('rejects a self-signed leaf', async () => {
    const result = await verify(signed(capture, served('CERT-self-signed', { selfSigned: true })))
    expect(result.valid).toBe(false)
    expect(result.reasons[0]).toMatch(/does not chain to a trusted root/)
  })

  it('rejects a leaf for another host name', async () => {
    const result = await verify(signed(capture, served('CERT-wrong-host', { host: 'api.example.com' })))
    expect(result.valid).toBe(false)
    expect(result.reasons[0]).toMatch(/names no PayPal signing host/)
  })

  it('rejects an expired leaf', async () => {
    const result = await verify(signed(capture, served('CERT-expired', { expired: true })))
    expect(result.valid).toBe(false)
    expect(result.reasons[0]).toMatch(/expired on/)
  })

  it('rejects a leaf served without the intermediate that issued it', async () => {
    const leafOnly = signing.leaf.chainPem.slice(
      0,
      signing.leaf.chainPem.indexOf('-----END CERTIFICATE-----') + 25,
    )
    const url = signing.server.serve('CERT-leaf-only', leafOnly)
    expect((await verify(signed(capture, { url }))).reasons[0]).toMatch(/does not chain to a trusted root/)
  })

  it('uses Node’s root store when PAYPAL_CA_FILE is unset, which the test root is not in', async () => {
    const result = await verify(signed(capture), { env: { ...env, PAYPAL_CA_FILE: undefined } })
    expect(result.reasons[0]).toMatch(/does not chain to a trusted root/)
  })

  it('rejects a cert URL from an origin not in PAYPAL_CERT_ORIGINS, without fetching it', async () => {
    const elsewhere = signing.certUrl.replace('127.0.0.1', 'localhost')
    const result = await verify(signed(capture, { url: elsewhere }))
    expect(result.reasons[0]).toMatch(
      /^paypal: cert url origin http:\/\/localhost:\d+ is not in PAYPAL_CERT_ORIGINS$/,
    )
    expect(signing.server.hits.size).toBe(0)
  })

  it('allows http only for an origin listed with http (the default list is https)', async () => {
    const result = await verify(signed(capture), { env: { ...env, PAYPAL_CERT_ORIGINS: undefined } })
    expect(result.reasons[0]).toMatch(/is not in PAYPAL_CERT_ORIGINS/)
    expect(signing.server.hits.size).toBe(0)
  })

  it('rejects a cert URL outside /v1/notifications/certs/', async () => {
    for (const url of [
      `${signing.server.origin}/v1/other/CERT-1`,
      `${signing.server.origin}/v1/notifications/certs/../../other/CERT-1`,
      `${signing.certUrl}?x=1`,
    ]) {
      const result = await verify(signed(capture, { url }))
      expect(result.reasons[0]).toMatch(/is not of the form \/v1\/notifications\/certs\/<id>/)
    }
    expect(signing.server.hits.size).toBe(0)
  })

  it('does not follow a redirect, even to an allowed certificate', async () => {
    const url = signing.server.redirect('CERT-redirect', signing.certUrl)
    const result = await verify(signed(capture, { url }))
    expect(result.reasons[0]).toMatch(/answered 302 \(redirects are not followed\)/)
    expect(signing.server.hits.get(new URL(signing.certUrl).pathname)).toBeUndefined()
  })

  it('rejects an answer larger than 64 KiB', async () => {
    const url = signing.server.serve('CERT-huge', signing.leaf.chainPem + ' '.repeat(65 * 1024))
    expect((await verify(signed(capture, { url }))).reasons[0]).toMatch(/more than 65536 bytes/)
  })

  it('caches a certificate by URL', async () => {
    expect((await verify(signed(capture))).valid).toBe(true)
    expect((await verify(signed(capture))).valid).toBe(true)
    expect(signing.server.hits.get(new URL(signing.certUrl).pathname)).toBe(1)
  })

  it('does not cache a failed download', async () => {
    const url = `${signing.server.origin}/v1/notifications/certs/CERT-later`
    expect((await verify(signed(capture, { url }))).reasons[0]).toMatch(/answered 404/)
    signing.server.serve('CERT-later', signing.leaf.chainPem)
    expect((await verify(signed(capture, { url }))).valid).toBe(true)
  })

  it('rejects a transmission time outside the tolerance, in both directions', async () => {
    const now = wholeSecond()
    const old = await verify(signed(capture, { transmissionTime: paypalTime(now - 301_000) }), { now })
    expect(old.reasons).toEqual(['paypal: transmission time 301 s in the past, outside the 300 s tolerance'])
    const future = await verify(signed(capture, { transmissionTime: paypalTime(now + 301_000) }), { now })
    expect(future.reasons).toEqual([
      'paypal: transmission time 301 s in the future, outside the 300 s tolerance',
    ])
  })

  it('accepts a transmission time just inside the tolerance, in both directions', async () => {
    const now = wholeSecond()
    for (const offset of [-299_000, 299_000]) {
      const req = signed(capture, { transmissionTime: paypalTime(now + offset) })
      expect((await verify(req, { now })).valid).toBe(true)
    }
  })

  it('honours a configured tolerance', async () => {
    const now = Date.now()
    const req = signed(capture, { transmissionTime: paypalTime(now - 100_000) })
    expect((await verify(req, { now, env: { ...env, PAYPAL_TOLERANCE_SECONDS: '60' } })).valid).toBe(false)
  })

  it('throws when PAYPAL_CA_FILE cannot be read (a broken setup, not a forged request)', async () => {
    const broken = { ...env, PAYPAL_CA_FILE: '/nonexistent/paypal-roots.pem' }
    await expect(verify(signed(capture), { env: broken })).rejects.toThrow(/cannot read PAYPAL_CA_FILE/)
  })
})

describe('paypal.eventKey and eventType', () => {
  it('keys on the event id and types on event_type', () => {
    const req = signed(capture)
    const event = paypal.parse(req)
    expect(paypal.eventKey(req, event)).toBe('WH-2WR32451HC0233532-67976317FL4543714')
    expect(paypal.eventType(req, event)).toBe('PAYMENT.CAPTURE.COMPLETED')
  })

  it('gives a resend (a new transmission of the same event) the same key, so it is a duplicate', () => {
    const first = signed(capture)
    const resend = signed(capture)
    expect(resend.headers['paypal-transmission-id']).not.toBe(first.headers['paypal-transmission-id'])
    expect(paypal.eventKey(resend, paypal.parse(resend))).toBe(paypal.eventKey(first, paypal.parse(first)))
  })

  it('has no key or type when the event lacks them (answered 400)', () => {
    const req = signed({ resource: {} })
    expect(paypal.eventKey(req, paypal.parse(req))).toBeUndefined()
    expect(paypal.eventType(req, paypal.parse(req))).toBeUndefined()
  })

  it('routes raw events under the event type as PayPal spells it', () => {
    expect(rawRoutingKey('paypal', 'PAYMENT.CAPTURE.COMPLETED')).toBe('raw.paypal.PAYMENT.CAPTURE.COMPLETED')
  })
})

describe('paypal handlers', () => {
  const mapped = (event: Record<string, unknown>) => {
    const req = signed(event)
    const parsed = paypal.parse(req)
    return internalEvents(paypal, paypal.eventType(req, parsed)!, parsed, req)
  }

  it('maps PAYMENT.CAPTURE.COMPLETED to payment.completed with the decimal amount in minor units', () => {
    expect(mapped(capture)).toEqual([
      {
        type: 'payment.completed',
        data: {
          payment_id: '2GG279541U471931P',
          amount: 10.5,
          amount_minor: 1050,
          currency: 'USD',
          customer_id: null,
          metadata: { custom_id: 'order-42', order_id: '5O190127TN364715T' },
          provider: 'paypal',
        },
      },
    ])
  })

  it('uses the currency’s exponent: JPY has no minor unit', () => {
    const yen = paypalEvent('PAYMENT.CAPTURE.COMPLETED', {
      id: 'CAP-JPY',
      amount: { currency_code: 'JPY', value: '1500' },
    })
    expect(mapped(yen)[0]?.data).toMatchObject({ amount: 1500, amount_minor: 1500, currency: 'JPY' })
  })

  it('maps PAYMENT.CAPTURE.DENIED to payment.failed', () => {
    const denied = paypalEvent('PAYMENT.CAPTURE.DENIED', {
      id: '7NW873794T343360M',
      status: 'DECLINED',
      amount: { currency_code: 'EUR', value: '3.00' },
    })
    expect(mapped(denied)).toEqual([
      {
        type: 'payment.failed',
        data: {
          payment_id: '7NW873794T343360M',
          amount: 3,
          amount_minor: 300,
          currency: 'EUR',
          customer_id: null,
          failure_reason: 'DECLINED',
          provider: 'paypal',
        },
      },
    ])
  })

  it('maps BILLING.SUBSCRIPTION.CREATED to subscription.created', () => {
    const created = paypalEvent('BILLING.SUBSCRIPTION.CREATED', {
      id: 'I-BW452GLLEP1G',
      status: 'APPROVAL_PENDING',
      plan_id: 'P-5ML4271244454362WXNWU5NQ',
      start_time: '2026-11-23T00:00:00Z',
      subscriber: { payer_id: 'QYR5Z8XDVJNXQ', email_address: 'customer@example.com' },
      billing_info: { next_billing_time: '2026-12-23T10:00:00Z' },
    })
    expect(mapped(created)).toEqual([
      {
        type: 'subscription.created',
        data: {
          subscription_id: 'I-BW452GLLEP1G',
          customer_id: 'QYR5Z8XDVJNXQ',
          status: 'APPROVAL_PENDING',
          plan_id: 'P-5ML4271244454362WXNWU5NQ',
          current_period_start: '2026-11-23T00:00:00.000Z',
          current_period_end: '2026-12-23T10:00:00.000Z',
          provider: 'paypal',
        },
      },
    ])
  })

  it('publishes only the raw event for unmapped types', () => {
    expect(mapped(paypalEvent('CHECKOUT.ORDER.APPROVED', { id: 'O-1' }))).toEqual([])
  })
})

describe('paypal.checkSetup', () => {
  it('refuses at startup a PAYPAL_CA_FILE that cannot be read, or an origin that is not a URL', () => {
    const check = (env: Record<string, string>) => () => paypal.checkSetup!(loadConfig(env))
    expect(check({ PAYPAL_CA_FILE: '/nonexistent/ca.pem' })).toThrow(/cannot read PAYPAL_CA_FILE/)
    expect(check({ PAYPAL_CERT_ORIGINS: 'api.paypal.com' })).toThrow(/PAYPAL_CERT_ORIGINS/)
    expect(check({})).not.toThrow()
  })
})
