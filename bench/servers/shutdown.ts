import type { Server } from 'node:http'
import type { ServerType } from '@hono/node-server'

/** On SIGTERM or SIGINT: stop accepting, drop idle keep-alive connections, run `then`, exit (within 5 s). */
export function onShutdown(server: Server | ServerType, then: () => Promise<unknown> = async () => {}): void {
  const stop = () => {
    setTimeout(() => process.exit(0), 5000).unref()
    server.close(() => void then().finally(() => process.exit(0)))
    if ('closeIdleConnections' in server) server.closeIdleConnections()
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}
