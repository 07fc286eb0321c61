import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Webhook } from 'standardwebhooks'
import { waitFor } from './services.ts'

/** One request a receiver got. */
export interface ReceivedRequest {
  readonly method: string
  readonly path: string
  readonly headers: IncomingHttpHeaders
  readonly body: string
  /** When the request was complete (ms since the epoch). */
  readonly at: number
}

/** What to answer request number `index` (0-based): a status, headers, a body, after a delay, or never. */
export interface Answer {
  readonly status?: number
  readonly headers?: Record<string, string>
  readonly body?: string
  readonly delayMs?: number
  /** Hold the request open and never answer (until the receiver closes). */
  readonly hang?: boolean
}

export interface Receiver {
  /** http://127.0.0.1:<port><path> */
  readonly url: string
  readonly port: number
  readonly requests: ReceivedRequest[]
  /** Connections opened to it so far. */
  readonly connections: () => number
  /** Changes how later requests are answered. */
  answer(respond: (request: ReceivedRequest, index: number) => Answer): void
  waitForRequests(count: number, timeoutMs?: number): Promise<ReceivedRequest[]>
  close(): Promise<void>
}

/**
 * A real HTTP server on loopback standing in for a team's endpoint: it keeps every request and answers as
 * told (200 by default).
 */
export async function startReceiver(
  respond: (request: ReceivedRequest, index: number) => Answer = () => ({ status: 200 }),
  path = '/hooks',
): Promise<Receiver> {
  const requests: ReceivedRequest[] = []
  const hanging = new Set<ServerResponse>()
  let responder = respond
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const request: ReceivedRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at: Date.now(),
      }
      const index = requests.push(request) - 1
      const answer = responder(request, index)
      if (answer.hang) {
        hanging.add(res)
        return
      }
      const send = () => {
        if (res.destroyed) return
        res.writeHead(answer.status ?? 200, answer.headers ?? {})
        res.end(answer.body ?? '')
      }
      if (answer.delayMs) setTimeout(send, answer.delayMs)
      else send()
    })
  })
  let connections = 0
  server.on('connection', () => connections++)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}${path}`,
    port,
    requests,
    connections: () => connections,
    answer: (next) => {
      responder = next
    },
    waitForRequests: (count, timeoutMs = 10_000) =>
      waitFor(() => (requests.length >= count ? requests : undefined), timeoutMs),
    close: async () => {
      for (const res of hanging) res.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/**
 * Verifies a request with the `standardwebhooks` package, as a team's receiver would: the parsed payload, or
 * a thrown WebhookVerificationError.
 */
export function verifyStandardWebhook(request: ReceivedRequest, secret: string): unknown {
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(request.headers)) {
    if (typeof value === 'string') headers[name] = value
  }
  return new Webhook(secret).verify(request.body, headers)
}
