import { createHash, randomUUID } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ClaimOwner, reclaimAbandoned } from '../../src/db/owners.ts'
import { silentLogger } from '../../src/ops/log.ts'
import { migrate } from '../../src/db/migrate.ts'
import { copyChunks } from '../../src/db/copy.ts'
import { createStore, type NewWebhook } from '../../src/db/webhooks.ts'
import { createDestinationStore } from '../../src/destinations/store.ts'
import { connectDatabase, type Sql } from '../../src/db/client.ts'
import { createTestDatabase, waitFor } from '../support/services.ts'
import { newWebhook as webhook } from '../support/stored.ts'

let database: Awaited<ReturnType<typeof createTestDatabase>>
let sql: Sql
let store: ReturnType<typeof createStore>

beforeAll(async () => {
  database = await createTestDatabase()
  sql = connectDatabase(database.url, 2)
  await migrate(sql)
  store = createStore(sql)
})
afterAll(async () => {
  await sql?.end()
  await database?.drop()
})

// Bodies that must reach Postgres and come back byte for byte.
const bodies: Record<string, Buffer> = {
  'JSON with escaped quotes and newlines': Buffer.from(
    '{"message":"a \\"quoted\\" line\\nnext","path":"C:\\\\dir"}',
  ),
  'a NUL byte in valid UTF-8': Buffer.from('before\u0000after'),
  'text that starts like the hex form': Buffer.from('\\x41424344'),
  'a backslash followed by three digits': Buffer.from('\\000\\123\\\\'),
  'multi-byte UTF-8': Buffer.from('{"name":"Zoë 東京 🚀"}'),
  'invalid UTF-8': Buffer.from([0xff, 0xfe, 0x00, 0x5c, 0x78, 0x80, 0xc3]),
  empty: Buffer.alloc(0),
  'every byte value': Buffer.from(Array.from({ length: 256 }, (_, byte) => byte)),
}

/** Stores `group` claimed by `owner` for a minute: every row new, every body exact, every row claimed. */
async function storesClaimed(group: readonly NewWebhook[], owner: number): Promise<void> {
  const results = await store.insertWebhooks(group, { owner, leaseSeconds: 60 })
  expect(results.every((result) => !result.duplicate)).toBe(true)
  for (const stored of group) expect((await store.get(stored.id))!.body.equals(stored.body)).toBe(true)
  const [claimed] = await sql`
    SELECT count(*)::int AS count FROM webhooks WHERE id = ANY(${group.map((stored) => stored.id)}::uuid[])
      AND claimed_by = ${owner} AND next_attempt_at > now() + interval '50 seconds'`
  expect(claimed!.count).toBe(group.length)
}

describe('store', () => {
  for (const [name, body] of Object.entries(bodies)) {
    it(`stores ${name} byte for byte`, async () => {
      const stored = webhook(body)
      const [result] = await store.insertWebhooks([stored])
      expect(result).toEqual({ id: stored.id, duplicate: false })
      const read = await store.get(stored.id)
      expect(read!.body.equals(body)).toBe(true)
      const [row] =
        await sql`SELECT length(body) AS length, sha256(body) AS hash FROM webhooks WHERE id = ${stored.id}`
      expect(row!.length).toBe(body.length)
      expect(Buffer.from(row!.hash).equals(createHash('sha256').update(body).digest())).toBe(true)
    })
  }

  it('stores a group of mixed bodies in one statement, each exactly', async () => {
    const group = Object.values(bodies).map(webhook)
    const results = await store.insertWebhooks(group)
    expect(results.every((result) => !result.duplicate)).toBe(true)
    for (const stored of group) expect((await store.get(stored.id))!.body.equals(stored.body)).toBe(true)
  })

  it('stores a group of a couple of hundred kilobytes in one INSERT, claimed, each body exactly', async () => {
    const sized = (n: number) => webhook(Buffer.alloc(8_000 + n, String.fromCharCode(97 + (n % 26))))
    const group = [...Array.from({ length: 25 }, (_, n) => sized(n)), ...Object.values(bodies).map(webhook)]
    expect(group.reduce((sum, stored) => sum + stored.body.length, 0)).toBeLessThan(256 * 1024)
    await storesClaimed(group, 8)
  })

  it('stores a group of over a megabyte through COPY, written in several chunks, each body exactly', async () => {
    const large = (fill: string) => webhook(Buffer.alloc(700_000, fill))
    const group = [large('a'), ...Object.values(bodies).map(webhook), large('b'), webhook(Buffer.from('{}'))]
    expect(copyChunks(group).length).toBeGreaterThan(1)
    await storesClaimed(group, 7)
  })

  it('stores mixed bodies exactly through the INSERT that a group holding a stored duplicate falls back to', async () => {
    const stored = webhook(Buffer.from('{"first":true}'))
    await store.insertWebhooks([stored])
    const group = [
      ...Object.values(bodies).map(webhook),
      { ...webhook(Buffer.from('{}')), eventKey: stored.eventKey },
    ]
    const results = await store.insertWebhooks(group)
    expect(results.at(-1)).toEqual({ id: stored.id, duplicate: true })
    for (const fresh of group.slice(0, -1))
      expect((await store.get(fresh.id))!.body.equals(fresh.body)).toBe(true)
  })

  it('compresses large bodies with lz4 (this server has it)', async () => {
    const large = webhook(Buffer.from(JSON.stringify({ filler: 'webhook '.repeat(2000) })))
    await store.insertWebhooks([large])
    const [row] = await sql`SELECT pg_column_compression(body) AS method FROM webhooks WHERE id = ${large.id}`
    expect(row!.method).toBe('lz4')
  })
})

