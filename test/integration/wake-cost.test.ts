import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { mainThreadWakes } from '../../bench/measure.ts'
import { measureWakeCost } from '../../bench/wake-cost.ts'

describe("the bench's calibration of what a wake costs", () => {
  it("counts the main thread's wakes from /proc", async () => {
    const before = mainThreadWakes(process.pid)!
    for (let i = 0; i < 5; i++) await sleep(5)
    expect(mainThreadWakes(process.pid)! - before).toBeGreaterThanOrEqual(5)
    expect(mainThreadWakes(2 ** 22 + 7)).toBeUndefined()
  })

  it('measures a round trip between two processes at a steady rate', async () => {
    const [cost] = await measureWakeCost(process.cwd(), [200], 0.5)
    expect(cost!.rate).toBe(200)
    expect(cost!.roundTrips).toBe(200)
    // The client sleeps 5 ms between round trips: woken for its timer, then for the echo.
    expect(cost!.clientWakes).toBeGreaterThan(0.9)
    expect(cost!.clientUs + cost!.echoUs).toBeGreaterThan(0)
  }, 60_000)
})
