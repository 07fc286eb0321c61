import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join, relative, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import postgres from 'postgres'
import { assertRunning, freePort, startServer, stopServer, summarizeLog, waitHealthy } from './child.ts'
import { defer, installAbortHandlers, mark, unwind } from './cleanup.ts'
import { benchDestinations, renderDestinations, type DestinationsResult } from './destinations.ts'
import { countOf, Outcome, quantile, runLoad, type LoadResult } from './load.ts'
import {
  describeMachine,
  findPostmaster,
  installCommitCounter,
  peakRssBytes,
  postgresCpuMs,
  processCpuMs,
  storageCounts,
} from './measure.ts'
import { defaultMatrix, parseSettings, usage, type Section, type ServerId, type Settings } from './options.ts'
import {
  githubPush,
  githubPushOfSize,
  newSecrets,
  stripePaymentIntent,
  twilioStatusCallback,
  type Payload,
  type PayloadSpec,
  type Provider,
  type Secrets,
} from './payloads.ts'
import { summarizeProfiles } from './profile.ts'
import { benchSteady, renderSteady, steadyServers, type SteadyRun } from './steady.ts'
import { measureWakeCost, renderWakeCost, type WakeCost } from './wake-cost.ts'
import { renderMarkdown, renderText, type Report, type RunResult } from './report.ts'
import {
  assertLoopback,
  createDatabase,
  deleteExchange,
  deleteRedisPrefix,
  serviceVersions,
  services,
  uniqueName,
} from './resources.ts'

/**
 * npm run bench: the same load against each server in turn, each in its own child process, loopback
 * only. See BENCHMARKS.md for what it measures and how to read it.
 */

const root = fileURLToPath(new URL('..', import.meta.url))
const host = '127.0.0.1'

interface ServerKind {
  readonly letter: string
  readonly label: (provider: Provider) => string
  /** The table it stores into, for the storing servers. */
  readonly table?: string
  readonly gateway?: { readonly role: 'all' | 'api' }
  readonly script?: string
}

const sdkLabels: Record<Provider, string> = {
  github: '@octokit/webhooks createNodeMiddleware',
  stripe: 'stripe.webhooks.constructEvent',
  twilio: 'twilio.validateRequest',
}

const servers: Record<ServerId, ServerKind> = {
  hono: { letter: 'a', label: () => 'bare Hono, reads the body', script: 'bench/servers/hono-bare.ts' },
  sdk: {
    letter: 'b',
    label: (provider) => `${sdkLabels[provider]}, verify only`,
    script: 'bench/servers/sdk-verify.ts',
  },
  handwritten: {
    letter: 'c',
    label: () => 'hand-written: verify + INSERT',
    table: 'deliveries',
    script: 'bench/servers/handwritten.ts',
  },
  gateway: {
    letter: 'd',
    label: () => 'gateway, npm start defaults',
    table: 'webhooks',
    gateway: { role: 'all' },
  },
  'gateway-api': {
    letter: "d'",
    label: () => 'gateway, ROLE=api',
    table: 'webhooks',
    gateway: { role: 'api' },
  },
}

interface RunSpec {
  readonly section: Section
  readonly payload: PayloadSpec
  readonly server: ServerId
  readonly profile: boolean
}

/** What every run shares. */
interface Context {
  readonly settings: Settings
  readonly gatewayDir: string
  readonly admin: postgres.Sql
  readonly postmasterPid: number | undefined
  readonly secrets: Secrets
  readonly logDir: string
}

function plan(settings: Settings): RunSpec[] {
  const payloads: Record<Section, readonly PayloadSpec[]> = {
    headline: [githubPush],
    stripe: [stripePaymentIntent],
    twilio: [twilioStatusCallback],
    sweep: settings.sizes.map(githubPushOfSize),
    destinations: [],
    steady: [],
  }
  const specs: RunSpec[] = []
  // Repeats are whole rounds of the matrix, so a noisy minute on the machine hits every server alike.
  for (let round = 0; round < settings.repeat; round++)
    for (const section of settings.sections)
      for (const payload of payloads[section])
        for (const server of settings.servers ?? defaultMatrix[section])
          specs.push({ section, payload, server, profile: false })
  // The gateway's default run of the first section is the one profiled.
  const profiled = specs.find((spec) => spec.server === 'gateway')
  return settings.profile && profiled ? specs.map((spec) => ({ ...spec, profile: spec === profiled })) : specs
}

