import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import amqp from 'amqplib'
import { Redis } from 'ioredis'
import postgres from 'postgres'
import { loadConfig } from '../src/config.ts'
import { services, uniqueName } from '../test/support/services.ts'
import { stripeDelivery, stripeEvent } from '../test/support/signed.ts'
import { buildRequest, Outcome, quantile, runLoad, type LoadResult } from './load.ts'
import { summarizeProfiles, type ProfileSummary } from './profile.ts'

/**
 * npm run bench [-- --quick] [-- -n 20000 -c 64] [-- --profile]
 *
 * The gateway's intake against a receiver that stores nothing, under the same load: N distinct
 * Stripe events signed before the clock starts, C keep-alive connections, loopback only. Each server runs
 * in a child process; the load generator runs here. See bench/README.md for how to read the output.
 */

const root = fileURLToPath(new URL('..', import.meta.url))
const host = '127.0.0.1'

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    requests: { type: 'string', short: 'n' },
    connections: { type: 'string', short: 'c' },
    warmup: { type: 'string' },
    sweep: { type: 'string' },
    profile: { type: 'boolean', default: false },
    'profile-dir': { type: 'string' },
    'gateway-dir': { type: 'string' },
    'gateway-env': { type: 'string', multiple: true },
    help: { type: 'boolean', short: 'h', default: false },
  },
})

if (flags.help) {
  console.log(`npm run bench -- [--quick] [-n N] [-c C] [--warmup W] [--sweep 1,2,4,8] [--profile]
  -n, --requests     measured requests per run (env BENCH_REQUESTS; default 20000, --quick 5000)
  -c, --connections  concurrent keep-alive connections (env BENCH_CONNECTIONS; default 64)
  --warmup           requests sent before each measurement (default 1000)
  --sweep            INTAKE_CONCURRENCY = DATABASE_POOL_SIZE values to try (default 1,2,4,8; none with --quick)
  --profile          CPU-profile the gateway's default run and print where its time went
  --profile-dir DIR  keep the .cpuprofile files there (open them in Chrome DevTools or speedscope)
  --gateway-dir DIR  bench the gateway in another checkout, e.g. a branch with a fix (env BENCH_GATEWAY_DIR)
  --gateway-env K=V  extra environment for every gateway run (repeatable), e.g. REDIS_URL=redis://127.0.0.1:1`)
  process.exit(0)
}

const positive = (value: string | undefined, fallback: number, name: string): number => {
  if (value === undefined || value === '') return fallback
  const parsed = Number(value)
  if (!Number.isInteger(parsed) || parsed < 1) throw new Error(`bench: ${name} must be a positive integer`)
  return parsed
}

const quick = flags.quick
const gatewayDir = flags['gateway-dir'] ?? process.env.BENCH_GATEWAY_DIR ?? root
const gatewayEnv = Object.fromEntries(
  (flags['gateway-env'] ?? []).map((pair) => {
    const at = pair.indexOf('=')
    if (at < 1) throw new Error(`bench: --gateway-env takes KEY=VALUE, not ${pair}`)
    return [pair.slice(0, at), pair.slice(at + 1)]
  }),
)
const settings = {
  requests: positive(flags.requests ?? process.env.BENCH_REQUESTS, quick ? 5000 : 20_000, 'requests'),
  connections: positive(flags.connections ?? process.env.BENCH_CONNECTIONS, 64, 'connections'),
  warmup: positive(flags.warmup, 1000, 'warmup'),
  sweep: (flags.sweep ?? (quick ? '' : '1,2,4,8'))
    .split(',')
    .filter(Boolean)
    .map((value) => positive(value, 1, 'sweep')),
  requestTimeoutMs: 10_000,
  /** No run sends for longer than this; whatever is left counts as not sent. */
  runMaxMs: quick ? 20_000 : 60_000,
  /** How long ROLE=all may take to publish what it accepted before we stop waiting. */
  drainMaxMs: 15_000,
  /** The whole bench, cleanup included, is cut short after this. */
  totalMaxMs: quick ? 120_000 : 480_000,
}

