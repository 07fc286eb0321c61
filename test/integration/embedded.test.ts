import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { freePort, startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts'
import { waitFor } from '../support/services.ts'
import { paymentIntentSucceeded, stripeDelivery } from '../support/signed.ts'

/**
 * The embedded defaults as a newcomer meets them: `npm start` with no DATABASE_URL, REDIS_URL or AMQP_URL runs
 * on an embedded PostgreSQL whose data lives in EMBEDDED_DATA_DIR (a directory of this test's own).
 */

const root = fileURLToPath(new URL('../..', import.meta.url))
const secret = 'whsec_embedded_test'
const cleanups: (() => Promise<unknown>)[] = []
const defer = (cleanup: () => Promise<unknown>) => cleanups.push(cleanup)

// Stopping a gateway and its PostgreSQL, and the one a killed gateway left, can take seconds each.
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {})
}, 60_000)

/**
 * A data directory of the test's own, removed afterwards with the server a gateway killed with -9 (the
 * test's cleanup) left running on it.
 */
function dataDirectory(): string {
  const directory = mkdtempSync(join(tmpdir(), 'gw-embedded-'))
  defer(async () => {
    const server = existsSync(join(directory, 'postgres', 'postmaster.pid')) ? postmasterPid(directory) : 0
    if (server > 0 && isAlive(server)) {
      process.kill(server, 'SIGINT')
      await waitFor(() => !isAlive(server), 10_000, 50)
    }
    rmSync(directory, { recursive: true, force: true })
  })
  return directory
}

/** npm start's environment with the three services unset (empty means unset), whatever the shell has. */
const embeddedEnv = (dataDir: string, extra: Record<string, string> = {}) => ({
  DATABASE_URL: '',
  REDIS_URL: '',
  AMQP_URL: '',
  EMBEDDED_DATA_DIR: dataDir,
  STRIPE_WEBHOOK_SECRET: secret,
  LOG_LEVEL: 'info',
  ...extra,
})

async function postPayment(
  gateway: GatewayProcess,
  eventId: string,
): Promise<{ status: string; id: string }> {
  const { body, headers } = stripeDelivery({ ...paymentIntentSucceeded(), id: eventId }, { secret })
  const response = await fetch(`${gateway.base}/webhooks/stripe`, { method: 'POST', body, headers })
  expect(response.status).toBe(200)
  return (await response.json()) as { status: string; id: string }
}

const postmasterPid = (dataDir: string) =>
  Number(readFileSync(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0])

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

// Each test starts a gateway, and initdb, two or three times: on a loaded machine that can take most of 30 s.
const slow = { timeout: 90_000 }

