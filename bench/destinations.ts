import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import postgres from 'postgres'
import { Pool } from 'undici'
import { defer } from './cleanup.ts'
import { freePort, startServer, stopServer, waitHealthy } from './child.ts'
import { quantile, runLoad, type WireRequest } from './load.ts'
import { processCpuMs, postgresCpuMs } from './measure.ts'
import type { Settings } from './options.ts'
import { stripePaymentIntent, type Secrets } from './payloads.ts'
import { createDatabase, deleteExchange, deleteRedisPrefix, services, uniqueName } from './resources.ts'

/**
 * The destinations section: how fast the gateway (npm start's defaults, ROLE=all) gets Stripe payments to an
 * HTTP endpoint as signed `payment.completed` CloudEvents. The endpoint is a separate process that verifies
 * every request with the `standardwebhooks` package.
 *
 * - steady: signed deliveries at a fixed rate (open loop); from the gateway receiving the webhook to the
 *   endpoint's answer to the signed request, per event (Postgres clocks: received_at, and the attempt's
 *   start plus its duration).
 * - backlog: deliveries pile up for destinations that are disabled; enabling one sends its backlog, and the
 *   time until the last answer gives deliveries per second, for the default limit of 10 requests in flight
 *   and for 50.
 */

export interface SteadyResult {
  readonly rate: number
  readonly seconds: number
  readonly sent: number
  readonly accepted: number
  readonly delivered: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly maxMs: number
  /** Received -> published and fanned out (the worker). */
  readonly handledP50Ms: number
  readonly handledP99Ms: number
  /** Fanned out -> the request started (the sender). */
  readonly claimedP50Ms: number
  readonly claimedP99Ms: number
  /** CPU per webhook, from its receipt to its delivery: the gateway process and Postgres. */
  readonly gatewayCpuUs: number
  readonly postgresCpuUs: number | undefined
}

export interface BacklogRun {
  readonly maxInFlight: number
  readonly deliveries: number
  readonly seconds: number
  readonly perSecond: number
  /** CPU per delivery while the backlog was sent: the gateway, its Postgres backends, the endpoint. */
  readonly gatewayCpuUs: number
  readonly postgresCpuUs: number | undefined
  readonly receiverCpuUs: number
}

export interface DestinationsResult {
  readonly steady: SteadyResult
  readonly backlog: readonly BacklogRun[]
  /** What the endpoint saw: requests verified by standardwebhooks, refused, and distinct webhook-ids. */
  readonly receiver: { readonly verified: number; readonly refused: number; readonly distinct: number }
}

export interface DestinationsContext {
  readonly settings: Settings
  readonly gatewayDir: string
  readonly root: string
  readonly admin: postgres.Sql
  readonly postmasterPid: number | undefined
  readonly secrets: Secrets
  readonly logDir: string
  readonly baseEnv: (port: number) => Record<string, string>
}

const host = '127.0.0.1'
/** Deliveries that pile up for each disabled destination before it is enabled. */
const backlogSize = 10_000
const adminToken = randomBytes(16).toString('hex')
const newSecret = () => `whsec_${randomBytes(32).toString('base64')}`

/** A wire request as undici's request options. */
function undiciRequest(wire: WireRequest) {
  const [requestLine, ...lines] = wire.head.trimEnd().split('\r\n')
  const path = requestLine!.split(' ')[1]!
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const at = line.indexOf(':')
    const name = line.slice(0, at).toLowerCase()
    if (name !== 'host' && name !== 'content-length' && name !== 'connection')
      headers[name] = line.slice(at + 1).trim()
  }
  return { method: 'POST' as const, path, headers, body: wire.body }
}

