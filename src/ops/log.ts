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
 * What must never reach a log, wherever a field of that name turns up: secrets and tokens, signatures,
 * credentials in headers, and bodies (a webhook's body is the provider's data, not ours to copy into logs).
 */
export const redactedPaths = [
  'secret',
  'secrets',
  'token',
  'authorization',
  'cookie',
  'signature',
  'body',
  'payload',
  '*.secret',
  '*.secrets',
  '*.token',
  '*.authorization',
  '*.cookie',
  '*.signature',
  '*.body',
  '*.payload',
  'headers["stripe-signature"]',
  'headers["x-hub-signature"]',
  'headers["x-hub-signature-256"]',
  'headers["x-twilio-signature"]',
  'headers["x-shopify-hmac-sha256"]',
  'headers["shopify-hmac-sha256"]',
  'headers["paypal-transmission-sig"]',
  'headers["webhook-signature"]',
]

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
  fields && fields.error instanceof Error ? { ...fields, error: fields.error.message } : (fields ?? {})

function wrap(logger: pino.Logger): Logger {
  return {
    debug: (message, fields) => logger.debug(fieldsOf(fields), message),
    info: (message, fields) => logger.info(fieldsOf(fields), message),
    warn: (message, fields) => logger.warn(fieldsOf(fields), message),
    error: (message, fields) => logger.error(fieldsOf(fields), message),
    child: (bindings) => wrap(logger.child(bindings)),
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
        redact: { paths: redactedPaths, censor: '[redacted]' },
      },
      destination,
    ),
  )
}

export const silentLogger: Logger = createLogger('silent', () => {})
