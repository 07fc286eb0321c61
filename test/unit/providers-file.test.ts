import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { readProvidersFile, secretKey, type HmacSpec } from '../../src/providers-file.ts'

const contractExample = fileURLToPath(new URL('../fixtures/providers/contract-example.yaml', import.meta.url))

/** The secrets the contract's example (and the other presets of the fixture) name. */
const secrets = {
  CLERK_WEBHOOK_SECRET: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  ACME_WEBHOOK_SECRET: 'acme-new, acme-old',
  SLACK_SIGNING_SECRET: '8f742231b10e8888abcd99yyyzzz85a5',
  LINEAR_WEBHOOK_SECRET: 'lin_wh_secret',
  SQUARE_SIGNATURE_KEY: 'square-signature-key',
  INTERCOM_CLIENT_SECRET: 'intercom-client-secret',
}

const directory = mkdtempSync(join(tmpdir(), 'providers-file-'))
afterAll(() => rmSync(directory, { recursive: true, force: true }))

let written = 0
/** Writes a PROVIDERS_FILE (text as given, anything else as JSON) and returns its path. */
function providersFile(content: string | unknown, extension = typeof content === 'string' ? 'yaml' : 'json') {
  const path = join(directory, `providers-${++written}.${extension}`)
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content))
  return path
}

/** loadConfig with PROVIDERS_FILE holding `entries`, and the variables given. */
const configWith = (entries: unknown[], env: Record<string, string> = {}) =>
  loadConfig({ PROVIDERS_FILE: providersFile({ providers: entries }), ...env })

/** What loadConfig refused `entries` with. */
function refusal(entries: unknown[], env: Record<string, string> = { SECRET: 'a-secret' }): string {
  try {
    configWith(entries, env)
  } catch (error) {
    return (error as Error).message
  }
  throw new Error('loadConfig accepted the file')
}

const acme = {
  name: 'acme',
  kind: 'hmac',
  secret_env: 'SECRET',
  signature_header: 'x-acme-signature',
  id: 'header:x-acme-delivery',
}

