import { randomUUID } from 'node:crypto'
import { writerName, type Fragment, type Sql } from '../db/client.ts'
import type { ConditionalUpdate, WrittenWith } from '../db/webhooks.ts'
import type { HandledWebhook, Recorder } from '../pipeline/worker.ts'
import { wantsEvent } from './patterns.ts'
import type { DueDelivery } from './store.ts'

/** A destination as last read, with what sending to it takes. */
interface KnownDestination {
  readonly id: string
  readonly events: readonly string[]
  readonly enabled: boolean
  readonly url: string
  readonly timeout_ms: number
  readonly max_in_flight: number
  readonly headers: Record<string, string>
  readonly retry_schedule_seconds: number[]
  /** Newest first; `expires_at` an ISO time, or null for a secret that signs until rotated. */
  readonly secrets: readonly { readonly secret: string; readonly expires_at: string | null }[]
}

/** The destinations as last read, and the version (destinations_version) they were read at. */
interface Known {
  readonly version: string
  readonly destinations: readonly KnownDestination[]
}

/** What the fan-out needs of this process's sender, when one runs here. */
export interface ClaimingSender {
  /** The number its claims carry (see ClaimOwner). */
  readonly owner: number
  /** Seconds a claim lasts beyond the destination's timeout. */
  readonly leaseMarginSeconds: number
  /** How many more deliveries to this destination it would send at once (its free slots). */
  room(destinationId: string): number
  /** Deliveries written claimed for it, with their destinations' settings as the statement read them. */
  take(deliveries: readonly DueDelivery[]): void
  /** Deliveries to these enabled destinations were written unclaimed: its claims find them. */
  due(destinationIds: Iterable<string>): void
}

/** One delivery to write. */
interface Row {
  readonly id: string
  readonly destination: KnownDestination
  readonly webhookId: string
  readonly eventId: string
  readonly eventType: string
  readonly payload: string
  /** Claimed for this process's sender (its destination is enabled and the sender has room). */
  readonly claimed: boolean
}

/**
 * The outbox: writes a delivery for every destination that wants one of the handled webhooks' events, in the
 * very statement that records the webhooks handled (both or neither). Patterns are matched here, against the
 * destinations as last read; the statement writes nothing unless they are still as read (destinations_version,
 * locked until it commits: see currentVersion), and then the fan-out is redone with a fresh read. So a
 * destination created, disabled or re-pointed a moment ago is never missed, and with none configured the whole
 * fan-out costs one comparison in the statement the worker sends anyway. Disabled destinations get deliveries
 * too: they wait.
 * A webhook handled twice adds nothing: (destination, event id) is unique.
 *
 * With a sender in this process, the deliveries it has room for are written claimed by it and handed over
 * with their destinations' settings as the statement found them, so they go out at once: no notification,
 * claim or re-read.
 */
