import net from 'node:net'
import { performance } from 'node:perf_hooks'

/**
 * A small closed-loop HTTP/1.1 load generator: C keep-alive connections, each sending its next request as
 * soon as the previous answer is complete, until a time limit or a request count is reached. Raw sockets
 * rather than node:http or fetch, so that on a 2-core machine the generator takes as little CPU as it can
 * from the servers it drives. Requests are built one at a time, when sent, so a run of 512 KB bodies needs
 * no more memory than one of 1 KB bodies.
 */

/** What became of one request. */
export const Outcome = {
  notAnswered: 0,
  accepted: 1,
  /** A 2xx whose body `isAccepted` refuses (for the gateway: a duplicate). */
  otherSuccess: 2,
  httpError: 3,
  /** Connection refused or reset, or no complete answer within the timeout. */
  transportError: 4,
} as const

/** One request on the wire: the head (request line and headers, through the blank line) and the body. */
export interface WireRequest {
  readonly head: string
  readonly body: Buffer
}

/** What every load needs: where to send, and how to build and judge each request. */
interface Target {
  readonly host: string
  readonly port: number
  /** A request with no complete answer after this long counts as a transport error. */
  readonly requestTimeoutMs: number
  /** Builds request number `index` (0, 1, 2... in the order sent). */
  readonly request: (index: number) => WireRequest
  /** Whether a 2xx answer's body means "accepted"; by default every 2xx does. */
  readonly isAccepted?: (body: string) => boolean
}

export interface LoadOptions extends Target {
  readonly connections: number
  /** No request starts after this long; those in flight finish (or time out). */
  readonly durationMs: number
  /** No more than this many requests are sent, whatever the time. */
  readonly maxRequests: number
}

export interface LoadResult {
  /** From the first connection attempt to the last answer. */
  readonly elapsedMs: number
  /** Requests written to a socket. */
  readonly sent: number
  /** Per request sent, one of `Outcome`. */
  readonly outcomes: Uint8Array
  /** Latency of every answered request, in ms, sorted ascending. */
  readonly latenciesMs: Float64Array
  /** HTTP status -> count. */
  readonly statuses: ReadonlyMap<number, number>
  /** CPU this process spent (user + system) while the load ran, in ms. */
  readonly cpuMs: number
  /** The open loop's requests one by one (see runOpenLoop). */
  readonly timeline?: RequestTimeline
}

/** Per request of an open loop, in ms after it was due: NaN when it was never written or never answered. */
export interface RequestTimeline {
  /** When the first request was due, in ms since the epoch. */
  readonly firstDueUnixMs: number
  readonly rate: number
  /** How late the load generator wrote it: its own delay, not the server's. */
  readonly sentMs: Float64Array
  readonly answeredMs: Float64Array
}

/** One line per request: when it was due (ms since the epoch), then how late it was written and answered. */
export function timelineCsv(timeline: RequestTimeline): string {
  const ms = (value: number) => (Number.isNaN(value) ? '' : value.toFixed(3))
  const lines = ['due_unix_ms,sent_after_due_ms,answered_after_due_ms']
  for (let index = 0; index < timeline.sentMs.length; index++)
    lines.push(
      `${(timeline.firstDueUnixMs + (index * 1000) / timeline.rate).toFixed(3)},` +
        `${ms(timeline.sentMs[index]!)},${ms(timeline.answeredMs[index]!)}`,
    )
  return `${lines.join('\n')}\n`
}

/** The head of a POST with a body of `bodyLength` bytes; header values must be latin1. */
export function requestHead(options: {
  readonly host: string
  readonly port: number
  readonly path: string
  readonly headers: Readonly<Record<string, string>>
  readonly bodyLength: number
}): string {
  let head = `POST ${options.path} HTTP/1.1\r\nHost: ${options.host}:${options.port}\r\n`
  for (const [name, value] of Object.entries(options.headers)) head += `${name}: ${value}\r\n`
  return `${head}Content-Length: ${options.bodyLength}\r\n\r\n`
}

