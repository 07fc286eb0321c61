import { createHistogram, performance } from 'node:perf_hooks'
import { Gauge, type Metric } from 'prom-client'

export interface LoopDelayOptions {
  /** How often the delay is sampled while the loop is busy: a stall shows from about this long up. */
  readonly samplingMs?: number
  /** How often the loop's utilization is read to turn the sampling on or off. */
  readonly checkMs?: number
  /** The share of a check's window the loop must have been busy for the sampling to start. */
  readonly startAt?: number
  /** Below this share the sampling stops: above what the sampling's own wake-ups cost an idle process. */
  readonly stopBelow?: number
}

/**
 * The event loop's delay, as prom-client's `nodejs_eventloop_lag_*` gauges, but each the delay beyond the
 * sampling period (0 for a loop that never stalls), and sampled only while the loop has work.
 *
 * A timer samples the delay: each tick records how late it ran, so a stall shows if it holds up a tick.
 * prom-client's sampler (Node's monitorEventLoopDelay) at its 10 ms woke an idle gateway a hundred times a
 * second; at 500 ms every gauge read 0.5 s and a 100 ms stall went unseen. Node's sampler cannot be paused
 * either: turned on again, it records the time it was off as one delay.
 *
 * So the loop's utilization, read once a second, turns a 20 ms sampling on while the process works and off
 * when it is idle. The thresholds leave room for the sampling's own cost: an idle gateway's loop is busy
 * 0.2-0.4% of the time, 0.5-1.0% with a 20 ms timer; 20 webhooks a second keep it busy 6-7%. Sampling starts
 * at 3% and stops below 1.5%, so it cannot keep itself on. A stall in the first second of work after
 * idleness is not seen.
 */
export class LoopDelay {
  readonly metrics: readonly Metric[]
  private readonly histogram = createHistogram()
  private sampler: NodeJS.Timeout | undefined
  private readonly check: NodeJS.Timeout
  private lastTick = 0

  constructor(options: LoopDelayOptions = {}) {
    const { samplingMs = 20, checkMs = 1000, startAt = 0.03, stopBelow = 0.015 } = options
    const tick = () => {
      const now = performance.now()
      // Delays beyond the period, in nanoseconds: a histogram takes integers from 1.
      this.histogram.record(Math.max(1, Math.round((now - this.lastTick - samplingMs) * 1e6)))
      this.lastTick = now
    }
    let last = performance.eventLoopUtilization()
    this.check = setInterval(() => {
      const now = performance.eventLoopUtilization()
      const busy = performance.eventLoopUtilization(now, last).utilization
      last = now
      if (!this.sampler && busy >= startAt) {
        this.lastTick = performance.now()
        this.sampler = setInterval(tick, samplingMs)
        this.sampler.unref()
      } else if (this.sampler && busy < stopBelow) {
        clearInterval(this.sampler)
        this.sampler = undefined
      }
    }, checkMs)
    this.check.unref()
    this.metrics = this.gauges()
  }

  /** Whether the delay is being sampled now. */
  get sampling(): boolean {
    return this.sampler !== undefined
  }

  stop(): void {
    clearInterval(this.check)
    clearInterval(this.sampler)
    this.sampler = undefined
  }

  private gauges(): Metric[] {
    const histogram = this.histogram
    const seconds = (nanoseconds: number) => (histogram.count === 0 ? 0 : nanoseconds / 1e9)
    const gauge = (suffix: string, help: string) =>
      new Gauge({ name: `nodejs_eventloop_lag_${suffix}seconds`, help, registers: [] })
    const min = gauge(
      'min_',
      'The minimum event loop delay since the last scrape, beyond the sampling period.',
    )
    const max = gauge(
      'max_',
      'The maximum event loop delay since the last scrape, beyond the sampling period.',
    )
    const mean = gauge(
      'mean_',
      'The mean event loop delay since the last scrape, beyond the sampling period.',
    )
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
}
