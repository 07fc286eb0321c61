import type postgres from 'postgres'
import type { CrashRecord, StopRecord } from './gateways.ts'
import type { FaultRecord } from './history.ts'
import type { LivenessRestart } from './nemesis.ts'
import type { DeliveryRecord } from './load.ts'
import type { Observer } from './observer.ts'
import type { Receiver } from './receiver.ts'

/**
 * The final read, once everything is healed and drained: what Postgres, RabbitMQ and the destination hold,
 * set against what the clients were told. Every invariant counts its offenders and names the first few.
 */

export interface Invariant {
  readonly name: string
  readonly count: number
  /** The first few offenders: delivery keys or event ids. */
  readonly examples: readonly string[]
  readonly ok: boolean
}

export interface FinalRead {
  readonly invariants: readonly Invariant[]
  readonly rows: { readonly total: number; readonly byStatus: Readonly<Record<string, number>> }
  /** Rows stored for a delivery the clients never saw acknowledged (a lost answer, or the run's end). */
  readonly storedNotAcked: number
  readonly deliveriesByStatus: Readonly<Record<string, number>>
  /** CloudEvent ids published according to Postgres. */
  readonly publishedEventIds: number
  /** Distinct CloudEvent ids seen on RabbitMQ that no row lists (from a webhook no row has any more). */
  readonly unlistedOnBroker: number
}

interface Row {
  readonly provider: string
  readonly eventKey: string
  readonly status: string
  readonly publishedEventIds: string[]
}

const exampleCount = 5
const recoveryBoundMs = 60_000

function invariant(name: string, offenders: readonly string[]): Invariant {
  return {
    name,
    count: offenders.length,
    examples: offenders.slice(0, exampleCount),
    ok: offenders.length === 0,
  }
}

const rowKey = (provider: string, key: string) => `${provider} ${key}`

