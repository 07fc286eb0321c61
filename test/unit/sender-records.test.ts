import { once } from 'node:events'
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DeliverySender } from '../../src/destinations/sender.ts'
import type { DueDelivery } from '../../src/destinations/store.ts'
import { Metrics } from '../../src/ops/metrics.ts'
import { silentLogger } from '../../src/ops/log.ts'
import { expectRecordedAgain } from '../support/records.ts'

const agent = new Agent({ keepAliveTimeout: 1000 })
const server = createServer((req, res) => {
  req.resume()
  req.on('end', () => res.writeHead(204).end())
})
let url = ''
beforeAll(async () => {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`
})
afterAll(async () => {
  server.closeAllConnections()
  server.close()
  await agent.close()
})

const delivery = (): DueDelivery => ({
  id: randomUUID(),
  destinationId: 'd1',
  eventId: randomUUID(),
  eventType: 'payment.completed',
  payload: '{}',
  attempts: 0,
  url,
  timeoutMs: 1000,
  maxInFlight: 10,
  headers: {},
  retryScheduleSeconds: [5],
  secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'],
})

/**
 * A sender in front of a local endpoint that answers 204, whose records of attempts fail the first `failures`
 * times (Postgres restarting): every attempt to record is kept.
 */
function senderWith(failures: number, leaseMarginSeconds: number) {
  const records: string[][] = []
  const sender = new DeliverySender(
    {
      claimDue: async () => [],
      reclaimAbandoned: async () => ({ reclaimed: 0, due: false }),
      recordAttempts: async (attempts) => {
        records.push(attempts.map((attempt) => attempt.delivery.id))
        if (records.length <= failures) throw new Error('Connection terminated')
        return attempts.map(() => ({ recorded: true }))
      },
      release: async () => {},
      listen: async () => ({ unlisten: async () => {} }),
    },
    {
      dispatcher: agent,
      concurrency: 16,
      pollMs: 60_000,
      leaseMarginSeconds,
      claimOwner: 1,
      log: silentLogger,
      metrics: new Metrics(),
      userAgent: 'test',
    },
  )
  return { sender, records }
}

describe("the sender's records", () => {
  it('records attempts again after a failed statement, rather than sending them again when the lease ends', async () => {
    // A margin of 8 s: attempts linger up to 1 s, and are retried for a quarter of it.
    const { sender, records } = senderWith(1, 8)
    const deliveries = [delivery(), delivery(), delivery()]
    sender.take(deliveries)
    await sleep(3000)
    await sender.stop(1000)
    expectRecordedAgain(
      records,
      deliveries.map((item) => item.id),
    )
  })

  it('gives up once a quarter of the margin has passed since the first failure: the lease brings them back', async () => {
    // A margin of 2 s: attempts linger 0.5 s, then fail; the retry a second later is past 0.5 s of failing.
    const { sender, records } = senderWith(Number.POSITIVE_INFINITY, 2)
    sender.take([delivery()])
    await sleep(3500)
    await sender.stop(1000)
    expect(records).toHaveLength(2)
  })
})
