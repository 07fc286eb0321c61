import { describe, expect, it } from 'vitest'
import { Metrics } from '../../src/ops/metrics.ts'

/** The sample lines of one metric family (no HELP or TYPE), as rendered. */
const samples = (text: string, name: string) =>
  text.split('\n').filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))

describe('count', () => {
  it('renders a counter with its labels and sums `by` per label set', async () => {
    const metrics = new Metrics()
    metrics.count('events_published_total', 'Events published to RabbitMQ', { provider: 'stripe' }, 3)
    metrics.count('events_published_total', 'Events published to RabbitMQ', { provider: 'stripe' }, 2)
    metrics.count('events_published_total', 'Events published to RabbitMQ', { provider: 'github' })
    const text = await metrics.render()
    expect(text).toContain('# HELP events_published_total Events published to RabbitMQ\n')
    expect(text).toContain('# TYPE events_published_total counter\n')
    expect(samples(text, 'events_published_total')).toEqual([
      'events_published_total{provider="stripe"} 5',
      'events_published_total{provider="github"} 1',
    ])
    // The integration tests read it this way.
    expect(Number(/^events_published_total\{provider="stripe"\} (\d+)$/m.exec(text)?.[1])).toBe(5)
  })

  it('keeps the label names of the first call and escapes label values', async () => {
    const metrics = new Metrics()
    const received = (outcome: string) =>
      metrics.count('webhooks_received_total', 'Deliveries received, by outcome', {
        provider: 'stripe',
        outcome,
      })
    received('accepted')
    received('accepted')
    received('say "no"\\\n')
    expect(samples(await metrics.render(), 'webhooks_received_total')).toEqual([
      'webhooks_received_total{provider="stripe",outcome="accepted"} 2',
      'webhooks_received_total{provider="stripe",outcome="say \\"no\\"\\\\\\n"} 1',
    ])
  })

  it('counts without labels', async () => {
    const metrics = new Metrics()
    metrics.count('restarts_total', 'Restarts')
    metrics.count('restarts_total', 'Restarts')
    expect(samples(await metrics.render(), 'restarts_total')).toEqual(['restarts_total 2'])
  })
})

describe('gauge', () => {
  it('calls read at each scrape and renders one sample per label value', async () => {
    const metrics = new Metrics()
    let reads = 0
    metrics.gauge(
      'webhooks_unpublished',
      'Stored webhooks not yet published, by status',
      'status',
      async () => {
        reads += 1
        return reads === 1 ? { pending: 4, failed: 1 } : { pending: 2 }
      },
    )
    expect(reads).toBe(0)
    expect(samples(await metrics.render(), 'webhooks_unpublished')).toEqual([
      'webhooks_unpublished{status="pending"} 4',
      'webhooks_unpublished{status="failed"} 1',
    ])
    // A label value the read no longer returns is gone, not stuck at its last number.
    expect(samples(await metrics.render(), 'webhooks_unpublished')).toEqual([
      'webhooks_unpublished{status="pending"} 2',
    ])
    expect(reads).toBe(2)
  })

  it('accepts a synchronous read', async () => {
    const metrics = new Metrics()
    metrics.gauge('queue_depth', 'Queue depth', 'queue', () => ({ main: 7 }))
    expect(samples(await metrics.render(), 'queue_depth')).toEqual(['queue_depth{queue="main"} 7'])
  })

  it('leaves a gauge whose read rejects or throws without samples and still renders the rest', async () => {
    const metrics = new Metrics()
    metrics.count('webhook_failures_total', 'Failed publishing attempts', { provider: 'stripe' })
    metrics.gauge('rejecting', 'Read rejects', 'status', () => Promise.reject(new Error('database is down')))
    metrics.gauge('throwing', 'Read throws', 'status', () => {
      throw new Error('database is down')
    })
    const text = await metrics.render()
    expect(samples(text, 'rejecting')).toEqual([])
    expect(samples(text, 'throwing')).toEqual([])
    expect(samples(text, 'webhook_failures_total')).toEqual(['webhook_failures_total{provider="stripe"} 1'])
  })

  it('shows samples again once a failing read recovers', async () => {
    const metrics = new Metrics()
    let databaseUp = true
    metrics.gauge('webhooks_unpublished', 'Unpublished', 'status', () => {
      if (!databaseUp) throw new Error('database is down')
      return { pending: 1 }
    })
    expect(samples(await metrics.render(), 'webhooks_unpublished')).toHaveLength(1)
    databaseUp = false
    expect(samples(await metrics.render(), 'webhooks_unpublished')).toEqual([])
    databaseUp = true
    expect(samples(await metrics.render(), 'webhooks_unpublished')).toEqual([
      'webhooks_unpublished{status="pending"} 1',
    ])
  })

  it('replaces the read when a gauge name is registered again', async () => {
    const metrics = new Metrics()
    metrics.gauge('queue_depth', 'Queue depth', 'queue', () => ({ main: 1 }))
    metrics.gauge('queue_depth', 'Queue depth', 'queue', () => ({ main: 2 }))
    expect(samples(await metrics.render(), 'queue_depth')).toEqual(['queue_depth{queue="main"} 2'])
  })
})

