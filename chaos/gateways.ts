import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from '../src/free-port.ts'
import type { History } from './history.ts'

/**
 * The gateways under test: child processes `node --import tsx src/main.ts`, each with its log in the run
 * directory, in named slots (`main`, `second`, `api`, `worker`) with a fixed port each. The load sends to the
 * API slots "in rotation", as a load balancer would; the nemesis kills, stops and starts them. A process
 * that exits without being told to is a crash: it is recorded and restarted, as systemd or Kubernetes would.
 */

export type Role = 'all' | 'api' | 'worker'

export interface GatewayProcess {
  /** `main#2`: the slot and which start of it this is. */
  readonly name: string
  readonly slot: string
  readonly role: Role
  readonly port: number
  readonly pid: number
  readonly logFile: string
  readonly child: ChildProcess
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  /** Milliseconds since the run began. */
  readonly startedAt: number
}

/** How a SIGTERM went: the contract says exit 0 within 10 s. */
export interface StopRecord {
  readonly name: string
  readonly ms: number
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  /** True when it did not exit within the bound and was killed. */
  readonly killed: boolean
}

/** A gateway that exited on its own. */
export interface CrashRecord {
  readonly name: string
  /** Milliseconds since the run began. */
  readonly at: number
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  /** The end of its log: the stack trace, usually. */
  readonly lastLines: readonly string[]
}

interface Slot {
  readonly name: string
  readonly role: Role
  readonly port: number
  current: GatewayProcess | undefined
  /** Whether the slot should be running: a crash restarts it only then. */
  wanted: boolean
  /** Exits the run asked for (kill or SIGTERM), by pid: anything else is a crash. */
  readonly told: Set<number>
  /** A restart after a crash, in progress. */
  restarting: Promise<void> | undefined
}

const healthyWithinMs = 60_000
const sigtermBoundMs = 10_000
const restartAfterCrashMs = 1000

/** The last `count` lines of a gateway's log, leaving out those matching `skip`. */
export function logTail(file: string, count = 25, skip?: RegExp): string[] {
  try {
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n')
    return (skip ? lines.filter((line) => !skip.test(line)) : lines).slice(-count)
  } catch {
    return []
  }
}

const isRunning = (gateway: GatewayProcess | undefined): gateway is GatewayProcess =>
  gateway !== undefined && gateway.child.exitCode === null && gateway.child.signalCode === null

export class Gateways {
  /** Every process started, in order, for the report (RSS, logs). */
  readonly started: GatewayProcess[] = []
  readonly stops: StopRecord[] = []
  readonly crashes: CrashRecord[] = []
  /** Restarts after a crash that failed (and were tried again). */
  readonly restartFailures: string[] = []
  /** Processes that came up: only their unasked exits are crashes. */
  private readonly ready = new Set<number>()
  private readonly slots = new Map<string, Slot>()
  private readonly starts = new Map<string, number>()
  /** Slots the load sends to. */
  private rotation: string[] = []
  private closing = false

  constructor(
    private readonly options: {
      readonly cwd: string
      readonly runDir: string
      readonly env: Readonly<Record<string, string>>
      readonly history: History
      /** How many worker processes hold their claim lock in Postgres now (a worker has no HTTP port). */
      readonly liveWorkers: () => Promise<number>
    },
  ) {}

  /** The API slots in rotation. */
  rotationSlots(): readonly string[] {
    return this.rotation
  }

  /** The URLs of the API slots in rotation. */
  targets(): readonly string[] {
    return this.rotation.flatMap((name) => {
      const slot = this.slots.get(name)
      return slot ? [`http://127.0.0.1:${slot.port}`] : []
    })
  }

  addToRotation(slot: string): void {
    if (this.slots.get(slot)?.role !== 'worker' && !this.rotation.includes(slot))
      this.rotation = [...this.rotation, slot]
  }

  removeFromRotation(slot: string): void {
    this.rotation = this.rotation.filter((name) => name !== slot)
  }

  running(): GatewayProcess[] {
    return this.started.filter(isRunning)
  }

