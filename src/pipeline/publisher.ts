import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib'
import { withDeadline } from '../ops/deadline.ts'
import type { OutgoingEvent } from './events.ts'
import type { Logger } from '../ops/log.ts'

/** The broker is unreachable: nothing is wrong with the event, so no attempt is spent on it. */
export class BrokerUnavailable extends Error {
  override readonly name = 'BrokerUnavailable'
}

export interface PublisherOptions {
  readonly url: string
  readonly exchange: string
  readonly unroutedMaxLength: number
  readonly log: Logger
  readonly minReconnectMs?: number
  readonly maxReconnectMs?: number
  readonly confirmTimeoutMs?: number
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * One connection and one confirm channel to RabbitMQ. It reconnects with backoff by itself and declares
 * the topology on every connection: the durable topic exchange, and an alternate exchange whose bounded
 * queue `<exchange>.unrouted` keeps whatever matches no binding.
 */
export class Publisher {
  /** Events go to a broker (see NoBroker for a gateway without one). */
  readonly broker: boolean = true
  private connection: ChannelModel | undefined
  private channel: ConfirmChannel | undefined
  private connecting = false
  private stopped = false
  /** Why the broker blocked this connection, while it does. */
  private blockedBecause: string | undefined
  /** One promise per disconnected spell, shared by every caller of whenConnected (no list that grows). */
  private connectedSignal: { promise: Promise<void>; resolve: () => void } | undefined

  constructor(private readonly options: PublisherOptions) {}

  /** Connected, and not blocked by the broker (a memory or disk alarm stops it reading what we publish). */
  get connected(): boolean {
    return this.channel !== undefined && this.blockedBecause === undefined
  }

  /** Starts connecting in the background; resolves at the first connection (or when stopped). */
  start(): Promise<void> {
    void this.connectLoop()
    return this.whenConnected()
  }

  whenConnected(): Promise<void> {
    if (this.connected || this.stopped) return Promise.resolve()
    if (!this.connectedSignal) {
      let resolve!: () => void
      const promise = new Promise<void>((done) => (resolve = done))
      this.connectedSignal = { promise, resolve }
    }
    return this.connectedSignal.promise
  }

  private signalConnected(): void {
    this.connectedSignal?.resolve()
    this.connectedSignal = undefined
  }

  /** A round trip to the broker on the publishing channel: fails when it is gone or has stopped answering. */
  async ping(): Promise<void> {
    const channel = this.channel
    if (!channel) throw new BrokerUnavailable('rabbitmq: not connected')
    await channel.checkExchange(this.options.exchange)
  }

