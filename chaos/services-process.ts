import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

/** One operation on one service: what an error names, how long it may take, which logs explain a failure. */
export interface Step {
  readonly service: string
  readonly operation: string
  readonly timeoutMs: number
  readonly logFiles: readonly string[]
}

export class ServiceError extends Error {
  override readonly name = 'ServiceError'
}

export const isRoot = process.getuid?.() === 0

function logTail(file: string, lines = 15): string {
  if (!existsSync(file)) return ''
  const tail = readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  return `\n--- last lines of ${file} ---\n${tail}`
}

export function failure(step: Step, reason: string): ServiceError {
  return new ServiceError(
    `${step.service}: ${step.operation} ${reason}${step.logFiles.map((file) => logTail(file)).join('')}`,
  )
}

/** Signals a whole process group; one that is gone already is no error. */
export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal)
  } catch {
    // Gone already.
  }
}

/**
 * SIGKILLs a detached child's whole process group, so a wrapper script's grandchildren go too. Not once the
 * child has been reaped: its pid may belong to someone else by then.
 */
export function killGroup(child: ChildProcess | undefined): void {
  if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  signalGroup(child.pid, 'SIGKILL')
}

export function isAlive(pid: number, group = false): boolean {
  try {
    process.kill(group ? -pid : pid, 0)
    return true
  } catch (error) {
    // EPERM: alive, but another user's (a root run's postmaster seen by nobody, say).
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Rejects with the step's timeout error unless `work` settles first. */
export async function bounded<T>(step: Step, work: Promise<T>): Promise<T> {
  const timeout = new AbortController()
  try {
    return await Promise.race([
      work,
      sleep(step.timeoutMs, undefined, { signal: timeout.signal }).then(() => {
        throw failure(step, `timed out after ${step.timeoutMs} ms`)
      }),
    ])
  } finally {
    timeout.abort()
  }
}

export interface RunOptions {
  readonly env?: NodeJS.ProcessEnv
  readonly cwd?: string
}

/**
 * Runs a command to completion and returns its stdout; nothing reaches our own stdout. It runs in its own
 * process group, killed whole on timeout: rabbitmqctl is a script whose Erlang VM would outlive a plain kill.
 */
export function run(
  step: Step,
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<string> {
  const child = spawn(command, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env: options.env ?? process.env,
    cwd: options.cwd ?? process.cwd(),
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk))
  const exited = new Promise<string>((resolve, reject) => {
    child.on('error', (error) => reject(failure(step, `could not run ${command}: ${error.message}`)))
    child.on('close', (code, signal) => {
      if (code === 0) return resolve(stdout)
      const output = (stderr.trim() || stdout.trim()).split('\n').slice(-10).join('\n')
      reject(failure(step, `failed (${command} exited with ${code ?? signal}): ${output}`))
    })
  })
  return bounded(step, exited).finally(() => killGroup(child))
}

/** Starts a long-running server in its own process group, its output appended to `logFile`. */
export function spawnServer(
  command: string,
  args: readonly string[],
  logFile: string,
  options: RunOptions = {},
): ChildProcess {
  const output = openSync(logFile, 'a')
  try {
    const child = spawn(command, args, {
      stdio: ['ignore', output, output],
      detached: true,
      env: options.env ?? process.env,
      cwd: options.cwd ?? process.cwd(),
    })
    // A server that cannot start is reported by exitOf; without a listener the error would crash us.
    child.on('error', () => {})
    // The servers must not keep a finished run alive; the 'exit' handlers kill them.
    child.unref()
    return child
  } finally {
    closeSync(output)
  }
}

/** Polls `ready` until it holds; fails at once if the server process exits meanwhile. */
export async function waitUntil(
  step: Step,
  ready: () => Promise<boolean>,
  server?: ChildProcess,
): Promise<void> {
  let polling = true
  const polled = (async () => {
    while (polling && !(await ready().catch(() => false))) await sleep(50)
  })()
  const exited = server
    ? exitOf(server).then((how) => {
        throw failure(step, `failed: the server exited (${how})`)
      })
    : new Promise<never>(() => {})
  try {
    await bounded(step, Promise.race([polled, exited]))
  } finally {
    polling = false
  }
}

/** Resolves when the process has exited (or could not start), saying how. */
export function exitOf(child: ChildProcess): Promise<string> {
  if (child.exitCode !== null) return Promise.resolve(`exit code ${child.exitCode}`)
  if (child.signalCode !== null) return Promise.resolve(`signal ${child.signalCode}`)
  // Servers are unref'd so that they do not keep a finished run alive; waiting on one must.
  child.ref()
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve(code === null ? `signal ${signal}` : `exit code ${code}`))
    child.once('error', (error) => resolve(error.message))
  })
}

/** Whether something accepts TCP connections on the port. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.setTimeout(1000)
    socket.once('connect', () => resolve(true))
    socket.once('error', () => resolve(false))
    socket.once('timeout', () => resolve(false))
    socket.once('close', () => resolve(false))
    socket.once('connect', () => socket.destroy())
  })
}

export async function timed<T>(work: () => Promise<T>): Promise<{ result: T; ms: number }> {
  const startedAt = performance.now()
  const result = await work()
  return { result, ms: Math.round(performance.now() - startedAt) }
}

/** Blocks the thread: for the process 'exit' handler, where nothing asynchronous runs any more. */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/** What must die when this process exits, however it exits: called synchronously, each at most once. */
export class Reaper {
  private kills: (() => void)[] = []

  add(kill: () => void): void {
    this.kills.push(kill)
  }

  reap(): void {
    const kills = this.kills
    this.kills = []
    for (const kill of kills) kill()
  }
}
