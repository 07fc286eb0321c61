import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { describe, expect, it } from 'vitest'
import { freePort, freePorts } from '../../src/free-port.ts'

describe('freePorts', () => {
  it('gives distinct ports, free to bind, below the range outgoing connections take their ports from', async () => {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
    const ports = Object.values(await freePorts(['a', 'b', 'c', 'd', 'e', 'f']))
    expect(new Set(ports).size).toBe(6)
    for (const port of [...ports, await freePort('0.0.0.0')]) {
      expect(port).toBeGreaterThanOrEqual(10_000)
      expect(port).toBeLessThan(low)
      const server = createServer()
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(port, '127.0.0.1', resolve)
      })
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
