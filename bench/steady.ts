import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import type postgres from 'postgres'
import { defer, mark, unwind } from './cleanup.ts'
import { freePort, startServer, stopServer, waitHealthy, type Child } from './child.ts'
import { countOf, Outcome, quantile, runOpenLoop, timelineCsv } from './load.ts'
import { perSecond, renderWakeCost, type WakeCost } from './wake-cost.ts'
import { mainThreadWakes, peakRssBytes, processCpuMs, postgresCpuMs, threadCpuMs } from './measure.ts'
import type { DestinationsContext } from './destinations.ts'
import { summarizeProfiles, type ProfileSummary } from './profile.ts'
import { stripePaymentIntent, type Secrets } from './payloads.ts'
import { createDatabase, deleteExchange, deleteRedisPrefix, services, uniqueName } from './resources.ts'

/**
 * The steady section: the whole way at the rates users run, not only intake. The gateway runs with npm
 * start's defaults (ROLE=all, one process), one HTTP destination for `payment.*` (an endpoint process that
 * verifies every request with `standardwebhooks`) and a RabbitMQ consumer bound to `payment.completed` (in
 * the same process as the endpoint, not in the load generator's). Signed Stripe `payment_intent.succeeded`
 * deliveries are sent open loop at each rate: every one at its time, whatever the answers.
 *
 * Per rate, from the first send until the last event reached both the consumer and the endpoint: the answer
 * time (from when each request was due), received -> on RabbitMQ and received -> the endpoint's answer (from
 * the CloudEvent's `time`, the gateway's clock at receipt, to the arrival, on the same machine), CPU per
 * webhook of the gateway process and of every Postgres process with the idle cost subtracted (measured over
 * a quiet spell first), and the statements the gateway sent per webhook (pg_stat_statements, when loaded).
 */

/**
 * What serves the load: the gateway, or the hand-written pipeline (bench/servers/handwritten-pipeline.ts),
 * the same I/O per webhook with nothing else, whose CPU is the machine's floor for this way.
 */
export const steadyServers = ['gateway', 'handwritten'] as const
export type SteadyServer = (typeof steadyServers)[number]

export interface SteadyRun {
  readonly server: SteadyServer
  readonly rate: number
  /** Which of the `--repeat` rounds (1, 2, ...). */
  readonly round: number
  readonly seconds: number
  readonly sent: number
  readonly accepted: number
  readonly failed: number
  readonly ack: Percentiles
  readonly rabbitmq: Arrived
  readonly destination: Arrived
  /** From the first send to the last arrival. */
  readonly windowSeconds: number
  /** Idle cost, share of one core, measured before the load. */
  readonly idle: { readonly gateway: number; readonly postgres: number | undefined }
  /** CPU per webhook with the idle cost of the window subtracted, in us. */
  readonly cpuUs: { readonly gateway: number; readonly postgres: number | undefined }
  /**
   * Statements the gateway's database ran per webhook, the WAL they wrote per webhook, and where Postgres' time
   * went, by kind of statement; undefined without pg_stat_statements.
   */
  readonly statements?: {
    readonly perWebhook: number
    readonly walBytesPerWebhook?: number | undefined
    readonly top: readonly StatementCount[]
  }
  readonly peakRssMb?: number
  /** The gateway's CPU over the window by thread (main, V8's compiler and GC workers, libuv), in ms. */
  readonly threadsMs?: Readonly<Record<string, number>>
  /**
   * How often the server's main thread was woken per webhook (it slept in epoll and something arrived or a
   * timer fired), with its idle rate of wakes subtracted. At a trickle a wake costs far more than the work it
   * wakes for on a virtual machine (see bench/wake-cost.ts), so this is much of the CPU per webhook at 20/s.
   */
  readonly wakesPerWebhook?: number
  /**
   * CPU per webhook of what else shares the machine over the window, idle not subtracted: RabbitMQ (when its
   * beam.smp is visible), the endpoint with the consumer, the load generator. The gateway's budget is what
   * they leave.
   */
  readonly othersUs?: { readonly rabbitmq: number; readonly endpoint: number; readonly generator: number }
  /** With --profile: where the gateway's main thread spent the window. */
  readonly profile?: ProfileSummary
  readonly error?: string
}

export interface Percentiles {
  readonly p50: number
  readonly p99: number
  readonly max: number
}

export interface Arrived extends Percentiles {
  /** Distinct events that arrived; every accepted webhook has one on each side. */
  readonly distinct: number
  /** Arrivals beyond the first of an event (the same id again). */
  readonly repeated: number
}

