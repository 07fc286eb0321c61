import { randomBytes, randomUUID } from 'node:crypto'
import type postgres from 'postgres'
import type { AbandonedLookOf } from '../db/owners.ts'
import { writerName, type Sql } from '../db/client.ts'

/** Svix's schedule: after the first attempt, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h. */
export const defaultRetryScheduleSeconds: readonly number[] = [5, 300, 1800, 7200, 18000, 36000, 36000]
export const defaultTimeoutMs = 15_000
export const defaultMaxInFlight = 32

export type DeliveryStatus = 'pending' | 'delivered' | 'failed'

export interface DestinationSettings {
  readonly url: string
  readonly events: readonly string[]
  readonly enabled: boolean
  readonly timeoutMs: number
  readonly maxInFlight: number
  readonly headers: Readonly<Record<string, string>>
  readonly retryScheduleSeconds: readonly number[]
}

export interface Destination extends DestinationSettings {
  readonly id: string
  readonly name: string | null
  readonly source: 'api' | 'file'
  readonly disabledReason: string | null
  readonly consecutiveFailures: number
  readonly createdAt: Date
  readonly updatedAt: Date
  readonly counts: Readonly<Record<DeliveryStatus, number>>
}

export interface DeliveryAttempt {
  readonly attemptedAt: Date
  readonly durationMs: number
  readonly statusCode: number | null
  readonly responseHeaders: Readonly<Record<string, string | string[]>> | null
  readonly responseBody: string | null
  readonly error: string | null
}

export interface Delivery {
  readonly id: string
  readonly destinationId: string
  readonly webhookId: string
  readonly eventId: string
  readonly eventType: string
  readonly status: DeliveryStatus
  readonly attempts: number
  readonly nextAttemptAt: Date
  readonly lastStatusCode: number | null
  readonly lastError: string | null
  readonly createdAt: Date
  readonly deliveredAt: Date | null
}

/** A claimed delivery with what sending it needs. */
export interface DueDelivery {
  readonly id: string
  readonly destinationId: string
  readonly eventId: string
  readonly eventType: string
  readonly payload: string
  readonly attempts: number
  readonly url: string
  readonly timeoutMs: number
  readonly maxInFlight: number
  readonly headers: Readonly<Record<string, string>>
  readonly retryScheduleSeconds: readonly number[]
  /** The destination's active secrets, newest first: one signature each. */
  readonly secrets: readonly string[]
}

/** What became of one attempt, decided by the sender. */
export type Outcome =
  | { readonly kind: 'delivered' }
  /** Sent again after `retryInSeconds`, or failed for good when undefined. */
  | { readonly kind: 'retry'; readonly retryInSeconds: number | undefined }
  /** The endpoint answered 410 Gone: the destination is disabled, the delivery waits for it. */
  | { readonly kind: 'gone' }

export interface RecordedOutcome {
  /** The delivery was still pending (a deleted destination takes its deliveries with it). */
  readonly recorded: boolean
  /** The destination's run of failed deliveries, when this attempt ended one as failed. */
  readonly consecutiveFailures?: number
  /** Set when this attempt disabled the destination. */
  readonly disabledReason?: string
}

const failedForGood = (outcome: Outcome) => outcome.kind === 'retry' && outcome.retryInSeconds === undefined

/** Consecutive failed deliveries after which a destination is disabled. */
export const disableAfterFailures = 10

/** A secret in the Standard Webhooks form: `whsec_` and 32 random bytes in base64. */
export const generateSecret = () => `whsec_${randomBytes(32).toString('base64')}`

const destinationColumns = `d.id, d.name, d.source, d.url, d.events, d.enabled, d.disabled_reason, d.timeout_ms,
  d.max_in_flight, d.headers, d.retry_schedule_seconds, d.consecutive_failures, d.created_at, d.updated_at,
  (SELECT count(*) FILTER (WHERE status = 'pending') FROM deliveries WHERE destination_id = d.id)::int AS pending,
  (SELECT count(*) FILTER (WHERE status = 'failed') FROM deliveries WHERE destination_id = d.id)::int AS failed,
  (SELECT count(*) FILTER (WHERE status = 'delivered') FROM deliveries WHERE destination_id = d.id)::int AS delivered`

