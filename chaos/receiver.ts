import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Webhook } from 'standardwebhooks'

/**
 * The destination: a team's endpoint that verifies every request with the `standardwebhooks` package and
 * records its `webhook-id` (the CloudEvent id). The nemesis can make it fail (500) or hang past the gateway's
 * timeout for a while; a request counts as received only when it verified and was answered 2xx.
 */

export type ReceiverMode = 'normal' | 'failing' | 'hanging'

export class Receiver {
  mode: ReceiverMode = 'normal'
  /** webhook-id -> how many times it was received (verified and answered 204). */
  readonly received = new Map<string, number>()
  /** Requests whose signature did not verify: there should be none. */
  refused = 0
  /** Requests answered 500, and requests left hanging, by the nemesis' modes. */
  failed = 0
  hung = 0
  private webhook: Webhook | undefined

  private constructor(
    private readonly server: Server,
    readonly url: string,
    private readonly hangMs: number,
  ) {}

  /** Listens on a free port of 127.0.0.1; a hung request is cut after `hangMs` (past the gateway's timeout). */
  static async start(hangMs: number): Promise<Receiver> {
    let receiver: Receiver | undefined
    const server = createServer((request, response) => {
      const chunks: Buffer[] = []
      request.on('data', (chunk: Buffer) => chunks.push(chunk))
      request.on('end', () =>
        receiver?.handle(Buffer.concat(chunks).toString('utf8'), request.headers, response),
      )
    })
    server.keepAliveTimeout = 30_000
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    receiver = new Receiver(server, `http://127.0.0.1:${port}/hook`, hangMs)
    return receiver
  }

  /** The destination's secret, from the admin API's answer. */
  setSecret(secret: string): void {
    this.webhook = new Webhook(secret)
  }

  /** Deliveries received more than once (allowed: delivery is at least once). */
  duplicateReceipts(): number {
    let duplicates = 0
    for (const count of this.received.values()) duplicates += count - 1
    return duplicates
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve())
      this.server.closeAllConnections()
    })
  }

  private handle(
    body: string,
    incoming: NodeJS.Dict<string | string[]>,
    response: import('node:http').ServerResponse,
  ): void {
    const headers: Record<string, string> = {}
    for (const [name, value] of Object.entries(incoming)) if (typeof value === 'string') headers[name] = value
    try {
      if (!this.webhook) throw new Error('no secret yet')
      this.webhook.verify(body, headers)
    } catch {
      this.refused += 1
      response.writeHead(401).end()
      return
    }
    if (this.mode === 'failing') {
      this.failed += 1
      response.writeHead(500).end('chaos: failing on purpose')
      return
    }
    if (this.mode === 'hanging') {
      this.hung += 1
      setTimeout(() => response.destroy(), this.hangMs).unref()
      return
    }
    const id = headers['webhook-id'] ?? ''
    this.received.set(id, (this.received.get(id) ?? 0) + 1)
    response.writeHead(204).end()
  }
}
