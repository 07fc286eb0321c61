import { randomUUID } from 'node:crypto'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { migrate } from '../../src/db/migrate.ts'
import { createStore, type NewWebhook, type Store } from '../../src/db/webhooks.ts'
import { createOutbox, type ClaimingSender } from '../../src/destinations/fanout.ts'
import { createDestinationStore } from '../../src/destinations/store.ts'
import { eventId } from '../../src/pipeline/events.ts'
import type { HandledWebhook } from '../../src/pipeline/worker.ts'
import { useTestDatabase, waitFor } from '../support/services.ts'
import { newWebhook } from '../support/stored.ts'

// Deliveries written unclaimed wake the senders of the other processes, at commit, from the statement that
// writes them (migration 0007 dropped the trigger that did it); deliveries this process's sender took wake
// nobody, and a process is never woken by what it wrote itself.
const db = useTestDatabase()
let writer: postgres.Sql
let other: postgres.Sql
let store: Store
/** Wake-ups seen by another process, and by the writer's own listener. */
const woken = { other: 0, own: 0 }

beforeAll(async () => {
  writer = postgres(db.url, { max: 2, onnotice: () => {}, connection: { application_name: 'wake-writer' } })
  other = postgres(db.url, { max: 1, onnotice: () => {}, connection: { application_name: 'wake-other' } })
  await migrate(writer)
  store = createStore(writer)
  await createDestinationStore(other).listen(() => woken.other++)
  await createDestinationStore(writer).listen(() => woken.own++)
  await db.sql`
    INSERT INTO destinations (id, url, events, timeout_ms, max_in_flight, retry_schedule_seconds)
    VALUES (${randomUUID()}, 'https://example.com/hooks', '{#}', 5000, 32, '{5}')`
})
afterAll(async () => {
  await other?.end()
  await writer?.end()
})

/** A webhook as intake stores it, and what the worker hands the outbox for it. */
function webhook(): { stored: NewWebhook; handled: HandledWebhook } {
  const stored = newWebhook(Buffer.from('{}'))
  const event = { id: eventId('github', stored.eventKey, 'raw'), type: 'raw.github.push' }
  return {
    stored,
    handled: {
      webhookId: stored.id,
      routed: false,
      eventIds: [event.id],
      events: [{ ...event, time: new Date().toISOString(), body: Buffer.from('{"data":{}}') }],
    },
  }
}

/** An outbox with a sender that takes every delivery (`room` > 0), or none in this process. */
async function outbox(room?: number) {
  const taken: string[] = []
  const sender: ClaimingSender | undefined =
    room === undefined
      ? undefined
      : {
          owner: 7,
          leaseMarginSeconds: 5,
          room: () => room,
          take: (deliveries) => taken.push(...deliveries.map((delivery) => delivery.id)),
          due: () => {},
        }
  const created = createOutbox(
    writer,
    { published: store.publishedUpdate, routed: store.routedUpdate },
    sender,
  )
  await created.start()
  return { outbox: created, taken }
}

const unclaimedDeliveries = async () =>
  (await db.sql`SELECT count(*)::int AS n FROM deliveries WHERE claimed_by IS NULL`)[0]!.n as number

describe('waking the senders of other processes', () => {
  it('wakes them when the worker writes deliveries it does not send itself', async () => {
    const before = woken.other
    const { outbox: unclaiming } = await outbox()
    const { stored, handled } = webhook()
    await store.insertWebhooks([stored])
    await unclaiming.released([handled])
    await waitFor(() => woken.other === before + 1)
    expect(await unclaimedDeliveries()).toBeGreaterThan(0)
  })

  it('wakes them when intake writes unclaimed deliveries with its group', async () => {
    const before = woken.other
    const { outbox: unclaiming } = await outbox()
    const { stored, handled } = webhook()
    let routed: boolean | undefined
    await store.insertWebhooks(
      [stored],
      undefined,
      unclaiming.withCommit([handled], (done) => (routed = done)),
    )
    expect(routed).toBe(true)
    await waitFor(() => woken.other === before + 1)
  })

  it('wakes nobody for deliveries its own sender took, and nobody twice', async () => {
    const { outbox: claiming, taken } = await outbox(100)
    const first = webhook()
    await store.insertWebhooks([first.stored])
    const before = woken.other
    await claiming.released([first.handled])
    expect(taken).toHaveLength(1)
    // Notifications arrive in commit order: once the unclaimed write's has come, the claimed
    // write's would have come before it.
    const { outbox: unclaiming } = await outbox()
    const second = webhook()
    const third = webhook()
    await store.insertWebhooks([second.stored, third.stored])
    await unclaiming.released([second.handled, third.handled])
    await waitFor(() => woken.other > before)
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(woken.other).toBe(before + 1)
  })

  it('never wakes the process that wrote them', () => {
    expect(woken.other).toBeGreaterThan(0)
    expect(woken.own).toBe(0)
  })
})