export function createOutbox(
  sql: Sql,
  updates: {
    readonly published: (
      published: readonly { readonly id: string; readonly eventIds: readonly string[] }[],
    ) => ConditionalUpdate
    readonly routed: (ids: readonly string[]) => ConditionalUpdate
  },
  sender?: ClaimingSender,
): Required<Recorder> & { start(): Promise<void> } {
  let known: Known = { version: '-1', destinations: [] }

  const refresh = async () => {
    const [row] = await sql`
      SELECT (SELECT version FROM destinations_version)::text AS version,
        coalesce((SELECT json_agg(json_build_object('id', d.id, 'events', d.events, 'enabled', d.enabled,
          'url', d.url, 'timeout_ms', d.timeout_ms, 'max_in_flight', d.max_in_flight, 'headers', d.headers,
          'retry_schedule_seconds', d.retry_schedule_seconds,
          'secrets', coalesce((SELECT json_agg(json_build_object('secret', s.secret, 'expires_at', s.expires_at)
                                ORDER BY s.created_at DESC)
                               FROM destination_secrets s WHERE s.destination_id = d.id), '[]')))
          FROM destinations d), '[]') AS destinations`
    known = { version: row?.version ?? '-1', destinations: row?.destinations ?? [] }
  }

  const rowsFor = (handled: readonly HandledWebhook[]) => {
    const rows: Row[] = []
    const room = new Map<string, number>()
    const claim = (destination: KnownDestination) => {
      if (!sender || !destination.enabled) return false
      const left = room.get(destination.id) ?? sender.room(destination.id)
      room.set(destination.id, left - 1)
      return left > 0
    }
    for (const { webhookId, events = [] } of handled) {
      for (const event of events) {
        let payload: string | undefined
        for (const destination of known.destinations) {
          if (!wantsEvent(destination.events, event.type)) continue
          payload ??= event.body.toString('utf8')
          rows.push({
            id: randomUUID(),
            destination,
            webhookId,
            eventId: event.id,
            eventType: event.type,
            payload,
            claimed: claim(destination),
          })
        }
      }
    }
    return rows
  }

  /** A claimed delivery as the sender takes it, with its destination's settings as read. */
  const dueDelivery = (row: Row, now: number): DueDelivery => ({
    id: row.id,
    destinationId: row.destination.id,
    eventId: row.eventId,
    eventType: row.eventType,
    payload: row.payload,
    attempts: 0,
    url: row.destination.url,
    timeoutMs: row.destination.timeout_ms,
    maxInFlight: row.destination.max_in_flight,
    headers: row.destination.headers,
    retryScheduleSeconds: row.destination.retry_schedule_seconds,
    secrets: row.destination.secrets
      .filter((secret) => secret.expires_at === null || Date.parse(secret.expires_at) > now)
      .map((secret) => secret.secret),
  })

  /**
   * destinations_version for a statement that writes deliveries: as of now, locked FOR SHARE until the statement
   * commits, so that a change to the destinations being committed is waited for and its version seen, and one
   * that starts later waits for this statement (migration 0006: no foreign key checks a delivery's destination,
   * and none may be written for a destination being deleted). A statement that writes none reads it plainly.
   */
  const currentVersion = (writes: boolean) =>
    writes
      ? sql`(SELECT version FROM destinations_version FOR SHARE)`
      : sql`(SELECT version FROM destinations_version)`
  /** The destinations are as last read. */
  const unchanged = (version: string, writes: boolean) => sql`${currentVersion(writes)} = ${version}::bigint`

  /**
   * INSERT ... RETURNING id of `rows`, those `where` allows; a claimed row's lease is its timeout plus the margin.
   * A row written unclaimed wakes the other processes' senders at commit (`deliveries_due`, named by this writer
   * so that its own listener skips it): its RETURNING calls pg_notify, which Postgres sends once per transaction
   * however many rows call it. This statement knows which rows it leaves unclaimed, so no trigger looks again
   * (migration 0007).
   */
  const insertRows = (rows: readonly Row[], where: Fragment) => {
    const leaseMargin = sender?.leaseMarginSeconds ?? 0
    const wakeOthers = rows.some((row) => !row.claimed)
      ? sql`, CASE WHEN claimed_by IS NULL THEN pg_notify('deliveries_due', ${writerName(sql)}) END`
      : sql``
    return sql`
      INSERT INTO deliveries (id, destination_id, webhook_id, event_id, event_type, payload, claimed_by,
        next_attempt_at)
      SELECT r.id, r.destination_id, r.webhook_id, r.event_id, r.event_type, r.payload, r.claimed_by,
        CASE WHEN r.claimed_by IS NULL THEN now() ELSE now() + make_interval(secs => r.lease_seconds) END
      FROM unnest(${rows.map((row) => row.id)}::uuid[], ${rows.map((row) => row.destination.id)}::uuid[],
        ${rows.map((row) => row.webhookId)}::uuid[], ${rows.map((row) => row.eventId)}::uuid[],
        ${rows.map((row) => row.eventType)}::text[], ${rows.map((row) => row.payload)}::text[],
        ${rows.map((row) => (row.claimed ? sender!.owner : null))}::int[],
        ${rows.map((row) => row.destination.timeout_ms / 1000 + leaseMargin)}::float8[])
        AS r(id, destination_id, webhook_id, event_id, event_type, payload, claimed_by, lease_seconds)
      WHERE ${where}
      ON CONFLICT (destination_id, event_id) DO NOTHING
      RETURNING id ${wakeOthers}`
  }

  /** What a committed statement wrote: the claimed deliveries go to the sender, the others wake it. */
  const written = (rows: readonly Row[], ids: readonly string[]) => {
    const inserted = new Set(ids)
    const now = Date.now()
    const claimed = rows
      .filter((row) => row.claimed && inserted.has(row.id))
      .map((row) => dueDelivery(row, now))
    if (claimed.length > 0) sender?.take(claimed)
    const unclaimed = rows.filter((row) => !row.claimed && row.destination.enabled && inserted.has(row.id))
    if (unclaimed.length > 0) sender?.due(new Set(unclaimed.map((row) => row.destination.id)))
  }

  /** Runs `update` together with the fan-out of `handled`, as one statement. */
  const fanOutWith = async (handled: readonly HandledWebhook[], update: ConditionalUpdate): Promise<void> => {
    for (let tries = 0; ; tries++) {
      const rows = rowsFor(handled)
      const version = known.version
      const [result] = await sql`
        WITH ${rows.length > 0 ? sql`inserted AS (${insertRows(rows, unchanged(version, true))}),` : sql``}
        updated AS (${update(unchanged(version, rows.length > 0))})
        SELECT ${currentVersion(rows.length > 0)}::text AS version
          ${rows.length > 0 ? sql`, ARRAY(SELECT id FROM inserted) AS inserted` : sql``}`
      if (result?.version === version) return written(rows, result.inserted ?? [])
      if (tries >= 5)
        throw new Error('fan-out: the destinations changed five times in a row; try again later')
      await refresh()
    }
  }

  return {
    start: refresh,

    async published(handled) {
      if (handled.length === 0) return
      const update = updates.published(
        handled.map(({ webhookId, eventIds }) => ({ id: webhookId, eventIds })),
      )
      const unrouted = handled.filter((item) => !item.routed)
      // Marks alone need no look at the destinations.
      if (unrouted.length === 0) await update(sql`true`)
      else await fanOutWith(unrouted, update)
    },

    async released(handled) {
      if (handled.length === 0) return
      await fanOutWith(
        handled.filter((item) => !item.routed),
        updates.routed(handled.map((item) => item.webhookId)),
      )
    },

    withCommit(handled, onRouted): WrittenWith {
      const rows = rowsFor(handled)
      const version = known.version
      return {
        insert: (webhookIds) =>
          rows.length > 0
            ? insertRows(rows, sql`${unchanged(version, true)} AND r.webhook_id IN (${webhookIds})`)
            : sql`SELECT NULL::uuid AS id WHERE false`,
        check: sql`${currentVersion(rows.length > 0)}::text`,
        committed: (ids, check) => {
          // The destinations changed since they were read: nothing was written; the record of the publish
          // fans these webhooks out instead.
          if (check !== version) {
            onRouted(false)
            refresh().catch(() => {})
            return
          }
          written(rows, ids)
          onRouted(true)
        },
      }
    },
  }
}
