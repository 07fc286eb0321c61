import { mkdirSync } from 'node:fs'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { csrfToken } from '../../src/admin/dashboard/session.ts'
import { useTestDatabase, waitFor, type Capture, type TestGateway } from '../support/services.ts'
import { githubDelivery, githubExample, paymentIntentSucceeded, stripeDelivery } from '../support/signed.ts'

// The page in a real browser: Debian's chromium, headless. The test fails, never skips, without one.
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const artifacts = new URL('../artifacts/dashboard/', import.meta.url).pathname
const stripeSecret = 'whsec_dashboard'
const githubSecret = 'gh-dashboard'
const adminToken = 'dashboard-admin-token'

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

const shot = (name: string) => page.screenshot({ path: `${artifacts}${name}.png`, fullPage: true })

describe('the dashboard in a browser', () => {
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
    await expect(page.textContent('main')).resolves.toContain('"payment_id":"pi_dashboard"')
    await expect(page.textContent('main')).resolves.toContain('stripe-signature')
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
})
