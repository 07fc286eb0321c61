import net from 'node:net'
import { performance } from 'node:perf_hooks'

/**
 * A small closed-loop HTTP/1.1 load generator: C keep-alive connections, each sending its next
 * pre-serialized request as soon as the previous answer is complete. Raw sockets rather than node:http or
 * fetch, so that on a 2-core machine the generator takes as little CPU as it can from the servers it drives.
 */

/** What became of one request. */
export const Outcome = {
  notSent: 0,
  accepted: 1,
  /** A 2xx whose body is not `"status":"accepted"` (for the gateway: a duplicate). */
  otherSuccess: 2,
  httpError: 3,
  /** Connection refused or reset, or no complete answer within the timeout. */
  transportError: 4,
} as const

export interface LoadOptions {
  readonly host: string
  readonly port: number
  /** Complete HTTP/1.1 requests, serialized ahead of time; each is sent once, in order. */
  readonly requests: readonly Buffer[]
  readonly connections: number
  /** A request with no complete answer after this long counts as a transport error; its connection is replaced. */
  readonly requestTimeoutMs: number
  /** No request starts after this long; the rest stay not sent. */
  readonly maxDurationMs: number
}

export interface LoadResult {
  readonly elapsedMs: number
  /** Per request, one of `Outcome`. */
  readonly outcomes: Uint8Array
  /** Latency of every answered request, in ms, sorted ascending. */
  readonly latenciesMs: Float64Array
  /** HTTP status -> count. */
  readonly statuses: ReadonlyMap<number, number>
  /** CPU this process spent (user + system) while the load ran, in ms. */
  readonly cpuMs: number
}

interface ParsedResponse {
  readonly status: number
  readonly body: string
  /** Bytes the response took, so pipelined leftovers could be kept (none are expected). */
  readonly length: number
  readonly close: boolean
}

/** Serializes one request: the bytes sent on the wire, Host and Content-Length included. */
export function buildRequest(options: {
  readonly host: string
  readonly port: number
  readonly path: string
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}): Buffer {
  const body = Buffer.from(options.body, 'utf8')
  const lines = [`POST ${options.path} HTTP/1.1`, `Host: ${options.host}:${options.port}`]
  for (const [name, value] of Object.entries(options.headers)) lines.push(`${name}: ${value}`)
  lines.push(`Content-Length: ${body.length}`, '', '')
  return Buffer.concat([Buffer.from(lines.join('\r\n'), 'latin1'), body])
}

/** Parses one complete response at the start of `data`, or returns undefined when more bytes are needed. */
function parseResponse(data: Buffer): ParsedResponse | undefined {
  const headerEnd = data.indexOf('\r\n\r\n')
  if (headerEnd < 0) return undefined
  const head = data.toString('latin1', 0, headerEnd).toLowerCase()
  const status = Number(head.slice(9, 12))
  const close = head.includes('\r\nconnection: close')
  const bodyStart = headerEnd + 4
  const lengthAt = head.indexOf('\r\ncontent-length:')
  if (lengthAt >= 0) {
    const lineEnd = head.indexOf('\r\n', lengthAt + 2)
    const declared = Number(head.slice(lengthAt + 17, lineEnd < 0 ? undefined : lineEnd).trim())
    const end = bodyStart + declared
    if (data.length < end) return undefined
    return { status, close, body: data.toString('utf8', bodyStart, end), length: end }
  }
  if (head.includes('\r\ntransfer-encoding: chunked')) {
    let position = bodyStart
    let body = ''
    for (;;) {
      const lineEnd = data.indexOf('\r\n', position)
      if (lineEnd < 0) return undefined
      const size = parseInt(data.toString('latin1', position, lineEnd), 16)
      if (Number.isNaN(size)) throw new Error('load: malformed chunk size')
      // No trailers are expected: the last chunk is `0\r\n\r\n`.
      if (size === 0)
        return data.length < lineEnd + 4 ? undefined : { status, close, body, length: lineEnd + 4 }
      if (data.length < lineEnd + 2 + size + 2) return undefined
      body += data.toString('utf8', lineEnd + 2, lineEnd + 2 + size)
      position = lineEnd + 2 + size + 2
    }
  }
  // No length and not chunked: only bodiless answers (204, 304) are expected here.
  return { status, close, body: '', length: bodyStart }
}

