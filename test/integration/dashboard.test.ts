import { randomUUID } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { csrfToken, newSession } from '../../src/admin/dashboard/session.ts'
import { useTestDatabase, waitFor, type Capture, type TestGateway } from '../support/services.ts'
import { githubDelivery, githubExample, paymentIntentSucceeded, stripeDelivery } from '../support/signed.ts'
import {
  shopifyDelivery,
  shopifyOrder,
  twilioDelivery,
  twilioMessageStatus,
} from '../support/signed-providers.ts'

// The page in a real browser: Debian's chromium, headless. The test fails, never skips, without one.
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const artifacts = new URL('../artifacts/dashboard/', import.meta.url).pathname
const stripeSecret = 'whsec_dashboard'
const githubSecret = 'gh-dashboard'
const adminToken = 'dashboard-admin-token'
const twilioToken = 'twilio-dashboard'
const shopifySecret = 'shopify-dashboard'
// Twilio signs the public URL it calls; the test reaches the gateway on 127.0.0.1, as a proxy would.
const publicBase = 'https://hooks.example.com'

const db = useTestDatabase()
let gw: TestGateway
let events: Capture
let browser: Browser
let page: Page

beforeAll(async () => {
  mkdirSync(artifacts, { recursive: true })
  gw = await db.startGateway({
    STRIPE_WEBHOOK_SECRET: stripeSecret,
    GITHUB_WEBHOOK_SECRET: githubSecret,
    ADMIN_TOKEN: adminToken,
    PUBLIC_BASE_URL: publicBase,
    TWILIO_AUTH_TOKEN: twilioToken,
    SHOPIFY_WEBHOOK_SECRET: shopifySecret,
  })
  events = await db.captureEvents(gw.config)
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update'],
  })
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
}, 60_000)

afterAll(async () => {
  await browser?.close()
})

const shot = (name: string, on: Page = page) =>
  on.screenshot({ path: `${artifacts}${name}.png`, fullPage: true })

/** Posts a delivery and returns the id the gateway stored it under. */
async function accept(provider: string, body: string | Buffer, headers: Record<string, string>) {
  const response = await gw.post(`/webhooks/${provider}`, body, headers)
  expect(response.status).toBe(200)
  return ((await response.json()) as { id: string }).id
}

/**
 * A webhook row written as the store holds it: no provider stores a body that is neither JSON nor a form (each
 * parses at intake), yet the page must show whatever bytes the table holds. Dead, so no worker claims it.
 */
async function storeDirectly(body: Buffer, contentType: string): Promise<string> {
  const id = randomUUID()
  await db.sql`
    INSERT INTO webhooks (id, provider, event_key, event_type, method, path, public_url, headers, body,
      received_at, status)
    VALUES (${id}, 'shopify', ${id}, 'orders/create', 'POST', '/webhooks/shopify',
      ${`${publicBase}/webhooks/shopify`}, ${db.sql.json({ 'content-type': contentType })}, ${body}, now(), 'dead')`
  return id
}

/** The reading view and the exact block of the body on a webhook's page. */
const reading = (block: string) => page.locator(`.bytes:has(#${block}) pre.reading`)
const exact = (block: string) => page.textContent(`#${block}`)

/** Clicks a block's copy button and reads back what it put on the clipboard. */
async function copied(block: string): Promise<string> {
  await page.click(`button[data-copy="${block}"]`)
  await expect.poll(() => page.textContent(`button[data-copy="${block}"]`)).toBe('copied')
  // A string: the test's types have no DOM.
  return page.evaluate<string>('navigator.clipboard.readText()')
}

