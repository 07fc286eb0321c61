import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import { Redis } from 'ioredis'
import { providers as allProviders, type Providers } from '../providers/index.ts'
import { configuredProviders } from '../providers/configured.ts'
import { createApp } from './http/app.ts'
import type { Config } from './config.ts'
import { ClaimOwner, lookTogether, reclaimAbandoned } from './db/owners.ts'
import { bounded, withDeadline } from './ops/deadline.ts'
import { checkHealth } from './http/health.ts'
import { Intake } from './pipeline/intake.ts'
import { createLogger, type Logger } from './ops/log.ts'
import { Metrics } from './ops/metrics.ts'
import { ensureDatabase, migrate } from './db/migrate.ts'
import { Publisher } from './pipeline/publisher.ts'
import { FailedVerificationLimit, LocalFailedVerificationLimit } from './ops/ratelimit.ts'
import { LocalRejectionLog, RejectionLog } from './ops/rejections.ts'
import { NoBroker } from './pipeline/no-broker.ts'
import { startEmbeddedPostgres } from './db/embedded.ts'
import { dashboardRoutes } from './admin/dashboard/routes.tsx'
import { createStore } from './db/webhooks.ts'
import { connectDatabase } from './db/client.ts'
import { Worker } from './pipeline/worker.ts'
import { createDestinationAgent } from './destinations/address.ts'
import { applyDestinationsFile, readDestinationsFile } from './destinations/file.ts'
import { createOutbox } from './destinations/fanout.ts'
import { destinationRoutes } from './destinations/routes.ts'
import { DeliverySender } from './destinations/sender.ts'
import { createDestinationStore, type DestinationStore } from './destinations/store.ts'
import { Retention } from './db/retention.ts'

export interface Gateway {
  /** The bound HTTP port, when the API half runs. */
  readonly port: number | undefined
  readonly app: ReturnType<typeof createApp>
  readonly store: ReturnType<typeof createStore>
  /** The broker's publisher, or NoBroker when AMQP_URL is unset. */
  readonly publisher: Publisher | NoBroker
  readonly worker: Worker | undefined
  readonly destinations: DestinationStore
  readonly sender: DeliverySender | undefined
  /** Undefined when REDIS_URL is unset. */
  readonly redis: Redis | undefined
  /** The database's URL: DATABASE_URL's, or the embedded PostgreSQL's. */
  readonly databaseUrl: string
  /** Stop accepting, finish what is in flight, close every connection. */
  stop(): Promise<void>
}

type StartOptions = { readonly log?: Logger; readonly providers?: Providers }

/**
 * Connects, migrates and starts the halves that `config.role` asks for: on DATABASE_URL's PostgreSQL, or
 * with none, on an embedded one started first and stopped last.
 */
export async function startGateway(config: Config, options: StartOptions = {}): Promise<Gateway> {
  if (config.databaseUrl) return startOn(config.databaseUrl, config, options)
  if (config.role !== 'all')
    throw new Error(
      `ROLE=${config.role} needs DATABASE_URL: the embedded PostgreSQL serves the one process that started it`,
    )
  const log = options.log ?? createLogger(config.logLevel)
  const embedded = await startEmbeddedPostgres({ dataDir: config.embeddedDataDir, log })
  log.info('embedded postgres: ready', { dataDirectory: embedded.dataDirectory })
  try {
    const gateway = await startOn(embedded.url, config, options)
    return {
      ...gateway,
      stop: async () => {
        await gateway.stop()
        await embedded.stop()
      },
    }
  } catch (error) {
    await embedded.stop()
    throw error
  }
}

