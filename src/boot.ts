import { resolve } from 'node:path'
import { loadConfig, type Config } from './config.ts'
import { startGateway } from './gateway.ts'
import { createLogger, type Logger } from './ops/log.ts'

/**
 * npm start (and npm run dev): config -> connect -> migrate -> serve + worker -> graceful shutdown. `tryOut`
 * (npm run dev only) ends the start with one line for a newcomer: the dashboard's URL and its token.
 */
export async function boot(options: { readonly tryOut: boolean }): Promise<void> {
  const config = loadConfig()
  const log = createLogger(config.logLevel)
  sayWhatRunsEmbedded(config, log)
  const enabled = Object.entries(config.secrets)
    .filter(([, secrets]) => secrets.length > 0)
    .map(([name]) => name)
  if (enabled.length === 0) log.warn('no provider has a secret configured: every /webhooks route answers 404')

  const gateway = await startGateway(config, { log }).catch((error: unknown) => {
    log.error('could not start', { error })
    process.exit(1)
  })
  log.info('started', { role: config.role, providers: enabled })
  // After the start's log lines (written at the end of this turn of the event loop).
  if (options.tryOut) setImmediate(() => process.stdout.write(`${tryOutLine(config, gateway.port)}\n`))

  let stopping = false
  const shutdown = (signal: string) => {
    if (stopping) return
    stopping = true
    log.info('stopping', { signal })
    // The contract allows 10 s; leave a margin and exit regardless.
    setTimeout(() => {
      log.error('shutdown took too long, exiting')
      process.exit(1)
    }, 9000).unref()
    gateway.stop().then(
      () => {
        log.info('stopped')
        process.exit(0)
      },
      (error: unknown) => {
        log.error('error while stopping', { error })
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))
}

/** The first lines: what runs embedded or not at all because its variable is unset. */
function sayWhatRunsEmbedded(config: Config, log: Logger): void {
  if (!config.databaseUrl)
    log.info(
      'DATABASE_URL is unset: running on an embedded PostgreSQL, started and stopped with the gateway ' +
        '(for several hosts, backups or failover, set DATABASE_URL to a server)',
      { dataDirectory: resolve(config.embeddedDataDir, 'postgres') },
    )
  if (!config.redisUrl)
    log.info('REDIS_URL is unset: failed verifications are counted and rejections kept in this process only')
  if (!config.amqpUrl)
    log.info(
      'AMQP_URL is unset: no broker; events are mapped, kept with their webhook and sent to destinations',
    )
}

function tryOutLine(config: Config, port: number | undefined): string {
  const base = `http://${['0.0.0.0', '::'].includes(config.host) ? '127.0.0.1' : config.host}:${port ?? config.port}`
  const dashboard = config.adminToken
    ? `dashboard ${base}/admin (token: ${config.adminToken})`
    : 'no dashboard: ADMIN_TOKEN is unset'
  return `Ready on ${base}: ${dashboard}; send one with npm run send -- stripe payment_intent.succeeded`
}
