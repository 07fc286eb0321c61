import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import type { OutgoingEvent } from '../../src/pipeline/events.ts'
import type { Received } from '../../src/pipeline/intake.ts'
import { Worker } from '../../src/pipeline/worker.ts'
import { Metrics } from '../../src/ops/metrics.ts'
import { silentLogger } from '../../src/ops/log.ts'
import { newWebhook } from '../support/stored.ts'
import { workerStore } from '../support/worker-store.ts'

const megabyte = 1024 * 1024

/** A webhook intake committed and handed over, mapped on receipt, with a body of `bytes`. */
function handedOver(bytes: number): Received {
  const event: OutgoingEvent = { id: randomUUID(), type: 'raw.github.push', time: '', body: Buffer.alloc(16) }
  return { ...newWebhook(Buffer.alloc(bytes)), mapped: { events: [event] } }
}

/**
 * A worker whose claims from Postgres return `claims` in turn, in front of a broker that takes every message
 * and confirms it, or by default confirms none (a stalled disk): what it holds in memory is then what it has
 * handed to the broker plus what intake handed over to it.
 */
function workerWith(concurrency: number, claims: Received[][] = [], confirms = false) {
  const published: number[] = []
  const claimed: number[] = []
  const worker = new Worker(
    workerStore(claims, (limit) => claimed.push(limit)),
    { published: async () => {}, released: async () => {} },
    {
      broker: true,
      connected: true,
      whenConnected: async () => {},
      publish: (events: readonly OutgoingEvent[]) => {
        published.push(events.length)
        return confirms ? Promise.resolve() : new Promise<void>(() => {})
      },
    },
    {},
    {
      concurrency,
      pollMs: 60_000,
      leaseSeconds: 600,
      claimOwner: 1,
      retryDelaysSeconds: [5],
      log: silentLogger,
      metrics: new Metrics(),
    },
  )
  return { worker, published, claimed }
}

describe('the worker with large bodies', () => {
  it('waits for confirms once 32 MB of bodies are with the broker, however few webhooks that is', async () => {
    const { worker, published } = workerWith(4)
    worker.handOff.take(Array.from({ length: 40 }, () => handedOver(megabyte)))
    await sleep(50)
    // Batches of 4 go out until 32 MB are unconfirmed; the other 8 wait, handed over.
    expect(published.length).toBe(32)
  })

  it('asks intake for no more hand-offs once 32 MB of bodies wait, and again for a handful of small ones', async () => {
    const large = workerWith(4)
    expect(large.worker.handOff.claim()).toBeDefined()
    large.worker.handOff.take(Array.from({ length: 40 }, () => handedOver(megabyte)))
    await sleep(50)
    // 32 with the broker, 8 MB handed over: room for more.
    expect(large.worker.handOff.claim()).toBeDefined()
    large.worker.handOff.take(Array.from({ length: 24 }, () => handedOver(megabyte)))
    await sleep(50)
    expect(large.published.length).toBe(32)
    // 32 MB handed over, far fewer than the 64 webhooks (16 claims of 4) it would otherwise hold.
    expect(large.worker.handOff.claim()).toBeUndefined()

    const small = workerWith(4)
    small.worker.handOff.take(Array.from({ length: 40 }, () => handedOver(1024)))
    await sleep(50)
    expect(small.published.length).toBe(40)
    expect(small.worker.handOff.claim()).toBeDefined()
  })

  it('claims again at once after a claim stopped by its byte budget, not only after a full one', async () => {
    // 64 webhooks asked for; the claim stopped at its 16 MB budget after two of 8 MB.
    const { worker, claimed, published } = workerWith(
      64,
      [[handedOver(8 * megabyte), handedOver(8 * megabyte)], [handedOver(1024)]],
      true,
    )
    worker.wake()
    await sleep(100)
    // The third would only come with the next wake: the second claim was short and small, so it took all.
    expect(claimed).toEqual([64, 64])
    expect(published.length).toBe(3)
  })
})