async function startOn(databaseUrl: string, config: Config, options: StartOptions): Promise<Gateway> {
  const log = options.log ?? createLogger(config.logLevel)
  // The five built in, and the senders PROVIDERS_FILE declares.
  const providers = options.providers ?? {
    ...allProviders,
    ...configuredProviders(config.configuredProviders),
  }
  const runsApi = config.role !== 'worker'
  const runsWorker = config.role !== 'api'

  // A broken provider setup (an unreadable CA file, say) stops the start, not the first delivery.
  for (const [name, provider] of Object.entries(providers)) {
    if ((config.secrets[name] ?? []).length > 0) provider.checkSetup?.(config)
  }

  if (await ensureDatabase(databaseUrl)) log.info('created the database', { url: redactUrl(databaseUrl) })
  const sql = connectDatabase(databaseUrl, config.databasePoolSize, {
    statementTimeoutMs: config.databaseStatementTimeoutMs,
  })
  const applied = await migrate(sql)
  if (applied.length > 0) log.info('migrations applied', { applied })
  const store = createStore(sql)
  const destinations = createDestinationStore(sql)
  const policy = { allowHttp: config.destinations.allowHttp, allowedHosts: config.destinations.allowedHosts }
  if (config.destinations.file) {
    try {
      const entries = await readDestinationsFile(config.destinations.file, policy)
      await applyDestinationsFile(sql, destinations, entries, log)
    } catch (error) {
      await sql.end({ timeout: 2 })
      throw error
    }
  }

  const redis = config.redisUrl ? connectRedis(config.redisUrl, log) : undefined

  const metrics = new Metrics()
  declareCounters(
    metrics,
    Object.keys(providers).filter((name) => (config.secrets[name] ?? []).length > 0),
  )
  metrics.gauge('webhooks_unpublished', 'Stored webhooks not yet published, by status', 'status', () =>
    store.countUnpublished(),
  )
  metrics.gaugeVec(
    'destination_deliveries_pending',
    'Deliveries waiting to be sent, by destination',
    ['destination'],
    async () =>
      (await destinations.pendingByDestination()).map(({ destinationId, pending }) => ({
        labels: { destination: destinationId },
        value: pending,
      })),
  )
  metrics.gaugeVec(
    'webhooks_oldest_unpublished_age_seconds',
    'Age of the oldest webhook not yet published to RabbitMQ (0 when none waits)',
    [],
    async () => [{ labels: {}, value: await store.oldestUnpublishedAgeSeconds() }],
  )
  metrics.gauge('destinations', 'Destinations, by state', 'state', async () => {
    const all = await destinations.list()
    return {
      enabled: all.filter((destination) => destination.enabled).length,
      disabled: all.filter((destination) => !destination.enabled).length,
    }
  })
  const broker = config.amqpUrl
    ? new Publisher({
        url: config.amqpUrl,
        exchange: config.exchange,
        unroutedMaxLength: config.unroutedMaxLength,
        log,
      })
    : undefined
  void broker?.start()
  const publisher = broker ?? new NoBroker()

  const rejectionLog = redis
    ? new RejectionLog(redis, { prefix: config.redisPrefix, keep: 200 })
    : new LocalRejectionLog({ keep: 200 })
  const health = () =>
    checkHealth({
      postgres: () => store.ping(),
      redis: redis && (() => redis.ping()),
      // A round trip, not a flag: a stalled broker keeps its connection open but answers nothing.
      rabbitmq: broker && (() => broker.ping()),
    })
  // Only the dependencies configured: one that is off is not down.
  metrics.gauge('dependency_up', 'Whether each dependency answers (1) or not (0)', 'dependency', async () => {
    const { checks } = await health()
    return Object.fromEntries(
      Object.entries(checks)
        .filter(([, state]) => state !== 'off')
        .map(([name, state]) => [name, state === 'up' ? 1 : 0]),
    )
  })

  const agent = createDestinationAgent(policy)
  // The worker and sender loops give up on a statement a little after Postgres would have cancelled it.
  const statementDeadlineMs = config.databaseStatementTimeoutMs + 2000
  // The worker's and sender's claims carry this process's number, so they come back at once if it dies.
  const owner = runsWorker ? await ClaimOwner.start(databaseUrl, log) : undefined
  // Their safety nets look at webhooks and deliveries in one statement a poll.
  const lookOf = { webhooks: store.abandonedOf, deliveries: destinations.abandonedOf }
  const looks = lookTogether(['webhooks', 'deliveries'], (id, tables) =>
    withDeadline(
      reclaimAbandoned(
        sql,
        id,
        tables.map((table) => lookOf[table]()),
      ),
      statementDeadlineMs,
      'postgres.reclaimAbandoned',
    ),
  )
  const sender = owner
    ? new DeliverySender(
        {
          ...bounded(
            destinations,
            ['claimDue', 'recordAttempts', 'release'],
            statementDeadlineMs,
            'postgres',
          ),
          reclaimAbandoned: looks.deliveries,
          listen: destinations.listen,
        },
        {
          dispatcher: agent,
          concurrency: config.destinations.concurrency,
          pollMs: config.destinations.pollMs,
          leaseMarginSeconds: config.destinations.leaseMarginSeconds,
          claimOwner: owner.id,
          log,
          metrics,
          userAgent: 'webhook-gateway',
        },
      )
    : undefined
  // What the worker records goes with the destinations' outbox: deliveries this process's sender has room
  // for are written claimed by it and handed over.
  const outbox = createOutbox(
    sql,
    { published: store.publishedUpdate, routed: store.routedUpdate },
    sender && owner
      ? {
          owner: owner.id,
          leaseMarginSeconds: config.destinations.leaseMarginSeconds,
          room: (destinationId) => sender.room(destinationId),
          take: (deliveries) => sender.take(deliveries),
          due: (destinationIds) => sender.due(destinationIds),
        }
      : undefined,
  )
  const worker = owner
    ? new Worker(
        {
          ...bounded(
            store,
            ['claimDue', 'markFailed', 'release', 'hasDestinations'],
            statementDeadlineMs,
            'postgres',
          ),
          reclaimAbandoned: looks.webhooks,
          listen: store.listen,
        },
        {
          ...bounded(outbox, ['published', 'released'], statementDeadlineMs, 'postgres'),
          withCommit: (handled, onRouted) => outbox.withCommit(handled, onRouted),
        },
        publisher,
        providers,
        {
          concurrency: config.workerConcurrency,
          pollMs: config.workerPollMs,
          leaseSeconds: config.workerLeaseSeconds,
          claimOwner: owner.id,
          retryDelaysSeconds: config.retryDelaysSeconds,
          log,
          metrics,
          intakeCounts: runsApi ? () => intake.counts : undefined,
        },
      )
    : undefined
  const intake = new Intake(store, {
    maxBatch: config.intakeMaxBatch,
    maxInFlight: config.intakeConcurrency,
    timeoutMs: config.storeTimeoutMs,
    // With both halves in one process, what intake commits goes to the worker in memory.
    handOff: runsApi ? worker?.handOff : undefined,
  })
  if (worker) await outbox.start()
  await worker?.start()
  await sender?.start()
  const retention = runsWorker ? new Retention(sql, { ...config.retention, log }) : undefined
  retention?.start()

  const app = createApp({
    config,
    providers,
    store,
    intake,
    failedVerifications: redis
      ? new FailedVerificationLimit(redis, {
          prefix: config.redisPrefix,
          limit: config.failedVerifyLimit,
          windowSeconds: config.failedVerifyWindowSeconds,
        })
      : new LocalFailedVerificationLimit({
          limit: config.failedVerifyLimit,
          windowSeconds: config.failedVerifyWindowSeconds,
        }),
    metrics,
    log,
    rejections: rejectionLog,
    rejectionLog,
    dashboard: config.adminToken
      ? dashboardRoutes({
          token: config.adminToken,
          store,
          destinations,
          rejections: rejectionLog,
          providers,
          enabledProviders: Object.keys(providers).filter((name) => (config.secrets[name] ?? []).length > 0),
          onReplay: () => {
            worker?.wake()
            sender?.wake()
          },
        })
      : undefined,
    destinationRoutes: destinationRoutes({ destinations, policy, onDue: () => sender?.wake() }),
    health,
  })

  let server: Server | undefined
  if (runsApi) {
    server = await new Promise<Server>((resolve) => {
      // Plain HTTP/1.1: serve() builds a node:http Server unless told otherwise. A client that drips its
      // headers or body (slowloris) is cut off at these limits; Node checks them every half second here
      // rather than every 30 s.
      const { headersTimeoutMs, requestTimeoutMs, maxConnections } = config.http
      const started = serve(
        {
          fetch: app.fetch,
          port: config.port,
          hostname: config.host,
          serverOptions: {
            headersTimeout: headersTimeoutMs,
            requestTimeout: Math.max(requestTimeoutMs, headersTimeoutMs),
            connectionsCheckingInterval: Math.min(500, headersTimeoutMs),
            // Longer than the idle timeout of the load balancers in front (60 s on most): a keep-alive
            // connection is closed by the client side first, never as it sends the next request (a reset).
            keepAliveTimeout: 65_000,
          },
        },
        () => resolve(started as Server),
      )
      ;(started as Server).maxConnections = maxConnections
    })
    log.info('listening', {
      host: config.host,
      port: (server.address() as AddressInfo).port,
      role: config.role,
    })
  }

  return {
    port: server ? (server.address() as AddressInfo).port : undefined,
    app,
    store,
    publisher,
    worker,
    destinations,
    sender,
    redis,
    databaseUrl,
    async stop() {
      // Budget (the contract allows 10 s; main.ts exits at 9): the stages below 6 s, closing 2 s.
      const closed = new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()))
      server?.closeIdleConnections()
      retention?.stop()
      // In order, within 6 s: intake commits its last groups, the worker publishes what they handed over and
      // records it, the sender sends what that wrote. What a stage leaves is given back, not left claimed.
      const deadline = performance.now() + 6000
      const left = () => Math.max(500, deadline - performance.now())
      await Promise.race([intake.idle(), sleep(left())])
      await worker?.stop(left())
      await sender?.stop(left())
      // What is still claimed was not finished: giving the number up hands it to the other gateways now.
      const ownerStopped = owner?.stop()
      // Answers to the last commits are being written; then cut keep-alive sockets a client holds open.
      await Promise.race([closed, sleep(250)])
      server?.closeAllConnections()
      await Promise.all([
        closed,
        publisher.stop(1000),
        sql.end({ timeout: 2 }),
        ownerStopped,
        agent.close().catch(() => {}),
      ])
      redis?.disconnect()
    },
  }
}

