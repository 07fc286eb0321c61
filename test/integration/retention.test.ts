import { randomUUID } from 'node:crypto'
import postgres from 'postgres'
import { beforeAll, describe, expect, it } from 'vitest'
import { createDestinationStore, defaultRetryScheduleSeconds } from '../../src/destinations/store.ts'
import { silentLogger } from '../../src/ops/log.ts'
import { migrate } from '../../src/db/migrate.ts'
import { Retention } from '../../src/db/retention.ts'
import { useTestDatabase } from '../support/services.ts'

// No gateway runs here: its worker would publish the old pending webhooks and its sender would try the
// pending deliveries, and both must stay exactly as inserted.
const db = useTestDatabase()

beforeAll(async () => {
  await migrate(db.sql)
})

type WebhookStatus = 'pending' | 'retrying' | 'published' | 'dead'
type DeliveryStatus = 'pending' | 'delivered' | 'failed'

/**
 * A webhook row received `daysAgo` days ago, in `status`, finished (published, or its last attempt) then too,
 * or `finishedDaysAgo` days ago (a replay).
 */
async function insertWebhook(
  status: WebhookStatus,
  daysAgo: number,
  finishedDaysAgo = daysAgo,
): Promise<string> {
  const id = randomUUID()
  const finished = db.sql`now() - make_interval(days => ${finishedDaysAgo})`
  await db.sql`
    INSERT INTO webhooks (id, provider, event_key, event_type, method, path, public_url, headers, body,
      received_at, status, attempts, next_attempt_at, published_at)
    VALUES (${id}, 'stripe', ${`evt_${id}`}, 'payment_intent.succeeded', 'POST', '/webhooks/stripe',
      'https://gateway.example/webhooks/stripe', ${db.sql.json({ 'content-type': 'application/json' })},
      ${Buffer.from('{"id":"evt"}')}, now() - make_interval(days => ${daysAgo}), ${status},
      ${status === 'pending' ? 0 : 1}, ${finished}, ${status === 'published' ? finished : null})`
  return id
}

/**
 * A delivery row created `daysAgo` days ago, in `status`, with one attempt on record, finished then or
 * `finishedDaysAgo` days ago (a retry asked for later).
 */
async function insertDelivery(
  destinationId: string,
  status: DeliveryStatus,
  daysAgo: number,
  finishedDaysAgo = daysAgo,
): Promise<string> {
  const id = randomUUID()
  const at = db.sql`now() - make_interval(days => ${finishedDaysAgo})`
  await db.sql`
    INSERT INTO deliveries (id, destination_id, webhook_id, event_id, event_type, payload, status, attempts,
      created_at, next_attempt_at, delivered_at, last_status_code)
    VALUES (${id}, ${destinationId}, ${randomUUID()}, ${randomUUID()}, 'payment.completed', '{}', ${status},
      1, now() - make_interval(days => ${daysAgo}), ${at}, ${status === 'delivered' ? at : null},
      ${status === 'delivered' ? 200 : 500})`
  await db.sql`
    INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, status_code, error)
    VALUES (${id}, ${at}, 12.5, ${status === 'delivered' ? 200 : 500},
      ${status === 'delivered' ? null : 'answered 500'})`
  return id
}

/** `count` rows made one after another. */
async function times(count: number, make: () => Promise<string>): Promise<string[]> {
  const ids: string[] = []
  for (let n = 0; n < count; n++) ids.push(await make())
  return ids
}

describe('Retention', () => {
  it('deletes old finished rows in batches, keeps dead and failed ones longer and pending ones forever', async () => {
    const { destination } = await createDestinationStore(db.sql).create({
      url: 'https://receiver.example/hooks',
      events: ['payment.*'],
      enabled: true,
      timeoutMs: 5000,
      maxInFlight: 10,
      headers: {},
      retryScheduleSeconds: defaultRetryScheduleSeconds,
    })
    const webhooks = {
      published40: await times(5, () => insertWebhook('published', 40)),
      published1: await insertWebhook('published', 1),
      // Received long ago, replayed and published again yesterday: aged from the replay.
      replayed: await insertWebhook('published', 40, 1),
      dead40: await insertWebhook('dead', 40),
      dead100: await times(3, () => insertWebhook('dead', 100)),
      pending100: await insertWebhook('pending', 100),
      retrying100: await insertWebhook('retrying', 100),
    }
    const deliveries = {
      delivered40: await times(5, () => insertDelivery(destination.id, 'delivered', 40)),
      delivered1: await insertDelivery(destination.id, 'delivered', 1),
      retried: await insertDelivery(destination.id, 'delivered', 40, 1),
      failed40: await insertDelivery(destination.id, 'failed', 40),
      failed100: await times(3, () => insertDelivery(destination.id, 'failed', 100)),
      pending100: await insertDelivery(destination.id, 'pending', 100),
    }

    // Its own connection, to see every statement the pass sends.
    const statements: string[] = []
    const sql = postgres(db.url, { max: 1, onnotice: () => {}, debug: (_, query) => statements.push(query) })
    try {
      const retention = new Retention(sql, { days: 30, failedDays: 90, log: silentLogger, batchSize: 2 })
      expect(await retention.runOnce()).toEqual({ webhooks: 8, deliveries: 8 })

      // 8 rows of each table at most 2 at a time: at least 4 statements each.
      const deletes = (table: string) =>
        statements.filter((query) => new RegExp(`^\\s*DELETE FROM "?${table}\\b`).test(query)).length
      expect(deletes('webhooks')).toBeGreaterThanOrEqual(4)
      expect(deletes('deliveries')).toBeGreaterThanOrEqual(4)

      const leftWebhooks = await db.sql<{ id: string }[]>`SELECT id FROM webhooks`
      expect(new Set(leftWebhooks.map((row) => row.id))).toEqual(
        new Set([
          webhooks.published1,
          webhooks.replayed,
          webhooks.dead40,
          webhooks.pending100,
          webhooks.retrying100,
        ]),
      )
      const kept = [deliveries.delivered1, deliveries.retried, deliveries.failed40, deliveries.pending100]
      const leftDeliveries = await db.sql<{ id: string }[]>`SELECT id FROM deliveries`
      expect(new Set(leftDeliveries.map((row) => row.id))).toEqual(new Set(kept))
      // The attempts of the deleted deliveries went with them; the kept ones keep theirs.
      const leftAttempts = await db.sql<{ delivery_id: string }[]>`SELECT delivery_id FROM delivery_attempts`
      expect(leftAttempts.map((row) => row.delivery_id).sort()).toEqual([...kept].sort())

      // Nothing more is old enough: a second pass deletes nothing.
      expect(await retention.runOnce()).toEqual({ webhooks: 0, deliveries: 0 })
      const [destinationLeft] = await db.sql`SELECT id FROM destinations WHERE id = ${destination.id}`
      expect(destinationLeft).toBeDefined()
    } finally {
      await sql.end()
    }
  })
})
