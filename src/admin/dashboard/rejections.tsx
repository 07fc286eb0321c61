import type { Hono } from 'hono'
import { page, type Guards } from './kit.tsx'
import type { DashboardDeps } from './routes.tsx'
import { Layout, time } from './layout.tsx'

/** The rejection log: the last refused requests per provider, and why. */
export function rejectionPages(dash: Hono, { view }: Guards, deps: DashboardDeps): void {
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
}
