import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.ts'
import { freePort } from '../support/gateway-process.ts'
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

  it('refuses to start with a broken configuration, naming the variable', async () => {
    const gateway = startProcess({ ...(testEnv(db.url) as Record<string, string>), ROLE: 'everything' })
    expect(await gateway.exited).not.toBe(0)
    expect(gateway.output()).toMatch(/ROLE/)
  })
})