describe('readProvidersFile', () => {
  it('reads the contract’s example: standard-webhooks, hmac with every field, and the slack preset filled in', () => {
    const specs = readProvidersFile(contractExample)
    expect(specs.map((spec) => spec.name)).toEqual(['clerk', 'acme', 'slack', 'linear', 'square', 'intercom'])
    expect(specs[0]).toMatchObject({
      name: 'clerk',
      kind: 'standard-webhooks',
      secretEnv: 'CLERK_WEBHOOK_SECRET',
      type: [[{ from: 'json', name: 'type' }]],
      toleranceSeconds: 300,
    })
    expect(specs[1]).toEqual({
      name: 'acme',
      preset: undefined,
      kind: 'hmac',
      secretEnv: 'ACME_WEBHOOK_SECRET',
      secretEncoding: 'utf8',
      signatureHeader: 'x-acme-signature',
      algorithm: 'sha256',
      encoding: 'hex',
      signaturePrefix: 'sha256=',
      signedPayload: '{timestamp}.{body}',
      timestamp: { from: 'header', name: 'x-acme-timestamp' },
      timestampFormat: 'unix_s',
      toleranceSeconds: 300,
      maxBodyBytes: undefined,
      id: [[{ from: 'header', name: 'x-acme-delivery' }]],
      type: [[{ from: 'json', name: 'event.type' }]],
    })
    expect(specs[2]).toMatchObject({
      name: 'slack',
      preset: 'slack',
      kind: 'hmac',
      signatureHeader: 'x-slack-signature',
      algorithm: 'sha256',
      encoding: 'hex',
      signaturePrefix: 'v0=',
      signedPayload: 'v0:{timestamp}:{body}',
      timestamp: { from: 'header', name: 'x-slack-request-timestamp' },
      timestampFormat: 'unix_s',
      toleranceSeconds: 300,
    })
  })

  it('fills each preset with the sender’s scheme (PROVIDERS.md, "Senders by configuration")', () => {
    const byName = Object.fromEntries(readProvidersFile(contractExample).map((spec) => [spec.name, spec]))
    expect(byName.linear).toMatchObject({
      kind: 'hmac',
      signatureHeader: 'linear-signature',
      algorithm: 'sha256',
      encoding: 'hex',
      signaturePrefix: '',
      signedPayload: '{body}',
      timestamp: { from: 'json', name: 'webhookTimestamp' },
      timestampFormat: 'unix_ms',
      toleranceSeconds: 60,
    })
    expect(byName.square).toMatchObject({
      kind: 'hmac',
      signatureHeader: 'x-square-hmacsha256-signature',
      algorithm: 'sha256',
      encoding: 'base64',
      signaturePrefix: '',
      signedPayload: '{url}{body}',
      timestamp: undefined,
      id: [[{ from: 'json', name: 'event_id' }]],
      type: [[{ from: 'json', name: 'type' }]],
    })
    expect(byName.intercom).toMatchObject({
      kind: 'hmac',
      signatureHeader: 'x-hub-signature',
      algorithm: 'sha1',
      encoding: 'hex',
      signaturePrefix: 'sha1=',
      signedPayload: '{body}',
      timestamp: undefined,
      id: [[{ from: 'json', name: 'id' }]],
      type: [[{ from: 'json', name: 'topic' }]],
      maxBodyBytes: 4096,
    })
  })

  it('reads a JSON file, as a bare list or under providers', () => {
    const entry = { name: 'hooks', preset: 'standard-webhooks', secret_env: 'HOOKS_SECRET' }
    for (const content of [[entry], { providers: [entry] }]) {
      const [spec] = readProvidersFile(providersFile(content))
      expect(spec).toMatchObject({ name: 'hooks', preset: 'standard-webhooks', kind: 'standard-webhooks' })
    }
  })

  it('lets an entry’s own fields win over its preset’s', () => {
    const [spec] = readProvidersFile(
      providersFile({
        providers: [{ name: 'slack-eu', preset: 'slack', secret_env: 'S', tolerance_seconds: 60 }],
      }),
    )
    expect(spec).toMatchObject({
      preset: 'slack',
      toleranceSeconds: 60,
      signatureHeader: 'x-slack-signature',
    })
  })

  it('lower-cases header names and reads a list of candidates and joined sources', () => {
    const [spec] = readProvidersFile(
      providersFile({
        providers: [
          {
            ...acme,
            signature_header: 'X-Acme-Signature',
            id: ['header:X-Acme-Delivery', 'json:delivery.id'],
            type: ['json:kind+json:action', 'header:X-Acme-Event'],
          },
        ],
      }),
    )
    expect(spec).toMatchObject({
      signatureHeader: 'x-acme-signature',
      id: [[{ from: 'header', name: 'x-acme-delivery' }], [{ from: 'json', name: 'delivery.id' }]],
      type: [
        [
          { from: 'json', name: 'kind' },
          { from: 'json', name: 'action' },
        ],
        [{ from: 'header', name: 'x-acme-event' }],
      ],
    })
  })
})

describe('loadConfig with PROVIDERS_FILE', () => {
  it('puts each entry’s secrets from its secret_env variable under its name, comma-separated for rotation', () => {
    const config = loadConfig({ PROVIDERS_FILE: contractExample, ...secrets })
    expect(config.configuredProviders.map((spec) => spec.name)).toEqual([
      'clerk',
      'acme',
      'slack',
      'linear',
      'square',
      'intercom',
    ])
    expect(config.secrets.acme).toEqual(['acme-new', 'acme-old'])
    expect(config.secrets.clerk).toEqual([secrets.CLERK_WEBHOOK_SECRET])
    expect(config.secrets.slack).toEqual([secrets.SLACK_SIGNING_SECRET])
    // The built-ins are still there, disabled without their variables.
    expect(config.secrets.stripe).toEqual([])
  })

  it('takes each entry’s body limit and tolerance', () => {
    const config = loadConfig({ PROVIDERS_FILE: contractExample, ...secrets })
    expect(config.maxBodyBytes).toEqual({ default: 1048576, github: 26214400, intercom: 4096 })
    expect(config.toleranceSeconds).toMatchObject({ clerk: 300, acme: 300, slack: 300, linear: 60 })
  })

  it('is unchanged without PROVIDERS_FILE', () => {
    const config = loadConfig({})
    expect(config.configuredProviders).toEqual([])
    expect(Object.keys(config.secrets).sort()).toEqual(['github', 'paypal', 'shopify', 'stripe', 'twilio'])
  })

  it('accepts an empty file as no providers', () => {
    expect(loadConfig({ PROVIDERS_FILE: providersFile('') }).configuredProviders).toEqual([])
  })
})

