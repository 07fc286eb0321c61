import { randomBytes } from 'node:crypto'
import amqp from 'amqplib'
import { Redis } from 'ioredis'
import postgres from 'postgres'

/**
 * The local Postgres, Redis and RabbitMQ (the integration tests' TEST_* variables name them), and the
 * throwaway things the bench creates in them: a database per storing server, an exchange and a Redis key
 * prefix per gateway run, all named gw_bench_* / bench_* so that leftovers are recognisably ours.
 */

export const services = {
  postgres: process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  redis: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
  amqp: process.env.TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
}

/** The bench loads whatever it points at: it refuses anything but loopback. */
export function assertLoopback(urls: readonly string[]): void {
  for (const url of urls) {
    const { hostname } = new URL(url)
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(hostname))
      throw new Error(`bench: ${url} is not on loopback; the bench only runs against local services`)
  }
}

export const uniqueName = (prefix: string) =>
  `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`

export interface Database {
  readonly name: string
  readonly url: string
  drop(): Promise<void>
}

export async function createDatabase(admin: postgres.Sql): Promise<Database> {
  const name = uniqueName('gw_bench')
  await admin`CREATE DATABASE ${admin(name)}`
  const url = new URL(services.postgres)
  url.pathname = `/${name}`
  return {
    name,
    url: url.toString(),
    drop: async () => {
      await admin`DROP DATABASE IF EXISTS ${admin(name)} WITH (FORCE)`
    },
  }
}

/** Removes what a gateway declares: its exchange, the alternate exchange and the `.unrouted` queue. */
export async function deleteExchange(exchange: string): Promise<void> {
  const connection = await amqp.connect(services.amqp, { timeout: 5000 })
  try {
    const channel = await connection.createChannel()
    await channel.deleteQueue(`${exchange}.unrouted`)
    await channel.deleteExchange(exchange)
    await channel.deleteExchange(`${exchange}.unrouted`)
  } finally {
    await connection.close().catch(() => {})
  }
}

export async function deleteRedisPrefix(prefix: string): Promise<void> {
  const redis = new Redis(services.redis, { maxRetriesPerRequest: 1, lazyConnect: true })
  try {
    await redis.connect()
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 5000)
      cursor = next
      if (keys.length > 0) await redis.unlink(...keys)
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
}

/** Redis' and RabbitMQ's versions, for the machine description. */
export async function serviceVersions(): Promise<{ redis: string; rabbitmq: string }> {
  const redis = new Redis(services.redis, { maxRetriesPerRequest: 1, lazyConnect: true })
  let redisVersion = 'unknown'
  try {
    await redis.connect()
    redisVersion = /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? 'unknown'
  } finally {
    redis.disconnect()
  }
  const connection = await amqp.connect(services.amqp, { timeout: 5000 })
  const properties = (connection.connection as unknown as { serverProperties?: Record<string, unknown> })
    .serverProperties
  await connection.close().catch(() => {})
  return { redis: redisVersion, rabbitmq: String(properties?.version ?? 'unknown') }
}