export interface StatementCount {
  readonly perWebhook: number
  /** Time Postgres spent executing it, per webhook (planning and commit not included), in us. */
  readonly usPerWebhook: number
  /** WAL it wrote, per webhook, in bytes. */
  readonly walBytesPerWebhook?: number
  /** Rows it wrote or read per call, on average. */
  readonly rowsPerCall?: number
  readonly query: string
}

/** One statement's figures over a window, as pg_stat_statements counts them (differences of two readings). */
export interface StatementDiff {
  readonly query: string
  readonly calls: number
  readonly ms: number
  readonly rows: number
  readonly walBytes: number
}

/**
 * A statement's kind: its text with every parameter number alike and each list of rows, `($1, $2), ($3, $4)`,
 * as one. A group commit of 3 webhooks and one of 40 are two texts to pg_stat_statements (the INSERT's VALUES
 * list has as many rows as the group), and one kind of work.
 */
export const statementKind = (query: string): string =>
  query
    .replace(/\s+/g, ' ')
    .replace(/\$\d+/g, '$n')
    .replace(/\(\$n(?:, ?\$n)*\)(?:, ?\(\$n(?:, ?\$n)*\))*/g, '(...)')

/**
 * Statements grouped by kind, the costliest first (Postgres' time executing them per webhook): calls, time,
 * WAL and rows per call for each, over `webhooks` webhooks. Sorting by calls hid what a grouped statement
 * costs: a mark of 500 webhooks a second is few calls and a fifth of Postgres' time.
 */
export function statementKinds(
  diffs: readonly StatementDiff[],
  webhooks: number,
  limit = 8,
): StatementCount[] {
  const kinds = new Map<string, StatementDiff>()
  for (const diff of diffs) {
    if (diff.calls <= 0) continue
    const kind = statementKind(diff.query)
    const sum = kinds.get(kind)
    kinds.set(
      kind,
      sum
        ? {
            query: kind,
            calls: sum.calls + diff.calls,
            ms: sum.ms + diff.ms,
            rows: sum.rows + diff.rows,
            walBytes: sum.walBytes + diff.walBytes,
          }
        : { ...diff, query: kind },
    )
  }
  const per = Math.max(1, webhooks)
  return [...kinds.values()]
    .sort((a, b) => b.ms - a.ms || b.calls - a.calls)
    .slice(0, limit)
    .map((kind) => ({
      perWebhook: kind.calls / per,
      usPerWebhook: (kind.ms * 1000) / per,
      walBytesPerWebhook: kind.walBytes / per,
      rowsPerCall: kind.rows / kind.calls,
      // Its start and its end: two looks of the safety net share their first hundred characters.
      query: kind.query.length > 130 ? `${kind.query.slice(0, 85)} … ${kind.query.slice(-40)}` : kind.query,
    }))
}

/** What the section needs from the bench: the same as the destinations section. */
export type SteadyContext = DestinationsContext

const host = '127.0.0.1'
/** Each rate sends for the run's duration, and at least this many webhooks (so p99 means something). */
const minimumWebhooks = 500
const idleMs = 5000
/**
 * Before each rate, the server handles this many webhooks at `settleRate`, so that what is measured is a
 * process that has been running rather than one just started. V8 compiles a function with its optimizing
 * compiler once it has run often enough: after the rate's own 2 s warm-up (40 webhooks at 20/s, 400 at
 * 200/s) the gateway was still compiling about 170 functions in the measured window, 1.3 ms of compiler
 * threads' CPU per webhook at 200/s and the main thread running the slower code meanwhile. A one-time cost
 * of the first minutes after a start, not of each webhook. The rate keeps intake far from saturated, so
 * the worker's hold-back (pipeline/worker.ts) has nothing to remember of it.
 */
const settleWebhooks = 3000
const settleRate = 300

const percentiles = (values: readonly number[]): Percentiles => {
  const sorted = Float64Array.from(values).sort()
  return { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: quantile(sorted, 1) }
}

/** Calls per statement in `database`, by query id; undefined when pg_stat_statements is not loaded. */
async function statementCalls(admin: postgres.Sql, database: string) {
  try {
    const rows = await admin<
      { queryid: string; query: string; calls: string; ms: number; rows: string; wal: string }[]
    >`
      SELECT queryid::text, query, calls::text, total_exec_time AS ms, rows::text, wal_bytes::text AS wal
      FROM pg_stat_statements
      WHERE dbid = (SELECT oid FROM pg_database WHERE datname = ${database})`
    return new Map(
      rows.map((row) => [
        row.queryid,
        {
          query: row.query,
          calls: Number(row.calls),
          ms: Number(row.ms),
          rows: Number(row.rows),
          walBytes: Number(row.wal),
        },
      ]),
    )
  } catch {
    return undefined
  }
}