interface ParsedResponse {
  readonly status: number
  readonly body: string
  /** Bytes the response took, so pipelined leftovers could be kept (none are expected). */
  readonly length: number
  readonly close: boolean
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

/** A Float64Array that doubles when full: the request count is known only at the end. */
class Samples {
  private values = new Float64Array(16_384)
  length = 0
  push(value: number): void {
    if (this.length === this.values.length) {
      const grown = new Float64Array(this.values.length * 2)
      grown.set(this.values)
      this.values = grown
    }
    this.values[this.length++] = value
  }
  sorted(): Float64Array {
    return this.values.slice(0, this.length).sort()
  }
}

class Outcomes {
  private values = new Uint8Array(16_384)
  set(index: number, outcome: number): void {
    while (index >= this.values.length) {
      const grown = new Uint8Array(this.values.length * 2)
      grown.set(this.values)
      this.values = grown
    }
    this.values[index] = outcome
  }
  first(count: number): Uint8Array {
    return this.values.slice(0, count)
  }
}

interface Connection {
  readonly socket: net.Socket
  /** Index of the request awaiting its answer, or -1. */
  inFlight: number
  sentAt: number
}

/** Drives the server with a closed loop of `connections` keep-alive connections and measures each answer. */
export function runLoad(options: LoadOptions): Promise<LoadResult> {
  const isAccepted = options.isAccepted ?? (() => true)
  const outcomes = new Outcomes()
  const latencies = new Samples()
  const statuses = new Map<number, number>()
  const open = new Set<Connection>()
  const started = performance.now()
  const cpuAtStart = process.cpuUsage()
  const deadline = started + options.durationMs
  // A server that refuses connections must not make us spin: a bounded number of replacements.
  let reconnectsLeft = options.connections * 10
  let lastAnswerAt = started
  let next = 0
  const more = () => next < options.maxRequests && performance.now() < deadline

  return new Promise((resolve) => {
    let finished = false
    const finish = () => {
      if (finished) return
      finished = true
      clearInterval(watchdog)
      const cpu = process.cpuUsage(cpuAtStart)
      resolve({
        elapsedMs: lastAnswerAt - started,
        sent: next,
        outcomes: outcomes.first(next),
        latenciesMs: latencies.sorted(),
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
        if (!more()) {
          socket.end()
          return
        }
        const index = next++
        const { head, body } = options.request(index)
        connection.inFlight = index
        connection.sentAt = performance.now()
        // Head and body leave in one writev.
        socket.cork()
        socket.write(head, 'latin1')
        socket.write(body)
        socket.uncork()
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
        lastAnswerAt = performance.now()
        latencies.push(lastAnswerAt - connection.sentAt)
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
        outcomes.set(
          index,
          response.status >= 200 && response.status < 300
            ? isAccepted(response.body)
              ? Outcome.accepted
              : Outcome.otherSuccess
            : Outcome.httpError,
        )
        pending = response.length < pending.length ? pending.subarray(response.length) : undefined
        if (response.close) socket.end()
        else sendNext()
      })
      // 'close' follows every error and does the accounting.
      socket.on('error', () => {})
      socket.on('close', () => {
        open.delete(connection)
        if (connection.inFlight >= 0) outcomes.set(connection.inFlight, Outcome.transportError)
        connection.inFlight = -1
        if (more() && !finished && reconnectsLeft-- > 0) connect()
        else if (open.size === 0) finish()
      })
    }

    const watchdog = setInterval(() => {
      const now = performance.now()
      for (const connection of open)
        if (connection.inFlight >= 0 && now - connection.sentAt > options.requestTimeoutMs)
          connection.socket.destroy()
    }, 100)

    const connections = Math.max(1, Math.min(options.connections, options.maxRequests))
    if (options.maxRequests <= 0) finish()
    else for (let i = 0; i < connections; i++) connect()
  })
}

/** The value at quantile `q` (0..1) of an ascending array, or NaN when empty. */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
}

/** How many of `outcomes` are `outcome`. */
export function countOf(outcomes: Uint8Array, outcome: number): number {
  let count = 0
  for (const value of outcomes) if (value === outcome) count++
  return count
}

export interface OpenLoopOptions extends Target {
  /** Requests a second, each sent at its time whatever the answers to the earlier ones. */
  readonly rate: number
  /** How many requests in all. */
  readonly count: number
  /** Most connections open at once; a request due when all are busy and this many are open waits. */
  readonly maxConnections?: number
}

/**
 * An open loop: request n is due at `n / rate` seconds and goes out then on an idle keep-alive connection,
 * or a new one when every open connection awaits an answer. Latency counts from when the request was due,
 * not when it was written, so a server that falls behind is charged for the wait (no coordinated omission).
 */
