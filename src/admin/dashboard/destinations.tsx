import type { Hono } from 'hono'
import { back, notFound, page, type Guards } from './kit.tsx'
import type { DashboardDeps } from './routes.tsx'
import { isUuid } from '../../ids.ts'
import { Layout, PostButton, Status, time } from './layout.tsx'

/** The destinations: their state and deliveries, enable, disable, retry what failed, send one again. */
export function destinationPages(dash: Hono, { view, post }: Guards, deps: DashboardDeps): void {
  const { destinations } = deps
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
}
