import { createHmac } from 'node:crypto'
import { safeEqual } from '../../crypto.ts'

/** How long a sign-in lasts. */
export const sessionSeconds = 12 * 3600
export const sessionCookie = 'gw_session'

const mac = (token: string, purpose: string) =>
  createHmac('sha256', token).update(purpose).digest('base64url')

/**
 * A session is its start time signed with ADMIN_TOKEN: nothing stored, and changing the token signs every
 * browser out.
 */
export function newSession(token: string, now = Date.now()): string {
  const issued = String(Math.floor(now / 1000))
  return `${issued}.${mac(token, `session:${issued}`)}`
}

export function validSession(token: string, value: string | undefined, now = Date.now()): boolean {
  if (!value) return false
  const [issued, signature] = value.split('.')
  if (!issued || !signature || !/^\d+$/.test(issued)) return false
  const age = now / 1000 - Number(issued)
  return age >= 0 && age < sessionSeconds && safeEqual(signature, mac(token, `session:${issued}`))
}

/** The CSRF token of a session: every form carries it, every POST must. */
export const csrfToken = (token: string, session: string) => mac(token, `csrf:${session}`)

export const validCsrf = (token: string, session: string, given: string | undefined) =>
  safeEqual(given, csrfToken(token, session))
