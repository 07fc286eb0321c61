import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connectDatabase, type Sql } from '../../src/db/client.ts'
import { freePort } from '../support/gateway-process.ts'
import { createTestDatabase } from '../support/services.ts'

// postgres.js 3.4.9 wrote to a connection after Postgres had closed it (a restart, a failover, a terminated
// session): the process died of an uncaught TypeError, or the connection never worked again. These pin the
// patch in patches/ (applied by npm ci) with the driver as the gateway sets it up.
let database: Awaited<ReturnType<typeof createTestDatabase>>
let admin: Sql

beforeAll(async () => {
  database = await createTestDatabase()
  admin = connectDatabase(database.url, 1)
})
afterAll(async () => {
  await admin?.end({ timeout: 1 })
  await database?.drop()
})

/** Terminates the sessions of `sql`'s pool, as a restart or `pg_terminate_backend` would. */
async function terminate(sql: Sql): Promise<void> {
  const name = String(sql.options.connection.application_name)
  await admin`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${name}`
  await sleep(100)
}

const within = <T>(work: Promise<T>, ms = 5000) =>
  Promise.race([work, sleep(ms).then(() => Promise.reject(new Error(`no answer within ${ms} ms`)))])

describe('postgres.js after Postgres closed a connection', () => {
  it('rejects the queries of a reserved connection whose session ended, and the pool works again after release', async () => {
    const sql = connectDatabase(database.url, 1)
    try {
      const reserved = await sql.reserve()
      await reserved`SELECT 1`
      await terminate(sql)
      await expect(within(reserved`SELECT 1`)).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' })
      await expect(within(reserved`SELECT 2`)).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' })
      reserved.release()
      const [row] = await within(sql`SELECT 3 AS n`)
      expect(row!.n).toBe(3)
    } finally {
      await sql.end({ timeout: 1 })
    }
  })

  it('rejects a transaction whose session ended mid-way, and the pool works again', async () => {
    const sql = connectDatabase(database.url, 1)
    try {
      const interrupted = sql.begin(async (tx) => {
        await tx`SELECT 1`
        await terminate(sql)
        await tx`SELECT 2`
      })
      await expect(within(interrupted)).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' })
      // The pool answers again. Not checked: which rows. About one run in ten, the first answer after such a
      // kill holds another query's rows (a defect of postgres.js 3.4.9 this patch does not fix; see patches/).
      await expect(within(sql`SELECT 3 AS n`)).resolves.toBeDefined()
    } finally {
      await sql.end({ timeout: 1 })
    }
  })

  it('works again after many sessions ended while small writes were queued', async () => {
    const sql = connectDatabase(database.url, 2)
    try {
      for (let round = 0; round < 5; round++) {
        const queries = Array.from({ length: 20 }, (_, n) =>
          sql`SELECT ${n}::int AS n, pg_sleep(0.01)`.catch(() => {}),
        )
        await sleep(5)
        await terminate(sql)
        await Promise.all(queries)
      }
      const [row] = await within(sql`SELECT 42 AS n`)
      expect(row!.n).toBe(42)
    } finally {
      await sql.end({ timeout: 1 })
    }
  })

  it("reconnects once Postgres is back after refusing connections (a restart), with the gateway's socket", async () => {
    const port = await freePort()
    const url = new URL(database.url)
    url.host = `127.0.0.1:${port}`
    const sql = connectDatabase(url.toString(), 2)
    let server: Server | undefined
    const sockets = new Set<Socket>()
    try {
      // Nothing listens: every query is refused, and none waits forever.
      for (let n = 0; n < 4; n++)
        await expect(within(sql`SELECT ${n}::int AS n`, 10_000)).rejects.toMatchObject({
          code: 'ECONNREFUSED',
        })
      // Postgres is back on that port.
      server = createServer((client) => {
        const upstream = connect(5432, '127.0.0.1')
        sockets.add(client).add(upstream)
        client.pipe(upstream).pipe(client)
        client.on('error', () => upstream.destroy())
        upstream.on('error', () => client.destroy())
      })
      await new Promise<void>((resolve) => server!.listen(port, '127.0.0.1', resolve))
      const [row] = await within(sql`SELECT 7 AS n`, 20_000)
      expect(row!.n).toBe(7)
    } finally {
      await sql.end({ timeout: 1 })
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined))
    }
  })

  it('survives a connection reset while it reads the array types, and answers once through', async () => {
    // Forwards to Postgres, but resets the first connection as soon as it asks for the array types.
    let resets = 0
    const sockets = new Set<Socket>()
    const server = createServer((client) => {
      const upstream = connect(5432, '127.0.0.1')
      sockets.add(client).add(upstream)
      client.on('data', (chunk) => {
        if (resets === 0 && chunk.includes('typarray')) {
          resets += 1
          client.resetAndDestroy()
          upstream.destroy()
          return
        }
        upstream.write(chunk)
      })
      upstream.pipe(client)
      client.on('error', () => upstream.destroy())
      upstream.on('error', () => client.destroy())
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = new URL(database.url)
    url.host = `127.0.0.1:${(server.address() as AddressInfo).port}`
    const sql = connectDatabase(url.toString(), 1)
    try {
      // The query that opened the connection fails with it; nothing is left unhandled (that would be a
      // crash under Node's default), and the next session reads the types again.
      await expect(within(sql`SELECT 1`, 20_000)).rejects.toMatchObject({ code: 'ECONNRESET' })
      expect(resets).toBe(1)
      const [row] = await within(sql`SELECT ${['a', 'b']}::text[] AS list`, 20_000)
      expect(row!.list).toEqual(['a', 'b'])
    } finally {
      await sql.end({ timeout: 1 })
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
