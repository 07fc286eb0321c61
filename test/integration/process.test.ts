import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { freePort, startGatewayProcess } from '../support/gateway-process.ts'
import { captureEvents, deleteTopology, testEnv, useTestDatabase, waitFor } from '../support/services.ts'
import { paymentIntentSucceeded, stripeDelivery } from '../support/signed.ts'

const root = fileURLToPath(new URL('../..', import.meta.url))
const secret = 'whsec_process'
const db = useTestDatabase()

/** `npm start`'s command, as a child process with its own port. */
function startProcess(env: Record<string, string>): {
  child: ChildProcess
  exited: Promise<number | null>
  output: () => string
} {
  let output = ''
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout!.on('data', (chunk) => (output += chunk))
  child.stderr!.on('data', (chunk) => (output += chunk))
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
  return { child, exited, output: () => output }
}

describe('the gateway process', () => {
  it('starts, accepts and publishes a signed delivery, and exits 0 soon after SIGTERM', async () => {
    const port = String(await freePort())
    const env = {
      ...(testEnv(db.url, { STRIPE_WEBHOOK_SECRET: secret, LOG_LEVEL: 'info' }) as Record<string, string>),
      PORT: port,
    }
    const config = loadConfig(env)
    db.defer(() => deleteTopology(config.exchange))
    const events = await captureEvents(config)
    const gateway = startProcess(env)
    try {
      const base = `http://127.0.0.1:${port}`
      await waitFor(
        () =>
          fetch(`${base}/health`).then(
            (r) => r.ok,
            () => false,
          ),
        20_000,
        100,
      )

      const event = paymentIntentSucceeded({
        id: 'pi_process',
        amount: 700,
        currency: 'eur',
        customer: 'cus_1',
      })
      const { body, headers } = stripeDelivery(event, { secret })
      const response = await fetch(`${base}/webhooks/stripe`, {
        method: 'POST',
        body,
        headers: { ...headers, 'x-request-id': 'req-process-1' },
      })
      const answer = (await response.json()) as { status: string; id: string }
      expect(answer.status).toBe('accepted')
      expect(response.headers.get('x-request-id')).toBe('req-process-1')
      await events.waitFor((messages) => messages.filter((m) => m.event.webhookid === answer.id).length === 2)
      // A forged delivery: its rejection is logged, its signature never.
      const forged = stripeDelivery(event, { secret: 'whsec_forger' })
      const refused = await fetch(`${base}/webhooks/stripe`, {
        method: 'POST',
        body: forged.body,
        headers: forged.headers,
      })
      expect(refused.status).toBe(401)
      const madeUp = refused.headers.get('x-request-id')
      expect(madeUp).toMatch(/^[0-9a-f-]{36}$/)

      // Log lines are JSON, written asynchronously: these are out before the process stops.
      const lines = () =>
        gateway
          .output()
          .split('\n')
          .filter((line) => line.startsWith('{'))
          .map((line) => JSON.parse(line) as Record<string, unknown>)
      const accepted = await waitFor(
        () => lines().find((line) => line.msg === 'accepted' && line.id === answer.id),
        5000,
        20,
      )
      expect(accepted).toMatchObject({ level: 'info', provider: 'stripe', requestId: 'req-process-1' })
      expect(typeof accepted.time).toBe('string')
      const rejected = await waitFor(
        () => lines().find((line) => line.msg === 'rejected: invalid signature'),
        5000,
        20,
      )
      expect(rejected).toMatchObject({ level: 'warn', provider: 'stripe', requestId: madeUp })
      for (const secretText of [
        secret,
        'whsec_forger',
        headers['stripe-signature']!,
        forged.headers['stripe-signature']!,
      ])
        expect(gateway.output()).not.toContain(secretText)

      const stoppedAt = Date.now()
      gateway.child.kill('SIGTERM')
      expect(await gateway.exited).toBe(0)
      expect(Date.now() - stoppedAt).toBeLessThan(10_000)
      expect(gateway.output()).toMatch(/"msg":"stopped"/)
    } finally {
      gateway.child.kill('SIGKILL')
      await events.close()
    }
  })

  it("samples the event loop's delay while it has work, and stops waking itself once the work stops", async () => {
    const env = testEnv(db.url, { STRIPE_WEBHOOK_SECRET: secret, WORKER_POLL_MS: '1000' }) as Record<
      string,
      string
    >
    db.defer(() => deleteTopology(loadConfig(env).exchange))
    const gateway = await startGatewayProcess(env, db.defer)
    const pid = gateway.child.pid!
    // Two seconds of deliveries, ten at a time: the loop is busy well above the 3% that starts the sampling.
    const until = Date.now() + 2500
    let sent = 0
    await Promise.all(
      Array.from({ length: 10 }, async () => {
        while (Date.now() < until) {
          const event = paymentIntentSucceeded({ id: `pi_loop_${sent++}`, amount: 100, currency: 'eur' })
          const { body, headers } = stripeDelivery(event, { secret })
          const response = await fetch(`${gateway.base}/webhooks/stripe`, { method: 'POST', body, headers })
          expect(response.status).toBe(200)
        }
      }),
    )
    const gauge = async (name: string) => {
      const text = await (await fetch(`${gateway.base}/metrics`)).text()
      return Number(text.match(new RegExp(`^${name} (\\S+)$`, 'm'))?.[1])
    }
    // Delays were recorded (an empty histogram reads 0).
    expect(await gauge('nodejs_eventloop_lag_min_seconds')).toBeGreaterThan(0)

    // Idle, the gateway's main thread wakes about 9 times a second (its polls, heartbeats and the sampling's
    // check); a 20 ms sampling left on would add 50. Within 10 s there is a quiet 2 s.
    const wakeUps = () =>
      Number(
        readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8').match(
          /^voluntary_ctxt_switches:\s+(\d+)/m,
        )![1],
      )
    const windows: number[] = []
    for (const stopAt = Date.now() + 10_000; Date.now() < stopAt;) {
      const before = wakeUps()
      await sleep(2000)
      windows.push(wakeUps() - before)
      if (windows.at(-1)! < 60) break
    }
    expect(Math.min(...windows), `wake-ups in each 2 s: ${windows.join(', ')}`).toBeLessThan(60)
  })

  it('refuses to start with a broken configuration, naming the variable', async () => {
    const gateway = startProcess({ ...(testEnv(db.url) as Record<string, string>), ROLE: 'everything' })
    expect(await gateway.exited).not.toBe(0)
    expect(gateway.output()).toMatch(/ROLE/)
  })
})
