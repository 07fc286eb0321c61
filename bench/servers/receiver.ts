import { createServer } from 'node:http'
import { Webhook } from 'standardwebhooks'
import { onShutdown } from './shutdown.ts'

/**
 * A team's endpoint for the destinations bench: verifies every request with the `standardwebhooks` package,
 * as a receiver would, and answers 204, or 401 when the signature does not verify. Env: PORT, HOST.
 * `PUT /secrets` with {path: secret} tells it the secret of each path; `GET /stats` reports what it saw.
 */

const secrets = new Map<string, Webhook>()
const stats = { verified: 0, refused: 0, ids: new Set<string>() }

const server = createServer((req, res) => {
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ verified: stats.verified, refused: stats.refused, distinct: stats.ids.size }))
    return
  }
  const chunks: Buffer[] = []
  req.on('data', (chunk: Buffer) => chunks.push(chunk))
  req.on('end', () => {
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
      secrets.get(req.url ?? '')!.verify(Buffer.concat(chunks).toString('utf8'), headers)
      stats.verified += 1
      stats.ids.add(`${req.url} ${headers['webhook-id']}`)
      res.writeHead(204).end()
    } catch {
      stats.refused += 1
      res.writeHead(401).end()
    }
  })
})
server.keepAliveTimeout = 60_000
server.listen(Number(process.env.PORT), process.env.HOST ?? '127.0.0.1')
onShutdown(server)
