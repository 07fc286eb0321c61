import { randomBytes, randomInt, randomUUID } from 'node:crypto'

const alphanumeric = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
const upperAlphanumeric = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ'

const randomText = (alphabet: string, length: number): string =>
  Array.from({ length }, () => alphabet[randomInt(alphabet.length)]).join('')

/** A Stripe-style id such as `evt_3QxYz2LkdIwHu7ix0aBcDeFg`: the prefix, then 24 alphanumerics. */
export const stripeId = (prefix: string): string => `${prefix}_${randomText(alphanumeric, 24)}`

/** A Twilio SID such as `SM` followed by 32 hex digits. */
export const twilioSid = (prefix: 'SM' | 'CA'): string => `${prefix}${randomBytes(16).toString('hex')}`

/** PayPal's upper-case ids: `length` characters, e.g. 17 for a capture id. */
export const paypalId = (length: number): string => randomText(upperAlphanumeric, length)

/** A Shopify REST id: 13 digits, well within what a JSON number holds exactly. */
export const shopifyId = (): number => 5_000_000_000_000 + randomInt(1, 2 ** 40)

/** A GUID as GitHub's X-GitHub-Delivery and Shopify's X-Shopify-Webhook-Id carry. */
export const guid = (): string => randomUUID()
