import { randomInt } from 'node:crypto'
import type postgres from 'postgres'
import type { Logger } from '../ops/log.ts'
import { connectDatabase, type Fragment, type Sql } from './client.ts'

/** The first key of every claim owner's advisory lock (the second is the owner's number); any shared constant. */
const ownerLockClass = 736_022_145

/**
 * The numbers of the claim owners alive right now: those whose session holds its lock, in this database.
 * A killed process's session ends with it (Postgres sees the socket close), and its lock with the session.
 */
export const liveOwners = (sql: Sql | postgres.TransactionSql) => sql`
  SELECT objid::bigint FROM pg_locks
  WHERE locktype = 'advisory' AND classid = ${ownerLockClass}::oid AND objsubid = 2 AND granted
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`

/** The safety net's look at a table of claimed rows: what it took back, and whether any row is due. */
export interface Abandoned {
  readonly reclaimed: number
  readonly due: boolean
}

/** The tables whose claimed rows the safety net looks at. */
export type ClaimedTable = 'webhooks' | 'deliveries'

/** A table's part of the safety net's look: which of its claimed rows are pending, and a query for a due row. */
export interface AbandonedLookOf {
  readonly table: ClaimedTable
  readonly pending: Fragment
  readonly due: Fragment
}

/**
 * One statement, for each of `looks`: gives back, due at once, the rows of its table in a `pending` state
 * claimed by owners that are gone (their lock went with their session: a killed process's claims are worked
 * on again within seconds, not when their lease ends), and says whether its `due` query finds any row due for
 * a claim.
 *
 * It runs every second in every process, so it looks at who holds claims, not at the claims: one probe of
 * the `claimed_by` index per owner (a loose index scan), and the rows only when an owner is gone. Looking
 * at every leased row instead cost a bitmap scan over the lease's worth of index entries, a minute of
 * webhooks published since the last vacuum (1,455 entries and 369 pages, 4 ms, at 20 a second).
 */
export async function reclaimAbandoned(
  sql: Sql,
  owner: number,
  looks: readonly AbandonedLookOf[],
): Promise<Record<ClaimedTable, Abandoned>> {
  const [row] = await abandonedLooks(sql, owner, looks)
  const found = {} as Record<ClaimedTable, Abandoned>
  for (const { table } of looks)
    found[table] = { reclaimed: row?.[`${table}_reclaimed`] ?? 0, due: row?.[`${table}_due`] === true }
  return found
}

/** The statement reclaimAbandoned runs, for a table's store to build (and a test to EXPLAIN). */
export function abandonedLooks(sql: Sql, owner: number, looks: readonly AbandonedLookOf[]) {
  const named = (table: ClaimedTable, what: string) => sql(`${table}_${what}`)
  const list = (fragments: readonly Fragment[]) =>
    fragments.reduce((listed, fragment) => sql`${listed}, ${fragment}`)
  const parts = looks.map(
    ({ table, pending }) => sql`
    ${named(table, 'claimers')} AS (
      SELECT min(claimed_by) AS owner FROM ${sql(table)}
      UNION ALL
      SELECT (SELECT min(claimed_by) FROM ${sql(table)} WHERE claimed_by > c.owner)
      FROM ${named(table, 'claimers')} c
      WHERE c.owner IS NOT NULL
    ),
    ${named(table, 'gone')} AS (
      SELECT owner FROM ${named(table, 'claimers')}
      WHERE owner IS NOT NULL AND owner <> ${owner} AND owner NOT IN (${liveOwners(sql)})
    ),
    ${named(table, 'reclaimed')} AS (
      UPDATE ${sql(table)} SET next_attempt_at = now(), claimed_by = NULL
      -- EXISTS is planned as a filter run once: with nobody gone, no row is read.
      WHERE EXISTS (SELECT FROM ${named(table, 'gone')})
        AND claimed_by IN (SELECT owner FROM ${named(table, 'gone')})
        AND ${pending} AND next_attempt_at > now()
      RETURNING id
    )`,
  )
  const figures = looks.map(
    ({ table, due }) => sql`
    (SELECT count(*) FROM ${named(table, 'reclaimed')})::int AS ${named(table, 'reclaimed')},
    EXISTS (${due}) AS ${named(table, 'due')}`,
  )
  return sql`WITH RECURSIVE ${list(parts)} SELECT ${list(figures)}`
}

/**
 * The safety net's looks of one process's loops (the worker's at webhooks, the sender's at deliveries), run
 * together: looks asked for within `windowMs` of each other go out as one statement (`run`), and at once
 * when every table has been asked for. An idle gateway then pays one statement a poll, not one per loop.
 * Returns each table's look.
 */
