import { Hono } from 'hono'
import { deleteCookie, setCookie } from 'hono/cookie'
import { csrf } from 'hono/csrf'
import type { Providers } from '../../../providers/index.ts'
import { safeEqual } from '../../crypto.ts'
import type { DestinationStore } from '../../destinations/store.ts'
import type { RejectionLog } from '../../ops/rejections.ts'
import type { Store } from '../../db/webhooks.ts'
import { destinationPages } from './destinations.tsx'
import { guards, page } from './kit.tsx'
import { Layout } from './layout.tsx'
import { overviewPage } from './overview.tsx'
import { rejectionPages } from './rejections.tsx'
import { newSession, sessionCookie, sessionSeconds } from './session.ts'
import { webhookPages } from './webhooks.tsx'

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

/**
 * The dashboard at /admin: server-rendered (hono/jsx), readable without JavaScript, behind ADMIN_TOKEN. A
 * sign-in form sets an HttpOnly, SameSite=Strict session cookie; every POST carries the session's CSRF
 * token and must come from this origin. The pages live beside this file, one file per part.
 */
export function dashboardRoutes(deps: DashboardDeps): Hono {
  const { token } = deps
  const dash = new Hono()
  const pageGuards = guards(token)
  const { post } = pageGuards

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

  overviewPage(dash, pageGuards, deps)
  webhookPages(dash, pageGuards, deps)
  rejectionPages(dash, pageGuards, deps)
  destinationPages(dash, pageGuards, deps)
  return dash
}
