import pino, { type DestinationStream } from 'pino'

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent'

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void
  info(message: string, fields?: Record<string, unknown>): void
  warn(message: string, fields?: Record<string, unknown>): void
  error(message: string, fields?: Record<string, unknown>): void
  /** A logger whose every line also carries `bindings` (a webhook's id, a request id). */
  child(bindings: Record<string, unknown>): Logger
}

/**
 * What must never reach a log, wherever a field of that name turns up (at the top or one level down: a
 * destination's `secret`, a request's `headers.authorization`): secrets and tokens, signatures, credentials in
 * headers, and bodies (a webhook's body is the provider's data, not ours to copy into logs). Names are
 * compared in lower case.
 */
const redactedNames = new Set([
  'secret',
  'secrets',
  'token',
  'authorization',
  'cookie',
  'signature',
  'body',
  'payload',
])
/** In a `headers` field, also the providers' signatures. */
const redactedHeaders = new Set([
  'stripe-signature',
  'x-hub-signature',
  'x-hub-signature-256',
  'x-twilio-signature',
  'x-shopify-hmac-sha256',
  'shopify-hmac-sha256',
  'paypal-transmission-sig',
  'webhook-signature',
])
const censor = '[redacted]'

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' &&
  value !== null &&
  !Array.isArray(value) &&
  (Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null)

/**
 * `fields` with what must not be logged replaced by "[redacted]", copied only where something is. Ours rather
 * than pino's `redact` option: its redactor parses every path again on every line (about 6 us and 16 KB of
 * garbage per line against 1.5 us without, measured with scratch code; a line per webhook).
 */
function redact(
  fields: Record<string, unknown>,
  depth = 0,
  also?: ReadonlySet<string>,
): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined
  for (const key of Object.keys(fields)) {
    const value = fields[key]
    const name = key.toLowerCase()
    let next = value
    if (value !== undefined && (redactedNames.has(name) || also?.has(name))) next = censor
    else if (depth === 0 && isPlainObject(value))
      next = redact(value, 1, name === 'headers' ? redactedHeaders : undefined)
    if (next !== value) (copy ??= { ...fields })[key] = next
  }
  return copy ?? fields
}

/**
 * Lines go to stdout from the main thread, once per turn of the event loop (in its check phase, after the
 * I/O that produced them): a burst of lines is one write(2), and a lone line costs no thread. pino's
 * asynchronous writer hands every write to a thread of libuv's pool and wakes the event loop again when it
 * is done, two wake-ups for each webhook at a steady trickle. What is pending when the process exits is
 * written then.
 */
let stdout: DestinationStream | undefined
function stdoutDestination(): DestinationStream {
  if (!stdout) {
    const destination = pino.destination({ dest: 1, sync: true })
    let pending = ''
    const flush = () => {
      const lines = pending
      pending = ''
      if (lines) destination.write(lines)
    }
    process.on('exit', () => {
      try {
        flush()
      } catch {
        // Nothing more can be done at exit.
      }
    })
    stdout = {
      write(line: string) {
        if (pending === '') setImmediate(flush)
        pending += line
      },
    }
  }
  return stdout
}

/** An `error` field is logged as its message: stacks and causes stay out of the shared log. */
const fieldsOf = (fields: Record<string, unknown> | undefined) =>
  fields ? redact(fields.error instanceof Error ? { ...fields, error: fields.error.message } : fields) : {}

function wrap(logger: pino.Logger): Logger {
  return {
    debug: (message, fields) => logger.debug(fieldsOf(fields), message),
    info: (message, fields) => logger.info(fieldsOf(fields), message),
    warn: (message, fields) => logger.warn(fieldsOf(fields), message),
    error: (message, fields) => logger.error(fieldsOf(fields), message),
    child: (bindings) => wrap(logger.child(redact(bindings))),
  }
}

/**
 * Structured JSON logs (pino), one line per entry: `time` (ISO 8601), `level` (a word), `msg`, and the fields.
 * `write` receives each line instead of stdout (tests). For reading logs locally, pipe them through
 * `npx pino-pretty`.
 */
export function createLogger(level: LogLevel, write?: (line: string) => void): Logger {
  const destination = write ? { write } : stdoutDestination()
  return wrap(
    pino(
      {
        level,
        base: null,
        timestamp: pino.stdTimeFunctions.isoTime,
        formatters: { level: (label) => ({ level: label }) },
      },
      destination,
    ),
  )
}

export const silentLogger: Logger = createLogger('silent', () => {})
