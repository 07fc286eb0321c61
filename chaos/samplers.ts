import { readFileSync } from 'node:fs'
import postgres from 'postgres'
import type { GatewayProcess } from './gateways.ts'
import type { History } from './history.ts'

/**
 * What is sampled while the run goes on: the backlog in Postgres (webhooks not yet published) every 500 ms,
 * tolerating Postgres being down, and the resident memory of every gateway process every second.
 */

/** One backlog reading; undefined when Postgres did not answer. */
export interface BacklogSample {
  readonly at: number
  /** Webhooks not yet published (pending or retrying). */
  readonly backlog: number | undefined
  /** Deliveries to destinations not yet sent. */
  readonly deliveriesPending: number | undefined
}

/** A gateway's /health changed: `ok`, `degraded (redis down)`, `503 (postgres down)`, `no answer`. */
export interface HealthChange {
  readonly at: number
  readonly name: string
  readonly state: string
}

export interface RssSeries {
  readonly name: string
  readonly pid: number
  /** [ms since the run began, kB]. */
  readonly samples: [number, number][]
}

const backlogEveryMs = 500
const rssEveryMs = 1000
const healthEveryMs = 1000
const queryTimeoutMs = 2000

/** A small client of the run's database, for the samplers and the final read; errors are the caller's. */
export function connectRunDatabase(url: string): postgres.Sql {
  return postgres(url, {
    max: 2,
    connect_timeout: 2,
    // postgres.js' own backoff after failed connections grows to 20 s: after Postgres restarted, the backlog
    // read "down" for longer than a fault's recovery window, and the run said Postgres had not recovered.
    backoff: (retries: number) => Math.min(1, 0.05 * 2 ** retries),
    idle_timeout: 5,
    onnotice: () => {},
    connection: { application_name: 'chaos observer', statement_timeout: 30_000 },
  })
}

/** Rejects after `ms`, so a stalled Postgres cannot stall the sampler. */
export function within<T>(work: Promise<T>, ms: number): Promise<T> {
  return Promise.race([
    work,
    new Promise<T>((_, reject) =>
      setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref(),
    ),
  ])
}

export class Samplers {
  readonly backlog: BacklogSample[] = []
  readonly rss = new Map<number, RssSeries>()
  readonly health: HealthChange[] = []
  private readonly lastHealth = new Map<number, string>()
  private readonly probing = new Set<number>()
  private timers: NodeJS.Timeout[] = []
  private sampling = false

  constructor(
    private readonly sql: postgres.Sql,
    private readonly history: History,
    private readonly gateways: () => readonly GatewayProcess[],
  ) {}

  start(): void {
    this.timers = [
      setInterval(() => void this.sampleBacklog(), backlogEveryMs),
      setInterval(() => this.sampleRss(), rssEveryMs),
      setInterval(() => this.sampleHealth(), healthEveryMs),
    ]
    this.sampleRss()
  }

  stop(): void {
    for (const timer of this.timers) clearInterval(timer)
    this.timers = []
  }

  /** The backlogs now, or undefined when Postgres does not answer. */
  async backlogNow(): Promise<{ backlog: number; deliveriesPending: number } | undefined> {
    try {
      const [row] = await within(
        this.sql<{ backlog: number; deliveriesPending: number }[]>`
          SELECT (SELECT count(*) FROM webhooks WHERE status IN ('pending', 'retrying'))::int AS backlog,
                 (SELECT count(*) FROM deliveries WHERE status = 'pending')::int AS "deliveriesPending"`,
        queryTimeoutMs,
      )
      return row
    } catch {
      return undefined
    }
  }

  private async sampleBacklog(): Promise<void> {
    if (this.sampling) return
    this.sampling = true
    const at = this.history.now()
    const now = await this.backlogNow()
    this.backlog.push({ at, backlog: now?.backlog, deliveriesPending: now?.deliveriesPending })
    this.sampling = false
  }

  /** The last /health state seen of the gateway with `pid` (`ok`, `503 (postgres down)`, ...). */
  healthOf(pid: number): string | undefined {
    return this.lastHealth.get(pid)
  }

  /** GET /health of every API gateway; only changes are kept. */
  private sampleHealth(): void {
    for (const gateway of this.gateways()) {
      if (gateway.role === 'worker' || this.probing.has(gateway.pid)) continue
      this.probing.add(gateway.pid)
      void healthState(gateway.port)
        .then((state) => {
          if (this.lastHealth.get(gateway.pid) === state) return
          this.lastHealth.set(gateway.pid, state)
          this.health.push({ at: this.history.now(), name: gateway.name, state })
        })
        .finally(() => this.probing.delete(gateway.pid))
    }
  }

  private sampleRss(): void {
    const at = this.history.now()
    for (const gateway of this.gateways()) {
      const kb = rssKb(gateway.pid)
      if (kb === undefined) continue
      let series = this.rss.get(gateway.pid)
      if (!series) {
        series = { name: gateway.name, pid: gateway.pid, samples: [] }
        this.rss.set(gateway.pid, series)
      }
      series.samples.push([at, kb])
    }
  }
}

/** VmRSS of `pid` in kB, from /proc; undefined once the process is gone. */
function rssKb(pid: number): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match ? Number(match[1]) : undefined
  } catch {
    return undefined
  }
}

async function healthState(port: number): Promise<string> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(1500) })
    const body = (await response.json()) as { status?: string; checks?: Record<string, string> }
    const down = Object.entries(body.checks ?? {})
      .filter(([, state]) => state !== 'up')
      .map(([name]) => name)
    const detail = down.length > 0 ? ` (${down.join(', ')} down)` : ''
    return response.status === 200 ? `${body.status ?? 'ok'}${detail}` : `${response.status}${detail}`
  } catch {
    return 'no answer'
  }
}
