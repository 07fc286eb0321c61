import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import amqp, { type ChannelModel, type ConsumeMessage } from 'amqplib'
import postgres from 'postgres'
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest'
import { loadConfig, type Config, type Env } from '../../src/config.ts'
import { startGateway, type Gateway } from '../../src/gateway.ts'
import { createLogger, silentLogger } from '../../src/ops/log.ts'
import type { CloudEvent } from '../../src/pipeline/events.ts'
import type { Providers } from '../../providers/index.ts'
import { stripeDelivery } from './signed.ts'

/** The real services the integration tests use; override with TEST_* variables. */
export const services = {
  postgres: process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  redis: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
  amqp: process.env.TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
}

export const uniqueName = (prefix: string) =>
  `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`

/** A database of its own for one test file, dropped afterwards. */
export async function createTestDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = uniqueName('gw_test')
  const admin = postgres(services.postgres, { max: 1, onnotice: () => {} })
  await admin`CREATE DATABASE ${admin(name)}`
  await admin.end()
  const url = new URL(services.postgres)
  url.pathname = `/${name}`
  return {
    url: url.toString(),
    drop: async () => {
      const admin = postgres(services.postgres, { max: 1, onnotice: () => {} })
      await admin`DROP DATABASE IF EXISTS ${admin(name)} WITH (FORCE)`
      await admin.end()
    },
  }
}

/** Configuration for a test gateway: isolated names, fast retries, the given overrides on top. */
export function testEnv(databaseUrl: string, overrides: Env = {}): Env {
  return {
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: databaseUrl,
    REDIS_URL: services.redis,
    REDIS_PREFIX: `${uniqueName('test')}:`,
    AMQP_URL: services.amqp,
    AMQP_EXCHANGE: uniqueName('webhooks_test'),
    LOG_LEVEL: 'silent',
    WORKER_POLL_MS: '50',
    RETRY_DELAYS_SECONDS: '0.2,0.4,0.6',
    ...overrides,
  }
}

export interface TestGateway {
  readonly gateway: Gateway
  readonly config: Config
  readonly url: string
  post(path: string, body: string | Buffer, headers?: Record<string, string>): Promise<Response>
  stop(): Promise<void>
}

export async function startTestGateway(
  env: Env,
  options: { readonly providers?: Providers } = {},
): Promise<TestGateway> {
  const config = loadConfig(env as Record<string, string>)
  const log = process.env.TEST_LOG ? createLogger('debug') : silentLogger
  const gateway = await startGateway(config, { log, ...options })
  const url = `http://127.0.0.1:${gateway.port}`
  return {
    gateway,
    config,
    url,
    post: (path, body, headers = {}) => fetch(url + path, { method: 'POST', body, headers }),
    stop: () => gateway.stop(),
  }
}

/** What a gateway answered a signed Stripe delivery. */
export interface StripeAnswer {
  readonly status: number
  readonly body: { status?: string; id?: string }
}

/** Signs `event` with `secret` as Stripe does and posts it to the gateway's /webhooks/stripe. */
export async function postStripe(
  gateway: TestGateway,
  event: Record<string, unknown>,
  secret: string,
): Promise<StripeAnswer> {
  const delivery = stripeDelivery(event, { secret })
  const response = await gateway.post('/webhooks/stripe', delivery.body, delivery.headers)
  return { status: response.status, body: (await response.json()) as StripeAnswer['body'] }
}

/** One test file's isolation: a database of its own, and cleanups run at the end of a test or of the file. */
export interface TestDatabase {
  /** The database's URL, once the file's beforeAll has created it. */
  readonly url: string
  /** The test's own connection to the database (never through a proxy), ended after the file. */
  readonly sql: postgres.Sql
  /**
   * Runs `cleanup` after the current test, or after the file when called from beforeAll; newest first,
   * its errors ignored.
   */
  defer(cleanup: () => Promise<unknown>): void
  /**
   * A gateway on this database, with testEnv's isolated names under `overrides`. At the end of the test
   * (or of the file, from beforeAll) it is stopped, once however often stop() is called, and its exchange
   * topology deleted: a leftover worker would otherwise claim the next test's webhooks.
   */
  startGateway(overrides?: Env, options?: { readonly providers?: Providers }): Promise<TestGateway>
  /** captureEvents, closed at the end of the test (or of the file, from beforeAll). */
  captureEvents(config: Config): Promise<Capture>
}