describe('store: duplicates', () => {
  it('answers a group holding an already stored event with the first id, and stores the rest', async () => {
    const stored = webhook(Buffer.from('{"first":true}'))
    await store.insertWebhooks([stored])
    const again = { ...webhook(Buffer.from('{"again":true}')), eventKey: stored.eventKey }
    const fresh = webhook(Buffer.from('{"fresh":true}'))
    const freshAgain = { ...webhook(Buffer.from('{"fresh":"again"}')), eventKey: fresh.eventKey }
    const results = await store.insertWebhooks([fresh, again, freshAgain])
    expect(results).toEqual([
      { id: fresh.id, duplicate: false },
      { id: stored.id, duplicate: true },
      { id: fresh.id, duplicate: true },
    ])
    const rows =
      await sql`SELECT id FROM webhooks WHERE event_key IN (${stored.eventKey}, ${fresh.eventKey}) ORDER BY id`
    expect(rows.map((row) => row.id).sort()).toEqual([stored.id, fresh.id].sort())
  })

  it('stores one row when concurrent groups carry the same event, and tells the others it is a duplicate', async () => {
    const eventKey = randomUUID()
    const groups = Array.from({ length: 6 }, () => [
      { ...webhook(Buffer.from('{"same":true}')), eventKey },
      webhook(Buffer.from('{"other":true}')),
    ])
    const results = (await Promise.all(groups.map((group) => store.insertWebhooks(group)))).map(
      (result) => result[0]!,
    )
    const accepted = results.filter((result) => !result.duplicate)
    expect(accepted).toHaveLength(1)
    expect(new Set(results.map((result) => result.id))).toEqual(new Set([accepted[0]!.id]))
    const [row] = await sql`SELECT count(*)::int AS count FROM webhooks WHERE event_key = ${eventKey}`
    expect(row!.count).toBe(1)
    // Every group's other row went in, through COPY or the fallback.
    for (const group of groups) expect(await store.get(group[1]!.id)).toBeDefined()
  })
})

describe('store: claims', () => {
  it('claims at most the byte budget of bodies, and always at least one webhook', async () => {
    await sql`UPDATE webhooks SET status = 'published'`
    const large = Array.from({ length: 5 }, () => webhook(Buffer.alloc(300_000, 'a')))
    for (const stored of large) await store.insertWebhooks([stored])
    // 300 KB bodies under a 1 MB budget: the fourth starts past it.
    const first = await store.claimDue(1, 64, 60, { maxBytes: 1_000_000 })
    const ids = (webhooks: readonly { id: string }[]) => webhooks.map((webhook) => webhook.id).sort()
    expect(ids(first)).toEqual(ids(large.slice(0, 4)))
    // A body larger than the whole budget still goes, alone.
    const rest = await store.claimDue(1, 64, 60, { maxBytes: 1000 })
    expect(ids(rest)).toEqual([large[4]!.id])
    expect(await store.claimDue(1, 64, 60, { maxBytes: 1000 })).toEqual([])
  })
})

