import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { track } from './cleanup.ts'

/** The servers under test: each a child process running `node --import tsx <script>`, its output in a file. */

export interface Child {
  readonly process: ChildProcess
  readonly pid: number
  readonly name: string
  /** Its stdout and stderr. */
  readonly logFile: string
  readonly exited: Promise<void>
}

export function startServer(options: {
  readonly name: string
  readonly cwd: string
  readonly script: string
  readonly env: Readonly<Record<string, string>>
  readonly logFile: string
  /** Before `--import tsx`, e.g. --cpu-prof. */
  readonly nodeFlags?: readonly string[]
}): Child {
  const log = openSync(options.logFile, 'a')
  try {
    // node itself, not npm or tsx's CLI, so the pid is the server's own for /proc.
    const child = spawn(process.execPath, [...(options.nodeFlags ?? []), '--import', 'tsx', options.script], {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', log, log],
    })
    if (child.pid === undefined) throw new Error(`${options.name}: could not start node`)
    track(child)
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    return { process: child, pid: child.pid, name: options.name, logFile: options.logFile, exited }
  } finally {
    closeSync(log)
  }
}

const running = (child: Child) => child.process.exitCode === null && child.process.signalCode === null

/** Throws, with the end of its log, if the server has exited: its numbers would mean nothing. */
export function assertRunning(child: Child, when: string): void {
  if (!running(child)) throw new Error(`${child.name} exited ${when}:\n${logTail(child.logFile).join('\n')}`)
}

/** Waits for GET /health to answer 200, up to `timeoutMs`; fails early if the server exits. */
export async function waitHealthy(
  child: Child,
  host: string,
  port: number,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!running(child))
      throw new Error(`${child.name} exited before it was healthy:\n${logTail(child.logFile).join('\n')}`)
    const status = await fetch(`http://${host}:${port}/health`, { signal: AbortSignal.timeout(1000) }).then(
      (response) => response.status,
      () => 0,
    )
    if (status === 200) return
    await sleep(100)
  }
  throw new Error(
    `${child.name} was not healthy within ${timeoutMs / 1000} s:\n${logTail(child.logFile).join('\n')}`,
  )
}

/** SIGTERM, then SIGKILL if it has not exited within 10 s (the gateway's shutdown bound). */
export async function stopServer(child: Child): Promise<void> {
  if (!running(child)) return
  child.process.kill('SIGTERM')
  if ((await Promise.race([child.exited, sleep(10_000, 'timeout', { ref: false })])) === 'timeout') {
    child.process.kill('SIGKILL')
    await child.exited
  }
}

export { freePort } from '../src/free-port.ts'

/** The last `count` lines of a log file. */
export function logTail(file: string, count = 20): string[] {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-count)
  } catch {
    return []
  }
}

export interface LogSummary {
  readonly lines: number
  /** Lines at level warn or error, and lines that are not JSON (a stack trace on stderr). */
  readonly problems: number
  /** The first few of those, shortened. */
  readonly firstProblems: readonly string[]
}

/** Counts what a server logged that is not `info` or `debug`. */
export function summarizeLog(file: string): LogSummary {
  let text = ''
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    // No log: nothing was written.
  }
  const lines = text.split('\n').filter((line) => line.trim() !== '')
  const problems = lines.filter((line) => !/^\{.*"level":"(info|debug)"/.test(line))
  return {
    lines: lines.length,
    problems: problems.length,
    firstProblems: problems
      .slice(0, 3)
      .map((line) => (line.length > 240 ? `${line.slice(0, 240)}...` : line)),
  }
}
