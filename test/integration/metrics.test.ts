import { readFileSync } from 'node:fs'
import { beforeAll, describe, expect, it } from 'vitest'
import { parse as parseYaml } from 'yaml'
import { useTestDatabase, waitFor, type TestGateway } from '../support/services.ts'
import { paymentIntentSucceeded, stripeDelivery } from '../support/signed.ts'

const secret = 'whsec_metrics'
const db = useTestDatabase()
let gw: TestGateway

beforeAll(async () => {
  gw = await db.startGateway({ STRIPE_WEBHOOK_SECRET: secret })
})

const scrape = async () => {
  const response = await fetch(`${gw.url}/metrics`)
  expect(response.status).toBe(200)
  expect(response.headers.get('content-type')).toMatch(/^text\/plain/)
  return response.text()
}

/** The value of one sample, e.g. `webhooks_received_total{provider="stripe",outcome="accepted"}`. */
const sample = (text: string, series: string): number | undefined => {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

describe('/metrics', () => {
  it('counts deliveries by outcome and times their answers', async () => {
    const accepted = stripeDelivery(paymentIntentSucceeded(), { secret })
    expect((await gw.post('/webhooks/stripe', accepted.body, accepted.headers)).status).toBe(200)
    const forged = stripeDelivery(paymentIntentSucceeded(), { secret: 'whsec_wrong' })
    expect((await gw.post('/webhooks/stripe', forged.body, forged.headers)).status).toBe(401)

    const text = await scrape()
    expect(sample(text, 'webhooks_received_total{provider="stripe",outcome="accepted"}')).toBe(1)
    expect(sample(text, 'webhooks_received_total{provider="stripe",outcome="invalid_signature"}')).toBe(1)
    expect(sample(text, 'webhook_ack_duration_seconds_count{provider="stripe",outcome="accepted"}')).toBe(1)
    expect(
      sample(text, 'webhook_ack_duration_seconds_bucket{le="10",provider="stripe",outcome="accepted"}'),
    ).toBe(1)
    const lastAccepted = sample(text, 'webhook_last_accepted_timestamp_seconds{provider="stripe"}')
    expect(lastAccepted).toBeGreaterThan(Date.now() / 1000 - 60)
    expect(lastAccepted).toBeLessThanOrEqual(Date.now() / 1000 + 1)
  })

  it('shows the publishing lag, the backlog and its age once the worker has published', async () => {
    const delivery = stripeDelivery(paymentIntentSucceeded(), { secret })
    await gw.post('/webhooks/stripe', delivery.body, delivery.headers)
    const text = await waitFor(async () => {
      const scraped = await scrape()
      // The gauges of one scrape are read one after another: wait for a scrape where both say "published".
      return (sample(scraped, 'webhook_publish_lag_seconds_count{provider="stripe"}') ?? 0) >= 2 &&
        sample(scraped, 'webhooks_oldest_unpublished_age_seconds') === 0 &&
        sample(scraped, 'webhooks_unpublished{status="pending"}') === 0
        ? scraped
        : undefined
    })
    expect(sample(text, 'events_published_total{provider="stripe"}')).toBeGreaterThanOrEqual(2)
    expect(sample(text, 'webhooks_unpublished{status="pending"}')).toBe(0)
    // One webhook never saturates intake: the worker publishes at full speed and has probed nothing.
    expect(sample(text, 'worker_holding_back')).toBe(0)
    expect(text).not.toMatch(/^worker_hold_back_probes_total/m)
  })

  it('reports each dependency up or down, and the process metrics', async () => {
    const text = await scrape()
    for (const dependency of ['postgres', 'redis', 'rabbitmq'])
      expect(sample(text, `dependency_up{dependency="${dependency}"}`)).toBe(1)
    expect(text).toMatch(/^process_cpu_user_seconds_total /m)
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m)
    expect(text).toMatch(/^# TYPE webhook_ack_duration_seconds histogram$/m)
  })

  it('shows a dependency that does not answer as 0', async () => {
    const noRedis = await db.startGateway({ STRIPE_WEBHOOK_SECRET: secret, REDIS_URL: 'redis://127.0.0.1:1' })
    const text = await (await fetch(`${noRedis.url}/metrics`)).text()
    expect(sample(text, 'dependency_up{dependency="redis"}')).toBe(0)
    expect(sample(text, 'dependency_up{dependency="postgres"}')).toBe(1)
  })
})

describe('ops/prometheus-alerts.yaml', () => {
  const rules = (
    parseYaml(readFileSync(new URL('../../ops/prometheus-alerts.yaml', import.meta.url), 'utf8')) as {
      groups: {
        rules: {
          alert: string
          expr: string
          labels: { severity: string }
          annotations: Record<string, string>
        }[]
      }[]
    }
  ).groups.flatMap((group) => group.rules)
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')

  it('has a severity, a summary and a runbook in the README for every alert', () => {
    expect(rules.length).toBeGreaterThanOrEqual(6)
    for (const rule of rules) {
      expect(['warning', 'critical']).toContain(rule.labels.severity)
      expect(rule.annotations.summary).toBeTruthy()
      expect(readme).toContain(`**${rule.annotations.runbook}**`)
    }
  })

  it('names only metrics the gateway exports', async () => {
    // A delivery, so that the series created on first use exist too.
    const delivery = stripeDelivery(paymentIntentSucceeded(), { secret })
    await gw.post('/webhooks/stripe', delivery.body, delivery.headers)
    const exported = new Set(
      (await scrape()).split('\n').flatMap((line) => /^# TYPE (\S+) /.exec(line)?.slice(1) ?? []),
    )
    const prometheusWords = new Set(['sum', 'by', 'rate', 'increase', 'time', 'provider', 'outcome', 'state'])
    for (const rule of rules) {
      const names = rule.expr.match(/\b[a-z_]+(?=[{[ ]|$)/gm) ?? []
      for (const name of names.filter((word) => word.includes('_') && !prometheusWords.has(word)))
        expect(exported, `${rule.alert}: ${name}`).toContain(name.replace(/_(bucket|count|sum)$/, ''))
    }
  })
})
