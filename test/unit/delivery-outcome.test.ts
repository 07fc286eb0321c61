import { Webhook } from 'standardwebhooks'
import { describe, expect, it } from 'vitest'
import { outcomeOf, retryAfterSeconds, scheduledDelaySeconds } from '../../src/destinations/sender.ts'
import { signatureHeaders } from '../../src/destinations/signing.ts'
import { defaultRetryScheduleSeconds, generateSecret } from '../../src/destinations/store.ts'

const noJitter = () => 0.5
const schedule = defaultRetryScheduleSeconds

describe('outcomeOf', () => {
  it.each([200, 201, 202, 204, 299])('counts %i as delivered', (status) => {
    expect(outcomeOf(status, undefined, schedule, 0)).toEqual({ kind: 'delivered' })
  })

  it('disables on 410 Gone, whatever the attempt', () => {
    expect(outcomeOf(410, undefined, schedule, 0)).toEqual({ kind: 'gone' })
    expect(outcomeOf(410, undefined, [], 5)).toEqual({ kind: 'gone' })
  })

  it.each([undefined, 301, 307, 400, 404, 500, 502])('retries %s on the schedule', (status) => {
    expect(outcomeOf(status, undefined, schedule, 0, noJitter)).toEqual({ kind: 'retry', retryInSeconds: 5 })
    expect(outcomeOf(status, undefined, schedule, 1, noJitter)).toEqual({
      kind: 'retry',
      retryInSeconds: 300,
    })
  })

  it('fails a delivery after the last scheduled retry', () => {
    expect(outcomeOf(500, undefined, schedule, schedule.length, noJitter)).toEqual({
      kind: 'retry',
      retryInSeconds: undefined,
    })
    expect(outcomeOf(500, undefined, [], 0)).toEqual({ kind: 'retry', retryInSeconds: undefined })
  })

  it.each([429, 503])('waits at least the Retry-After of a %i', (status) => {
    expect(outcomeOf(status, '120', schedule, 0, noJitter)).toEqual({ kind: 'retry', retryInSeconds: 120 })
    // A Retry-After shorter than the schedule's delay does not make the retry sooner.
    expect(outcomeOf(status, '1', schedule, 1, noJitter)).toEqual({ kind: 'retry', retryInSeconds: 300 })
  })

  it('ignores Retry-After on other answers', () => {
    expect(outcomeOf(500, '120', schedule, 0, noJitter)).toEqual({ kind: 'retry', retryInSeconds: 5 })
  })
})

describe('retryAfterSeconds', () => {
  it('reads delay-seconds and HTTP dates', () => {
    expect(retryAfterSeconds('30')).toBe(30)
    const now = Date.parse('2026-11-23T10:00:00Z')
    expect(retryAfterSeconds('Mon, 23 Nov 2026 10:01:00 GMT', now)).toBe(60)
  })

  it('clamps to between zero and a day, and ignores what it cannot read', () => {
    expect(retryAfterSeconds('Mon, 23 Nov 2026 09:00:00 GMT', Date.parse('2026-11-23T10:00:00Z'))).toBe(0)
    expect(retryAfterSeconds('999999999')).toBe(86400)
    expect(retryAfterSeconds('soon')).toBeUndefined()
    expect(retryAfterSeconds(undefined)).toBeUndefined()
  })
})

describe('scheduledDelaySeconds', () => {
  it('adds at most 10% of jitter either way', () => {
    expect(scheduledDelaySeconds(schedule, 1, () => 0)).toBeCloseTo(4.5)
    expect(scheduledDelaySeconds(schedule, 1, () => 0.999999)).toBeCloseTo(5.5)
    expect(scheduledDelaySeconds(schedule, 8)).toBeUndefined()
  })
})

describe('signatureHeaders', () => {
  it('signs so that the standardwebhooks package verifies with each active secret', () => {
    const [current, previous] = [generateSecret(), generateSecret()]
    const payload = '{"specversion":"1.0","id":"0862c029-aa9d-81b5-ac6c-677e7411eb83"}'
    const headers = signatureHeaders(
      '0862c029-aa9d-81b5-ac6c-677e7411eb83',
      payload,
      [current, previous],
      new Date(),
    )
    expect(headers['webhook-id']).toBe('0862c029-aa9d-81b5-ac6c-677e7411eb83')
    expect(headers['webhook-signature']!.split(' ')).toHaveLength(2)
    expect(new Webhook(current).verify(payload, headers)).toMatchObject({ specversion: '1.0' })
    expect(new Webhook(previous).verify(payload, headers)).toMatchObject({ specversion: '1.0' })
    expect(() => new Webhook(generateSecret()).verify(payload, headers)).toThrow()
    expect(() => new Webhook(current).verify(payload.replace('1.0', '1.1'), headers)).toThrow()
  })

  it('signs exactly as the standardwebhooks package signs, non-ASCII bodies included', () => {
    const secret = generateSecret()
    const at = new Date('2026-12-06T12:00:00Z')
    const payload = '{"data":{"name":"Zoë","city":"東京","emoji":"✓"}}'
    const headers = signatureHeaders('evt-1', payload, [secret], at)
    expect(headers['webhook-timestamp']).toBe(String(at.getTime() / 1000))
    expect(headers['webhook-signature']).toBe(new Webhook(secret).sign('evt-1', at, payload))
  })

  it('generates secrets in the Standard Webhooks form', () => {
    const secret = generateSecret()
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/)
    expect(Buffer.from(secret.slice(6), 'base64')).toHaveLength(32)
  })
})
