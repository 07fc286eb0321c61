import { describe, expect, it } from 'vitest'
import { pauseAfterBatch } from '../../src/worker.ts'

describe('pauseAfterBatch', () => {
  const busy = { batchMs: 10, loopUtilization: 0.95, intakeActive: true, share: 0.2 }

  it('leaves intake four fifths of a saturated event loop while deliveries arrive', () => {
    expect(pauseAfterBatch(busy)).toBe(40)
  })

  it('does not pause when no delivery arrived since the last batch (draining after a burst)', () => {
    expect(pauseAfterBatch({ ...busy, intakeActive: false })).toBe(0)
  })

  it('does not pause while the event loop has room (moderate traffic)', () => {
    expect(pauseAfterBatch({ ...busy, loopUtilization: 0.5 })).toBe(0)
  })

  it('pauses at most a second, and a share of 1 never pauses', () => {
    expect(pauseAfterBatch({ ...busy, batchMs: 5000 })).toBe(1000)
    expect(pauseAfterBatch({ ...busy, share: 1 })).toBe(0)
  })
})