async function enableStatements(admin: postgres.Sql): Promise<boolean> {
  try {
    await admin`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`
    await admin`SELECT 1 FROM pg_stat_statements LIMIT 1`
    return true
  } catch {
    return false
  }
}

/** The load at every rate, one fresh server each (the gateway, then the reference), against one endpoint process. */
export async function benchSteady(
  context: SteadyContext,
  rates: readonly number[],
  servers: readonly SteadyServer[],
  rounds = 1,
): Promise<SteadyRun[]> {
  const receiverPort = await freePort(host)
  const receiver = startServer({
    name: 'receiver',
    cwd: context.root,
    script: 'bench/servers/receiver.ts',
    env: context.baseEnv(receiverPort),
    logFile: join(context.logDir, 'steady-receiver.log'),
  })
  defer('stop the receiver', () => stopServer(receiver))
  const receiverUrl = `http://${host}:${receiverPort}`
  for (let tries = 0; ; tries++) {
    const ready = await fetch(`${receiverUrl}/stats`).then(
      (response) => response.ok,
      () => false,
    )
    if (ready) break
    if (tries > 100) throw new Error('steady: the receiver did not start')
    await sleep(100)
  }
  const withStatements = await enableStatements(context.admin)
  if (!withStatements)
    console.error('steady: pg_stat_statements is not loaded (shared_preload_libraries): no statement counts')
  const runs: SteadyRun[] = []
  // Rounds alternate the servers at each rate, so that a spell of a slower machine falls on both.
  for (const rate of rates)
    for (let round = 1; round <= rounds; round++)
      for (const server of servers) {
        const since = mark()
        // Files of a round carry its number when there are several.
        const run = { server, rate, round, tag: rounds > 1 ? `-${round}` : '' }
        try {
          runs.push(await runRate(context, run, receiverUrl, receiver.pid, withStatements))
        } catch (error) {
          runs.push({ server, rate, round, error: (error as Error).message } as SteadyRun)
        } finally {
          await unwind(since)
        }
        logRun(runs[runs.length - 1]!, rounds > 1 ? ` (round ${round})` : '')
      }
  return runs
}

function logRun(run: SteadyRun, round: string): void {
  const { server, rate } = run
  console.error(
    run.error
      ? `  steady ${server} ${rate}/s${round}: FAILED: ${run.error.split('\n')[0]}`
      : `  steady ${server} ${rate}/s${round}: ack p99 ${run.ack.p99.toFixed(1)} ms, rabbitmq p99 ${run.rabbitmq.p99.toFixed(1)} ms, ` +
          `destination p99 ${run.destination.p99.toFixed(1)} ms, cpu/webhook ${Math.round(run.cpuUs.gateway)} + ` +
          `${Math.round(run.cpuUs.postgres ?? 0)} us; main thread woken ${fixed(run.wakesPerWebhook)} times per ` +
          `webhook; threads ms ${JSON.stringify(run.threadsMs)}`,
  )
}