// Loopback only: the TEST_* overrides could name another machine, and a bench must not load one.
for (const url of [
  services.postgres,
  services.redis,
  services.amqp,
  ...Object.values(gatewayEnv).filter((value) => value.includes('://')),
]) {
  const hostname = new URL(url).hostname
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(hostname))
    throw new Error(`bench: ${url} is not on loopback; the bench only runs against local services`)
}

// ---------------------------------------------------------------------------------------------------
// Cleanup that runs on success, on error, on Ctrl-C and on the overall time limit.

const cleanups: (() => Promise<unknown>)[] = []
const children = new Set<ChildProcess>()

function defer(cleanup: () => Promise<unknown>): void {
  cleanups.push(cleanup)
}

/** Runs the cleanups registered since `mark`, newest first. */
async function unwind(mark = 0): Promise<void> {
  while (cleanups.length > mark) {
    const cleanup = cleanups.pop()!
    await Promise.race([cleanup(), sleep(15_000, undefined, { ref: false })]).catch((error: unknown) =>
      console.error(`bench: cleanup failed: ${(error as Error).message}`),
    )
  }
}

let exiting = false
async function abort(reason: string, code: number): Promise<never> {
  if (!exiting) {
    exiting = true
    console.error(`bench: ${reason}; cleaning up`)
    await unwind()
  }
  process.exit(code)
}

process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})
process.on('SIGINT', () => void abort('interrupted', 130))
process.on('SIGTERM', () => void abort('terminated', 143))
setTimeout(() => void abort(`over the ${settings.totalMaxMs / 1000} s limit`, 1), settings.totalMaxMs).unref()

// ---------------------------------------------------------------------------------------------------
// Services shared by every run.

const admin = postgres(services.postgres, { max: 1, onnotice: () => {} })
defer(() => admin.end({ timeout: 5 }))
let redis: Redis | undefined

async function deleteRedisPrefix(prefix: string): Promise<void> {
  redis ??= new Redis(services.redis, { maxRetriesPerRequest: 1, lazyConnect: true })
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 5000)
    cursor = next
    if (keys.length > 0) await redis.del(...keys)
  } while (cursor !== '0')
}
defer(async () => redis?.disconnect())

/** A throwaway database, named gw_bench_* so that anything left behind is recognisably ours. */
async function createDatabase(): Promise<{ name: string; url: string; drop: () => Promise<void> }> {
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

async function deleteExchange(exchange: string): Promise<void> {
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

// ---------------------------------------------------------------------------------------------------
// Child processes.

interface Child {
  readonly process: ChildProcess
  /** Everything it printed, for the report (bounded). */
  readonly output: string[]
  readonly exited: Promise<number | null>
}

function startChild(
  cwd: string,
  args: readonly string[],
  env: Record<string, string>,
  nodeFlags: string[] = [],
): Child {
  const child = spawn(process.execPath, [...nodeFlags, '--import', 'tsx', ...args], {
    cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.add(child)
  const output: string[] = []
  const keep = (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n'))
      if (line.trim() && output.length < 200) output.push(line.trim())
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code) => {
      children.delete(child)
      resolve(code)
    }),
  )
  return { process: child, output, exited }
}

/** SIGTERM, then SIGKILL if it has not exited within 10 s (the contract's shutdown bound). */
async function stopChild(child: Child): Promise<void> {
  if (child.process.exitCode !== null || child.process.signalCode !== null) return
  child.process.kill('SIGTERM')
  const code = await Promise.race([child.exited, sleep(10_000, 'timeout' as const, { ref: false })])
  if (code === 'timeout') {
    child.process.kill('SIGKILL')
    await child.exited
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

async function waitHealthy(port: number, child: Child, name: string): Promise<void> {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    if (child.process.exitCode !== null)
      throw new Error(`${name} exited with ${child.process.exitCode}:\n${child.output.join('\n')}`)
    const status = await fetch(`http://${host}:${port}/health`, { signal: AbortSignal.timeout(1000) }).then(
      (response) => response.status,
      () => 0,
    )
    if (status === 200) return
    await sleep(100)
  }
  throw new Error(`${name} was not healthy within 30 s:\n${child.output.join('\n')}`)
}

// ---------------------------------------------------------------------------------------------------
// CPU accounting from /proc: the server process, and the Postgres backends serving its database.

const ticksPerSecond = 100 // USER_HZ on Linux

function cpuMsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the parenthesised command: state is the first, utime the 12th, stime the 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond
  } catch {
    return 0
  }
}

/** Backends show `postgres: <user> <database> <address> <state>` as their command line. */
function backendsCpuMs(database: string): number {
  let total = 0
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'latin1').includes(` ${database} `))
        total += cpuMsOf(Number(entry))
    } catch {
      // Gone between the listing and the read.
    }
  }
  return total
}