  current(slot: string): GatewayProcess | undefined {
    return this.slots.get(slot)?.current
  }

  /**
   * Starts `slot` (its port fixed at its first start: `port`, or a free one) and waits until it serves (API) or
   * holds its claim lock (worker). A slot already running after a crash restart is returned as it is.
   */
  async start(name: string, role: Role, port?: number): Promise<GatewayProcess> {
    let slot = this.slots.get(name)
    if (!slot) {
      slot = {
        name,
        role,
        port: port ?? (await freePort()),
        current: undefined,
        wanted: true,
        told: new Set(),
        restarting: undefined,
      }
      this.slots.set(name, slot)
    }
    slot.wanted = true
    await slot.restarting
    if (isRunning(slot.current)) return slot.current
    return this.spawn(slot)
  }

  /** kill -9: no shutdown at all. The slot stays wanted (the nemesis starts it again). */
  async kill(name: string): Promise<void> {
    const slot = this.slots.get(name)
    await slot?.restarting
    const gateway = slot?.current
    if (!slot || !isRunning(gateway)) return
    slot.told.add(gateway.pid)
    gateway.child.kill('SIGKILL')
    await gateway.exited
  }

  /** SIGTERM, timed; SIGKILL after the contract's 10 s (and a margin) so the run goes on. */
  async terminate(
    name: string,
    options: { readonly retire?: boolean } = {},
  ): Promise<StopRecord | undefined> {
    const slot = this.slots.get(name)
    if (!slot) return undefined
    if (options.retire) {
      slot.wanted = false
      this.removeFromRotation(name)
    }
    await slot.restarting
    const gateway = slot.current
    if (!isRunning(gateway)) return undefined
    slot.told.add(gateway.pid)
    const startedAt = performance.now()
    gateway.child.kill('SIGTERM')
    const outcome = await Promise.race([
      gateway.exited,
      sleep(sigtermBoundMs + 2000, undefined, { ref: false }),
    ])
    let record: StopRecord
    if (outcome === undefined) {
      gateway.child.kill('SIGKILL')
      const { code, signal } = await gateway.exited
      record = { name: gateway.name, ms: performance.now() - startedAt, code, signal, killed: true }
    } else {
      record = { name: gateway.name, ms: performance.now() - startedAt, ...outcome, killed: false }
    }
    this.stops.push(record)
    const ok = record.code === 0 && record.ms <= sigtermBoundMs
    this.options.history.say(
      `SIGTERM ${gateway.name}: ${record.killed ? 'still running, killed' : `exit ${record.code ?? record.signal}`} ` +
        `after ${(record.ms / 1000).toFixed(1)} s${ok ? '' : '  <-- NOT exit 0 within 10 s'}`,
    )
    if (!ok) for (const line of logTail(gateway.logFile, 10)) this.options.history.say(`  ${line}`)
    return record
  }

  /** Stops every gateway with SIGTERM, for a restore (`closing` false: they are started again) or the run's end. */
  async stopAll(options: { readonly closing: boolean }): Promise<void> {
    if (options.closing) this.closing = true
    this.rotation = []
    await Promise.all([...this.slots.keys()].map((name) => this.terminate(name, { retire: options.closing })))
  }

  /** The synchronous last resort for the process' exit: nothing of ours outlives the run. */
  killAllNow(): void {
    this.closing = true
    for (const gateway of this.running()) gateway.child.kill('SIGKILL')
  }

