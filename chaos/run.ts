/**
 * npm run chaos -- [--short] [--rate N] [--seed S]
 *
 * A Jepsen-style set test of the gateway: clients add unique deliveries while a nemesis breaks the gateway
 * processes, Postgres, Redis, RabbitMQ and the destination, one fault at a time; then everything heals, the
 * backlog drains, and a final read must find every acknowledged delivery stored, published, on RabbitMQ and at
 * the destination, with no bad request acknowledged. The services are private throwaway instances
 * (chaos/services.ts), never the machine's shared ones.
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { liveOwners } from '../src/db/owners.ts'
import { finalRead, type FinalRead } from './check.ts'
import { setUpSigning, type Signing } from './deliveries.ts'
import { waitDrained, type Drain } from './drain.ts'
import { freePort } from '../src/free-port.ts'
import { Gateways, logTail, type GatewayProcess } from './gateways.ts'
import { History } from './history.ts'
import { Load } from './load.ts'
import { makePlan, runNemesis, type LivenessRestart, type NemesisContext } from './nemesis.ts'
import { Observer } from './observer.ts'
import { startProgress } from './progress.ts'
import { parseOptions, Random, usage, type Options } from './options.ts'
import { Receiver } from './receiver.ts'
import { buildReport, writeResult } from './report.ts'
import { connectRunDatabase, Samplers } from './samplers.ts'
import { closeOnExit, startServices, type ChaosServices } from './services.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const resultsDir = join(root, 'chaos', 'results')
const exchange = 'chaos.events'
/** The destination's timeout; a hanging destination holds its answer past it. */
const destinationTimeoutMs = 2000

async function waitRabbitmqUp(port: number, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const checks = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(2000) })
      .then((response) => response.json() as Promise<{ checks?: { rabbitmq?: string } }>)
      .catch(() => undefined)
    if (checks?.checks?.rabbitmq === 'up') return
    await sleep(200)
  }
  throw new Error('the gateway did not reach RabbitMQ within 60 s')
}

