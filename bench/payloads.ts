import { createHmac, randomBytes } from 'node:crypto'
import { githubDelivery, githubExample, stripeDelivery, stripeEvent } from '../test/support/signed.ts'
import { twilioDelivery, twilioMessageStatus } from '../test/support/signed-providers.ts'
import { requestHead, type WireRequest } from './load.ts'

/**
 * What the bench sends: provider deliveries signed as the providers sign them, each with an event id no
 * other request of the bench run has, built one at a time while the load runs.
 */

export type Provider = 'github' | 'stripe' | 'twilio'

/** The secrets every server of one bench run is configured with. */
export interface Secrets {
  readonly github: string
  readonly stripe: string
  readonly twilio: string
}

export const newSecrets = (): Secrets => ({
  github: randomBytes(20).toString('hex'),
  stripe: `whsec_${randomBytes(24).toString('base64url')}`,
  twilio: randomBytes(16).toString('hex'),
})

/** A payload ready to send to one server. */
export interface Payload {
  readonly provider: Provider
  readonly path: string
  /** Body size in bytes (of the first request; they differ by a few bytes at most). */
  readonly bodyBytes: number
  /** Request number `seq`; every seq has its own event id. */
  request(seq: number): WireRequest
  /** The event id of request `seq` as the gateway's unique key (provider, event_key) holds it. */
  gatewayKey(seq: number): string
  /** The event id of request `seq` as the hand-written receiver stores it. */
  receiverKey(seq: number): string
}

export interface PayloadSpec {
  /** Short name for the command line and the results file. */
  readonly id: string
  readonly title: string
  readonly provider: Provider
  /** Builds the payload for a server at host:port; `tag` (8 hex digits) makes its ids unique to the run. */
  prepare(target: Target, secrets: Secrets, tag: string): Promise<Payload>
}

export interface Target {
  readonly host: string
  readonly port: number
}

const bytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value))

/**
 * Splits `text` at the placeholders, which it contains in this order and nowhere else: the parts between
 * them, to be joined with each request's values (cheaper than serializing each request from scratch).
 */
function holes(text: string, ...placeholders: string[]): string[] {
  const parts: string[] = []
  let rest = text
  for (const placeholder of placeholders) {
    const at = rest.indexOf(placeholder)
    if (at < 0) throw new Error(`payloads: no ${placeholder} where expected`)
    parts.push(rest.slice(0, at))
    rest = rest.slice(at + placeholder.length)
  }
  if (placeholders.some((placeholder) => rest.includes(placeholder)))
    throw new Error('payloads: a placeholder occurs more often than expected')
  return [...parts, rest]
}

// ---------------------------------------------------------------------------------------------------
// GitHub: the signature covers the body only, so one body and one signature serve every request; the
// delivery id is a header.

const hookId = '292430182'

/** A delivery GUID whose first group is the run's tag and whose last is the sequence number. */
const deliveryId = (tag: string, seq: number) => `${tag}-0000-4000-8000-${seq.toString(16).padStart(12, '0')}`

async function githubPayload(
  target: Target,
  secrets: Secrets,
  tag: string,
  push: Record<string, unknown>,
): Promise<Payload> {
  const placeholder = '@@DELIVERY@@'
  const signed = await githubDelivery('push', push, { secret: secrets.github, delivery: placeholder })
  const body = Buffer.from(signed.body, 'utf8')
  // The headers GitHub sends with a push, in its order.
  const headers = {
    'User-Agent': 'GitHub-Hookshot/8b1f7e3',
    Accept: '*/*',
    'X-GitHub-Delivery': placeholder,
    'X-GitHub-Event': 'push',
    'X-GitHub-Hook-ID': hookId,
    'X-GitHub-Hook-Installation-Target-ID': '186853002',
    'X-GitHub-Hook-Installation-Target-Type': 'repository',
    'X-Hub-Signature': `sha1=${createHmac('sha1', secrets.github).update(body).digest('hex')}`,
    'X-Hub-Signature-256': signed.headers['x-hub-signature-256']!,
    'Content-Type': 'application/json',
  }
  const [before, after] = holes(
    requestHead({ ...target, path: '/webhooks/github', headers, bodyLength: body.length }),
    placeholder,
  ) as [string, string]
  return {
    provider: 'github',
    path: '/webhooks/github',
    bodyBytes: body.length,
    request: (seq) => ({ head: before + deliveryId(tag, seq) + after, body }),
    // The same delivery reaches every hook subscribed to the event, so the gateway keys on both.
    gatewayKey: (seq) => `${hookId}:${deliveryId(tag, seq)}`,
    receiverKey: (seq) => deliveryId(tag, seq),
  }
}

