import { setTimeout as sleep } from 'node:timers/promises'
import amqp from 'amqplib'

/**
 * A consumer of every event: its own durable queue bound `#` to the exchange, declared before the load
 * starts, so nothing published during the run escapes it, across broker restarts (it reconnects).
 */

/** What one CloudEvent said about itself. */
export interface Observation {
  readonly routingKey: string
  readonly type: string
  readonly provider: string
  readonly providerEventId: string
  readonly webhookId: string
}

const queueName = 'chaos.observer'
const prefetch = 500

export class Observer {
  /** messageId (the CloudEvent id) -> what it carried the first time it was seen. */
  readonly seen = new Map<string, Observation>()
  /** Messages consumed, redeliveries included. */
  consumed = 0
  /** Messages with no messageId or a body that is not a CloudEvent. */
  unreadable = 0
  reconnects = 0
  /** Messages whose messageId is not the CloudEvent's id (the contract says they are the same). */
  mismatchedIds = 0
  private connection: amqp.ChannelModel | undefined
  private stopping = false
  private loop: Promise<void> | undefined

  private constructor(
    private readonly url: string,
    private readonly exchange: string,
    private readonly say: (line: string) => void,
  ) {}

  /** Connects and binds; resolves once the queue is bound (the exchange must exist: the gateway declares it). */
  static async start(url: string, exchange: string, say: (line: string) => void): Promise<Observer> {
    const observer = new Observer(url, exchange, say)
    await observer.connect()
    observer.loop = observer.stayConnected()
    return observer
  }

  async close(): Promise<void> {
    this.stopping = true
    await this.connection?.close().catch(() => {})
    await this.loop
  }

  private async connect(): Promise<void> {
    const connection = await amqp.connect(this.url, { timeout: 3000 })
    connection.on('error', () => {})
    try {
      const channel = await connection.createChannel()
      channel.on('error', () => {})
      await channel.checkExchange(this.exchange)
      await channel.assertQueue(queueName, { durable: true })
      await channel.bindQueue(queueName, this.exchange, '#')
      await channel.prefetch(prefetch)
      await channel.consume(queueName, (message) => {
        if (!message) return
        this.consumed += 1
        this.record(message)
        channel.ack(message)
      })
    } catch (error) {
      await connection.close().catch(() => {})
      throw error
    }
    this.connection = connection
  }

  /** Waits for the connection to end, then connects again, until closed. */
  private async stayConnected(): Promise<void> {
    while (!this.stopping) {
      const connection = this.connection
      if (connection) {
        await new Promise<void>((resolve) => connection.once('close', () => resolve()))
        this.connection = undefined
        if (this.stopping) return
      }
      await sleep(500)
      if (this.stopping) return
      try {
        await this.connect()
        if (this.stopping) {
          await this.connection?.close().catch(() => {})
          return
        }
        this.reconnects += 1
        this.say('observer: reconnected to RabbitMQ')
      } catch {
        // The broker is still away: try again.
      }
    }
  }

  private record(message: amqp.ConsumeMessage): void {
    const id = message.properties.messageId as unknown
    if (typeof id !== 'string' || id === '') {
      this.unreadable += 1
      return
    }
    if (this.seen.has(id)) return
    let event: Record<string, unknown>
    try {
      event = JSON.parse(message.content.toString('utf8')) as Record<string, unknown>
    } catch {
      this.unreadable += 1
      return
    }
    const text = (name: string) => (typeof event[name] === 'string' ? (event[name] as string) : '')
    if (text('id') !== id) this.mismatchedIds += 1
    this.seen.set(id, {
      routingKey: message.fields.routingKey,
      type: text('type'),
      provider: text('provider'),
      providerEventId: text('providereventid'),
      webhookId: text('webhookid'),
    })
  }
}
