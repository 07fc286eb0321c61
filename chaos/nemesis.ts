import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Gateways } from './gateways.ts'
import type { FaultRecord, History } from './history.ts'
import type { Load, ResendTally } from './load.ts'
import type { Receiver } from './receiver.ts'
import type { Samplers } from './samplers.ts'
import type { ChaosServices } from './services.ts'

/**
 * The nemesis: a calm start, then one fault at a time, each held a few seconds and healed before the next,
 * the run waiting after each heal until the gateway answers 2xx again and the backlog is back near its calm
 * level. The last one restores Postgres from a dump taken earlier and redelivers what was acknowledged after it.
 */

export interface NemesisContext {
  readonly services: ChaosServices
  readonly gateways: Gateways
  readonly receiver: Receiver
  readonly load: Load
  readonly samplers: Samplers
  readonly history: History
  readonly scratchDir: string
  /** Gateways the run restarted because they were stuck with every dependency healed. */
  readonly livenessRestarts: LivenessRestart[]
}

export interface LivenessRestart {
  readonly name: string
  readonly at: number
  /** The fault after whose heal it was found stuck. */
  readonly after: string
  /** Its /health then. */
  readonly health: string
}

/** What the restore case found. */
export interface RestoreOutcome {
  readonly dumpStartedAt: number
  /** When the gateways were told to stop for the restore: rows acknowledged after the dump are gone from then. */
  readonly restoreBeganAt: number
  readonly dumpMs: number
  /** Acknowledgements that arrived before the dump began: the dump holds them all. */
  readonly ackedBeforeDump: number
  /** Acknowledged from the dump's start until the old gateways were gone: redelivered after the restore. */
  readonly redelivered: ResendTally
  readonly restoreMs: number
}

interface Step {
  readonly name: string
  readonly run: (context: NemesisContext, fault: FaultRecord) => Promise<void>
  /** How long to wait for recovery after the heal, when the plan's default is too short for this fault. */
  readonly recoveryMaxMs?: number
}

export interface Plan {
  readonly calmMs: number
  readonly steps: readonly Step[]
  /** The backlog is back to calm when it is at most this much above the calm period's highest reading. */
  readonly recoveryMaxMs: number
}

const hold = (ms: number) => sleep(ms)

/** Kills the main gateway with -9 (or SIGTERM) and starts it again on the same port; it stays in rotation. */
async function restartMain(context: NemesisContext, fault: FaultRecord, how: 'kill' | 'term'): Promise<void> {
  const { gateways, history } = context
  if (how === 'kill') await gateways.kill('main')
  else await gateways.terminate('main')
  await hold(2000)
  history.heal(fault)
  await gateways.start('main', 'all')
}

const steps = {
  kill9: {
    name: 'gateway kill -9 + restart',
    run: (context, fault) => restartMain(context, fault, 'kill'),
  },
  sigterm: {
    name: 'gateway SIGTERM + restart',
    run: (context, fault) => restartMain(context, fault, 'term'),
  },
  postgresStop: {
    name: 'postgres stop -m immediate',
    async run({ services, history }, fault) {
      await services.postgres.stopImmediate()
      await hold(7000)
      history.heal(fault)
      await services.postgres.start()
    },
  },
  postgresTerminate: {
    name: 'postgres terminate sessions',
    async run({ services, history }, fault) {
      const terminated = await services.postgres.terminateSessions()
      fault.notes.push(`${terminated} sessions terminated`)
      history.heal(fault)
    },
  },
  redisRestart: {
    name: 'redis shutdown + start empty',
    async run({ services, history }, fault) {
      await services.redis.shutdown()
      await hold(5000)
      history.heal(fault)
      await services.redis.start()
    },
  },
  redisPause: {
    name: 'redis CLIENT PAUSE 5 s',
    async run({ services, history }, fault) {
      await services.redis.pause(5000)
      await hold(5000)
      history.heal(fault)
    },
  },
  rabbitStop: {
    name: 'rabbitmq stop_app + start_app',
    async run({ services, history }, fault) {
      await services.rabbitmq.stopApp()
      await hold(7000)
      history.heal(fault)
      await services.rabbitmq.startApp()
    },
  },
  rabbitAway: {
    // Long enough to see whether a gateway holds what it cannot publish in memory: its RSS at the start and
    // at the heal are in the report's fault table, and the backlog it leaves takes a while to drain.
    name: 'rabbitmq stopped for 60 s (memory while the broker is gone)',
    recoveryMaxMs: 60_000,
    async run({ services, history }, fault) {
      await services.rabbitmq.stopApp()
      await hold(60_000)
      history.heal(fault)
      await services.rabbitmq.startApp()
    },
  },
  rabbitClose: {
    name: 'rabbitmq close all connections',
    async run({ services, history }, fault) {
      await services.rabbitmq.closeAllConnections()
      history.heal(fault)
    },
  },
  memoryAlarm: {
    name: 'rabbitmq memory alarm',
    async run({ services, history }, fault) {
      await services.rabbitmq.memoryAlarm(true)
      await hold(8000)
      history.heal(fault)
      await services.rabbitmq.memoryAlarm(false)
    },
  },
  destinationFailing: {
    name: 'destination answers 500',
    async run({ receiver, history }, fault) {
      receiver.mode = 'failing'
      await hold(10_000)
      history.heal(fault)
      receiver.mode = 'normal'
    },
  },
  destinationHanging: {
    name: 'destination hangs past its timeout',
    async run({ receiver, history }, fault) {
      receiver.mode = 'hanging'
      await hold(8000)
      history.heal(fault)
      receiver.mode = 'normal'
    },
  },
  twoGateways: {
    name: 'a second gateway beside the first',
    async run(context, fault) {
      const { gateways, history } = context
      const second = await gateways.start('second', 'all')
      gateways.addToRotation('second')
      fault.notes.push(`second gateway ${second.name} on port ${second.port}`)
      await hold(20_000)
      history.heal(fault)
      await gateways.terminate('second', { retire: true })
    },
  },
  apiWorkerApart: {
    name: 'API and worker apart (ROLE=api + ROLE=worker)',
    async run(context, fault) {
      const { gateways, history } = context
      const worker = await gateways.start('worker', 'worker')
      const api = await gateways.start('api', 'api')
      gateways.addToRotation('api')
      await gateways.terminate('main', { retire: true })
      fault.notes.push(`${api.name} on port ${api.port} and ${worker.name} in place of ROLE=all`)
      await hold(20_000)
      history.heal(fault)
      await gateways.start('main', 'all')
      gateways.addToRotation('main')
      await Promise.all([
        gateways.terminate('api', { retire: true }),
        gateways.terminate('worker', { retire: true }),
      ])
    },
  },
} satisfies Record<string, Step>

