import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createNodeMiddleware, Webhooks } from '@octokit/webhooks'
import Stripe from 'stripe'
import twilio from 'twilio'
import { onShutdown } from './shutdown.ts'

/**
 * (b) What each provider's SDK gives for a receiver that verifies and stores nothing, on node:http:
 * GitHub through @octokit/webhooks' createNodeMiddleware (verify, parse, a `push` handler that does
 * nothing), Stripe through stripe.webhooks.constructEvent, Twilio through twilio.validateRequest.
 * Env: PORT, HOST, GITHUB_WEBHOOK_SECRET, STRIPE_WEBHOOK_SECRET, TWILIO_AUTH_TOKEN.
 */

const env = (name: string): string => {
  const value = process.env[name]
  if (!value) throw new Error(`sdk-verify: ${name} is not set`)
  return value
}
const stripeSecret = env('STRIPE_WEBHOOK_SECRET')
const twilioToken = env('TWILIO_AUTH_TOKEN')

const webhooks = new Webhooks({ secret: env('GITHUB_WEBHOOK_SECRET') })
webhooks.on('push', () => {})
const github = createNodeMiddleware(webhooks, { path: '/webhooks/github' })

const answer = (res: ServerResponse, status: number, body: string) =>
  res
    .writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    .end(body)

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

function stripeVerified(req: IncomingMessage, body: Buffer): boolean {
  try {
    Stripe.webhooks.constructEvent(body, req.headers['stripe-signature'] ?? '', stripeSecret)
    return true
  } catch {
    return false
  }
}

function twilioVerified(req: IncomingMessage, body: Buffer): boolean {
  const params = Object.fromEntries(new URLSearchParams(body.toString('utf8')))
  const signature = req.headers['x-twilio-signature']
  const url = `http://${req.headers.host}${req.url}`
  return typeof signature === 'string' && twilio.validateRequest(twilioToken, signature, url, params)
}

const server = createServer((req, res) => {
  if (req.url === '/webhooks/github') return void github(req, res)
  if (req.method === 'GET' && req.url === '/health') return answer(res, 200, '{"status":"ok"}')
  const verify =
    req.url === '/webhooks/stripe'
      ? stripeVerified
      : req.url === '/webhooks/twilio'
        ? twilioVerified
        : undefined
  if (req.method !== 'POST' || !verify) return answer(res, 404, '{"error":"not found"}')
  readBody(req).then(
    (body) =>
      verify(req, body)
        ? answer(res, 200, '{"status":"accepted"}')
        : answer(res, 401, '{"error":"invalid signature"}'),
    () => answer(res, 400, '{"error":"unreadable body"}'),
  )
})
server.listen(Number(process.env.PORT), process.env.HOST ?? '127.0.0.1')
onShutdown(server)
