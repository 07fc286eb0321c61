import { afterEach, describe, expect, it, vi } from 'vitest'
import { Intake, StorageTimeout } from '../../src/pipeline/intake.ts'
import type { InsertResult, NewWebhook } from '../../src/db/webhooks.ts'

const webhook = (eventKey: string): NewWebhook => ({
  id: `id-${eventKey}`,
  provider: 'stripe',
  eventKey,
  eventType: 'payment_intent.succeeded',
  method: 'POST',
  path: '/webhooks/stripe',
  publicUrl: 'http://localhost/webhooks/stripe',
  headers: {},
  body: Buffer.from('{}'),
  receivedAt: new Date(),
})

/** A store stand-in whose commits finish only when the test says so. */
function controlledStore() {
  const groups: { webhooks: readonly NewWebhook[]; finish: (error?: Error) => void }[] = []
  return {
    groups,
    insertWebhooks: (webhooks: readonly NewWebhook[]) =>
      new Promise<InsertResult[]>((resolve, reject) => {
        groups.push({
          webhooks,
          finish: (error) =>
            error ? reject(error) : resolve(webhooks.map((w) => ({ id: w.id, duplicate: false }))),
        })
      }),
  }
}

describe('Intake (group commit)', () => {
  it('writes a lone request at once', async () => {
    const store = controlledStore()
    const intake = new Intake(store, { maxBatch: 100, maxInFlight: 1, timeoutMs: 10_000 })
    const result = intake.submit(webhook('a'))
    expect(store.groups).toHaveLength(1)
    store.groups[0]!.finish()
    expect(await result).toEqual({ id: 'id-a', duplicate: false })
  })

  it('groups requests that arrive while a commit is in flight into one insert', async () => {
    const store = controlledStore()
    const intake = new Intake(store, { maxBatch: 100, maxInFlight: 1, timeoutMs: 10_000 })
    const first = intake.submit(webhook('a'))
    const rest = ['b', 'c', 'd'].map((key) => intake.submit(webhook(key)))
    expect(store.groups).toHaveLength(1)
    store.groups[0]!.finish()
    await first
    expect(store.groups).toHaveLength(2)
    expect(store.groups[1]!.webhooks.map((w) => w.eventKey)).toEqual(['b', 'c', 'd'])
    store.groups[1]!.finish()
    expect((await Promise.all(rest)).map((r) => r.id)).toEqual(['id-b', 'id-c', 'id-d'])
  })

  it('counts, for each arrival, the deliveries still waiting for their commit ahead of it', async () => {
    const store = controlledStore()
    const intake = new Intake(store, { maxBatch: 100, maxInFlight: 2, timeoutMs: 10_000 })
    const first = intake.submit(webhook('a'))
    const second = intake.submit(webhook('b'))
    expect(intake.counts).toEqual({ submitted: 2, unansweredSeen: 1 })
    const third = intake.submit(webhook('c'))
    expect(intake.counts).toEqual({ submitted: 3, unansweredSeen: 3 })
    store.groups[0]!.finish()
    store.groups[1]!.finish()
    await Promise.all([first, second])
    store.groups[2]!.finish()
    await third
    // A steady trickle, each one committed before the next arrives, finds none ahead.
    const fourth = intake.submit(webhook('d'))
    store.groups[3]!.finish()
    await fourth
    expect(intake.counts).toEqual({ submitted: 4, unansweredSeen: 3 })
  })

  it('caps a group at maxBatch and runs up to maxInFlight groups at once', async () => {
    const store = controlledStore()
    const intake = new Intake(store, { maxBatch: 2, maxInFlight: 2, timeoutMs: 10_000 })
    const all = ['a', 'b', 'c', 'd', 'e', 'f'].map((key) => intake.submit(webhook(key)))
    expect(store.groups.map((g) => g.webhooks.length)).toEqual([1, 1])
    store.groups[0]!.finish()
    store.groups[1]!.finish()
    await Promise.all(all.slice(0, 2))
    expect(store.groups.map((g) => g.webhooks.length)).toEqual([1, 1, 2, 2])
    store.groups[2]!.finish()
    store.groups[3]!.finish()
    await Promise.all(all)
  })

  it('fails every request of a group whose commit failed, and carries on with the next', async () => {
    const store = controlledStore()
    const intake = new Intake(store, { maxBatch: 10, maxInFlight: 1, timeoutMs: 10_000 })
    const first = intake.submit(webhook('a'))
    const second = intake.submit(webhook('b'))
    store.groups[0]!.finish(new Error('connection refused'))
    await expect(first).rejects.toThrow('connection refused')
    store.groups[1]!.finish()
    expect(await second).toEqual({ id: 'id-b', duplicate: false })
  })

  it('reports idle only when nothing waits or is in flight', async () => {
    const store = controlledStore()
    const intake = new Intake(store, { maxBatch: 10, maxInFlight: 1, timeoutMs: 10_000 })
    void intake.submit(webhook('a'))
    let idle = false
    const waiting = intake.idle().then(() => (idle = true))
    await Promise.resolve()
    expect(idle).toBe(false)
    store.groups[0]!.finish()
    await waiting
    expect(idle).toBe(true)
  })

  describe('with a stalled database', () => {
    afterEach(() => {
      vi.useRealTimers()
    })

    it('answers every request within the timeout and frees the slot for the next group', async () => {
      vi.useFakeTimers()
      const store = controlledStore()
      const intake = new Intake(store, { maxBatch: 10, maxInFlight: 1, timeoutMs: 4000 })
      const stuck = intake.submit(webhook('a'))
      const queued = intake.submit(webhook('b'))
      const outcome = Promise.allSettled([stuck, queued])
      await vi.advanceTimersByTimeAsync(4000)
      const [first, second] = await outcome
      expect(first).toMatchObject({ status: 'rejected', reason: expect.any(StorageTimeout) })
      expect(second).toMatchObject({ status: 'rejected', reason: expect.any(StorageTimeout) })
      // The stalled group gave its slot up: later groups are written and answered.
      store.groups.slice(1).forEach((group) => group.finish())
      const next = intake.submit(webhook('c'))
      await vi.advanceTimersByTimeAsync(0)
      const written = store.groups.at(-1)!
      expect(written.webhooks.map((w) => w.eventKey)).toEqual(['c'])
      written.finish()
      expect(await next).toEqual({ id: 'id-c', duplicate: false })
      // The stalled commit landing late changes nothing for requests already answered.
      store.groups[0]!.finish()
      await intake.idle()
    })
  })
})
