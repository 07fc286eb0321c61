import { randomUUID } from 'node:crypto'
import type postgres from 'postgres'
import { serializeEvent, type CloudEvent } from '../pipeline/events.ts'
import type { Sql } from '../db/client.ts'
import { wantsEvent } from './patterns.ts'

/** A webhook's events to be fanned out to the destinations that want them. */
export interface HandledWebhook {
  readonly webhookId: string
  readonly events: readonly CloudEvent[]
}

interface KnownDestinations {
  /** The destinations' ids and patterns in one string, computed by Postgres (see `fingerprint`). */
  readonly fingerprint: string
  readonly destinations: readonly { readonly id: string; readonly events: readonly string[] }[]
}

/** One text that changes whenever a destination is added, removed or given other patterns. */
const fingerprint = `coalesce(string_agg(id::text || ':' || array_to_string(events, ','), ';' ORDER BY id), '')`

/**
 * Writes a delivery for every destination that wants one of the handled webhooks' events, in the very
 * statement that records the webhooks handled (the outbox: both or neither). Patterns are matched here,
 * against the destinations as last read; the statement writes nothing unless the destinations are still
 * exactly those (their fingerprint, checked in its own snapshot), and then the fan-out is redone with a fresh
 * read. So a destination created a moment ago is never missed, and with none configured the whole fan-out
 * costs one comparison in the statement the worker sends anyway. Disabled destinations get deliveries too:
 * they wait. A webhook handled twice adds nothing: (destination, event id) is unique.
 */
export function createFanOut(sql: Sql) {
  let known: KnownDestinations = { fingerprint: '', destinations: [] }

  const refresh = async () => {
    const [row] = await sql`
      SELECT (SELECT ${sql.unsafe(fingerprint)} FROM destinations) AS fingerprint,
             coalesce((SELECT json_agg(json_build_object('id', id, 'events', events)) FROM destinations), '[]')
               AS destinations`
    known = { fingerprint: row?.fingerprint ?? '', destinations: row?.destinations ?? [] }
  }

  const rowsFor = (handled: readonly HandledWebhook[]) => {
    const rows: Record<string, string>[] = []
    for (const { webhookId, events } of handled) {
      for (const event of events) {
        let payload: string | undefined
        for (const destination of known.destinations) {
          if (!wantsEvent(destination.events, event.type)) continue
          payload ??= serializeEvent(event).toString('utf8')
          rows.push({
            id: randomUUID(),
            destination_id: destination.id,
            webhook_id: webhookId,
            event_id: event.id,
            event_type: event.type,
            payload,
          })
        }
      }
    }
    return rows
  }

  /**
   * Runs `update` (an `UPDATE webhooks ... RETURNING w.id` built with the `unchanged` condition in its WHERE)
   * together with the fan-out of `handled`, as one statement. Returns how many deliveries were written.
   */
  return async function fanOutWith(
    handled: readonly HandledWebhook[],
    update: (unchanged: postgres.PendingQuery<postgres.Row[]>) => postgres.PendingQuery<postgres.Row[]>,
  ): Promise<number> {
    for (let tries = 0; ; tries++) {
      const rows = rowsFor(handled)
      const unchanged = sql`(SELECT fingerprint FROM current) = ${known.fingerprint}`
      const [result] = await sql`
        WITH current AS (SELECT ${sql.unsafe(fingerprint)} AS fingerprint FROM destinations),
        inserted AS (
          INSERT INTO deliveries (id, destination_id, webhook_id, event_id, event_type, payload)
          SELECT r.id, r.destination_id, r.webhook_id, r.event_id, r.event_type, r.payload
          FROM jsonb_to_recordset(${sql.json(rows)})
            AS r(id uuid, destination_id uuid, webhook_id uuid, event_id uuid, event_type text, payload text)
          WHERE ${unchanged}
          ON CONFLICT (destination_id, event_id) DO NOTHING
          RETURNING 1
        ),
        updated AS (${update(unchanged)})
        SELECT (SELECT fingerprint FROM current) AS fingerprint, (SELECT count(*) FROM inserted)::int AS inserted`
      if (result?.fingerprint === known.fingerprint) return result.inserted as number
      if (tries >= 5)
        throw new Error('fan-out: the destinations changed five times in a row; try again later')
      await refresh()
    }
  }
}

export type FanOut = ReturnType<typeof createFanOut>
