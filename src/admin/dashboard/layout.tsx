import type { Child } from 'hono/jsx'

/** A little CSS, inline: no build step and no other request. */
const style = `
  body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
  header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 18px; align-items: center; }
  header a { color: #cfd6e4; text-decoration: none; } header a:hover { color: #fff; }
  header strong { margin-right: 12px; } header form { margin-left: auto; }
  main { padding: 16px 20px; max-width: 1200px; }
  h1 { font-size: 20px; margin: 4px 0 14px; } h2 { font-size: 16px; margin: 22px 0 8px; }
  table { border-collapse: collapse; width: 100%; background: #fff; }
  th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #e3e6ec; vertical-align: top; }
  th { background: #eef0f4; font-weight: 600; }
  code, pre { font: 12px/1.4 ui-monospace, monospace; }
  pre { background: #fff; border: 1px solid #e3e6ec; padding: 10px; overflow: auto; max-height: 420px; white-space: pre-wrap; word-break: break-all; }
  .status { padding: 1px 6px; border-radius: 3px; font-size: 12px; }
  .published, .delivered, .enabled { background: #d9f2e3; } .pending, .retrying { background: #fff1c9; }
  .dead, .failed, .disabled { background: #fbd9d9; }
  form.inline { display: inline; } .filters { display: flex; gap: 8px; flex-wrap: wrap; margin-bottom: 12px; align-items: end; }
  .filters label { display: flex; flex-direction: column; font-size: 12px; color: #596275; }
  input, select, button { font: inherit; padding: 4px 6px; }
  button { cursor: pointer; }
  .notice { background: #e3eefc; border: 1px solid #bcd3f5; padding: 8px 12px; margin-bottom: 12px; }
  .error { background: #fbd9d9; border: 1px solid #f0b4b4; padding: 8px 12px; margin-bottom: 12px; }
  .cards { display: flex; gap: 12px; flex-wrap: wrap; } .card { background: #fff; border: 1px solid #e3e6ec; padding: 10px 14px; min-width: 120px; }
  .card b { display: block; font-size: 22px; }
  .muted { color: #7a8294; }
`

export function Layout(props: { title: string; signedIn?: boolean; csrf?: string; children?: Child }) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{props.title} · webhook gateway</title>
        <style>{style}</style>
      </head>
      <body>
        <header>
          <strong>webhook gateway</strong>
          {props.signedIn ? (
            <>
              <a href="/admin">Overview</a>
              <a href="/admin/ui/webhooks">Webhooks</a>
              <a href="/admin/ui/webhooks?status=dead">Dead letters</a>
              <a href="/admin/ui/rejections">Rejections</a>
              <a href="/admin/ui/destinations">Destinations</a>
              <form method="post" action="/admin/signout">
                <input type="hidden" name="_csrf" value={props.csrf ?? ''} />
                <button type="submit">Sign out</button>
              </form>
            </>
          ) : null}
        </header>
        <main>{props.children}</main>
      </body>
    </html>
  )
}

/** A POST button carrying the CSRF token; `fields` go along as hidden inputs. */
export function PostButton(props: {
  action: string
  csrf: string
  label: string
  fields?: Readonly<Record<string, string>>
}) {
  return (
    <form class="inline" method="post" action={props.action}>
      <input type="hidden" name="_csrf" value={props.csrf} />
      {Object.entries(props.fields ?? {}).map(([name, value]) => (
        <input type="hidden" name={name} value={value} />
      ))}
      <button type="submit">{props.label}</button>
    </form>
  )
}

export const Status = (props: { value: string }) => <span class={`status ${props.value}`}>{props.value}</span>

export const time = (date: Date | string | null | undefined) =>
  date
    ? new Date(date)
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, 'Z')
    : '-'
