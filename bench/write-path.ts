import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import postgres from 'postgres'
import { connectDatabase, type Sql } from '../src/db/client.ts'
import { migrate } from '../src/db/migrate.ts'
import { createStore, webhookRow, type NewWebhook } from '../src/db/webhooks.ts'
import { createOutbox, type ClaimingSender } from '../src/destinations/fanout.ts'
import { createDestinationStore, type DueDelivery } from '../src/destinations/store.ts'
import { eventsFor, outgoing } from '../src/pipeline/events.ts'
import { providers } from '../providers/index.ts'
import type { HandledWebhook } from '../src/pipeline/worker.ts'
import { defer, installAbortHandlers, mark, unwind } from './cleanup.ts'
import { createDatabase, services } from './resources.ts'
import { median } from './steady.ts'

/**
 * What Postgres pays for the pipeline's writes per webhook, measured alone: one session runs, batch by batch,
 * the statements a webhook costs from its commit to its delivery's record, and the CPU of that session's
 * backend (/proc, so Postgres on this machine) and the WAL written are divided by the webhooks. Without the
 * HTTP, the broker and the event loop around them, a difference of a few microseconds shows, where the steady
 * section's per-statement times (pg_stat_statements) move by a third between runs on a busy machine.
 *
 * Designs, each in a fresh database with the migrations applied, alternated round by round:
 *   current  the gateway's own code: intake's INSERT with its deliveries written claimed (db/webhooks.ts with
 *            the outbox of destinations/fanout.ts), the mark of published webhooks (the outbox's `published`),
 *            the record of each delivery's attempt (the destination store's recordAttempts).
 *   final    what if a delivery's row were written once, in its state after its first attempt: intake's
 *            INSERT of the webhooks alone (the store's own), then one statement marking them published and
 *            inserting their deliveries delivered, with their attempts. Not how the gateway works: the
 *            statements here are this file's.
 *   queue    what if what is pending lived in narrow tables of its own (a row per webhook or delivery to
 *            do, deleted when done) and the wide rows were never updated: a bound on what a new schema could
 *            save, not a design; the statements and the two tables are this file's.
 *
 * Usage: node --import tsx bench/write-path.ts [--designs current,final,queue] [--intake-batch 4]
 *        [--record-batch 500] [--webhooks 20000] [--rounds 3]. Intake commits groups of `--intake-batch`
 *        webhooks, and the marks and attempts are recorded `--record-batch` at a time: by default as in the
 *        steady section at 1,000/s (groups of 3-5, records of 500); `--intake-batch 1 --record-batch 200` is
 *        200/s (every webhook its own commit, a second of records together). Each design in each round gets a
 *        fresh database on the bench's Postgres (TEST_DATABASE_URL, by default the local one), which must run
 *        on this machine: its backend's CPU is read from /proc.
 */

export const designs = ['current', 'final', 'queue'] as const
export type Design = (typeof designs)[number]

export interface Measured {
  readonly design: Design
  readonly cpuUs: number
  readonly walBytes: number
  readonly statements: number
}

/** A Stripe payment_intent.succeeded as the gateway stores it: about 1.5 KB of body, Stripe's headers. */
function webhookBody(key: string): Buffer {
  const intent = {
    id: `pi_${randomUUID().replaceAll('-', '')}`,
    object: 'payment_intent',
    amount: 4900,
    amount_received: 4900,
    currency: 'usd',
    customer: `cus_${randomUUID().slice(0, 14)}`,
    description: 'Order from the bench shop',
    metadata: { order_id: 'order_1042', cart: 'bench' },
    payment_method_types: ['card', 'link'],
    status: 'succeeded',
    client_secret: `secret_${randomUUID()}${randomUUID()}`,
    latest_charge: `ch_${randomUUID().replaceAll('-', '')}`,
    payment_method_options: {
      card: { request_three_d_secure: 'automatic' },
      link: { persistent_token: null },
    },
    padding: 'x'.repeat(700),
  }
  return Buffer.from(
    JSON.stringify({ id: key, object: 'event', type: 'payment_intent.succeeded', data: { object: intent } }),
  )
}

const headers = {
  'content-type': 'application/json; charset=utf-8',
  'stripe-signature': `t=1765000000,v1=${'ab'.repeat(32)}`,
  'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
  accept: '*/*; q=0.5, application/xml',
  'cache-control': 'no-cache',
}

