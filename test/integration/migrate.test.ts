import postgres from 'postgres'
import { afterAll, describe, expect, it } from 'vitest'
import { ensureDatabase, migrate, readMigrations } from '../../src/db/migrate.ts'
import { connectDatabase } from '../../src/db/client.ts'
import { createTestDatabase, services, uniqueName } from '../support/services.ts'

const cleanups: (() => Promise<void>)[] = []
afterAll(async () => {
  for (const cleanup of cleanups) await cleanup()
})

describe('migrate', () => {
  it('applies every numbered migration once, even when several processes start together', async () => {
    const db = await createTestDatabase()
    cleanups.push(db.drop)
    const processes = [1, 2, 3].map(() => connectDatabase(db.url, 2))
    try {
      const results = await Promise.all(processes.map((sql) => migrate(sql)))
      const all = (await readMigrations()).map((m) => m.version)
      expect(results.flat().sort()).toEqual(all)
      expect(await migrate(processes[0]!)).toEqual([])
      const applied = await processes[0]!`SELECT version FROM schema_migrations ORDER BY version`
      expect(applied.map((row) => row.version)).toEqual(all)
    } finally {
      await Promise.all(processes.map((sql) => sql.end()))
    }
  })

  it('rolls a failing migration back and applies nothing after it', async () => {
    const db = await createTestDatabase()
    cleanups.push(db.drop)
    const sql = connectDatabase(db.url, 1)
    try {
      const broken = [
        { version: '0001_ok', sql: 'CREATE TABLE a (id int)' },
        { version: '0002_broken', sql: 'CREATE TABLE b (id int); SELECT * FROM missing_table' },
        { version: '0003_later', sql: 'CREATE TABLE c (id int)' },
      ]
      await expect(migrate(sql, broken)).rejects.toThrow(/migration 0002_broken failed/)
      const tables = await sql`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`
      expect(tables.map((row) => row.tablename)).toEqual(['a', 'schema_migrations'])
    } finally {
      await sql.end()
    }
  })
})

describe('ensureDatabase', () => {
  it('creates the configured database when it does not exist, and leaves an existing one alone', async () => {
    const name = uniqueName('gw_created')
    const url = new URL(services.postgres)
    url.pathname = `/${name}`
    cleanups.push(async () => {
      const admin = postgres(services.postgres, { max: 1, onnotice: () => {} })
      await admin`DROP DATABASE IF EXISTS ${admin(name)} WITH (FORCE)`
      await admin.end()
    })
    expect(await ensureDatabase(url.toString())).toBe(true)
    expect(await ensureDatabase(url.toString())).toBe(false)
  })
})
