import type { DestinationsResult } from './destinations.ts'
import type { LogSummary } from './child.ts'
import type { Machine } from './measure.ts'
import type { Section, ServerId, Settings } from './options.ts'
import type { ProfileSummary } from './profile.ts'
import type { SteadyRun } from './steady.ts'
import type { WakeCost } from './wake-cost.ts'

/** What one run measured, as written to the results file, and the tables made from it. */
export interface RunResult {
  readonly section: Section
  readonly payload: string
  readonly payloadTitle: string
  readonly bodyBytes: number
  readonly server: ServerId
  /** (a), (b), (c), (d), (d'). */
  readonly letter: string
  readonly label: string
  /** Set when the run could not complete; the other fields may then be missing. */
  readonly error?: string
  readonly warmup?: { readonly sent: number; readonly seconds: number }
  readonly load?: {
    readonly seconds: number
    readonly sent: number
    readonly answered: number
    /** 2xx that count as accepted (for the gateway: `"status":"accepted"`; for the others: every 2xx). */
    readonly accepted: number
    /** 2xx that do not (for the gateway: duplicates). */
    readonly notAccepted: number
    /** Answers outside 2xx. */
    readonly non2xx: number
    /** Connection errors and timeouts: no answer. */
    readonly noAnswer: number
    readonly statuses: Readonly<Record<string, number>>
    readonly acceptedPerSecond: number
    readonly latencyMs: { readonly p50: number; readonly p99: number; readonly max: number }
  }
  /** CPU per answered request in µs: the server process, every Postgres process, the load generator. */
  readonly cpuUsPerRequest?: {
    readonly server: number
    readonly postgres: number | null
    readonly generator: number
  }
  /** Storing servers: transactions that inserted and rows inserted during the measured window. */
  readonly storage?: {
    readonly commits: number
    readonly rows: number
    readonly rowsPerCommit: number | null
  }
  /** Storing servers, after the load (and the drain): answered accepted but not a row. */
  readonly stored?: { readonly accepted: number; readonly rows: number; readonly lost: number }
  /** The gateway with ROLE=all: seconds from the last answer until every row is published, or what is left. */
  readonly drain?: { readonly seconds: number | null; readonly left: number; readonly limitSeconds: number }
  readonly peakRssBytes?: number
  readonly log?: LogSummary
  readonly profile?: ProfileSummary
}

export interface Report {
  readonly startedAt: string
  readonly durationSeconds: number
  readonly command: string
  readonly settings: Settings
  readonly gatewayDir: string
  readonly machine: Machine
  readonly runs: readonly RunResult[]
  readonly destinations?: DestinationsResult
  readonly steady?: readonly SteadyRun[]
  /** The steady section's calibration: the same small round trip's CPU at each of its rates. */
  readonly wakeCost?: readonly WakeCost[]
}

// ---------------------------------------------------------------------------------------------------
// Formatting helpers.

const thousands = (value: number) => Math.round(value).toLocaleString('en-US')
const fixed = (value: number | null | undefined, digits = 1) =>
  value === null || value === undefined || !Number.isFinite(value) ? '-' : value.toFixed(digits)
/** Whole kibibytes as `64 KB`, anything else in bytes. */
const size = (bytes: number) =>
  bytes > 0 && bytes % 1024 === 0 ? `${bytes / 1024} KB` : `${thousands(bytes)} B`

export const isGateway = (run: RunResult) => run.server === 'gateway' || run.server === 'gateway-api'

function drainCell(run: RunResult): string {
  if (!run.drain) return '-'
  return run.drain.seconds === null ? `not drained: ${run.drain.left} left` : `${fixed(run.drain.seconds)} s`
}

const columns = [
  'server',
  'body',
  'req/s',
  'p50 ms',
  'p99 ms',
  'max ms',
  'non-2xx',
  'dup',
  'srv us/req',
  'pg us/req',
  'gen us/req',
  'rows/commit',
  'RSS MB',
  'drain',
  'lost',
] as const

function cells(run: RunResult): string[] {
  const name = `(${run.letter}) ${run.label}`
  if (!run.load) return [name, size(run.bodyBytes), `failed: ${run.error ?? 'unknown'}`]
  const { load, cpuUsPerRequest: cpu } = run
  return [
    name,
    size(run.bodyBytes),
    thousands(load.acceptedPerSecond),
    fixed(load.latencyMs.p50),
    fixed(load.latencyMs.p99),
    fixed(load.latencyMs.max, 0),
    String(load.non2xx + load.noAnswer),
    isGateway(run) ? String(load.notAccepted) : '-',
    cpu ? String(Math.round(cpu.server)) : '-',
    cpu?.postgres === null || cpu === undefined ? '-' : String(Math.round(cpu.postgres)),
    cpu ? String(Math.round(cpu.generator)) : '-',
    fixed(run.storage?.rowsPerCommit),
    run.peakRssBytes === undefined ? '-' : String(Math.round(run.peakRssBytes / 2 ** 20)),
    drainCell(run),
    run.stored ? String(run.stored.lost) : '-',
  ]
}