export function runOpenLoop(options: OpenLoopOptions): Promise<LoadResult> {
  const isAccepted = options.isAccepted ?? (() => true)
  const maxConnections = options.maxConnections ?? 1000
  const outcomes = new Outcomes()
  const latencies = new Samples()
  const statuses = new Map<number, number>()
  const idle: OpenConnection[] = []
  const open = new Set<OpenConnection>()
  /** Requests due while every connection was busy and no more could be opened. */
  const queued: number[] = []
  const started = performance.now()
  const startedUnixMs = Date.now()
  const cpuAtStart = process.cpuUsage()
  const dueAt = (index: number) => started + (index * 1000) / options.rate
  const sentMs = new Float64Array(Math.max(0, options.count)).fill(Number.NaN)
  const answeredMs = new Float64Array(Math.max(0, options.count)).fill(Number.NaN)
  let next = 0
  let settled = 0
  let lastAnswerAt = started

  interface OpenConnection {
    readonly socket: net.Socket
    inFlight: number
    pending: Buffer | undefined
  }

  return new Promise((resolve) => {
    let finished = false
    const finish = () => {
      if (finished) return
      finished = true
      clearInterval(watchdog)
      for (const connection of open) connection.socket.destroy()
      const cpu = process.cpuUsage(cpuAtStart)
      resolve({
        elapsedMs: lastAnswerAt - started,
        sent: next,
        outcomes: outcomes.first(options.count),
        latenciesMs: latencies.sorted(),
        statuses,
        cpuMs: (cpu.user + cpu.system) / 1000,
        timeline: { firstDueUnixMs: startedUnixMs, rate: options.rate, sentMs, answeredMs },
      })
    }
    const settle = (index: number, outcome: number) => {
      outcomes.set(index, outcome)
      if (++settled === options.count) finish()
    }

    const write = (connection: OpenConnection, index: number) => {
      connection.inFlight = index
      sentMs[index] = performance.now() - dueAt(index)
      const { head, body } = options.request(index)
      connection.socket.cork()
      connection.socket.write(head, 'latin1')
      connection.socket.write(body)
      connection.socket.uncork()
    }
    /** The connection is free: the oldest request waiting for one goes out on it. */
    const release = (connection: OpenConnection) => {
      const waiting = queued.shift()
      if (waiting === undefined) idle.push(connection)
      else write(connection, waiting)
    }

    const connect = (first: number) => {
      const socket = net.connect({ host: options.host, port: options.port })
      socket.setNoDelay(true)
      const connection: OpenConnection = { socket, inFlight: first, pending: undefined }
      open.add(connection)
      socket.on('connect', () => write(connection, first))
      socket.on('data', (chunk: Buffer) => {
        connection.pending = connection.pending ? Buffer.concat([connection.pending, chunk]) : chunk
        let response: ParsedResponse | undefined
        try {
          response = parseResponse(connection.pending)
        } catch {
          socket.destroy()
          return
        }
        if (!response || connection.inFlight < 0) return
        const index = connection.inFlight
        connection.inFlight = -1
        lastAnswerAt = performance.now()
        answeredMs[index] = lastAnswerAt - dueAt(index)
        latencies.push(answeredMs[index]!)
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
        connection.pending =
          response.length < connection.pending.length
            ? connection.pending.subarray(response.length)
            : undefined
        const ok = response.status >= 200 && response.status < 300
        settle(
          index,
          ok ? (isAccepted(response.body) ? Outcome.accepted : Outcome.otherSuccess) : Outcome.httpError,
        )
        if (response.close) socket.end()
        else release(connection)
      })
      socket.on('error', () => {})
      socket.on('close', () => {
        open.delete(connection)
        const at = idle.indexOf(connection)
        if (at >= 0) idle.splice(at, 1)
        if (connection.inFlight >= 0) settle(connection.inFlight, Outcome.transportError)
        connection.inFlight = -1
        const waiting = finished ? undefined : queued.shift()
        if (waiting !== undefined) connect(waiting)
      })
    }

    const send = (index: number) => {
      const connection = idle.pop()
      if (connection) write(connection, index)
      else if (open.size < maxConnections) connect(index)
      else queued.push(index)
    }

    const schedule = () => {
      const now = performance.now()
      while (next < options.count && dueAt(next) <= now) send(next++)
      if (next < options.count) setTimeout(schedule, Math.max(0, dueAt(next) - performance.now()))
    }

    const watchdog = setInterval(() => {
      const now = performance.now()
      for (const connection of open)
        if (connection.inFlight >= 0 && now - dueAt(connection.inFlight) > options.requestTimeoutMs)
          connection.socket.destroy()
    }, 100)

    if (options.count <= 0) finish()
    else schedule()
  })
}
