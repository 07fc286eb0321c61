import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { FinalRead } from './check.ts'
import type { Drain } from './drain.ts'
import type { CrashRecord, StopRecord } from './gateways.ts'
import type { History } from './history.ts'
import type { Load } from './load.ts'
import type { RestoreOutcome } from './nemesis.ts'
import type { Observer } from './observer.ts'
import type { Options } from './options.ts'
import type { Receiver } from './receiver.ts'
import type { BacklogSample, HealthChange, RssSeries } from './samplers.ts'

/** The report: tables on stdout for people, and the same numbers as JSON in chaos/results/. */

export interface RunFacts {
  readonly options: Options
  readonly history: History
  readonly load: Load
  readonly backlog: readonly BacklogSample[]
  readonly rss: readonly RssSeries[]
  readonly health: readonly HealthChange[]
  readonly stops: readonly StopRecord[]
  readonly crashes: readonly CrashRecord[]
  readonly restartFailures: readonly string[]
  readonly observer: Observer
  readonly receiver: Receiver
  readonly calmBacklog: number
  readonly restore: RestoreOutcome | undefined
  readonly drain: Drain | undefined
  readonly check: FinalRead | undefined
  /** Why the run stopped early, when it did. */
  readonly failure: string | undefined
  readonly servicesStartupMs: Readonly<Record<string, number>> | undefined
  readonly runDir: string
  readonly totalMs: number
}