/** The environment of a server: PATH and HOME from ours (so node and tsx resolve), nothing else. */
function baseEnv(port: number, secrets: Secrets): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? os.tmpdir(),
    PORT: String(port),
    HOST: host,
    GITHUB_WEBHOOK_SECRET: secrets.github,
    STRIPE_WEBHOOK_SECRET: secrets.stripe,
    TWILIO_AUTH_TOKEN: secrets.twilio,
  }
}

const usPerRequest = (ms: number, answered: number) => (ms * 1000) / Math.max(1, answered)

function summarizeLoad(result: LoadResult) {
  const statuses: Record<string, number> = {}
  let non2xx = 0
  for (const [status, count] of result.statuses) {
    statuses[String(status)] = count
    if (status < 200 || status >= 300) non2xx += count
  }
  const accepted = countOf(result.outcomes, Outcome.accepted)
  return {
    seconds: result.elapsedMs / 1000,
    sent: result.sent,
    answered: result.latenciesMs.length,
    accepted,
    notAccepted: countOf(result.outcomes, Outcome.otherSuccess),
    non2xx,
    noAnswer:
      countOf(result.outcomes, Outcome.transportError) + countOf(result.outcomes, Outcome.notAnswered),
    statuses,
    acceptedPerSecond: result.elapsedMs > 0 ? (accepted * 1000) / result.elapsedMs : 0,
    latencyMs: {
      p50: quantile(result.latenciesMs, 0.5),
      p99: quantile(result.latenciesMs, 0.99),
      max: quantile(result.latenciesMs, 1),
    },
  }
}

/** Keys of the requests answered accepted, in the warm-up (seq from 0) and the measured load after it. */
function acceptedKeys(payload: Payload, key: 'gatewayKey' | 'receiverKey', loads: readonly LoadResult[]) {
  const keys: string[] = []
  let offset = 0
  for (const load of loads) {
    load.outcomes.forEach((outcome, index) => {
      if (outcome === Outcome.accepted) keys.push(payload[key](offset + index))
    })
    offset += load.sent
  }
  return keys
}

/** How many of `keys` are not a row: a server that answered accepted for them lost them. */
async function missingRows(sql: postgres.Sql, kind: ServerKind, provider: Provider, keys: string[]) {
  let missing = 0
  // In slices, so the parameter stays a few MB however long the run.
  for (let at = 0; at < keys.length; at += 50_000) {
    const slice = keys.slice(at, at + 50_000)
    const [row] = kind.gateway
      ? await sql<{ n: number }[]>`
          SELECT count(*)::int AS n FROM unnest(${slice}::text[]) AS k(key)
          WHERE NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.provider = ${provider} AND w.event_key = k.key)`
      : await sql<{ n: number }[]>`
          SELECT count(*)::int AS n FROM unnest(${slice}::text[]) AS k(key)
          WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = k.key)`
    missing += row?.n ?? 0
  }
  return missing
}