export async function finalRead(input: {
  readonly sql: postgres.Sql
  readonly destinationId: string
  readonly records: readonly DeliveryRecord[]
  readonly observer: Observer
  readonly receiver: Receiver
  readonly stops: readonly StopRecord[]
  readonly crashes: readonly CrashRecord[]
  readonly resendsAccepted: readonly {
    readonly seq: number
    readonly ackedAt: number
    readonly answeredAt: number
  }[]
  readonly faults: readonly FaultRecord[]
  readonly livenessRestarts: readonly LivenessRestart[]
  /** When each 2xx answer arrived, ascending. */
  readonly okArrivedAt: readonly number[]
  /** The restore, if there was one: rows acknowledged after the dump began were lost when it began. */
  readonly restore: { readonly dumpStartedAt: number; readonly restoreBeganAt: number } | undefined
}): Promise<FinalRead> {
  const { sql, destinationId, records, observer, receiver, stops, crashes, restore } = input
  const rows = await sql<Row[]>`
    SELECT provider, event_key AS "eventKey", status, published_event_ids AS "publishedEventIds" FROM webhooks`
  const deliveries = await sql<{ eventId: string; status: string }[]>`
    SELECT event_id::text AS "eventId", status FROM deliveries WHERE destination_id = ${destinationId}`

  const byKey = new Map<string, Row>()
  const byStatus: Record<string, number> = {}
  const published = new Set<string>()
  for (const row of rows) {
    byKey.set(rowKey(row.provider, row.eventKey), row)
    byStatus[row.status] = (byStatus[row.status] ?? 0) + 1
    for (const id of row.publishedEventIds) published.add(id)
  }

  const acked = records.filter((record) => record.kind === 'good' && record.ackedAt !== undefined)
  const ackedKeys = new Set(acked.map((record) => rowKey(record.provider, record.key ?? '')))
  const lost: string[] = []
  const unaccounted: string[] = []
  for (const record of acked) {
    const key = rowKey(record.provider, record.key ?? '')
    const row = byKey.get(key)
    if (!row) lost.push(key)
    else if (row.status !== 'published' && row.status !== 'dead') unaccounted.push(`${key} (${row.status})`)
  }

  // One provider event, one CloudEvent id per type, however often it was retried, replayed or redelivered.
  const idsPerEvent = new Map<string, Set<string>>()
  for (const [id, seen] of observer.seen) {
    const event = `${seen.provider} ${seen.providerEventId} ${seen.type}`
    const ids = idsPerEvent.get(event) ?? new Set<string>()
    ids.add(id)
    idsPerEvent.set(event, ids)
  }
  const multiplyPublished = [...idsPerEvent]
    .filter(([, ids]) => ids.size > 1)
    .map(([event, ids]) => `${event}: ${[...ids].join(', ')}`)

  const wronglyAcked = records
    .filter((record) => record.kind !== 'good' && record.wronglyAcked > 0)
    .map((record) => `#${record.seq} ${record.kind} ${record.provider} ${record.event}`)

  const notReceived = [...published].filter((id) => !receiver.received.has(id))
  const notOnBroker = [...published].filter((id) => !observer.seen.has(id))
  const unlistedOnBroker = [...observer.seen.keys()].filter((id) => !published.has(id)).length
  const badStops = stops
    .filter((stop) => stop.code !== 0 || stop.ms > 10_000)
    .map(
      (stop) =>
        `${stop.name}: ${stop.killed ? 'killed' : `exit ${stop.code ?? stop.signal}`} after ${Math.round(stop.ms)} ms`,
    )

  // A resend of an acknowledged delivery must be a duplicate, unless the restore lost its row in between.
  const unexplainedAccepted = input.resendsAccepted
    .filter(
      (resend) =>
        !restore || resend.ackedAt < restore.dumpStartedAt || resend.answeredAt < restore.restoreBeganAt,
    )
    .map((resend) => {
      const record = records[resend.seq]
      return `#${resend.seq} ${record?.provider ?? ''} ${record?.key ?? ''}`
    })

  // Availability: once a fault is healed, deliveries must be acknowledged again within a minute.
  const unrecovered = input.faults
    .filter((fault) => {
      if (fault.healedAt === undefined) return true
      const healedAt = fault.healedAt
      const first = input.okArrivedAt.find((at) => at >= healedAt)
      return first === undefined || first - healedAt > recoveryBoundMs
    })
    .map((fault) => {
      const healedAt = fault.healedAt ?? 0
      const first = input.okArrivedAt.find((at) => at >= healedAt)
      return `${fault.name}: ${first === undefined ? 'no 2xx after the heal' : `first 2xx ${((first - healedAt) / 1000).toFixed(1)} s after the heal`}`
    })

  const deliveriesByStatus: Record<string, number> = {}
  for (const delivery of deliveries)
    deliveriesByStatus[delivery.status] = (deliveriesByStatus[delivery.status] ?? 0) + 1

  return {
    invariants: [
      invariant('lost: acknowledged, no row in Postgres', lost),
      invariant('unaccounted: acknowledged, row neither published nor dead', unaccounted),
      invariant('published under more than one CloudEvent id', multiplyPublished),
      invariant(
        'resends of acknowledged deliveries answered accepted (no restore between)',
        unexplainedAccepted,
      ),
      invariant('bad requests acknowledged (forged, stale, oversized, malformed)', wronglyAcked),
      invariant('destination deliveries lost: published, not verified-received by the end', notReceived),
      invariant('faults after which no 2xx came within 60 s of the heal', unrecovered),
      invariant(
        'gateways stuck after a heal (no 2xx, /health not ok), restarted by the liveness check',
        input.livenessRestarts.map(
          (restart) =>
            `${restart.name} at ${(restart.at / 1000).toFixed(1)} s, after "${restart.after}": /health ${restart.health}`,
        ),
      ),
      invariant('events published (per Postgres), never seen on RabbitMQ', notOnBroker),
      invariant(
        'destination requests whose signature did not verify',
        receiver.refused > 0 ? [`${receiver.refused} requests`] : [],
      ),
      invariant('SIGTERM: not exit 0 within 10 s', badStops),
      invariant(
        'gateway processes that crashed (exited by themselves)',
        crashes.map(
          (crash) =>
            `${crash.name} at ${(crash.at / 1000).toFixed(1)} s, exit ${crash.code ?? crash.signal}: ` +
            (crash.lastLines.find((line) => /Error|error/.test(line)) ?? crash.lastLines.at(-1) ?? '').slice(
              0,
              200,
            ),
        ),
      ),
    ],
    rows: { total: rows.length, byStatus },
    storedNotAcked: [...byKey.keys()].filter((key) => !ackedKeys.has(key)).length,
    deliveriesByStatus,
    publishedEventIds: published.size,
    unlistedOnBroker,
  }
}
