import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import { standardWebhooksKey } from './standard-webhooks.ts'

/**
 * PROVIDERS_FILE: senders beyond the five built in, by configuration (CONTRACT.md, "Providers by
 * configuration"). Read and checked once at startup: a file that does not parse, an unknown field or preset, a
 * missing field or a secret_env that is not set stops the start, naming the entry and the field. What it
 * yields is data; providers/configured.ts makes each entry a Provider like the others.
 */

/** Where a value is in a delivery: a header, or a dotted path into the JSON body (or the form's fields). */
export interface Source {
  readonly from: 'header' | 'json'
  readonly name: string
}

/**
 * Candidates for one value, the first present wins; a candidate of several sources (`json:type+json:action`)
 * is present when all of them are, their values joined with `.`.
 */
export type Lookup = readonly (readonly Source[])[]

interface CommonSpec {
  readonly name: string
  /** The preset it was filled from, if any. */
  readonly preset: PresetName | undefined
  /** The variable holding the secret(s), comma-separated while rotating. */
  readonly secretEnv: string
  readonly maxBodyBytes: number | undefined
  readonly id: Lookup
  readonly type: Lookup
  /** Accepted clock skew of the signed timestamp, both directions. */
  readonly toleranceSeconds: number
}

export interface StandardWebhooksSpec extends CommonSpec {
  readonly kind: 'standard-webhooks'
}

export interface HmacSpec extends CommonSpec {
  readonly kind: 'hmac'
  readonly secretEncoding: 'utf8' | 'base64'
  readonly signatureHeader: string
  readonly algorithm: 'sha1' | 'sha256' | 'sha512'
  readonly encoding: 'hex' | 'base64'
  readonly signaturePrefix: string
  /** A template of `{body}`, `{timestamp}`, `{id}`, `{method}` and `{url}` and literal text. */
  readonly signedPayload: string
  readonly timestamp: Source | undefined
  readonly timestampFormat: 'unix_s' | 'unix_ms' | 'iso8601'
}

export type ProviderSpec = StandardWebhooksSpec | HmacSpec

const presetNames = ['standard-webhooks', 'slack', 'linear', 'square', 'intercom'] as const
export type PresetName = (typeof presetNames)[number]

/** What each preset fills in (PROVIDERS.md, "Senders by configuration"); the entry's own fields win. */
const presets: Readonly<Record<PresetName, Readonly<Record<string, unknown>>>> = {
  'standard-webhooks': { kind: 'standard-webhooks' },
  // Events API deliveries carry event_id; interactivity and slash commands (form posts) only a trigger_id,
  // unique to the user's action. The envelope's `type` is event_callback: the event's own type comes first.
  slack: {
    kind: 'hmac',
    signature_header: 'x-slack-signature',
    algorithm: 'sha256',
    encoding: 'hex',
    signature_prefix: 'v0=',
    signed_payload: 'v0:{timestamp}:{body}',
    timestamp: 'header:x-slack-request-timestamp',
    timestamp_format: 'unix_s',
    tolerance_seconds: 300,
    id: ['json:event_id', 'json:trigger_id'],
    type: ['json:event.type', 'json:type'],
  },
  // The linear-timestamp header is not signed: the body's webhookTimestamp (ms) is, and Linear's SDK allows 60 s.
  linear: {
    kind: 'hmac',
    signature_header: 'linear-signature',
    algorithm: 'sha256',
    encoding: 'hex',
    signed_payload: '{body}',
    timestamp: 'json:webhookTimestamp',
    timestamp_format: 'unix_ms',
    tolerance_seconds: 60,
    id: ['header:linear-delivery'],
    type: ['json:type+json:action', 'json:type'],
  },
  // Square signs the subscription's notification URL then the body: PUBLIC_BASE_URL must be that URL's base.
  square: {
    kind: 'hmac',
    signature_header: 'x-square-hmacsha256-signature',
    algorithm: 'sha256',
    encoding: 'base64',
    signed_payload: '{url}{body}',
    id: ['json:event_id'],
    type: ['json:type'],
  },
  intercom: {
    kind: 'hmac',
    signature_header: 'x-hub-signature',
    algorithm: 'sha1',
    encoding: 'hex',
    signature_prefix: 'sha1=',
    signed_payload: '{body}',
    id: ['json:id'],
    type: ['json:topic'],
  },
}

