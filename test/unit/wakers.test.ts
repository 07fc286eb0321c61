import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/ops/log.ts'
import { startWakers } from '../../src/pipeline/wakers.ts'

/** Starts a loop's wakers whose every look is timed (ms of the clock). */
function timedWakers(looks: number[], pollMs: number) {
  return startWakers({
    name: 'test',
    rows: 'rows',
    pollMs,
    log: silentLogger,
    claimOwner: 1,
    store: {
      reclaimAbandoned: async () => {
        looks.push(Date.now())
        return { reclaimed: 0, due: false }
      },
      listen: async () => ({ unlisten: async () => {} }),
    },
    wake: () => {},
  })
}

describe('the safety-net poll', () => {
  it("looks on the clock's multiples of its period, so that two loops started apart look together", async () => {
    const first: number[] = []
    const second: number[] = []
    const one = timedWakers(first, 200)
    await sleep(70)
    const other = timedWakers(second, 200)
    try {
      await sleep(700)
    } finally {
      await one.stop()
      await other.stop()
    }
    // The look at the start, then one a period at each multiple of it.
    expect(first.length).toBeGreaterThanOrEqual(4)
    expect(second.length).toBeGreaterThanOrEqual(3)
    // Within a few ms of a multiple, either side of it (timers may fire a millisecond early by this clock).
    const offMultiple = (at: number) => Math.min(at % 200, 200 - (at % 200))
    for (const at of [...first.slice(1), ...second.slice(1)]) expect(offMultiple(at)).toBeLessThan(60)
    // Each poll of the loop started later fell with one of the other's.
    for (const at of second.slice(1))
      expect(Math.min(...first.map((other) => Math.abs(other - at)))).toBeLessThan(20)
  })
})
