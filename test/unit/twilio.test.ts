import twilioSdk from 'twilio'
import { describe, expect, it } from 'vitest'
import { twilio } from '../../providers/twilio.ts'
import { rawRoutingKey } from '../../src/pipeline/events.ts'
import { MalformedWebhook } from '../../src/provider.ts'
import { internalEvents } from '../../src/pipeline/registry.ts'
import { request, verifyContext } from '../support/provider-request.ts'
import {
  twilioDelivery,
  twilioJsonDelivery,
  twilioMessageStatus,
  type TwilioParams,
} from '../support/signed-providers.ts'

const authToken = 'twilio_auth_token_primary'
const publicBase = 'https://hooks.example.com'
const path = '/webhooks/twilio'
const publicUrl = publicBase + path

/** A form callback signed over `signedUrl`, received as ingest hands it over with PUBLIC_BASE_URL set. */
function signed(params: TwilioParams, options: { token?: string; signedUrl?: string; path?: string } = {}) {
  const receivedPath = options.path ?? path
  const delivery = twilioDelivery(params, {
    authToken: options.token ?? authToken,
    url: options.signedUrl ?? publicBase + receivedPath,
  })
  return request(delivery.body, delivery.headers, {
    path: receivedPath,
    publicUrl: publicBase + receivedPath,
  })
}

const verify = (req: ReturnType<typeof request>, token = authToken) => {
  const ctx = verifyContext({ PUBLIC_BASE_URL: publicBase })
  return { valid: twilio.verify(req, token, ctx), reasons: ctx.reasons }
}

const delivered = twilioMessageStatus('SM11111111111111111111111111111111', 'delivered')