function toDestination(row: postgres.Row): Destination {
  return {
    id: row.id,
    name: row.name,
    source: row.source,
    url: row.url,
    events: row.events,
    enabled: row.enabled,
    disabledReason: row.disabled_reason,
    timeoutMs: row.timeout_ms,
    maxInFlight: row.max_in_flight,
    headers: row.headers,
    retryScheduleSeconds: row.retry_schedule_seconds,
    consecutiveFailures: row.consecutive_failures,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    counts: { pending: row.pending, failed: row.failed, delivered: row.delivered },
  }
}

const deliveryColumns = `id, destination_id, webhook_id, event_id, event_type, status, attempts, next_attempt_at,
  last_status_code, last_error, created_at, delivered_at`

function toDelivery(row: postgres.Row): Delivery {
  return {
    id: row.id,
    destinationId: row.destination_id,
    webhookId: row.webhook_id,
    eventId: row.event_id,
    eventType: row.event_type,
    status: row.status,
    attempts: row.attempts,
    nextAttemptAt: row.next_attempt_at,
    lastStatusCode: row.last_status_code,
    lastError: row.last_error,
    createdAt: row.created_at,
    deliveredAt: row.delivered_at,
  }
}

function toAttempt(row: postgres.Row): DeliveryAttempt {
  return {
    attemptedAt: row.attempted_at,
    durationMs: row.duration_ms,
    statusCode: row.status_code,
    responseHeaders: row.response_headers,
    responseBody: row.response_body,
    error: row.error,
  }
}

/**
 * One statement: each attempt in the log and each delivery's new state, for deliveries still pending (one
 * whose destination was deleted meanwhile, or recorded by another sender, is left alone); a delivered one
 * ends its destination's run of failures. Returns the ids recorded.
 */
async function recordStates(
  q: Sql | postgres.TransactionSql,
  attempts: readonly { delivery: Pick<DueDelivery, 'id'>; attempt: DeliveryAttempt; outcome: Outcome }[],
): Promise<Set<string>> {
  const states = attempts.map(({ delivery, attempt, outcome }) => ({
    id: delivery.id,
    attempted_at: attempt.attemptedAt,
    duration_ms: attempt.durationMs,
    status_code: attempt.statusCode,
    response_headers: attempt.responseHeaders,
    response_body: attempt.responseBody,
    error: attempt.error,
    status: outcome.kind === 'delivered' ? 'delivered' : failedForGood(outcome) ? 'failed' : 'pending',
    retry_in_seconds: outcome.kind === 'retry' ? (outcome.retryInSeconds ?? 0) : 0,
  }))
  const updated = await q`
    WITH s AS (
      SELECT * FROM jsonb_to_recordset(${q.json(states as postgres.JSONValue)}) AS s(id uuid,
        attempted_at timestamptz, duration_ms double precision, status_code int, response_headers jsonb,
        response_body text, error text, status text, retry_in_seconds double precision)
    ),
    updated AS (
      UPDATE deliveries AS d SET
        attempts = d.attempts + 1,
        last_status_code = s.status_code,
        last_error = s.error,
        status = s.status,
        delivered_at = CASE WHEN s.status = 'delivered' THEN now() END,
        next_attempt_at = now() + make_interval(secs => s.retry_in_seconds),
        claimed_by = NULL
      FROM s WHERE d.id = s.id AND d.status = 'pending'
      RETURNING d.id, d.destination_id, d.status
    ),
    logged AS (
      INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, status_code, response_headers,
        response_body, error)
      SELECT s.id, s.attempted_at, s.duration_ms, s.status_code, s.response_headers, s.response_body, s.error
      FROM s JOIN updated USING (id)
    ),
    reset AS (
      UPDATE destinations SET consecutive_failures = 0
      WHERE consecutive_failures > 0 AND id IN (SELECT destination_id FROM updated WHERE status = 'delivered')
    )
    SELECT id FROM updated`
  return new Set(updated.map((row) => row.id as string))
}

