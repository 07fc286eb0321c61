import type { Hono } from 'hono'
import { RatesChart } from './chart.tsx'
import { page, type Guards } from './kit.tsx'
import { Layout } from './layout.tsx'
import type { DashboardDeps } from './routes.tsx'
import { WebhookTable } from './webhooks.tsx'

/** Webhooks the landing page lists: enough to see the one just sent without a click. */
const latestCount = 10

/** What to run to send a first webhook, with a provider this gateway has a secret for. */
function firstSendCommand(enabledProviders: readonly string[]): string {
  if (enabledProviders.includes('stripe')) return 'npm run send -- stripe payment_intent.succeeded'
  return `npm run send -- ${enabledProviders[0] ?? '<provider>'} <event>`
}

/** The landing page: what waits to be published, the latest webhooks, and the last hour's rates. */
export function overviewPage(dash: Hono, { view }: Guards, deps: DashboardDeps): void {
  const { store } = deps
  dash.get(
    '/',
    view(async (c, csrfValue) => {
      const [counts, latest, rates] = await Promise.all([
        store.countUnpublished(),
        store.list({ limit: latestCount }),
        store.ratesLastHour(),
      ])
      return page(
        c,
        <Layout title="Overview" signedIn csrf={csrfValue}>
          <h1>Overview</h1>
          <div class="cards">
            {(['pending', 'retrying', 'dead'] as const).map((status) => (
              <a class="card" href={`/admin/ui/webhooks?status=${status}`}>
                <b>{counts[status]}</b>
                {status}
              </a>
            ))}
          </div>
          <h2>Latest webhooks</h2>
          {latest.length === 0 ? (
            <div class="notice" id="no-webhook">
              No webhook received yet. Send a signed test one with{' '}
              <code>{firstSendCommand(deps.enabledProviders)}</code> (<code>npm run send -- --help</code>{' '}
              lists the events offered); it shows up here.
            </div>
          ) : (
            <>
              <WebhookTable webhooks={latest} />
              <p>
                <a href="/admin/ui/webhooks">All webhooks →</a>
              </p>
            </>
          )}
          <h2>Webhooks received per minute, last hour</h2>
          <RatesChart rates={rates} />
          <p class="muted">Providers enabled: {deps.enabledProviders.join(', ') || 'none'}.</p>
        </Layout>,
      )
    }),
  )
}
