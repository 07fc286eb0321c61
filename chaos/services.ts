import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { constants, tmpdir } from 'node:os'
import { join } from 'node:path'
import { startPostgres } from './services-postgres.ts'
import { freePorts } from '../src/free-port.ts'
import { isRoot, Reaper, timed } from './services-process.ts'
import { startRabbitmq } from './services-rabbitmq.ts'
import { startRedis } from './services-redis.ts'

/**
 * Private, throwaway Postgres, Redis and RabbitMQ for the chaos run, and the faults it injects into them.
 * They live in a temp dir on free ports, so breaking them never touches the machine's shared services.
 */
export interface ChaosServices {
  readonly databaseUrl: string // postgres://postgres@127.0.0.1:<port>/chaos  (database `chaos` created)
  readonly redisUrl: string // redis://127.0.0.1:<port>
  readonly amqpUrl: string // amqp://guest:guest@127.0.0.1:<port>
  /** The temp dir holding every service's data and logs (server.log in each service's folder). */
  readonly directory: string
  /** How long each service took to come up. */
  readonly startupMs: { readonly postgres: number; readonly redis: number; readonly rabbitmq: number }
  readonly postgres: {
    stopImmediate(): Promise<void> // pg_ctl stop -m immediate; resolves when it is down
    start(): Promise<void> // resolves when it accepts connections again
    terminateSessions(): Promise<number> // pg_terminate_backend of every other session on `chaos`; how many
    dump(file: string): Promise<void> // pg_dump -Fc of `chaos`
    restore(file: string): Promise<void> // terminate sessions, drop `chaos`, recreate, pg_restore the file
  }
  readonly redis: {
    shutdown(): Promise<void> // SHUTDOWN NOSAVE; resolves when the process is gone
    start(): Promise<void> // starts again, empty, same port
    pause(ms: number): Promise<void> // CLIENT PAUSE <ms> ALL; resolves right after the command
  }
  readonly rabbitmq: {
    stopApp(): Promise<void> // rabbitmqctl -n <node> stop_app
    startApp(): Promise<void> // start_app, resolves when it accepts AMQP again (await_startup)
    closeAllConnections(): Promise<void> // close_all_connections "chaos"
    memoryAlarm(on: boolean): Promise<void> // on: set_vm_memory_high_watermark tiny so publishers get blocked; off: back to the default 0.4
  }
  /** Everything up, unpaused, unalarmed: called after each fault and when a run fails. Idempotent. */
  heal(): Promise<void>
  /** Stops all three and removes their directories. Safe to call twice. */
  close(): Promise<void>
  /** The synchronous last resort, for the process 'exit' event: SIGKILLs every process and removes the dir. */
  killNow(): void
}

type Log = (line: string) => void

/** Waits for every promise, then throws the first failure: nothing is left running behind an early throw. */
async function settleAll(work: readonly Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(work)).find((result) => result.status === 'rejected')
  if (failed) throw failed.reason
}

/**
 * Until startServices returns, nobody holds the services to close them: a signal or exit meanwhile must not
 * leave the detached servers running. Returns the function that takes the guard down again.
 */
function guardStartup(killNow: () => void): () => void {
  const onSignal = (signal: NodeJS.Signals) => {
    killNow()
    process.exit(128 + constants.signals[signal])
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  process.once('exit', killNow)
  return () => {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    process.off('exit', killNow)
  }
}

/** Starts all three at once on free ports; throws the first failure only once none is still starting. */
async function startAll(directory: string, reaper: Reaper, log: Log) {
  const ports = await freePorts(['postgres', 'redis', 'amqp', 'distribution', 'epmd'])
  const starting = [
    timed(() => startPostgres({ directory, port: ports.postgres, reaper, log })),
    timed(() => startRedis({ directory, port: ports.redis, reaper, log })),
    timed(() =>
      startRabbitmq({
        directory,
        ports: { amqp: ports.amqp, distribution: ports.distribution, epmd: ports.epmd },
        reaper,
        log,
      }),
    ),
  ] as const
  await settleAll(starting)
  return Promise.all(starting)
}

export async function startServices(options: { readonly log?: Log } = {}): Promise<ChaosServices> {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`))
  const directory = mkdtempSync(join(tmpdir(), 'webhook-gateway-chaos-'))
  // When we are root, Postgres runs as the postgres user and must get through to its own folder.
  if (isRoot) chmodSync(directory, 0o711)
  const reaper = new Reaper()
  const killNow = () => {
    reaper.reap()
    rmSync(directory, { recursive: true, force: true })
  }
  const unguard = guardStartup(killNow)
  const [postgres, redis, rabbitmq] = await startAll(directory, reaper, log)
    .catch((error: unknown) => {
      killNow()
      throw error
    })
    .finally(unguard)

  let closing: Promise<void> | undefined
  const closeAll = async () => {
    const closed = await Promise.allSettled([
      postgres.result.close(),
      redis.result.close(),
      rabbitmq.result.close(),
    ])
    for (const result of closed) {
      if (result.status === 'rejected') log(`${(result.reason as Error).message}\n(killed instead)`)
    }
    reaper.reap()
    await rm(directory, { recursive: true, force: true })
  }

  return {
    databaseUrl: postgres.result.url,
    redisUrl: redis.result.url,
    amqpUrl: rabbitmq.result.url,
    directory,
    startupMs: { postgres: postgres.ms, redis: redis.ms, rabbitmq: rabbitmq.ms },
    postgres: postgres.result.controls,
    redis: redis.result.controls,
    rabbitmq: rabbitmq.result.controls,
    async heal() {
      await settleAll([postgres.result.heal(), redis.result.heal(), rabbitmq.result.heal()])
    },
    close: () => (closing ??= closeAll()),
    killNow,
  }
}

/**
 * Registers handlers (SIGINT, SIGTERM, uncaughtException, unhandledRejection, and a synchronous 'exit'
 * fallback that SIGKILLs the pids and removes the dirs) so the services never outlive the run.
 */
export function closeOnExit(services: ChaosServices): void {
  let exiting = false
  const closeAndExit = (code: number) => {
    // A second signal while closing: exit now, and let the 'exit' fallback kill what is left.
    if (exiting) process.exit(code)
    exiting = true
    services
      .close()
      .catch((error: unknown) => console.error(error))
      .finally(() => process.exit(code))
  }
  const crash = (error: unknown) => {
    console.error(error)
    closeAndExit(1)
  }
  process.on('SIGINT', () => closeAndExit(130))
  process.on('SIGTERM', () => closeAndExit(143))
  process.on('uncaughtException', crash)
  process.on('unhandledRejection', crash)
  process.on('exit', () => services.killNow())
}