/** The queries behind destinations, deliveries and their attempts. SQL stays SQL. */
export function createDestinationStore(sql: Sql) {
  const get = async (id: string): Promise<Destination | undefined> => {
    const [row] = await sql`SELECT ${sql.unsafe(destinationColumns)} FROM destinations d WHERE d.id = ${id}`
    return row ? toDestination(row) : undefined
  }
  /**
   * The deliveries' part of the safety net's look (see reclaimAbandoned in owners.ts): deliveries of senders
   * that are gone taken back, and whether any delivery of an enabled destination is due.
   */
  const abandonedOf = (): AbandonedLookOf => ({
    table: 'deliveries',
    pending: sql`status = 'pending'`,
    due: sql`SELECT FROM deliveries d JOIN destinations t ON t.id = d.destination_id
             WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND t.enabled`,
  })

  return {
    async create(
      settings: DestinationSettings & {
        readonly name?: string | undefined
        readonly source?: 'api' | 'file'
      },
      secret = generateSecret(),
    ): Promise<{ destination: Destination; secret: string }> {
      const id = randomUUID()
      await sql.begin(async (tx) => {
        await tx`
          INSERT INTO destinations (id, name, source, url, events, enabled, disabled_reason, timeout_ms,
            max_in_flight, headers, retry_schedule_seconds)
          VALUES (${id}, ${settings.name ?? null}, ${settings.source ?? 'api'}, ${settings.url},
            ${settings.events as string[]}, ${settings.enabled},
            ${settings.enabled ? null : 'disabled by an operator'}, ${settings.timeoutMs}, ${settings.maxInFlight},
            ${tx.json(settings.headers)}, ${settings.retryScheduleSeconds as number[]})`
        await tx`INSERT INTO destination_secrets (destination_id, secret) VALUES (${id}, ${secret})`
      })
      return { destination: (await get(id))!, secret }
    },

    get,

    async getByName(name: string): Promise<Destination | undefined> {
      const [row] =
        await sql`SELECT ${sql.unsafe(destinationColumns)} FROM destinations d WHERE d.name = ${name}`
      return row ? toDestination(row) : undefined
    },

    async list(): Promise<Destination[]> {
      const rows =
        await sql`SELECT ${sql.unsafe(destinationColumns)} FROM destinations d ORDER BY d.created_at`
      return rows.map(toDestination)
    },

    /**
     * Changes what is given. Enabling a disabled destination clears its reason and its failure count, so
     * its waiting deliveries go out at once.
     */
    async update(
      id: string,
      changes: Partial<DestinationSettings> & { readonly disabledReason?: string },
    ): Promise<Destination | undefined> {
      const set: Record<string, unknown> = { updated_at: new Date() }
      if (changes.url !== undefined) set.url = changes.url
      if (changes.events !== undefined) set.events = changes.events
      if (changes.timeoutMs !== undefined) set.timeout_ms = changes.timeoutMs
      if (changes.maxInFlight !== undefined) set.max_in_flight = changes.maxInFlight
      if (changes.headers !== undefined) set.headers = sql.json(changes.headers)
      if (changes.retryScheduleSeconds !== undefined)
        set.retry_schedule_seconds = changes.retryScheduleSeconds
      if (changes.enabled === true)
        Object.assign(set, { enabled: true, disabled_reason: null, consecutive_failures: 0 })
      if (changes.enabled === false)
        Object.assign(set, {
          enabled: false,
          disabled_reason: changes.disabledReason ?? 'disabled by an operator',
        })
      const updated = await sql`
        UPDATE destinations SET ${sql(set as Record<string, postgres.SerializableParameter>)}
        WHERE id = ${id}
        RETURNING id`
      if (updated.length === 0) return undefined
      if (changes.enabled === true) await sql`SELECT pg_notify('deliveries_due', '')`
      return get(id)
    },

    async remove(id: string): Promise<boolean> {
      const deleted = await sql`DELETE FROM destinations WHERE id = ${id} RETURNING id`
      return deleted.length > 0
    },

    /**
     * A new signing secret. The ones before it keep signing (every request carries a signature per active
     * secret) until `expiresInSeconds` from now, so receivers can switch over without a gap.
     */
    async rotateSecret(
      id: string,
      expiresInSeconds: number,
      secret = generateSecret(),
    ): Promise<{ secret: string; previousExpireAt: Date } | undefined> {
      return sql.begin(async (tx) => {
        const [destination] = await tx`SELECT id FROM destinations WHERE id = ${id} FOR UPDATE`
        if (!destination) return undefined
        const [row] = await tx`
          UPDATE destination_secrets
          SET expires_at = LEAST(coalesce(expires_at, 'infinity'), now() + make_interval(secs => ${expiresInSeconds}))
          WHERE destination_id = ${id} AND (expires_at IS NULL OR expires_at > now())
          RETURNING now() + make_interval(secs => ${expiresInSeconds}) AS expire_at`
        await tx`
          INSERT INTO destination_secrets (destination_id, secret) VALUES (${id}, ${secret})
          ON CONFLICT (destination_id, secret) DO UPDATE SET expires_at = NULL, created_at = now()`
        await tx`DELETE FROM destination_secrets WHERE destination_id = ${id} AND expires_at <= now()`
        return { secret, previousExpireAt: (row?.expire_at as Date | undefined) ?? new Date() }
      })
    },

    /** The secrets that sign now, newest first. */
    async activeSecrets(id: string): Promise<string[]> {
      const rows = await sql`
        SELECT secret FROM destination_secrets
        WHERE destination_id = ${id} AND (expires_at IS NULL OR expires_at > now())
        ORDER BY created_at DESC`
      return rows.map((row) => row.secret as string)
    },

    /**
     * Claims due deliveries of enabled destinations, at most `maxInFlight` minus `busy[destination]` of each
     * (what this process already has in flight there) and `limit` in all, oldest first, for `owner` (see
     * ClaimOwner). A claim is a lease: the next attempt is pushed past the destination's timeout plus
     * `leaseMarginSeconds`. A sender that dies mid-request leaves the delivery to be sent again, with the same
     * webhook-id: taken back by reclaimAbandoned within seconds, or claimed again when the lease ends.
     */
    async claimDue(
      owner: number,
      busy: Readonly<Record<string, number>>,
      limit: number,
      leaseMarginSeconds: number,
    ): Promise<DueDelivery[]> {
      if (limit <= 0) return []
      const rows = await sql`
        UPDATE deliveries AS d
        SET next_attempt_at = now() + make_interval(secs => t.timeout_ms / 1000.0 + ${leaseMarginSeconds}),
          claimed_by = ${owner}
        FROM destinations AS t
        WHERE t.id = d.destination_id AND d.id IN (
          SELECT pick.id FROM destinations AS dest
          CROSS JOIN LATERAL (
            SELECT id, next_attempt_at FROM deliveries
            WHERE destination_id = dest.id AND status = 'pending' AND next_attempt_at <= now()
            ORDER BY next_attempt_at
            LIMIT greatest(0, dest.max_in_flight - coalesce((${sql.json(busy)}::jsonb ->> dest.id::text)::int, 0))
            FOR UPDATE SKIP LOCKED
          ) AS pick
          WHERE dest.enabled
          ORDER BY pick.next_attempt_at
          LIMIT ${limit}
        )
        RETURNING d.id, d.destination_id, d.event_id, d.event_type, d.payload, d.attempts, t.url, t.timeout_ms,
          t.max_in_flight, t.headers, t.retry_schedule_seconds,
          ARRAY(SELECT secret FROM destination_secrets s
                WHERE s.destination_id = t.id AND (s.expires_at IS NULL OR s.expires_at > now())
                ORDER BY s.created_at DESC) AS secrets`
      return rows.map((row) => ({
        id: row.id,
        destinationId: row.destination_id,
        eventId: row.event_id,
        eventType: row.event_type,
        payload: row.payload,
        attempts: row.attempts,
        url: row.url,
        timeoutMs: row.timeout_ms,
        maxInFlight: row.max_in_flight,
        headers: row.headers,
        retryScheduleSeconds: row.retry_schedule_seconds,
        secrets: row.secrets,
      }))
    },

    /** Gives back, due at once, deliveries `owner` claimed and will not send (it is stopping). */
    async release(owner: number, ids: readonly string[]): Promise<void> {
      await sql`
        UPDATE deliveries SET next_attempt_at = now(), claimed_by = NULL
        WHERE id = ANY(${ids as string[]}::uuid[]) AND claimed_by = ${owner} AND status = 'pending'`
    },

    /** The deliveries' part of the look, for the statement that looks at several tables (see lookTogether). */
    abandonedOf,

    /**
     * Records attempts and what follows from them, many at once (senders finish requests faster than
     * Postgres commits them one by one): each attempt in the log and each delivery's new state in one
     * statement, which is all there is for the usual outcomes (answered, or retried later; a success also
     * ends its destination's run of failures). A delivery failed for good or a 410 changes its destination
     * too, in the same transaction: the run of failed deliveries is walked in the order given, and at
     * `disableAfterFailures` the destination is disabled, as a 410 does at once.
     */
    async recordAttempts(
      attempts: readonly {
        readonly delivery: Pick<DueDelivery, 'id' | 'destinationId'>
        readonly attempt: DeliveryAttempt
        readonly outcome: Outcome
      }[],
    ): Promise<RecordedOutcome[]> {
      if (attempts.length === 0) return []
      const usual = ({ outcome }: (typeof attempts)[number]) =>
        outcome.kind === 'delivered' || (outcome.kind === 'retry' && outcome.retryInSeconds !== undefined)
      if (attempts.every(usual)) {
        const recorded = await recordStates(sql, attempts)
        return attempts.map(({ delivery }) => ({ recorded: recorded.has(delivery.id) }))
      }
      return sql.begin(async (tx) => {
        const recorded = await recordStates(tx, attempts)
        const live = attempts.filter(({ delivery }) => recorded.has(delivery.id))
        const destinationIds = [...new Set(live.map((item) => item.delivery.destinationId))]
        const rows = await tx`
          SELECT id, enabled, consecutive_failures FROM destinations
          WHERE id = ANY(${destinationIds}::uuid[]) ORDER BY id FOR UPDATE`
        const state = new Map(
          rows.map((row) => [
            row.id as string,
            {
              enabled: row.enabled as boolean,
              failures: row.consecutive_failures as number,
              disabledReason: undefined as string | undefined,
              changed: false,
            },
          ]),
        )
        const results = new Map<string, RecordedOutcome>()
        for (const { delivery, outcome } of live) {
          const destination = state.get(delivery.destinationId)
          results.set(delivery.id, { recorded: true })
          if (!destination) continue
          if (outcome.kind === 'delivered') {
            destination.failures = 0
          } else if (outcome.kind === 'gone') {
            const disabledReason = 'the endpoint answered 410 Gone'
            if (destination.enabled)
              Object.assign(destination, { enabled: false, disabledReason, changed: true })
            results.set(delivery.id, { recorded: true, disabledReason })
          } else if (failedForGood(outcome)) {
            destination.failures += 1
            destination.changed = true
            const consecutiveFailures = destination.failures
            if (destination.enabled && consecutiveFailures >= disableAfterFailures) {
              const disabledReason = `${consecutiveFailures} consecutive failed deliveries`
              Object.assign(destination, { enabled: false, disabledReason })
              results.set(delivery.id, { recorded: true, consecutiveFailures, disabledReason })
            } else results.set(delivery.id, { recorded: true, consecutiveFailures })
          }
        }
        for (const [id, destination] of state) {
          if (!destination.changed) continue
          await tx`
            UPDATE destinations SET
              consecutive_failures = ${destination.failures},
              ${destination.disabledReason ? tx`enabled = false, disabled_reason = ${destination.disabledReason},` : tx``}
              updated_at = now()
            WHERE id = ${id}`
        }
        return attempts.map((item) => results.get(item.delivery.id) ?? { recorded: false })
      })
    },

    async listDeliveries(filter: {
      readonly id?: string | undefined
      readonly destinationId?: string | undefined
      readonly eventId?: string | undefined
      readonly webhookId?: string | undefined
      readonly status?: DeliveryStatus | undefined
      readonly limit: number
    }): Promise<(Delivery & { readonly attemptLog: DeliveryAttempt[] })[]> {
      const rows = await sql`
        SELECT ${sql.unsafe(deliveryColumns)} FROM deliveries
        WHERE true
        ${filter.id ? sql`AND id = ${filter.id}` : sql``}
        ${filter.destinationId ? sql`AND destination_id = ${filter.destinationId}` : sql``}
        ${filter.eventId ? sql`AND event_id = ${filter.eventId}` : sql``}
        ${filter.webhookId ? sql`AND webhook_id = ${filter.webhookId}` : sql``}
        ${filter.status ? sql`AND status = ${filter.status}` : sql``}
        ORDER BY created_at DESC, id LIMIT ${filter.limit}`
      const deliveries = rows.map(toDelivery)
      const attempts =
        deliveries.length === 0
          ? []
          : await sql`
              SELECT delivery_id, attempted_at, duration_ms, status_code, response_headers, response_body, error
              FROM delivery_attempts WHERE delivery_id = ANY(${deliveries.map((d) => d.id)}::uuid[])
              ORDER BY id`
      const byDelivery = new Map<string, DeliveryAttempt[]>()
      for (const row of attempts) {
        const list = byDelivery.get(row.delivery_id) ?? []
        list.push(toAttempt(row))
        byDelivery.set(row.delivery_id, list)
      }
      return deliveries.map((delivery) => ({ ...delivery, attemptLog: byDelivery.get(delivery.id) ?? [] }))
    },

    /**
     * Sends deliveries again from a fresh schedule (same event id, so the same webhook-id): one by id, or
     * every failed one of a destination. Returns how many were queued.
     */
    async retry(filter: { readonly id: string } | { readonly destinationId: string }): Promise<number> {
      const rows = await sql`
        UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(), delivered_at = NULL,
          claimed_by = NULL
        WHERE ${'id' in filter ? sql`id = ${filter.id}` : sql`destination_id = ${filter.destinationId} AND status = 'failed'`}
        RETURNING id`
      if (rows.length > 0) await sql`SELECT pg_notify('deliveries_due', '')`
      return rows.length
    },

    /** Pending deliveries per destination, for the metrics. */
    async pendingByDestination(): Promise<{ destinationId: string; pending: number }[]> {
      const rows = await sql`
        SELECT destination_id, count(*)::int AS pending FROM deliveries WHERE status = 'pending' GROUP BY destination_id`
      return rows.map((row) => ({ destinationId: row.destination_id, pending: row.pending }))
    },

    /** Calls `onDue` when another process writes deliveries, or a retry or an enabling is asked for. */
    async listen(onDue: () => void): Promise<{ unlisten: () => Promise<void> }> {
      return sql.listen('deliveries_due', (writer) => {
        if (writer !== writerName(sql)) onDue()
      })
    },
  }
}

export type DestinationStore = ReturnType<typeof createDestinationStore>
