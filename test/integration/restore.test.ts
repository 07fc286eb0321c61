import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import postgres from 'postgres'
import { describe, expect, it } from 'vitest'
import { eventId } from '../../src/pipeline/events.ts'
import { services, uniqueName, useTestDatabase, waitFor } from '../support/services.ts'
import { paymentIntentSucceeded, stripeDelivery } from '../support/signed.ts'

const run = promisify(execFile)
const secret = 'whsec_restore'
const db = useTestDatabase()

/** What the gateway answered a signed Stripe delivery. */
async function post(url: string, delivery: ReturnType<typeof stripeDelivery>) {
  const response = await fetch(`${url}/webhooks/stripe`, {
    method: 'POST',
    body: delivery.body,
    headers: delivery.headers,
  })
  return { status: response.status, body: (await response.json()) as { status: string; id: string } }
}

describe('a database restored from a backup', () => {
  it('accepts the redelivery of what was acknowledged after the backup, and only that, under the same CloudEvent ids', async () => {
    // A database of its own, so it can be dropped and restored under the same name.
    const name = uniqueName('gw_restore')
    const admin = postgres(services.postgres, { max: 1, onnotice: () => {} })
    db.defer(async () => {
      await admin`DROP DATABASE IF EXISTS ${admin(name)} WITH (FORCE)`
      await admin.end()
    })
    await admin`CREATE DATABASE ${admin(name)}`
    const url = new URL(services.postgres)
    url.pathname = `/${name}`
    const dumpDir = await mkdtemp(join(tmpdir(), 'gw-restore-'))
    db.defer(() => rm(dumpDir, { recursive: true, force: true }))
    const dump = join(dumpDir, 'backup.dump')

    const first = await db.startGateway({ STRIPE_WEBHOOK_SECRET: secret, DATABASE_URL: url.toString() })
    const capture = await db.captureEvents(first.config)
    const before = stripeDelivery(paymentIntentSucceeded(), { secret })
    const after = stripeDelivery(paymentIntentSucceeded(), { secret })
    const beforeId = (JSON.parse(before.body) as { id: string }).id
    const afterId = (JSON.parse(after.body) as { id: string }).id

    expect((await post(first.url, before)).body.status).toBe('accepted')
    await capture.waitFor((messages) =>
      messages.some((m) => m.event.id === eventId('stripe', beforeId, 'raw')),
    )
    // Marked published (marks follow the broker's confirms within a fraction of a second): a backup taken
    // before the mark would hold it unpublished, and its restore would publish it again, same id.
    await waitFor(async () => (await first.gateway.store.list({ key: beforeId }))[0]?.status === 'published')
    // The backup, taken while the gateway runs.
    await run('pg_dump', ['--format=custom', '--file', dump, url.toString()])
    const acked = await post(first.url, after)
    expect(acked.body.status).toBe('accepted')
    await capture.waitFor((messages) =>
      messages.some((m) => m.event.id === eventId('stripe', afterId, 'raw')),
    )
    await first.stop()

    // The database is lost and restored from the backup: the delivery acknowledged after it is gone.
    await admin`DROP DATABASE ${admin(name)} WITH (FORCE)`
    await admin`CREATE DATABASE ${admin(name)}`
    await run('pg_restore', ['--dbname', url.toString(), dump])

    const second = await db.startGateway({
      STRIPE_WEBHOOK_SECRET: secret,
      DATABASE_URL: url.toString(),
      AMQP_EXCHANGE: first.config.exchange,
      REDIS_PREFIX: first.config.redisPrefix,
    })
    // The operator redelivers both from the provider's dashboard.
    const lost = await post(second.url, after)
    expect(lost).toMatchObject({ status: 200, body: { status: 'accepted' } })
    const kept = await post(second.url, before)
    expect(kept).toMatchObject({ status: 200, body: { status: 'duplicate' } })

    // Published again under the same CloudEvent id, which consumers deduplicate on.
    const rawAfter = eventId('stripe', afterId, 'raw')
    await capture.waitFor((messages) => messages.filter((m) => m.event.id === rawAfter).length === 2)
    const restored = postgres(url.toString(), { max: 1, onnotice: () => {} })
    db.defer(() => restored.end())
    await waitFor(async () => {
      const [row] = await restored`SELECT status FROM webhooks WHERE event_key = ${afterId}`
      return row?.status === 'published'
    })
    const rawBefore = eventId('stripe', beforeId, 'raw')
    expect(capture.messages.filter((m) => m.event.id === rawBefore)).toHaveLength(1)
  }, 60_000)
})