/** A webhook and its events, as intake hands them to the worker: the raw event and payment.completed. */
function webhookAndEvents(): { webhook: NewWebhook; handled: HandledWebhook } {
  const key = `evt_${randomUUID().replaceAll('-', '')}`
  const webhook: NewWebhook = {
    id: randomUUID(),
    provider: 'stripe',
    eventKey: key,
    eventType: 'payment_intent.succeeded',
    method: 'POST',
    path: '/webhooks/stripe',
    publicUrl: 'https://hooks.example.com/webhooks/stripe',
    headers,
    body: webhookBody(key),
    receivedAt: new Date(),
  }
  // Mapped as the gateway maps it: the raw event and payment.completed, with their ids and envelopes.
  const events = eventsFor(webhook, providers.stripe).map(outgoing)
  return {
    webhook,
    handled: { webhookId: webhook.id, routed: false, eventIds: events.map((e) => e.id), events },
  }
}

/** The CPU time of a Postgres backend so far, in microseconds (utime + stime, clock ticks of 10 ms). */
function backendCpuUs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10_000
}

const delivered = (delivery: Pick<DueDelivery, 'id' | 'destinationId'>) => ({
  delivery,
  attempt: {
    attemptedAt: new Date(),
    durationMs: 1.4,
    statusCode: 200,
    responseHeaders: { 'content-type': 'text/plain; charset=utf-8', 'content-length': '2' },
    responseBody: 'ok',
    error: null,
  },
  outcome: { kind: 'delivered' } as const,
})

/** A webhook intake committed, as it goes on to be recorded: its events and the deliveries written with it. */
interface Handed {
  readonly handled: HandledWebhook
  readonly deliveries: readonly DueDelivery[]
}

/**
 * How a design writes: intake's commit of a group of new webhooks, then, for a batch of those, the record of
 * their publishing and of their deliveries' first attempts (all delivered). Each resolves to the statements
 * it sent.
 */
interface Writes {
  intake(size: number): Promise<{ readonly handed: readonly Handed[]; readonly statements: number }>
  record(handed: readonly Handed[]): Promise<number>
}

const claim = { owner: 1, leaseSeconds: 60 }

async function currentDesign(sql: Sql): Promise<Writes> {
  const store = createStore(sql)
  const destinations = createDestinationStore(sql)
  let taken: DueDelivery[] = []
  const sender: ClaimingSender = {
    owner: claim.owner,
    leaseMarginSeconds: 30,
    room: () => 1_000_000,
    take: (deliveries) => taken.push(...deliveries),
    due: () => {},
  }
  const outbox = createOutbox(sql, { published: store.publishedUpdate, routed: store.routedUpdate }, sender)
  await outbox.start()
  return {
    async intake(size) {
      const group = Array.from({ length: size }, webhookAndEvents)
      let routed = false
      const handled = group.map((item) => item.handled)
      await store.insertWebhooks(
        group.map((item) => item.webhook),
        claim,
        outbox.withCommit(handled, (written) => (routed = written)),
      )
      if (!routed) throw new Error('write-path: the deliveries were not written with the webhooks')
      // The group's deliveries go with its first webhook: the record takes them all together anyway.
      const deliveries = taken
      taken = []
      return {
        handed: handled.map((item, index) => ({ handled: item, deliveries: index === 0 ? deliveries : [] })),
        statements: 1,
      }
    },
    async record(handed) {
      // As the worker records them: routed at the commit, so a mark alone.
      await outbox.published(
        handed.map(({ handled: { events: _events, ...rest } }) => ({ ...rest, routed: true })),
      )
      await destinations.recordAttempts(handed.flatMap((item) => item.deliveries.map(delivered)))
      return 2
    },
  }
}

/** The delivery of payment.completed to the one destination, as the fan-out would make it. */
const deliveryOf = (handled: HandledWebhook, destinationId: string) => {
  const event = handled.events!.find((one) => one.type === 'payment.completed')!
  return { id: randomUUID(), destinationId, webhookId: handled.webhookId, event }
}

