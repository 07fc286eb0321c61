import type { Context } from 'hono'
import { getCookie } from 'hono/cookie'
import { Layout } from './layout.tsx'
import { csrfToken, sessionCookie, validCsrf, validSession } from './session.ts'

/** An HTML page: the doctype, then the rendered element (standards mode, not quirks). */
export const page = (c: Context, element: unknown, status: 200 | 401 | 403 | 404 = 200) =>
  c.html(`<!DOCTYPE html>${String(element)}`, status)

/** A query string of the fields that are set (dates as ISO times). */
export const queryString = (fields: Record<string, string | number | Date | undefined>) => {
  const params = new URLSearchParams()
  for (const [name, value] of Object.entries(fields))
    if (value !== undefined) params.set(name, value instanceof Date ? value.toISOString() : String(value))
  return params.toString()
}

/** Redirects to `to` with a notice shown at the top of that page. */
export const back = (c: Context, to: string, notice: string) =>
  c.redirect(`${to}${to.includes('?') ? '&' : '?'}notice=${encodeURIComponent(notice)}`, 303)

export const notFound = (c: Context, csrfValue: string, what: string) =>
  page(
    c,
    <Layout title="Not found" signedIn csrf={csrfValue}>
      <div class="error">No {what}.</div>
    </Layout>,
    404,
  )

/** What every page's handler is wrapped in: the session checks, made with the admin token. */
export interface Guards {
  /** A page for signed-in users: the handler gets the session's CSRF token; others go to the sign-in form. */
  view(handler: (c: Context, csrf: string) => Promise<Response>): (c: Context) => Promise<Response>
  /** A POST of the dashboard: signed in, same origin, with the session's CSRF token; else 403. */
  post(
    handler: (c: Context, form: Record<string, string>) => Promise<Response>,
  ): (c: Context) => Promise<Response>
}

export function guards(token: string): Guards {
  /** The signed-in session's CSRF token, or undefined when not signed in. */
  const session = (c: Context) => {
    const value = getCookie(c, sessionCookie)
    return value && validSession(token, value) ? csrfToken(token, value) : undefined
  }
  return {
    view: (handler) => async (c) => {
      const csrfValue = session(c)
      return csrfValue ? handler(c, csrfValue) : c.redirect('/admin/signin', 303)
    },
    post: (handler) => async (c) => {
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
    },
  }
}
