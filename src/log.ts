const levels = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const
export type LogLevel = keyof typeof levels

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void
  info(message: string, fields?: Record<string, unknown>): void
  warn(message: string, fields?: Record<string, unknown>): void
  error(message: string, fields?: Record<string, unknown>): void
}

/**
 * Writes to stdout once per turn of the event loop, not once per line: stdout to a file or a pipe is a
 * synchronous write(2), and a line per accepted webhook made that a syscall per request under load. What
 * is still buffered when the process exits is written then.
 */
function batchedStdout(): (line: string) => void {
  let pending: string[] = []
  const flush = () => {
    if (pending.length === 0) return
    const text = pending.join('')
    pending = []
    process.stdout.write(text)
  }
  process.on('exit', flush)
  return (line) => {
    if (pending.push(line) === 1) setImmediate(flush)
  }
}

let stdout: ((line: string) => void) | undefined

/** Structured JSON logs, one line per entry, on stdout. */
export function createLogger(
  level: LogLevel,
  write: (line: string) => void = (stdout ??= batchedStdout()),
): Logger {
  const threshold = levels[level]
  const log = (at: Exclude<LogLevel, 'silent'>) => (message: string, fields?: Record<string, unknown>) => {
    if (levels[at] < threshold) return
    const entry: Record<string, unknown> = {
      time: new Date().toISOString(),
      level: at,
      msg: message,
      ...fields,
    }
    if (entry.error instanceof Error) entry.error = entry.error.message
    write(JSON.stringify(entry) + '\n')
  }
  return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') }
}

export const silentLogger: Logger = createLogger('silent', () => {})