/** The dump the restore goes back to, taken while the load runs; acknowledged requests are kept from now on. */
function dumpStep(state: { dump?: Promise<{ startedAt: number; ms: number; ackedBefore: number }> }): Step {
  return {
    name: 'postgres dump (pg_dump while the load runs)',
    async run(context, fault) {
      const { load, services, history, scratchDir } = context
      load.retainAcked = true
      const startedAt = history.now()
      const ackedBefore = load.records.filter(
        (record) => record.kind === 'good' && record.ackedAt !== undefined,
      ).length
      state.dump = services.postgres.dump(join(scratchDir, 'chaos.dump')).then(() => ({
        startedAt,
        ms: history.now() - startedAt,
        ackedBefore,
      }))
      const { ms } = await state.dump
      fault.notes.push(
        `pg_dump took ${(ms / 1000).toFixed(1)} s; ${ackedBefore} acknowledged before it began`,
      )
      history.heal(fault)
    },
  }
}

function restoreStep(
  state: { dump?: Promise<{ startedAt: number; ms: number; ackedBefore: number }> },
  outcome: { restore?: RestoreOutcome },
): Step {
  return {
    name: 'postgres restore from the dump + redeliver',
    async run(context, fault) {
      const { gateways, services, history, load, scratchDir } = context
      if (!state.dump) throw new Error('nemesis: the restore step needs the dump step before it')
      const dump = await state.dump
      const restoreBeganAt = history.now()
      await gateways.stopAll({ closing: false })
      // From here on no process that could acknowledge into the old database is left.
      const oldGoneAt = history.now()
      const restoreStartedAt = history.now()
      await services.postgres.restore(join(scratchDir, 'chaos.dump'))
      const restoreMs = history.now() - restoreStartedAt
      history.heal(fault)
      await gateways.start('main', 'all')
      gateways.addToRotation('main')
      const lost = load.records.filter(
        (record) =>
          record.kind === 'good' &&
          record.ackedAt !== undefined &&
          record.ackedAt >= dump.startedAt &&
          record.ackedAt <= oldGoneAt,
      )
      history.say(`redelivering the ${lost.length} deliveries acknowledged since the dump began`)
      const redelivered = await load.redeliver(lost)
      load.forgetAcked()
      fault.notes.push(
        `restore took ${(restoreMs / 1000).toFixed(1)} s; redelivered ${redelivered.sent}: ` +
          `${redelivered.accepted} accepted, ${redelivered.duplicate} duplicate, ${redelivered.unacked} unanswered`,
      )
      history.say(fault.notes.at(-1) ?? '')
      outcome.restore = {
        dumpStartedAt: dump.startedAt,
        restoreBeganAt,
        dumpMs: dump.ms,
        ackedBeforeDump: dump.ackedBefore,
        redelivered,
        restoreMs,
      }
    },
  }
}

