import { describe, expect, it } from 'vitest'
import { eventId, eventsFor, rawRoutingKey } from '../../src/pipeline/events.ts'
import type { Provider } from '../../src/provider.ts'
import { handlerFor } from '../../src/pipeline/registry.ts'
import { storedWebhook } from '../support/provider-request.ts'

const provider: Provider<Record<string, any>> = {
  name: 'acme',
  verify: () => true,
  parse: (req) => JSON.parse(req.body.toString()),
  eventKey: (_req, payload) => payload.id,
  eventType: (_req, payload) => payload.type,
  handlers: {
    'order.created': (payload) => ({ type: 'order.created', data: { order_id: payload.id } }),
    'order.*': () => ({ type: 'order.other', data: {} }),
    'order.line.*': () => [
      { type: 'line.a', data: {} },
      { type: 'line.b', data: {} },
    ],
    'ignored.thing': () => null,
  },
}

const webhook = (payload: Record<string, unknown>) =>
  storedWebhook('acme', JSON.stringify(payload), {
    eventKey: String(payload.id),
    eventType: String(payload.type),
  })

describe('handlerFor', () => {
  it('prefers an exact key, then the longest matching wildcard', () => {
    expect(handlerFor(provider, 'order.created')).toBe(provider.handlers['order.created'])
    expect(handlerFor(provider, 'order.deleted')).toBe(provider.handlers['order.*'])
    expect(handlerFor(provider, 'order.line.added')).toBe(provider.handlers['order.line.*'])
    expect(handlerFor(provider, 'orders')).toBeUndefined()
  })
})

describe('rawRoutingKey', () => {
  it('turns the provider type’s slashes into dots', () => {
    expect(rawRoutingKey('shopify', 'orders/create')).toBe('raw.shopify.orders.create')
    expect(rawRoutingKey('github', 'pull_request.opened')).toBe('raw.github.pull_request.opened')
    expect(rawRoutingKey('paypal', 'PAYMENT.CAPTURE.COMPLETED')).toBe('raw.paypal.PAYMENT.CAPTURE.COMPLETED')
  })
})

describe('eventId', () => {
  it('is a UUID that depends only on what the event is', () => {
    const id = eventId('stripe', 'evt_1', 'raw')
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(eventId('stripe', 'evt_1', 'raw')).toBe(id)
    expect(eventId('stripe', 'evt_2', 'raw')).not.toBe(id)
    expect(eventId('github', 'evt_1', 'raw')).not.toBe(id)
    expect(eventId('stripe', 'evt_1', 'internal:0:payment.completed')).not.toBe(id)
  })

  it('stays the id earlier versions published, so a replay of an old webhook reuses it', () => {
    // SHA-256 of "stripe\0evt_1\0raw", version and variant bits set (computed apart with createHash).
    expect(eventId('stripe', 'evt_1', 'raw')).toBe('faea1a2c-cbf2-88bd-af81-da80eaa83d51')
  })
})

describe('eventsFor', () => {
  it('builds the raw CloudEvent and the mapped internal events', () => {
    const events = eventsFor(webhook({ id: 'o1', type: 'order.created' }), provider)
    expect(events).toEqual([
      {
        specversion: '1.0',
        id: eventId('acme', 'o1', 'raw'),
        source: '/webhooks/acme',
        type: 'raw.acme.order.created',
        time: '2026-11-22T10:00:00.000Z',
        datacontenttype: 'application/json',
        data: { id: 'o1', type: 'order.created' },
        provider: 'acme',
        providereventid: 'o1',
        webhookid: '0b9c3f4e-8a55-4b8e-9a39-2f1c0c7d1a11',
      },
      expect.objectContaining({
        type: 'order.created',
        data: { order_id: 'o1', provider: 'acme' },
        id: eventId('acme', 'o1', 'internal:0:order.created'),
      }),
    ])
  })

  it('gives every event of a multi-event handler its own stable id', () => {
    const first = eventsFor(webhook({ id: 'o2', type: 'order.line.added' }), provider)
    const again = eventsFor(webhook({ id: 'o2', type: 'order.line.added' }), provider)
    expect(first.map((event) => event.type)).toEqual(['raw.acme.order.line.added', 'line.a', 'line.b'])
    expect(new Set(first.map((event) => event.id)).size).toBe(3)
    expect(again.map((event) => event.id)).toEqual(first.map((event) => event.id))
  })

  it('publishes only the raw event for an unmapped type or a handler that returns null', () => {
    expect(eventsFor(webhook({ id: 'o3', type: 'refund.created' }), provider)).toHaveLength(1)
    expect(eventsFor(webhook({ id: 'o4', type: 'ignored.thing' }), provider)).toHaveLength(1)
  })
})
