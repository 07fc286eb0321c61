/**
 * Starts the private chaos services, injects every fault once with the project's own clients, checks that
 * each one does what it says, closes everything and prints the timings.
 * Run: node --import tsx chaos/services-selftest.ts
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import amqp from 'amqplib'
import { Redis } from 'ioredis'
import postgres from 'postgres'
import { closeOnExit, startServices, type ChaosServices } from './services.ts'

const timings: [string, number][] = []

async function timed<T>(name: string, work: () => Promise<T>): Promise<T> {
  const startedAt = performance.now()
  const result = await work()
  timings.push([name, Math.round(performance.now() - startedAt)])
  return result
}

function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(`selftest: ${what}`)
  console.log(`ok - ${what}`)
}

/** Settles to the error a promise rejects with, or undefined when it resolves. */
const failureOf = (work: Promise<unknown>) =>
  work.then(
    () => undefined,
    (error: unknown) => error as Error,
  )

/** Resolves with the event's first argument, or rejects after `ms`. */
function nextEvent(emitter: NodeJS.EventEmitter, event: string, ms = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`selftest: no '${event}' within ${ms} ms`)), ms)
    emitter.once(event, (value: unknown) => {
      clearTimeout(timer)
      resolve(value)
    })
  })
}

const connectSql = (url: string) => postgres(url, { max: 1, connect_timeout: 2, onnotice: () => {} })

async function checkPostgres(services: ChaosServices): Promise<void> {
  const sql = connectSql(services.databaseUrl)
  await sql`create table notes (id int primary key)`
  await sql`insert into notes values (1)`

  const sleeper = connectSql(services.databaseUrl)
  const sleeping = failureOf(sleeper`select pg_sleep(30)`)
  await sleep(300)
  const terminated = await timed('postgres.terminateSessions', () => services.postgres.terminateSessions())
  check(
    terminated >= 2,
    `terminateSessions terminated ${terminated} sessions (the sleeper's and the writer's)`,
  )
  const sleepError = await sleeping
  check(sleepError !== undefined, `a terminated session fails (${sleepError?.message})`)
  await sleeper.end({ timeout: 1 })

  const dumpFile = join(services.directory, 'selftest.dump')
  await timed('postgres.dump', () => services.postgres.dump(dumpFile))
  await sql`insert into notes values (2)`
  await timed('postgres.restore', () => services.postgres.restore(dumpFile))
  // The restore dropped the database under the pool: a fresh client sees the restored one.
  await sql.end()
  const restored = connectSql(services.databaseUrl)
  const ids = (await restored`select id from notes order by id`).map((row) => row.id as number)
  check(ids.join() === '1', `restore brings back the dumped row and drops the later one (ids: ${ids.join()})`)
  await restored.end()

  await timed('postgres.stopImmediate', () => services.postgres.stopImmediate())
  const down = connectSql(services.databaseUrl)
  check((await failureOf(down`select 1`)) !== undefined, 'after stopImmediate a query fails')
  await down.end()
  await timed('postgres.start', () => services.postgres.start())
  const up = connectSql(services.databaseUrl)
  check(
    (await up`select count(*)::int as n from notes`)[0]?.n === 1,
    'after start a query works, data intact',
  )
  await up.end()
}

async function checkRedis(services: ChaosServices): Promise<void> {
  const redis = new Redis(services.redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true })
  redis.on('error', () => {})
  await redis.connect()
  await redis.set('before-shutdown', '1')
  await timed('redis.shutdown', () => services.redis.shutdown())
  await timed('redis.start', () => services.redis.start())
  const fresh = new Redis(services.redisUrl)
  check((await fresh.get('before-shutdown')) === null, 'after shutdown and start a key set before is gone')

  await timed('redis.pause', () => services.redis.pause(500))
  const startedAt = performance.now()
  await fresh.get('anything')
  const waited = Math.round(performance.now() - startedAt)
  check(waited >= 300, `a command waits out the pause (${waited} ms)`)
  redis.disconnect()
  fresh.disconnect()
}

async function checkRabbitmq(services: ChaosServices): Promise<void> {
  const connection = await amqp.connect(services.amqpUrl)
  connection.on('error', () => {})
  const closed = nextEvent(connection, 'close')
  await timed('rabbitmq.closeAllConnections', () => services.rabbitmq.closeAllConnections())
  await closed
  check(true, 'close_all_connections closes an open connection')

  const publisher = await amqp.connect(services.amqpUrl)
  const channel = await publisher.createChannel()
  const queue = (await channel.assertQueue('', { exclusive: true })).queue
  const blocked = nextEvent(publisher, 'blocked')
  await timed('rabbitmq.memoryAlarm(on)', () => services.rabbitmq.memoryAlarm(true))
  // The broker blocks a connection when it next publishes.
  channel.sendToQueue(queue, Buffer.from('blocked?'))
  check(typeof (await blocked) === 'string', 'the memory alarm blocks a publishing connection')
  const unblocked = nextEvent(publisher, 'unblocked')
  await timed('rabbitmq.memoryAlarm(off)', () => services.rabbitmq.memoryAlarm(false))
  await unblocked
  check(true, 'switching the alarm off unblocks it')
  await publisher.close()

  await timed('rabbitmq.stopApp', () => services.rabbitmq.stopApp())
  check((await failureOf(amqp.connect(services.amqpUrl))) !== undefined, 'after stop_app AMQP is refused')
  await timed('rabbitmq.startApp', () => services.rabbitmq.startApp())
  const again = await amqp.connect(services.amqpUrl)
  check(true, 'after start_app AMQP is accepted again')
  await again.close()
}

async function checkHeal(services: ChaosServices): Promise<void> {
  await services.postgres.stopImmediate()
  await services.redis.pause(1000)
  // The alarm first: rabbitmqctl sets a watermark only while the app runs.
  await services.rabbitmq.memoryAlarm(true)
  await services.rabbitmq.stopApp()
  await timed('heal (after three faults)', () => services.heal())
  await timed('heal (nothing to heal)', () => services.heal())
  const sql = connectSql(services.databaseUrl)
  await sql`select 1`
  await sql.end()
  const redis = new Redis(services.redisUrl, { commandTimeout: 1000 })
  await redis.ping()
  redis.disconnect()
  const connection = await amqp.connect(services.amqpUrl)
  await connection.close()
  check(true, 'heal brings all three back: up, unpaused, unalarmed')
}

const services = await timed('startServices', () => startServices({ log: (line) => console.log(line) }))
closeOnExit(services)
await checkPostgres(services)
await checkRedis(services)
await checkRabbitmq(services)
await checkHeal(services)
await timed('close', () => services.close())
await services.close()
check(!existsSync(services.directory), `close removed ${services.directory}`)

console.log('\nstartup (ms):', services.startupMs)
for (const [name, ms] of timings) console.log(`${name.padEnd(32)} ${String(ms).padStart(6)} ms`)
