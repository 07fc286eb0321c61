import { describe, expect, it } from 'vitest'
import { pauseAfterBatch } from '../../src/pipeline/worker.ts'

describe('pauseAfterBatch', () => {
  const busy = {
    batchMs: 10,
    batchSize: 8,
    arrivalsPerSecond: 0,
    intakeSaturated: true,
    share: 0.2,
  }

  it('leaves intake four fifths of a saturated event loop while deliveries arrive', () => {
    expect(pauseAfterBatch(busy)).toBe(40)
  })

  it('publishes no more than its share of the arrivals while intake is saturated', () => {
    // 8 webhooks at a fifth of 2,000 arrivals a second: one batch every 20 ms.
    expect(pauseAfterBatch({ ...busy, batchMs: 1, arrivalsPerSecond: 2000 })).toBe(20)
    expect(pauseAfterBatch({ ...busy, batchMs: 1, arrivalsPerSecond: 2000, intakeSaturated: false })).toBe(0)
  })

  it('does not pause while intake keeps up (draining after a burst, or a steady flow)', () => {
    expect(pauseAfterBatch({ ...busy, intakeSaturated: false })).toBe(0)
  })

  it('pauses at most 250 ms, and a share of 1 never pauses', () => {
    expect(pauseAfterBatch({ ...busy, batchMs: 5000 })).toBe(250)
    expect(pauseAfterBatch({ ...busy, share: 1 })).toBe(0)
  })
})