// ---------------------------------------------------------------------------------------------------
// The load: distinct Stripe events, signed with Stripe's SDK before the clock starts.

const secret = `whsec_${randomBytes(24).toString('base64url')}`

/** A payment_intent.succeeded shaped like Stripe's (API 2025-03-31), about 1.7 KB as an event. */
function paymentIntent(index: number, created: number): Record<string, unknown> {
  const id = `pi_3${randomBytes(12).toString('hex')}`
  const amount = 1000 + (index % 9000)
  return {
    id,
    object: 'payment_intent',
    amount,
    amount_capturable: 0,
    amount_details: { tip: {} },
    amount_received: amount,
    application: null,
    application_fee_amount: null,
    automatic_payment_methods: { allow_redirects: 'always', enabled: true },
    canceled_at: null,
    cancellation_reason: null,
    capture_method: 'automatic_async',
    client_secret: `${id}_secret_${randomBytes(12).toString('hex')}`,
    confirmation_method: 'automatic',
    created,
    currency: 'usd',
    customer: `cus_${randomBytes(7).toString('hex')}`,
    description: 'Order from the bench shop',
    invoice: null,
    last_payment_error: null,
    latest_charge: `ch_3${randomBytes(12).toString('hex')}`,
    livemode: false,
    metadata: { order_id: `order_${index}`, cart: 'bench' },
    next_action: null,
    on_behalf_of: null,
    payment_method: `pm_1${randomBytes(12).toString('hex')}`,
    payment_method_configuration_details: { id: `pmc_1${randomBytes(12).toString('hex')}`, parent: null },
    payment_method_options: {
      card: { installments: null, mandate_options: null, network: null, request_three_d_secure: 'automatic' },
      link: { persistent_token: null },
    },
    payment_method_types: ['card', 'link'],
    processing: null,
    receipt_email: 'jenny.rosen@example.com',
    review: null,
    setup_future_usage: null,
    shipping: null,
    source: null,
    statement_descriptor: null,
    statement_descriptor_suffix: null,
    status: 'succeeded',
    transfer_data: null,
    transfer_group: null,
  }
}

// Stripe's own delivery headers, besides Content-Type and Stripe-Signature (the gateway stores them all).
const stripeHeaders = {
  'User-Agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
  Accept: '*/*; q=0.5, application/xml',
  'Cache-Control': 'no-cache',
}

interface Batch {
  readonly requests: Buffer[]
  readonly eventIds: string[]
  readonly bodyBytes: number
}

function signedBatch(count: number, port: number): Batch {
  const tag = randomBytes(5).toString('hex')
  const created = Math.floor(Date.now() / 1000)
  const requests: Buffer[] = []
  const eventIds: string[] = []
  let bodyBytes = 0
  for (let index = 0; index < count; index++) {
    const eventId = `evt_1${tag}${String(index).padStart(13, '0')}`
    const event = stripeEvent('payment_intent.succeeded', paymentIntent(index, created), eventId)
    const { body, headers } = stripeDelivery(event, { secret })
    requests.push(
      buildRequest({ host, port, path: '/webhooks/stripe', headers: { ...stripeHeaders, ...headers }, body }),
    )
    eventIds.push(eventId)
    bodyBytes += Buffer.byteLength(body)
  }
  return { requests, eventIds, bodyBytes: Math.round(bodyBytes / Math.max(1, count)) }
}

const load = (port: number, requests: Buffer[]): Promise<LoadResult> =>
  runLoad({
    host,
    port,
    requests,
    connections: settings.connections,
    requestTimeoutMs: settings.requestTimeoutMs,
    maxDurationMs: settings.runMaxMs,
  })