async function runRate(
  context: SteadyContext,
  { server, rate, round, tag }: { server: SteadyServer; rate: number; round: number; tag: string },
  receiverUrl: string,
  receiverPid: number,
  withStatements: boolean,
): Promise<SteadyRun> {
  const { settings, admin } = context
  const database = await createDatabase(admin)
  defer(`drop database ${database.name}`, database.drop)
  const exchange = uniqueName('bench_webhooks')
  const redisPrefix = `${uniqueName('bench')}:`
  defer(`delete exchange ${exchange}`, () => deleteExchange(exchange))
  defer(`delete redis keys ${redisPrefix}*`, () => deleteRedisPrefix(redisPrefix))

  const path = `/steady-${server}-${rate}${tag}`
  const secret = `whsec_${randomBytes(32).toString('base64')}`
  const put = async (what: string, body: unknown) => {
    const response = await fetch(`${receiverUrl}${what}`, { method: 'PUT', body: JSON.stringify(body) })
    if (!response.ok)
      throw new Error(`steady: PUT ${what} answered ${response.status}: ${await response.text()}`)
  }
  await put('/secrets', { [path]: secret })
  const file = join(context.logDir, `steady-${server}-${rate}${tag}-destinations.json`)
  writeFileSync(
    file,
    JSON.stringify([{ name: 'steady', url: `${receiverUrl}${path}`, events: ['payment.*'], secret }]),
  )

  const port = await freePort(host)
  const env: Record<string, string> = {
    ...context.baseEnv(port),
    DATABASE_URL: database.url,
    AMQP_URL: services.amqp,
    AMQP_EXCHANGE: exchange,
  }
  if (server === 'gateway') {
    Object.assign(env, {
      // Named always: unset, it would mean no Redis (the embedded defaults).
      REDIS_URL: services.redis,
      REDIS_PREFIX: redisPrefix,
      ALLOW_HTTP_DESTINATIONS: 'true',
      DESTINATION_ALLOWED_HOSTS: host,
      DESTINATIONS_FILE: file,
      ...settings.gatewayEnv,
    })
  } else {
    Object.assign(env, { DESTINATION_URL: `${receiverUrl}${path}`, DESTINATION_SECRET: secret })
  }
  const profileDir =
    settings.profile && server === 'gateway'
      ? (settings.profileDir ?? mkdtempSync(join(os.tmpdir(), 'bench-profile-')))
      : undefined
  if (profileDir) mkdirSync(profileDir, { recursive: true })
  const gateway = startServer({
    name: `steady-${server}-${rate}${tag}`,
    ...(server === 'gateway'
      ? { cwd: context.gatewayDir, script: 'src/main.ts' }
      : { cwd: context.root, script: 'bench/servers/handwritten-pipeline.ts' }),
    env,
    logFile: join(context.logDir, `steady-${rate}-${server}${tag}.log`),
    nodeFlags: [...settings.nodeFlags, ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])],
  })
  defer(`stop the steady-${rate} ${server}`, () => stopServer(gateway))
  await waitHealthy(gateway, host, port)
  const observe = () => put('/observe', { amqpUrl: services.amqp, exchange, bindings: ['payment.completed'] })

  const payload = await stripePaymentIntent.prepare(
    { host, port },
    context.secrets,
    randomBytes(4).toString('hex'),
  )
  let offset = 0
  const load = async (count: number, at = rate) => {
    const first = offset
    offset += count
    return runOpenLoop({
      host,
      port,
      rate: at,
      count,
      requestTimeoutMs: settings.requestTimeoutMs,
      request: (n) => payload.request(first + n),
      isAccepted: (body) => body.includes('"status":"accepted"'),
    })
  }
  const counts = async () => {
    const response = await fetch(`${receiverUrl}/observed`)
    const body = (await response.json()) as { destination?: Observed; rabbitmq?: Observed }
    return body
  }
  const arrivedAll = async (accepted: number, what: string) => {
    const deadline = performance.now() + settings.drainLimitMs
    for (;;) {
      const seen = await counts()
      const destination = seen.destination?.distinct ?? 0
      const rabbitmq = seen.rabbitmq?.distinct ?? 0
      if (destination >= accepted && rabbitmq >= accepted) return { seen, at: performance.now() }
      if (performance.now() > deadline)
        throw new Error(
          `steady ${rate}/s: ${what}: of ${accepted} accepted, ${rabbitmq} reached RabbitMQ and ` +
            `${destination} the destination within ${settings.drainLimitMs / 1000} s`,
        )
      await sleep(50)
    }
  }

  // Settling (see settleWebhooks), then a warm-up at the rate, every event through each time, then a quiet
  // spell that measures the idle cost.
  await observe()
  const settling = await load(settleWebhooks, settleRate)
  await arrivedAll(countOf(settling.outcomes, Outcome.accepted), 'settling')
  await observe()
  const warmup = await load(Math.max(20, Math.round((rate * settings.warmupMs) / 1000)))
  await arrivedAll(countOf(warmup.outcomes, Outcome.accepted), 'warm-up')
  await sleep(1000)
  const idleFrom = { at: performance.now(), ...cpuNow(gateway, context.postmasterPid) }
  await sleep(idleMs)
  const idleTo = { at: performance.now(), ...cpuNow(gateway, context.postmasterPid) }
  const idleSeconds = (idleTo.at - idleFrom.at) / 1000
  const idleWakes = ((idleTo.wakes ?? NaN) - (idleFrom.wakes ?? NaN)) / idleSeconds
  const idleGateway = (idleTo.gateway - idleFrom.gateway) / 1000 / idleSeconds
  const idlePostgres =
    idleTo.postgres === undefined || idleFrom.postgres === undefined
      ? undefined
      : (idleTo.postgres - idleFrom.postgres) / 1000 / idleSeconds

  await observe()
  const seconds = Math.max(settings.durationMs / 1000, minimumWebhooks / rate)
  const count = Math.round(rate * seconds)
  const statementsBefore = withStatements ? await statementCalls(admin, database.name) : undefined
  const threadsBefore = threadCpuMs(gateway.pid)
  const othersBefore = othersCpuMs(receiverPid)
  const windowStartUs = Number(process.hrtime.bigint() / 1000n)
  const before = { at: performance.now(), ...cpuNow(gateway, context.postmasterPid) }
  const measured = await load(count)
  if (settings.requestsDir && measured.timeline) {
    mkdirSync(settings.requestsDir, { recursive: true })
    writeFileSync(
      join(settings.requestsDir, `steady-${server}-${rate}${tag}.csv`),
      timelineCsv(measured.timeline),
    )
  }
  const accepted = countOf(measured.outcomes, Outcome.accepted)
  const { seen, at } = await arrivedAll(accepted, 'the load')
  if (settings.requestsDir)
    writeFileSync(
      join(settings.requestsDir, `steady-${server}-${rate}${tag}-arrivals.csv`),
      arrivalsCsv(seen),
    )
  const after = cpuNow(gateway, context.postmasterPid)
  const othersAfter = othersCpuMs(receiverPid)
  const windowEndUs = Number(process.hrtime.bigint() / 1000n)
  const threadsMs = Object.fromEntries(
    [...threadCpuMs(gateway.pid)].map(([name, ms]) => [name, ms - (threadsBefore.get(name) ?? 0)]),
  )
  const statementsAfter = withStatements ? await statementCalls(admin, database.name) : undefined
  const windowSeconds = (at - before.at) / 1000
  /** What the window's webhooks caused of `total`: the idle rate over the window taken off, per webhook. */
  const perWebhook = (total: number, idlePerSecond: number) =>
    Math.max(0, total - idlePerSecond * windowSeconds) / Math.max(1, accepted)
  const perWebhookUs = (ms: number, idleShare: number) => perWebhook(ms * 1000, idleShare * 1_000_000)
  const wakesOf = (to: number | undefined, from: number | undefined) =>
    to === undefined || from === undefined || Number.isNaN(idleWakes)
      ? {}
      : { wakesPerWebhook: perWebhook(to - from, idleWakes) }

  const arrived = (observed: Observed | undefined): Arrived => ({
    ...percentiles(observed?.latenciesMs ?? []),
    distinct: observed?.distinct ?? 0,
    repeated: (observed?.latenciesMs.length ?? 0) - (observed?.distinct ?? 0),
  })
  let statements: SteadyRun['statements']
  if (statementsBefore && statementsAfter) {
    const diffs = [...statementsAfter].map(([id, after]): StatementDiff => {
      const before = statementsBefore.get(id)
      return {
        query: after.query,
        calls: after.calls - (before?.calls ?? 0),
        ms: after.ms - (before?.ms ?? 0),
        rows: after.rows - (before?.rows ?? 0),
        walBytes: after.walBytes - (before?.walBytes ?? 0),
      }
    })
    const total = (of: (diff: StatementDiff) => number) => diffs.reduce((sum, diff) => sum + of(diff), 0)
    statements = {
      perWebhook: total((diff) => diff.calls) / Math.max(1, accepted),
      walBytesPerWebhook: total((diff) => diff.walBytes) / Math.max(1, accepted),
      top: statementKinds(diffs, accepted),
    }
  }
  const rss = peakRssBytes(gateway.pid)
  let profile: ProfileSummary | undefined
  if (profileDir) {
    await stopServer(gateway)
    profile = summarizeProfiles(profileDir, context.gatewayDir, { fromUs: windowStartUs, toUs: windowEndUs })
    if (!settings.profileDir) rmSync(profileDir, { recursive: true, force: true })
  }
  return {
    server,
    rate,
    round,
    seconds,
    sent: measured.sent,
    accepted,
    failed: measured.sent - accepted,
    ack: {
      p50: quantile(measured.latenciesMs, 0.5),
      p99: quantile(measured.latenciesMs, 0.99),
      max: quantile(measured.latenciesMs, 1),
    },
    rabbitmq: arrived(seen.rabbitmq),
    destination: arrived(seen.destination),
    windowSeconds,
    idle: { gateway: idleGateway, postgres: idlePostgres },
    cpuUs: {
      gateway: perWebhookUs(after.gateway - before.gateway, idleGateway),
      postgres:
        after.postgres === undefined || before.postgres === undefined || idlePostgres === undefined
          ? undefined
          : perWebhookUs(after.postgres - before.postgres, idlePostgres),
    },
    ...(statements ? { statements } : {}),
    threadsMs,
    ...wakesOf(after.wakes, before.wakes),
    othersUs: {
      rabbitmq: ((othersAfter.rabbitmq - othersBefore.rabbitmq) * 1000) / Math.max(1, accepted),
      endpoint: ((othersAfter.endpoint - othersBefore.endpoint) * 1000) / Math.max(1, accepted),
      generator: (measured.cpuMs * 1000) / Math.max(1, accepted),
    },
    ...(profile ? { profile } : {}),
    ...(rss === undefined ? {} : { peakRssMb: rss / 2 ** 20 }),
  }
}