/** Anything under a table worth a line: failures, odd answers, log warnings, unpublished rows. */
function notes(run: RunResult): string[] {
  const name = `(${run.letter}) ${run.label}, ${size(run.bodyBytes)}`
  const lines: string[] = []
  if (run.error) lines.push(`${name}: FAILED: ${run.error.split('\n').join('\n    ')}`)
  const load = run.load
  if (load) {
    const odd = Object.entries(load.statuses)
      .filter(([status]) => !status.startsWith('2'))
      .map(([status, count]) => `${count}x ${status}`)
    if (load.noAnswer > 0) odd.push(`${load.noAnswer}x no answer (reset or timeout)`)
    if (load.notAccepted > 0) odd.push(`${load.notAccepted}x 2xx not "accepted"`)
    if (odd.length > 0) lines.push(`${name}: ${odd.join(', ')}`)
  }
  if (run.stored && run.stored.lost > 0)
    lines.push(`${name}: LOST: ${run.stored.lost} answered accepted but not stored`)
  if (run.stored && run.stored.rows > run.stored.accepted)
    lines.push(
      `${name}: ${run.stored.rows - run.stored.accepted} rows stored without an "accepted" reaching the client`,
    )
  if (run.log && run.log.problems > 0)
    lines.push(
      `${name}: ${run.log.problems} log lines above info, first: ${run.log.firstProblems.join(' | ')}`,
    )
  return lines
}

interface Table {
  readonly title: string
  readonly rows: readonly string[][]
  readonly notes: readonly string[]
}

const sectionTitles: Record<Section, string> = {
  headline: 'Headline',
  stripe: 'Stripe',
  twilio: 'Twilio',
  sweep: 'Size sweep',
  destinations: 'Destinations',
  steady: 'Steady',
}

/** The gateway's req/s over a reference server's, for each gateway run that has one in its payload. */
function ratios(runs: readonly RunResult[]): string[] {
  const lines: string[] = []
  const rate = (run: RunResult | undefined) => run?.load?.acceptedPerSecond
  for (const gateway of runs.filter(isGateway)) {
    const same = (server: ServerId) =>
      runs.find((run) => run.payload === gateway.payload && run.server === server)
    const parts = (['hono', 'sdk', 'handwritten'] as const)
      .map((server) => {
        const mine = rate(gateway)
        const theirs = rate(same(server))
        return mine !== undefined && theirs
          ? `${fixed(mine / theirs, 2)}x (${same(server)!.letter})`
          : undefined
      })
      .filter((part) => part !== undefined)
    if (parts.length > 0)
      lines.push(`(${gateway.letter}) ${gateway.label}, ${size(gateway.bodyBytes)}: ${parts.join(', ')}`)
  }
  return lines
}

/**
 * How CPU per request grows with the body in the sweep, for each server: its points, and the slope from
 * the smallest body to the largest (the large sizes dominate any fitted line, so this says the same more
 * plainly).
 */
function growth(runs: readonly RunResult[]): string[] {
  const lines: string[] = []
  for (const server of [...new Set(runs.map((run) => run.server))]) {
    const points = runs
      .filter((run) => run.server === server && run.cpuUsPerRequest)
      .sort((a, b) => a.bodyBytes - b.bodyBytes)
    const first = points[0]
    const last = points.at(-1)
    if (!first || !last || first === last) continue
    const describe = (value: (run: RunResult) => number | null) => {
      const values = points.map(value)
      if (values.some((v) => v === null)) return '-'
      const slope = ((value(last) ?? 0) - (value(first) ?? 0)) / ((last.bodyBytes - first.bodyBytes) / 1024)
      // No "-0.0" for a flat line.
      const shown = Math.abs(slope) < 0.05 ? 0 : slope
      return `${values.map((v) => Math.round(v!)).join(' / ')} us (${shown >= 0 ? '+' : ''}${fixed(shown, 1)} us per KB)`
    }
    lines.push(
      `(${first.letter}) ${first.label} at ${points.map((run) => size(run.bodyBytes)).join(' / ')}: ` +
        `server ${describe((run) => run.cpuUsPerRequest!.server)}; postgres ${describe((run) => run.cpuUsPerRequest!.postgres)}`,
    )
  }
  return lines
}

/**
 * With --repeat, each server's runs of a payload in one: the run with the median req/s (the lower of the
 * two middle ones), and a line with every run's req/s so the spread is in view.
 */
