import { createServer, connect, type AddressInfo, type Socket } from 'node:net'

/**
 * A TCP proxy in front of one shared service, so a test can make that service "go down" for one gateway
 * without touching the service itself (other test files use it at the same time).
 */
export interface TcpProxy {
  readonly port: number
  /** Connections accepted and forwarded so far (refused ones not counted): a reconnect shows up here. */
  readonly accepted: number
  /** Connections open right now. */
  readonly open: number
  /** The same URL with its host and port pointing at the proxy. */
  url(serviceUrl: string): string
  /** Refuses new connections (reset at once) and resets the open ones: the service is down. */
  pause(): void
  /**
   * Keeps every connection open but forwards nothing, either way, and leaves new ones hanging: the
   * service is frozen or a network partition drops packets. `resume()` lets the bytes through again.
   */
  stall(): void
  resume(): void
  /** Resets the open connections but keeps accepting: a network blip, the client reconnects. */
  dropConnections(): void
  /**
   * Resets every open connection right after the next chunk a client sends on one of them has been
   * forwarded: the service may have acted on it, the client never hears the answer. Resolves true once
   * that happened, or false (and disarms) when no client sent anything within `timeoutMs`.
   */
  dropWhenClientSends(timeoutMs: number): Promise<boolean>
  close(): Promise<void>
}

interface Pair {
  readonly client: Socket
  readonly upstream: Socket
}

export async function startProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const pairs = new Set<Pair>()
  let paused = false
  let stalled = false
  let accepted = 0
  let armed: (() => void) | undefined

  const reset = (pair: Pair) => {
    pairs.delete(pair)
    pair.client.resetAndDestroy()
    pair.upstream.resetAndDestroy()
  }
  const resetAll = () => [...pairs].forEach(reset)

  const server = createServer((client) => {
    if (paused) {
      client.on('error', () => {})
      client.resetAndDestroy()
      return
    }
    accepted++
    const upstream = connect(targetPort, targetHost)
    const pair: Pair = { client, upstream }
    pairs.add(pair)
    const end = () => {
      if (!pairs.delete(pair)) return
      client.destroy()
      upstream.destroy()
    }
    client.on('error', end).on('close', end)
    upstream.on('error', end).on('close', end)
    client.pipe(upstream)
    upstream.pipe(client)
    // Registered after pipe(), so the chunk is written upstream before the connections go.
    client.on('data', () => {
      const drop = armed
      if (!drop) return
      armed = undefined
      resetAll()
      drop()
    })
    // After pipe(), which resumes its source.
    if (stalled) {
      client.pause()
      upstream.pause()
    }
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const port = (server.address() as AddressInfo).port

  return {
    port,
    get accepted() {
      return accepted
    },
    get open() {
      return pairs.size
    },
    url(serviceUrl) {
      const rewritten = new URL(serviceUrl)
      rewritten.hostname = '127.0.0.1'
      rewritten.port = String(port)
      return rewritten.toString()
    },
    pause() {
      paused = true
      resetAll()
    },
    stall() {
      stalled = true
      for (const { client, upstream } of pairs) {
        client.pause()
        upstream.pause()
      }
    },
    resume() {
      paused = false
      stalled = false
      for (const { client, upstream } of pairs) {
        client.resume()
        upstream.resume()
      }
    },
    dropConnections: resetAll,
    dropWhenClientSends: (timeoutMs) =>
      new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          armed = undefined
          resolve(false)
        }, timeoutMs)
        armed = () => {
          clearTimeout(timer)
          resolve(true)
        }
      }),
    async close() {
      paused = true
      resetAll()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** The host and port of a service URL, for `startProxy`. */
export function hostAndPort(serviceUrl: string, defaultPort: number): [string, number] {
  const parsed = new URL(serviceUrl)
  return [parsed.hostname, parsed.port ? Number(parsed.port) : defaultPort]
}
