import { MalformedWebhook } from './provider.ts'

/**
 * The JSON text each parsed object came from. Raw events carry it verbatim: a parse turns integers beyond
 * 2^53 (Shopify's ids, say) into different numbers, and consumers must see what the provider sent.
 */
const sourceText = new WeakMap<object, string>()

export const jsonSourceOf = (value: unknown): string | undefined =>
  typeof value === 'object' && value !== null ? sourceText.get(value) : undefined

/** Parses a verified body that must be one JSON object. */
export function parseJsonObject(body: Buffer | string, provider: string): Record<string, unknown> {
  let value: unknown
  const text = typeof body === 'string' ? body : body.toString('utf8')
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new MalformedWebhook(`${provider}: body is not valid JSON${whereInvalid(error)}`)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new MalformedWebhook(`${provider}: body is not a JSON object`)
  }
  sourceText.set(value, text)
  return value as Record<string, unknown>
}

/**
 * Where JSON.parse gave up, without the excerpt of the text V8 quotes in some of its messages ("Unexpected
 * token 'x', "..." is not valid JSON"): the reason goes to the logs and the rejection log, where a body's
 * contents must never be.
 */
function whereInvalid(error: unknown): string {
  const message = (error as Error).message
  const position = /at position (\d+)/.exec(message)?.[1]
  if (position !== undefined) return ` (at character ${position})`
  return /end of JSON input/.test(message) ? ' (it ends too early)' : ''
}

/** Form fields as an object; a repeated key keeps every value, in order. */
export function parseForm(body: Buffer | string): Record<string, string | string[]> {
  // No prototype: field names such as `__proto__` or `constructor` are plain keys, not inherited members.
  const fields: Record<string, string | string[]> = Object.create(null)
  for (const [key, value] of new URLSearchParams(typeof body === 'string' ? body : body.toString('utf8'))) {
    const existing = fields[key]
    fields[key] =
      existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing, value]
  }
  return fields
}

export function isFormEncoded(contentType: string | undefined): boolean {
  return (contentType ?? '').toLowerCase().split(';')[0]?.trim() === 'application/x-www-form-urlencoded'
}
