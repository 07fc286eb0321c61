import { createHash } from 'node:crypto'
import twilioSdk from 'twilio'
import { safeEqual } from '../src/crypto.ts'
import { isFormEncoded, parseForm, parseJsonObject } from '../src/parse.ts'
import { header, type Provider, type WebhookRequest } from '../src/provider.ts'

/** Form fields (a repeated key keeps every value) or, for JSON callbacks, the body's object. */
type TwilioFields = Record<string, unknown>

/** A field that holds one value; numbers from JSON bodies read as their decimal text. */
function field(fields: TwilioFields, name: string): string | undefined {
  const value = fields[name]
  if (typeof value === 'number') return String(value)
  return typeof value === 'string' && value !== '' ? value : undefined
}

const integerOrNull = (value: string | undefined): number | null =>
  value !== undefined && /^\d+$/.test(value) ? Number(value) : null

interface Callback {
  /** The raw type, e.g. `message.status`. */
  readonly type: string
  readonly sid: string
  /** What this callback reports about the resource: its status, or a call's event sequence number. */
  readonly state: string
}

/**
 * Twilio sends no event type and no event id: what a callback is about comes from its fields. Transcription
 * and recording callbacks also carry CallSid (and sometimes CallStatus), so they are recognised first.
 */
function callbackOf(fields: TwilioFields): Callback | undefined {
  const get = (name: string) => field(fields, name)
  const transcriptionSid = get('TranscriptionSid')
  const transcriptionStatus = get('TranscriptionStatus')
  if (transcriptionSid && transcriptionStatus)
    return { type: 'transcription.status', sid: transcriptionSid, state: transcriptionStatus }
  const recordingSid = get('RecordingSid')
  const recordingStatus = get('RecordingStatus')
  if (recordingSid && recordingStatus)
    return { type: 'recording.status', sid: recordingSid, state: recordingStatus }
  const callSid = get('CallSid')
  const callStatus = get('CallStatus')
  // Call progress events repeat a status (several `in-progress`); their SequenceNumber does not repeat.
  if (callSid && callStatus)
    return { type: 'call.status', sid: callSid, state: get('SequenceNumber') ?? callStatus }
  const messageSid = get('MessageSid')
  const messageStatus = get('MessageStatus')
  if (messageSid && messageStatus) return { type: 'message.status', sid: messageSid, state: messageStatus }
  // An incoming message: no MessageStatus, and it arrives once.
  if (messageSid) return { type: 'message.received', sid: messageSid, state: 'received' }
  return undefined
}

/** Twilio's undocumented per-request token: only a fallback for callbacks the fields do not explain. */
const idempotencyToken = (req: WebhookRequest) => header(req, 'i-twilio-idempotency-token')

const sha256Hex = (body: Buffer) => createHash('sha256').update(body).digest('hex')

export const twilio: Provider<TwilioFields> = {
  name: 'twilio',

  // Twilio signs the public URL it called (PUBLIC_BASE_URL plus the original path and query), never the
  // proxied one; the SDK also tries it with and without the default port.
  verify(req, authToken, { reject }) {
    const signature = header(req, 'x-twilio-signature')
    if (!signature) return reject('twilio: no X-Twilio-Signature header')
    const bodyHash = new URL(req.publicUrl).searchParams.get('bodySHA256')
    if (bodyHash !== null) {
      // JSON callbacks: the signature covers the URL only, whose bodySHA256 covers the body.
      if (!twilioSdk.validateRequest(authToken, signature, req.publicUrl, {}))
        return reject(`twilio: X-Twilio-Signature does not match ${req.publicUrl}`)
      // Hashed over the raw bytes (the SDK's validateBody hashes a decoded string).
      return safeEqual(bodyHash, sha256Hex(req.body)) || reject('twilio: body does not match bodySHA256')
    }
    if (!isFormEncoded(header(req, 'content-type')))
      return reject('twilio: body is neither form-encoded nor covered by a bodySHA256 parameter')
    // Every field counts, repeated keys included: the SDK signs each of their values, sorted.
    const valid = twilioSdk.validateRequest(authToken, signature, req.publicUrl, parseForm(req.body))
    return valid || reject(`twilio: X-Twilio-Signature does not match ${req.publicUrl} and the form fields`)
  },

  parse: (req) =>
    isFormEncoded(header(req, 'content-type')) ? parseForm(req.body) : parseJsonObject(req.body, 'twilio'),

  eventKey(req, fields) {
    const callback = callbackOf(fields)
    if (callback) return `${callback.sid}:${callback.state}`
    const token = idempotencyToken(req)
    return token ? `token:${token}` : undefined
  },

  eventType: (req, fields) => callbackOf(fields)?.type ?? (idempotencyToken(req) ? 'callback' : undefined),

  handlers: {
    'message.status': (fields) => ({
      type: 'sms.status_update',
      data: {
        message_sid: field(fields, 'MessageSid') ?? null,
        status: field(fields, 'MessageStatus') ?? null,
        to: field(fields, 'To') ?? null,
        from: field(fields, 'From') ?? null,
        error_code: integerOrNull(field(fields, 'ErrorCode')),
        error_message: field(fields, 'ErrorMessage') ?? null,
      },
    }),
    'call.status': (fields) => ({
      type: 'call.status_update',
      data: {
        call_sid: field(fields, 'CallSid') ?? null,
        status: field(fields, 'CallStatus') ?? null,
        to: field(fields, 'To') ?? null,
        from: field(fields, 'From') ?? null,
        // Seconds, sent once the call has ended.
        duration: integerOrNull(field(fields, 'CallDuration')),
      },
    }),
  },
}