// ---------------------------------------------------------------------------------------------------
// One run: a server in a child process, warmed up, then measured.

interface Scenario {
  readonly label: string
  readonly kind: 'baseline-node' | 'baseline-hono' | 'gateway'
  /** Gateway environment on top of the defaults (ROLE=api). */
  readonly env?: Readonly<Record<string, string>>
  /** ROLE=all: also wait for the worker to publish everything. */
  readonly drain?: boolean
  readonly profile?: boolean
}

interface Measured {
  readonly scenario: Scenario
  readonly load: LoadResult
  readonly bodyBytes: number
  readonly serverCpuMs: number
  readonly postgresCpuMs: number
  /** Gateway only. */
  readonly storage?: {
    /** Rows of the measured events found in the database. */
    readonly rows: number
    /** Every row, warm-up included. */
    readonly totalRows: number
    /** Accepted, warm-up included: the rows there must be. */
    readonly expectedTotal: number
    /** Sent without an "accepted" answer, warm-up included: each may or may not have been stored. */
    readonly unanswered: number
    /** Answered "accepted" but not in the database. */
    readonly lost: number
    /** INSERT statements, i.e. group commits, during the measurement (counted by the bench's trigger). */
    readonly commits: number
    /**
     * pg_stat_database.xact_commit over the database's life minus every INSERT: migrations, health
     * checks, statement preparation and the bench's own queries (ROLE=api only; the worker commits too).
     */
    readonly otherTransactions: number | undefined
  }
  readonly drain?: {
    /** Events/s the worker published while the measured load ran, and after it, until done or the limit. */
    readonly duringLoadPerSecond: number
    readonly afterLoadPerSecond: number
    readonly published: number
    readonly total: number
    readonly seconds: number
  }
  readonly logs: readonly string[]
  readonly profile?: ProfileSummary
}

const childEnv = (env: Record<string, string>): Record<string, string> => ({
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: process.env.HOME ?? '/tmp',
  NODE_ENV: 'production',
  ...env,
})

async function runBaseline(scenario: Scenario): Promise<Measured> {
  const mark = cleanups.length
  try {
    const port = await freePort()
    const args = ['bench/baseline.ts', ...(scenario.kind === 'baseline-hono' ? ['--hono'] : [])]
    const child = startChild(
      root,
      args,
      childEnv({ PORT: String(port), HOST: host, STRIPE_WEBHOOK_SECRET: secret }),
    )
    defer(() => stopChild(child))
    await waitHealthy(port, child, scenario.label)
    await load(port, signedBatch(settings.warmup, port).requests)
    const batch = signedBatch(settings.requests, port)
    const cpuBefore = cpuMsOf(child.process.pid!)
    const result = await load(port, batch.requests)
    return {
      scenario,
      load: result,
      bodyBytes: batch.bodyBytes,
      serverCpuMs: cpuMsOf(child.process.pid!) - cpuBefore,
      postgresCpuMs: 0,
      logs: child.output,
    }
  } finally {
    await unwind(mark)
  }
}