/**
 * The counters alerts watch, present from the start: a series that first appears at 1 is invisible to
 * `increase()`, so the first dead webhook or the first 503 would raise no alert.
 */
function declareCounters(metrics: Metrics, providers: readonly string[]): void {
  metrics.declare('webhooks_received_total', 'Deliveries received, by outcome', ['provider', 'outcome'])
  metrics.declare('webhooks_dead_total', 'Webhooks that ran out of attempts', ['provider'])
  for (const provider of providers) {
    metrics.count('webhooks_dead_total', 'Webhooks that ran out of attempts', { provider }, 0)
    for (const outcome of ['accepted', 'invalid_signature', 'storage_unavailable'])
      metrics.count('webhooks_received_total', 'Deliveries received, by outcome', { provider, outcome }, 0)
  }
  metrics.declare('webhook_failures_total', 'Failed publishing attempts', ['provider'])
  metrics.declare('events_publish_failures_total', 'Publishing attempts the broker did not confirm', [
    'provider',
    'reason',
  ])
  metrics.declare('destination_attempts_total', 'Requests made to destinations, by outcome', [
    'destination',
    'outcome',
  ])
  metrics.declare('destination_failure_warnings_total', 'Warnings about consecutive failed deliveries', [
    'destination',
    'consecutive',
  ])
  metrics.declare('destinations_disabled_total', 'Destinations disabled by the sender', ['destination'])
}

/** Redis for what processes share (failed-verification counts, the rejection log); never waited on. */
function connectRedis(url: string, log: Logger): Redis {
  const redis = new Redis(url, {
    // Fail fast instead of queueing: Redis only counts failed verifications, and a request never waits on it.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    commandTimeout: 500,
    retryStrategy: (times) => Math.min(100 * 2 ** times, 5000),
  })
  let redisDown = false
  redis.on('error', (error) => {
    if (!redisDown) log.warn('redis: unavailable, failed verifications are not counted', { error })
    redisDown = true
  })
  redis.on('ready', () => {
    if (redisDown) log.info('redis: available again')
    redisDown = false
  })
  return redis
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function redactUrl(url: string): string {
  const parsed = new URL(url)
  if (parsed.password) parsed.password = '***'
  return parsed.toString()
}
