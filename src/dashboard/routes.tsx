import { Hono, type Context } from 'hono'
import { deleteCookie, getCookie, setCookie } from 'hono/cookie'
import { csrf } from 'hono/csrf'
import type { Providers } from '../../providers/index.ts'
import { isUuid, parseWebhookFilter } from '../admin.ts'
import { safeEqual } from '../crypto.ts'
import type { DestinationStore } from '../destinations/store.ts'
import { eventsFor, serializeEvent } from '../events.ts'
import type { RejectionLog } from '../rejections.ts'
import type { Store, WebhookCursor, WebhookStatus } from '../store.ts'
import { RatesChart } from './chart.tsx'
import { Layout, PostButton, Status, time } from './layout.tsx'
import { csrfToken, newSession, sessionCookie, sessionSeconds, validCsrf, validSession } from './session.ts'

export interface DashboardDeps {
  readonly token: string
  readonly store: Pick<Store, 'get' | 'list' | 'replay' | 'ratesLastHour' | 'countUnpublished'>
  readonly destinations: Pick<DestinationStore, 'list' | 'get' | 'update' | 'retry' | 'listDeliveries'>
  readonly rejections: Pick<RejectionLog, 'list'>
  readonly providers: Providers
  /** The providers with a secret configured. */
  readonly enabledProviders: readonly string[]
  /** Called when a replay or a retry was asked for, to wake this process's worker and sender. */
  readonly onReplay?: (() => void) | undefined
}

const statuses: readonly WebhookStatus[] = ['pending', 'retrying', 'published', 'dead']
const pageSize = 50

/** An HTML page: the doctype, then the rendered element (standards mode, not quirks). */
const page = (c: Context, element: unknown, status: 200 | 401 | 403 | 404 = 200) =>
  c.html(`<!DOCTYPE html>${String(element)}`, status)

/** `before` in a page's query: `<ISO time>_<id>` of the last row of the page before. */
function cursorOf(value: string | undefined): WebhookCursor | undefined {
  const [at, id] = (value ?? '').split('_')
  const receivedAt = at ? new Date(at) : undefined
  return receivedAt && !Number.isNaN(receivedAt.getTime()) && id && isUuid(id)
    ? { receivedAt, id }
    : undefined
}

const queryString = (fields: Record<string, string | number | Date | undefined>) => {
  const params = new URLSearchParams()
  for (const [name, value] of Object.entries(fields))
    if (value !== undefined) params.set(name, value instanceof Date ? value.toISOString() : String(value))
  return params.toString()
}

/**
 * The dashboard at /admin: server-rendered (hono/jsx), readable without JavaScript, behind ADMIN_TOKEN. A
 * sign-in form sets an HttpOnly, SameSite=Strict session cookie; every POST carries the session's CSRF
 * token and must come from this origin.
 */
