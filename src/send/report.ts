import { fetch, type Agent } from 'undici'
import type { Config } from '../config.ts'
import type { EventWatch } from './event-watch.ts'
import type { Offer } from './offered.ts'
import type { PayPalSetup } from './paypal-setup.ts'
import type { DeliveryResult, Outcome } from './send.ts'

/** What the reports need to know about the run. */
export interface Report {
  readonly provider: string
  readonly event: string
  readonly offer: Offer
  readonly gatewayUrl: string
  readonly config: Config
  readonly say: (text: string) => void
  readonly warn: (text: string) => void
  readonly paypal: PayPalSetup | undefined
  readonly eventWaitMs: number
  /** Where the events were read from, when they could be. */
  readonly watch: EventWatch | undefined
  /** Why events could not be watched, when they could not. */
  readonly eventsUnavailable: string | undefined
  /** The run's connections to the gateway. */
  readonly agent: Agent
}

const ms = (value: number) => `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`
const answerText = (delivery: DeliveryResult) =>
  typeof delivery.answer === 'string' ? delivery.answer : JSON.stringify(delivery.answer)
const indent = (text: string) => text.replace(/^/gm, '  ')

/** One delivery: the answer, then each event in full. */
export async function reportOne(delivery: DeliveryResult, report: Report) {
  const { say, warn, eventsUnavailable } = report
  say(
    `${report.provider} ${report.event} (${delivery.providerId}) -> POST ${report.gatewayUrl}/webhooks/${report.provider}`,
  )
  if (delivery.status === undefined) say(`no answer: ${answerText(delivery)}`)
  else say(`${delivery.status} ${answerText(delivery)}  (${ms(delivery.latencyMs)})`)
  if (delivery.outcome !== 'accepted') {
    for (const hint of hintsFor(delivery, report)) warn(hint)
    return
  }
  const { watch } = report
  if (eventsUnavailable || !watch) {
    say(`\nevents: not shown (${eventsUnavailable ?? 'nowhere to read them from'})`)
    return
  }
  const note = delivery.webhookId ? watch.noteOf(delivery.webhookId) : undefined
  if (delivery.events.length === 0) {
    say(
      `\nno events ${watch.source} for webhook ${delivery.webhookId} within ${report.eventWaitMs / 1000} s.`,
    )
    warn(note ?? (await noEventsHint(report)))
    return
  }
  say(`\n${delivery.events.length} event${delivery.events.length === 1 ? '' : 's'} ${watch.source}:`)
  for (const seen of delivery.events) {
    const body = typeof seen.event === 'string' ? seen.event : JSON.stringify(seen.event, null, 2)
    say(`\n${seen.routingKey}\n${indent(body)}`)
  }
  if (note) say(`\n${note}`)
  const missing = missingKeys(delivery)
  if (missing.length > 0) say(`\nstill missing after ${report.eventWaitMs / 1000} s: ${missing.join(', ')}`)
}