/** Creates the file's database in beforeAll and drops it in afterAll; registers the cleanup hooks. */
export function useTestDatabase(): TestDatabase {
  let database: Awaited<ReturnType<typeof createTestDatabase>> | undefined
  let sql: postgres.Sql | undefined
  let inTest = false
  const testCleanups: (() => Promise<unknown>)[] = []
  const fileCleanups: (() => Promise<unknown>)[] = []
  const runNewestFirst = async (cleanups: (() => Promise<unknown>)[]) => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {})
  }

  beforeAll(async () => {
    database = await createTestDatabase()
  })
  beforeEach(() => {
    inTest = true
  })
  afterEach(async () => {
    inTest = false
    await runNewestFirst(testCleanups)
  })
  afterAll(async () => {
    await runNewestFirst(fileCleanups)
    await sql?.end()
    await database?.drop()
  })

  const url = () => {
    if (!database) throw new Error('useTestDatabase: the database exists only once beforeAll has run')
    return database.url
  }
  const defer = (cleanup: () => Promise<unknown>) => {
    ;(inTest ? testCleanups : fileCleanups).push(cleanup)
  }
  return {
    get url() {
      return url()
    },
    get sql() {
      sql ??= postgres(url(), { max: 2, onnotice: () => {} })
      return sql
    },
    defer,
    async startGateway(overrides = {}, options = {}) {
      const gateway = await startTestGateway(testEnv(url(), overrides), options)
      // Gateways of one test may share an exchange; deleting it twice is harmless.
      defer(() => deleteTopology(gateway.config.exchange))
      let stopping: Promise<void> | undefined
      const stop = () => (stopping ??= gateway.stop())
      defer(stop)
      return { ...gateway, stop }
    },
    async captureEvents(config) {
      const capture = await captureEvents(config)
      defer(() => capture.close())
      return capture
    },
  }
}

/** A channel on a connection of its own to the test broker, closed after `use`. */
export async function withChannel<T>(use: (channel: amqp.Channel) => Promise<T>): Promise<T> {
  const connection = await amqp.connect(services.amqp)
  try {
    const channel = await connection.createChannel()
    // A failed check closes the channel with an error; the rejection of `use` reports it.
    channel.on('error', () => {})
    return await use(channel)
  } finally {
    await connection.close().catch(() => {})
  }
}

/** Removes what a test gateway declared on the shared broker: its exchange, the alternate and `.unrouted`. */
export async function deleteTopology(exchange: string): Promise<void> {
  await withChannel(async (channel) => {
    await channel.deleteExchange(exchange)
    await channel.deleteQueue(`${exchange}.unrouted`)
    await channel.deleteExchange(`${exchange}.unrouted`)
  })
}

export interface Received {
  readonly routingKey: string
  readonly event: CloudEvent
  /** The message body as it arrived, for what a JSON parse would change (integers beyond 2^53). */
  readonly content: string
  readonly properties: ConsumeMessage['properties']
}

/** A consumer bound to `#` on a gateway's exchange that keeps every message it sees. */
export interface Capture {
  readonly messages: Received[]
  waitFor(predicate: (messages: Received[]) => boolean, timeoutMs?: number): Promise<Received[]>
  close(): Promise<void>
}

export async function captureEvents(config: Config): Promise<Capture> {
  const connection: ChannelModel = await amqp.connect(config.amqpUrl ?? services.amqp)
  const channel = await connection.createChannel()
  const unrouted = `${config.exchange}.unrouted`
  // Same declaration as the publisher's, so whichever comes first, both agree.
  await channel.assertExchange(unrouted, 'fanout', { durable: true })
  await channel.assertExchange(config.exchange, 'topic', { durable: true, alternateExchange: unrouted })
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true })
  await channel.bindQueue(queue, config.exchange, '#')
  const messages: Received[] = []
  await channel.consume(
    queue,
    (message) => {
      if (!message) return
      messages.push({
        routingKey: message.fields.routingKey,
        event: JSON.parse(message.content.toString('utf8')),
        content: message.content.toString('utf8'),
        properties: message.properties,
      })
    },
    { noAck: true },
  )
  return {
    messages,
    waitFor: (predicate, timeoutMs = 10_000) =>
      waitFor(() => (predicate(messages) ? messages : undefined), timeoutMs),
    close: async () => {
      await connection.close().catch(() => {})
    },
  }
}

/** Polls until `check` returns something other than undefined/false. */
export async function waitFor<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
  everyMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined && value !== false) return value
    if (Date.now() > deadline) throw new Error(`waitFor: condition not met within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}

/** Deletes this gateway's Redis keys, as if Redis had been flushed, without touching other test files. */
export async function flushRedisPrefix(gateway: Gateway, prefix: string): Promise<number> {
  const { redis } = gateway
  if (!redis) throw new Error('this gateway runs without Redis')
  let deleted = 0
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) deleted += await redis.del(...keys)
  } while (cursor !== '0')
  return deleted
}

/** Admin API calls to a test gateway (a getter: it starts in beforeAll); bodies are the contract's JSON, read loosely. */
export function adminApi(
  gateway: () => { readonly url: string },
  token: string,
): (method: string, path: string, body?: unknown) => Promise<{ status: number; body: any }> {
  return async (method, path, body) => {
    const response = await fetch(`${gateway().url}/admin${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    const text = await response.text()
    return { status: response.status, body: text ? JSON.parse(text) : undefined }
  }
}

/** A stream that keeps what is written to it. */
export function sink() {
  let text = ''
  const stream = new Writable({
    write(chunk, _encoding, done) {
      text += String(chunk)
      done()
    },
  })
  return { stream, text: () => text }
}