interface Observed {
  readonly distinct: number
  readonly latenciesMs: number[]
  readonly arrivedAtMs: number[]
}

/** One line per event that arrived: where (rabbitmq, destination), when (unix ms), and ms after receipt. */
function arrivalsCsv(seen: { readonly destination?: Observed; readonly rabbitmq?: Observed }): string {
  const lines = ['at,arrived_unix_ms,after_receipt_ms']
  for (const where of ['rabbitmq', 'destination'] as const) {
    const observed = seen[where]
    observed?.latenciesMs.forEach((latency, index) =>
      lines.push(`${where},${observed.arrivedAtMs[index]},${latency.toFixed(1)}`),
    )
  }
  return `${lines.join('\n')}\n`
}

/** CPU so far of RabbitMQ (every beam.smp on the machine) and of the endpoint process, in ms. */
function othersCpuMs(endpointPid: number) {
  let rabbitmq = 0
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'latin1').trim() === 'beam.smp')
        rabbitmq += processCpuMs(Number(entry))
    } catch {
      // Gone meanwhile.
    }
  }
  return { rabbitmq, endpoint: processCpuMs(endpointPid) }
}

function cpuNow(gateway: Child, postmasterPid: number | undefined) {
  return {
    gateway: processCpuMs(gateway.pid),
    postgres: postgresCpuMs(postmasterPid),
    wakes: mainThreadWakes(gateway.pid),
  }
}