/** Many deliveries: counts, answer times and events seen, and what went wrong once per kind. */
export async function reportMany(
  deliveries: readonly DeliveryResult[],
  report: Report & { readonly elapsedMs: number; readonly rate: number },
) {
  const { say, warn, watch, eventsUnavailable } = report
  const counted = (outcome: Outcome) => deliveries.filter((delivery) => delivery.outcome === outcome).length
  const latencies = deliveries
    .filter((delivery) => delivery.status !== undefined)
    .map((delivery) => delivery.latencyMs)
    .sort((a, b) => a - b)
  say(
    `${report.provider} ${report.event}: ${deliveries.length} deliveries in ${(report.elapsedMs / 1000).toFixed(1)} s ` +
      `(asked ${report.rate}/s) to ${report.gatewayUrl}/webhooks/${report.provider}`,
  )
  const unanswered = counted('unanswered')
  say(
    `answers: ${counted('accepted')} accepted, ${counted('duplicate')} duplicate, ${counted('rejected')} rejected` +
      (unanswered > 0 ? `, ${unanswered} unanswered` : ''),
  )
  if (latencies.length > 0)
    say(`answer time: p50 ${ms(percentile(latencies, 0.5))}, p99 ${ms(percentile(latencies, 0.99))}`)
  const accepted = deliveries.filter((delivery) => delivery.outcome === 'accepted')
  if (eventsUnavailable || !watch)
    say(`events: not shown (${eventsUnavailable ?? 'nowhere to read them from'})`)
  else if (accepted.length > 0) {
    const seen = accepted.reduce((sum, delivery) => sum + delivery.events.length, 0)
    const expected = accepted.reduce((sum, delivery) => sum + delivery.expected.length, 0)
    const webhooks = `${accepted.length} accepted webhook${accepted.length === 1 ? '' : 's'}`
    say(`events seen ${watch.source}: ${seen} of ${expected} expected, for ${webhooks}`)
    const notes = accepted.flatMap(
      (delivery) => (delivery.webhookId ? watch.noteOf(delivery.webhookId) : undefined) ?? [],
    )
    if (notes.length > 0) warn(`${notes.length} of them not processed yet, e.g. ${notes[0]}`)
    else if (seen === 0) warn(await noEventsHint(report))
  }
  // One explanation per kind of failure, with an example answer.
  const shown = new Set<string>()
  for (const delivery of deliveries) {
    if (delivery.outcome === 'accepted' || shown.has(String(delivery.status))) continue
    shown.add(String(delivery.status))
    warn(`e.g. ${delivery.status ?? 'no answer'}: ${answerText(delivery)}`)
    for (const hint of hintsFor(delivery, report)) warn(hint)
  }
}

/** The nearest-rank percentile of sorted values. */
const percentile = (sorted: readonly number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? 0

function missingKeys(delivery: DeliveryResult): string[] {
  const left = delivery.events.map((seen) => seen.routingKey)
  return delivery.expected.filter((key) => {
    const index = left.indexOf(key)
    if (index === -1) return true
    left.splice(index, 1)
    return false
  })
}

/** What to check when a delivery was not accepted. */
function hintsFor(delivery: DeliveryResult, report: Report): string[] {
  const variable = report.offer.secretVariable
  switch (delivery.status) {
    case undefined:
      return [
        `cannot reach the gateway at ${report.gatewayUrl}: is it running (npm start), and is GATEWAY_URL right?`,
      ]
    case 200:
      return delivery.outcome === 'duplicate'
        ? ['the gateway already had this provider event: nothing new was published']
        : []
    case 401: {
      const hints: string[] = []
      if (report.paypal)
        hints.push(
          report.paypal.hintShown
            ? 'paypal: see the note above on trusting the test certificate'
            : report.paypal.setupHint,
        )
      if (report.provider === 'twilio')
        hints.push(
          'twilio: Twilio signs the URL it calls, so PUBLIC_BASE_URL must be unset for both or the same for both ' +
            `(npm run send signed ${report.config.publicBaseUrl ?? report.gatewayUrl}/webhooks/twilio)`,
        )
      hints.push(
        `the gateway refused the signature: ${variable} must hold the same value for npm start and ` +
          'npm run send (the gateway log says which check failed)',
      )
      return hints
    }
    case 404:
      return [
        `the gateway answers 404 for /webhooks/${report.provider}: ${variable} is not set where it runs`,
      ]
    case 429:
      return ['too many failed verifications from this address: the gateway throttles it for a minute']
    case 503:
      return ['the gateway cannot store webhooks right now (is Postgres up?)']
    default:
      return []
  }
}

/** Why no event came out, with what the gateway's /health says. */
async function noEventsHint(report: Report): Promise<string> {
  let health = ''
  try {
    const response = await fetch(`${report.gatewayUrl}/health`, {
      signal: AbortSignal.timeout(2000),
      dispatcher: report.agent,
    })
    const body = (await response.json()) as { checks?: unknown }
    health = `\nGET /health: ${JSON.stringify(body.checks ?? body)}`
  } catch {
    // No health to show.
  }
  return (
    'the webhook is stored; its events come out once a worker (npm start, or ROLE=worker) publishes them. Check that ' +
    `the worker runs and is connected to RabbitMQ, with the same AMQP_URL and AMQP_EXCHANGE ("${report.config.exchange}") ` +
    `as npm run send.${health}`
  )
}