describe('gaugeVec', () => {
  it('renders every label set the read returns', async () => {
    const metrics = new Metrics()
    metrics.gaugeVec(
      'deliveries_pending',
      'Pending deliveries, by destination',
      ['destination', 'provider'],
      () => [
        { labels: { destination: 'billing', provider: 'stripe' }, value: 3 },
        { labels: { destination: 'billing', provider: 'paypal' }, value: 0 },
        { labels: { destination: 'crm', provider: 'stripe' }, value: 12 },
      ],
    )
    const text = await metrics.render()
    expect(text).toContain('# TYPE deliveries_pending gauge\n')
    expect(samples(text, 'deliveries_pending')).toEqual([
      'deliveries_pending{destination="billing",provider="stripe"} 3',
      'deliveries_pending{destination="billing",provider="paypal"} 0',
      'deliveries_pending{destination="crm",provider="stripe"} 12',
    ])
  })

  it('leaves the gauge without samples when the read returns a label it was not given', async () => {
    const metrics = new Metrics()
    metrics.gaugeVec('deliveries_pending', 'Pending deliveries', ['destination'], () => [
      { labels: { destination: 'crm', region: 'eu' }, value: 1 },
    ])
    expect(samples(await metrics.render(), 'deliveries_pending')).toEqual([])
  })
})

describe('setGauge', () => {
  it('renders the last value set per label set', async () => {
    const metrics = new Metrics()
    metrics.setGauge('worker_paused', 'Whether the worker is paused', { worker: 'a' }, 1)
    metrics.setGauge('worker_paused', 'Whether the worker is paused', { worker: 'a' }, 0)
    metrics.setGauge('worker_paused', 'Whether the worker is paused', { worker: 'b' }, 1)
    const text = await metrics.render()
    expect(text).toContain('# TYPE worker_paused gauge\n')
    expect(samples(text, 'worker_paused')).toEqual([
      'worker_paused{worker="a"} 0',
      'worker_paused{worker="b"} 1',
    ])
  })
})