const maxHealthLines = 60
const seconds = (ms: number | undefined) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`)
const millis = (ms: number | undefined) =>
  ms === undefined ? '-' : `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`

function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
}

/** A plain-text table: the first `leftColumns` columns aligned left, the others right. */
function table(headers: readonly string[], rows: readonly (readonly string[])[], leftColumns = 1): string {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)),
  )
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) =>
        column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0),
      )
      .join('  ')
  return [line(headers), widths.map((width) => '-'.repeat(width)).join('  '), ...rows.map(line)].join('\n')
}

interface LatencySummary {
  readonly count: number
  readonly p50: number | undefined
  readonly p99: number | undefined
  readonly max: number | undefined
}

/** 2xx answer times per 10 s window of the run: [window start in s, answers, p50 ms, p99 ms]. */
function latencySeries(load: Load): [number, number, number, number][] {
  const windows = new Map<number, number[]>()
  load.okStartedAt.forEach((startedAt, index) => {
    const window = Math.floor(startedAt / 10_000) * 10
    const values = windows.get(window) ?? []
    values.push(load.okLatencyMs[index] ?? 0)
    windows.set(window, values)
  })
  return [...windows].map(([window, values]) => {
    values.sort((a, b) => a - b)
    const at = (p: number) => Math.round(percentile(values, p) ?? 0)
    return [window, values.length, at(50), at(99)]
  })
}

function latencies(load: Load, history: History): { calm: LatencySummary; underFault: LatencySummary } {
  const calm: number[] = []
  const underFault: number[] = []
  load.okStartedAt.forEach((startedAt, index) => {
    const latency = load.okLatencyMs[index] ?? 0
    ;(history.underFault(startedAt) ? underFault : calm).push(latency)
  })
  const summary = (values: number[]): LatencySummary => {
    values.sort((a, b) => a - b)
    return {
      count: values.length,
      p50: percentile(values, 50),
      p99: percentile(values, 99),
      max: values.at(-1),
    }
  }
  return { calm: summary(calm), underFault: summary(underFault) }
}

/** The first index whose value is at least `time` in an ascending array. */
function firstAtOrAfter(sorted: readonly number[], time: number): number {
  let low = 0
  let high = sorted.length
  while (low < high) {
    const middle = (low + high) >> 1
    if ((sorted[middle] ?? 0) < time) low = middle + 1
    else high = middle
  }
  return low
}

interface FaultSummary {
  readonly name: string
  readonly startedAt: number
  readonly heldMs: number | undefined
  /** From the heal to the first 2xx answer after it. */
  readonly first2xxAfterHealMs: number | undefined
  /** From the heal to the first backlog reading back at its calm level. */
  readonly backlogCalmAfterHealMs: number | undefined
  readonly backlogPeak: number | undefined
  readonly deliveriesPendingPeak: number | undefined
  /** RSS of each gateway that lived through the whole fault: at its start, highest until the heal, at the heal. */
  readonly rssAcross: readonly {
    readonly name: string
    readonly atStartMb: number
    readonly peakMb: number
    readonly atHealMb: number
  }[]
  readonly notes: readonly string[]
}

/** The last RSS sample at or before `time`, in kB; undefined when the series has none by then. */
function rssAt(series: RssSeries, time: number): number | undefined {
  let found: number | undefined
  for (const [at, kb] of series.samples) {
    if (at > time) break
    found = kb
  }
  return found
}

/** The gateways alive across the window: sampled by `from` already and still within 2 s of `to`. */
function rssAcrossWindow(rss: readonly RssSeries[], from: number, to: number): FaultSummary['rssAcross'] {
  return rss.flatMap((series) => {
    const first = series.samples[0]
    const last = series.samples.at(-1)
    if (!first || !last || first[0] > from || last[0] < to - 2000) return []
    const atStart = rssAt(series, from)
    const atHeal = rssAt(series, to)
    if (atStart === undefined || atHeal === undefined) return []
    const during = series.samples.filter(([at]) => at >= from && at <= to).map(([, kb]) => kb)
    const peak = Math.max(atStart, atHeal, ...during)
    return [{ name: series.name, atStartMb: atStart / 1024, peakMb: peak / 1024, atHealMb: atHeal / 1024 }]
  })
}

function faultSummaries(facts: RunFacts): FaultSummary[] {
  const { history, load, backlog, calmBacklog } = facts
  return history.faults.map((fault, index) => {
    const windowEnd = history.faults[index + 1]?.startedAt ?? Number.POSITIVE_INFINITY
    const healedAt = fault.healedAt
    const inWindow = backlog.filter((sample) => sample.at >= fault.startedAt && sample.at < windowEnd)
    const peak = (values: (number | undefined)[]) => {
      const defined = values.filter((value): value is number => value !== undefined)
      return defined.length === 0 ? undefined : Math.max(...defined)
    }
    let first2xx: number | undefined
    let backlogCalm: number | undefined
    if (healedAt !== undefined) {
      const arrived = load.okArrivedAt[firstAtOrAfter(load.okArrivedAt, healedAt)]
      if (arrived !== undefined) first2xx = arrived - healedAt
      // Back to calm after the backlog's peak: right after a heal it may not have risen yet (a gateway
      // restarting has taken nothing in).
      const peakSample = inWindow.reduce<BacklogSample | undefined>(
        (max, sample) => ((sample.backlog ?? -1) > (max?.backlog ?? -1) ? sample : max),
        undefined,
      )
      const from = Math.max(healedAt, peakSample?.at ?? healedAt)
      const calm = backlog.find(
        (sample) =>
          sample.at >= from &&
          sample.at < windowEnd &&
          sample.backlog !== undefined &&
          sample.backlog <= calmBacklog + 10,
      )
      if (calm) backlogCalm = calm.at - healedAt
    }
    return {
      name: fault.name,
      startedAt: fault.startedAt,
      heldMs: healedAt === undefined ? undefined : healedAt - fault.startedAt,
      first2xxAfterHealMs: first2xx,
      backlogCalmAfterHealMs: backlogCalm,
      backlogPeak: peak(inWindow.map((sample) => sample.backlog)),
      deliveriesPendingPeak: peak(inWindow.map((sample) => sample.deliveriesPending)),
      rssAcross: healedAt === undefined ? [] : rssAcrossWindow(facts.rss, fault.startedAt, healedAt),
      notes: fault.notes,
    }
  })
}

/** Builds the report and the JSON; returns the text and whether the run passed. */
export function buildReport(facts: RunFacts): { text: string; json: unknown; passed: boolean } {
  const { options, history, load, observer, receiver, check, drain, restore } = facts
  const good = load.records.filter((record) => record.kind === 'good')
  const acked = good.filter((record) => record.ackedAt !== undefined)
  const firstTry = acked.filter((record) => record.ackedAtAttempt === 1).length
  const firstAckDuplicate = acked.filter((record) => record.answer === 'duplicate').length
  const bad = load.records.filter((record) => record.kind !== 'good')
  const badByKind: Record<string, number> = {}
  for (const record of bad) badByKind[record.kind] = (badByKind[record.kind] ?? 0) + 1
  const latency = latencies(load, history)
  const faults = faultSummaries(facts)
  const backlogPeak = facts.backlog.reduce<BacklogSample | undefined>(
    (max, sample) => ((sample.backlog ?? -1) > (max?.backlog ?? -1) ? sample : max),
    undefined,
  )
  const deliveriesPeak = Math.max(0, ...facts.backlog.map((sample) => sample.deliveriesPending ?? 0))
  const rss = facts.rss.map((series) => ({
    name: series.name,
    pid: series.pid,
    startMb: (series.samples[0]?.[1] ?? 0) / 1024,
    peakMb: Math.max(...series.samples.map(([, kb]) => kb)) / 1024,
    endMb: (series.samples.at(-1)?.[1] ?? 0) / 1024,
  }))
  const invariantsOk = check !== undefined && check.invariants.every((item) => item.ok)
  const passed = facts.failure === undefined && invariantsOk && drain?.drained === true

  const out: string[] = []
  const section = (title: string) => out.push('', title, '='.repeat(title.length))
  out.push(
    `chaos run ${history.startedAtIso}: ${options.short ? 'short' : 'full'}, ${options.rate} deliveries/s, ` +
      `seed ${options.seed}, ${seconds(facts.totalMs)} in all`,
  )
  if (facts.servicesStartupMs)
    out.push(
      `services started in ${Object.entries(facts.servicesStartupMs)
        .map(([name, ms]) => `${name} ${seconds(ms)}`)
        .join(', ')}; logs in ${facts.runDir}`,
    )
  if (facts.failure) out.push('', `RUN FAILED BEFORE ITS END: ${facts.failure}`)

  section('Load')
  out.push(
    table(
      ['what', 'count'],
      [
        ['unique good deliveries sent', String(good.length)],
        ['acknowledged (2xx)', String(acked.length)],
        [
          '  at the first try',
          `${firstTry} (${acked.length ? ((100 * firstTry) / acked.length).toFixed(1) : '-'} %)`,
        ],
        [
          '  first 2xx said duplicate (an earlier try was stored, its answer lost)',
          String(firstAckDuplicate),
        ],
        ['never acknowledged by the end', String(good.length - acked.length)],
        [
          'resent later (same delivery)',
          `${load.resends.sent} (${load.concurrentResends} pairs at once): ${load.resends.duplicate} duplicate, ` +
            `${load.resends.accepted} accepted, ${load.resends.unacked} unanswered`,
        ],
        [
          'bad deliveries',
          `${bad.length} (${Object.entries(badByKind)
            .map(([kind, count]) => `${count} ${kind}`)
            .join(', ')})`,
        ],
      ],
      2,
    ),
  )
  out.push('', 'answers, every attempt:')
  out.push(
    table(
      ['answer', 'count'],
      [...load.labels].sort((a, b) => b[1] - a[1]).map(([label, count]) => [label, String(count)]),
    ),
  )
  out.push('', 'answer time of 2xx answers:')
  out.push(
    table(
      ['when', 'answers', 'p50', 'p99', 'max'],
      [
        ['calm', latency.calm],
        ['under fault (until recovered after the heal)', latency.underFault],
      ].map(([name, summary]) => {
        const s = summary as LatencySummary
        return [name as string, String(s.count), millis(s.p50), millis(s.p99), millis(s.max)]
      }),
    ),
  )

  section('Faults')
  out.push(
    `calm backlog (highest reading in the second half of the calm): ${facts.calmBacklog}; "backlog calm after ` +
      `heal" is when it is back within 10 of that after its peak (- : not before the next fault)`,
  )
  out.push(
    table(
      [
        'fault',
        'at',
        'held',
        'first 2xx after heal',
        'backlog calm after heal',
        'backlog peak',
        'dest. pending peak',
        'RSS at start, peak, heal',
      ],
      faults.map((fault) => [
        fault.name,
        seconds(fault.startedAt),
        seconds(fault.heldMs),
        seconds(fault.first2xxAfterHealMs),
        seconds(fault.backlogCalmAfterHealMs),
        String(fault.backlogPeak ?? '-'),
        String(fault.deliveriesPendingPeak ?? '-'),
        fault.rssAcross.length === 0
          ? '-'
          : fault.rssAcross
              .map(
                (item) =>
                  `${item.atStartMb.toFixed(0)}, ${item.peakMb.toFixed(0)}, ${item.atHealMb.toFixed(0)} MB`,
              )
              .join(', '),
      ]),
    ),
  )
  for (const fault of faults) for (const note of fault.notes) out.push(`  ${fault.name}: ${note}`)

  section('Gateways, backlog, drain')
  out.push(
    `backlog peak: ${backlogPeak?.backlog ?? '-'} webhooks at ${seconds(backlogPeak?.at)}; ` +
      `destination deliveries pending peak: ${deliveriesPeak}`,
  )
  out.push(
    drain
      ? `drain after the load stopped: ${drain.drained ? `done in ${seconds(drain.ms)}` : `NOT DONE after ${seconds(drain.ms)} (${drain.left})`}`
      : 'drain: not reached',
  )
  out.push('')
  out.push(
    table(
      ['gateway process', 'pid', 'RSS start', 'peak', 'end'],
      rss.map((item) => [
        item.name,
        String(item.pid),
        `${item.startMb.toFixed(0)} MB`,
        `${item.peakMb.toFixed(0)} MB`,
        `${item.endMb.toFixed(0)} MB`,
      ]),
    ),
  )
  out.push('', 'GET /health of each API gateway, every second (changes only):')
  const shownHealth = facts.health.slice(0, maxHealthLines)
  for (const change of shownHealth)
    out.push(`  ${seconds(change.at).padStart(8)}  ${change.name.padEnd(10)} ${change.state}`)
  if (facts.health.length > shownHealth.length)
    out.push(`  ... ${facts.health.length - shownHealth.length} more in the JSON`)
  if (facts.crashes.length > 0) {
    out.push('', 'crashes (exited by themselves; restarted like a supervisor would):')
    for (const crash of facts.crashes) {
      const cause =
        crash.lastLines.find((line) => /^\s*\w*Error\b/.test(line)) ?? crash.lastLines.at(-1) ?? ''
      out.push(
        `  ${crash.name} at ${seconds(crash.at)}, exit ${crash.code ?? crash.signal}: ${cause.trim().slice(0, 160)}`,
      )
    }
    if (facts.restartFailures.length > 0)
      out.push(`  restarts that failed and were tried again: ${facts.restartFailures.length}`)
  }
  out.push('')
  out.push(
    table(
      ['SIGTERM', 'exit', 'after'],
      facts.stops.map((stop) => [
        stop.name,
        stop.killed ? 'killed (did not exit)' : String(stop.code ?? stop.signal),
        seconds(stop.ms),
      ]),
    ),
  )

  section('Restore from a dump')
  out.push(
    restore
      ? [
          `pg_dump began at ${seconds(restore.dumpStartedAt)} and took ${seconds(restore.dumpMs)}; ` +
            `${restore.ackedBeforeDump} deliveries were acknowledged before it began`,
          `restore took ${seconds(restore.restoreMs)}; redelivered the ${restore.redelivered.sent} acknowledged since: ` +
            `${restore.redelivered.accepted} accepted, ${restore.redelivered.duplicate} duplicate, ` +
            `${restore.redelivered.unacked} unanswered`,
        ].join('\n')
      : 'not reached',
  )

  section('Consumers')
  out.push(
    `RabbitMQ observer: ${observer.seen.size} distinct events, ${observer.consumed} messages consumed, ` +
      `${observer.reconnects} reconnects, ${observer.unreadable} unreadable, ${observer.mismatchedIds} with messageId != id`,
  )
  out.push(
    `destination: ${receiver.received.size} distinct events verified and received, ` +
      `${receiver.duplicateReceipts()} duplicate receipts (allowed), ${receiver.failed} answered 500, ` +
      `${receiver.hung} left hanging, ${receiver.refused} refused (bad signature)`,
  )
  if (check) {
    out.push(
      `postgres: ${check.rows.total} webhooks (${Object.entries(check.rows.byStatus)
        .map(([status, count]) => `${count} ${status}`)
        .join(', ')}), ${check.storedNotAcked} stored but never acknowledged to a client, ` +
        `${check.publishedEventIds} event ids published; deliveries ${Object.entries(check.deliveriesByStatus)
          .map(([status, count]) => `${count} ${status}`)
          .join(', ')}; ${check.unlistedOnBroker} events on RabbitMQ that no row lists`,
    )
  }

  section('Invariants')
  if (check) {
    out.push(
      table(
        ['invariant', 'count', 'verdict'],
        [
          ['acknowledged (unique good deliveries with a 2xx)', String(acked.length), ''],
          ...check.invariants.map((item) => [item.name, String(item.count), item.ok ? 'ok' : 'FAIL']),
          ['drain finished', drain?.drained ? 'yes' : 'no', drain?.drained ? 'ok' : 'FAIL'],
        ],
      ),
    )
    for (const item of check.invariants.filter((entry) => !entry.ok))
      out.push(`  ${item.name}, first ones:\n${item.examples.map((example) => `    ${example}`).join('\n')}`)
  } else {
    out.push('the final read did not happen')
  }
  out.push('', passed ? 'PASS' : 'FAIL')

  const json = {
    startedAt: history.startedAtIso,
    options,
    totalMs: facts.totalMs,
    passed,
    failure: facts.failure,
    servicesStartupMs: facts.servicesStartupMs,
    load: {
      goodSent: good.length,
      acked: acked.length,
      ackedFirstTry: firstTry,
      firstAckDuplicate,
      neverAcked: good.length - acked.length,
      resends: load.resends,
      concurrentResends: load.concurrentResends,
      bad: badByKind,
      answers: Object.fromEntries(load.labels),
      latency,
      latencySeries: latencySeries(load),
    },
    calmBacklog: facts.calmBacklog,
    faults,
    /** Every second reading: [s since the run began, webhooks not published, deliveries pending]. */
    backlogSeries: facts.backlog
      .filter((_, index) => index % 2 === 0)
      .map((sample) => [
        Math.round(sample.at / 100) / 10,
        sample.backlog ?? null,
        sample.deliveriesPending ?? null,
      ]),
    backlogPeak: backlogPeak ? { backlog: backlogPeak.backlog, at: backlogPeak.at } : undefined,
    deliveriesPendingPeak: deliveriesPeak,
    drain,
    rss,
    /** Every gateway's RSS, each second: [s since the run began, MB]. */
    rssSeries: facts.rss.map((series) => ({
      name: series.name,
      samples: series.samples.map(([at, kb]) => [Math.round(at / 100) / 10, Math.round(kb / 1024)]),
    })),
    stops: facts.stops,
    crashes: facts.crashes,
    health: facts.health,
    restartFailures: facts.restartFailures,
    restore,
    observer: {
      distinct: observer.seen.size,
      consumed: observer.consumed,
      reconnects: observer.reconnects,
      unreadable: observer.unreadable,
      mismatchedIds: observer.mismatchedIds,
    },
    receiver: {
      distinct: receiver.received.size,
      duplicateReceipts: receiver.duplicateReceipts(),
      failed: receiver.failed,
      hung: receiver.hung,
      refused: receiver.refused,
    },
    check,
    logs: facts.runDir,
  }
  return { text: out.join('\n'), json, passed }
}

/** Writes the JSON to `<dir>/<stamp>.json` (the run's start, as the run's log folder is named); returns the path. */
export function writeResult(dir: string, stamp: string, json: unknown): string {
  mkdirSync(dir, { recursive: true })
  const file = join(dir, `${stamp}.json`)
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`)
  return file
}