function medianRuns(runs: readonly RunResult[]): { runs: RunResult[]; spread: string[] } {
  const groups = new Map<string, RunResult[]>()
  for (const run of runs) {
    const key = `${run.payload}\u0000${run.server}`
    groups.set(key, [...(groups.get(key) ?? []), run])
  }
  const chosen: RunResult[] = []
  const spread: string[] = []
  for (const group of groups.values()) {
    const rate = (run: RunResult) => run.load?.acceptedPerSecond ?? -1
    const sorted = [...group].sort((a, b) => rate(a) - rate(b))
    chosen.push(sorted[Math.floor((sorted.length - 1) / 2)]!)
    if (group.length > 1)
      spread.push(
        `(${group[0]!.letter}) ${group[0]!.label}, ${size(group[0]!.bodyBytes)}: req/s of ${group.length} runs ` +
          group.map((run) => (run.load ? thousands(run.load.acceptedPerSecond) : 'failed')).join(', '),
      )
  }
  return { runs: chosen, spread }
}

function tables(allRuns: readonly RunResult[]): Table[] {
  const result: Table[] = []
  for (const section of [...new Set(allRuns.map((run) => run.section))]) {
    const { runs: mine, spread } = medianRuns(allRuns.filter((run) => run.section === section))
    const payloads = [...new Set(mine.map((run) => run.payloadTitle))]
    const extra = [...ratios(mine).map((line) => `ratio ${line}`)]
    if (section === 'sweep') extra.push(...growth(mine).map((line) => `CPU per request, ${line}`))
    result.push({
      title: `${sectionTitles[section]}: ${section === 'sweep' ? 'GitHub push padded to each size' : payloads.join('; ')}`,
      rows: mine.map(cells),
      notes: [...extra, ...spread, ...allRuns.filter((run) => run.section === section).flatMap(notes)],
    })
  }
  return result
}

function machineLines(report: Report): string[] {
  const { machine: m, settings: s } = report
  return [
    `machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB, ${m.kernel}`,
    `node ${m.node}; PostgreSQL ${m.postgres} (${m.postgresSettings}); Redis ${m.redis}; RabbitMQ ${m.rabbitmq}`,
    `load average before ${m.loadBefore.map((n) => n.toFixed(2)).join(' ')}, after ${(m.loadAfter ?? []).map((n) => n.toFixed(2)).join(' ')}`,
    `load: ${s.connections} keep-alive connections, closed loop, ${s.warmupMs / 1000} s warm-up then ${s.durationMs / 1000} s measured ` +
      `(at most ${thousands(s.maxRequests)} requests) per run; every request a new event id; loopback`,
    `gateway: ${report.gatewayDir}${
      Object.keys(s.gatewayEnv).length > 0
        ? ` with ${Object.entries(s.gatewayEnv)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')}`
        : ''
    }`,
    ...(s.nodeFlags.length > 0 ? [`node flags for every server measured: ${s.nodeFlags.join(' ')}`] : []),
    `started ${report.startedAt}, took ${Math.round(report.durationSeconds)} s; command: ${report.command}`,
  ]
}

function profileLines(runs: readonly RunResult[]): string[] {
  const lines: string[] = []
  for (const run of runs)
    if (run.profile) {
      lines.push(
        `Profile of (${run.letter}) ${run.label}, ${size(run.bodyBytes)}, during the measured window: main thread ` +
          `busy ${fixed(100 * run.profile.busy, 0)}% of the time; self time as a share of the busy time`,
        'by package or source:',
        ...run.profile.sources.map((line) => `  ${line}`),
        'by function:',
        ...run.profile.functions.map((line) => `  ${line}`),
      )
    }
  return lines
}

// ---------------------------------------------------------------------------------------------------
// Renderers.

/** Aligned columns for the terminal. */
export function renderText(report: Report): string {
  const out: string[] = [...machineLines(report)]
  for (const table of tables(report.runs)) {
    const rows = [[...columns], ...table.rows]
    const widths = columns.map((_, column) => Math.max(...rows.map((row) => row[column]?.length ?? 0)))
    out.push('', table.title)
    for (const row of rows)
      out.push(
        row
          .map((cell, column) => (column === 0 ? cell.padEnd(widths[0]!) : cell.padStart(widths[column]!)))
          .join('  ')
          .trimEnd(),
      )
    out.push(...table.notes.map((line) => `  ${line}`))
  }
  const profile = profileLines(report.runs)
  if (profile.length > 0) out.push('', ...profile)
  return out.join('\n')
}

/** The same as Markdown, for the results file and BENCHMARKS.md. */
export function renderMarkdown(report: Report): string {
  const out: string[] = ['# Bench results', '', ...machineLines(report).map((line) => `- ${line}`)]
  const escape = (cell: string) => cell.replace(/\|/g, '\\|')
  for (const table of tables(report.runs)) {
    out.push(
      '',
      `## ${table.title}`,
      '',
      `| ${columns.join(' | ')} |`,
      `|${columns.map(() => '---').join('|')}|`,
    )
    for (const row of table.rows) out.push(`| ${row.map(escape).join(' | ')} |`)
    if (table.notes.length > 0) out.push('', ...table.notes.map((line) => `- ${line}`))
  }
  const profile = profileLines(report.runs)
  if (profile.length > 0) out.push('', '## Profile', '', '```', ...profile, '```')
  return `${out.join('\n')}\n`
}
