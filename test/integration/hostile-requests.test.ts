import { connect } from 'node:net'
import { beforeAll, describe, expect, it } from 'vitest'
import { useTestDatabase, type TestGateway } from '../support/services.ts'
import { paymentIntentSucceeded, stripeDelivery } from '../support/signed.ts'

const secret = 'whsec_hostile'
const db = useTestDatabase()
let gw: TestGateway

beforeAll(async () => {
  gw = await db.startGateway({
    STRIPE_WEBHOOK_SECRET: secret,
    MAX_BODY_BYTES: '65536',
    HTTP_HEADERS_TIMEOUT_MS: '1000',
    HTTP_REQUEST_TIMEOUT_MS: '2000',
  })
})

/** Writes raw bytes on a new connection; resolves with what came back when the server closes it. */
function raw(
  write: (socket: ReturnType<typeof connect>) => void,
  timeoutMs = 8000,
): Promise<{ text: string; closedAfterMs: number }> {
  const started = Date.now()
  return new Promise((resolve, reject) => {
    const socket = connect(gw.gateway.port!, '127.0.0.1', () => write(socket))
    let text = ''
    socket.on('data', (chunk) => (text += chunk.toString('latin1')))
    socket.on('error', () => {})
    socket.on('close', () => resolve({ text, closedAfterMs: Date.now() - started }))
    setTimeout(() => {
      socket.destroy()
      reject(new Error(`the server kept the connection open for ${timeoutMs} ms`))
    }, timeoutMs).unref()
  })
}

const head = (lines: string[]) => `${lines.join('\r\n')}\r\n\r\n`

/** The process still answers a real delivery: nothing above broke it. */
async function stillHealthy() {
  expect((await fetch(`${gw.url}/health`)).status).toBe(200)
  const delivery = stripeDelivery(paymentIntentSucceeded(), { secret })
  const response = await gw.post('/webhooks/stripe', delivery.body, delivery.headers)
  expect(((await response.json()) as { status: string }).status).toBe('accepted')
}

describe('hostile requests', () => {
  it('cuts off a client that drips its headers (slowloris)', async () => {
    const { closedAfterMs, text } = await raw((socket) => {
      socket.write('POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\n')
      const drip = setInterval(() => socket.writable && socket.write('X-Drip: 1\r\n'), 200)
      socket.on('close', () => clearInterval(drip))
    })
    expect(closedAfterMs).toBeLessThan(4000)
    expect(text).toMatch(/^(HTTP\/1\.1 408|$)/)
    await stillHealthy()
  })

  it('cuts off a client that drips its body', async () => {
    const { closedAfterMs } = await raw((socket) => {
      socket.write(head(['POST /webhooks/stripe HTTP/1.1', 'Host: x', 'Content-Length: 100000']))
      const drip = setInterval(() => socket.writable && socket.write('x'), 200)
      socket.on('close', () => clearInterval(drip))
    })
    expect(closedAfterMs).toBeLessThan(5000)
    await stillHealthy()
  })

  it('answers 431 to huge headers and 400 to a header with a bare CR or LF', async () => {
    const huge = await raw((socket) =>
      socket.end(head(['POST /webhooks/stripe HTTP/1.1', 'Host: x', `X-Big: ${'a'.repeat(40_000)}`])),
    )
    expect(huge.text).toMatch(/^HTTP\/1\.1 431/)
    const split = await raw((socket) =>
      socket.end(
        'POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nX-Evil: a\rInjected: b\r\nContent-Length: 0\r\n\r\n',
      ),
    )
    expect(split.text).toMatch(/^HTTP\/1\.1 400/)
    await stillHealthy()
  })

  it('answers 413 to a chunked body past the limit, without reading it all', async () => {
    const { text } = await raw((socket) => {
      socket.write(head(['POST /webhooks/stripe HTTP/1.1', 'Host: x', 'Transfer-Encoding: chunked']))
      const chunk = 'x'.repeat(16_384)
      for (let n = 0; n < 8; n++) socket.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`)
      socket.end('0\r\n\r\n')
    })
    expect(text).toMatch(/^HTTP\/1\.1 413/)
    await stillHealthy()
  })

  it('answers 401 with a generic body to garbage, and 400 to signed garbage, never an internal detail', async () => {
    const invalidUtf8 = Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0xc3, 0x28, 0x7d])
    const unsigned = await gw.post('/webhooks/stripe', invalidUtf8, { 'content-type': 'application/json' })
    expect(unsigned.status).toBe(401)
    expect(await unsigned.json()).toEqual({ error: 'invalid signature' })

    // Signed, so it gets past verification: the parser refuses it with a 400 that names no internals.
    const signedInvalid = stripeDelivery({}, { secret, payload: invalidUtf8.toString('latin1') })
    const refused = await gw.post('/webhooks/stripe', signedInvalid.body, signedInvalid.headers)
    expect(refused.status).toBe(400)
    const body = (await refused.json()) as { error: string }
    expect(body.error).not.toMatch(/at .*\.ts|node_modules|stack/i)

    const deep = `{"id":"evt_deep","type":"x","data":${'['.repeat(20_000)}${']'.repeat(20_000)}}`
    const signedDeep = stripeDelivery({}, { secret, payload: deep })
    const nested = await gw.post('/webhooks/stripe', signedDeep.body, signedDeep.headers)
    expect([200, 400]).toContain(nested.status)
    await stillHealthy()
  })
})
