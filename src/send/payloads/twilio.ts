import { twilioSid } from '../ids.ts'

/** The Twilio callbacks `npm run send` offers (Twilio names none: these are the statuses they report). */
export const twilioEvents = ['sms.delivered', 'sms.failed', 'call.completed'] as const

const accountSid = 'AC5ef872f6da5a21de157d80997a64bd33'
const from = '+15017122661'
const to = '+15558675310'

/** The carrier's delivery-receipt time, YYMMDDhhmm in UTC. */
const carrierDoneDate = (at: Date): string => at.toISOString().replace(/[-T:]/g, '').slice(2, 12)

/** The form fields of a status callback as Twilio posts them, for a new message or call each time. */
export function twilioPayload(name: (typeof twilioEvents)[number]): Record<string, string> {
  if (name === 'call.completed') {
    const callSid = twilioSid('CA')
    return {
      AccountSid: accountSid,
      ApiVersion: '2010-04-01',
      CallSid: callSid,
      CallStatus: 'completed',
      CallDuration: '42',
      Duration: '1',
      Called: to,
      Caller: from,
      Direction: 'outbound-api',
      From: from,
      To: to,
      CallbackSource: 'call-progress-events',
      // With call progress events subscribed, completed is the last of initiated, ringing, answered.
      SequenceNumber: '3',
      SipResponseCode: '200',
      Timestamp: new Date().toUTCString().replace('GMT', '+0000'),
    }
  }
  const messageSid = twilioSid('SM')
  const status = name === 'sms.delivered' ? 'delivered' : 'failed'
  return {
    AccountSid: accountSid,
    ApiVersion: '2010-04-01',
    From: from,
    MessageSid: messageSid,
    MessageStatus: status,
    SmsSid: messageSid,
    SmsStatus: status,
    To: to,
    // 30003: unreachable destination handset.
    ...(status === 'failed' ? { ErrorCode: '30003' } : { RawDlrDoneDate: carrierDoneDate(new Date()) }),
  }
}
