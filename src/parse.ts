import { MalformedWebhook } from './provider.ts'

/** Parses a verified body that must be one JSON object. */
export function parseJsonObject(body: Buffer | string, provider: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'))
  } catch (error) {
    throw new MalformedWebhook(`${provider}: body is not valid JSON (${(error as Error).message})`)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new MalformedWebhook(`${provider}: body is not a JSON object`)
  }
  return value as Record<string, unknown>
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