describe('npm start with DATABASE_URL unset', slow, () => {
  it('runs on an embedded PostgreSQL, says so first, and keeps its data across a restart', async () => {
    const dataDir = dataDirectory()
    const first = await startGatewayProcess(embeddedEnv(dataDir), defer)
    expect(first.output().split('\n')[0]).toContain(
      'DATABASE_URL is unset: running on an embedded PostgreSQL',
    )
    const health = await (await fetch(`${first.base}/health`)).json()
    expect(health).toEqual({ status: 'ok', checks: { postgres: 'up', redis: 'off', rabbitmq: 'off' } })
    const accepted = await postPayment(first, 'evt_embedded_kept')
    expect(accepted.status).toBe('accepted')
    const server = postmasterPid(dataDir)

    first.child.kill('SIGTERM')
    expect(await first.exited).toBe(0)
    // Stopped with the gateway, cleanly.
    expect(isAlive(server)).toBe(false)
    expect(existsSync(join(dataDir, 'postgres', 'postmaster.pid'))).toBe(false)

    const second = await startGatewayProcess(embeddedEnv(dataDir), defer)
    expect(await postPayment(second, 'evt_embedded_kept')).toEqual({ status: 'duplicate', id: accepted.id })
  })

  it('starts cleanly after the gateway was killed with -9, stopping the server it left running', async () => {
    const dataDir = dataDirectory()
    const first = await startGatewayProcess(embeddedEnv(dataDir), defer)
    const accepted = await postPayment(first, 'evt_embedded_killed')
    const leftRunning = postmasterPid(dataDir)
    first.child.kill('SIGKILL')
    await first.exited
    // The server outlives a gateway killed with -9 (it runs in a session of its own).
    expect(isAlive(leftRunning)).toBe(true)

    const second = await startGatewayProcess(embeddedEnv(dataDir), defer)
    expect(second.output()).toContain('stopping the server a killed gateway left running')
    expect(isAlive(leftRunning)).toBe(false)
    expect(postmasterPid(dataDir)).not.toBe(leftRunning)
    expect(await postPayment(second, 'evt_embedded_killed')).toEqual({ status: 'duplicate', id: accepted.id })
  })

  it('refuses a second gateway on the same data directory, and the first keeps running', async () => {
    const dataDir = dataDirectory()
    const first = await startGatewayProcess(embeddedEnv(dataDir), defer)
    const port = await freePort()
    const second = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: root,
      env: { ...process.env, ...embeddedEnv(dataDir), PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    defer(async () => second.kill('SIGKILL'))
    let output = ''
    second.stdout.on('data', (chunk) => (output += chunk))
    second.stderr.on('data', (chunk) => (output += chunk))
    const code = await new Promise((resolve) => second.on('exit', resolve))
    expect(code).toBe(1)
    expect(output).toContain(`another gateway (pid ${first.child.pid}) is using`)
    expect((await postPayment(first, 'evt_embedded_first')).status).toBe('accepted')
  })

  it('refuses ROLE=api without DATABASE_URL: the embedded PostgreSQL serves one process', async () => {
    const dataDir = dataDirectory()
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: root,
      env: { ...process.env, ...embeddedEnv(dataDir), ROLE: 'api', PORT: String(await freePort()) },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (chunk) => (output += chunk))
    expect(await new Promise((resolve) => child.on('exit', resolve))).toBe(1)
    expect(output).toContain('ROLE=api needs DATABASE_URL')
  })
})

describe('npm run dev and npm run send', slow, () => {
  // They read .env when there is one: the try-out is what a fresh clone (no .env) does.
  it.skipIf(existsSync(join(root, '.env')))(
    'run with no set-up: .env.example’s secrets, the dashboard’s line, events read from the admin API',
    async () => {
      const dataDir = dataDirectory()
      const port = await freePort()
      const env = {
        ...process.env,
        DATABASE_URL: '',
        REDIS_URL: '',
        AMQP_URL: '',
        ADMIN_TOKEN: '',
        STRIPE_WEBHOOK_SECRET: '',
        EMBEDDED_DATA_DIR: dataDir,
        PORT: String(port),
        GATEWAY_URL: `http://127.0.0.1:${port}`,
      }
      // An empty variable would win over the file: leave these to .env.example.
      for (const name of ['ADMIN_TOKEN', 'STRIPE_WEBHOOK_SECRET', 'AMQP_URL'] as const) delete env[name]
      // In a process group of its own: npm does not pass a signal on to the gateway it started, so the whole
      // group is stopped (else the gateway and its PostgreSQL outlive the test).
      const dev = spawn('npm', ['run', 'dev', '--silent'], {
        cwd: root,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      })
      let output = ''
      dev.stdout.on('data', (chunk) => (output += chunk))
      dev.stderr.on('data', (chunk) => (output += chunk))
      const exited = new Promise((resolve) => dev.on('exit', resolve))
      defer(async () => {
        process.kill(-dev.pid!, 'SIGTERM')
        await exited
        // The gateway (not npm) says it stopped once its PostgreSQL is stopped too.
        await waitFor(() => output.includes('"msg":"stopped"'), 10_000, 50)
      })
      await waitFor(() => output.includes('Ready on'), 30_000, 100)
      expect(output).toContain(
        `dashboard http://127.0.0.1:${port}/admin (token: local-admin-token-not-a-real-secret)`,
      )

      const send = spawn('npm', ['run', 'send', '--silent', '--', 'stripe', 'payment_intent.succeeded'], {
        cwd: root,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let sent = ''
      send.stdout.on('data', (chunk) => (sent += chunk))
      send.stderr.on('data', (chunk) => (sent += chunk))
      expect(await new Promise((resolve) => send.on('exit', resolve)), sent).toBe(0)
      expect(sent).toContain('"status":"accepted"')
      expect(sent).toContain("from the gateway's admin API (no broker configured)")
      expect(sent).toContain('raw.stripe.payment_intent.succeeded')
      expect(sent).toContain('payment.completed')
    },
  )
})
