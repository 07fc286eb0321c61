import { loadConfig } from './config.ts'
import { startGateway } from './gateway.ts'
import { createLogger } from './ops/log.ts'

// boot: config -> connect -> migrate -> serve + worker -> graceful shutdown
const config = loadConfig()
const log = createLogger(config.logLevel)
const enabled = Object.entries(config.secrets)
  .filter(([, secrets]) => secrets.length > 0)
  .map(([name]) => name)
if (enabled.length === 0) log.warn('no provider has a secret configured: every /webhooks route answers 404')

const gateway = await startGateway(config, { log }).catch((error: unknown) => {
  log.error('could not start', { error })
  process.exit(1)
})
log.info('started', { role: config.role, providers: enabled })

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
