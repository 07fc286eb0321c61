import type postgres from 'postgres'
import { writerName, type Fragment, type Sql } from './client.ts'
import { copyWebhooks } from './copy.ts'
import { abandonedLooks, reclaimAbandoned, type Abandoned, type AbandonedLookOf } from './owners.ts'

export type WebhookStatus = 'pending' | 'retrying' | 'published' | 'dead'

/** A delivery ready to be stored. */
export interface NewWebhook {
  readonly id: string
  readonly provider: string
  readonly eventKey: string
  readonly eventType: string
  readonly method: string
  readonly path: string
  readonly publicUrl: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: Buffer
  readonly receivedAt: Date
}

/** Rows written already claimed: by the worker process `owner` (see ClaimOwner), for `leaseSeconds`. */
export interface Claim {
  readonly owner: number
  readonly leaseSeconds: number
}

/**
 * Rows written with a group of webhooks, in its very statement or transaction: the deliveries of their
 * events to destinations (destinations/fanout.ts), so that they exist, and go out, as soon as the webhooks
 * do.
 */
export interface WrittenWith {
  /** An `INSERT ... RETURNING id` of rows for the webhooks whose ids the subquery `webhookIds` yields. */
  insert(webhookIds: Fragment): Fragment
  /** An expression read in the same snapshot, handed back to `committed` (the destinations' version). */
  readonly check: Fragment
  /** Once the group is committed: the ids `insert` returned, and `check`'s value. */
  committed(ids: readonly string[], check: unknown): void
}
/** An UPDATE of webhooks ending in `RETURNING id`, built around a condition the caller's statement checks. */
export type ConditionalUpdate = (condition: Fragment) => Fragment

export interface StoredWebhook extends NewWebhook {
  readonly status: WebhookStatus
  readonly attempts: number
  readonly nextAttemptAt: Date
  readonly lastError: string | null
  readonly publishedEventIds: readonly string[]
  readonly publishedAt: Date | null
  /** When its events were fanned out to destinations; null until then. */
  readonly routedAt: Date | null
}

export interface InsertResult {
  /** The row's id: the new one, or the first delivery's when this one is a duplicate. */
  readonly id: string
  readonly duplicate: boolean
}

const columns = `id, provider, event_key, event_type, method, path, public_url, headers, body, received_at,
  status, attempts, next_attempt_at, last_error, published_event_ids, published_at, routed_at`

function toWebhook(row: postgres.Row): StoredWebhook {
  return {
    id: row.id,
    provider: row.provider,
    eventKey: row.event_key,
    eventType: row.event_type,
    method: row.method,
    path: row.path,
    publicUrl: row.public_url,
    headers: row.headers,
    body: row.body,
    receivedAt: row.received_at,
    status: row.status,
    attempts: row.attempts,
    nextAttemptAt: row.next_attempt_at,
    lastError: row.last_error,
    publishedEventIds: row.published_event_ids,
    publishedAt: row.published_at,
    routedAt: row.routed_at,
  }
}

/**
 * Bodies a group may hold and still go in with one INSERT rather than COPY. An INSERT is one round trip and
 * sends each body as its own bytes (binary bytea parameters: patches/postgres+3.4.9.patch), but postgres.js
 * builds the whole message in one buffer that grows by copying; COPY streams the group in chunks of 1 MB and
 * takes four round trips (BEGIN, COPY, a query that reports its outcome, COMMIT). Measured per webhook, gateway
 * + Postgres CPU, INSERT against COPY: 5 bodies of 1.4 KB 83 + 67 against 140 + 95 us, 25 of 6.9 KB 38 + 37
 * against 40 + 42, 16 of 64 KB 123 + 73 against 94 + 152, 4 of 256 KB 775 + 229 against 356 + 624. Past a
 * quarter of a megabyte the gateway's own share, the scarcer one, grows faster with an INSERT.
 */
const insertMaxBodyBytes = 256 * 1024

