import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { Registry } from 'prom-client'
import { LoopDelay } from '../../src/ops/loop-delay.ts'
import { Metrics } from '../../src/ops/metrics.ts'

/** Blocks the loop, as a long synchronous task does. */
const busyFor = (ms: number) => {
  const until = performance.now() + ms
  while (performance.now() < until) {
    // Nothing else runs meanwhile.
  }
}

/** A gauge's value as rendered by `registry`, read after one scrape. */
const scrape = async (registry: Registry) => {
  const text = await registry.metrics()
  return (name: string) =>
    Number(
      text
        .split('\n')
        .find((line) => line.startsWith(`${name} `))
        ?.split(' ')[1],
    )
}

const started: LoopDelay[] = []
/**
 * Checks every `checkMs`, with thresholds far from the test worker's own activity (its reports to the runner
 * are a few percent of a short window): 3 ms of work in every 10 is busy, the sampling alone idle.
 */
const loopDelay = (checkMs: number) => {
  const delay = new LoopDelay({ checkMs, startAt: 0.2, stopBelow: 0.1 })
  started.push(delay)
  const registry = new Registry()
  for (const metric of delay.metrics) registry.registerMetric(metric)
  return { delay, registry }
}
afterEach(() => started.splice(0).forEach((delay) => delay.stop()))

describe('LoopDelay', () => {
  it('shows a stall in the lag gauges while the loop has work, and reads near 0 when nothing stalls', async () => {
    const { delay, registry } = loopDelay(50)
    // Steady work, 3 ms in every 10, turns the sampling on. Each scrape starts the delays anew.
    const work = setInterval(() => busyFor(3), 10)
    try {
      await sleep(150)
      expect(delay.sampling).toBe(true)
      await scrape(registry)
      await sleep(100)
      busyFor(150)
      await sleep(100)
      const stalled = await scrape(registry)
      expect(stalled('nodejs_eventloop_lag_max_seconds')).toBeGreaterThanOrEqual(0.12)
      expect(stalled('nodejs_eventloop_lag_p50_seconds')).toBeLessThan(0.05)
    } finally {
      clearInterval(work)
    }
    // Nothing stalls: near 0, not the sampling period.
    await sleep(60)
    await scrape(registry)
    await sleep(200)
    const calm = await scrape(registry)
    expect(calm('nodejs_eventloop_lag_max_seconds')).toBeLessThan(0.02)
    expect(calm('nodejs_eventloop_lag_p50_seconds')).toBeLessThan(0.005)
  })

  it('stops sampling when the work stops, and its own ticks do not start it again', async () => {
    const { delay } = loopDelay(100)
    const work = setInterval(() => busyFor(3), 10)
    await sleep(250)
    clearInterval(work)
    expect(delay.sampling).toBe(true)
    // The first check after the work stopped still sees some of it; the next sees an idle loop.
    await sleep(250)
    // Ten checks in a row, each over a window of 5 ticks of its own sampling: it stays off.
    for (let check = 0; check < 10; check++) {
      expect(delay.sampling).toBe(false)
      await sleep(100)
    }
  })

  it('does not sample an idle loop', async () => {
    const { delay } = loopDelay(50)
    for (let check = 0; check < 6; check++) {
      await sleep(50)
      expect(delay.sampling).toBe(false)
    }
  })

  it('is what Metrics renders, in place of the gauges of prom-client', async () => {
    const text = await new Metrics().render()
    for (const suffix of ['', 'min_', 'max_', 'mean_', 'stddev_', 'p50_', 'p90_', 'p99_']) {
      const name = `nodejs_eventloop_lag_${suffix}seconds`
      expect(text.split('\n').filter((line) => line.startsWith(`${name} `))).toHaveLength(1)
    }
    expect(text).toContain('beyond the sampling period')
  })
})