describe('the dashboard in a browser', () => {
  it('shows a newcomer an empty overview with the command that sends a first webhook', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    try {
      await context.addCookies([
        { name: 'gw_session', value: newSession(adminToken), domain: '127.0.0.1', path: '/admin' },
      ])
      const newcomer = await context.newPage()
      await newcomer.goto(`${gw.url}/admin`)
      await expect(newcomer.textContent('#no-webhook')).resolves.toContain('No webhook received yet')
      await expect(newcomer.textContent('#no-webhook code')).resolves.toBe(
        'npm run send -- stripe payment_intent.succeeded',
      )
      await expect(newcomer.locator('main table').count()).resolves.toBe(0)
      await shot('0-empty-overview', newcomer)
    } finally {
      await context.close()
    }
  })

  it('signs in, lists, filters, opens a webhook, replays it, and the event is published again', async () => {
    // Both deliveries built first and sent back to back: a keep-alive connection left idle while the examples
    // load can be closed by the server just as it is reused.
    const push = await githubDelivery('push', await githubExample('push'), { secret: githubSecret })
    const payment = paymentIntentSucceeded({ id: 'pi_dashboard', amount: 4200, currency: 'eur' })
    const stripe = stripeDelivery(payment, { secret: stripeSecret })
    const accepted = (await (await gw.post('/webhooks/stripe', stripe.body, stripe.headers)).json()) as {
      id: string
    }
    await gw.post('/webhooks/github', push.body, push.headers)
    const first = await events.waitFor((messages) =>
      messages.some((m) => m.event.webhookid === accepted.id && m.event.type === 'payment.completed'),
    )
    const eventId = first.find(
      (m) => m.event.webhookid === accepted.id && m.event.type === 'payment.completed',
    )!.event.id

    // Not signed in: the page asks for the token, and a wrong one is refused.
    await page.goto(`${gw.url}/admin`)
    expect(page.url()).toBe(`${gw.url}/admin/signin`)
    await page.fill('input[name=token]', 'not-the-token')
    await page.click('button[type=submit]')
    await expect(page.textContent('.error')).resolves.toContain('not the admin token')
    await page.goto(`${gw.url}/admin/signin`)
    await page.fill('input[name=token]', adminToken)
    await page.click('button[type=submit]')
    await page.waitForURL(`${gw.url}/admin`)
    const cookie = (await page.context().cookies()).find((candidate) => candidate.name === 'gw_session')
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/admin' })
    await expect(page.locator('svg[aria-label^="Webhooks received"] polyline').count()).resolves.toBe(2)
    // The webhooks just sent are listed on the landing page, each linking to its own page.
    await expect(page.locator('#no-webhook').count()).resolves.toBe(0)
    await expect(page.locator('main tbody tr').count()).resolves.toBe(2)
    const stripeRow = page.locator('main tbody tr', {
      has: page.locator(`a[href="/admin/ui/webhooks/${accepted.id}"]`),
    })
    await expect(stripeRow.textContent()).resolves.toContain('payment_intent.succeeded')
    await expect(page.textContent('main tbody')).resolves.toContain('push')
    await expect(page.locator('main a[href="/admin/ui/webhooks"]').textContent()).resolves.toContain(
      'All webhooks',
    )
    await shot('1-overview')

    await page.click('header >> text=Webhooks')
    await page.waitForURL(/\/admin\/ui\/webhooks$/)
    await expect(page.locator('tbody tr').count()).resolves.toBe(2)
    await shot('2-webhooks')

    await page.selectOption('select[name=provider]', 'stripe')
    await page.click('form.filters button[type=submit]')
    await page.waitForURL(/provider=stripe/)
    await expect(page.locator('tbody tr').count()).resolves.toBe(1)
    await shot('3-filtered')

    await page.click('tbody tr a')
    await page.waitForURL(`${gw.url}/admin/ui/webhooks/${accepted.id}`)
    await expect(page.textContent('h1')).resolves.toContain('payment_intent.succeeded')
    await expect(page.textContent('main')).resolves.toContain('stripe-signature')
    // The body indented for reading, and in its block the exact bytes as received, which the button copies.
    await expect(reading('body-exact').textContent()).resolves.toMatch(/^ {2}"id": "evt_/m)
    await expect(reading('body-exact').textContent()).resolves.toMatch(/^ {6}"id": "pi_dashboard",$/m)
    await expect(exact('body-exact')).resolves.toBe(stripe.body)
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: gw.url })
    await expect(copied('body-exact')).resolves.toBe(stripe.body)
    // Each CloudEvent too: indented, and exactly as published.
    await expect(page.locator('pre.reading').allTextContents()).resolves.toContainEqual(
      expect.stringMatching(/^ {4}"payment_id": "pi_dashboard",$/m),
    )
    await expect(page.locator('details pre[id^=event-]').allTextContents()).resolves.toContainEqual(
      expect.stringContaining('"payment_id":"pi_dashboard"'),
    )
    await shot('4-detail')

    const before = events.messages.filter((m) => m.event.id === eventId).length
    await page.click('button:has-text("Replay")')
    await expect(page.textContent('.notice')).resolves.toContain('Queued for publishing again')
    await events.waitFor((messages) => messages.filter((m) => m.event.id === eventId).length > before)
    await page.reload()
    await expect(page.textContent('h1')).resolves.toContain('published')
    await shot('5-replayed')
  })

  it('shows the rejection log and the dead letters', async () => {
    const forged = stripeDelivery(paymentIntentSucceeded(), { secret: 'whsec_forger' })
    expect((await gw.post('/webhooks/stripe', forged.body, forged.headers)).status).toBe(401)
    await waitFor(async () => {
      await page.goto(`${gw.url}/admin/ui/rejections?provider=stripe`)
      return (await page.locator('tbody tr').count()) >= 1
    })
    await expect(page.textContent('tbody')).resolves.toContain('invalid_signature')
    await expect(page.textContent('tbody')).resolves.not.toContain(forged.headers['stripe-signature']!)
    await shot('6-rejections')

    await page.click('header >> text=Dead letters')
    await page.waitForURL(/status=dead/)
    await expect(page.textContent('h1')).resolves.toBe('Dead letters')
  })

  it('shows destinations with their state, and enables a disabled one', async () => {
    const created = await fetch(`${gw.url}/admin/destinations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        url: 'https://billing.example.com/hooks',
        events: ['payment.*'],
        enabled: false,
      }),
    })
    expect(created.status).toBe(201)
    await page.click('header >> text=Destinations')
    await page.waitForURL(/\/admin\/ui\/destinations$/)
    await expect(page.textContent('tbody')).resolves.toContain('https://billing.example.com/hooks')
    await expect(page.textContent('tbody')).resolves.toContain('disabled by an operator')
    await page.click('button:has-text("Enable")')
    await expect(page.textContent('.notice')).resolves.toContain('Destination enabled')
    await expect(page.locator('tbody .status.enabled').count()).resolves.toBe(1)
    await shot('7-destinations')
  })

  it('refuses a form posted without the session CSRF token', async () => {
    const cookies = await page.context().cookies()
    const session = cookies.find((candidate) => candidate.name === 'gw_session')!
    const response = await fetch(`${gw.url}/admin/ui/replay`, {
      method: 'POST',
      headers: {
        cookie: `gw_session=${session.value}`,
        origin: gw.url,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'status=dead',
    })
    expect(response.status).toBe(403)

    // With the token, a filter that cannot be read replays nothing (never everything the rest matches).
    const before = events.messages.length
    const refused = await fetch(`${gw.url}/admin/ui/replay`, {
      method: 'POST',
      redirect: 'manual',
      headers: {
        cookie: `gw_session=${session.value}`,
        origin: gw.url,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({
        _csrf: csrfToken(adminToken, session.value),
        since: 'yesterday-ish',
      }).toString(),
    })
    expect(refused.status).toBe(303)
    expect(decodeURIComponent(refused.headers.get('location') ?? '')).toMatch(/Nothing replayed/)
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(events.messages.length).toBe(before)
  })

  it('shows a form-encoded Twilio body as its decoded fields, and the exact form as received', async () => {
    const url = `${publicBase}/webhooks/twilio`
    const params = twilioMessageStatus('SM0dashboard', 'received', {
      Body: 'Hello & <b>world</b>\nsecond line',
    })
    const delivery = twilioDelivery(params, { authToken: twilioToken, url })
    const id = await accept('twilio', delivery.body, delivery.headers)
    await page.goto(`${gw.url}/admin/ui/webhooks/${id}`)
    await expect(reading('body-exact').textContent()).resolves.toContain(
      '\n  "Body": "Hello & <b>world</b>\\nsecond line"\n}',
    )
    await expect(reading('body-exact').textContent()).resolves.toContain(
      '\n  "MessageSid": "SM0dashboard",\n',
    )
    await expect(page.locator('main pre b').count()).resolves.toBe(0)
    await expect(exact('body-exact')).resolves.toBe(delivery.body)
    await shot('8-form-detail')
  })

  it('shows a stored body that is not JSON as text, and one that is not UTF-8 as base64', async () => {
    const text = '<not json> & "quoted"\r\nsecond line'
    const textId = await storeDirectly(Buffer.from(text), 'text/plain')
    await page.goto(`${gw.url}/admin/ui/webhooks/${textId}`)
    await expect(page.textContent('.bytes:has(#body-exact) p')).resolves.toContain('Not JSON')
    await expect(reading('body-exact').count()).resolves.toBe(0)
    await expect(page.locator('details:has(#body-exact)').getAttribute('open')).resolves.not.toBeNull()
    // HTML turns CR LF into LF; the copy still gives the bytes as received.
    await expect(exact('body-exact')).resolves.toBe(text.replace('\r\n', '\n'))
    await expect(copied('body-exact')).resolves.toBe(text)
    await shot('9-text-detail')

    const bytes = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x3c, 0x26, 0x80, 0x0d, 0x0a])
    const binaryId = await storeDirectly(bytes, 'application/octet-stream')
    const response = await page.goto(`${gw.url}/admin/ui/webhooks/${binaryId}`)
    expect(response?.status()).toBe(200)
    await expect(page.textContent('.bytes:has(#body-exact) p')).resolves.toContain('Not UTF-8 text')
    await expect(exact('body-exact')).resolves.toBe(bytes.toString('base64'))
    await expect(copied('body-exact')).resolves.toBe(bytes.toString('base64'))
    await shot('9-binary-detail')
  })

  it('lists the newest 10 webhooks on the overview, newest first', async () => {
    for (let order = 1; order <= 6; order++) {
      const delivery = shopifyDelivery('orders/create', shopifyOrder(5_600_000_000_000 + order), {
        secret: shopifySecret,
      })
      await accept('shopify', delivery.body, delivery.headers)
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    const last = shopifyDelivery('orders/paid', shopifyOrder(5_600_000_000_100), { secret: shopifySecret })
    const lastId = await accept('shopify', last.body, last.headers)
    await page.goto(`${gw.url}/admin`)
    await expect(page.locator('main tbody tr').count()).resolves.toBe(10)
    await expect(
      page.locator('main tbody tr').first().locator(`a[href="/admin/ui/webhooks/${lastId}"]`).count(),
    ).resolves.toBe(1)
    await expect(page.textContent('main tbody')).resolves.not.toContain('payment_intent.succeeded')
    await shot('10-overview-full')
  })
})