/** Bodies one claim reads at most (see claimDue). */
const claimMaxBytes = 16 * 1024 * 1024

/**
 * Whether a claim of `limit` may have left due webhooks behind: it took `limit` of them, or it stopped at the
 * byte budget (claimDue leaves the rows past it, so what it took adds up to the budget or more).
 */
export const claimMayHaveLeftMore = (
  claimed: readonly { readonly body: Buffer }[],
  limit: number,
  maxBytes = claimMaxBytes,
) => claimed.length >= limit || claimed.reduce((sum, webhook) => sum + webhook.body.length, 0) >= maxBytes

/** A delivery's row as INSERT INTO webhooks takes it, claimed by `claim.owner` until `claim.until` if given. */
export const webhookRow = (
  webhook: NewWebhook,
  claim?: { readonly owner: number; readonly until: Date },
) => ({
  id: webhook.id,
  provider: webhook.provider,
  event_key: webhook.eventKey,
  event_type: webhook.eventType,
  method: webhook.method,
  path: webhook.path,
  public_url: webhook.publicUrl,
  headers: webhook.headers as postgres.JSONValue,
  body: webhook.body,
  received_at: webhook.receivedAt,
  ...(claim ? { claimed_by: claim.owner, next_attempt_at: claim.until } : {}),
})

const identity = (provider: string, eventKey: string) => `${provider}\u0000${eventKey}`

export interface WebhookFilter {
  readonly provider?: string | undefined
  readonly status?: WebhookStatus | undefined
  readonly type?: string | undefined
  /** The provider's event id (the idempotency key). */
  readonly key?: string | undefined
  readonly since?: Date | undefined
  readonly until?: Date | undefined
  readonly limit?: number | undefined
}

/** Where a page of webhooks ends: the next page starts after this one (newest first). */
export interface WebhookCursor {
  readonly receivedAt: Date
  readonly id: string
}

