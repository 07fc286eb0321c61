import { resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import type { Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, fetch } from 'undici'
import { loadConfig, type Config } from '../config.ts'
import { configuredProviders } from '../../providers/configured.ts'
import { providers as builtIn, type Providers } from '../../providers/index.ts'
import { configuredOffer } from './configured.ts'
import { expectedRoutingKeys } from './expected-events.ts'
import { findOffer, offered, offeredList, type Offer, type ProviderName, type Target } from './offered.ts'
import { setUpPayPal, type PayPalSetup } from './paypal-setup.ts'
import { startProgress, type Tally } from './progress.ts'
import { watchAdminApi } from './admin-api-watcher.ts'
import { errorText, type SeenEvent, type WatchStart } from './event-watch.ts'
import { watchEvents } from './rabbitmq-watcher.ts'
import { reportMany, reportOne } from './report.ts'

export const defaultGatewayUrl = 'http://127.0.0.1:3000'
const defaultEventWaitMs = 5000
const answerTimeoutMs = 30_000

export interface SendOptions {
  readonly provider: string
  readonly event: string
  /** Deliveries to send; 1 by default. */
  readonly count?: number
  /** Deliveries a second when there are several; 10 by default. */
  readonly rate?: number
  /**
   * GATEWAY_URL, and the gateway's own variables read the gateway's way (src/config.ts): the provider's
   * secret (the first one listed), AMQP_URL, AMQP_EXCHANGE, ADMIN_TOKEN, PUBLIC_BASE_URL, PAYPAL_CERT_ORIGINS,
   * PAYPAL_CA_FILE. Without AMQP_URL the events are read from the gateway's admin API, with ADMIN_TOKEN.
   */
  readonly env: Readonly<Record<string, string | undefined>>
  /** Where the PayPal test certificate is kept; `.send` in the working directory by default. */
  readonly stateDir?: string
  /** How long to wait for a delivery's events after the last answer; 5 s by default. */
  readonly eventWaitMs?: number
  readonly stdout?: Writable
  readonly stderr?: Writable
}

export type Outcome = 'accepted' | 'duplicate' | 'rejected' | 'unanswered'

export interface DeliveryResult {
  /** What the provider calls the delivery: event id, delivery GUID, SID or webhook id. */
  readonly providerId: string
  /** The HTTP status, when the gateway answered. */
  readonly status: number | undefined
  /** The answer's JSON (its text when not JSON), or why there was none. */
  readonly answer: unknown
  readonly outcome: Outcome
  /** The gateway's id for the webhook (`id` of the answer): what the events carry as `webhookid`. */
  readonly webhookId: string | undefined
  readonly latencyMs: number
  /** The routing keys the gateway's registry maps this delivery to (raw first). */
  readonly expected: readonly string[]
  /** The events that came out for this webhook, on RabbitMQ or as the gateway's admin API shows them. */
  readonly events: readonly SeenEvent[]
}

export interface SendResult {
  /** 0 when every delivery was accepted, 1 when one was not, 2 when nothing was sent (a usage or setup error). */
  readonly exitCode: 0 | 1 | 2
  readonly deliveries: readonly DeliveryResult[]
  /** Why the events could not be watched, when they could not. */
  readonly eventsUnavailable?: string
}

/**
 * Signs realistic deliveries of one provider event the way the provider does, posts them to the gateway, and
 * reports the answers and the CloudEvents that came out for them: on RabbitMQ, or without a broker (no AMQP_URL)
 * as the gateway's admin API shows them.
 */
export async function send(options: SendOptions): Promise<SendResult> {
  const stdout = options.stdout ?? process.stdout
  const stderr = options.stderr ?? process.stderr
  const say = (text: string) => stdout.write(`${text}\n`)
  const warn = (text: string) => stderr.write(`${text}\n`)
  const refuse = (text: string): SendResult => {
    warn(text)
    return { exitCode: 2, deliveries: [] }
  }

  let config: Config
  try {
    config = loadConfig(options.env)
  } catch (error) {
    return refuse(`send: ${(error as Error).message}`)
  }
  // A sender PROVIDERS_FILE declares takes any type: the gateway publishes whatever type it is sent.
  const spec = config.configuredProviders.find((candidate) => candidate.name === options.provider)
  const found = spec
    ? { provider: spec.name, event: options.event, offer: configuredOffer(spec) }
    : findOffer(options.provider, options.event)
  if (!found) {
    const known = (Object.keys(offered) as ProviderName[]).find(
      (name) => name === options.provider.toLowerCase(),
    )
    return refuse(
      known
        ? `send: ${known} has no event "${options.event}" to send. Offered:\n${offeredList(known)}`
        : `send: no provider "${options.provider}" to send. Offered:\n${offeredList()}`,
    )
  }
  const { provider, event, offer } = found
  const count = options.count ?? 1
  const rate = options.rate ?? 10
  const eventWaitMs = options.eventWaitMs ?? defaultEventWaitMs
  if (!Number.isInteger(count) || count < 1) return refuse(`send: --count must be a whole number >= 1`)
  if (!Number.isFinite(rate) || rate <= 0)
    return refuse(`send: --rate must be a number of deliveries a second > 0`)

  // The gateway's providers as this configuration has them: what it will publish for a delivery is worked out
  // with them.
  const providers: Providers = { ...builtIn, ...configuredProviders(config.configuredProviders) }
  const gatewayUrl = (options.env['GATEWAY_URL'] || defaultGatewayUrl).replace(/\/+$/, '')
  if (!URL.canParse(gatewayUrl)) return refuse(`send: GATEWAY_URL ${JSON.stringify(gatewayUrl)} is not a URL`)
  const secret = config.secrets[provider]?.[0]
  if (!secret)
    return refuse(
      `send: ${offer.secretVariable} is not set. Give it the value the gateway has (npm start and npm run send ` +
        'both read .env: see .env.example).',
    )

  let paypal: PayPalSetup | undefined
  if (provider === 'paypal') {
    try {
      paypal = await setUpPayPal(config, resolve(options.stateDir ?? '.send'), warn)
    } catch (error) {
      return refuse((error as Error).message)
    }
  }
  const target: Target = {
    gatewayUrl,
    publicBaseUrl: config.publicBaseUrl,
    secret,
    ...(paypal ? { paypal: { certUrl: paypal.server.certUrl, privateKey: paypal.privateKey } } : {}),
  }

  // Connections of this run only: none left idle by an earlier run in the same process (a test) that the
  // gateway may be closing as it is reused.
  const agent = new Agent()
  const watching = await startWatch(config, gatewayUrl, agent)
  const watch = 'watch' in watching ? watching.watch : undefined
  let eventsUnavailable = 'unavailable' in watching ? watching.unavailable : undefined
  try {
    await offer.prepare?.()
    const path = `/webhooks/${provider}`
    const tally: Tally = { accepted: 0, duplicate: 0, rejected: 0 }
    const progress = count > 1 ? startProgress(count, stderr) : undefined
    const started = performance.now()
    let answered = 0
    const answers = await atRate(count, rate, async () => {
      const answer = await deliverOne(provider, event, offer, target, path, agent, providers)
      tally[answer.outcome === 'unanswered' ? 'rejected' : answer.outcome]++
      progress?.update(++answered, tally)
      return answer
    })
    const elapsedMs = performance.now() - started
    progress?.stop()

    const expected = new Map<string, number>()
    // At least the raw event, should the registry not have said what to expect.
    for (const answer of answers)
      if (answer.outcome === 'accepted' && answer.webhookId)
        expected.set(answer.webhookId, Math.max(1, answer.expected.length))
    if (watch && expected.size > 0) eventsUnavailable = await watch.waitFor(expected, eventWaitMs)
    const deliveries = answers.map((answer) => ({
      ...answer,
      events: watch && answer.webhookId ? [...watch.eventsOf(answer.webhookId)] : [],
    }))

    const report = {
      provider,
      event,
      offer,
      gatewayUrl,
      config,
      say,
      warn,
      paypal,
      eventWaitMs,
      watch,
      eventsUnavailable,
      agent,
    }
    if (count === 1) await reportOne(deliveries[0]!, report)
    else await reportMany(deliveries, { ...report, elapsedMs, rate })
    const exitCode = deliveries.every((delivery) => delivery.outcome === 'accepted') ? 0 : 1
    return { exitCode, deliveries, ...(eventsUnavailable ? { eventsUnavailable } : {}) }
  } finally {
    await watch?.close()
    await paypal?.server.close()
    await agent.close()
  }
}

/**
 * Where the events will be read from: RabbitMQ, bound before the first delivery so no event comes out before
 * anyone listens; without a broker, the gateway's admin API, which maps them from the stored webhook.
 */
async function startWatch(config: Config, gatewayUrl: string, agent: Agent): Promise<WatchStart> {
  if (config.amqpUrl) return watchEvents(config.amqpUrl, config.exchange)
  if (config.adminToken) return { watch: watchAdminApi(gatewayUrl, config.adminToken, agent) }
  return {
    unavailable:
      "no AMQP_URL to watch RabbitMQ and no ADMIN_TOKEN to read the gateway's admin API: set AMQP_URL or ADMIN_TOKEN",
  }
}

/** Runs `deliver` `count` times, started `1/rate` s apart whatever the answers take (an open loop). */
async function atRate<T>(count: number, rate: number, deliver: () => Promise<T>): Promise<T[]> {
  const started = performance.now()
  const pending: Promise<T>[] = []
  for (let index = 0; index < count; index++) {
    const wait = started + (index * 1000) / rate - performance.now()
    if (wait > 0) await sleep(wait)
    pending.push(deliver())
  }
  return Promise.all(pending)
}

async function deliverOne(
  provider: string,
  event: string,
  offer: Offer,
  target: Target,
  path: string,
  agent: Agent,
  providers: Providers,
): Promise<DeliveryResult> {
  const delivery = await offer.deliver(event, target)
  const publicUrl = (target.publicBaseUrl ?? target.gatewayUrl) + path
  const expected = expectedRoutingKeys(providers, provider, { ...delivery, path, publicUrl })
  const started = performance.now()
  const result = { providerId: delivery.providerId, expected, events: [] }
  try {
    const response = await fetch(target.gatewayUrl + path, {
      method: 'POST',
      body: delivery.body,
      headers: delivery.headers,
      signal: AbortSignal.timeout(answerTimeoutMs),
      dispatcher: agent,
    })
    const text = await response.text()
    const latencyMs = performance.now() - started
    const answer = parseJson(text)
    const fields = (answer && typeof answer === 'object' ? answer : {}) as { status?: unknown; id?: unknown }
    const outcome: Outcome =
      response.status === 200 && fields.status === 'accepted'
        ? 'accepted'
        : response.status === 200 && fields.status === 'duplicate'
          ? 'duplicate'
          : 'rejected'
    const webhookId = typeof fields.id === 'string' ? fields.id : undefined
    return { ...result, status: response.status, answer, outcome, webhookId, latencyMs }
  } catch (error) {
    const latencyMs = performance.now() - started
    return {
      ...result,
      status: undefined,
      answer: errorText(error),
      outcome: 'unanswered',
      webhookId: undefined,
      latencyMs,
    }
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}
