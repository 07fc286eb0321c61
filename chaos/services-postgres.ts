import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ChaosServices } from './services.ts'
import {
  isAlive,
  isRoot,
  run,
  ServiceError,
  signalGroup,
  sleepSync,
  timed,
  type Reaper,
  type Step,
} from './services-process.ts'

export interface PostgresServer {
  readonly url: string
  readonly controls: ChaosServices['postgres']
  heal(): Promise<void>
  close(): Promise<void>
}

export interface PostgresOptions {
  readonly directory: string
  readonly port: number
  readonly reaper: Reaper
  readonly log: (line: string) => void
}

const psqlFlags = ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1']

const initdbFlags = [
  ...['-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-locale', '--no-instructions'],
  // Skips flushing the new cluster's files to disk once; the server itself runs with fsync on.
  '--no-sync',
]

/** The newest server installed the Debian way, /usr/lib/postgresql/<version>/bin. */
function binDir(): string {
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root) ? readdirSync(root).filter((name) => /^\d+$/.test(name)) : []
  const newest = versions.map(Number).sort((a, b) => b - a)[0]
  if (newest === undefined) throw new ServiceError(`postgres: no server found under ${root}/<version>/bin`)
  return join(root, String(newest), 'bin')
}

/**
 * A private cluster: initdb into the temp dir, trust auth, 127.0.0.1:<port> plus a Unix socket beside the
 * data, and a database `chaos`. The server runs as the `postgres` OS user when we are root (it refuses root).
 */
export async function startPostgres({
  directory,
  port,
  reaper,
  log,
}: PostgresOptions): Promise<PostgresServer> {
  const bin = binDir()
  const home = join(directory, 'postgres')
  const data = join(home, 'data')
  const logFile = join(home, 'server.log')
  const step = (operation: string, timeoutMs = 30_000): Step => ({
    service: 'postgres',
    operation,
    timeoutMs,
    logFiles: [logFile],
  })
  const asServerUser = (step: Step, command: string, args: readonly string[]) =>
    isRoot
      ? run(step, 'runuser', ['-u', 'postgres', '--', join(bin, command), ...args], { cwd: home })
      : run(step, join(bin, command), args, { cwd: home })
  const pgCtl = (step: Step, ...args: string[]) => asServerUser(step, 'pg_ctl', ['-D', data, ...args])
  const client = (step: Step, command: string, ...args: string[]) =>
    run(step, join(bin, command), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', ...args], {
      env: { ...process.env, PGCONNECT_TIMEOUT: '5' },
    })
  const psql = (step: Step, database: string, ...statements: string[]) =>
    client(step, 'psql', ...psqlFlags, '-d', database, ...statements.flatMap((sql) => ['-c', sql]))

  /** The postmaster's pid while one runs on our data directory. */
  const postmaster = (): number | undefined => {
    const pidFile = join(data, 'postmaster.pid')
    const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').split('\n')[0]) : NaN
    return pid > 0 && isAlive(pid) ? pid : undefined
  }

  /** SIGQUIT is Postgres's own immediate shutdown, which also frees its shared memory; SIGKILL would leak it. */
  const killNow = () => {
    const pid = postmaster()
    if (pid === undefined) return
    signalGroup(pid, 'SIGQUIT')
    for (let waited = 0; waited < 3000 && isAlive(pid); waited += 20) sleepSync(20)
    signalGroup(pid, 'SIGKILL')
  }
  reaper.add(killNow)

  const stopImmediate = async () => {
    await pgCtl(step('stop -m immediate'), 'stop', '-m', 'immediate', '-w', '-t', '25')
  }
  const start = async () => {
    await pgCtl(step('start', 60_000), 'start', '-w', '-t', '55', '-l', logFile)
  }

  mkdirSync(home, { mode: 0o700 })
  if (isRoot) await run(step('chown'), 'chown', ['postgres:', home])
  try {
    const initdb = await timed(() =>
      asServerUser(step('initdb', 60_000), 'initdb', ['-D', data, ...initdbFlags]),
    )
    appendFileSync(
      join(data, 'postgresql.conf'),
      [
        `listen_addresses = '127.0.0.1'`,
        `port = ${port}`,
        `unix_socket_directories = '${home}'`,
        `shared_buffers = '64MB'`,
        `max_connections = 200`,
        // We test durability: a commit acknowledged before a crash must be there after it.
        `fsync = on`,
        `synchronous_commit = on`,
        `full_page_writes = on`,
        '',
      ].join('\n'),
    )
    const started = await timed(start)
    await psql(step('create database'), 'postgres', 'create database chaos')
    log(`postgres: ready on 127.0.0.1:${port} (initdb ${initdb.ms} ms, start ${started.ms} ms)`)
  } catch (error) {
    killNow()
    throw error
  }

  return {
    url: `postgres://postgres@127.0.0.1:${port}/chaos`,
    controls: {
      stopImmediate,
      start,
      async terminateSessions() {
        const terminated = await psql(
          step('terminate sessions'),
          'postgres',
          `select count(*) filter (where pg_terminate_backend(pid)) from pg_stat_activity
           where datname = 'chaos' and pid <> pg_backend_pid()`,
        )
        return Number(terminated.trim())
      },
      async dump(file) {
        await client(step('pg_dump', 120_000), 'pg_dump', '-Fc', '-d', 'chaos', '-f', file)
      },
      async restore(file) {
        // Restored beside the live database and swapped in by name, so no client ever sees it half restored.
        await psql(
          step('restore: create chaos_restoring'),
          'postgres',
          'drop database if exists chaos_restoring',
          'create database chaos_restoring',
        )
        await client(
          step('pg_restore', 120_000),
          'pg_restore',
          '--exit-on-error',
          '-d',
          'chaos_restoring',
          file,
        )
        await psql(
          step('restore: swap chaos_restoring in'),
          'postgres',
          'drop database chaos with (force)',
          'alter database chaos_restoring rename to chaos',
        )
      },
    },
    async heal() {
      if (postmaster() === undefined) await start()
    },
    async close() {
      if (postmaster() !== undefined) await stopImmediate()
    },
  }
}