/** The named queries. SQL stays SQL. */
export function createStore(sql: Sql) {
  // By event id: the unique key is (provider, event_key), so without a provider each provider is probed in
  // turn (a loose index scan finds them), rather than reading the whole table for one event id.
  const keyClause = (key: string, provider: string | undefined) =>
    provider
      ? sql`AND event_key = ${key}`
      : sql`AND (provider, event_key) IN (
          WITH RECURSIVE providers AS (
            SELECT min(provider) AS name FROM webhooks
            UNION ALL
            SELECT (SELECT min(provider) FROM webhooks WHERE provider > providers.name) FROM providers
            WHERE providers.name IS NOT NULL
          )
          SELECT name, ${key}::text FROM providers WHERE name IS NOT NULL)`

  const filterClause = (filter: WebhookFilter) => sql`
    WHERE true
    ${filter.provider ? sql`AND provider = ${filter.provider}` : sql``}
    ${filter.status ? sql`AND status = ${filter.status}` : sql``}
    ${filter.type ? sql`AND event_type = ${filter.type}` : sql``}
    ${filter.key ? keyClause(filter.key, filter.provider) : sql``}
    ${filter.since ? sql`AND received_at >= ${filter.since}` : sql``}
    ${filter.until ? sql`AND received_at < ${filter.until}` : sql``}`

  /** The webhooks' part of the safety net's look (see reclaimAbandoned below). */
  const abandonedOf = (): AbandonedLookOf => ({
    table: 'webhooks',
    pending: sql`status IN ('pending', 'retrying')`,
    due: sql`SELECT FROM webhooks WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now()`,
  })

  return {
    sql,

    /**
     * Stores many deliveries in one statement (one commit for the group). Deliveries whose (provider, event
     * key) is already stored, in the table or earlier in the same group, are duplicates and get the first
     * delivery's id. A group whose bodies are small goes in with one INSERT ... ON CONFLICT DO NOTHING, a round
     * trip; a larger one with COPY (its bodies as their own bytes, four round trips), unless it holds a stored
     * duplicate, which COPY cannot skip. With `claim`, the new rows are claimed for that worker process;
     * without, the other processes' workers are notified at commit. `also` is written with the new ones, in
     * the same commit.
     */
    async insertWebhooks(
      webhooks: readonly NewWebhook[],
      claim?: Claim,
      also?: WrittenWith,
    ): Promise<InsertResult[]> {
      const firstInGroup = new Map<string, NewWebhook>()
      let bodyBytes = 0
      for (const webhook of webhooks) {
        const key = identity(webhook.provider, webhook.eventKey)
        if (firstInGroup.has(key)) continue
        firstInGroup.set(key, webhook)
        bodyBytes += webhook.body.length
      }
      const firsts = [...firstInGroup.values()]
      if (bodyBytes > insertMaxBodyBytes && (await copyWebhooks(sql, firsts, claim, also))) {
        return webhooks.map((webhook) => {
          const first = firstInGroup.get(identity(webhook.provider, webhook.eventKey))!
          return { id: first.id, duplicate: first !== webhook }
        })
      }
      const claimed = claim && { owner: claim.owner, until: new Date(Date.now() + claim.leaseSeconds * 1000) }
      const rows = firsts.map((webhook) => webhookRow(webhook, claimed))
      const [written] = await sql`
        WITH inserted AS (
          INSERT INTO webhooks ${sql(rows)}
          ON CONFLICT (provider, event_key) DO NOTHING
          RETURNING id
        )
        ${also ? sql`, also AS (${also.insert(sql`SELECT id FROM inserted`)})` : sql``}
        SELECT ARRAY(SELECT id FROM inserted) AS ids
          ${also ? sql`, ARRAY(SELECT id FROM also) AS also, ${also.check} AS check` : sql``}
          ${claim ? sql`` : sql`, (SELECT pg_notify('webhooks_received', ${writerName(sql)}) WHERE EXISTS (SELECT FROM inserted))`}`
      also?.committed(written?.also ?? [], written?.check)
      const insertedIds = new Set<string>(written?.ids ?? [])
      const idByIdentity = new Map<string, string>()
      const existing = rows.filter((row) => !insertedIds.has(row.id))
      if (existing.length > 0) {
        const found = await sql`
          SELECT id, provider, event_key FROM webhooks
          WHERE (provider, event_key) IN (
            SELECT * FROM unnest(${existing.map((row) => row.provider)}::text[], ${existing.map((row) => row.event_key)}::text[])
          )`
        for (const row of found) idByIdentity.set(identity(row.provider, row.event_key), row.id)
      }
      return webhooks.map((webhook) => {
        const first = firstInGroup.get(identity(webhook.provider, webhook.eventKey))!
        if (first === webhook && insertedIds.has(webhook.id)) return { id: webhook.id, duplicate: false }
        const id = insertedIds.has(first.id)
          ? first.id
          : idByIdentity.get(identity(webhook.provider, webhook.eventKey))
        if (!id)
          throw new Error(`store: ${webhook.provider} ${webhook.eventKey} conflicted but was not found`)
        return { id, duplicate: true }
      })
    },

    /**
     * Claims due webhooks for `owner` (see ClaimOwner) by pushing their next attempt past a lease. A worker
     * that dies mid-publish leaves them to be taken back by reclaimAbandoned, or claimed again when the lease
     * runs out. SKIP LOCKED lets many workers, in many processes, claim side by side without waiting on each
     * other.
     *
     * A claim holds at most `maxBytes` of bodies (always at least one webhook): a backlog of 25 MB GitHub
     * deliveries must not be read 64 at a time into one process.
     */
    async claimDue(
      owner: number,
      limit: number,
      leaseSeconds: number,
      options: { readonly maxBytes?: number; readonly unroutedOnly?: boolean } = {},
    ): Promise<StoredWebhook[]> {
      const maxBytes = options.maxBytes ?? claimMaxBytes
      const rows = await sql`
        UPDATE webhooks SET next_attempt_at = now() + make_interval(secs => ${leaseSeconds}), claimed_by = ${owner}
        WHERE id IN (
          SELECT id FROM (
            SELECT id, sum(octet_length(body)) OVER (ORDER BY next_attempt_at, id) - octet_length(body) AS before
            FROM (
              SELECT id, next_attempt_at, body FROM webhooks
              WHERE status IN ('pending', 'retrying') AND next_attempt_at <= now()
              ${options.unroutedOnly ? sql`AND routed_at IS NULL` : sql``}
              ORDER BY next_attempt_at
              LIMIT ${limit}
              FOR UPDATE SKIP LOCKED
            ) AS due
          ) AS sized
          WHERE before < ${maxBytes}
        )
        RETURNING ${sql.unsafe(columns)}`
      return rows.map(toWebhook)
    },

    /**
     * The UPDATE recording webhooks published, with the ids of the events each one produced: for the statement
     * that also writes their deliveries to destinations (the outbox, destinations/fanout.ts), which applies it
     * only under its condition.
     */
    publishedUpdate(
      published: readonly { readonly id: string; readonly eventIds: readonly string[] }[],
    ): ConditionalUpdate {
      const records = published.map((p) => ({ id: p.id, event_ids: p.eventIds }))
      return (condition) => sql`
        UPDATE webhooks AS w
        SET status = 'published', published_at = now(), attempts = w.attempts + 1, last_error = NULL,
            published_event_ids = ARRAY(SELECT jsonb_array_elements_text(p.event_ids)),
            routed_at = coalesce(w.routed_at, now()), claimed_by = NULL
        FROM jsonb_to_recordset(${sql.json(records as postgres.JSONValue)}) AS p(id uuid, event_ids jsonb)
        WHERE w.id = p.id AND ${condition}
        RETURNING w.id`
    },

    /**
     * The UPDATE giving webhooks back, due at once, once their events were written to destinations without
     * being published (the broker is away): HTTP delivery does not wait on RabbitMQ.
     */
    routedUpdate(ids: readonly string[]): ConditionalUpdate {
      return (condition) => sql`
        UPDATE webhooks SET routed_at = coalesce(routed_at, now()), next_attempt_at = now(), claimed_by = NULL
        WHERE id = ANY(${ids as string[]}::uuid[]) AND ${condition}
        RETURNING id`
    },

    /** Records a failed attempt: retried after `retryInSeconds`, or dead when there is none left. */
    async markFailed(id: string, error: string, retryInSeconds: number | undefined): Promise<void> {
      await sql`
        UPDATE webhooks
        SET attempts = attempts + 1, last_error = ${error},
            status = ${retryInSeconds === undefined ? 'dead' : 'retrying'},
            next_attempt_at = now() + make_interval(secs => ${retryInSeconds ?? 0}), claimed_by = NULL
        WHERE id = ${id}`
    },

    /**
     * The safety net's look (see reclaimAbandoned in owners.ts): webhooks of workers that are gone taken back,
     * and whether any is due for a claim (a retry, one stored by another process whose notification was missed).
     */
    async reclaimAbandoned(owner: number): Promise<Abandoned> {
      return (await reclaimAbandoned(sql, owner, [abandonedOf()])).webhooks
    },

    /** reclaimAbandoned's statement, unrun (to EXPLAIN what the poll reads). */
    abandonedLook: (owner: number) => abandonedLooks(sql, owner, [abandonedOf()]),

    /** The webhooks' part of the look, for a statement that looks at several tables (see lookTogether). */
    abandonedOf,

    /** Gives back, due at once, webhooks `owner` claimed and will not publish (it is stopping). */
    async release(owner: number, ids: readonly string[]): Promise<void> {
      await sql`
        UPDATE webhooks SET next_attempt_at = now(), claimed_by = NULL
        WHERE id = ANY(${ids as string[]}::uuid[]) AND claimed_by = ${owner} AND status IN ('pending', 'retrying')`
    },

    async get(id: string): Promise<StoredWebhook | undefined> {
      const [row] = await sql`SELECT ${sql.unsafe(columns)} FROM webhooks WHERE id = ${id}`
      return row ? toWebhook(row) : undefined
    },

    /**
     * Webhooks matching `filter`, newest first; after `cursor` when given. Paging by keyset, not OFFSET, so a
     * page deep in a table of millions costs what the first one does.
     */
    async list(filter: WebhookFilter, cursor?: WebhookCursor): Promise<StoredWebhook[]> {
      const rows = await sql`
        SELECT ${sql.unsafe(columns)} FROM webhooks ${filterClause(filter)}
        ${cursor ? sql`AND (received_at, id) < (${cursor.receivedAt}, ${cursor.id})` : sql``}
        ORDER BY received_at DESC, id DESC LIMIT ${filter.limit ?? 100}`
      return rows.map(toWebhook)
    },

    /** Webhooks received per provider and minute over the last hour, for the dashboard's chart. */
    async ratesLastHour(): Promise<{ provider: string; minute: Date; count: number }[]> {
      const rows = await sql`
        SELECT provider, date_trunc('minute', received_at) AS minute, count(*)::int AS count
        FROM webhooks WHERE received_at > now() - interval '1 hour'
        GROUP BY 1, 2 ORDER BY 2`
      return rows.map((row) => ({ provider: row.provider, minute: row.minute, count: row.count }))
    },

    /** Queues webhooks to be published again (same event ids), with a fresh set of attempts. */
    async replay(filter: WebhookFilter & { readonly id?: string }): Promise<number> {
      const rows = await sql`
        UPDATE webhooks SET status = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL,
          routed_at = NULL, claimed_by = NULL
        ${filter.id ? sql`WHERE id = ${filter.id}` : filterClause(filter)}
        RETURNING id`
      if (rows.length > 0) await sql`SELECT pg_notify('webhooks_received', '')`
      return rows.length
    },

    /**
     * Webhooks not yet published, by status. Published rows are the bulk of the table and are not counted,
     * so a scrape reads the small indexed part only.
     */
    async countUnpublished(): Promise<Record<'pending' | 'retrying' | 'dead', number>> {
      const rows = await sql`
        SELECT status, count(*)::int AS count FROM webhooks
        WHERE status IN ('pending', 'retrying', 'dead') GROUP BY status`
      const counts = { pending: 0, retrying: 0, dead: 0 }
      for (const row of rows) counts[row.status as keyof typeof counts] = row.count
      return counts
    },

    /** Seconds since the oldest webhook not yet published was received; 0 when there is none. */
    async oldestUnpublishedAgeSeconds(): Promise<number> {
      // One index probe per status (webhooks_status_received_at), whatever the table's size.
      const [row] = await sql`
        SELECT coalesce(extract(epoch FROM now() - least(
          (SELECT min(received_at) FROM webhooks WHERE status = 'pending'),
          (SELECT min(received_at) FROM webhooks WHERE status = 'retrying'))), 0)::float8 AS age`
      return Number(row?.age ?? 0)
    },

    /** Calls `onReceived` whenever another process stores webhooks (or a replay is asked for). */
    async listen(onReceived: () => void): Promise<{ unlisten: () => Promise<void> }> {
      return sql.listen('webhooks_received', (writer) => {
        if (writer !== writerName(sql)) onReceived()
      })
    },

    /** Whether any destination exists: while the broker is away, routing to destinations is all there is to do. */
    async hasDestinations(): Promise<boolean> {
      const [row] = await sql`SELECT EXISTS (SELECT 1 FROM destinations) AS any`
      return row?.any === true
    },

    async ping(): Promise<void> {
      await sql`SELECT 1`
    },
  }
}

export type Store = ReturnType<typeof createStore>