  private async spawn(slot: Slot): Promise<GatewayProcess> {
    const count = (this.starts.get(slot.name) ?? 0) + 1
    this.starts.set(slot.name, count)
    const name = `${slot.name}#${count}`
    const logFile = join(this.options.runDir, `gateway-${slot.name}-${count}.log`)
    const workersBefore = slot.role === 'worker' ? await this.options.liveWorkers().catch(() => 0) : 0
    const log = openSync(logFile, 'a')
    let child: ChildProcess
    try {
      // node itself, not npm: the pid is the gateway's own, for signals and /proc.
      child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        cwd: this.options.cwd,
        env: { ...this.options.env, ROLE: slot.role, PORT: String(slot.port) },
        stdio: ['ignore', log, log],
      })
    } finally {
      closeSync(log)
    }
    if (child.pid === undefined) throw new Error(`${name}: could not start node`)
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    )
    const gateway: GatewayProcess = {
      name,
      slot: slot.name,
      role: slot.role,
      port: slot.port,
      pid: child.pid,
      logFile,
      child,
      exited,
      startedAt: this.options.history.now(),
    }
    slot.current = gateway
    this.started.push(gateway)
    void exited.then((outcome) => this.onExit(slot, gateway, outcome))
    const startedAt = this.options.history.now()
    if (slot.role === 'worker') await this.waitWorker(gateway, workersBefore)
    else await this.waitHealthy(gateway)
    this.ready.add(gateway.pid)
    this.options.history.say(
      `started ${name} (ROLE=${slot.role}${slot.role === 'worker' ? '' : `, port ${slot.port}`}, pid ${gateway.pid}) ` +
        `in ${((this.options.history.now() - startedAt) / 1000).toFixed(1)} s`,
    )
    return gateway
  }

  /**
   * A crash (an exit nobody asked for, of a process that had come up) is recorded and, while the slot is wanted,
   * restarted with backoff until a start succeeds (a start fails while Postgres is down: not a crash).
   */
  private onExit(
    slot: Slot,
    gateway: GatewayProcess,
    outcome: { code: number | null; signal: NodeJS.Signals | null },
  ): void {
    if (slot.told.has(gateway.pid) || this.closing || !this.ready.has(gateway.pid)) return
    const lastLines = logTail(gateway.logFile, 12)
    this.crashes.push({ name: gateway.name, at: this.options.history.now(), ...outcome, lastLines })
    const { history } = this.options
    history.say(`CRASH: ${gateway.name} exited by itself (${outcome.code ?? outcome.signal}); its log ends:`)
    for (const line of lastLines) history.say(`  ${line.slice(0, 300)}`)
    if (!slot.wanted || slot.current !== gateway || slot.restarting) return
    slot.restarting = (async () => {
      for (let attempt = 0; !this.closing && slot.wanted && !isRunning(slot.current); attempt++) {
        await sleep(Math.min(restartAfterCrashMs * 2 ** attempt, 5000))
        if (this.closing || !slot.wanted || isRunning(slot.current)) return
        try {
          await this.spawn(slot)
        } catch (error) {
          const reason = (error as Error).message.split('\n').slice(0, 2).join(' ')
          this.restartFailures.push(`${slot.name}: ${reason}`)
          history.say(`restarting ${slot.name} after its crash failed (${reason}); trying again`)
        }
      }
    })().finally(() => (slot.restarting = undefined))
  }

  private async waitHealthy(gateway: GatewayProcess): Promise<void> {
    const deadline = Date.now() + healthyWithinMs
    while (Date.now() < deadline) {
      if (gateway.child.exitCode !== null || gateway.child.signalCode !== null)
        throw new Error(
          `${gateway.name} exited before it was healthy:\n${logTail(gateway.logFile).join('\n')}`,
        )
      const status = await fetch(`http://127.0.0.1:${gateway.port}/health`, {
        signal: AbortSignal.timeout(2000),
      }).then(
        (response) => response.status,
        () => 0,
      )
      if (status === 200) return
      await sleep(100)
    }
    throw new Error(`${gateway.name} was not healthy within 60 s:\n${logTail(gateway.logFile).join('\n')}`)
  }

  private async waitWorker(gateway: GatewayProcess, before: number): Promise<void> {
    const deadline = Date.now() + healthyWithinMs
    while (Date.now() < deadline) {
      if (gateway.child.exitCode !== null || gateway.child.signalCode !== null)
        throw new Error(`${gateway.name} exited before it was ready:\n${logTail(gateway.logFile).join('\n')}`)
      if ((await this.options.liveWorkers().catch(() => 0)) > before) return
      await sleep(200)
    }
    throw new Error(`${gateway.name} held no claim lock within 60 s:\n${logTail(gateway.logFile).join('\n')}`)
  }
}
