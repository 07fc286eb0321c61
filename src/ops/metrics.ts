import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric } from 'prom-client'
import { LoopDelay } from './loop-delay.ts'

type Labels = Readonly<Record<string, string>>

/** One labelled value of a gauge read at scrape time. */
export type GaugeSample = { readonly labels: Labels; readonly value: number }

/** Seconds, from a fast local answer to a slow destination's timeout. */
const httpLatencyBuckets: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

let processMetrics: readonly Metric[] | undefined

/** The longest period Node takes for a timer: prom-client's own event-loop sampling never fires. */
const never = 2 ** 31 - 1

/**
 * CPU, memory, event loop lag and GC, collected once per process and shared by every Metrics: each
 * collectDefaultMetrics call starts its own GC observer and event-loop monitor that nothing can stop, and its
 * own CPU baseline, so one call per gateway would leak in tests and undercount process_cpu_seconds_total.
 */
const sharedProcessMetrics = (): readonly Metric[] => {
  if (!processMetrics) {
    const register = new Registry()
    // Its event-loop delay gauges are replaced by LoopDelay's, sampled only while the loop has work.
    collectDefaultMetrics({ register, eventLoopMonitoringPrecision: never })
    // getMetricsAsArray() is typed as plain objects; getSingleMetric() gives the same instances typed as metrics.
    processMetrics = [
      ...register
        .getMetricsAsArray()
        .filter((metric) => !metric.name.startsWith('nodejs_eventloop_lag_'))
        .flatMap((metric) => register.getSingleMetric(metric.name) ?? []),
      ...new LoopDelay().metrics,
    ]
  }
  return processMetrics
}

/** One gateway's metrics in its own prom-client registry, rendered in the Prometheus text format. */
export class Metrics {
  private readonly registry = new Registry()
  private readonly counters = new Map<string, Counter>()
  private readonly histograms = new Map<string, Histogram>()
  private readonly settableGauges = new Map<string, Gauge>()
  private readonly scrapedGauges = new Set<string>()

  constructor() {
    for (const metric of sharedProcessMetrics()) this.registry.registerMetric(metric)
  }

  /**
   * Creates a counter before its first event, so that it is scraped (and alerts on it can be checked)
   * from the start; `count` with these label names adds to it.
   */
  declare(name: string, help: string, labelNames: readonly string[]): void {
    if (this.counters.has(name)) return
    this.counters.set(
      name,
      new Counter({ name, help, labelNames: [...labelNames], registers: [this.registry] }),
    )
  }

  /** Adds `by` to a counter; its label names are those of the first call with this name. */
  count(name: string, help: string, labels: Labels = {}, by = 1): void {
    let counter = this.counters.get(name)
    if (!counter) {
      counter = new Counter({ name, help, labelNames: Object.keys(labels), registers: [this.registry] })
      this.counters.set(name, counter)
    }
    counter.inc(labels, by)
  }

  /** Records one duration in a histogram; its label names and buckets are those of the first call with this name. */
  observe(
    name: string,
    help: string,
    labels: Labels,
    seconds: number,
    buckets: readonly number[] = httpLatencyBuckets,
  ): void {
    let histogram = this.histograms.get(name)
    if (!histogram) {
      histogram = new Histogram({
        name,
        help,
        labelNames: Object.keys(labels),
        buckets: [...buckets],
        registers: [this.registry],
      })
      this.histograms.set(name, histogram)
    }
    histogram.observe(labels, seconds)
  }

  /** Sets a gauge; its label names are those of the first call with this name. */
  setGauge(name: string, help: string, labels: Labels, value: number): void {
    let gauge = this.settableGauges.get(name)
    if (!gauge) {
      gauge = new Gauge({ name, help, labelNames: Object.keys(labels), registers: [this.registry] })
      this.settableGauges.set(name, gauge)
    }
    gauge.set(labels, value)
  }

  /** A gauge read when scraped; `read` returns label value -> number for the one label `label`. */
  gauge(
    name: string,
    help: string,
    label: string,
    read: () => Promise<Record<string, number>> | Record<string, number>,
  ): void {
    this.gaugeVec(name, help, [label], async () =>
      Object.entries(await read()).map(([labelValue, value]) => ({ labels: { [label]: labelValue }, value })),
    )
  }

  /** A gauge read when scraped, one sample per label set; registering a name again replaces its read. */
  gaugeVec(
    name: string,
    help: string,
    labelNames: readonly string[],
    read: () => Promise<readonly GaugeSample[]> | readonly GaugeSample[],
  ): void {
    if (this.scrapedGauges.has(name)) this.registry.removeSingleMetric(name)
    new Gauge({
      name,
      help,
      labelNames,
      registers: [this.registry],
      async collect() {
        try {
          const samples = await read()
          // Reset after the read, so concurrent scrapes each see one whole read and vanished label sets go.
          this.reset()
          for (const { labels, value } of samples) this.set(labels, value)
        } catch {
          // A failed read (the database is down) leaves this gauge empty; the rest of the scrape still answers.
          this.reset()
        }
      },
    })
    this.scrapedGauges.add(name)
  }

  get contentType(): string {
    return this.registry.contentType
  }

  async render(): Promise<string> {
    return this.registry.metrics()
  }
}