async function runGateway(scenario: Scenario): Promise<Measured> {
  const mark = cleanups.length
  try {
    const database = await createDatabase()
    defer(database.drop)
    const databaseName = database.name
    const exchange = uniqueName('webhooks_bench')
    const redisPrefix = `${uniqueName('bench')}:`
    defer(() => deleteExchange(exchange))
    defer(() => deleteRedisPrefix(redisPrefix))

    const sql = postgres(database.url, { max: 1, onnotice: () => {} })
    defer(() => sql.end({ timeout: 5 }))

    const port = await freePort()
    const keptProfileDir = flags['profile-dir']
    const profileDir = !scenario.profile
      ? undefined
      : keptProfileDir
        ? (mkdirSync(keptProfileDir, { recursive: true }), keptProfileDir)
        : mkdtempSync(join(os.tmpdir(), 'gateway-profile-'))
    if (profileDir && !keptProfileDir) defer(async () => rmSync(profileDir, { recursive: true, force: true }))
    const child = startChild(
      gatewayDir,
      ['src/main.ts'],
      childEnv({
        ROLE: 'api',
        HOST: host,
        PORT: String(port),
        DATABASE_URL: database.url,
        REDIS_URL: services.redis,
        REDIS_PREFIX: redisPrefix,
        AMQP_URL: services.amqp,
        AMQP_EXCHANGE: exchange,
        STRIPE_WEBHOOK_SECRET: secret,
        LOG_LEVEL: 'warn',
        // A safety net: the keys expire even if the cleanup below never runs.
        IDEMPOTENCY_TTL_SECONDS: '3600',
        ...gatewayEnv,
        ...scenario.env,
      }),
      profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
    )
    defer(() => stopChild(child))
    await waitHealthy(port, child, scenario.label)

    // Counts INSERT statements, i.e. group commits (each is its own transaction), exactly and for next to
    // nothing: a statement trigger beside the gateway's own, bumping a sequence, which takes no row lock
    // and is visible at once. (LISTEN on the gateway's channel would cost Postgres a transaction per
    // notification; pg_stat_database lags up to 10 s while backends are busy; pg_stat_statements is absent.)
    await sql.unsafe(`
      CREATE SEQUENCE bench_insert_statements;
      CREATE FUNCTION bench_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM nextval('bench_insert_statements');
        RETURN NULL;
      END
      $$;
      CREATE TRIGGER bench_count_insert AFTER INSERT ON webhooks
        FOR EACH STATEMENT EXECUTE FUNCTION bench_count_insert();`)
    const published = async () => {
      const [row] = await sql`SELECT count(*)::int AS n FROM webhooks WHERE status = 'published'`
      return Number(row?.n ?? 0)
    }
    const inserts = async () => {
      const [row] =
        await sql`SELECT coalesce(last_value, 0)::int AS n FROM pg_sequences WHERE sequencename = 'bench_insert_statements'`
      return Number(row?.n ?? 0)
    }

    const warmup = signedBatch(settings.warmup, port)
    const warmupResult = await load(port, warmup.requests)
    const warmupAccepted = warmupResult.outcomes.filter((outcome) => outcome === Outcome.accepted).length
    const batch = signedBatch(settings.requests, port)
    const insertsBefore = await inserts()
    const publishedBeforeLoad = scenario.drain ? await published() : 0
    const serverCpuBefore = cpuMsOf(child.process.pid!)
    const postgresCpuBefore = backendsCpuMs(databaseName)
    const loadStartedUs = Number(process.hrtime.bigint() / 1000n)
    const result = await load(port, batch.requests)
    const loadEndedUs = Number(process.hrtime.bigint() / 1000n)
    const serverCpuMs = cpuMsOf(child.process.pid!) - serverCpuBefore
    const postgresCpuMs = backendsCpuMs(databaseName) - postgresCpuBefore
    const commits = (await inserts()) - insertsBefore
    const lastAnswerAt = Date.now()

    let drain: Measured['drain']
    if (scenario.drain) {
      const publishedAfterLoad = await published()
      const [row] = await sql`SELECT count(*)::int AS n FROM webhooks`
      const total = Number(row?.n ?? 0)
      let publishedNow = publishedAfterLoad
      while (publishedNow < total && Date.now() < lastAnswerAt + settings.drainMaxMs) {
        await sleep(250)
        publishedNow = await published()
      }
      const seconds = (Date.now() - lastAnswerAt) / 1000
      drain = {
        duringLoadPerSecond: ((publishedAfterLoad - publishedBeforeLoad) * 1000) / result.elapsedMs,
        afterLoadPerSecond: (publishedNow - publishedAfterLoad) / seconds,
        published: publishedNow,
        total,
        seconds,
      }
    }

    await stopChild(child)
    const insertsInAll = await inserts()
    const acked = batch.eventIds.filter((_, index) => result.outcomes[index] === Outcome.accepted)
    const [stored] = await sql`
      SELECT count(*)::int AS total,
             count(*) FILTER (WHERE event_key = ANY(${batch.eventIds}::text[]))::int AS rows,
             count(*) FILTER (WHERE event_key = ANY(${acked}::text[]))::int AS acked
      FROM webhooks`
    await sql.end({ timeout: 5 })

    // The cross-check: backends report statistics when they exit (while busy, only once a second and
    // up to 10 s late), so xact_commit is exact once every connection to the database is gone.
    let otherTransactions: number | undefined
    if (!scenario.drain) {
      for (let tries = 0; tries < 50; tries++) {
        const [row] =
          await admin`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = ${databaseName}`
        if (row?.n === 0) break
        await sleep(100)
      }
      const [row] =
        await admin`SELECT xact_commit::int AS n FROM pg_stat_database WHERE datname = ${databaseName}`
      otherTransactions = Number(row?.n ?? 0) - insertsInAll
    }
    const profile = profileDir
      ? summarizeProfiles(profileDir, root, { fromUs: loadStartedUs, toUs: loadEndedUs })
      : undefined
    return {
      scenario,
      load: result,
      bodyBytes: batch.bodyBytes,
      serverCpuMs,
      postgresCpuMs,
      storage: {
        rows: stored!.rows,
        totalRows: stored!.total,
        expectedTotal: warmupAccepted + acked.length,
        unanswered: warmup.requests.length - warmupAccepted + (batch.requests.length - acked.length),
        lost: acked.length - stored!.acked,
        commits,
        otherTransactions,
      },
      ...(drain ? { drain } : {}),
      logs: child.output,
      ...(profile ? { profile } : {}),
    }
  } finally {
    await unwind(mark)
  }
}