interface Connection {
  readonly socket: net.Socket
  /** Index of the request awaiting its answer, or -1. */
  inFlight: number
  sentAt: number
}

/** Sends every request once over `connections` keep-alive connections and measures each answer. */
export function runLoad(options: LoadOptions): Promise<LoadResult> {
  const total = options.requests.length
  const outcomes = new Uint8Array(total)
  const latencies = new Float64Array(total)
  const statuses = new Map<number, number>()
  const open = new Set<Connection>()
  const started = performance.now()
  const cpuAtStart = process.cpuUsage()
  const deadline = started + options.maxDurationMs
  // A server that refuses connections must not make us spin: a bounded number of replacements.
  let reconnectsLeft = options.connections * 10
  let answered = 0
  let next = 0

  return new Promise((resolve) => {
    let finished = false
    const finish = () => {
      if (finished) return
      finished = true
      clearInterval(watchdog)
      const cpu = process.cpuUsage(cpuAtStart)
      resolve({
        elapsedMs: performance.now() - started,
        outcomes,
        latenciesMs: latencies.subarray(0, answered).sort(),
        statuses,
        cpuMs: (cpu.user + cpu.system) / 1000,
      })
    }

    const connect = () => {
      const socket = net.connect({ host: options.host, port: options.port })
      socket.setNoDelay(true)
      const connection: Connection = { socket, inFlight: -1, sentAt: 0 }
      open.add(connection)
      let pending: Buffer | undefined

      const sendNext = () => {
        if (next >= total || performance.now() > deadline) {
          socket.end()
          return
        }
        connection.inFlight = next++
        connection.sentAt = performance.now()
        socket.write(options.requests[connection.inFlight]!)
      }

      socket.on('connect', sendNext)
      socket.on('data', (chunk: Buffer) => {
        pending = pending ? Buffer.concat([pending, chunk]) : chunk
        let response: ParsedResponse | undefined
        try {
          response = parseResponse(pending)
        } catch {
          socket.destroy()
          return
        }
        if (!response || connection.inFlight < 0) return
        const index = connection.inFlight
        connection.inFlight = -1
        latencies[answered++] = performance.now() - connection.sentAt
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
        outcomes[index] =
          response.status >= 200 && response.status < 300
            ? response.body.includes('"status":"accepted"')
              ? Outcome.accepted
              : Outcome.otherSuccess
            : Outcome.httpError
        pending = response.length < pending.length ? pending.subarray(response.length) : undefined
        if (response.close) socket.end()
        else sendNext()
      })
      // 'close' follows every error and does the accounting.
      socket.on('error', () => {})
      socket.on('close', () => {
        open.delete(connection)
        if (connection.inFlight >= 0) outcomes[connection.inFlight] = Outcome.transportError
        connection.inFlight = -1
        const more = next < total && performance.now() <= deadline
        if (more && !finished && reconnectsLeft-- > 0) connect()
        else if (open.size === 0) finish()
      })
    }

    const watchdog = setInterval(() => {
      const now = performance.now()
      for (const connection of open)
        if (connection.inFlight >= 0 && now - connection.sentAt > options.requestTimeoutMs)
          connection.socket.destroy()
    }, 100)

    const connections = Math.max(1, Math.min(options.connections, total))
    if (total === 0) finish()
    else for (let i = 0; i < connections; i++) connect()
  })
}

/** The value at quantile `q` (0..1) of an ascending array, or NaN when empty. */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
}
