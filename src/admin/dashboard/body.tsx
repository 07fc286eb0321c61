import { isFormEncoded, parseForm } from '../../parse.ts'

/** Past this size a body is shown only as received: indenting megabytes would make a page nobody reads. */
const indentMaxBytes = 1024 * 1024

/** C0 controls other than tab, LF and CR: HTML drops or mangles them, so such bytes are shown as base64. */
const controlCharacter = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/

/** The bytes as text when they are UTF-8 that HTML can carry; a BOM is kept, as received. */
function textOf(bytes: Buffer): string | undefined {
  try {
    const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes)
    return controlCharacter.test(text) ? undefined : text
  } catch {
    return undefined
  }
}

/**
 * Valid JSON indented with 2 spaces, as JSON.stringify(value, null, 2) lays it out, its tokens copied as
 * written: a parse and stringify would round integers beyond 2^53 and rewrite escapes. Undefined when the
 * text is not JSON.
 */
export function indentJson(text: string): string | undefined {
  try {
    JSON.parse(text)
  } catch {
    return undefined
  }
  const out: string[] = []
  let depth = 0
  const newline = () => out.push('\n', '  '.repeat(depth))
  const nextToken = (from: number) => {
    let index = from
    while (index < text.length && ' \t\n\r'.includes(text[index]!)) index++
    return index
  }
  for (let index = 0; index < text.length; index++) {
    const char = text[index]!
    if (char === '"') {
      let end = index + 1
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1
      out.push(text.slice(index, end + 1))
      index = end
    } else if (char === '{' || char === '[') {
      const next = nextToken(index + 1)
      if (text[next] === (char === '{' ? '}' : ']')) {
        out.push(char, text[next]!)
        index = next
      } else {
        out.push(char)
        depth++
        newline()
      }
    } else if (char === '}' || char === ']') {
      depth--
      newline()
      out.push(char)
    } else if (char === ',') {
      out.push(',')
      newline()
    } else if (char === ':') out.push(': ')
    else if (!' \t\n\r'.includes(char)) out.push(char)
  }
  return out.join('')
}

/** What a body shows: a reading view when one applies, and the exact bytes (as text, or as base64). */
export interface BodyView {
  /** Indented JSON, or a form's decoded fields as a JSON object; undefined when there is none. */
  readonly reading: string | undefined
  /** Why there is no reading view, or what it shows when that is not plain. */
  readonly note?: string | undefined
  /** The exact bytes: the text itself, or base64 when they are not text. */
  readonly exact: string
  readonly base64: boolean
}

export function bodyView(bytes: Buffer, contentType?: string): BodyView {
  const text = textOf(bytes)
  if (text === undefined)
    return {
      reading: undefined,
      note: 'Not UTF-8 text: the exact bytes are shown as base64.',
      exact: bytes.toString('base64'),
      base64: true,
    }
  const exact = { exact: text, base64: false }
  if (bytes.length > indentMaxBytes)
    return { ...exact, reading: undefined, note: 'Too large to indent here: shown as received.' }
  if (isFormEncoded(contentType))
    return {
      ...exact,
      reading: JSON.stringify(parseForm(text), null, 2),
      note: 'Form fields, decoded (a repeated field as a list).',
    }
  // A BOM is no part of the JSON (JSON.parse refuses it); the exact block keeps it.
  const indented = indentJson(text.replace(/^\ufeff/, ''))
  return indented === undefined
    ? { ...exact, reading: undefined, note: 'Not JSON: shown as received.' }
    : { ...exact, reading: indented }
}

/**
 * A body: its reading view, and the exact bytes in a <details> with a copy button (open when there is no
 * reading view). `id` names the exact block, for the button and for tests.
 */
export function Bytes(props: { id: string; bytes: Buffer; contentType?: string | undefined; what: string }) {
  const view = bodyView(props.bytes, props.contentType)
  return (
    <div class="bytes">
      {view.note === undefined ? null : <p class="muted">{view.note}</p>}
      {view.reading === undefined ? null : <pre class="reading">{view.reading}</pre>}
      <details open={view.reading === undefined}>
        <summary>
          exact bytes {props.what}
          {view.base64 ? ', base64' : ''} ({props.bytes.length} bytes){' '}
          <button type="button" data-copy={props.id}>
            copy
          </button>
        </summary>
        {/* The newline is the one HTML drops after <pre>, so a body starting with one keeps it. CR does
            not survive HTML parsing either: such text also travels as base64, for the copy. */}
        <pre
          id={props.id}
          data-base64={!view.base64 && view.exact.includes('\r') ? props.bytes.toString('base64') : undefined}
        >
          {'\n'}
          {view.exact}
        </pre>
      </details>
    </div>
  )
}

/** Copies the exact block a button names. A constant: no request data ever goes in a script. */
const copyScript = `
document.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-copy]')
  if (!button) return
  const block = document.getElementById(button.dataset.copy)
  const base64 = block.dataset.base64
  const text = base64
    ? new TextDecoder('utf-8', { ignoreBOM: true }).decode(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)))
    : block.textContent
  const say = (label) => {
    button.textContent = label
    setTimeout(() => { button.textContent = 'copy' }, 2000)
  }
  const select = () => {
    block.closest('details').open = true
    getSelection().selectAllChildren(block)
    say('selected: press Ctrl+C')
  }
  // The clipboard API exists only in a secure context (https, or this machine).
  if (navigator.clipboard) navigator.clipboard.writeText(text).then(() => say('copied'), select)
  else select()
})
`

export const CopyScript = () => <script dangerouslySetInnerHTML={{ __html: copyScript }} />