describe('twilio.verify', () => {
  it('accepts a callback signed by Twilio’s SDK over the public URL', () => {
    expect(verify(signed(delivered)).valid).toBe(true)
  })

  it('accepts a callback whose Host and scheme a proxy changed: the URL is rebuilt from PUBLIC_BASE_URL', () => {
    const req = signed(delivered)
    const proxied = {
      ...req,
      headers: { ...req.headers, host: '10.0.0.7:3000', 'x-forwarded-proto': 'http' },
    }
    expect(verify(proxied).valid).toBe(true)
  })

  it('rejects a Twilio signature over another URL, such as the one the proxy handed us', () => {
    const result = verify(signed(delivered, { signedUrl: `http://10.0.0.7:3000${path}` }))
    expect(result.valid).toBe(false)
    expect(result.reasons[0]).toMatch(
      /^twilio: X-Twilio-Signature does not match https:\/\/hooks\.example\.com/,
    )
  })

  it('rejects a signature over another path or query', () => {
    expect(verify(signed(delivered, { signedUrl: `${publicBase}/webhooks/other` })).valid).toBe(false)
    expect(
      verify(signed(delivered, { signedUrl: `${publicUrl}?tenant=a`, path: `${path}?tenant=b` })).valid,
    ).toBe(false)
  })

  it('keeps the original query in the signed URL', () => {
    expect(verify(signed(delivered, { path: `${path}?tenant=a&x=%27` })).valid).toBe(true)
  })

  it('accepts a signature over the URL with its default port (the SDK tries both)', () => {
    expect(verify(signed(delivered, { signedUrl: `https://hooks.example.com:443${path}` })).valid).toBe(true)
  })

  it('rejects a tampered body', () => {
    const req = signed(delivered)
    const tampered = { ...req, body: Buffer.from(req.body.toString().replace('delivered', 'undelivered')) }
    expect(verify(tampered).valid).toBe(false)
  })

  it('rejects an added field', () => {
    const req = signed(delivered)
    expect(verify({ ...req, body: Buffer.concat([req.body, Buffer.from('&Extra=1')]) }).valid).toBe(false)
  })

  it('rejects a signature made with another auth token', () => {
    expect(verify(signed(delivered, { token: 'another_token' })).valid).toBe(false)
  })

  it('accepts a callback signed with the old auth token while it is still listed (rotation)', () => {
    const req = signed(delivered, { token: 'old_token' })
    expect(verify(req, 'new_token').valid).toBe(false)
    expect(verify(req, 'old_token').valid).toBe(true)
  })

  it('rejects a callback without an X-Twilio-Signature header', () => {
    const { ['x-twilio-signature']: _, ...headers } = signed(delivered).headers
    const result = verify({ ...signed(delivered), headers })
    expect(result.valid).toBe(false)
    expect(result.reasons).toEqual(['twilio: no X-Twilio-Signature header'])
  })

  it('verifies every value of a repeated key, as the SDK signs them', () => {
    const params = { ...delivered, Tags: ['vip', 'beta'] }
    const req = signed(params)
    expect(req.body.toString()).toContain('Tags=vip&Tags=beta')
    expect(verify(req).valid).toBe(true)
    const dropped = { ...req, body: Buffer.from(req.body.toString().replace('&Tags=beta', '')) }
    expect(verify(dropped).valid).toBe(false)
  })

  it('rejects a body that is neither form-encoded nor covered by bodySHA256', () => {
    const req = signed(delivered)
    const result = verify({ ...req, headers: { ...req.headers, 'content-type': 'text/plain' } })
    expect(result.valid).toBe(false)
    expect(result.reasons[0]).toMatch(/neither form-encoded nor covered/)
  })

  describe('JSON bodies with bodySHA256', () => {
    const payload = {
      MessageSid: 'SM22222222222222222222222222222222',
      MessageStatus: 'read',
      To: '+1',
      From: '+2',
    }

    function signedJson(options: { token?: string } = {}) {
      const delivery = twilioJsonDelivery(payload, { authToken: options.token ?? authToken, url: publicUrl })
      const received = delivery.url.slice(publicBase.length)
      return request(delivery.body, delivery.headers, { path: received, publicUrl: delivery.url })
    }

    it('accepts a JSON callback whose bodySHA256 matches and whose URL is signed', () => {
      expect(verify(signedJson()).valid).toBe(true)
    })

    it('rejects a JSON body that does not match bodySHA256', () => {
      const req = signedJson()
      const result = verify({ ...req, body: Buffer.from(req.body.toString().replace('read', 'sent')) })
      expect(result.valid).toBe(false)
      expect(result.reasons).toEqual(['twilio: body does not match bodySHA256'])
    })

    it('rejects a bodySHA256 changed to match a forged body', () => {
      const req = signedJson()
      const forged = Buffer.from(req.body.toString().replace('read', 'sent'))
      const url = `${publicUrl}?bodySHA256=${twilioSdk.getExpectedBodyHash(forged.toString())}`
      expect(
        verify({ ...req, body: forged, publicUrl: url, pathAndQuery: url.slice(publicBase.length) }).valid,
      ).toBe(false)
    })

    it('rejects a JSON callback signed with another auth token', () => {
      expect(verify(signedJson({ token: 'another_token' })).valid).toBe(false)
    })

    it('parses the JSON object and infers its type from the fields', () => {
      const req = signedJson()
      const fields = twilio.parse(req)
      expect(fields).toEqual(payload)
      expect(twilio.eventType(req, fields)).toBe('message.status')
      expect(twilio.eventKey(req, fields)).toBe('SM22222222222222222222222222222222:read')
    })
  })
})

