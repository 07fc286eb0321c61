import { describe, expect, it } from 'vitest'
import { createLogger } from '../../src/ops/log.ts'

const capture = (level: Parameters<typeof createLogger>[0] = 'debug') => {
  const lines: Record<string, unknown>[] = []
  const raw: string[] = []
  const log = createLogger(level, (line) => {
    raw.push(line)
    lines.push(JSON.parse(line))
  })
  return { log, lines, raw }
}

describe('createLogger', () => {
  it('writes one JSON line per entry with time, level, msg and the fields', () => {
    const { log, lines } = capture()
    log.info('accepted', { provider: 'stripe', id: 'w1' })
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ level: 'info', msg: 'accepted', provider: 'stripe', id: 'w1' })
    expect(new Date(lines[0]!.time as string).toISOString()).toBe(lines[0]!.time)
  })

  it('never writes a secret, a token, a signature, credentials or a body', () => {
    const { log, raw } = capture()
    log.warn('rejected', {
      secret: 'whsec_top',
      secrets: ['whsec_a', 'whsec_b'],
      token: 'tok-1',
      authorization: 'Bearer adm',
      body: '{"card":"4242"}',
      headers: {
        'stripe-signature': 't=1,v1=abc',
        'x-hub-signature-256': 'sha256=def',
        'x-twilio-signature': 'tw-sig',
        'x-shopify-hmac-sha256': 'shop-sig',
        'paypal-transmission-sig': 'pp-sig',
        authorization: 'Bearer hdr',
        'content-type': 'application/json',
      },
      destination: { secret: 'whsec_dest', url: 'https://example.com' },
    })
    const text = raw.join('')
    for (const value of [
      'whsec_top',
      'whsec_a',
      'tok-1',
      'Bearer adm',
      '4242',
      'abc',
      'def',
      'tw-sig',
      'shop-sig',
      'pp-sig',
      'Bearer hdr',
      'whsec_dest',
    ])
      expect(text).not.toContain(value)
    expect(text).toContain('application/json')
    expect(text).toContain('https://example.com')
  })

  it('logs an error as its message', () => {
    const { log, lines } = capture()
    log.error('could not store', { error: new Error('connection refused') })
    expect(lines[0]).toMatchObject({ error: 'connection refused' })
  })

  it('carries a child logger bindings on every line', () => {
    const { log, lines } = capture()
    log.child({ requestId: 'r-1' }).info('accepted', { id: 'w1' })
    expect(lines[0]).toMatchObject({ requestId: 'r-1', id: 'w1' })
  })

  it('leaves out what is below its level', () => {
    const { log, lines } = capture('warn')
    log.info('accepted')
    log.debug('published')
    log.warn('rejected')
    expect(lines.map((line) => line.msg)).toEqual(['rejected'])
  })

  it("redacts names in any case, in child bindings too, and leaves the caller's fields as they were", () => {
    const { log, raw, lines } = capture()
    const fields = {
      headers: { Authorization: 'Bearer upper', 'Stripe-Signature': 't=1,v1=upper', accept: '*/*' },
      destination: { Secret: 'whsec_upper', name: 'billing' },
      Token: 'tok-upper',
    }
    log.child({ secret: 'whsec_bound', requestId: 'r-2' }).warn('rejected', fields)
    const text = raw.join('')
    for (const value of ['Bearer upper', 'v1=upper', 'whsec_upper', 'tok-upper', 'whsec_bound'])
      expect(text).not.toContain(value)
    expect(lines[0]).toMatchObject({
      requestId: 'r-2',
      headers: { Authorization: '[redacted]', 'Stripe-Signature': '[redacted]', accept: '*/*' },
      destination: { Secret: '[redacted]', name: 'billing' },
    })
    expect(fields.headers.Authorization).toBe('Bearer upper')
    expect(fields.destination.Secret).toBe('whsec_upper')
  })
})
