import { randomInt } from 'node:crypto'
import { shopifyId } from '../ids.ts'

/** The Shopify topics `npm run send` offers. */
export const shopifyEvents = ['orders/create', 'orders/paid', 'customers/create'] as const

export const shopDomain = 'example-store.myshopify.com'

const gid = (type: string, id: number) => `gid://shopify/${type}/${id}`
const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, '+00:00')

const address = {
  first_name: 'Ada',
  last_name: 'Lovelace',
  address1: '12 Analytical Row',
  address2: null,
  city: 'London',
  province: null,
  country: 'United Kingdom',
  zip: 'EC1A 1BB',
  phone: null,
  company: null,
  country_code: 'GB',
  province_code: null,
  name: 'Ada Lovelace',
}

function customer(id: number, created: string) {
  return {
    id,
    email: `ada.${id}@example.com`,
    created_at: created,
    updated_at: created,
    first_name: 'Ada',
    last_name: 'Lovelace',
    orders_count: 0,
    state: 'disabled',
    total_spent: '0.00',
    last_order_id: null,
    note: null,
    verified_email: true,
    multipass_identifier: null,
    tax_exempt: false,
    tags: '',
    last_order_name: null,
    currency: 'EUR',
    phone: null,
    addresses: [],
    tax_exemptions: [],
    email_marketing_consent: {
      state: 'not_subscribed',
      opt_in_level: 'single_opt_in',
      consent_updated_at: null,
    },
    sms_marketing_consent: null,
    admin_graphql_api_id: gid('Customer', id),
  }
}

function lineItem(title: string, variant: string, sku: string, price: string, quantity: number) {
  const id = shopifyId()
  return {
    id,
    admin_graphql_api_id: gid('LineItem', id),
    fulfillable_quantity: quantity,
    fulfillment_status: null,
    gift_card: false,
    grams: 350,
    name: `${title} - ${variant}`,
    price,
    product_exists: true,
    product_id: shopifyId(),
    quantity,
    requires_shipping: true,
    sku,
    taxable: true,
    title,
    total_discount: '0.00',
    variant_id: shopifyId(),
    variant_title: variant,
    vendor: 'Example Store',
  }
}

/** An order as Shopify's REST webhooks send it (trimmed of empty sections), new ids each time. */
function order(financialStatus: 'pending' | 'paid') {
  const id = shopifyId()
  const customerId = shopifyId()
  const created = now()
  const number = randomInt(1000, 100_000)
  return {
    id,
    admin_graphql_api_id: gid('Order', id),
    app_id: 580111,
    browser_ip: '203.0.113.24',
    buyer_accepts_marketing: false,
    cancel_reason: null,
    cancelled_at: null,
    confirmation_number: 'QK8ZT4N2X',
    confirmed: true,
    contact_email: `ada.${customerId}@example.com`,
    created_at: created,
    currency: 'EUR',
    current_subtotal_price: '44.85',
    current_total_price: '49.80',
    current_total_tax: '8.30',
    customer_locale: 'en-GB',
    email: `ada.${customerId}@example.com`,
    financial_status: financialStatus,
    fulfillment_status: null,
    name: `#${number}`,
    number: number - 1000,
    order_number: number,
    presentment_currency: 'EUR',
    processed_at: created,
    source_name: 'web',
    subtotal_price: '44.85',
    tags: '',
    taxes_included: true,
    test: true,
    total_discounts: '0.00',
    total_line_items_price: '44.85',
    total_price: '49.80',
    total_tax: '8.30',
    total_weight: 1050,
    updated_at: created,
    customer: { ...customer(customerId, created), orders_count: 1, default_address: address },
    billing_address: address,
    shipping_address: address,
    line_items: [
      lineItem('Ceramic mug', 'White', 'MUG-WHT', '14.95', 2),
      lineItem('Ceramic mug', 'Black', 'MUG-BLK', '14.95', 1),
    ],
    shipping_lines: [
      { id: shopifyId(), code: 'Standard', price: '4.95', title: 'Standard', source: 'shopify' },
    ],
  }
}

/** The JSON body Shopify posts for a topic. */
export function shopifyPayload(topic: (typeof shopifyEvents)[number]): Record<string, unknown> {
  if (topic === 'customers/create') return customer(shopifyId(), now())
  return order(topic === 'orders/paid' ? 'paid' : 'pending')
}
