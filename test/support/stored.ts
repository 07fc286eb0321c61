import { randomUUID } from 'node:crypto'
import type { NewWebhook } from '../../src/db/webhooks.ts'

/** A GitHub delivery as intake hands it to the store, with `body` and fresh ids. */
export const newWebhook = (body: Buffer): NewWebhook => ({
  id: randomUUID(),
  provider: 'github',
  eventKey: randomUUID(),
  eventType: 'push',
  method: 'POST',
  path: '/webhooks/github',
  publicUrl: 'http://127.0.0.1/webhooks/github',
  headers: { 'content-type': 'application/json' },
  body,
  receivedAt: new Date(),
})