/** The first `push` example of @octokit/webhooks-examples: 6923 bytes as JSON.stringify writes it. */
export const githubPush: PayloadSpec = {
  id: 'github-push',
  title: 'GitHub push, the first @octokit/webhooks-examples push',
  provider: 'github',
  prepare: async (target, secrets, tag) => githubPayload(target, secrets, tag, await githubExample('push')),
}

/** The example cut down to fit 1 KB: the repository and sender by name only, the committer (the author) left out. */
function slimPush(example: Record<string, any>): Record<string, any> {
  const { repository, sender, head_commit } = example
  const { committer: _committer, ...commit } = head_commit
  return {
    ...structuredClone(example),
    head_commit: structuredClone(commit),
    repository: {
      id: repository.id,
      name: repository.name,
      full_name: repository.full_name,
      owner: { login: repository.owner.login },
    },
    sender: { login: sender.login, id: sender.id },
  }
}

/**
 * A push of exactly `size` bytes: the slimmed example below the example's size, otherwise the example
 * with more commits (up to the 20 GitHub lists), then more files added by the head commit, and the
 * head commit's message padded to the last byte. Sizes are counted as the body's UTF-8 bytes.
 */
export function pushOfSize(example: Record<string, any>, size: number): Record<string, any> {
  const push = size < bytes(example) ? slimPush(example) : structuredClone(example)
  const head = push.head_commit as Record<string, any> & { added: string[]; message: string }
  // Room left for the message padding, so the last step can land exactly on `size`.
  const slack = 64
  let total = bytes(push)
  const commits = push.commits as unknown[]
  while (commits.length < 20) {
    const n = commits.length + 1
    const commit = {
      ...structuredClone(head),
      id: createHmac('sha1', 'commit').update(String(n)).digest('hex'),
      message: `Commit ${n} of the push`,
      added: [`docs/change-${n}.md`],
    }
    const added = bytes(commit) + (commits.length > 0 ? 1 : 0)
    if (total + added > size - slack) break
    commits.push(commit)
    total += added
  }
  for (let n = 1; ; n++) {
    const file = `src/generated/module-${Math.ceil(n / 100)}/file-${n}.ts`
    const added = bytes(file) + (head.added.length > 0 ? 1 : 0)
    if (total + added > size - slack) break
    head.added.push(file)
    total += added
  }
  total = bytes(push)
  const filler = ' Lorem ipsum dolor sit amet, consectetur adipiscing elit.'
  let pad = ''
  while (pad.length < size - total) pad += filler
  head.message += pad.slice(0, size - total)
  if (bytes(push) !== size) throw new Error(`payloads: push of ${bytes(push)} bytes, not ${size}`)
  return push
}

export const githubPushOfSize = (size: number): PayloadSpec => ({
  id: `github-push-${size / 1024}k`,
  title: `GitHub push padded to ${size / 1024} KB`,
  provider: 'github',
  prepare: async (target, secrets, tag) =>
    githubPayload(target, secrets, tag, pushOfSize(await githubExample('push'), size)),
})

