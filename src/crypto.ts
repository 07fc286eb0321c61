import { createHmac, timingSafeEqual } from 'node:crypto'

/** Constant-time string comparison; a length mismatch is answered without comparing. */
export function safeEqual(received: string | undefined, expected: string): boolean {
  if (received === undefined) return false
  const a = Buffer.from(received)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}

export function hmac(algorithm: 'sha1' | 'sha256', key: string, message: Buffer | string): Buffer {
  return createHmac(algorithm, key).update(message).digest()
}
