import { describe, expect, it } from 'vitest'
import { shopify } from '../../providers/shopify.ts'
import { twilio } from '../../providers/twilio.ts'
import { eventsFor, serializeEvent } from '../../src/pipeline/events.ts'
import type { Provider } from '../../src/provider.ts'
import { storedWebhook } from '../support/provider-request.ts'

const stored = (provider: Provider, body: string, headers: Record<string, string>) =>
  storedWebhook(provider.name, body, { eventType: 'orders/create', headers })

describe('serializeEvent', () => {
  it('publishes a raw event’s JSON exactly as the provider sent it, digits beyond 2^53 included', () => {
    const body = '{"id": 820982911946154508, "total_price": "10.00", "note": "caf\\u00e9"}'
    const [raw, internal] = eventsFor(stored(shopify, body, { 'x-shopify-topic': 'orders/create' }), shopify)
    const text = serializeEvent(raw!).toString('utf8')
    expect(text).toContain('"data":{"id": 820982911946154508, "total_price": "10.00", "note": "caf\\u00e9"}')
    const { data, ...envelope } = JSON.parse(text)
    expect(envelope).toEqual(Object.fromEntries(Object.entries(raw!).filter(([key]) => key !== 'data')))
    expect(data).toEqual(raw!.data)
    // Internal events are the gateway's own: plain JSON.
    expect(serializeEvent(internal!).toString()).toBe(JSON.stringify(internal))
  })

  it('serializes form bodies (no JSON text to keep) as their fields', () => {
    const body = 'MessageSid=SM1&MessageStatus=sent'
    const headers = { 'content-type': 'application/x-www-form-urlencoded' }
    const [raw] = eventsFor({ ...stored(twilio, body, headers), eventType: 'message.status' }, twilio)
    expect(JSON.parse(serializeEvent(raw!).toString()).data).toEqual({
      MessageSid: 'SM1',
      MessageStatus: 'sent',
    })
  })
})