export function lookTogether(
  tables: readonly ClaimedTable[],
  run: (owner: number, tables: readonly ClaimedTable[]) => Promise<Record<ClaimedTable, Abandoned>>,
  windowMs = 25,
): Record<ClaimedTable, (owner: number) => Promise<Abandoned>> {
  interface Asked {
    readonly table: ClaimedTable
    readonly resolve: (found: Abandoned) => void
    readonly reject: (error: unknown) => void
  }
  let batch: { owner: number; asked: Asked[]; timer: NodeJS.Timeout } | undefined
  const go = () => {
    if (!batch) return
    const { owner, asked, timer } = batch
    batch = undefined
    clearTimeout(timer)
    run(owner, [...new Set(asked.map((one) => one.table))]).then(
      (found) => asked.forEach((one) => one.resolve(found[one.table])),
      (error: unknown) => asked.forEach((one) => one.reject(error)),
    )
  }
  const look = (table: ClaimedTable) => (owner: number) =>
    new Promise<Abandoned>((resolve, reject) => {
      // Claims of one process carry one owner; a look for another goes on its own.
      if (batch && batch.owner !== owner) go()
      batch ??= { owner, asked: [], timer: setTimeout(go, windowMs) }
      batch.asked.push({ table, resolve, reject })
      if (tables.every((one) => batch!.asked.some((asked) => asked.table === one))) go()
    })
  return Object.fromEntries(tables.map((table) => [table, look(table)])) as Record<
    ClaimedTable,
    (owner: number) => Promise<Abandoned>
  >
}

/**
 * This process, as the holder of the rows it claims. Claims carry its number and have a lease; the number is
 * held as a session advisory lock on a connection of its own, so when the process dies (kill -9, a crash, its
 * host gone) the lock goes with its session and the other processes take its claims back within seconds
 * rather than when the lease runs out.
 *
 * The lock is taken again as soon as its session's connection closes (Postgres restarted, the session was
 * terminated), then every `retryMs` until it is held. Until it is, others may take back claims this process
 * is still working on: those are then published or sent twice, under the same ids, which consumers
 * deduplicate anyway. While it is held, a check every `heartbeatMs` is only a safety net: a session ends
 * with its connection, and the close is what sets the lock's recovery off. A check a second was a third of
 * an idle gateway's statements.
 */
export class ClaimOwner {
  private timer: NodeJS.Timeout | undefined
  private beating: Promise<void> | undefined
  private lost = false
  private stopped = false

  private constructor(
    /** The owner's number: what its claims carry in `claimed_by`. */
    readonly id: number,
    private readonly session: Sql,
    private readonly log: Logger,
    private readonly timing: { readonly heartbeatMs: number; readonly retryMs: number },
  ) {}

  /** Takes a free number and holds its lock (see the class). */
  static async start(
    databaseUrl: string,
    log: Logger,
    {
      heartbeatMs = 10_000,
      retryMs = 1000,
    }: { readonly heartbeatMs?: number; readonly retryMs?: number } = {},
  ): Promise<ClaimOwner> {
    let owner: ClaimOwner | undefined
    // One connection that never idles out or retires: its session is what holds the lock.
    const session = connectDatabase(databaseUrl, 1, { keepSession: true, onClose: () => owner?.beat() })
    try {
      for (;;) {
        const candidate = new ClaimOwner(randomInt(1, 2 ** 31 - 1), session, log, { heartbeatMs, retryMs })
        if (!(await candidate.hold())) continue
        owner = candidate
        owner.schedule(heartbeatMs)
        return owner
      }
    } catch (error) {
      await session.end({ timeout: 1 })
      throw error
    }
  }

  /** Gives the number up: its claims are free for others at once (what is still claimed was not finished). */
  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    // A check waiting on a stalled Postgres is cut short with the connection.
    await this.session.end({ timeout: 1 })
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer)
    if (this.stopped) return
    this.timer = setTimeout(() => this.beat(), ms)
    this.timer.unref()
  }

  /** Checks the lock now (taking it again on a new session); the next check follows its outcome. */
  private beat(): void {
    if (this.beating || this.stopped) return
    this.beating = this.hold()
      .then(
        (held) => {
          if (held && this.lost) this.log.info('claims: holding the owner lock again', { owner: this.id })
          if (!held) this.log.error('claims: another session holds this owner number', { owner: this.id })
          this.lost = !held
        },
        (error: unknown) => {
          if (!this.lost && !this.stopped)
            this.log.warn('claims: cannot hold the owner lock', { owner: this.id, error })
          this.lost = true
        },
      )
      .finally(() => {
        this.beating = undefined
        this.schedule(this.lost ? this.timing.retryMs : this.timing.heartbeatMs)
      })
  }

  /** Whether this session holds the lock, taking it when the session is new (a reconnect lost it). */
  private async hold(): Promise<boolean> {
    const [row] = await this.session`
      SELECT CASE
        WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = ${ownerLockClass}::oid
                     AND objid = ${this.id}::bigint::oid AND objsubid = 2 AND pid = pg_backend_pid())
        THEN true
        ELSE pg_try_advisory_lock(${ownerLockClass}, ${this.id})
      END AS held`
    return row?.held === true
  }
}
