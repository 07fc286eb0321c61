import { readdir, readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import postgres from 'postgres'
import type { Sql } from './client.ts'

const migrationsDir = fileURLToPath(new URL('../../migrations/', import.meta.url))
// Any constant shared by every gateway process; two processes starting together migrate one after the other.
const lockKey = 7_360_221_451

export interface Migration {
  readonly version: string
  readonly sql: string
}

export async function readMigrations(dir = migrationsDir): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((file) => /^\d{4}_.+\.sql$/.test(file)).sort()
  return Promise.all(
    files.map(async (file) => ({
      version: file.replace(/\.sql$/, ''),
      sql: await readFile(dir + file, 'utf8'),
    })),
  )
}

/** Applies pending migrations in order, each in its own transaction, under a session advisory lock. */
export async function migrate(sql: Sql, migrations?: readonly Migration[]): Promise<string[]> {
  const all = migrations ?? (await readMigrations())
  const connection = await sql.reserve()
  try {
    // A migration may rewrite a large table, and waits for another process's to finish: no time limit here.
    await connection`SET statement_timeout = 0`
    await connection`SELECT pg_advisory_lock(${lockKey})`
    await connection`
      CREATE TABLE IF NOT EXISTS schema_migrations (
        version    text PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`
    const applied = new Set(
      (await connection`SELECT version FROM schema_migrations`).map((row) => row.version),
    )
    const done: string[] = []
    for (const migration of all) {
      if (applied.has(migration.version)) continue
      await connection.unsafe('BEGIN')
      try {
        await connection.unsafe(migration.sql)
        await connection`INSERT INTO schema_migrations (version) VALUES (${migration.version})`
        await connection.unsafe('COMMIT')
      } catch (error) {
        await connection.unsafe('ROLLBACK')
        throw new Error(`migration ${migration.version} failed: ${(error as Error).message}`, {
          cause: error,
        })
      }
      done.push(migration.version)
    }
    return done
  } finally {
    await connection`SELECT pg_advisory_unlock(${lockKey})`.catch(() => {})
    await connection`RESET statement_timeout`.catch(() => {})
    connection.release()
  }
}

/** Creates the database named by the URL when it does not exist yet, so a first `npm start` just works. */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  const url = new URL(databaseUrl)
  const name = decodeURIComponent(url.pathname.replace(/^\//, ''))
  if (!name) return false
  const probe = postgres(databaseUrl, { max: 1, onnotice: () => {}, connect_timeout: 10 })
  try {
    await probe`SELECT 1`
    return false
  } catch (error) {
    if ((error as { code?: string }).code !== '3D000') throw error
  } finally {
    await probe.end({ timeout: 1 })
  }
  url.pathname = '/postgres'
  const admin = postgres(url.toString(), { max: 1, onnotice: () => {} })
  try {
    await admin`CREATE DATABASE ${admin(name)}`
    return true
  } catch (error) {
    if ((error as { code?: string }).code === '42P04') return false // created meanwhile by another process
    throw error
  } finally {
    await admin.end({ timeout: 1 })
  }
}

/** `npm run migrate` */
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { loadConfig } = await import('../config.ts')
  const { connectDatabase } = await import('./client.ts')
  const { startEmbeddedPostgres } = await import('./embedded.ts')
  const { createLogger } = await import('../ops/log.ts')
  const config = loadConfig()
  // DATABASE_URL unset: the embedded PostgreSQL's data, as npm start would use it.
  const embedded = config.databaseUrl
    ? undefined
    : await startEmbeddedPostgres({ dataDir: config.embeddedDataDir, log: createLogger(config.logLevel) })
  const databaseUrl = config.databaseUrl ?? embedded?.url ?? ''
  try {
    await ensureDatabase(databaseUrl)
    const sql = connectDatabase(databaseUrl, 2)
    const done = await migrate(sql)
    console.log(done.length ? `applied ${done.join(', ')}` : 'database is up to date')
    await sql.end({ timeout: 5 })
  } finally {
    await embedded?.stop()
  }
}
