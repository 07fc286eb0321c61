import amqp from 'amqplib'
import { errorText, type SeenEvent, type WatchStart } from './event-watch.ts'

const connectTimeoutMs = 3000
const pollMs = 20

/** `amqp://guest:***@host`: a URL fit to print. */
export function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = '***'
    return parsed.toString().replace(/\/$/, '')
  } catch {
    return '(an AMQP_URL that is not a URL)'
  }
}

/**
 * Binds an exclusive, auto-deleted queue to `exchange` with `#`, so every event published from now on is seen.
 * The exchange is only checked, never declared: declaring is the gateway's, with its alternate exchange.
 */
export async function watchEvents(amqpUrl: string, exchange: string): Promise<WatchStart> {
  const where = withoutPassword(amqpUrl)
  let connection: amqp.ChannelModel
  try {
    connection = await amqp.connect(amqpUrl, { timeout: connectTimeoutMs })
  } catch (error) {
    return { unavailable: `cannot connect to RabbitMQ at ${where}: ${errorText(error)}` }
  }
  connection.on('error', () => {})
  const close = () => connection.close().catch(() => {})
  try {
    const channel = await connection.createChannel()
    // A failed check closes the channel with an error event; the rejected call reports it.
    channel.on('error', () => {})
    try {
      await channel.checkExchange(exchange)
    } catch {
      await close()
      return {
        unavailable:
          `the exchange "${exchange}" does not exist on ${where}: the gateway declares it when its worker first ` +
          'connects to RabbitMQ (is it running, with the same AMQP_URL and AMQP_EXCHANGE?)',
      }
    }
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true })
    await channel.bindQueue(queue, exchange, '#')
    const byWebhook = new Map<string, SeenEvent[]>()
    await channel.consume(
      queue,
      (message) => {
        if (!message) return
        const text = message.content.toString('utf8')
        const event = parseObject(text)
        const webhookId = typeof event === 'object' ? event['webhookid'] : undefined
        if (typeof webhookId !== 'string') return
        const seen = byWebhook.get(webhookId) ?? []
        seen.push({ routingKey: message.fields.routingKey, event })
        byWebhook.set(webhookId, seen)
      },
      { noAck: true },
    )
    const eventsOf = (webhookId: string) => byWebhook.get(webhookId) ?? []
    return {
      watch: {
        source: `on the RabbitMQ exchange "${exchange}"`,
        eventsOf,
        noteOf: () => undefined,
        async waitFor(expected, timeoutMs) {
          const deadline = Date.now() + timeoutMs
          const complete = () => [...expected].every(([id, count]) => eventsOf(id).length >= count)
          while (!complete() && Date.now() < deadline)
            await new Promise((resolve) => setTimeout(resolve, pollMs))
          return undefined
        },
        close,
      },
    }
  } catch (error) {
    await close()
    return { unavailable: `cannot watch the exchange "${exchange}" on ${where}: ${errorText(error)}` }
  }
}

function parseObject(text: string): Record<string, unknown> | string {
  try {
    const value: unknown = JSON.parse(text)
    return value && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : text
  } catch {
    return text
  }
}