export function dashboardRoutes(deps: DashboardDeps): Hono {
  const { token, store, destinations } = deps
  const dash = new Hono()

  /** The signed-in session's CSRF token, or undefined when not signed in. */
  const session = (c: Context) => {
    const value = getCookie(c, sessionCookie)
    return value && validSession(token, value) ? csrfToken(token, value) : undefined
  }
  const signIn = (c: Context) => c.redirect('/admin/signin', 303)
  const back = (c: Context, to: string, notice: string) =>
    c.redirect(`${to}${to.includes('?') ? '&' : '?'}notice=${encodeURIComponent(notice)}`, 303)

  /** A page for signed-in users: the handler gets the session's CSRF token; others go to the sign-in form. */
  const view = (handler: (c: Context, csrf: string) => Promise<Response>) => async (c: Context) => {
    const csrfValue = session(c)
    return csrfValue ? handler(c, csrfValue) : signIn(c)
  }
  const notFound = (c: Context, csrfValue: string, what: string) =>
    page(
      c,
      <Layout title="Not found" signedIn csrf={csrfValue}>
        <div class="error">No {what}.</div>
      </Layout>,
      404,
    )

  /** A POST of the dashboard: signed in, same origin, with the session's CSRF token; else 403. */
  const post =
    (handler: (c: Context, form: Record<string, string>) => Promise<Response>) => async (c: Context) => {
      const value = getCookie(c, sessionCookie)
      const form = Object.fromEntries(
        Object.entries(await c.req.parseBody()).filter(
          (entry): entry is [string, string] => typeof entry[1] === 'string',
        ),
      )
      if (!value || !validSession(token, value) || !validCsrf(token, value, form._csrf))
        return page(
          c,
          <Layout title="Forbidden">
            <div class="error">This form has expired or did not come from this page. Sign in again.</div>
            <a href="/admin/signin">Sign in</a>
          </Layout>,
          403,
        )
      return handler(c, form)
    }

  // Forms post from this origin only (the Origin header), on top of the token and the SameSite cookie.
  dash.use('/signout', csrf())
  dash.use('/ui/*', csrf())

  dash.get('/signin', (c) =>
    page(
      c,
      <Layout title="Sign in">
        <h1>Sign in</h1>
        <form method="post" action="/admin/signin">
          <p>
            <label>
              Admin token{' '}
              <input type="password" name="token" autocomplete="current-password" required autofocus />
            </label>
          </p>
          <button type="submit">Sign in</button>
        </form>
      </Layout>,
    ),
  )

  dash.post('/signin', csrf(), async (c) => {
    const form = await c.req.parseBody()
    const given = typeof form.token === 'string' ? form.token : undefined
    if (!safeEqual(given, token))
      return page(
        c,
        <Layout title="Sign in">
          <h1>Sign in</h1>
          <div class="error">That is not the admin token.</div>
          <a href="/admin/signin">Try again</a>
        </Layout>,
        401,
      )
    setCookie(c, sessionCookie, newSession(token), {
      httpOnly: true,
      sameSite: 'Strict',
      path: '/admin',
      maxAge: sessionSeconds,
      secure: new URL(c.req.url).protocol === 'https:',
    })
    return c.redirect('/admin', 303)
  })

  dash.post(
    '/signout',
    post(async (c) => {
      deleteCookie(c, sessionCookie, { path: '/admin' })
      return c.redirect('/admin/signin', 303)
    }),
  )

  dash.get(
    '/',
    view(async (c, csrfValue) => {
      const [counts, rates] = await Promise.all([store.countUnpublished(), store.ratesLastHour()])
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
          <h2>Webhooks received per minute, last hour</h2>
          <RatesChart rates={rates} />
          <p class="muted">Providers enabled: {deps.enabledProviders.join(', ') || 'none'}.</p>
        </Layout>,
      )
    }),
  )

  dash.get(
    '/ui/webhooks',
    view(async (c, csrfValue) => {
      const query = c.req.query()
      const parsed = parseWebhookFilter(query)
      const filter = 'filter' in parsed ? parsed.filter : {}
      const rows =
        'filter' in parsed ? await store.list({ ...filter, limit: pageSize + 1 }, cursorOf(query.before)) : []
      const shown = rows.slice(0, pageSize)
      const last = shown[shown.length - 1]
      const next =
        rows.length > pageSize && last
          ? `/admin/ui/webhooks?${queryString({ ...filter, before: `${last.receivedAt.toISOString()}_${last.id}` })}`
          : undefined
      const filterFields = Object.fromEntries(
        Object.entries(filter)
          .filter(([, value]) => value !== undefined)
          .map(([name, value]) => [name, value instanceof Date ? value.toISOString() : String(value)]),
      )
      return page(
        c,
        <Layout title="Webhooks" signedIn csrf={csrfValue}>
          <h1>{filter.status === 'dead' ? 'Dead letters' : 'Webhooks'}</h1>
          {query.notice ? <div class="notice">{query.notice}</div> : null}
          {'error' in parsed ? <div class="error">This filter cannot be read: {parsed.error}</div> : null}
          <form class="filters" method="get" action="/admin/ui/webhooks">
            <label>
              provider
              <select name="provider">
                <option value="">any</option>
                {deps.enabledProviders.map((name) => (
                  <option value={name} selected={filter.provider === name}>
                    {name}
                  </option>
                ))}
              </select>
            </label>
            <label>
              status
              <select name="status">
                <option value="">any</option>
                {statuses.map((status) => (
                  <option value={status} selected={filter.status === status}>
                    {status}
                  </option>
                ))}
              </select>
            </label>
            <label>
              type <input name="type" value={filter.type ?? ''} placeholder="payment_intent.succeeded" />
            </label>
            <label>
              event id <input name="key" value={filter.key ?? ''} placeholder="evt_…" />
            </label>
            <label>
              since <input name="since" value={query.since ?? ''} placeholder="2026-11-23T10:00:00Z" />
            </label>
            <label>
              until <input name="until" value={query.until ?? ''} placeholder="2026-11-23T11:00:00Z" />
            </label>
            <button type="submit">Filter</button>
          </form>
          <table>
            <thead>
              <tr>
                <th>received</th>
                <th>provider</th>
                <th>type</th>
                <th>event id</th>
                <th>status</th>
                <th>attempts</th>
                <th>last error</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((webhook) => (
                <tr>
                  <td>
                    <a href={`/admin/ui/webhooks/${webhook.id}`}>{time(webhook.receivedAt)}</a>
                  </td>
                  <td>{webhook.provider}</td>
                  <td>{webhook.eventType}</td>
                  <td>
                    <code>{webhook.eventKey}</code>
                  </td>
                  <td>
                    <Status value={webhook.status} />
                  </td>
                  <td>{webhook.attempts}</td>
                  <td>{webhook.lastError ?? ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {shown.length === 0 ? <p class="muted">No webhook matches.</p> : null}
          <p>
            {next ? <a href={next}>Older →</a> : null}{' '}
            {shown.length > 0 ? (
              <PostButton
                action="/admin/ui/replay"
                csrf={csrfValue}
                label="Replay every webhook matching this filter"
                fields={filterFields}
              />
            ) : null}
          </p>
        </Layout>,
      )
    }),
  )

  dash.get(
    '/ui/webhooks/:id',
    view(async (c, csrfValue) => {
      const id = c.req.param('id') ?? ''
      const webhook = isUuid(id) ? await store.get(id) : undefined
      if (!webhook) return notFound(c, csrfValue, `webhook ${id}`)
      const provider = deps.providers[webhook.provider]
      let events: { routingKey: string; json: string }[] = []
      let mappingError: string | undefined
      try {
        events = provider
          ? eventsFor(webhook, provider).map((event) => ({
              routingKey: event.type,
              // Exactly the bytes published: re-formatting would round ids beyond 2^53.
              json: serializeEvent(event).toString('utf8'),
            }))
          : []
      } catch (error) {
        mappingError = error instanceof Error ? error.message : String(error)
      }
      const deliveries = await destinations.listDeliveries({ webhookId: webhook.id, limit: 100 })
      return page(
        c,
        <Layout title={`Webhook ${webhook.eventKey}`} signedIn csrf={csrfValue}>
          <h1>
            {webhook.provider} {webhook.eventType} <Status value={webhook.status} />
          </h1>
          {c.req.query('notice') ? <div class="notice">{c.req.query('notice')}</div> : null}
          <table>
            <tbody>
              <tr>
                <th>id</th>
                <td>
                  <code>{webhook.id}</code>
                </td>
              </tr>
              <tr>
                <th>event id</th>
                <td>
                  <code>{webhook.eventKey}</code>
                </td>
              </tr>
              <tr>
                <th>received</th>
                <td>{time(webhook.receivedAt)}</td>
              </tr>
              <tr>
                <th>published</th>
                <td>{time(webhook.publishedAt)}</td>
              </tr>
              <tr>
                <th>attempts</th>
                <td>{webhook.attempts}</td>
              </tr>
              <tr>
                <th>last error</th>
                <td>{webhook.lastError ?? '-'}</td>
              </tr>
              <tr>
                <th>request</th>
                <td>
                  <code>
                    {webhook.method} {webhook.publicUrl}
                  </code>
                </td>
              </tr>
            </tbody>
          </table>
          <p>
            <PostButton action={`/admin/ui/webhooks/${webhook.id}/replay`} csrf={csrfValue} label="Replay" />
          </p>
          <h2>Headers as received</h2>
          <table>
            <tbody>
              {Object.entries(webhook.headers).map(([name, value]) => (
                <tr>
                  <th>
                    <code>{name}</code>
                  </th>
                  <td>
                    <code>{value}</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <h2>Body as received ({webhook.body.length} bytes)</h2>
          <pre>{webhook.body.toString('utf8')}</pre>
          <h2>CloudEvents</h2>
          {mappingError ? <div class="error">The handler fails on this webhook: {mappingError}</div> : null}
          <p class="muted">
            Published ids:{' '}
            {webhook.publishedEventIds.length > 0 ? webhook.publishedEventIds.join(', ') : 'none yet'}
          </p>
          {events.map((event) => (
            <>
              <p>
                routing key <code>{event.routingKey}</code>
              </p>
              <pre>{event.json}</pre>
            </>
          ))}
          <h2>Deliveries to destinations</h2>
          {deliveries.length === 0 ? (
            <p class="muted">None.</p>
          ) : (
            <table>
              <thead>
                <tr>
                  <th>destination</th>
                  <th>event</th>
                  <th>status</th>
                  <th>attempts</th>
                  <th>last answer</th>
                </tr>
              </thead>
              <tbody>
                {deliveries.map((delivery) => (
                  <tr>
                    <td>
                      <a href={`/admin/ui/destinations/${delivery.destinationId}`}>
                        {delivery.destinationId}
                      </a>
                    </td>
                    <td>{delivery.eventType}</td>
                    <td>
                      <Status value={delivery.status} />
                    </td>
                    <td>{delivery.attempts}</td>
                    <td>{delivery.lastStatusCode ?? delivery.lastError ?? '-'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Layout>,
      )
    }),
  )

  dash.post(
    '/ui/webhooks/:id/replay',
    post(async (c) => {
      const id = c.req.param('id') ?? ''
      const replayed = isUuid(id) ? await store.replay({ id }) : 0
      if (replayed > 0) deps.onReplay?.()
      return back(c, `/admin/ui/webhooks/${id}`, replayed > 0 ? 'Queued for publishing again.' : 'Not found.')
    }),
  )

  dash.post(
    '/ui/replay',
    post(async (c, form) => {
      const parsed = parseWebhookFilter(form)
      if ('error' in parsed) return back(c, '/admin/ui/webhooks', `Nothing replayed: ${parsed.error}`)
      const filter = parsed.filter
      const replayed = await store.replay(filter)
      if (replayed > 0) deps.onReplay?.()
      return back(
        c,
        `/admin/ui/webhooks?${queryString({ ...filter })}`,
        `${replayed} webhooks queued for publishing again.`,
      )
    }),
  )

  dash.get(
    '/ui/rejections',
    view(async (c, csrfValue) => {
      const provider = c.req.query('provider')
      const names = provider && deps.enabledProviders.includes(provider) ? [provider] : deps.enabledProviders
      const rejections = await deps.rejections.list(names, 200).catch(() => undefined)
      return page(
        c,
        <Layout title="Rejections" signedIn csrf={csrfValue}>
          <h1>Rejected requests</h1>
          <p class="muted">
            The last 200 per provider: why, from where, which secrets were tried. Header names only, never
            values or bodies.
          </p>
          <p>
            {['', ...deps.enabledProviders].map((name) => (
              <a style="margin-right:10px" href={`/admin/ui/rejections${name ? `?provider=${name}` : ''}`}>
                {name || 'all'}
              </a>
            ))}
          </p>
          {rejections === undefined ? (
            <div class="error">Redis, which keeps the rejection log, does not answer.</div>
          ) : null}
          <table>
            <thead>
              <tr>
                <th>time</th>
                <th>provider</th>
                <th>answer</th>
                <th>address</th>
                <th>why</th>
                <th>headers</th>
                <th>body</th>
              </tr>
            </thead>
            <tbody>
              {(rejections ?? []).map((entry) => (
                <tr>
                  <td>{time(entry.time)}</td>
                  <td>{entry.provider}</td>
                  <td>
                    {entry.status} {entry.outcome}
                  </td>
                  <td>{entry.address}</td>
                  <td>{entry.reasons.join('; ')}</td>
                  <td>
                    <code>{entry.headerNames.join(', ')}</code>
                  </td>
                  <td>{entry.bodyBytes ?? '-'} B</td>
                </tr>
              ))}
            </tbody>
          </table>
        </Layout>,
      )
    }),
  )

  dash.get(
    '/ui/destinations',
    view(async (c, csrfValue) => {
      const all = await destinations.list()
      return page(
        c,
        <Layout title="Destinations" signedIn csrf={csrfValue}>
          <h1>Destinations</h1>
          {c.req.query('notice') ? <div class="notice">{c.req.query('notice')}</div> : null}
          <table>
            <thead>
              <tr>
                <th>url</th>
                <th>events</th>
                <th>state</th>
                <th>consecutive failures</th>
                <th>pending</th>
                <th>failed</th>
                <th>delivered</th>
                <th></th>
              </tr>
            </thead>
            <tbody>
              {all.map((destination) => (
                <tr>
                  <td>
                    <a href={`/admin/ui/destinations/${destination.id}`}>{destination.url}</a>
                    {destination.name ? <div class="muted">{destination.name}</div> : null}
                  </td>
                  <td>
                    <code>{destination.events.join(' ')}</code>
                  </td>
                  <td>
                    <Status value={destination.enabled ? 'enabled' : 'disabled'} />
                    {destination.disabledReason ? (
                      <div class="muted">{destination.disabledReason}</div>
                    ) : null}
                  </td>
                  <td>{destination.consecutiveFailures}</td>
                  <td>{destination.counts.pending}</td>
                  <td>{destination.counts.failed}</td>
                  <td>{destination.counts.delivered}</td>
                  <td>
                    {destination.enabled ? (
                      <PostButton
                        action={`/admin/ui/destinations/${destination.id}/disable`}
                        csrf={csrfValue}
                        label="Disable"
                      />
                    ) : (
                      <PostButton
                        action={`/admin/ui/destinations/${destination.id}/enable`}
                        csrf={csrfValue}
                        label="Enable"
                      />
                    )}{' '}
                    {destination.counts.failed > 0 ? (
                      <PostButton
                        action={`/admin/ui/destinations/${destination.id}/retry-failed`}
                        csrf={csrfValue}
                        label="Retry failed"
                      />
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {all.length === 0 ? (
            <p class="muted">No destination. Add one with POST /admin/destinations (README).</p>
          ) : null}
        </Layout>,
      )
    }),
  )

  dash.get(
    '/ui/destinations/:id',
    view(async (c, csrfValue) => {
      const id = c.req.param('id') ?? ''
      const destination = isUuid(id) ? await destinations.get(id) : undefined
      if (!destination) return notFound(c, csrfValue, `destination ${id}`)
      const status = (['pending', 'delivered', 'failed'] as const).find(
        (value) => value === c.req.query('status'),
      )
      const deliveries = await destinations.listDeliveries({ destinationId: id, status, limit: 100 })
      return page(
        c,
        <Layout title="Destination" signedIn csrf={csrfValue}>
          <h1>
            {destination.url} <Status value={destination.enabled ? 'enabled' : 'disabled'} />
          </h1>
          {c.req.query('notice') ? <div class="notice">{c.req.query('notice')}</div> : null}
          <p>
            {['', 'pending', 'failed', 'delivered'].map((value) => (
              <a
                style="margin-right:10px"
                href={`/admin/ui/destinations/${id}${value ? `?status=${value}` : ''}`}
              >
                {value || 'all'}
              </a>
            ))}
          </p>
          <table>
            <thead>
              <tr>
                <th>created</th>
                <th>event</th>
                <th>status</th>
                <th>attempts (status, duration, error)</th>
                <th></th>
              </tr>
            </thead>
            <tbody>
              {deliveries.map((delivery) => (
                <tr>
                  <td>
                    <a href={`/admin/ui/webhooks/${delivery.webhookId}`}>{time(delivery.createdAt)}</a>
                  </td>
                  <td>
                    {delivery.eventType}
                    <div class="muted">
                      <code>{delivery.eventId}</code>
                    </div>
                  </td>
                  <td>
                    <Status value={delivery.status} />
                  </td>
                  <td>
                    {delivery.attemptLog.map((attempt) => (
                      <div>
                        {time(attempt.attemptedAt)}: {attempt.statusCode ?? '-'},{' '}
                        {Math.round(attempt.durationMs)} ms
                        {attempt.error ? `, ${attempt.error}` : ''}
                      </div>
                    ))}
                  </td>
                  <td>
                    {delivery.status !== 'pending' ? (
                      <PostButton
                        action={`/admin/ui/deliveries/${delivery.id}/retry`}
                        csrf={csrfValue}
                        label="Send again"
                        fields={{ destination: id }}
                      />
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </Layout>,
      )
    }),
  )

  const destinationAction = (action: 'enable' | 'disable' | 'retry-failed') =>
    post(async (c) => {
      const id = c.req.param('id') ?? ''
      if (!isUuid(id)) return back(c, '/admin/ui/destinations', 'Not found.')
      if (action === 'retry-failed') {
        const retried = await destinations.retry({ destinationId: id })
        if (retried > 0) deps.onReplay?.()
        return back(c, '/admin/ui/destinations', `${retried} failed deliveries queued again.`)
      }
      const updated = await destinations.update(id, { enabled: action === 'enable' })
      if (updated && action === 'enable') deps.onReplay?.()
      return back(c, '/admin/ui/destinations', updated ? `Destination ${action}d.` : 'Not found.')
    })
  dash.post('/ui/destinations/:id/enable', destinationAction('enable'))
  dash.post('/ui/destinations/:id/disable', destinationAction('disable'))
  dash.post('/ui/destinations/:id/retry-failed', destinationAction('retry-failed'))

  dash.post(
    '/ui/deliveries/:id/retry',
    post(async (c, form) => {
      const id = c.req.param('id') ?? ''
      const retried = isUuid(id) ? await destinations.retry({ id }) : 0
      if (retried > 0) deps.onReplay?.()
      const destination = form.destination && isUuid(form.destination) ? form.destination : ''
      return back(
        c,
        destination ? `/admin/ui/destinations/${destination}` : '/admin/ui/destinations',
        retried > 0 ? 'Queued again, same webhook-id.' : 'Not found.',
      )
    }),
  )

  return dash
}