  /** Publishes persistent messages and resolves when the broker has confirmed every one. */
  async publish(events: readonly OutgoingEvent[]): Promise<void> {
    const channel = this.channel
    if (!channel) throw new BrokerUnavailable('rabbitmq: not connected')
    // What is published on a blocked connection waits in our socket buffer: better to keep it in Postgres.
    if (this.blockedBecause) throw new BrokerUnavailable(`rabbitmq: blocked (${this.blockedBecause})`)
    const confirmTimeoutMs = this.options.confirmTimeoutMs ?? 10_000
    await Promise.all(
      events.map(
        (event) =>
          new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => {
              reject(new BrokerUnavailable(`rabbitmq: no confirm within ${confirmTimeoutMs} ms`))
              // A broker that stops confirming is as good as gone: start over on a new connection.
              this.drop(channel)
            }, confirmTimeoutMs)
            const done = (error: unknown) => {
              clearTimeout(timer)
              if (!error) return resolve()
              // A nack is the broker refusing this message; a closed channel is the broker going away.
              const gone = this.channel !== channel || /closed/i.test(String((error as Error)?.message))
              reject(
                gone
                  ? new BrokerUnavailable(`rabbitmq: ${(error as Error).message}`)
                  : new Error(`rabbitmq: ${(error as Error).message}`),
              )
            }
            try {
              channel.publish(
                this.options.exchange,
                event.type,
                event.body,
                {
                  persistent: true,
                  messageId: event.id,
                  contentType: 'application/cloudevents+json',
                  timestamp: Math.floor(Date.parse(event.time) / 1000),
                  type: event.type,
                },
                done,
              )
            } catch (error) {
              done(new Error(`channel closed: ${(error as Error).message}`))
            }
          }),
      ),
    )
  }

  /** Closes the connection; a broker that does not answer the close within `graceMs` has its socket cut. */
  async stop(graceMs = 1000): Promise<void> {
    this.stopped = true
    this.signalConnected()
    const connection = this.connection
    this.connection = undefined
    this.channel = undefined
    if (connection) await closeWithin(connection, graceMs)
  }

  private drop(channel: ConfirmChannel): void {
    if (this.channel !== channel) return
    const connection = this.connection
    this.channel = undefined
    this.connection = undefined
    connection?.close().catch(() => {})
    void this.connectLoop()
  }

  private async connectLoop(): Promise<void> {
    if (this.connecting) return
    this.connecting = true
    const min = this.options.minReconnectMs ?? 100
    const max = this.options.maxReconnectMs ?? 5000
    try {
      for (let attempt = 0; !this.stopped && !this.channel; attempt++) {
        try {
          await this.connectOnce()
          if (attempt > 0) this.options.log.info('rabbitmq: connected again', { attempts: attempt + 1 })
          this.signalConnected()
        } catch (error) {
          const delay = Math.min(max, min * 2 ** attempt)
          this.options.log.warn('rabbitmq: connection failed, retrying', { error, retryInMs: delay })
          await sleep(delay)
        }
      }
    } finally {
      this.connecting = false
    }
  }

  private async connectOnce(): Promise<void> {
    const { log } = this.options
    const connection = await amqp.connect(this.options.url, { timeout: 5000 })
    connection.on('error', (error: Error) => log.warn('rabbitmq: connection error', { error }))
    connection.on('blocked', (reason: string) => {
      if (this.connection !== connection) return
      log.warn('rabbitmq: the broker blocked publishing', { reason })
      this.blockedBecause = String(reason)
    })
    connection.on('unblocked', () => {
      if (this.connection !== connection) return
      log.info('rabbitmq: the broker unblocked publishing')
      this.blockedBecause = undefined
      this.signalConnected()
    })
    connection.on('close', () => {
      if (this.connection !== connection) return
      this.connection = undefined
      this.channel = undefined
      if (!this.stopped) {
        log.warn('rabbitmq: connection closed, reconnecting')
        void this.connectLoop()
      }
    })
    try {
      // A broker that accepts the connection and then stops answering must not hold the reconnect loop.
      const channel = await withDeadline(this.declare(connection), 10_000, 'rabbitmq: declaring the topology')
      if (this.stopped) throw new Error('stopped')
      this.connection = connection
      this.channel = channel
      this.blockedBecause = undefined
    } catch (error) {
      await closeWithin(connection, 1000)
      throw error
    }
  }

  /** A confirm channel on `connection`, with the exchange, its alternate exchange and the unrouted queue. */
  private async declare(connection: ChannelModel): Promise<ConfirmChannel> {
    const { exchange, log } = this.options
    const channel = await connection.createConfirmChannel()
    channel.on('error', (error: Error) => log.warn('rabbitmq: channel error', { error }))
    channel.on('close', () => this.drop(channel))
    const unrouted = `${exchange}.unrouted`
    await channel.assertExchange(unrouted, 'fanout', { durable: true })
    await channel.assertQueue(unrouted, {
      durable: true,
      arguments: { 'x-max-length': this.options.unroutedMaxLength, 'x-overflow': 'drop-head' },
    })
    await channel.bindQueue(unrouted, unrouted, '')
    await channel.assertExchange(exchange, 'topic', { durable: true, alternateExchange: unrouted })
    return channel
  }
}

/**
 * Closes a connection, cutting its socket when the broker does not answer the close within `graceMs`:
 * amqplib waits for the broker's Close-Ok without a limit, and a stalled broker would hold us forever.
 */
async function closeWithin(connection: ChannelModel, graceMs: number): Promise<void> {
  const closed = await Promise.race([
    connection.close().then(
      () => true,
      () => true,
    ),
    sleep(graceMs).then(() => false),
  ])
  if (!closed) (connection.connection as { stream?: { destroy(): void } }).stream?.destroy()
}
