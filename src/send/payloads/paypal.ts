import { paypalId } from '../ids.ts'

/** The PayPal event types `npm run send` offers. */
export const paypalEvents = [
  'PAYMENT.CAPTURE.COMPLETED',
  'PAYMENT.CAPTURE.DENIED',
  'BILLING.SUBSCRIPTION.CREATED',
] as const

const api = 'https://api.paypal.com'
const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
const money = (value: string, currency_code: string) => ({ currency_code, value })

function capture(status: 'COMPLETED' | 'DENIED') {
  const id = paypalId(17)
  const orderId = paypalId(17)
  const at = now()
  return {
    id,
    amount: status === 'COMPLETED' ? money('49.80', 'EUR') : money('120.00', 'USD'),
    final_capture: true,
    seller_protection: {
      status: 'ELIGIBLE',
      dispute_categories: ['ITEM_NOT_RECEIVED', 'UNAUTHORIZED_TRANSACTION'],
    },
    ...(status === 'COMPLETED'
      ? {
          seller_receivable_breakdown: {
            gross_amount: money('49.80', 'EUR'),
            paypal_fee: money('2.04', 'EUR'),
            net_amount: money('47.76', 'EUR'),
          },
        }
      : {}),
    invoice_id: `INV-${paypalId(8)}`,
    custom_id: `order-${paypalId(6).toLowerCase()}`,
    status,
    supplementary_data: { related_ids: { order_id: orderId } },
    create_time: at,
    update_time: at,
    links: [
      { href: `${api}/v2/payments/captures/${id}`, rel: 'self', method: 'GET' },
      { href: `${api}/v2/payments/captures/${id}/refund`, rel: 'refund', method: 'POST' },
      { href: `${api}/v2/checkout/orders/${orderId}`, rel: 'up', method: 'GET' },
    ],
  }
}

function subscription() {
  const id = `I-${paypalId(12)}`
  const at = now()
  return {
    id,
    plan_id: `P-${paypalId(24)}`,
    status: 'APPROVAL_PENDING',
    status_update_time: at,
    start_time: at,
    quantity: '1',
    shipping_amount: money('0.0', 'USD'),
    subscriber: { email_address: 'ada@example.com', name: { given_name: 'Ada', surname: 'Lovelace' } },
    create_time: at,
    plan_overridden: false,
    links: [
      {
        href: `https://www.paypal.com/webapps/billing/subscriptions?ba_token=BA-${paypalId(17)}`,
        rel: 'approve',
        method: 'GET',
      },
      { href: `${api}/v1/billing/subscriptions/${id}`, rel: 'edit', method: 'PATCH' },
      { href: `${api}/v1/billing/subscriptions/${id}`, rel: 'self', method: 'GET' },
    ],
  }
}

const summaries: Record<(typeof paypalEvents)[number], string> = {
  'PAYMENT.CAPTURE.COMPLETED': 'Payment completed for EUR 49.8 EUR',
  'PAYMENT.CAPTURE.DENIED': 'A USD 120.0 USD capture payment was denied',
  'BILLING.SUBSCRIPTION.CREATED': 'Subscription created',
}

/** A webhook event as PayPal posts it, with a fresh `WH-` id each time. */
export function paypalPayload(type: (typeof paypalEvents)[number]): Record<string, unknown> {
  const id = `WH-${paypalId(17)}-${paypalId(17)}`
  const billing = type === 'BILLING.SUBSCRIPTION.CREATED'
  return {
    id,
    event_version: '1.0',
    create_time: new Date().toISOString(),
    resource_type: billing ? 'subscription' : 'capture',
    resource_version: '2.0',
    event_type: type,
    summary: summaries[type],
    resource: billing
      ? subscription()
      : capture(type === 'PAYMENT.CAPTURE.COMPLETED' ? 'COMPLETED' : 'DENIED'),
    links: [
      { href: `${api}/v1/notifications/webhooks-events/${id}`, rel: 'self', method: 'GET' },
      { href: `${api}/v1/notifications/webhooks-events/${id}/resend`, rel: 'resend', method: 'POST' },
    ],
  }
}
