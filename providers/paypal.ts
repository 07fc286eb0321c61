import { verify as verifySignature } from 'node:crypto'
import { crc32 } from 'node:zlib'
import { fromDecimal } from '../src/money.ts'
import { parseJsonObject } from '../src/parse.ts'
import { checkCertificateSetup, signingCertificate } from './paypal-certs.ts'
import { header, outsideTolerance, type Provider } from '../src/provider.ts'

type PayPalResource = Record<string, any>
interface PayPalEvent {
  id?: unknown
  event_type?: unknown
  resource?: PayPalResource
}

const signedHeaders = [
  'paypal-transmission-id',
  'paypal-transmission-time',
  'paypal-transmission-sig',
  'paypal-cert-url',
  'paypal-auth-algo',
] as const

const resourceOf = (event: PayPalEvent): PayPalResource =>
  event.resource && typeof event.resource === 'object' ? event.resource : {}

/** PayPal amounts are decimal strings with a `currency_code`; minor units follow the currency's exponent. */
function moneyOf(amount: { value?: unknown; currency_code?: unknown } | undefined) {
  if (typeof amount?.value !== 'string' || typeof amount.currency_code !== 'string')
    return { amount: null, amount_minor: null, currency: null }
  return fromDecimal(amount.value, amount.currency_code)
}

const isoTime = (value: unknown): string | null =>
  typeof value === 'string' && !Number.isNaN(Date.parse(value)) ? new Date(value).toISOString() : null

/** The merchant's own references on a capture, where present. */
function captureMetadata(capture: PayPalResource): Record<string, string> {
  const metadata: Record<string, string> = {}
  if (typeof capture.custom_id === 'string') metadata.custom_id = capture.custom_id
  if (typeof capture.invoice_id === 'string') metadata.invoice_id = capture.invoice_id
  const orderId = capture.supplementary_data?.related_ids?.order_id
  if (typeof orderId === 'string') metadata.order_id = orderId
  return metadata
}

export const paypal: Provider<PayPalEvent> = {
  name: 'paypal',

  checkSetup: (config) => checkCertificateSetup(config.paypal.certOrigins, config.paypal.caFile),

  // The secret is the webhook id from PayPal's dashboard: part of the message, not read from the request.
  async verify(req, webhookId, { config, now, reject }) {
    const missing = signedHeaders.find((name) => !header(req, name))
    if (missing) return reject(`paypal: no ${missing.toUpperCase()} header`)
    const sent = (name: (typeof signedHeaders)[number]) => header(req, name) ?? ''
    const transmissionId = sent('paypal-transmission-id')
    const transmissionTime = sent('paypal-transmission-time')
    const algorithm = sent('paypal-auth-algo')
    if (algorithm !== 'SHA256withRSA')
      return reject(`paypal: auth algorithm ${algorithm} is not SHA256withRSA`)

    const sentAt = Date.parse(transmissionTime)
    if (Number.isNaN(sentAt))
      return reject(`paypal: transmission time ${JSON.stringify(transmissionTime)} is not a date`)
    const tolerance = config.toleranceSeconds['paypal'] ?? 300
    const late = outsideTolerance('paypal: transmission time', sentAt, now, tolerance)
    if (late) return reject(late)

    const found = await signingCertificate(sent('paypal-cert-url'), {
      origins: config.paypal.certOrigins,
      caFile: config.paypal.caFile,
      now,
    })
    if ('reason' in found) return reject(found.reason)
    const publicKey = found.certificate.publicKey
    if (publicKey.asymmetricKeyType !== 'rsa') return reject('paypal: the signing certificate has no RSA key')

    // The CRC32 of the raw bytes, as an unsigned decimal: the body is never re-serialized.
    const message = `${transmissionId}|${transmissionTime}|${webhookId}|${crc32(req.body) >>> 0}`
    const valid = verifySignature(
      'sha256',
      Buffer.from(message),
      publicKey,
      Buffer.from(sent('paypal-transmission-sig'), 'base64'),
    )
    return valid || reject('paypal: PAYPAL-TRANSMISSION-SIG does not match')
  },

  parse: (req) => parseJsonObject(req.body, 'paypal') as PayPalEvent,

  // The event id, not the transmission id: a resend is a new transmission of the same event.
  eventKey: (_req, event) => (typeof event.id === 'string' && event.id ? event.id : undefined),
  eventType: (_req, event) =>
    typeof event.event_type === 'string' && event.event_type ? event.event_type : undefined,

  handlers: {
    'PAYMENT.CAPTURE.COMPLETED': (event) => {
      const capture = resourceOf(event)
      return {
        type: 'payment.completed',
        data: {
          payment_id: capture.id ?? null,
          ...moneyOf(capture.amount),
          // Captures name no payer; Orders-API resources do.
          customer_id: capture.payer?.payer_id ?? null,
          metadata: captureMetadata(capture),
        },
      }
    },
    'PAYMENT.CAPTURE.DENIED': (event) => {
      const capture = resourceOf(event)
      return {
        type: 'payment.failed',
        data: {
          payment_id: capture.id ?? null,
          ...moneyOf(capture.amount),
          customer_id: capture.payer?.payer_id ?? null,
          failure_reason: capture.status_details?.reason ?? capture.status ?? null,
        },
      }
    },
    'BILLING.SUBSCRIPTION.CREATED': (event) => {
      const subscription = resourceOf(event)
      return {
        type: 'subscription.created',
        data: {
          subscription_id: subscription.id ?? null,
          customer_id: subscription.subscriber?.payer_id ?? null,
          status: subscription.status ?? null,
          plan_id: subscription.plan_id ?? null,
          current_period_start: isoTime(
            subscription.billing_info?.last_payment?.time ?? subscription.start_time,
          ),
          current_period_end: isoTime(subscription.billing_info?.next_billing_time),
        },
      }
    },
  },
}