describe('loadConfig refuses a broken PROVIDERS_FILE, naming the entry and the field', () => {
  it('refuses a file that is not YAML, naming the file', () => {
    const path = providersFile('providers:\n  - name: acme\n   kind: [hmac\n')
    expect(() => loadConfig({ PROVIDERS_FILE: path })).toThrow(
      `invalid configuration: PROVIDERS_FILE: ${path}: is not YAML or JSON`,
    )
  })

  it('refuses a file that is not a list of providers', () => {
    expect(() => loadConfig({ PROVIDERS_FILE: providersFile('just some words') })).toThrow(
      /must be a list of providers/,
    )
    expect(() => loadConfig({ PROVIDERS_FILE: providersFile({ senders: [] }) })).toThrow(
      /must be a list of providers/,
    )
  })

  it('refuses a file it cannot read', () => {
    expect(() => loadConfig({ PROVIDERS_FILE: join(directory, 'absent.yaml') })).toThrow(
      /PROVIDERS_FILE: .*absent\.yaml: cannot be read/,
    )
  })

  it('refuses an unknown field', () => {
    expect(refusal([{ ...acme, colour: 'red' }])).toMatch(/: provider "acme": colour: unknown field$/)
  })

  it('refuses an id on a standard-webhooks entry (its id is the webhook-id header)', () => {
    expect(
      refusal([{ name: 'clerk', kind: 'standard-webhooks', secret_env: 'SECRET', id: 'json:id' }]),
    ).toMatch(/provider "clerk": id: unknown field$/)
  })

  it('refuses an unknown preset', () => {
    expect(refusal([{ name: 'hub', preset: 'github', secret_env: 'SECRET' }])).toMatch(
      /provider "hub": preset: must be one of standard-webhooks, slack, linear, square, intercom$/,
    )
  })

  it('refuses an hmac entry without signature_header', () => {
    const { signature_header: _, ...entry } = acme
    expect(refusal([entry])).toMatch(/provider "acme": signature_header: required$/)
  })

  it('refuses an hmac entry without id, saying it is required', () => {
    const { id: _, ...entry } = acme
    expect(refusal([entry])).toMatch(/provider "acme": id: required$/)
  })

  it('refuses an entry with neither kind nor preset, naming kind once', () => {
    const { kind: _, ...entry } = acme
    expect(refusal([entry])).toMatch(/provider "acme": kind: must be standard-webhooks or hmac/)
  })

  it('refuses an entry without secret_env', () => {
    const { secret_env: _, ...entry } = acme
    expect(refusal([entry])).toMatch(/provider "acme": secret_env: required$/)
  })

  it('refuses a name that is not 1 to 40 of a-z, 0-9 and -', () => {
    for (const name of ['Acme', 'acme_pay', 'acme/pay', '', 'a'.repeat(41)])
      expect(refusal([{ ...acme, name }])).toMatch(/: name: must be 1 to 40 of a-z, 0-9 and -$/)
    expect(refusal([{ ...acme, name: 'Acme' }])).toContain('provider "Acme": name:')
  })

  it('refuses the name of a built-in provider', () => {
    for (const name of ['stripe', 'github', 'twilio', 'shopify', 'paypal'])
      expect(refusal([{ ...acme, name }])).toMatch(
        new RegExp(`provider "${name}": name: is a built-in provider$`),
      )
  })

  it('refuses a name declared twice', () => {
    expect(
      refusal([
        { name: 'acme', preset: 'intercom', secret_env: 'SECRET' },
        { ...acme, name: 'acme' },
      ]),
    ).toMatch(/provider "acme": name: declared twice$/)
  })

  it('refuses a secret_env that is not set, or set empty', () => {
    expect(refusal([acme], {})).toMatch(/provider "acme": secret_env: SECRET is not set$/)
    expect(refusal([acme], { SECRET: ' , ' })).toMatch(/provider "acme": secret_env: SECRET is not set$/)
  })

  it('refuses a secret_env that is not a variable name', () => {
    expect(refusal([{ ...acme, secret_env: 'not a variable' }])).toMatch(
      /provider "acme": secret_env: must be an environment variable name$/,
    )
  })

  it('refuses {timestamp} in signed_payload without a timestamp', () => {
    expect(refusal([{ ...acme, signed_payload: '{timestamp}.{body}' }])).toMatch(
      /provider "acme": timestamp: required when signed_payload has \{timestamp\}$/,
    )
  })

  it('refuses a signed_payload with an unknown token or without {body}', () => {
    expect(refusal([{ ...acme, signed_payload: '{nonce}.{body}' }])).toMatch(
      /provider "acme": signed_payload: may use only \{body\}, \{timestamp\}, \{id\}, \{method\}, \{url\}$/,
    )
    expect(refusal([{ ...acme, signed_payload: '{timestamp}', timestamp: 'header:x-t' }])).toMatch(
      /provider "acme": signed_payload: must include \{body\}$/,
    )
  })

  it('refuses a source that is not header:<name> or json:<path>', () => {
    expect(refusal([{ ...acme, id: 'body:id' }])).toMatch(
      /provider "acme": id: "body:id" is not header:<name> or json:<dotted.path>$/,
    )
  })

  it('refuses an algorithm, encoding or timestamp format it does not know', () => {
    expect(refusal([{ ...acme, algorithm: 'md5' }])).toMatch(/provider "acme": algorithm: /)
    expect(refusal([{ ...acme, encoding: 'base32' }])).toMatch(/provider "acme": encoding: /)
    expect(refusal([{ ...acme, timestamp: 'header:x-t', timestamp_format: 'rfc2822' }])).toMatch(
      /provider "acme": timestamp_format: /,
    )
  })

  it('refuses a whsec_ secret that is not base64 for standard-webhooks, without showing it', () => {
    const entry = { name: 'clerk', kind: 'standard-webhooks', secret_env: 'CLERK_WEBHOOK_SECRET' }
    const message = refusal([entry], {
      CLERK_WEBHOOK_SECRET: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whsec_not*base64',
    })
    expect(message).toMatch(
      /provider "clerk": secret_env: CLERK_WEBHOOK_SECRET: secret 2 is not base64 \(after an optional whsec_ prefix\)$/,
    )
    expect(message).not.toContain('not*base64')
  })

  it('refuses a base64 secret_encoding with a secret that is not base64', () => {
    const message = refusal([{ ...acme, secret_encoding: 'base64' }], { SECRET: 'whsec_plain text!' })
    expect(message).toMatch(/provider "acme": secret_env: SECRET: secret 1 is not base64/)
  })

  it('names the entry by its place when it has no name', () => {
    const { name: _, ...entry } = acme
    expect(refusal([{ ...acme, name: 'first' }, entry])).toMatch(/provider entry 2: name: required$/)
  })
})