export async function benchDestinations(context: DestinationsContext): Promise<DestinationsResult> {
  const { settings, admin } = context
  const database = await createDatabase(admin)
  defer(`drop database ${database.name}`, database.drop)
  const exchange = uniqueName('bench_webhooks')
  const redisPrefix = `${uniqueName('bench')}:`
  defer(`delete exchange ${exchange}`, () => deleteExchange(exchange))
  defer(`delete redis keys ${redisPrefix}*`, () => deleteRedisPrefix(redisPrefix))

  const receiverPort = await freePort(host)
  const receiver = startServer({
    name: 'receiver',
    cwd: context.root,
    script: 'bench/servers/receiver.ts',
    env: context.baseEnv(receiverPort),
    logFile: join(context.logDir, 'destinations-receiver.log'),
  })
  defer('stop the receiver', () => stopServer(receiver))
  const receiverUrl = `http://${host}:${receiverPort}`
  const tellSecrets = (secrets: Record<string, string>) =>
    fetch(`${receiverUrl}/secrets`, { method: 'PUT', body: JSON.stringify(secrets) })

  // The steady destination comes from DESTINATIONS_FILE, as a team keeping configuration in git would add it.
  const steadySecret = newSecret()
  const file = join(context.logDir, 'destinations.json')
  writeFileSync(
    file,
    JSON.stringify([
      { name: 'steady', url: `${receiverUrl}/steady`, events: ['payment.*'], secret: steadySecret },
    ]),
  )

  const port = await freePort(host)
  const env = {
    ...context.baseEnv(port),
    DATABASE_URL: database.url,
    // Named always: unset, they would mean no Redis and no broker (the embedded defaults).
    REDIS_URL: services.redis,
    AMQP_URL: services.amqp,
    AMQP_EXCHANGE: exchange,
    REDIS_PREFIX: redisPrefix,
    ADMIN_TOKEN: adminToken,
    ALLOW_HTTP_DESTINATIONS: 'true',
    DESTINATION_ALLOWED_HOSTS: host,
    DESTINATIONS_FILE: file,
    ...settings.gatewayEnv,
  }
  const gateway = startServer({
    name: 'gateway-destinations',
    cwd: context.gatewayDir,
    script: 'src/main.ts',
    env,
    logFile: join(context.logDir, 'destinations-gateway.log'),
    nodeFlags: settings.nodeFlags,
  })
  defer('stop the gateway', () => stopServer(gateway))
  await waitHealthy(gateway, host, port)
  for (
    let tries = 0;
    (await tellSecrets({ '/steady': steadySecret }).catch(() => undefined))?.ok !== true;
    tries++
  ) {
    if (tries > 100) throw new Error('destinations: the receiver did not start')
    await sleep(100)
  }

  const sql = postgres(database.url, { max: 2, onnotice: () => {} })
  defer('close the bench connection', () => sql.end({ timeout: 5 }))
  const adminApi = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`http://${host}:${port}/admin${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    if (!response.ok) throw new Error(`destinations: ${method} ${path} answered ${response.status}`)
    return (await response.json()) as Record<string, any>
  }
  const destinations = (await adminApi('GET', '/destinations')).destinations as Record<string, any>[]
  const steadyId = destinations.find((destination) => destination.name === 'steady')!.id as string
  const delivered = async (destinationId: string) =>
    (
      await sql`SELECT count(*)::int AS n FROM deliveries WHERE destination_id = ${destinationId} AND status = 'delivered'`
    )[0]!.n as number
  const waitUntil = async (check: () => Promise<boolean>, what: string, progress?: () => Promise<string>) => {
    const deadline = Date.now() + settings.drainLimitMs
    while (!(await check())) {
      if (Date.now() > deadline) {
        const state = progress ? ` (${await progress()})` : ''
        throw new Error(`destinations: ${what} not within ${settings.drainLimitMs / 1000} s${state}`)
      }
      // Not faster: counting is Postgres work the numbers would include.
      await sleep(250)
    }
  }

  const payload = await stripePaymentIntent.prepare(
    { host, port },
    context.secrets,
    randomBytes(4).toString('hex'),
  )

  // Steady: an open loop at a fixed rate, so latency is not the backlog's.
  const rate = 200
  const seconds = settings.durationMs / 1000
  const pool = new Pool(`http://${host}:${port}`, { connections: 16 })
  defer('close the load pool', () => pool.close())
  let sent = 0
  let accepted = 0
  const steadyCpu = { gateway: processCpuMs(gateway.pid), postgres: postgresCpuMs(context.postmasterPid) }
  const answers: Promise<void>[] = []
  const started = performance.now()
  while (performance.now() - started < settings.durationMs) {
    const due = Math.floor(((performance.now() - started) / 1000) * rate)
    for (; sent < due; sent++) {
      const request = undiciRequest(payload.request(sent))
      answers.push(
        pool.request(request).then(
          async (response) => {
            const text = await response.body.text()
            if (response.statusCode === 200 && text.includes('"accepted"')) accepted += 1
          },
          () => {},
        ),
      )
    }
    await sleep(5)
  }
  await Promise.all(answers)
  await waitUntil(async () => (await delivered(steadyId)) >= accepted, 'every steady delivery')
  const steadyGatewayCpuUs = ((processCpuMs(gateway.pid) - steadyCpu.gateway) * 1000) / Math.max(1, accepted)
  const steadyPostgresAfter = postgresCpuMs(context.postmasterPid)
  const steadyPostgresCpuUs =
    steadyCpu.postgres === undefined || steadyPostgresAfter === undefined
      ? undefined
      : ((steadyPostgresAfter - steadyCpu.postgres) * 1000) / Math.max(1, accepted)
  // Per event: received -> answered, and its parts: received -> handled (published and fanned out, one
  // statement) and handled -> the request's start (the sender's claim).
  const rows = await sql`
    SELECT extract(epoch FROM a.attempted_at - w.received_at) * 1000 + a.duration_ms AS total,
           extract(epoch FROM d.created_at - w.received_at) * 1000 AS handled,
           extract(epoch FROM a.attempted_at - d.created_at) * 1000 AS claimed
    FROM deliveries d
    JOIN webhooks w ON w.id = d.webhook_id
    JOIN delivery_attempts a ON a.delivery_id = d.id AND a.status_code BETWEEN 200 AND 299
    WHERE d.destination_id = ${steadyId}`
  const sortedBy = (column: string) =>
    Float64Array.from(rows.map((row) => Number(row[column])).sort((a, b) => a - b))
  const sorted = sortedBy('total')
  const handled = sortedBy('handled')
  const claimed = sortedBy('claimed')
  const steady: SteadyResult = {
    rate,
    seconds,
    sent,
    accepted,
    delivered: await delivered(steadyId),
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
    maxMs: sorted[sorted.length - 1] ?? 0,
    handledP50Ms: quantile(handled, 0.5),
    handledP99Ms: quantile(handled, 0.99),
    claimedP50Ms: quantile(claimed, 0.5),
    claimedP99Ms: quantile(claimed, 0.99),
    gatewayCpuUs: steadyGatewayCpuUs,
    postgresCpuUs: steadyPostgresCpuUs,
  }
  await adminApi('DELETE', `/destinations/${steadyId}`).catch(() => {})

  // Backlog: two disabled destinations collect the same deliveries; each is then enabled alone.
  const backlogDestinations: { id: string; maxInFlight: number }[] = []
  for (const maxInFlight of [10, 50]) {
    const created = await adminApi('POST', '/destinations', {
      url: `${receiverUrl}/backlog-${maxInFlight}`,
      events: ['payment.*'],
      enabled: false,
      max_in_flight: maxInFlight,
    })
    await tellSecrets({ [`/backlog-${maxInFlight}`]: created.secret })
    backlogDestinations.push({ id: created.id, maxInFlight })
  }
  const load = await runLoad({
    host,
    port,
    connections: settings.connections,
    durationMs: settings.durationMs,
    // A backlog of one size from run to run, whatever the intake speed.
    maxRequests: Math.min(settings.maxRequests, backlogSize),
    requestTimeoutMs: settings.requestTimeoutMs,
    request: (n) => payload.request(sent + n),
    isAccepted: (body) => body.includes('"accepted"'),
  })
  const backlogAccepted = load.outcomes.filter((outcome) => outcome === 1).length
  const pending = async (destinationId: string) =>
    (
      await sql`SELECT count(*)::int AS n FROM deliveries WHERE destination_id = ${destinationId} AND status = 'pending'`
    )[0]!.n as number
  for (const { id } of backlogDestinations)
    await waitUntil(async () => (await pending(id)) >= backlogAccepted, 'the fan-out of the backlog')

  // The load left autovacuum work behind (tens of thousands of new rows): done first, so that the numbers
  // are the sender's, not a vacuum's running beside it.
  await sql`VACUUM (ANALYZE) webhooks, deliveries`
  const backlog: BacklogRun[] = []
  for (const { id, maxInFlight } of backlogDestinations) {
    const deliveries = await pending(id)
    const gatewayCpu = processCpuMs(gateway.pid)
    const receiverCpu = processCpuMs(receiver.pid)
    const postgresCpu = postgresCpuMs(context.postmasterPid)
    const enabledAt = Date.now()
    await adminApi('PATCH', `/destinations/${id}`, { enabled: true })
    await waitUntil(
      async () => (await pending(id)) === 0,
      `the backlog of ${deliveries} for max_in_flight ${maxInFlight}`,
      async () => `${await pending(id)} still pending, ${await delivered(id)} delivered`,
    )
    const [last] = await sql`
      SELECT extract(epoch FROM max(a.attempted_at)) * 1000 + max(a.duration_ms) AS at
      FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id WHERE d.destination_id = ${id}`
    const elapsed = Math.max(1, Number(last?.at ?? Date.now()) - enabledAt) / 1000
    const postgresAfter = postgresCpuMs(context.postmasterPid)
    backlog.push({
      maxInFlight,
      deliveries,
      seconds: elapsed,
      perSecond: deliveries / elapsed,
      gatewayCpuUs: ((processCpuMs(gateway.pid) - gatewayCpu) * 1000) / deliveries,
      postgresCpuUs:
        postgresCpu === undefined || postgresAfter === undefined
          ? undefined
          : ((postgresAfter - postgresCpu) * 1000) / deliveries,
      receiverCpuUs: ((processCpuMs(receiver.pid) - receiverCpu) * 1000) / deliveries,
    })
  }
  const receiverStats = (await (await fetch(`${receiverUrl}/stats`)).json()) as DestinationsResult['receiver']
  return { steady, backlog, receiver: receiverStats }
}