describe('store: claims of a gateway that is gone', () => {
  const pending = async () => {
    await sql`UPDATE webhooks SET status = 'published', claimed_by = NULL`
    const stored = [webhook(Buffer.from('{}')), webhook(Buffer.from('{}'))]
    await store.insertWebhooks(stored)
    return stored
  }
  const due = async () =>
    (await sql`SELECT id FROM webhooks WHERE status = 'pending' AND next_attempt_at <= now()`).length

  it('takes back the claims of an owner whose session ended, and only those', async () => {
    await pending()
    const alive = await ClaimOwner.start(database.url, silentLogger)
    const dying = await ClaimOwner.start(database.url, silentLogger)
    try {
      expect(alive.id).not.toBe(dying.id)
      expect(await store.claimDue(dying.id, 64, 60)).toHaveLength(2)
      expect(await due()).toBe(0)
      // While its owner holds its lock, a claim is left alone; an owner never takes back its own.
      expect(await store.reclaimAbandoned(alive.id)).toEqual({ reclaimed: 0, due: false })
      await dying.stop()
      expect((await store.reclaimAbandoned(dying.id)).reclaimed).toBe(0)
      expect((await store.reclaimAbandoned(alive.id)).reclaimed).toBe(2)
      expect(await due()).toBe(2)
      // Due now: the next look says so, and the poll wakes the worker to claim them.
      expect(await store.reclaimAbandoned(alive.id)).toEqual({ reclaimed: 0, due: true })
      const [row] = await sql`SELECT count(*)::int AS count FROM webhooks WHERE claimed_by IS NOT NULL`
      expect(row!.count).toBe(0)
    } finally {
      await alive.stop()
      await dying.stop().catch(() => {})
    }
  })

  it("looks at webhooks and deliveries in one statement, taking back both tables' claims of an owner gone", async () => {
    await pending()
    const destinations = createDestinationStore(sql)
    const alive = await ClaimOwner.start(database.url, silentLogger)
    const dying = await ClaimOwner.start(database.url, silentLogger)
    const destinationId = randomUUID()
    try {
      expect(await store.claimDue(dying.id, 64, 60)).toHaveLength(2)
      await sql`
        INSERT INTO destinations (id, url, events, timeout_ms, max_in_flight, retry_schedule_seconds)
        VALUES (${destinationId}, 'http://127.0.0.1:9/', '{payment.*}', 1000, 1, '{5}')`
      await sql`
        INSERT INTO deliveries (id, destination_id, webhook_id, event_id, event_type, payload, next_attempt_at,
                                claimed_by)
        VALUES (${randomUUID()}, ${destinationId}, ${randomUUID()}, ${randomUUID()}, 'payment.completed', '{}',
                now() + interval '1 minute', ${dying.id})`
      const look = () => reclaimAbandoned(sql, alive.id, [store.abandonedOf(), destinations.abandonedOf()])
      const nothing = { reclaimed: 0, due: false }
      expect(await look()).toEqual({ webhooks: nothing, deliveries: nothing })
      await dying.stop()
      expect(await look()).toEqual({
        webhooks: { reclaimed: 2, due: false },
        deliveries: { reclaimed: 1, due: false },
      })
      // The statement's own updates are not in its snapshot: the next look finds both tables due.
      expect(await look()).toEqual({
        webhooks: { reclaimed: 0, due: true },
        deliveries: { reclaimed: 0, due: true },
      })
    } finally {
      await sql`DELETE FROM deliveries WHERE destination_id = ${destinationId}`
      await sql`DELETE FROM destinations WHERE id = ${destinationId}`
      await alive.stop()
      await dying.stop().catch(() => {})
    }
  })

  it('reads no claimed row while every owner holding claims is alive', async () => {
    await pending()
    const alive = await ClaimOwner.start(database.url, silentLogger)
    try {
      await store.insertWebhooks(Array.from({ length: 200 }, () => webhook(Buffer.from('{}'))))
      const claimed = await store.claimDue(alive.id, 202, 60)
      expect(claimed).toHaveLength(202)
      // Half published: their old versions stay in the indexes until a vacuum, as on a busy gateway.
      await sql`UPDATE webhooks SET status = 'published', claimed_by = NULL
        WHERE id = ANY(${claimed.slice(0, 101).map((row) => row.id)}::uuid[])`
      // Every process polls this every second: it may probe who holds claims, never read the claims.
      const [explained] = await sql`EXPLAIN (ANALYZE, FORMAT JSON) ${store.abandonedLook(alive.id + 1)}`
      const plan = (explained!['QUERY PLAN'] as [{ Plan: PlanNode }])[0].Plan
      const update = find(plan, (node) => node['Node Type'] === 'ModifyTable')
      expect(update).toBeDefined()
      const scans = all(update!, (node) => node !== update && node['Relation Name'] === 'webhooks')
      expect(scans.length).toBeGreaterThan(0)
      for (const scan of scans) expect(scan['Actual Loops']).toBe(0)
      // Once the owner is gone, the same look takes its 101 claims back.
      await alive.stop()
      expect((await store.reclaimAbandoned(alive.id + 1)).reclaimed).toBe(101)
    } finally {
      await alive.stop().catch(() => {})
    }
  })

  it('takes its lock again as soon as its session is terminated, so its claims stay its own', async () => {
    await pending()
    const other = await ClaimOwner.start(database.url, silentLogger)
    // No heartbeat within the test: only the closed connection can set the recovery off.
    const owner = await ClaimOwner.start(database.url, silentLogger, { heartbeatMs: 600_000 })
    try {
      expect(await store.claimDue(owner.id, 64, 60)).toHaveLength(2)
      const [terminated] = await sql`
        SELECT pid, pg_terminate_backend(pid) FROM pg_locks
        WHERE locktype = 'advisory' AND objsubid = 2 AND objid = ${owner.id}::bigint::oid`
      // The session's close reconnects and holds the number again, from a new session: the terminated one
      // may still show its lock for a moment (pg_terminate_backend only signals it).
      await waitFor(async () => {
        const [row] = await sql`
          SELECT count(*)::int AS count FROM pg_locks
          WHERE locktype = 'advisory' AND objsubid = 2 AND objid = ${owner.id}::bigint::oid AND granted
            AND pid <> ${terminated!.pid}`
        return row!.count === 1
      }, 5000)
      expect((await store.reclaimAbandoned(other.id)).reclaimed).toBe(0)
      expect(await due()).toBe(0)
    } finally {
      await owner.stop()
      await other.stop()
    }
  })

  it('runs no statement on the session that holds its lock between heartbeats', async () => {
    const owner = await ClaimOwner.start(database.url, silentLogger)
    try {
      const lastStatement = async () => {
        const [row] = await sql`
          SELECT a.state_change FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.objid = ${owner.id}::bigint::oid`
        return row!.state_change as Date
      }
      const before = await lastStatement()
      // A check every second was a third of an idle gateway's statements.
      await new Promise((resolve) => setTimeout(resolve, 1500))
      expect(await lastStatement()).toEqual(before)
    } finally {
      await owner.stop()
    }
  })

  it('marks a published webhook as claimed by nobody', async () => {
    const [first] = await pending()
    const owner = await ClaimOwner.start(database.url, silentLogger)
    try {
      await store.claimDue(owner.id, 64, 60)
      await store.publishedUpdate([{ id: first!.id, eventIds: [] }])(sql`true`)
      await store.markFailed((await pending())[0]!.id, 'no', 5)
      const rows = await sql`SELECT id FROM webhooks WHERE claimed_by IS NOT NULL`
      expect(rows.map((row) => row.id)).not.toContain(first!.id)
    } finally {
      await owner.stop()
    }
  })
})

interface PlanNode {
  readonly 'Node Type': string
  readonly 'Relation Name'?: string
  readonly 'Actual Loops': number
  readonly Plans?: readonly PlanNode[]
}

const all = (node: PlanNode, match: (node: PlanNode) => boolean): PlanNode[] => [
  ...(match(node) ? [node] : []),
  ...(node.Plans ?? []).flatMap((child) => all(child, match)),
]
const find = (node: PlanNode, match: (node: PlanNode) => boolean) => all(node, match)[0]