describe('twilio.parse, eventKey and eventType', () => {
  const parsed = (params: TwilioParams, headers: Record<string, string> = {}) => {
    const req = signed(params)
    const withHeaders = { ...req, headers: { ...req.headers, ...headers } }
    const fields = twilio.parse(withHeaders)
    return { fields, key: twilio.eventKey(withHeaders, fields), type: twilio.eventType(withHeaders, fields) }
  }

  it('gives form fields as an object, repeated keys as arrays', () => {
    expect(parsed({ ...delivered, Tags: ['vip', 'beta'] }).fields).toEqual({
      ...delivered,
      Tags: ['vip', 'beta'],
    })
  })

  it('keys a message status on MessageSid and MessageStatus: sent then delivered are two events', () => {
    const sent = parsed(twilioMessageStatus('SM1', 'sent'))
    const deliveredOnce = parsed(twilioMessageStatus('SM1', 'delivered'))
    const deliveredAgain = parsed(twilioMessageStatus('SM1', 'delivered'))
    expect(sent).toMatchObject({ key: 'SM1:sent', type: 'message.status' })
    expect(deliveredOnce.key).toBe('SM1:delivered')
    expect(deliveredAgain.key).toBe(deliveredOnce.key)
  })

  it('keys a call status on CallSid and SequenceNumber when present, else CallStatus', () => {
    const call = { CallSid: 'CA1', CallStatus: 'in-progress', To: '+1', From: '+2' }
    expect(parsed(call)).toMatchObject({ key: 'CA1:in-progress', type: 'call.status' })
    expect(parsed({ ...call, SequenceNumber: '2' })).toMatchObject({ key: 'CA1:2', type: 'call.status' })
  })

  it('recognises recording and transcription callbacks before the call they belong to', () => {
    const recording = { CallSid: 'CA1', RecordingSid: 'RE1', RecordingStatus: 'completed' }
    expect(parsed(recording)).toMatchObject({ key: 'RE1:completed', type: 'recording.status' })
    const transcription = {
      CallSid: 'CA1',
      CallStatus: 'completed',
      TranscriptionSid: 'TR1',
      TranscriptionStatus: 'completed',
      RecordingSid: 'RE1',
    }
    expect(parsed(transcription)).toMatchObject({ key: 'TR1:completed', type: 'transcription.status' })
  })

  it('names an incoming message message.received', () => {
    const incoming = { MessageSid: 'SM9', SmsStatus: 'received', Body: 'hello', From: '+2', To: '+1' }
    expect(parsed(incoming)).toMatchObject({ key: 'SM9:received', type: 'message.received' })
  })

  it('falls back to I-Twilio-Idempotency-Token for a callback its fields do not explain', () => {
    expect(parsed({ EventType: 'onSomething' }, { 'i-twilio-idempotency-token': 'tok-1' })).toMatchObject({
      key: 'token:tok-1',
      type: 'callback',
    })
    expect(parsed({ EventType: 'onSomething' })).toMatchObject({ key: undefined, type: undefined })
  })

  it('throws MalformedWebhook for a JSON callback that is not JSON', () => {
    const req = request('{not json', { 'content-type': 'application/json' }, { path })
    expect(() => twilio.parse(req)).toThrow(MalformedWebhook)
  })

  it('routes raw events by the inferred type', () => {
    expect(rawRoutingKey('twilio', 'message.status')).toBe('raw.twilio.message.status')
  })
})

describe('twilio handlers', () => {
  const mapped = (params: TwilioParams) => {
    const req = signed(params)
    const fields = twilio.parse(req)
    return internalEvents(twilio, twilio.eventType(req, fields)!, fields, req)
  }

  it('maps a message status to sms.status_update', () => {
    expect(
      mapped(twilioMessageStatus('SM1', 'undelivered', { ErrorCode: '30003', ErrorMessage: 'Unreachable' })),
    ).toEqual([
      {
        type: 'sms.status_update',
        data: {
          message_sid: 'SM1',
          status: 'undelivered',
          to: '+14155552671',
          from: '+15005550006',
          error_code: 30003,
          error_message: 'Unreachable',
          provider: 'twilio',
        },
      },
    ])
  })

  it('maps a call status to call.status_update with its duration in seconds', () => {
    const call = { CallSid: 'CA1', CallStatus: 'completed', To: '+1', From: '+2', CallDuration: '42' }
    expect(mapped(call)).toEqual([
      {
        type: 'call.status_update',
        data: {
          call_sid: 'CA1',
          status: 'completed',
          to: '+1',
          from: '+2',
          duration: 42,
          provider: 'twilio',
        },
      },
    ])
  })

  it('publishes only the raw event for recordings and incoming messages', () => {
    expect(mapped({ CallSid: 'CA1', RecordingSid: 'RE1', RecordingStatus: 'completed' })).toEqual([])
    expect(mapped({ MessageSid: 'SM9', Body: 'hi' })).toEqual([])
  })
})

describe('twilio form fields', () => {
  it('keeps field names such as __proto__ and constructor as plain fields', () => {
    const fields = twilio.parse(
      request('__proto__=x&constructor=y&MessageSid=SM1', {
        'content-type': 'application/x-www-form-urlencoded',
      }),
    )
    expect(Object.getPrototypeOf(fields)).toBeNull()
    expect(fields['__proto__']).toBe('x')
    expect(fields['constructor']).toBe('y')
    expect(fields['MessageSid']).toBe('SM1')
  })
})
