import type { Hono } from 'hono'
import { back, notFound, page, queryString, type Guards } from './kit.tsx'
import type { DashboardDeps } from './routes.tsx'
import { isUuid } from '../../ids.ts'
import { parseWebhookFilter } from '../api.ts'
import { eventsFor, serializeEvent } from '../../pipeline/events.ts'
import type { StoredWebhook, WebhookCursor, WebhookStatus } from '../../db/webhooks.ts'
import { Bytes, CopyScript } from './body.tsx'
import { Layout, PostButton, Status, time } from './layout.tsx'

const statuses: readonly WebhookStatus[] = ['pending', 'retrying', 'published', 'dead']
const pageSize = 50

/** `before` in a page's query: `<ISO time>_<id>` of the last row of the page before. */
function cursorOf(value: string | undefined): WebhookCursor | undefined {
  const [at, id] = (value ?? '').split('_')
  const receivedAt = at ? new Date(at) : undefined
  return receivedAt && !Number.isNaN(receivedAt.getTime()) && id && isUuid(id)
    ? { receivedAt, id }
    : undefined
}

/** Webhooks, one a row, newest first as given; each links to its page. */
export function WebhookTable(props: { webhooks: readonly StoredWebhook[] }) {
  return (
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
        {props.webhooks.map((webhook) => (
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
  )
}

/** The webhooks: filtered and paged, one in detail with its events and deliveries, and replays. */
export function webhookPages(dash: Hono, { view, post }: Guards, deps: DashboardDeps): void {
  const { store, destinations } = deps
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
          <WebhookTable webhooks={shown} />
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
      let events: { routingKey: string; bytes: Buffer }[] = []
      let mappingError: string | undefined
      try {
        events = provider
          ? eventsFor(webhook, provider).map((event) => ({
              routingKey: event.type,
              // Exactly the bytes published: the reading view indents them without parsing numbers.
              bytes: serializeEvent(event),
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
          <h2>Body ({webhook.body.length} bytes)</h2>
          <Bytes
            id="body-exact"
            bytes={webhook.body}
            contentType={webhook.headers['content-type']}
            what="as received"
          />
          <h2>CloudEvents</h2>
          {mappingError ? <div class="error">The handler fails on this webhook: {mappingError}</div> : null}
          <p class="muted">
            Published ids:{' '}
            {webhook.publishedEventIds.length > 0 ? webhook.publishedEventIds.join(', ') : 'none yet'}
          </p>
          {events.map((event, index) => (
            <>
              <p>
                routing key <code>{event.routingKey}</code>
              </p>
              <Bytes id={`event-${index}-exact`} bytes={event.bytes} what="as published" />
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
          <CopyScript />
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
}
