import type { ChildProcess } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ChaosServices } from './services.ts'
import {
  bounded,
  exitOf,
  failure,
  killGroup,
  run,
  spawnServer,
  timed,
  waitUntil,
  type Reaper,
  type Step,
} from './services-process.ts'

export interface RedisServer {
  readonly url: string
  readonly controls: ChaosServices['redis']
  heal(): Promise<void>
  close(): Promise<void>
}

export interface RedisOptions {
  readonly directory: string
  readonly port: number
  readonly reaper: Reaper
  readonly log: (line: string) => void
}

/** A private redis-server on 127.0.0.1:<port>, memory only: a restart comes back empty. */
export async function startRedis({ directory, port, reaper, log }: RedisOptions): Promise<RedisServer> {
  const home = join(directory, 'redis')
  const logFile = join(home, 'server.log')
  const step = (operation: string, timeoutMs = 10_000): Step => ({
    service: 'redis',
    operation,
    timeoutMs,
    logFiles: [logFile],
  })
  const cli = (step: Step, ...args: string[]) =>
    run(step, 'redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args])
  let server: ChildProcess | undefined
  let pausedUntil = 0
  const pauseLeft = () => Math.max(0, pausedUntil - Date.now())
  const running = () => server !== undefined && server.exitCode === null && server.signalCode === null
  reaper.add(() => killGroup(server))

  const start = async () => {
    if (running()) throw failure(step('start'), `failed: already running on port ${port}`)
    pausedUntil = 0
    server = spawnServer(
      'redis-server',
      ['--bind', '127.0.0.1', '--port', String(port), '--dir', home, '--save', '', '--appendonly', 'no'],
      logFile,
    )
    const ping = step('ping', 1000)
    await waitUntil(step('start'), async () => (await cli(ping, 'ping')).trim() === 'PONG', server)
  }

  mkdirSync(home)
  try {
    const started = await timed(start)
    log(`redis: ready on 127.0.0.1:${port} (start ${started.ms} ms)`)
  } catch (error) {
    killGroup(server)
    throw error
  }

  return {
    url: `redis://127.0.0.1:${port}`,
    controls: {
      async shutdown() {
        const stopping = server
        if (!stopping || !running()) return
        // SHUTDOWN too waits out a CLIENT PAUSE.
        const shutdown = step('shutdown', 10_000 + pauseLeft())
        await cli(shutdown, 'shutdown', 'nosave')
        await bounded(shutdown, exitOf(stopping))
      },
      start,
      async pause(ms) {
        pausedUntil = Math.max(pausedUntil, Date.now() + ms)
        await cli(step('client pause'), 'client', 'pause', String(ms), 'ALL')
      },
    },
    async heal() {
      if (!running()) return start()
      // CLIENT PAUSE ALL holds every command, CLIENT UNPAUSE included: healing waits the pause out.
      await sleep(pauseLeft())
    },
    async close() {
      const stopping = server
      if (!stopping || !running()) return
      killGroup(stopping)
      await bounded(step('close'), exitOf(stopping))
    },
  }
}