const fixed = (value: number | undefined, digits = 1) =>
  value === undefined || Number.isNaN(value) ? '-' : value.toFixed(digits)
const thousands = (value: number) => Math.round(value).toLocaleString('en-US')

/** The middle value, or the mean of the two middle ones. */
export function median(values: readonly number[]): number {
  const sorted = Float64Array.from(values).sort()
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

/**
 * The rounds of one server at one rate as one run: each figure the median of the rounds' (counts summed,
 * the peak RSS the highest), so that one slow spell of the machine does not make the table.
 */
function medianRun(rounds: readonly SteadyRun[]): SteadyRun {
  const of = (pick: (run: SteadyRun) => number | undefined) => {
    const values = rounds.map(pick).filter((value): value is number => value !== undefined)
    return values.length > 0 ? median(values) : undefined
  }
  const sum = (pick: (run: SteadyRun) => number) => rounds.reduce((total, run) => total + pick(run), 0)
  const percentilesOf = (pick: (run: SteadyRun) => Percentiles) => ({
    p50: of((run) => pick(run).p50)!,
    p99: of((run) => pick(run).p99)!,
    max: of((run) => pick(run).max)!,
  })
  const arrivedOf = (pick: (run: SteadyRun) => Arrived) => ({
    ...percentilesOf(pick),
    distinct: sum((run) => pick(run).distinct),
    repeated: sum((run) => pick(run).repeated),
  })
  const first = rounds[0]!
  const others = rounds.every((run) => run.othersUs)
    ? {
        rabbitmq: of((run) => run.othersUs!.rabbitmq)!,
        endpoint: of((run) => run.othersUs!.endpoint)!,
        generator: of((run) => run.othersUs!.generator)!,
      }
    : undefined
  return {
    server: first.server,
    rate: first.rate,
    round: 0,
    seconds: of((run) => run.seconds)!,
    sent: sum((run) => run.sent),
    accepted: sum((run) => run.accepted),
    failed: sum((run) => run.failed),
    ack: percentilesOf((run) => run.ack),
    rabbitmq: arrivedOf((run) => run.rabbitmq),
    destination: arrivedOf((run) => run.destination),
    windowSeconds: of((run) => run.windowSeconds)!,
    idle: { gateway: of((run) => run.idle.gateway)!, postgres: of((run) => run.idle.postgres) },
    cpuUs: { gateway: of((run) => run.cpuUs.gateway)!, postgres: of((run) => run.cpuUs.postgres) },
    ...(first.statements
      ? {
          statements: {
            perWebhook: of((run) => run.statements?.perWebhook)!,
            walBytesPerWebhook: of((run) => run.statements?.walBytesPerWebhook),
            // The kinds of the first round: which statements cost what does not change between rounds.
            top: first.statements.top,
          },
        }
      : {}),
    ...(rounds.every((run) => run.wakesPerWebhook !== undefined)
      ? { wakesPerWebhook: of((run) => run.wakesPerWebhook)! }
      : {}),
    ...(rounds.some((run) => run.peakRssMb !== undefined)
      ? { peakRssMb: Math.max(...rounds.map((run) => run.peakRssMb ?? 0)) }
      : {}),
    ...(others ? { othersUs: others } : {}),
  }
}

/** One row per server and rate: its run, or the median of its rounds (see medianRun); failed runs apart. */
function tableRows(runs: readonly SteadyRun[]): SteadyRun[] {
  const groups = new Map<string, SteadyRun[]>()
  for (const run of runs.filter((run) => !run.error)) {
    const key = `${run.rate} ${run.server}`
    groups.set(key, [...(groups.get(key) ?? []), run])
  }
  const rows = [...groups.values()].map((group) => (group.length === 1 ? group[0]! : medianRun(group)))
  return [...rows, ...runs.filter((run) => run.error)].sort(
    (a, b) => a.rate - b.rate || steadyServers.indexOf(a.server) - steadyServers.indexOf(b.server),
  )
}

/** The section as Markdown (the terminal shows the same). */
export function renderSteady(all: readonly SteadyRun[], wakeCost?: readonly WakeCost[]): string {
  const runs = tableRows(all)
  const rounds = Math.max(...all.map((run) => run.round))
  const lines = [
    '## Steady: end to end at a fixed rate (gateway with npm start defaults, one destination, one consumer)',
    '',
    'Stripe `payment_intent.succeeded`, open loop. Answer time from when each request was due; the others from',
    "the gateway's receipt (the CloudEvent's `time`) to the consumer's arrival and to the endpoint's answer.",
    'CPU per webhook from the first send to the last arrival, idle cost subtracted. "hand-written" is the floor:',
    'bench/servers/handwritten-pipeline.ts does the same I/O per webhook (verify, INSERT committed before the 200,',
    'publish with a confirm, a signed POST to the destination) and nothing else: no retries, no record of what',
    'was sent.',
    ...(rounds > 1
      ? [
          `Each row is the median of ${rounds} rounds, figure by figure (the servers alternate at each rate;`,
          'webhooks and arrivals are summed); every round follows the table.',
        ]
      : []),
    '',
    '| server | rate | webhooks | ack p50 / p99 ms | -> RabbitMQ p50 / p99 / max ms | -> destination p50 / p99 / max ms | CPU/webhook gateway + Postgres | statements/webhook | idle CPU gateway + Postgres | RSS MB | beside: RabbitMQ, endpoint, load CPU/webhook |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  const label = (run: SteadyRun) => (run.server === 'handwritten' ? 'hand-written' : 'gateway')
  for (const run of runs) {
    if (run.error) {
      lines.push(
        `| ${label(run)} | ${perSecond(run.rate)} | FAILED: ${run.error.split('\n')[0]} | | | | | | | | |`,
      )
      continue
    }
    const lost =
      run.rabbitmq.distinct < run.accepted || run.destination.distinct < run.accepted ? ' (some missing)' : ''
    lines.push(
      `| ${label(run)} | ${perSecond(run.rate)} | ${thousands(run.accepted)}${run.failed > 0 ? ` (+${run.failed} not accepted)` : ''}${lost} ` +
        `| ${fixed(run.ack.p50)} / ${fixed(run.ack.p99)} ` +
        `| ${fixed(run.rabbitmq.p50)} / ${fixed(run.rabbitmq.p99)} / ${fixed(run.rabbitmq.max, 0)} ` +
        `| ${fixed(run.destination.p50)} / ${fixed(run.destination.p99)} / ${fixed(run.destination.max, 0)} ` +
        `| ${fixed(run.cpuUs.gateway, 0)} + ${fixed(run.cpuUs.postgres, 0)} us ` +
        `| ${fixed(run.statements?.perWebhook, 2)} ` +
        `| ${fixed(run.idle.gateway * 100)} % + ${fixed(run.idle.postgres === undefined ? undefined : run.idle.postgres * 100)} % ` +
        `| ${fixed(run.peakRssMb, 0)} ` +
        `| ${run.othersUs ? `${fixed(run.othersUs.rabbitmq, 0)}, ${fixed(run.othersUs.endpoint, 0)}, ${fixed(run.othersUs.generator, 0)} us` : '-'} |`,
    )
  }
  if (rounds > 1) {
    lines.push(
      '',
      'Every round, in order: ack p99, -> RabbitMQ p99, -> destination p99 (ms), CPU/webhook gateway + Postgres (us):',
      '',
    )
    for (const row of runs.filter((run) => !run.error)) {
      const of = all.filter((run) => run.server === row.server && run.rate === row.rate && !run.error)
      lines.push(
        `- ${label(row)}, ${perSecond(row.rate)}: ` +
          of
            .map(
              (run) =>
                `${fixed(run.ack.p99)}, ${fixed(run.rabbitmq.p99)}, ${fixed(run.destination.p99)}, ` +
                `${fixed(run.cpuUs.gateway, 0)} + ${fixed(run.cpuUs.postgres, 0)}`,
            )
            .join('; '),
      )
    }
  }
  const floors = runs.flatMap((run) => {
    const floor = runs.find(
      (other) => other.server === 'handwritten' && other.rate === run.rate && !other.error,
    )
    if (run.server !== 'gateway' || run.error || !floor) return []
    const total = (of: SteadyRun) => of.cpuUs.gateway + (of.cpuUs.postgres ?? 0)
    const wakes =
      run.wakesPerWebhook === undefined || floor.wakesPerWebhook === undefined
        ? ''
        : `; its main thread woken ${fixed(run.wakesPerWebhook)} times per webhook, the floor's ${fixed(floor.wakesPerWebhook)}`
    return [
      `- ${perSecond(run.rate)}: gateway ${fixed(total(run), 0)} us, hand-written ${fixed(total(floor), 0)} us: ` +
        `${fixed(total(run) / total(floor), 2)}x the floor (process ${fixed(run.cpuUs.gateway / floor.cpuUs.gateway, 2)}x, ` +
        `Postgres ${fixed((run.cpuUs.postgres ?? NaN) / (floor.cpuUs.postgres ?? NaN), 2)}x)${wakes}`,
    ]
  })
  if (floors.length > 0)
    lines.push('', 'CPU per webhook, process + Postgres, against the floor at the same rate:', '', ...floors)
  if (wakeCost && wakeCost.length > 0)
    lines.push(
      '',
      'What this machine charges for the same small work at each rate (bench/wake-cost.ts): a 1.5 KB round trip ' +
        'over loopback between two processes, with an HMAC and a JSON.parse, its CPU in both:',
      '',
      ...renderWakeCost(wakeCost),
    )
  const withTop = runs.filter((run) => run.statements && run.statements.top.length > 0)
  if (withTop.length > 0) {
    lines.push(
      '',
      'Where Postgres spent its time, by kind of statement (one kind: the same text whatever its number of rows), ' +
        'the costliest first: per webhook, calls, time executing (planning and commit not included) and WAL written, ' +
        'then rows per call (pg_stat_statements):',
      '',
    )
    for (const run of withTop) {
      const { perWebhook, walBytesPerWebhook } = run.statements!
      lines.push(
        `- ${label(run)}, ${perSecond(run.rate)}: ${perWebhook.toFixed(2)} statements` +
          `${walBytesPerWebhook === undefined ? '' : `, ${Math.round(walBytesPerWebhook)} bytes of WAL`} per webhook`,
      )
      for (const statement of run.statements!.top)
        lines.push(
          `  - ${statement.perWebhook.toFixed(2)}, ${Math.round(statement.usPerWebhook)} us` +
            `${statement.walBytesPerWebhook === undefined ? '' : `, ${Math.round(statement.walBytesPerWebhook)} B`}` +
            `${statement.rowsPerCall === undefined ? '' : `, ${statement.rowsPerCall.toFixed(1)} rows`}` +
            ` \`${statement.query.replaceAll('`', "'")}\``,
        )
    }
  }
  for (const run of all.filter((run) => run.profile)) {
    const profile = run.profile!
    lines.push(
      '',
      `${perSecond(run.rate)}${rounds > 1 ? ` (round ${run.round})` : ''}, the gateway's main thread busy ${(profile.busy * 100).toFixed(1)} % of the window; self time by source, then by function:`,
      '',
      '```',
      ...profile.sources,
      '',
      ...profile.functions,
      '```',
    )
  }
  const repeated = all.filter(
    (run) => !run.error && (run.rabbitmq.repeated > 0 || run.destination.repeated > 0),
  )
  for (const run of repeated)
    lines.push(
      '',
      `${label(run)}, ${perSecond(run.rate)}${rounds > 1 ? ` (round ${run.round})` : ''}: ${run.rabbitmq.repeated} events arrived on RabbitMQ again and ${run.destination.repeated} at the destination (same id)`,
    )
  lines.push('')
  return lines.join('\n')
}
