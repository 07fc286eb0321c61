import { randomUUID } from 'node:crypto'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createStore, type Store } from '../../src/db/webhooks.ts'
import { migrate } from '../../src/db/migrate.ts'
import { createOutbox } from '../../src/destinations/fanout.ts'
import { eventId } from '../../src/pipeline/events.ts'
import type { HandledWebhook } from '../../src/pipeline/worker.ts'
import { useTestDatabase, waitFor } from '../support/services.ts'

// Deliveries have no foreign key to their destination (migration 0006): deleting a destination deletes them
// by a trigger, and no statement of the outbox may leave one behind for a destination deleted meanwhile.
const db = useTestDatabase()
let own: postgres.Sql
let store: Store

beforeAll(async () => {
  own = postgres(db.url, { max: 4, onnotice: () => {} })
  await migrate(own)
  store = createStore(own)
})
afterAll(() => own?.end())

async function destination(): Promise<string> {
  const id = randomUUID()
  await db.sql`
    INSERT INTO destinations (id, url, events, timeout_ms, max_in_flight, retry_schedule_seconds)
    VALUES (${id}, 'https://example.com/hooks', '{#}', 5000, 32, '{5}')`
  return id
}

/** A stored webhook, not yet routed, and what the worker would hand the outbox for it. */
async function handledWebhook(): Promise<HandledWebhook> {
  const id = randomUUID()
  const eventKey = `evt_${id}`
  await store.insertWebhooks([
    {
      id,
      provider: 'stripe',
      eventKey,
      eventType: 'payment_intent.succeeded',
      method: 'POST',
      path: '/webhooks/stripe',
      publicUrl: 'https://gateway.example.com/webhooks/stripe',
      headers: {},
      body: Buffer.from('{}'),
      receivedAt: new Date(),
    },
  ])
  const event = { id: eventId('stripe', eventKey, 'raw'), type: 'raw.stripe.payment_intent.succeeded' }
  return {
    webhookId: id,
    routed: false,
    eventIds: [event.id],
    events: [{ ...event, time: new Date().toISOString(), body: Buffer.from('{"data":{}}') }],
  }
}

/** Two destinations for every event, an outbox that has read them, and a webhook for it to route. */
async function twoDestinationsAndAWebhook() {
  const gone = await destination()
  const kept = await destination()
  const webhook = await handledWebhook()
  const outbox = createOutbox(own, { published: store.publishedUpdate, routed: store.routedUpdate })
  await outbox.start()
  return { gone, kept, webhook, outbox }
}

const deliveriesOf = async (destinationId: string) =>
  (await db.sql`SELECT count(*)::int AS n FROM deliveries WHERE destination_id = ${destinationId}`)[0]!.n

/** The webhook's delivery went to `kept`, and none is left for `gone`. */
async function expectDeliveriesOnlyFor(kept: string, gone: string): Promise<void> {
  expect(await deliveriesOf(gone)).toBe(0)
  expect(await deliveriesOf(kept)).toBe(1)
}

/** Until `count` sessions of this database wait for a lock. */
const lockWaits = (count: number) =>
  waitFor(async () => {
    const [row] = await db.sql`
      SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event_type = 'Lock'`
    return row!.n >= count
  })

describe('deleting a destination', () => {
  it('deletes its deliveries and their attempts', async () => {
    const { gone, kept, webhook, outbox } = await twoDestinationsAndAWebhook()
    await outbox.released([webhook])
    const [delivery] = await db.sql`SELECT id FROM deliveries WHERE destination_id = ${gone}`
    await db.sql`
      INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, status_code)
      VALUES (${delivery!.id}, now(), 1, 500)`
    await db.sql`DELETE FROM destinations WHERE id = ${gone}`
    await expectDeliveriesOnlyFor(kept, gone)
    expect(await db.sql`SELECT 1 FROM delivery_attempts WHERE delivery_id = ${delivery!.id}`).toHaveLength(0)
  })

  it('waits for a statement writing its deliveries, then deletes what it wrote', async () => {
    const { gone, kept, webhook, outbox } = await twoDestinationsAndAWebhook()
    // The outbox's statement writes the deliveries, then waits on the webhook's row, held here.
    const holder = await db.sql.reserve()
    try {
      await holder`BEGIN`
      await holder`SELECT 1 FROM webhooks WHERE id = ${webhook.webhookId} FOR UPDATE`
      const routing = outbox.released([webhook])
      await lockWaits(1)
      const deleting = own`DELETE FROM destinations WHERE id = ${gone}`.execute()
      await lockWaits(2)
      await holder`COMMIT`
      await routing
      await deleting
    } finally {
      holder.release()
    }
    await expectDeliveriesOnlyFor(kept, gone)
  })

  it('makes a statement that starts while it commits write nothing for it, and the rest after a fresh read', async () => {
    const { gone, kept, webhook, outbox } = await twoDestinationsAndAWebhook()
    const deleter = await db.sql.reserve()
    try {
      await deleter`BEGIN`
      await deleter`DELETE FROM destinations WHERE id = ${gone}`
      const routing = outbox.released([webhook])
      await lockWaits(1)
      await deleter`COMMIT`
      await routing
    } finally {
      deleter.release()
    }
    await expectDeliveriesOnlyFor(kept, gone)
  })
})