const fixed = (value: number | undefined, digits = 1) => (value === undefined ? '-' : value.toFixed(digits))
const thousands = (value: number) => Math.round(value).toLocaleString('en-US')

/** The section as Markdown tables (the text output shows the same). */
export function renderDestinations(result: DestinationsResult): string {
  const { steady, backlog, receiver } = result
  return [
    '## Destinations: Stripe payments to an HTTP endpoint, signed (gateway with npm start defaults)',
    '',
    `Steady load: ${steady.rate} signed deliveries/s for ${steady.seconds} s (open loop); one destination for \`payment.*\`.`,
    '',
    '| sent | accepted | delivered | received -> endpoint answered p50 / p99 / max | of which received -> handled p50 / p99 | handled -> request sent p50 / p99 | gateway CPU/webhook | postgres CPU/webhook |',
    '|---|---|---|---|---|---|---|---|',
    `| ${thousands(steady.sent)} | ${thousands(steady.accepted)} | ${thousands(steady.delivered)} | ${fixed(steady.p50Ms)} / ${fixed(steady.p99Ms)} / ${fixed(steady.maxMs)} ms | ${fixed(steady.handledP50Ms)} / ${fixed(steady.handledP99Ms)} ms | ${fixed(steady.claimedP50Ms)} / ${fixed(steady.claimedP99Ms)} ms | ${fixed(steady.gatewayCpuUs, 0)} us | ${fixed(steady.postgresCpuUs, 0)} us |`,
    '',
    'Backlog: deliveries waiting for a disabled destination, sent when it is enabled.',
    '',
    '| max in flight | deliveries | seconds | deliveries/s | gateway CPU/delivery | postgres CPU/delivery | endpoint CPU/delivery |',
    '|---|---|---|---|---|---|---|',
    ...backlog.map(
      (run) =>
        `| ${run.maxInFlight} | ${thousands(run.deliveries)} | ${fixed(run.seconds)} | ${thousands(run.perSecond)} | ${fixed(run.gatewayCpuUs, 0)} us | ${fixed(run.postgresCpuUs, 0)} us | ${fixed(run.receiverCpuUs, 0)} us |`,
    ),
    '',
    `The endpoint verified ${thousands(receiver.verified)} requests with standardwebhooks, refused ${receiver.refused}, ` +
      `and saw ${thousands(receiver.distinct)} distinct (path, webhook-id) pairs.`,
    '',
  ].join('\n')
}
