import { randomBytes } from 'node:crypto'
import { connect as netConnect, type Socket } from 'node:net'
import postgres from 'postgres'

export type Sql = postgres.Sql<{}>

/** A piece of SQL to put in a statement: a subquery, an expression, a condition. */
export type Fragment = postgres.PendingQuery<postgres.Row[]>

/** The longest a gateway statement may run (DATABASE_STATEMENT_TIMEOUT_MS). */
export const defaultStatementTimeoutMs = 30_000

/** What postgres.js passes a socket factory: its parsed connection options. */
interface SocketOptions {
  readonly host: readonly string[]
  readonly port: readonly number[]
  readonly path: string | false
}

/**
 * A socket with Nagle's algorithm off. postgres.js leaves it on, and a COPY's closing message, a few bytes
 * sent right after the data, then waits for the server's delayed ACK: 40 ms per group. Connects to the
 * first host of the URL (or its Unix socket); postgres.js does TLS on top when asked.
 *
 * Handed over while still connecting: postgres.js writes the startup message once it has the socket (Node
 * holds it until connected), bounds the connection with its connect_timeout, and on a refused connection
 * goes through its own close and reconnect. A factory that waited and threw instead would leave that
 * connection out of the pool for good (postgres.js 3.4.9): after a Postgres restart the pool stopped answering.
 */
function connectSocket(options: SocketOptions): Socket {
  const socket = options.path
    ? netConnect(options.path)
    : netConnect({ host: options.host[0] ?? 'localhost', port: options.port[0] ?? 5432 })
  socket.setNoDelay(true)
  return socket
}

/**
 * The name a pool's sessions carry (each pool its own). Notifications of new webhooks and deliveries carry
 * the name of the writer, which has already woken its own worker and sender: only other gateways act on
 * them (a wasted claim per notification, otherwise).
 */
export const writerName = (sql: Sql) => String(sql.options.connection.application_name ?? '')

/**
 * A pool of `max` sessions. `keepSession` keeps its connections for as long as they live (no idle timeout,
 * no retirement): for a session that holds a lock. A statement running longer than `statementTimeoutMs`
 * (waiting on a lock, say) is cancelled by Postgres itself. `onClose` is called whenever one of its
 * connections closes (Postgres restarted, the session terminated, the pool ended).
 */
export function connectDatabase(
  url: string,
  max: number,
  {
    keepSession = false,
    statementTimeoutMs = defaultStatementTimeoutMs,
    onClose,
  }: {
    readonly keepSession?: boolean
    readonly statementTimeoutMs?: number
    readonly onClose?: (() => void) | undefined
  } = {},
): Sql {
  const options = {
    max,
    onnotice: () => {},
    ...(onClose ? { onclose: () => onClose() } : {}),
    // Fail fast when Postgres is down: the provider gets a 503 and retries, rather than a hung request.
    connect_timeout: 5,
    // Seconds before reconnecting after a failure. postgres.js waits up to 20 s, counted over every
    // connection of the pool: after an outage the worker's queries could wait that long behind a connection
    // still backing off while intake already commits. At most 2 s, jittered.
    backoff: (retries: number) => Math.min(2, 0.05 * 2 ** retries) * (0.5 + Math.random() / 2),
    // 0 is "never" to postgres.js.
    idle_timeout: keepSession ? 0 : 60,
    ...(keepSession ? { max_lifetime: 0 } : {}),
    // JIT compiling pays off for long analytic queries, never for ours: the planner's guess of a claim's cost
    // (it cannot know the LIMITs) set it off at 70 ms a statement, against 3 ms to run it.
    connection: {
      application_name: `webhook-gateway ${randomBytes(4).toString('hex')}`,
      jit: 'off',
      statement_timeout: statementTimeoutMs,
    },
  }
  // The socket factory knows one host; a URL naming several (failover) keeps postgres.js' own sockets.
  // postgres.js takes a socket factory but its types do not list the option.
  return singleHost(url)
    ? postgres(url, { ...options, socket: connectSocket } as typeof options)
    : postgres(url, options)
}

/** postgres.js reads `host1:port,host2:port` in a URL as several hosts to try in turn. */
const singleHost = (url: string) => !/^[^/]*\/\/[^/?#]*,/.test(url)
