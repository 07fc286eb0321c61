import { setTimeout as sleep } from 'node:timers/promises'
import type postgres from 'postgres'
import type { History } from './history.ts'
import type { Observer } from './observer.ts'
import type { Receiver } from './receiver.ts'
import { within } from './samplers.ts'

/**
 * Waits, bounded, until everything accepted has flowed out: no webhook waits to be published, no delivery
 * waits to be sent, and every published event id has reached the observer's queue and the destination.
 */

export interface Drain {
  readonly drained: boolean
  readonly ms: number
  /** What was still waiting at the end. */
  readonly left: string
}

export async function waitDrained(input: {
  readonly sql: postgres.Sql
  readonly observer: Observer
  readonly receiver: Receiver
  readonly history: History
  readonly limitMs: number
}): Promise<Drain> {
  const { sql, observer, receiver, history, limitMs } = input
  const startedAt = history.now()
  let left = 'nothing read yet'
  let lastSaid = 0
  while (history.now() - startedAt < limitMs) {
    try {
      const [row] = await within(
        sql<{ backlog: number; deliveriesPending: number }[]>`
          SELECT (SELECT count(*) FROM webhooks WHERE status IN ('pending', 'retrying'))::int AS backlog,
                 (SELECT count(*) FROM deliveries WHERE status = 'pending')::int AS "deliveriesPending"`,
        5000,
      )
      if (row && row.backlog === 0 && row.deliveriesPending === 0) {
        const ids = await within(
          sql<{ id: string }[]>`SELECT unnest(published_event_ids) AS id FROM webhooks`,
          15_000,
        )
        const notObserved = ids.filter(({ id }) => !observer.seen.has(id)).length
        const notReceived = ids.filter(({ id }) => !receiver.received.has(id)).length
        if (notObserved === 0 && notReceived === 0)
          return { drained: true, ms: history.now() - startedAt, left: 'nothing' }
        left = `${notObserved} events not yet on the observer's queue, ${notReceived} not yet at the destination`
      } else if (row) {
        left = `${row.backlog} webhooks to publish, ${row.deliveriesPending} deliveries to send`
      }
    } catch (error) {
      left = `postgres: ${(error as Error).message}`
    }
    if (history.now() - lastSaid > 5000) {
      history.say(`draining: ${left}`)
      lastSaid = history.now()
    }
    await sleep(1000)
  }
  return { drained: false, ms: history.now() - startedAt, left }
}