const builtIn = ['stripe', 'github', 'twilio', 'shopify', 'paypal']

const sourcePattern = /^(header|json):(.+)$/

const source = z.string().transform((value, ctx): Source => {
  const match = sourcePattern.exec(value.trim())
  if (!match || !match[2]!.trim()) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not header:<name> or json:<dotted.path>` })
    return z.NEVER
  }
  const from = match[1] as Source['from']
  return { from, name: from === 'header' ? match[2]!.trim().toLowerCase() : match[2]!.trim() }
})

/** One candidate, `json:a+header:b` for several joined; a list of candidates, the first present wins. */
const lookup = z.union([z.string(), z.array(z.string()).min(1)]).transform((value, ctx): Lookup => {
  const candidates = typeof value === 'string' ? [value] : value
  return candidates.map((candidate) =>
    candidate.split('+').map((part) => {
      const parsed = source.safeParse(part)
      if (parsed.success) return parsed.data
      ctx.addIssue({ code: 'custom', message: parsed.error.issues[0]?.message ?? 'invalid' })
      return { from: 'header' as const, name: '' }
    }),
  )
})

const common = {
  name: z
    .string()
    .regex(/^[a-z0-9-]{1,40}$/, 'must be 1 to 40 of a-z, 0-9 and -')
    .refine((name) => !builtIn.includes(name), 'is a built-in provider'),
  preset: z.enum(presetNames).optional(),
  secret_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name'),
  max_body_bytes: z.number().int().positive().optional(),
  type: lookup.default([[{ from: 'json', name: 'type' }]]),
  tolerance_seconds: z.number().int().positive().default(300),
}

const tokens = ['body', 'timestamp', 'id', 'method', 'url']

const standardWebhooksSchema = z.strictObject({ ...common, kind: z.literal('standard-webhooks') })

const hmacSchema = z
  .strictObject({
    ...common,
    kind: z.literal('hmac'),
    secret_encoding: z.enum(['utf8', 'base64']).default('utf8'),
    signature_header: z.string().min(1),
    algorithm: z.enum(['sha1', 'sha256', 'sha512']).default('sha256'),
    encoding: z.enum(['hex', 'base64']).default('hex'),
    signature_prefix: z.string().default(''),
    signed_payload: z
      .string()
      .default('{body}')
      .refine(
        (template) => [...template.matchAll(/\{([^}]*)\}/g)].every((match) => tokens.includes(match[1]!)),
        `may use only ${tokens.map((token) => `{${token}}`).join(', ')}`,
      )
      .refine((template) => template.includes('{body}'), 'must include {body}'),
    timestamp: source.optional(),
    timestamp_format: z.enum(['unix_s', 'unix_ms', 'iso8601']).default('unix_s'),
    id: lookup,
  })
  .refine((entry) => !entry.signed_payload.includes('{timestamp}') || entry.timestamp, {
    path: ['timestamp'],
    message: 'required when signed_payload has {timestamp}',
  })
  // The signature is checked on the raw bytes before the body is read: what it signs comes from headers.
  .refine((entry) => !entry.signed_payload.includes('{timestamp}') || entry.timestamp?.from !== 'json', {
    path: ['timestamp'],
    message: 'must be a header:<name> when signed_payload has {timestamp} (the body is read after verifying)',
  })
  .refine(
    (entry) =>
      !entry.signed_payload.includes('{id}') ||
      entry.id.every((candidate) => candidate.every((part) => part.from === 'header')),
    {
      path: ['id'],
      message: 'must be a header:<name> when signed_payload has {id} (the body is read after verifying)',
    },
  )

const entrySchema = z.discriminatedUnion('kind', [standardWebhooksSchema, hmacSchema], {
  error: () => 'must be standard-webhooks or hmac (or give a preset)',
})

const fileSchema = z.union([z.strictObject({ providers: z.array(z.unknown()) }), z.array(z.unknown())])

/** Reads PROVIDERS_FILE; every problem is thrown as one Error naming the file, the entry and the field. */
export function readProvidersFile(path: string): ProviderSpec[] {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw new Error(`${path}: cannot be read (${(error as Error).message})`)
  }
  let document: unknown
  try {
    document = parseYaml(text)
  } catch (error) {
    throw new Error(`${path}: is not YAML or JSON (${(error as Error).message.split('\n')[0]})`)
  }
  const file = fileSchema.safeParse(document ?? [])
  if (!file.success) throw new Error(`${path}: must be a list of providers, or {providers: [...]}`)
  const entries = Array.isArray(file.data) ? file.data : file.data.providers
  const specs: ProviderSpec[] = []
  for (const [index, entry] of entries.entries()) {
    const label =
      entry && typeof entry === 'object' && typeof (entry as { name?: unknown }).name === 'string'
        ? `"${(entry as { name: string }).name}"`
        : `entry ${index + 1}`
    const spec = readEntry(entry, (problem) => new Error(`${path}: provider ${label}: ${problem}`))
    if (specs.some((other) => other.name === spec.name))
      throw new Error(`${path}: provider ${label}: name: declared twice`)
    specs.push(spec)
  }
  return specs
}

function readEntry(entry: unknown, fail: (problem: string) => Error): ProviderSpec {
  if (!entry || typeof entry !== 'object' || Array.isArray(entry)) throw fail('must be a mapping of fields')
  const given = entry as Record<string, unknown>
  const preset = given.preset
  if (preset !== undefined && !presetNames.includes(preset as PresetName))
    throw fail(`preset: must be one of ${presetNames.join(', ')}`)
  const filled = { ...(preset ? presets[preset as PresetName] : {}), ...given }
  const parsed = entrySchema.safeParse(filled)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    const field =
      issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : issue.path.map(String).join('.') || 'kind'
    const given = issue.path.reduce<unknown>(
      (value, key) =>
        value && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[key] : undefined,
      filled,
    )
    const message =
      issue.code === 'unrecognized_keys'
        ? 'unknown field'
        : given === undefined && issue.code !== 'custom' && field !== 'kind'
          ? 'required'
          : issue.message
    throw fail(`${field}: ${message}`)
  }
  const e = parsed.data
  const shared = {
    name: e.name,
    preset: e.preset,
    secretEnv: e.secret_env,
    maxBodyBytes: e.max_body_bytes,
    type: e.type,
    toleranceSeconds: e.tolerance_seconds,
  }
  if (e.kind === 'standard-webhooks')
    return {
      ...shared,
      kind: 'standard-webhooks',
      // The spec's headers, or Svix's aliases (Clerk's and Resend's deliveries).
      id: [[{ from: 'header', name: 'webhook-id' }], [{ from: 'header', name: 'svix-id' }]],
    }
  return {
    ...shared,
    kind: 'hmac',
    secretEncoding: e.secret_encoding,
    signatureHeader: e.signature_header.toLowerCase(),
    algorithm: e.algorithm,
    encoding: e.encoding,
    signaturePrefix: e.signature_prefix,
    signedPayload: e.signed_payload,
    timestamp: e.timestamp,
    timestampFormat: e.timestamp_format,
    id: e.id,
  }
}

/** A secret's key bytes as the spec says to use them; throws when it cannot be one. */
export function secretKey(spec: ProviderSpec, secret: string): Buffer {
  if (spec.kind === 'hmac' && spec.secretEncoding === 'utf8') {
    if (!secret) throw new Error('is empty')
    return Buffer.from(secret, 'utf8')
  }
  // Base64 after an optional whsec_, as Standard Webhooks keys are: decoded (and kept) by the same module.
  const encoded = secret.replace(/^whsec_/, '')
  if (!encoded) throw new Error('is empty')
  if (!/^[A-Za-z0-9+/]+=*$/.test(encoded)) throw new Error('is not base64 (after an optional whsec_ prefix)')
  return standardWebhooksKey(secret)
}