async function finalDesign(sql: Sql, destinationId: string): Promise<Writes> {
  const store = createStore(sql)
  return {
    async intake(size) {
      const group = Array.from({ length: size }, webhookAndEvents)
      await store.insertWebhooks(
        group.map((item) => item.webhook),
        claim,
      )
      return { handed: group.map(({ handled }) => ({ handled, deliveries: [] })), statements: 1 }
    },
    async record(handed) {
      const marks = handed.map(({ handled }) => ({ id: handled.webhookId, event_ids: handled.eventIds }))
      const deliveries = handed.map(({ handled }) => {
        const delivery = deliveryOf(handled, destinationId)
        return {
          id: delivery.id,
          webhook_id: delivery.webhookId,
          event_id: delivery.event.id,
          event_type: delivery.event.type,
          payload: delivery.event.body.toString(),
          ...delivered(delivery).attempt,
        }
      })
      await sql`
        WITH marked AS (
          UPDATE webhooks AS w
          SET status = 'published', published_at = now(), attempts = w.attempts + 1, last_error = NULL,
              published_event_ids = ARRAY(SELECT jsonb_array_elements_text(p.event_ids)),
              routed_at = coalesce(w.routed_at, now()), claimed_by = NULL
          FROM jsonb_to_recordset(${sql.json(marks)}) AS p(id uuid, event_ids jsonb)
          WHERE w.id = p.id
          RETURNING w.id
        ),
        s AS (
          SELECT * FROM jsonb_to_recordset(${sql.json(deliveries as unknown as postgres.JSONValue)}) AS s(id uuid,
            webhook_id uuid, event_id uuid, event_type text, payload text, "attemptedAt" timestamptz,
            "durationMs" double precision, "statusCode" int, "responseHeaders" jsonb, "responseBody" text,
            error text)
        ),
        inserted AS (
          INSERT INTO deliveries (id, destination_id, webhook_id, event_id, event_type, payload, status, attempts,
            last_status_code, delivered_at)
          SELECT s.id, ${destinationId}::uuid, s.webhook_id, s.event_id, s.event_type, s.payload, 'delivered', 1,
            s."statusCode", now()
          FROM s
          ON CONFLICT (destination_id, event_id) DO NOTHING
          RETURNING id
        )
        INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, status_code, response_headers,
          response_body, error)
        SELECT s.id, s."attemptedAt", s."durationMs", s."statusCode", s."responseHeaders", s."responseBody", s.error
        FROM s JOIN inserted USING (id)`
      return 1
    },
  }
}

async function queueDesign(sql: Sql, destinationId: string): Promise<Writes> {
  await sql`CREATE TABLE webhooks_to_publish (id uuid PRIMARY KEY, claimed_by integer,
    next_attempt_at timestamptz NOT NULL)`
  await sql`CREATE INDEX ON webhooks_to_publish (next_attempt_at)`
  await sql`CREATE INDEX ON webhooks_to_publish (claimed_by) WHERE claimed_by IS NOT NULL`
  await sql`CREATE TABLE deliveries_to_send (id uuid PRIMARY KEY, destination_id uuid NOT NULL,
    claimed_by integer, next_attempt_at timestamptz NOT NULL)`
  await sql`CREATE INDEX ON deliveries_to_send (destination_id, next_attempt_at)`
  await sql`CREATE INDEX ON deliveries_to_send (claimed_by) WHERE claimed_by IS NOT NULL`
  return {
    async intake(size) {
      const group = Array.from({ length: size }, webhookAndEvents)
      const rows = group.map(({ webhook }) => webhookRow(webhook))
      const deliveries = group.map(({ handled }) => deliveryOf(handled, destinationId))
      await sql`
        WITH inserted AS (
          INSERT INTO webhooks ${sql(rows)} ON CONFLICT (provider, event_key) DO NOTHING RETURNING id
        ),
        queued AS (
          INSERT INTO webhooks_to_publish (id, claimed_by, next_attempt_at)
          SELECT id, ${claim.owner}, now() + interval '60 s' FROM inserted
        ),
        also AS (
          INSERT INTO deliveries (id, destination_id, webhook_id, event_id, event_type, payload)
          SELECT r.id, ${destinationId}::uuid, r.webhook_id, r.event_id, 'payment.completed', r.payload
          FROM unnest(${deliveries.map((d) => d.id)}::uuid[], ${deliveries.map((d) => d.webhookId)}::uuid[],
            ${deliveries.map((d) => d.event.id)}::uuid[], ${deliveries.map((d) => d.event.body.toString())}::text[])
            AS r(id, webhook_id, event_id, payload)
          ON CONFLICT (destination_id, event_id) DO NOTHING
          RETURNING id
        )
        INSERT INTO deliveries_to_send (id, destination_id, claimed_by, next_attempt_at)
        SELECT id, ${destinationId}::uuid, ${claim.owner}, now() + interval '35 s' FROM also`
      return {
        handed: group.map(({ handled }, index) => ({
          handled,
          deliveries: [{ id: deliveries[index]!.id, destinationId } as DueDelivery],
        })),
        statements: 1,
      }
    },
    async record(handed) {
      await sql`DELETE FROM webhooks_to_publish WHERE id = ANY(${handed.map((item) => item.handled.webhookId)}::uuid[])`
      const attempts = handed.flatMap((item) =>
        item.deliveries.map((delivery) => ({ ...delivered(delivery).attempt, id: delivery.id })),
      )
      await sql`
        WITH s AS (
          SELECT * FROM jsonb_to_recordset(${sql.json(attempts as unknown as postgres.JSONValue)}) AS s(id uuid,
            "attemptedAt" timestamptz, "durationMs" double precision, "statusCode" int, "responseHeaders" jsonb,
            "responseBody" text, error text)
        ),
        done AS (DELETE FROM deliveries_to_send q USING s WHERE q.id = s.id RETURNING q.id)
        INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, status_code, response_headers,
          response_body, error)
        SELECT s.id, s."attemptedAt", s."durationMs", s."statusCode", s."responseHeaders", s."responseBody", s.error
        FROM s JOIN done USING (id)`
      return 2
    },
  }
}