/** Registers the receiver as a destination for every event; returns its id and tells the receiver its secret. */
async function registerDestination(port: number, adminToken: string, receiver: Receiver): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/admin/destinations`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      url: receiver.url,
      events: ['#'],
      retry_schedule_seconds: [1, 2, 5, 10, 20, 30, 60],
      timeout_ms: destinationTimeoutMs,
    }),
  })
  const answer = (await response.json()) as { id?: string; secret?: string; error?: string }
  if (response.status !== 201 || !answer.id || !answer.secret)
    throw new Error(`POST /admin/destinations answered ${response.status}: ${JSON.stringify(answer)}`)
  receiver.setSecret(answer.secret)
  return answer.id
}

async function main(options: Options): Promise<boolean> {
  const history = new History()
  const stamp = history.startedAtIso.replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')
  const runDir = join(resultsDir, stamp)
  mkdirSync(runDir, { recursive: true })
  const scratchDir = mkdtempSync(join(tmpdir(), 'webhook-gateway-chaos-run-'))
  const random = new Random(options.seed)

  let services: ChaosServices | undefined
  let gateways: Gateways | undefined
  let signing: Signing | undefined
  let receiver: Receiver | undefined
  let observer: Observer | undefined
  let samplers: Samplers | undefined
  let load: Load | undefined
  let sql: ReturnType<typeof connectRunDatabase> | undefined
  let failure: string | undefined
  let calmBacklog = 0
  let drain: Drain | undefined
  let check: FinalRead | undefined
  let restore: ReturnType<typeof makePlan>['outcome'] = {}
  let stopProgress = () => {}
  const livenessRestarts: LivenessRestart[] = []
  const fail = (what: string, error: unknown) => {
    const message = `${what}: ${error instanceof Error ? error.message : String(error)}`
    failure ??= message
    history.say(`FAILED ${message}`)
  }
  // The last resort, also on a signal (closeOnExit exits the process): no gateway outlives the run.
  process.on('exit', () => {
    gateways?.killAllNow()
    rmSync(scratchDir, { recursive: true, force: true })
  })
  // Interrupted: the gateways go at once (closeOnExit closes the services and exits); no crash restarts meanwhile.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => gateways?.killAllNow())

  try {
    history.say(`chaos run: ${options.short ? 'short' : 'full'}, ${options.rate}/s, seed ${options.seed}`)
    history.say('starting private Postgres, Redis and RabbitMQ')
    services = await startServices({ log: (line) => history.say(line) })
    closeOnExit(services)
    signing = await setUpSigning(scratchDir, await freePort())
    receiver = await Receiver.start(destinationTimeoutMs + 1000)
    const adminToken = randomBytes(16).toString('hex')
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/tmp',
      DATABASE_URL: services.databaseUrl,
      REDIS_URL: services.redisUrl,
      REDIS_PREFIX: 'chaos:',
      AMQP_URL: services.amqpUrl,
      AMQP_EXCHANGE: exchange,
      HOST: '127.0.0.1',
      ...signing.gatewayEnv,
      ADMIN_TOKEN: adminToken,
      ALLOW_HTTP_DESTINATIONS: 'true',
      DESTINATION_ALLOWED_HOSTS: '127.0.0.1',
      LOG_LEVEL: 'warn',
    }
    const database = connectRunDatabase(services.databaseUrl)
    sql = database
    const running = new Gateways({
      cwd: root,
      runDir,
      env,
      history,
      liveWorkers: async () => (await liveOwners(database)).length,
    })
    gateways = running
    const main = await running.start('main', 'all')
    await waitRabbitmqUp(main.port)
    observer = await Observer.start(services.amqpUrl, exchange, (line) => history.say(line))
    const destinationId = await registerDestination(main.port, adminToken, receiver)
    samplers = new Samplers(database, history, () => running.running())
    samplers.start()
    load = new Load({ rate: options.rate, random, history, signing, targets: () => running.targets() })
    running.addToRotation('main')
    load.start()
    stopProgress = startProgress({ history, load, samplers, observer, receiver })
    history.say(`load: ${options.rate} new deliveries a second to ${running.targets().join(', ')}`)

    const { plan, outcome } = makePlan(options.short)
    restore = outcome
    const context: NemesisContext = {
      services,
      gateways: running,
      receiver,
      load,
      samplers,
      history,
      scratchDir,
      livenessRestarts,
    }
    try {
      calmBacklog = (await runNemesis(context, plan)).calmBacklog
    } catch (error) {
      fail('nemesis', error)
      receiver.mode = 'normal'
      await services.heal().catch((healing: unknown) => fail('heal', healing))
      if (!running.running().some((gateway: GatewayProcess) => gateway.role !== 'worker')) {
        await running.start('main', 'all')
        running.addToRotation('main')
      }
    }

    history.say('load: no new deliveries; retrying what is unacknowledged for up to 30 s')
    load.stopNew()
    await services.heal()
    await load.settle(30_000)
    history.say('waiting for the backlog to drain')
    drain = await waitDrained({
      sql: database,
      observer,
      receiver,
      history,
      limitMs: options.short ? 60_000 : 120_000,
    })
    history.say(drain.drained ? `drained in ${(drain.ms / 1000).toFixed(1)} s` : `not drained: ${drain.left}`)
    samplers.stop()
    await running.stopAll({ closing: true })
    check = await finalRead({
      sql: database,
      destinationId,
      records: load.records,
      observer,
      receiver,
      stops: running.stops,
      crashes: running.crashes,
      resendsAccepted: load.resendsAccepted,
      faults: history.faults,
      livenessRestarts,
      okArrivedAt: load.okArrivedAt,
      restore: restore.restore,
    })
  } catch (error) {
    fail('run', error)
  } finally {
    stopProgress()
    samplers?.stop()
    load?.stopNew()
    await gateways?.stopAll({ closing: true }).catch((error: unknown) => fail('stopping the gateways', error))
    await observer?.close().catch(() => {})
    await receiver?.close().catch(() => {})
    await load?.close().catch(() => {})
    await signing?.close().catch(() => {})
    await sql?.end({ timeout: 2 }).catch(() => {})
    await services?.close().catch((error: unknown) => fail('closing the services', error))
    rmSync(scratchDir, { recursive: true, force: true })
  }

  if (!load || !observer || !receiver) {
    console.log(`chaos run FAILED before the load began: ${failure ?? 'unknown'}`)
    for (const gateway of gateways?.started ?? []) {
      console.log(`\nlast lines of ${gateway.name} (${gateway.logFile}):`)
      console.log(logTail(gateway.logFile, 20).join('\n'))
    }
    return false
  }
  const report = buildReport({
    options,
    history,
    load,
    backlog: samplers?.backlog ?? [],
    rss: samplers ? [...samplers.rss.values()] : [],
    health: samplers?.health ?? [],
    stops: gateways?.stops ?? [],
    crashes: gateways?.crashes ?? [],
    restartFailures: gateways?.restartFailures ?? [],
    observer,
    receiver,
    calmBacklog,
    restore: restore.restore,
    drain,
    check,
    failure,
    servicesStartupMs: (services as { startupMs?: Record<string, number> } | undefined)?.startupMs,
    runDir,
    totalMs: history.now(),
  })
  console.log(report.text)
  const file = writeResult(resultsDir, stamp, report.json)
  console.log(`\nresults: ${file}`)
  if (!report.passed && gateways) {
    // The refusals of the bad deliveries are expected: what is left is what went wrong.
    for (const gateway of gateways.started.slice(-3)) {
      console.log(`\nlast lines of ${gateway.name} (${gateway.logFile}), refusals left out:`)
      console.log(logTail(gateway.logFile, 15, /"msg":"rejected: /).join('\n'))
    }
  }
  return report.passed
}

let options: Options | 'help'
try {
  options = parseOptions(process.argv.slice(2))
} catch (error) {
  console.error(`${(error as Error).message}\n\n${usage}`)
  process.exit(2)
}
if (options === 'help') {
  console.log(usage)
  process.exit(0)
}
const passed = await main(options)
process.exit(passed ? 0 : 1)