/** The short run (about 2.5 minutes) or the full one (about 6.5), and where the restore's outcome goes. */
export function makePlan(short: boolean): { plan: Plan; outcome: { restore?: RestoreOutcome } } {
  const state: { dump?: Promise<{ startedAt: number; ms: number; ackedBefore: number }> } = {}
  const outcome: { restore?: RestoreOutcome } = {}
  const dump = dumpStep(state)
  const restore = restoreStep(state, outcome)
  const list: Step[] = short
    ? [
        steps.kill9,
        steps.postgresStop,
        steps.redisRestart,
        dump,
        steps.rabbitStop,
        steps.destinationFailing,
        restore,
      ]
    : [
        steps.kill9,
        steps.sigterm,
        steps.postgresStop,
        steps.postgresTerminate,
        steps.redisRestart,
        steps.redisPause,
        steps.rabbitStop,
        steps.rabbitClose,
        steps.memoryAlarm,
        steps.rabbitAway,
        steps.destinationFailing,
        steps.destinationHanging,
        steps.twoGateways,
        dump,
        steps.apiWorkerApart,
        restore,
      ]
  return {
    plan: { calmMs: short ? 15_000 : 20_000, steps: list, recoveryMaxMs: short ? 12_000 : 15_000 },
    outcome,
  }
}

/** Runs the plan: calm, then each step and its recovery. Throws if a step fails (the run then heals and reports). */
export async function runNemesis(context: NemesisContext, plan: Plan): Promise<{ calmBacklog: number }> {
  const { history, samplers } = context
  history.say(`calm for ${plan.calmMs / 1000} s`)
  await sleep(plan.calmMs)
  history.calmEndsAt = history.now()
  // The second half of the calm: the first seconds are the gateway warming up (JIT, connection pools).
  const settledFrom = history.calmEndsAt - plan.calmMs / 2
  const calmReadings = samplers.backlog.flatMap((sample) =>
    sample.backlog === undefined || sample.at < settledFrom ? [] : [sample.backlog],
  )
  const calmBacklog = Math.max(0, ...calmReadings)
  history.say(`calm backlog (second half of the calm): at most ${calmBacklog}`)
  for (const step of plan.steps) {
    const fault = history.begin(step.name)
    await step.run(context, fault)
    if (fault.healedAt === undefined) history.heal(fault)
    await waitRecovered(context, fault, calmBacklog, step.recoveryMaxMs ?? plan.recoveryMaxMs)
  }
  return { calmBacklog }
}

/** Until a 2xx has arrived since the heal and the backlog is back near calm (at least 3 s, at most `maxMs`). */
async function waitRecovered(
  context: NemesisContext,
  fault: FaultRecord,
  calmBacklog: number,
  maxMs: number,
) {
  const { history, load, samplers } = context
  const healedAt = fault.healedAt ?? history.now()
  const deadline = history.now() + maxMs
  await sleep(3000)
  while (history.now() < deadline) {
    const answered = (load.okArrivedAt.at(-1) ?? 0) > healedAt
    const last = samplers.backlog.at(-1)
    const backlogCalm =
      last !== undefined &&
      last.at > healedAt &&
      last.backlog !== undefined &&
      last.backlog <= calmBacklog + 10
    if (answered && backlogCalm && context.receiver.mode === 'normal') {
      fault.settledAt = history.now()
      return
    }
    await sleep(250)
  }
  fault.settledAt = history.now()
  history.say(`${fault.name}: not recovered ${maxMs / 1000} s after the heal; going on`)
  if ((load.okArrivedAt.at(-1) ?? 0) <= healedAt) await restartStuck(context, fault)
}

/**
 * A liveness probe's restart: everything is healed, yet no delivery has been acknowledged since, and the API
 * gateways' /health is not ok. Each such gateway is killed and started again, so the rest of the run still
 * tests something; the report counts these restarts as a failure of their own.
 */
async function restartStuck(context: NemesisContext, fault: FaultRecord): Promise<void> {
  const { gateways, samplers, history } = context
  for (const slot of gateways.rotationSlots()) {
    const gateway = gateways.current(slot)
    if (!gateway) continue
    const health = samplers.healthOf(gateway.pid) ?? 'unknown'
    if (health.startsWith('ok') || health.startsWith('degraded')) continue
    context.livenessRestarts.push({ name: gateway.name, at: history.now(), after: fault.name, health })
    history.say(
      `LIVENESS: ${gateway.name} answers nothing 2xx and /health says "${health}": kill -9 and start again`,
    )
    fault.notes.push(`${gateway.name} stuck (/health "${health}"), restarted by the liveness check`)
    await gateways.kill(slot)
    await gateways.start(slot, gateway.role)
  }
}
