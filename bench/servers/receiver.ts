import { createServer } from 'node:http'
import { performance } from 'node:perf_hooks'
import amqp, { type ChannelModel } from 'amqplib'
import { Webhook } from 'standardwebhooks'
import { onShutdown } from './shutdown.ts'

/**
 * A team's endpoint and a team's RabbitMQ consumer, for the destinations and steady benches. The endpoint
 * verifies every request with the `standardwebhooks` package, as a receiver would, and answers 204, or 401
 * when the signature does not verify. Env: PORT, HOST.
 *
 * - `PUT /secrets` with {path: secret} tells it the secret of each path; `GET /stats` reports what it saw.
 * - `PUT /observe` with {amqpUrl, exchange, bindings} starts over: a consumer of its own queue bound to the
 *   exchange, and for every event then received on either side, how long after the gateway received the
 *   webhook (the CloudEvent's `time`) it arrived. `GET /observed` returns those.
 */

const secrets = new Map<string, Webhook>()
const stats = { verified: 0, refused: 0, ids: new Set<string>() }

/**
 * Arrivals since the last PUT /observe: the event ids seen, ms from the gateway's receipt, and when each
 * arrived (unix ms, in the same order).
 */
class Arrivals {
  readonly ids = new Set<string>()
  readonly latenciesMs: number[] = []
  readonly arrivedAtMs: number[] = []
  record(body: Buffer | string): void {
    const event = JSON.parse(body.toString()) as { id: string; time: string }
    const now = performance.timeOrigin + performance.now()
    this.latenciesMs.push(now - Date.parse(event.time))
    this.arrivedAtMs.push(Math.round(now))
    this.ids.add(event.id)
  }
  toJSON() {
    return { distinct: this.ids.size, latenciesMs: this.latenciesMs, arrivedAtMs: this.arrivedAtMs }
  }
}

let observing: { destination: Arrivals; rabbitmq: Arrivals; connection: ChannelModel } | undefined

async function observe(options: { amqpUrl: string; exchange: string; bindings: string[] }): Promise<void> {
  await observing?.connection.close().catch(() => {})
  observing = undefined
  const connection = await amqp.connect(options.amqpUrl)
  const channel = await connection.createChannel()
  channel.on('error', () => {})
  // The gateway declares its exchange when it first connects: wait for it rather than declare it ourselves.
  for (let tries = 0; ; tries++) {
    const probe = await connection.createChannel()
    probe.on('error', () => {})
    const exists = await probe.checkExchange(options.exchange).then(
      () => true,
      () => false,
    )
    if (exists) {
      await probe.close().catch(() => {})
      break
    }
    if (tries > 100) throw new Error(`receiver: no exchange ${options.exchange}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true })
  for (const binding of options.bindings) await channel.bindQueue(queue, options.exchange, binding)
  const state = { destination: new Arrivals(), rabbitmq: new Arrivals(), connection }
  await channel.consume(queue, (message) => message && state.rabbitmq.record(message.content), {
    noAck: true,
  })
  observing = state
}

const json = (res: import('node:http').ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

const server = createServer((req, res) => {
  if (req.method === 'GET') {
    if (req.url === '/observed')
      return json(res, 200, { destination: observing?.destination, rabbitmq: observing?.rabbitmq })
    return json(res, 200, { verified: stats.verified, refused: stats.refused, distinct: stats.ids.size })
  }
  const chunks: Buffer[] = []
  req.on('data', (chunk: Buffer) => chunks.push(chunk))
  req.on('end', () => {
    if (req.method === 'PUT' && req.url === '/observe') {
      observe(JSON.parse(Buffer.concat(chunks).toString('utf8'))).then(
        () => res.writeHead(204).end(),
        (error: unknown) => json(res, 500, { error: String(error) }),
      )
      return
    }
    if (req.method === 'PUT') {
      const given = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, string>
      for (const [path, secret] of Object.entries(given)) secrets.set(path, new Webhook(secret))
      res.writeHead(204).end()
      return
    }
    const headers: Record<string, string> = {}
    for (const [name, value] of Object.entries(req.headers))
      if (typeof value === 'string') headers[name] = value
    try {
      const body = Buffer.concat(chunks).toString('utf8')
      secrets.get(req.url ?? '')!.verify(body, headers)
      stats.verified += 1
      stats.ids.add(`${req.url} ${headers['webhook-id']}`)
      // Answered once recorded: the latency is to the answer, as the gateway sees it.
      observing?.destination.record(body)
      res.writeHead(204).end()
    } catch {
      stats.refused += 1
      res.writeHead(401).end()
    }
  })
})
server.keepAliveTimeout = 60_000
server.listen(Number(process.env.PORT), process.env.HOST ?? '127.0.0.1')
onShutdown(server, async () => observing?.connection.close().catch(() => {}))
