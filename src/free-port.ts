import { readFileSync } from 'node:fs'
import { createServer, type AddressInfo, type Server } from 'node:net'

/**
 * Ports for a server that binds them a moment later (a child process, the embedded PostgreSQL).
 *
 * A port from listen(0) comes from the kernel's ephemeral range, the same range every outgoing connection
 * takes its local port from: between the check and the bind, a connection or another listen(0) can take it
 * (EADDRINUSE, seen in CI). So the ports are picked below that range, where neither lands, and checked free.
 */
export async function freePorts<Name extends string>(
  names: readonly Name[],
  host = '127.0.0.1',
): Promise<Record<Name, number>> {
  const held: Server[] = []
  try {
    // Held together until all are found, so no two names get the same port.
    for (let attempt = 0; held.length < names.length; attempt++) {
      if (attempt === 200) throw new Error(`no ${names.length} free ports found below ${ephemeralLow()}`)
      const server = await bind(candidate(), host)
      if (server) held.push(server)
    }
    const ports = held.map((server) => (server.address() as AddressInfo).port)
    return Object.fromEntries(names.map((name, index) => [name, ports[index]])) as Record<Name, number>
  } finally {
    await Promise.all(held.map((server) => new Promise((resolve) => server.close(resolve))))
  }
}

/** One port, as {@link freePorts}. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return (await freePorts(['port'], host)).port
}

/** A random port below the ephemeral range, or 0 (the kernel picks) when that range starts too low. */
function candidate(): number {
  const low = ephemeralLow()
  const from = 10_000
  return low - from < 1000 ? 0 : from + Math.floor(Math.random() * (low - from))
}

let low: number | undefined
function ephemeralLow(): number {
  if (low === undefined) {
    try {
      low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
    } catch {
      low = 32_768 // Linux's default; macOS and Windows start at 49152.
    }
    if (!Number.isInteger(low)) low = 32_768
  }
  return low
}

function bind(port: number, host: string): Promise<Server | undefined> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(undefined))
    server.listen(port, host, () => resolve(server))
  })
}