// ---------------------------------------------------------------------------------------------------
// Report.

const count = (result: LoadResult, outcome: number) =>
  result.outcomes.filter((value) => value === outcome).length
const errorsOf = (result: LoadResult) => result.outcomes.length - count(result, Outcome.accepted)
const perSecond = (result: LoadResult) => (count(result, Outcome.accepted) * 1000) / result.elapsedMs
const ms = (value: number) => (Number.isFinite(value) ? value.toFixed(1) : '-')
const thousands = (value: number) => Math.round(value).toLocaleString('en-US')

function errorDetail(result: LoadResult): string {
  const parts: string[] = []
  for (const [status, number] of result.statuses)
    if (status < 200 || status >= 300) parts.push(`${number}x ${status}`)
  const other = count(result, Outcome.otherSuccess)
  const transport = count(result, Outcome.transportError)
  const unsent = count(result, Outcome.notSent)
  if (other) parts.push(`${other}x 2xx not "accepted"`)
  if (transport) parts.push(`${transport}x connection error or timeout`)
  if (unsent) parts.push(`${unsent}x not sent (time limit)`)
  return parts.join(', ')
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => row[column]!.length)),
  )
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) => (column === 0 ? cell.padEnd(widths[0]!) : cell.padStart(widths[column]!)))
      .join('  ')
  return [line(header), ...rows.map(line)].join('\n')
}

function report(measured: readonly Measured[], reference: Measured | undefined): string {
  const header = [
    'receiver',
    'req/s',
    'x base',
    'p50 ms',
    'p99 ms',
    'max ms',
    'errors',
    'rows',
    'lost',
    'commits',
    'rows/commit',
    'CPU us/req srv+pg+gen',
  ]
  const rows = measured.map(({ scenario, load: result, storage, serverCpuMs, postgresCpuMs }) => {
    const answered = Math.max(1, result.latenciesMs.length)
    const perRequest = (cpuMs: number) => String(Math.round((cpuMs * 1000) / answered))
    return [
      scenario.label,
      thousands(perSecond(result)),
      reference ? (perSecond(result) / perSecond(reference.load)).toFixed(2) : '-',
      ms(quantile(result.latenciesMs, 0.5)),
      ms(quantile(result.latenciesMs, 0.99)),
      ms(quantile(result.latenciesMs, 1)),
      String(errorsOf(result)),
      storage ? String(storage.rows) : '-',
      storage ? String(storage.lost) : '-',
      storage ? String(storage.commits) : '-',
      storage && storage.commits > 0 ? (storage.rows / storage.commits).toFixed(1) : '-',
      [perRequest(serverCpuMs), storage ? perRequest(postgresCpuMs) : '-', perRequest(result.cpuMs)].join(
        '+',
      ),
    ]
  })
  return table(header, rows)
}