/** The sizes of the groups: intake's commits, and the records that follow (the marks' and attempts' lingers). */
export interface Batches {
  readonly intake: number
  readonly record: number
}

/** `webhooks` webhooks written the way `design` writes them, after as many as a warm-up. */
export async function measure(
  admin: postgres.Sql,
  design: Design,
  batches: Batches,
  webhooks: number,
): Promise<Measured> {
  const since = mark()
  const database = await createDatabase(admin)
  defer(`drop database ${database.name}`, database.drop)
  const sql = connectDatabase(database.url, 1)
  defer('close the connection', () => sql.end())
  try {
    await migrate(sql)
    const destinationId = randomUUID()
    await sql`
      INSERT INTO destinations (id, url, events, timeout_ms, max_in_flight, retry_schedule_seconds)
      VALUES (${destinationId}, 'https://orders.example.com/hooks', ${['payment.*']}, 10000, 10, ${[5, 30, 300]})`
    await sql`INSERT INTO destination_secrets (destination_id, secret) VALUES (${destinationId}, 'whsec_bench')`
    const writes =
      design === 'current'
        ? await currentDesign(sql)
        : design === 'final'
          ? await finalDesign(sql, destinationId)
          : await queueDesign(sql, destinationId)
    const write = async () => {
      let statements = 0
      let pending: Handed[] = []
      for (let done = 0; done < webhooks; done += batches.intake) {
        const committed = await writes.intake(Math.min(batches.intake, webhooks - done))
        statements += committed.statements
        pending.push(...committed.handed)
        if (pending.length >= batches.record) {
          statements += await writes.record(pending)
          pending = []
        }
      }
      if (pending.length > 0) statements += await writes.record(pending)
      return statements
    }
    // A warm-up as long as the measure: tables, indexes and the session's caches as after a while.
    await write()
    await sql`ANALYZE`
    await sql`CHECKPOINT`
    const [start] = await sql<{ pid: number; lsn: string }[]>`
      SELECT pg_backend_pid() AS pid, pg_current_wal_lsn()::text AS lsn`
    const { pid, lsn } = start!
    const cpuBefore = backendCpuUs(pid)
    const statements = await write()
    const cpuAfter = backendCpuUs(pid)
    const [wal] = await sql<{ bytes: string }[]>`
      SELECT (pg_current_wal_lsn() - ${lsn}::pg_lsn)::text AS bytes`
    return {
      design,
      cpuUs: (cpuAfter - cpuBefore) / webhooks,
      walBytes: Number(wal!.bytes) / webhooks,
      statements: statements / webhooks,
    }
  } finally {
    await unwind(since)
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      designs: { type: 'string', default: designs.join(',') },
      'intake-batch': { type: 'string', default: '4' },
      'record-batch': { type: 'string', default: '500' },
      webhooks: { type: 'string', default: '20000' },
      rounds: { type: 'string', default: '3' },
    },
  })
  const chosen = values.designs.split(',').map((name) => {
    if (!(designs as readonly string[]).includes(name))
      throw new Error(`write-path: --designs takes ${designs.join(',')}, not ${name}`)
    return name as Design
  })
  const batches = { intake: Number(values['intake-batch']), record: Number(values['record-batch']) }
  installAbortHandlers(60 * 60 * 1000)
  const webhooks = Number(values.webhooks)
  const rounds = Number(values.rounds)
  const admin = postgres(services.postgres, { max: 1, onnotice: () => {} })
  const results: Measured[] = []
  try {
    for (let round = 1; round <= rounds; round++)
      for (const design of chosen) {
        const measured = await measure(admin, design, batches, webhooks)
        results.push(measured)
        console.log(
          `round ${round} ${design}: ${measured.cpuUs.toFixed(1)} us of backend CPU, ` +
            `${Math.round(measured.walBytes)} bytes of WAL, ${measured.statements.toFixed(2)} statements per webhook`,
        )
      }
  } finally {
    await admin.end()
  }
  console.log(
    `\nmedians of ${rounds} rounds, ${webhooks} webhooks committed in groups of ${batches.intake}, ` +
      `recorded in groups of ${batches.record}:\n`,
  )
  console.log('| design | backend CPU per webhook | WAL per webhook | statements per webhook |')
  console.log('|---|---|---|---|')
  for (const design of chosen) {
    const of = (pick: (m: Measured) => number) => median(results.filter((m) => m.design === design).map(pick))
    console.log(
      `| ${design} | ${of((m) => m.cpuUs).toFixed(1)} us | ${Math.round(of((m) => m.walBytes))} B | ` +
        `${of((m) => m.statements).toFixed(2)} |`,
    )
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main()