// ---------------------------------------------------------------------------------------------------
// Stripe: the event id is inside the signed body, so each request is signed (with Stripe's SDK).

/** A payment_intent.succeeded shaped like Stripe's (API 2025-03-31), about 1.5 KB as an event. */
function paymentIntent(created: number): Record<string, unknown> {
  const id = `pi_3${randomBytes(12).toString('hex')}`
  return {
    id,
    object: 'payment_intent',
    amount: 4900,
    amount_capturable: 0,
    amount_details: { tip: {} },
    amount_received: 4900,
    application: null,
    application_fee_amount: null,
    automatic_payment_methods: { allow_redirects: 'always', enabled: true },
    canceled_at: null,
    cancellation_reason: null,
    capture_method: 'automatic_async',
    client_secret: `${id}_secret_${randomBytes(12).toString('hex')}`,
    confirmation_method: 'automatic',
    created,
    currency: 'usd',
    customer: `cus_${randomBytes(7).toString('hex')}`,
    description: 'Order from the bench shop',
    last_payment_error: null,
    latest_charge: `ch_3${randomBytes(12).toString('hex')}`,
    livemode: false,
    metadata: { order_id: 'order_1042', cart: 'bench' },
    next_action: null,
    on_behalf_of: null,
    payment_method: `pm_1${randomBytes(12).toString('hex')}`,
    payment_method_options: {
      card: { installments: null, mandate_options: null, network: null, request_three_d_secure: 'automatic' },
      link: { persistent_token: null },
    },
    payment_method_types: ['card', 'link'],
    processing: null,
    receipt_email: 'jenny.rosen@example.com',
    review: null,
    setup_future_usage: null,
    shipping: null,
    source: null,
    statement_descriptor: null,
    statement_descriptor_suffix: null,
    status: 'succeeded',
    transfer_data: null,
    transfer_group: null,
  }
}

// Stripe's own delivery headers besides Content-Type and Stripe-Signature.
const stripeHeaders = {
  'User-Agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
  Accept: '*/*; q=0.5, application/xml',
  'Cache-Control': 'no-cache',
}

/** Stripe's scheme, `t=<time>,v1=<HMAC-SHA256 of "<time>.<body>">`, checked against its SDK in prepare. */
const stripeSignature = (secret: string, timestamp: number, payload: string) =>
  `t=${timestamp},v1=${createHmac('sha256', secret).update(`${timestamp}.${payload}`).digest('hex')}`

export const stripePaymentIntent: PayloadSpec = {
  id: 'stripe',
  title: 'Stripe payment_intent.succeeded event',
  provider: 'stripe',
  async prepare(target, secrets, tag) {
    const path = '/webhooks/stripe'
    const created = Math.floor(Date.now() / 1000)
    // evt_ and 24 characters, as Stripe's are; all of one length, so the body's length is fixed.
    const eventId = (seq: number) => `evt_1${tag}${seq.toString(36).padStart(15, '0')}`
    const [before, after] = holes(
      JSON.stringify(stripeEvent('payment_intent.succeeded', paymentIntent(created), eventId(0))),
      eventId(0),
    ) as [string, string]
    const bodyLength = Buffer.byteLength(before + eventId(0) + after)
    const headers = {
      ...stripeHeaders,
      'Content-Type': 'application/json; charset=utf-8',
      'Stripe-Signature': '@@SIGNATURE@@',
    }
    const [head0, head1] = holes(requestHead({ ...target, path, headers, bodyLength }), '@@SIGNATURE@@')
    // The SDK's signing costs the generator about 50 us a request; the same HMAC by hand, about 5.
    const sdk = stripeDelivery({}, { secret: secrets.stripe, payload: before + after, timestamp: created })
    if (sdk.headers['stripe-signature'] !== stripeSignature(secrets.stripe, created, before + after))
      throw new Error('payloads: the Stripe signature differs from the SDK')
    return {
      provider: 'stripe',
      path,
      bodyBytes: bodyLength,
      request: (seq) => {
        const payload = before + eventId(seq) + after
        const signature = stripeSignature(secrets.stripe, Math.floor(Date.now() / 1000), payload)
        return { head: head0 + signature + head1, body: Buffer.from(payload, 'utf8') }
      },
      gatewayKey: eventId,
      receiverKey: eventId,
    }
  },
}