describe('observe', () => {
  it('renders cumulative _bucket lines, _sum and _count per label set', async () => {
    const metrics = new Metrics()
    const request = (seconds: number, status = '200') =>
      metrics.observe(
        'http_request_duration_seconds',
        'Request duration',
        { route: '/stripe', status },
        seconds,
      )
    request(0.003)
    request(0.2)
    request(0.2)
    request(45)
    request(1, '500')
    const text = await metrics.render()
    expect(text).toContain('# TYPE http_request_duration_seconds histogram\n')
    const ok = '{le="%s",route="/stripe",status="200"}'
    const bucket = (le: string) => `http_request_duration_seconds_bucket${ok.replace('%s', le)}`
    const lines = samples(text, 'http_request_duration_seconds_bucket')
    expect(lines).toContain(`${bucket('0.005')} 1`)
    expect(lines).toContain(`${bucket('0.1')} 1`)
    expect(lines).toContain(`${bucket('0.25')} 3`)
    expect(lines).toContain(`${bucket('30')} 3`)
    expect(lines).toContain(`${bucket('+Inf')} 4`)
    expect(samples(text, 'http_request_duration_seconds_sum')).toEqual([
      'http_request_duration_seconds_sum{route="/stripe",status="200"} 45.403',
      'http_request_duration_seconds_sum{route="/stripe",status="500"} 1',
    ])
    expect(samples(text, 'http_request_duration_seconds_count')).toEqual([
      'http_request_duration_seconds_count{route="/stripe",status="200"} 4',
      'http_request_duration_seconds_count{route="/stripe",status="500"} 1',
    ])
  })

  it('uses the default buckets from 5 ms to 30 s', async () => {
    const metrics = new Metrics()
    metrics.observe('latency_seconds', 'Latency', {}, 0.01)
    const buckets = samples(await metrics.render(), 'latency_seconds_bucket').map(
      (line) => /le="([^"]+)"/.exec(line)?.[1],
    )
    expect(buckets).toEqual([
      '0.005',
      '0.01',
      '0.025',
      '0.05',
      '0.1',
      '0.25',
      '0.5',
      '1',
      '2.5',
      '5',
      '10',
      '30',
      '+Inf',
    ])
  })

  it('uses the buckets given on the first call', async () => {
    const metrics = new Metrics()
    metrics.observe('publish_seconds', 'Publish time', { provider: 'github' }, 0.5, [0.1, 1])
    expect(samples(await metrics.render(), 'publish_seconds_bucket')).toEqual([
      'publish_seconds_bucket{le="0.1",provider="github"} 0',
      'publish_seconds_bucket{le="1",provider="github"} 1',
      'publish_seconds_bucket{le="+Inf",provider="github"} 1',
    ])
  })
})

describe('process metrics', () => {
  it('renders CPU, memory, event loop lag and GC metrics', async () => {
    const text = await new Metrics().render()
    for (const name of [
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_seconds',
      'nodejs_gc_duration_seconds',
    ])
      expect(text).toContain(`# TYPE ${name} `)
    expect(samples(text, 'process_cpu_user_seconds_total')).toHaveLength(1)
  })

  it('creates many instances in one process without throwing or warning', async () => {
    const warnings: Error[] = []
    const onWarning = (warning: Error) => warnings.push(warning)
    process.on('warning', onWarning)
    try {
      const instances = Array.from({ length: 30 }, () => new Metrics())
      await Promise.all(instances.map((metrics) => metrics.render()))
      await new Promise((resolve) => setImmediate(resolve))
    } finally {
      process.off('warning', onWarning)
    }
    expect(warnings).toEqual([])
  })
})

describe('instances', () => {
  it('do not share counters, histograms or gauges', async () => {
    const first = new Metrics()
    const second = new Metrics()
    first.count('events_published_total', 'Events published', { provider: 'stripe' }, 4)
    second.count('events_published_total', 'Events published', { provider: 'stripe' }, 1)
    first.observe('latency_seconds', 'Latency', {}, 0.1)
    first.setGauge('worker_paused', 'Paused', {}, 1)
    second.gauge('webhooks_unpublished', 'Unpublished', 'status', () => ({ pending: 9 }))

    const firstText = await first.render()
    const secondText = await second.render()
    expect(samples(firstText, 'events_published_total')).toEqual([
      'events_published_total{provider="stripe"} 4',
    ])
    expect(samples(secondText, 'events_published_total')).toEqual([
      'events_published_total{provider="stripe"} 1',
    ])
    expect(secondText).not.toContain('latency_seconds')
    expect(secondText).not.toContain('worker_paused')
    expect(firstText).not.toContain('webhooks_unpublished')
  })
})

describe('contentType', () => {
  it('is the Prometheus text format 0.0.4', () => {
    expect(new Metrics().contentType).toBe('text/plain; version=0.0.4; charset=utf-8')
  })
})