/** Polls until every row is published (confirmed by the broker), up to the limit; from `since` (ms). */
async function drain(
  sql: postgres.Sql,
  since: number,
  limitMs: number,
): Promise<NonNullable<RunResult['drain']>> {
  const unpublished = async () =>
    (await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM webhooks WHERE status <> 'published'`)[0]?.n ??
    0
  let left = await unpublished()
  while (left > 0 && performance.now() - since < limitMs) {
    await sleep(200)
    left = await unpublished()
  }
  return {
    seconds: left === 0 ? (performance.now() - since) / 1000 : null,
    left,
    limitSeconds: limitMs / 1000,
  }
}

/** One server, one payload: start, warm up, measure, check, stop, clean up. */
async function runOne(spec: RunSpec, index: number, context: Context): Promise<RunResult> {
  const { settings, secrets } = context
  const kind = servers[spec.server]
  const base = {
    section: spec.section,
    payload: spec.payload.id,
    payloadTitle: spec.payload.title,
    bodyBytes: 0,
    server: spec.server,
    letter: kind.letter,
    label: kind.label(spec.payload.provider),
  }
  const since = mark()
  let bodyBytes = 0
  try {
    const port = await freePort(host)
    const env = baseEnv(port, secrets)
    const database = kind.table ? await createDatabase(context.admin) : undefined
    if (database) {
      defer(`drop database ${database.name}`, database.drop)
      env.DATABASE_URL = database.url
    }
    const nodeFlags: string[] = [...settings.nodeFlags]
    let profileDir: string | undefined
    if (kind.gateway) {
      const exchange = uniqueName('bench_webhooks')
      const redisPrefix = `${uniqueName('bench')}:`
      defer(`delete exchange ${exchange}`, () => deleteExchange(exchange))
      defer(`delete redis keys ${redisPrefix}*`, () => deleteRedisPrefix(redisPrefix))
      Object.assign(env, { REDIS_PREFIX: redisPrefix, AMQP_EXCHANGE: exchange })
      // Named always: unset, they would mean no Redis and no broker (the embedded defaults).
      Object.assign(env, { REDIS_URL: services.redis, AMQP_URL: services.amqp })
      if (kind.gateway.role === 'api') env.ROLE = 'api'
      Object.assign(env, settings.gatewayEnv)
      if (spec.profile) {
        profileDir = settings.profileDir ?? mkdtempSync(join(os.tmpdir(), 'bench-profile-'))
        mkdirSync(profileDir, { recursive: true })
        if (!settings.profileDir)
          defer('remove profiles', async () => rmSync(profileDir!, { recursive: true }))
        nodeFlags.push('--cpu-prof', `--cpu-prof-dir=${profileDir}`)
      }
    }

    const name = `${spec.section}-${spec.payload.id}-${spec.server}`
    const child = startServer({
      name,
      cwd: kind.gateway ? context.gatewayDir : root,
      script: kind.script ?? 'src/main.ts',
      env,
      logFile: join(context.logDir, `${String(index + 1).padStart(2, '0')}-${name}.log`),
      nodeFlags,
    })
    defer(`stop ${name}`, () => stopServer(child))
    await waitHealthy(child, host, port)

    let sql: postgres.Sql | undefined
    if (database && kind.table) {
      const connection = postgres(database.url, { max: 1, onnotice: () => {} })
      sql = connection
      defer('close the bench connection', () => connection.end({ timeout: 5 }))
      await installCommitCounter(connection, kind.table)
    }

    const payload = await spec.payload.prepare({ host, port }, secrets, randomBytes(4).toString('hex'))
    bodyBytes = payload.bodyBytes
    const load = (offset: number, durationMs: number) =>
      runLoad({
        host,
        port,
        connections: settings.connections,
        durationMs,
        maxRequests: settings.maxRequests,
        requestTimeoutMs: settings.requestTimeoutMs,
        request: (n) => payload.request(offset + n),
        ...(kind.gateway ? { isAccepted: (body: string) => body.includes('"status":"accepted"') } : {}),
      })

    const warmup = await load(0, settings.warmupMs)
    const storageBefore = sql && kind.table ? await storageCounts(sql, kind.table) : undefined
    const serverCpuBefore = processCpuMs(child.pid)
    const postgresCpuBefore = postgresCpuMs(context.postmasterPid)
    const windowStartUs = Number(process.hrtime.bigint() / 1000n)
    const measured = await load(warmup.sent, settings.durationMs)
    const loadEnded = performance.now()
    const windowEndUs = Number(process.hrtime.bigint() / 1000n)
    const serverCpuMs = processCpuMs(child.pid) - serverCpuBefore
    assertRunning(child, 'during the load')
    const postgresCpuAfter = postgresCpuMs(context.postmasterPid)
    const storageAfter = sql && kind.table ? await storageCounts(sql, kind.table) : undefined

    const answered = measured.latenciesMs.length
    const result: Mutable<RunResult> = {
      ...base,
      bodyBytes,
      warmup: { sent: warmup.sent, seconds: warmup.elapsedMs / 1000 },
      load: summarizeLoad(measured),
      cpuUsPerRequest: {
        server: usPerRequest(serverCpuMs, answered),
        postgres:
          postgresCpuBefore === undefined || postgresCpuAfter === undefined
            ? null
            : usPerRequest(postgresCpuAfter - postgresCpuBefore, answered),
        generator: usPerRequest(measured.cpuMs, answered),
      },
    }
    if (storageBefore && storageAfter) {
      const commits = storageAfter.commits - storageBefore.commits
      const rows = storageAfter.rows - storageBefore.rows
      result.storage = { commits, rows, rowsPerCommit: commits > 0 ? rows / commits : null }
    }
    if (sql && kind.gateway?.role === 'all') result.drain = await drain(sql, loadEnded, settings.drainLimitMs)
    if (sql) {
      const keys = acceptedKeys(payload, kind.gateway ? 'gatewayKey' : 'receiverKey', [warmup, measured])
      const lost = await missingRows(sql, kind, spec.payload.provider, keys)
      const rows = (await storageCounts(sql, kind.table!)).rows
      result.stored = { accepted: keys.length, rows, lost }
    }
    const rss = peakRssBytes(child.pid)
    if (rss !== undefined) result.peakRssBytes = rss
    await stopServer(child)
    if (profileDir)
      result.profile = summarizeProfiles(profileDir, kind.gateway ? context.gatewayDir : root, {
        fromUs: windowStartUs,
        toUs: windowEndUs,
      })
    result.log = summarizeLog(child.logFile)
    return result
  } catch (error) {
    return { ...base, bodyBytes, error: (error as Error).message }
  } finally {
    await unwind(since)
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] }

/** One line per finished run on stderr, so a long bench shows progress. */
function progressLine(run: RunResult): string {
  const head = `${run.payload} (${run.letter}) ${run.label}`
  if (!run.load) return `${head}: FAILED: ${run.error?.split('\n')[0]}`
  const cpu = run.cpuUsPerRequest
  return (
    `${head}: ${Math.round(run.load.acceptedPerSecond)} req/s, p99 ${run.load.latencyMs.p99.toFixed(1)} ms, ` +
    `non-2xx ${run.load.non2xx + run.load.noAnswer}, cpu us/req srv ${Math.round(cpu?.server ?? 0)} ` +
    `pg ${cpu?.postgres === null ? '-' : Math.round(cpu?.postgres ?? 0)}` +
    (run.drain
      ? `, drain ${run.drain.seconds === null ? `not done (${run.drain.left} left)` : `${run.drain.seconds.toFixed(1)} s`}`
      : '') +
    (run.stored ? `, lost ${run.stored.lost}` : '')
  )
}

async function main(): Promise<number> {
  const parsed = parseSettings(process.argv.slice(2))
  if (parsed === 'help') {
    console.log(usage)
    return 0
  }
  const settings = parsed
  const started = Date.now()
  installAbortHandlers(settings.timeLimitMs)
  assertLoopback([
    services.postgres,
    services.redis,
    services.amqp,
    ...Object.values(settings.gatewayEnv).filter((value) => value.includes('://')),
  ])
  const gatewayDir = resolve(settings.gatewayDir ?? root)
  if (!existsSync(join(gatewayDir, 'src/main.ts'))) throw new Error(`bench: no src/main.ts in ${gatewayDir}`)

  const admin = postgres(services.postgres, { max: 1, onnotice: () => {} })
  defer('close the admin connection', () => admin.end({ timeout: 5 }))
  const machine = await describeMachine(admin, await serviceVersions())
  const postmasterPid = await findPostmaster(admin)
  if (postmasterPid === undefined) console.error('bench: Postgres is not visible in /proc: no Postgres CPU')
  const logDir = mkdtempSync(join(os.tmpdir(), 'bench-logs-'))
  const context: Context = { settings, gatewayDir, admin, postmasterPid, secrets: newSecrets(), logDir }

  const specs = plan(settings)
  // Start, health, the checks and the stop take about 2 s a run besides the load.
  const estimate = specs.length * ((settings.warmupMs + settings.durationMs) / 1000 + 2)
  console.error(
    `bench: ${specs.length} runs, about ${Math.ceil(estimate / 60)} min (plus any slow drain); ` +
      `limit ${settings.timeLimitMs / 1000} s; server logs in ${logDir}`,
  )
  const runs: RunResult[] = []
  for (const [index, spec] of specs.entries()) {
    const run = await runOne(spec, index, context)
    runs.push(run)
    console.error(`  [${index + 1}/${specs.length}] ${progressLine(run)}`)
  }
  let destinations: DestinationsResult | undefined
  if (settings.sections.includes('destinations')) {
    for (let round = 0; round < settings.repeat && !destinations; round++) {
      const since = mark()
      try {
        destinations = await benchDestinations({
          ...context,
          root,
          baseEnv: (port) => baseEnv(port, context.secrets),
        })
        console.error(
          `  destinations: ${Math.round(destinations.backlog[0]?.perSecond ?? 0)} deliveries/s, ` +
            `p99 ${destinations.steady.p99Ms.toFixed(1)} ms received -> answered`,
        )
      } catch (error) {
        console.error(`  destinations: ${(error as Error).message}`)
      } finally {
        await unwind(since)
      }
    }
  }
  let steady: SteadyRun[] | undefined
  let wakeCost: WakeCost[] | undefined
  if (settings.sections.includes('steady')) {
    const since = mark()
    try {
      steady = await benchSteady(
        { ...context, root, baseEnv: (port) => baseEnv(port, context.secrets) },
        settings.rates,
        steadyServers.filter((server) => (settings.servers ?? defaultMatrix.steady).includes(server)),
        settings.repeat,
      )
    } catch (error) {
      console.error(`  steady: ${(error as Error).message}`)
    } finally {
      await unwind(since)
    }
    // What this machine charges for the same small work at each rate, with the servers stopped.
    try {
      wakeCost = await measureWakeCost(root, settings.rates, settings.quick ? 3 : 8)
      console.error(`  wake cost:\n${renderWakeCost(wakeCost).join('\n')}`)
    } catch (error) {
      console.error(`  wake cost: ${(error as Error).message}`)
    }
  }
  machine.loadAfter = os.loadavg()

  const report: Report = {
    startedAt: new Date(started).toISOString(),
    durationSeconds: (Date.now() - started) / 1000,
    command: ['npm run bench', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(
      ' ',
    ),
    settings,
    gatewayDir,
    machine,
    runs,
    ...(destinations ? { destinations } : {}),
    ...(steady ? { steady } : {}),
    ...(wakeCost ? { wakeCost } : {}),
  }
  const outDir = resolve(settings.outDir ?? join(root, 'bench/results'))
  mkdirSync(outDir, { recursive: true })
  const stem = join(outDir, report.startedAt.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z'))
  writeFileSync(`${stem}.json`, `${JSON.stringify(report, null, 2)}\n`)
  const destinationsText =
    (destinations ? `\n${renderDestinations(destinations)}` : '') +
    (steady ? `\n${renderSteady(steady, wakeCost)}` : '')
  writeFileSync(`${stem}.md`, renderMarkdown(report) + destinationsText)
  console.log(renderText(report) + destinationsText)
  console.log(`\nresults: ${relative(process.cwd(), `${stem}.md`)} and .json`)

  const failed = runs.filter((run) => run.error !== undefined)
  const lost = runs.filter((run) => (run.stored?.lost ?? 0) > 0)
  const logged = runs.filter((run) => (run.log?.problems ?? 0) > 0)
  const destinationsFailed =
    (settings.sections.includes('destinations') && !destinations) ||
    (settings.sections.includes('steady') && (!steady || steady.some((run) => run.error !== undefined)))
  if (settings.keepLogs || failed.length > 0 || lost.length > 0 || logged.length > 0 || destinationsFailed)
    console.log(`server logs kept in ${logDir}`)
  else rmSync(logDir, { recursive: true, force: true })
  if (lost.length > 0)
    console.log(`FAILED: acknowledged deliveries missing from Postgres in ${lost.length} run(s)`)
  if (failed.length > 0) console.log(`FAILED: ${failed.length} run(s) did not complete`)
  if (destinationsFailed) console.log('FAILED: the destinations or steady section did not complete')
  return failed.length > 0 || lost.length > 0 || destinationsFailed ? 1 : 0
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