// ---------------------------------------------------------------------------------------------------
// Twilio: the signature covers the URL and every form field, MessageSid included, so each request is
// signed, over the URL the gateway rebuilds when PUBLIC_BASE_URL is unset.

export const twilioStatusCallback: PayloadSpec = {
  id: 'twilio',
  title: 'Twilio SMS status callback (form post)',
  provider: 'twilio',
  async prepare(target, secrets, tag) {
    const path = '/webhooks/twilio'
    const url = `http://${target.host}:${target.port}${path}`
    const placeholder = 'SMPLACEHOLDER'
    const params = twilioMessageStatus(placeholder, 'delivered', {
      MessagingServiceSid: 'MG9752274e9e519418a7406176694466fa',
      RawDlrDoneDate: '2511221518',
    })
    // Twilio signs the URL followed by each field's name and value, sorted by name: with the message SID
    // in two fields (MessageSid, SmsSid), the signed text and the body are templates with two holes.
    const signedText =
      url +
      Object.keys(params)
        .sort()
        .map((name) => name + String(params[name]))
        .join('')
    const signedParts = holes(signedText, placeholder, placeholder)
    const bodyParts = holes(
      twilioDelivery(params, { authToken: secrets.twilio, url }).body,
      placeholder,
      placeholder,
    )
    const fill = (parts: readonly string[], sid: string) => parts.join(sid)
    const messageSid = (seq: number) => `SM${tag}${seq.toString(16).padStart(24, '0')}`
    const signature = (sid: string) =>
      createHmac('sha1', secrets.twilio).update(fill(signedParts, sid), 'utf8').digest('base64')
    // The SDK's signing and form encoding cost the generator about 20 us a request; checked equal here.
    const first = twilioDelivery(
      { ...params, MessageSid: messageSid(0), SmsSid: messageSid(0) },
      {
        authToken: secrets.twilio,
        url,
      },
    )
    if (
      first.headers['x-twilio-signature'] !== signature(messageSid(0)) ||
      first.body !== fill(bodyParts, messageSid(0))
    )
      throw new Error('payloads: the Twilio signature or form differs from the SDK')
    // The headers Twilio sends with a status callback.
    const headers = {
      'Content-Type': 'application/x-www-form-urlencoded',
      'X-Twilio-Signature': '@@SIGNATURE@@',
      'I-Twilio-Idempotency-Token': '@@TOKEN@@',
      'X-Home-Region': 'us1',
      'User-Agent': 'TwilioProxy/1.1',
      Accept: '*/*',
      'Cache-Control': 'max-age=259200',
    }
    // Every SID has one length, so the body's length is fixed.
    const bodyLength = Buffer.byteLength(fill(bodyParts, messageSid(0)))
    const [head0, head1, head2] = holes(
      requestHead({ ...target, path, headers, bodyLength }),
      '@@SIGNATURE@@',
      '@@TOKEN@@',
    )
    const request = (seq: number): WireRequest => {
      const sid = messageSid(seq)
      return {
        head: head0 + signature(sid) + head1 + `${tag}-${seq}` + head2,
        body: Buffer.from(fill(bodyParts, sid), 'utf8'),
      }
    }
    return {
      provider: 'twilio',
      path,
      bodyBytes: request(0).body.length,
      request,
      // Twilio sends no event id: a callback is its message plus its status.
      gatewayKey: (seq) => `${messageSid(seq)}:delivered`,
      receiverKey: (seq) => `${messageSid(seq)}:delivered`,
    }
  },
}
