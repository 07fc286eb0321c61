import { createHistogram, performance } from 'node:perf_hooks'
import { Gauge, type Metric } from 'prom-client'

export interface LoopDelayOptions {
  /** How often the delay is sampled while the loop is busy: a stall shows from about this long up. */
  readonly samplingMs?: number
  /** How often the loop's utilization is read to turn the sampling on or off. */
  readonly checkMs?: number
  /** The share of the last check's window the loop must have been busy for the sampling to run. */
  readonly busyShare?: number
}

/**
 * The event loop's delay, as prom-client's `nodejs_eventloop_lag_*` gauges, but each the delay beyond the
 * sampling period (0 for a loop that never stalls), and sampled only while the loop has work.
 *
 * A timer samples the delay: each tick records how late it ran, so a stall shows only if it holds up a
 * tick. prom-client's sampler (Node's monitorEventLoopDelay) at its 10 ms woke an idle gateway a hundred
 * times a second; at 500 ms every gauge read 0.5 s and a 100 ms stall went unseen. Here the loop's
 * utilization, read once a second, turns a 20 ms sampling on while the process works and off when it is
 * idle (50 wake-ups a second cost an idle gateway about half a percent of a core on a 2-vCPU VM). A stall in
 * the first second of work after idleness is not seen.
 */
export function loopDelayMetrics(options: LoopDelayOptions = {}): Metric[] {
  const { samplingMs = 20, checkMs = 1000, busyShare = 0.01 } = options
  // Delays beyond the period, in nanoseconds (a histogram takes integers from 1). Node's own sampler
  // counts the time it was turned off as one delay when turned on again.
  const histogram = createHistogram()
  let sampler: NodeJS.Timeout | undefined
  let lastTick = 0
  const tick = () => {
    const now = performance.now()
    histogram.record(Math.max(1, Math.round((now - lastTick - samplingMs) * 1e6)))
    lastTick = now
  }
  let last = performance.eventLoopUtilization()
  const check = setInterval(() => {
    const now = performance.eventLoopUtilization()
    const busy = performance.eventLoopUtilization(now, last).utilization >= busyShare
    last = now
    if (busy && !sampler) {
      lastTick = performance.now()
      sampler = setInterval(tick, samplingMs)
      sampler.unref()
    } else if (!busy && sampler) {
      clearInterval(sampler)
      sampler = undefined
    }
  }, checkMs)
  check.unref()

  const seconds = (nanoseconds: number) => (histogram.count === 0 ? 0 : nanoseconds / 1e9)
  const gauge = (suffix: string, help: string) =>
    new Gauge({ name: `nodejs_eventloop_lag_${suffix}seconds`, help, registers: [] })
  const min = gauge('min_', 'The minimum event loop delay since the last scrape, beyond the sampling period.')
  const max = gauge('max_', 'The maximum event loop delay since the last scrape, beyond the sampling period.')
  const mean = gauge('mean_', 'The mean event loop delay since the last scrape, beyond the sampling period.')
  const stddev = gauge('stddev_', 'The standard deviation of the event loop delays since the last scrape.')
  const percentiles = ([50, 90, 99] as const).map((p) => ({
    p,
    gauge: gauge(`p${p}_`, `The ${p}th percentile of the event loop delays since the last scrape.`),
  }))
  // Set when it is scraped, first: prom-client renders a registry's metrics in the order they were added.
  const lag = new Gauge({
    name: 'nodejs_eventloop_lag_seconds',
    help: 'Lag of event loop in seconds: how long a callback queued at the last scrape waited.',
    registers: [],
    collect() {
      const queuedAt = performance.now()
      setImmediate(() => lag.set((performance.now() - queuedAt) / 1000))
      min.set(seconds(histogram.min))
      max.set(seconds(histogram.max))
      mean.set(seconds(histogram.mean))
      stddev.set(seconds(histogram.stddev))
      for (const { p, gauge: each } of percentiles) each.set(seconds(histogram.percentile(p)))
      histogram.reset()
    },
  })
  return [lag, min, max, mean, stddev, ...percentiles.map(({ gauge: each }) => each)]
}