describe('secretKey', () => {
  const specs = readProvidersFile(contractExample)
  const clerk = specs[0]!
  const acmeSpec = specs[1] as HmacSpec

  it('decodes a Standard Webhooks secret as base64 after whsec_', () => {
    expect(secretKey(clerk, 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')).toEqual(
      Buffer.from('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'base64'),
    )
    expect(secretKey(clerk, 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')).toEqual(
      Buffer.from('MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'base64'),
    )
  })

  it('uses an utf8 secret as it is, whsec_ and all', () => {
    expect(secretKey(acmeSpec, 'whsec_abc')).toEqual(Buffer.from('whsec_abc', 'utf8'))
  })

  it('decodes a base64 secret_encoding after an optional whsec_ prefix', () => {
    const base64Spec = { ...acmeSpec, secretEncoding: 'base64' as const }
    expect(secretKey(base64Spec, 'whsec_c2VjcmV0')).toEqual(Buffer.from('secret'))
    expect(secretKey(base64Spec, 'c2VjcmV0')).toEqual(Buffer.from('secret'))
  })

  it('throws for an empty or non-base64 secret', () => {
    expect(() => secretKey(clerk, 'whsec_')).toThrow()
    expect(() => secretKey(clerk, 'whsec_not*base64')).toThrow(/not base64/)
  })
})