// ---------------------------------------------------------------------------------------------------
// Main.

async function main(): Promise<number> {
  const started = Date.now()
  const [pg] = await admin`
    SELECT current_setting('server_version') AS version, current_setting('synchronous_commit') AS sync,
           current_setting('fsync') AS fsync`
  const loadBefore = os.loadavg()
  console.log(
    `intake bench: N=${settings.requests} measured + ${settings.warmup} warm-up requests per run, ` +
      `C=${settings.connections} keep-alive connections, loopback`,
  )
  console.log(
    `node ${process.version}, ${os.availableParallelism()} CPUs, PostgreSQL ${pg?.version} ` +
      `(synchronous_commit=${pg?.sync}, fsync=${pg?.fsync}), load average ${loadBefore.map((n) => n.toFixed(2)).join(' ')}`,
  )

  const defaults = loadConfig({})
  const pool = String(defaults.databasePoolSize)
  const groups: { title: string; scenarios: Scenario[] }[] = [
    {
      title: 'Intake against a receiver that stores nothing (gateway: ROLE=api, defaults)',
      scenarios: [
        { label: 'baseline: node:http, verify only', kind: 'baseline-node' },
        ...(quick ? [] : [{ label: 'baseline: hono, verify only', kind: 'baseline-hono' as const }]),
        {
          label: `gateway, defaults: batch=${defaults.intakeMaxBatch} conc=${defaults.intakeConcurrency} pool=${pool}`,
          kind: 'gateway',
          profile: flags.profile,
        },
      ],
    },
    {
      title: 'Group commit: one INSERT per request (INTAKE_MAX_BATCH=1) vs the default batching',
      scenarios: [
        {
          label: `gateway, batch=1 conc=${pool} pool=${pool}`,
          kind: 'gateway',
          env: { INTAKE_MAX_BATCH: '1', INTAKE_CONCURRENCY: pool, DATABASE_POOL_SIZE: pool },
        },
      ],
    },
  ]
  if (settings.sweep.length > 0)
    groups.push({
      title: 'INTAKE_CONCURRENCY = DATABASE_POOL_SIZE (default batch)',
      scenarios: settings.sweep.map((value) => ({
        label: `gateway, conc=${value} pool=${value}`,
        kind: 'gateway' as const,
        env: { INTAKE_CONCURRENCY: String(value), DATABASE_POOL_SIZE: String(value) },
      })),
    })
  if (!quick)
    groups.push({
      title:
        'The worker in the same process (ROLE=all): what publishing costs the intake, and how fast it drains',
      scenarios: [
        {
          label: `gateway ROLE=all, WORKER_CONCURRENCY=${defaults.workerConcurrency}`,
          kind: 'gateway',
          env: { ROLE: 'all' },
          drain: true,
        },
        {
          label: 'gateway ROLE=all, WORKER_CONCURRENCY=8',
          kind: 'gateway',
          env: { ROLE: 'all', WORKER_CONCURRENCY: '8' },
          drain: true,
        },
      ],
    })

  const all: Measured[] = []
  for (const group of groups) {
    for (const scenario of group.scenarios) {
      process.stderr.write(`  running: ${scenario.label} ...\n`)
      all.push(scenario.kind === 'gateway' ? await runGateway(scenario) : await runBaseline(scenario))
    }
  }

  const reference = all.find((measured) => measured.scenario.kind === 'baseline-node')
  const bodyBytes = all[0]?.bodyBytes ?? 0
  console.log(`body: Stripe payment_intent.succeeded event, ${bodyBytes} bytes, signed with the stripe SDK`)
  let failed = false
  for (const group of groups) {
    const measured = all.filter((entry) => group.scenarios.includes(entry.scenario))
    console.log(`\n${group.title}`)
    console.log(report(measured, reference))
    for (const entry of measured) {
      const detail = errorDetail(entry.load)
      if (detail) console.log(`  ${entry.scenario.label}: ${detail}`)
      const storage = entry.storage
      // A request that timed out may still have been committed (the provider's retry is a duplicate);
      // one answered "accepted" must be there, and nothing else may be.
      if (
        storage &&
        (storage.lost > 0 ||
          storage.totalRows < storage.expectedTotal ||
          storage.totalRows > storage.expectedTotal + storage.unanswered)
      ) {
        failed = true
        console.log(
          `  ${entry.scenario.label}: STORAGE MISMATCH: ${storage.totalRows} rows, expected ${storage.expectedTotal}; ` +
            `${storage.lost} acknowledged but missing`,
        )
      } else if (storage && storage.totalRows > storage.expectedTotal)
        console.log(
          `  ${entry.scenario.label}: ${storage.totalRows - storage.expectedTotal} stored without a 200 reaching ` +
            `the client (allowed: the provider's retry gets "duplicate")`,
        )
      if (entry.drain) {
        const { duringLoadPerSecond, afterLoadPerSecond, published, total, seconds } = entry.drain
        const left = total - published
        console.log(
          `  ${entry.scenario.label}: the worker published ${thousands(duringLoadPerSecond)} events/s during ` +
            `the load and ${thousands(afterLoadPerSecond)}/s after it; ${published} of ${total} published ` +
            `${seconds.toFixed(1)} s after the last answer` +
            (left > 0 && afterLoadPerSecond > 0
              ? `, ~${Math.round(left / afterLoadPerSecond)} s more to drain`
              : ''),
        )
      }
      const warnings = entry.logs.filter((line) => !line.includes('"level":"info"'))
      if (warnings.length > 0)
        console.log(
          `  ${entry.scenario.label}: ${warnings.length} log lines, first: ${warnings[0]!.slice(0, 200)}`,
        )
    }
  }

  const checked = all.filter((entry) => entry.storage?.otherTransactions !== undefined)
  if (checked.length > 0)
    console.log(
      `\ncross-check: transactions other than INSERTs over each database's life (pg_stat_database.xact_commit ` +
        `minus INSERTs; migrations, health checks, statement preparation, the bench's queries): ` +
        checked.map((entry) => entry.storage!.otherTransactions).join(', '),
    )
  const byLabel = (prefix: string) => all.find((entry) => entry.scenario.label.startsWith(prefix))
  const grouped = byLabel('gateway, defaults')
  const single = byLabel('gateway, batch=1')
  if (grouped && single)
    console.log(
      `group commit: ${(perSecond(grouped.load) / perSecond(single.load)).toFixed(2)}x the req/s of one INSERT ` +
        `per request, ${(grouped.storage!.rows / Math.max(1, grouped.storage!.commits)).toFixed(1)} rows per commit`,
    )
  const sweep = all.filter((entry) => entry.scenario.label.startsWith('gateway, conc='))
  if (sweep.length > 0) {
    const best = sweep.reduce((a, b) => (perSecond(b.load) > perSecond(a.load) ? b : a))
    console.log(
      `best of the sweep: ${best.scenario.label.replace('gateway, ', '')} at ${thousands(perSecond(best.load))} req/s ` +
        `(sweep: ${sweep.map((entry) => `${entry.scenario.env?.INTAKE_CONCURRENCY}=${thousands(perSecond(entry.load))}`).join(', ')})`,
    )
  }
  for (const entry of all)
    if (entry.profile) {
      console.log(
        `\nwhere the gateway's main thread went during the measurement (${entry.scenario.label}): ` +
          `busy ${(100 * entry.profile.busy).toFixed(0)}% of the time; self time as a share of the busy time`,
      )
      console.log('by source:')
      for (const line of entry.profile.sources) console.log(`  ${line}`)
      console.log('by function:')
      for (const line of entry.profile.functions) console.log(`  ${line}`)
    }
  console.log(
    `\ntook ${((Date.now() - started) / 1000).toFixed(0)} s; load average now ${os
      .loadavg()
      .map((n) => n.toFixed(2))
      .join(' ')}`,
  )
  return failed ? 1 : 0
}

let code = 1
try {
  code = await main()
} catch (error) {
  console.error(`bench: ${(error as Error).stack ?? String(error)}`)
} finally {
  await unwind()
}
process.exit(code)
