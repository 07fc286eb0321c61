import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import type { OutgoingEvent } from '../../src/pipeline/events.ts'
import type { Received } from '../../src/pipeline/intake.ts'
import { Worker, type HandledWebhook } from '../../src/pipeline/worker.ts'
import { Metrics } from '../../src/ops/metrics.ts'
import { silentLogger } from '../../src/ops/log.ts'
import { newWebhook } from '../support/stored.ts'
import { expectRecordedAgain } from '../support/records.ts'
import { workerStore } from '../support/worker-store.ts'

/** A webhook intake committed and handed over, mapped on receipt. */
function handedOver(): Received {
  const event: OutgoingEvent = { id: randomUUID(), type: 'raw.github.push', time: '', body: Buffer.alloc(16) }
  return { ...newWebhook(Buffer.from('{}')), mapped: { events: [event] } }
}

/**
 * A worker in front of a broker that confirms everything, whose records of published webhooks fail the first
 * `failures` times (Postgres restarting): every attempt to record is kept.
 */
function workerWith(failures: number, leaseSeconds: number) {
  const attempts: string[][] = []
  const worker = new Worker(
    workerStore(),
    {
      published: async (handled: readonly HandledWebhook[]) => {
        if (handled.length === 0) return
        attempts.push(handled.map((item) => item.webhookId))
        if (attempts.length <= failures) throw new Error('Connection terminated')
      },
      released: async () => {},
    },
    {
      broker: true,
      connected: true,
      whenConnected: async () => {},
      publish: async () => {},
    },
    {},
    {
      concurrency: 16,
      pollMs: 60_000,
      leaseSeconds,
      claimOwner: 1,
      retryDelaysSeconds: [5],
      log: silentLogger,
      metrics: new Metrics(),
    },
  )
  return { worker, attempts }
}

describe("the worker's records", () => {
  it('records published webhooks again after a failed statement, rather than leaving them to their lease', async () => {
    // A lease of 4 s: the marks linger up to 1 s, and are retried for a quarter of it.
    const { worker, attempts } = workerWith(1, 4)
    const webhooks = [handedOver(), handedOver(), handedOver()]
    worker.handOff.take(webhooks)
    await sleep(2500)
    await worker.stop(1000)
    // The failed statement's webhooks go again, with those published since.
    expectRecordedAgain(
      attempts,
      webhooks.map((webhook) => webhook.id),
    )
  })

  it('gives up once a quarter of the lease has passed since the first failure: the lease brings them back', async () => {
    // A lease of 2 s: the marks linger 0.5 s, then fail; the retry a second later is past 0.5 s of failing.
    const { worker, attempts } = workerWith(Number.POSITIVE_INFINITY, 2)
    worker.handOff.take([handedOver()])
    await sleep(3500)
    await worker.stop(1000)
    expect(attempts).toHaveLength(2)
  })
})
