import { once } from 'node:events'
import { createServer, type RequestListener, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Agent } from 'undici'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { post } from '../../src/destinations/post.ts'

const agent = new Agent({ keepAliveTimeout: 1000 })
const servers: Server[] = []

async function endpoint(listener: RequestListener): Promise<string> {
  const server = createServer(listener)
  servers.push(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks?x=1`
}

afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections()
    server.close()
  }
})
afterAll(() => agent.close())

describe('post', () => {
  it('sends the body and headers, and reads the status, headers and body of the answer', async () => {
    let received: {
      url?: string | undefined
      method?: string | undefined
      headers?: Record<string, unknown>
      body?: string
    } = {}
    const url = await endpoint((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => chunks.push(chunk))
      req.on('end', () => {
        received = {
          url: req.url,
          method: req.method,
          headers: req.headers,
          body: Buffer.concat(chunks).toString(),
        }
        res.writeHead(202, { 'x-answer': 'yes', 'set-cookie': ['a=1', 'b=2'] }).end('taken\u0000')
      })
    })
    const answer = await post(agent, url, { 'webhook-id': 'msg_1' }, '{"a":1}', 5000, 10_240)
    expect(received).toMatchObject({ url: '/hooks?x=1', method: 'POST', body: '{"a":1}' })
    expect(received.headers).toMatchObject({ 'webhook-id': 'msg_1' })
    expect(answer.statusCode).toBe(202)
    expect(answer.headers).toMatchObject({ 'x-answer': 'yes', 'set-cookie': ['a=1', 'b=2'] })
    expect(answer.body).toBe('taken\uFFFD')
  })

  it('reads at most the limit of an answer that does not end, and does not wait for the rest', async () => {
    const url = await endpoint((req, res) => {
      req.resume()
      res.writeHead(200)
      const chunk = 'x'.repeat(4096)
      const timer = setInterval(() => res.write(chunk), 5)
      res.on('close', () => clearInterval(timer))
    })
    const answer = await post(agent, url, {}, 'hi', 5000, 10_240)
    expect(answer.statusCode).toBe(200)
    expect(answer.body).toHaveLength(10_240)
  })

  it('gives up with a TimeoutError when the whole exchange outlasts the timeout, a slow body included', async () => {
    const silent = await endpoint((req) => req.resume())
    await expect(post(agent, silent, {}, 'hi', 200, 10_240)).rejects.toMatchObject({ name: 'TimeoutError' })
    const dripping = await endpoint((req, res) => {
      req.resume()
      res.writeHead(200)
      const timer = setInterval(() => res.write('.'), 50)
      res.on('close', () => clearInterval(timer))
    })
    const started = performance.now()
    await expect(post(agent, dripping, {}, 'hi', 300, 10_240)).rejects.toMatchObject({ name: 'TimeoutError' })
    expect(performance.now() - started).toBeLessThan(2000)
  })

  it('rejects with the connection error when nothing listens', async () => {
    const url = await endpoint(() => {})
    const closed = servers.pop()!
    await new Promise((resolve) => closed.close(resolve))
    await expect(post(agent, url, {}, 'hi', 5000, 10_240)).rejects.toMatchObject({ code: 'ECONNREFUSED' })
  })

  it('settles once undici has its connection back: 16 callers sending one after another open 17 connections, not more', async () => {
    let connections = 0
    const url = await endpoint((req, res) => {
      req.resume()
      req.on('end', () => res.writeHead(204).end())
    })
    servers.at(-1)!.on('connection', () => connections++)
    // An agent of its own, so that no connection from another test is reused here.
    const own = new Agent({ keepAliveTimeout: 10_000 })
    let left = 800
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (left-- > 0) await post(own, url, {}, 'x'.repeat(500), 5000, 10_240)
      }),
    )
    await own.close()
    // One per caller, and the spare undici's pool opens whenever its last free connection gets a request.
    expect(connections).toBe(17)
  })
})
