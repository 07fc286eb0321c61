import { performance } from 'node:perf_hooks'
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises'
import type { Providers } from '../../providers/index.ts'
import type { Claim, NewWebhook, Store, StoredWebhook, WrittenWith } from '../db/webhooks.ts'
import { claimMayHaveLeftMore } from '../db/webhooks.ts'
import type { Logger } from '../ops/log.ts'
import type { Metrics } from '../ops/metrics.ts'
import { eventsFor, outgoing, type Mapped, type OutgoingEvent } from './events.ts'
import type { HandOff, Received } from './intake.ts'
import { FailedRecords, recordRetryMs } from './failed-records.ts'
import { Linger } from './linger.ts'
import { BrokerUnavailable, type Publisher } from './publisher.ts'
import { startWakers, type Wakers } from './wakers.ts'

export interface WorkerOptions {
  /** How many webhooks one claim takes and publishes side by side. */
  readonly concurrency: number
  /** The safety-net poll, for notifications missed while disconnected and for retries coming due. */
  readonly pollMs: number
  readonly leaseSeconds: number
  /** The number this process's claims carry (see ClaimOwner). */
  readonly claimOwner: number
  /** Delay before each retry; a failure after the last one makes the webhook dead. */
  readonly retryDelaysSeconds: readonly number[]
  readonly log: Logger
  readonly metrics: Metrics
  /**
   * When this process also serves intake: its counts (see Intake.counts). While arrivals find many
   * deliveries waiting for their commit (intake is saturated), the worker keeps to `shareUnderLoad` of the
   * event loop and of the arrivals, so that acknowledging a delivery never waits behind publishing; what it
   * leaves is published as soon as the load eases. A flow intake keeps up with is published (and sent to
   * destinations) at once.
   */
  readonly intakeCounts?: (() => { readonly submitted: number; readonly unansweredSeen: number }) | undefined
  /** The worker's share while intake is saturated (0 to 1; default 0.1). */
  readonly shareUnderLoad?: number | undefined
}

/** A webhook handled, to be recorded published (or given back) with its fan-out. */
export interface HandledWebhook {
  readonly webhookId: string
  /** Its events were written to destinations already (at its commit, an earlier attempt, or while the broker was away). */
  readonly routed: boolean
  readonly eventIds: readonly string[]
  /**
   * Its events, while they are still to be fanned out (not routed). Nothing else holds on to them: kept for
   * the length of a linger, a large payload's objects would outlive the young generation.
   */
  readonly events?: readonly OutgoingEvent[]
}

/**
 * Where the worker records what it did, one statement per batch, together with what else follows from it
 * (the destinations' outbox, destinations/fanout.ts).
 */
export interface Recorder {
  /** Records webhooks published, their events confirmed by RabbitMQ; fans out those not routed yet. */
  published(handled: readonly HandledWebhook[]): Promise<void>
  /** Fans out webhooks the broker did not take and gives them back, due at once, to be published later. */
  released(handled: readonly HandledWebhook[]): Promise<void>
  /**
   * What to write with a group intake commits for this worker: the deliveries of its events, in the same
   * statement. `onRouted` then says whether they were written (not when the destinations changed meanwhile:
   * the record of the publish fans them out instead).
   */
  withCommit?(handled: readonly HandledWebhook[], onRouted: (routed: boolean) => void): WrittenWith
}

/**
 * A webhook to publish: claimed from Postgres, or handed over by intake right after its commit (with its
 * events, mapped on receipt).
 */
type Claimed = Received & Pick<StoredWebhook, 'attempts' | 'routedAt'>

/** One webhook after a publishing attempt: published, or waiting for the broker; failures are recorded. */
type Handled = { readonly kind: 'published' | 'waiting'; readonly record: HandledWebhook }

/** What is kept of a webhook handled until it is recorded: its events only when they are still to be routed. */
const handled = (kind: Handled['kind'], webhook: Claimed, events: readonly OutgoingEvent[]): Handled => {
  const routed = webhook.routedAt !== null
  return {
    kind,
    record: {
      webhookId: webhook.id,
      routed,
      eventIds: events.map((event) => event.id),
      ...(routed ? {} : { events }),
    },
  }
}

/** Webhooks waiting for the broker's confirms at once, at most (see drain). */
const maxPublishing = 1024
/**
 * Bodies held in memory at most, past one batch: those handed over and not yet published (see handOffClaim),
 * and those waiting for confirms (see drain). Each is held with its events, serialized, so 1,024 bodies of
 * 512 KB would hold over a gigabyte. Confirms take tens of milliseconds: 32 MB in flight is hundreds of
 * megabytes a second.
 */
const maxHeldBytes = 32 * 1024 * 1024

/** A published webhook whose deliveries are written: its record only marks it, and nothing waits on that. */
const markOnly = (item: Handled) => item.kind === 'published' && item.record.routed

/** Received -> published: milliseconds when idle, seconds under a burst, minutes while the broker is away. */
const lagBuckets = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800]

/** Webhooks mapped and handed to the broker per turn of the event loop, so requests get in between. */
const publishChunk = 8

/**
 * How long marks of published webhooks whose deliveries are written already wait to be recorded together:
 * nothing waits on them (their lease keeps them from other workers), so at a steady trickle one statement
 * takes a second's worth rather than one each (each statement is a commit Postgres pays a millisecond or two
 * of CPU for). Never more than a quarter of the lease.
 */
const marksLingerMs = 1000
/** Marks that are recorded at once however recent. */
const marksBatch = 500

/** Intake's load is judged over windows at least this long (see holdBackUnderLoad), a probe's shorter. */
const loadWindowMs = 500
const probeWindowMs = 200
/**
 * Deliveries an arrival finds waiting for their commit, on average, from which intake counts as saturated:
 * a steady flow the process keeps up with finds a few (its rate times a commit's few milliseconds).
 */
const saturatedAhead = 16
/**
 * How much more must arrive while the worker holds back for holding back to count as helping intake, during
 * the probe and for as long as it goes on holding back. Senders waiting for answers (a load test's 50
 * connections) sent 1.6 times as many in the probe (npm run bench, the headline). A steady flow whose
 * arrivals were held up by a busy event loop is also read faster while the worker rests, for a moment: 1.18
 * times as many in one probe at a steady 1,000/s, which a gain of a tenth took for senders waiting, holding
 * back for seconds and delaying every event meanwhile.
 */
const probeGain = 1.25
/** After a probe found that holding back did not help, none for this long, doubled up to probeQuietMaxMs. */
const probeQuietMs = 30_000
const probeQuietMaxMs = 600_000

/** Whether the worker holds back for intake, and why (see nextHoldBack). */
export interface HoldBack {
  /** free: publishes at full speed; probing: holds back for one window, to see; holding: holds back. */
  readonly mode: 'free' | 'probing' | 'holding'
  /** The last window found intake saturated. */
  readonly saturated: boolean
  /** Arrivals a second in the last window before the probe. */
  readonly freeRate: number
  /** No probe before this time (performance.now()), and how long the next quiet spell lasts. */
  readonly quietUntil: number
  readonly quietMs: number
}

export const initialHoldBack: HoldBack = {
  mode: 'free',
  saturated: false,
  freeRate: 0,
  quietUntil: 0,
  quietMs: probeQuietMs,
}

/**
 * What the worker does in the next window, from the window just ended. Holding back pays only when it lets
 * more deliveries in: senders that wait for each answer before sending the next (a burst of retries, a load
 * test's fixed connections) send faster when answered sooner. A steady flow arrives at its own rate whatever
 * the gateway does, and holding back would only delay its events, a backlog the worker then has to catch up
 * with at the cost of intake again. So once intake has been saturated for two windows in a row (the first
 * of a burst holds idle time too), the worker holds back for a short window to see (a probe), and goes on
 * holding back only while arrivals stay a quarter above what they were before it (see probeGain); once they
 * do not, in the probe or later, it tries again no sooner than 30 s later, and twice as long after each
 * probe that found nothing, up to 10 minutes.
 */
export function nextHoldBack(
  state: HoldBack,
  window: { readonly now: number; readonly saturated: boolean; readonly arrivalsPerSecond: number },
): HoldBack {
  const { now, saturated, arrivalsPerSecond } = window
  const gained = arrivalsPerSecond >= state.freeRate * probeGain
  const quiet = (): HoldBack => ({
    ...state,
    mode: 'free',
    saturated,
    quietUntil: now + state.quietMs,
    quietMs: Math.min(probeQuietMaxMs, state.quietMs * 2),
  })
  switch (state.mode) {
    case 'probing':
      if (gained) return { ...state, mode: saturated ? 'holding' : 'free', saturated, quietMs: probeQuietMs }
      return quiet()
    case 'holding':
      if (!saturated) return { ...state, mode: 'free', saturated }
      // The gain did not last: what the probe saw was a backlog read at last, not senders answered sooner.
      return gained ? { ...state, saturated } : quiet()
    case 'free':
      return saturated && state.saturated && now >= state.quietUntil
        ? { ...state, mode: 'probing', freeRate: arrivalsPerSecond }
        : { ...state, saturated }
  }
}

/**
 * What changed from one window's decision to the next, as operators see it: what a probe that ended found
 * (more arrived while holding back, or not: then a quiet spell follows), and whether the worker now holds
 * back (probing or holding), when that changed.
 */
export function holdBackChange(
  before: HoldBack,
  after: HoldBack,
): { readonly probe?: 'helped' | 'did_not_help'; readonly holding?: boolean } {
  const probe =
    before.mode === 'probing' ? (after.quietUntil > before.quietUntil ? 'did_not_help' : 'helped') : undefined
  const holding = (before.mode === 'free') !== (after.mode === 'free') ? after.mode !== 'free' : undefined
  return { ...(probe ? { probe } : {}), ...(holding !== undefined ? { holding } : {}) }
}

/**
 * How long the worker rests after a batch: nothing unless intake is saturated (deliveries arrive faster than
 * they are committed); then long enough that the worker's batches fill at most `share` of the event loop's
 * time and publish at most `share` of the arrivals (the broker's work competes for the machine too), at most
 * 250 ms so a webhook is never held long. The rest goes to acknowledging deliveries; what is left is
 * published once the load eases.
 */
export function pauseAfterBatch(options: {
  readonly batchMs: number
  readonly batchSize: number
  readonly arrivalsPerSecond: number
  readonly intakeSaturated: boolean
  readonly share: number
}): number {
  if (!options.intakeSaturated) return 0
  const share = Math.min(1, Math.max(0.01, options.share))
  const forTime = (options.batchMs * (1 - share)) / share
  const forRate =
    options.arrivalsPerSecond > 0 ? (options.batchSize * 1000) / (share * options.arrivalsPerSecond) : 0
  return Math.min(250, Math.max(forTime, forRate))
}

/**
 * Publishes stored webhooks to RabbitMQ with confirms and records the outcome. Two sources: the webhooks
 * this process's intake has just committed, claimed for it in the same statement and handed over with their
 * events, mapped on receipt (take: no claim, re-read or re-parse), and claims from Postgres (retries, replays, other
 * processes' webhooks, the claims of a process that died, a backlog intake did not hand over). Records are
 * written one statement at a time, each taking every outcome that arrived meanwhile, while the next batch is
 * already being published.
 */
export class Worker {
  private runningHanded: Promise<void> | undefined
  private runningClaims: Promise<void> | undefined
  /** Handed over by intake, not yet published: each with when it was claimed. */
  private handed: { readonly webhook: Claimed; readonly claimedAt: number }[] = []
  /** The bodies of the webhooks in `handed`, in bytes. */
  private handedBytes = 0
  /** A claim from Postgres was asked for (wake). */
  private claimWanted = false
  /** The last batch was followed by a pause for intake's sake. */
  private holdingBack = false
  /** The load over the last window (see holdBackUnderLoad): when it began, and what it was. */
  private load = {
    at: performance.now(),
    counts: { submitted: 0, unansweredSeen: 0 },
    arrivalsPerSecond: 0,
    holdBack: initialHoldBack,
  }
  private stopped = false
  private wakers: Wakers | undefined
  /** Outcomes not yet recorded, and the statement recording them. */
  private unrecorded: Handled[] = []
  private recording: Promise<void> | undefined
  private readonly linger = new Linger()
  private readonly failedRecords = new FailedRecords<Handled>()
  /** Webhooks published and waiting for the broker's confirms. */
  private readonly publishing = new Set<Promise<void>>()
  /** The bodies of the webhooks in `publishing`, in bytes. */
  private publishingBytes = 0
  /** Webhooks intake is committing, and whether their deliveries were written with them. */
  private readonly routedAtCommit = new WeakMap<Received, { routed: boolean }>()

  /** The hand-off from this process's intake. */
  readonly handOff: HandOff = {
    claim: () => this.handOffClaim(),
    writeWith: (webhooks) => this.writeWith(webhooks),
    take: (webhooks) => this.take(webhooks),
    wake: () => this.wake(),
  }

  constructor(
    private readonly store: Pick<
      Store,
      'claimDue' | 'reclaimAbandoned' | 'markFailed' | 'release' | 'listen' | 'hasDestinations'
    >,
    private readonly recorder: Recorder,
    private readonly publisher: Pick<Publisher, 'broker' | 'connected' | 'whenConnected' | 'publish'>,
    private readonly providers: Providers,
    private readonly options: WorkerOptions,
  ) {}

  async start(): Promise<void> {
    const { claimOwner, log, pollMs } = this.options
    if (this.options.intakeCounts) this.reportHoldBack(undefined, initialHoldBack)
    this.wakers = startWakers({
      name: 'worker',
      rows: 'webhooks',
      pollMs,
      log,
      claimOwner,
      store: this.store,
      wake: () => this.wake(),
    })
    await this.wakers.listening
    this.wake()
  }

  /**
   * The claim intake should write with its next group, so that its webhooks are handed over (take): only
   * while the broker is there and what was handed over is not piling up (16 claims' worth, or maxHeldBytes of
   * bodies: a burst that outlasts that leaves the rest in Postgres, for claims as the load allows).
   */
  handOffClaim(): Claim | undefined {
    if (this.stopped || !this.publisher.connected) return undefined
    if (this.handed.length >= this.options.concurrency * 16 || this.handedBytes >= maxHeldBytes)
      return undefined
    return { owner: this.options.claimOwner, leaseSeconds: this.options.leaseSeconds }
  }

  /**
   * What the recorder writes with a group intake is about to commit claimed for this worker: the deliveries
   * of the events mapped on receipt. A webhook whose handler failed is left out; its failure is recorded as
   * its attempt's, once committed.
   */
  private writeWith(webhooks: readonly Received[]): WrittenWith | undefined {
    if (!this.recorder.withCommit) return undefined
    const records: HandledWebhook[] = []
    const entries: { routed: boolean }[] = []
    for (const webhook of webhooks) {
      if (!webhook.mapped || !('events' in webhook.mapped)) continue
      const entry = { routed: false }
      this.routedAtCommit.set(webhook, entry)
      entries.push(entry)
      const { events } = webhook.mapped
      records.push({
        webhookId: webhook.id,
        routed: false,
        eventIds: events.map((event) => event.id),
        events,
      })
    }
    return this.recorder.withCommit(records, (routed) => entries.forEach((entry) => (entry.routed = routed)))
  }

  /** Webhooks intake committed with handOffClaim's claim: published from memory (or given back at stop). */
  take(webhooks: readonly Received[]): void {
    const claimedAt = performance.now()
    for (const webhook of webhooks) {
      const routed = this.routedAtCommit.get(webhook)?.routed === true
      this.handed.push({
        webhook: { ...webhook, attempts: 0, routedAt: routed ? webhook.receivedAt : null },
        claimedAt,
      })
      this.handedBytes += webhook.body.length
    }
    if (!this.stopped) this.run()
  }

  /** Asks for a claim of due webhooks; cheap to call often (a notification, the poll, a replay). */
  wake(): void {
    if (this.stopped) return
    this.claimWanted = true
    this.run()
  }

  /**
   * Runs the two loops that are due: one publishes what was handed over, the other claims from Postgres.
   * Apart, so that a claim waiting on a Postgres that stopped answering never holds up what intake has just
   * committed and handed over.
   */
  private run(): void {
    if (this.handed.length > 0)
      this.runningHanded ??= this.drain(() => this.takeHanded(this.batchLimit())).finally(() => {
        this.runningHanded = undefined
        if (!this.stopped && this.handed.length > 0) this.run()
      })
    if (this.claimWanted)
      this.runningClaims ??= this.drain(() => this.claim(this.batchLimit())).finally(() => {
        this.runningClaims = undefined
        if (!this.stopped && this.claimWanted) this.run()
      })
  }

  /** A batch's most webhooks: small while holding back (each blocks the event loop for less time). */
  private batchLimit(): number {
    return this.holdingBack ? publishChunk : this.options.concurrency
  }

  /**
   * Stops claiming and waits up to `graceMs` for what is in flight to be published and recorded. What is
   * still in flight then (a stalled database or broker) stays claimed until its lease runs out, and is
   * published by whichever worker claims it next.
   */
  async stop(graceMs = 5000): Promise<void> {
    this.stopped = true
    this.linger.end()
    const wakersStopped = this.wakers?.stop()
    const deadline = new Promise((resolve) => setTimeout(resolve, graceMs).unref())
    const finished = async () => {
      await Promise.all([wakersStopped, this.runningHanded, this.runningClaims, ...this.publishing])
      // Handed over and not published: given back, due at once, for the other gateways.
      const left = this.handed.splice(0).map((item) => item.webhook.id)
      this.handedBytes = 0
      if (left.length > 0)
        await this.store.release(this.options.claimOwner, left).catch((error: unknown) => {
          this.options.log.warn('worker: could not give back unpublished webhooks; their lease will', {
            error,
          })
        })
      while (this.recording) await this.recording
    }
    await Promise.race([finished(), deadline])
  }

  /**
   * Takes batches (handed over, or claimed) and starts publishing them, without waiting for the broker's
   * confirms before the next batch: the confirms of persistent messages wait for RabbitMQ's disk, tens of
   * milliseconds under load, and a worker waiting on each batch's would publish no faster than a batch per
   * fsync. Up to `maxPublishing` webhooks, and `maxHeldBytes` of bodies, wait for confirms at once; each
   * is queued for its record as its own confirms arrive.
   */
  private async drain(next: () => Claimed[] | undefined | Promise<Claimed[] | undefined>): Promise<void> {
    while (!this.stopped) {
      const batchStarted = performance.eventLoopUtilization()
      if (this.publishing.size >= maxPublishing || this.publishingBytes >= maxHeldBytes) {
        await Promise.race(this.publishing)
        continue
      }
      const batch = await next()
      if (batch === undefined) return
      for (let at = 0; at < batch.length; at += publishChunk) {
        if (at > 0) await nextTurn()
        for (const webhook of batch.slice(at, at + publishChunk)) {
          const bytes = webhook.body.length
          this.publishingBytes += bytes
          const published: Promise<void> = this.publish(webhook).then((handled) => {
            this.publishing.delete(published)
            this.publishingBytes -= bytes
            if (handled) this.record([handled])
          })
          this.publishing.add(published)
        }
      }
      // Records lag behind (Postgres stalls): no more publishing than a few batches ahead of them.
      while (this.unrecorded.length >= marksBatch * 2 && this.recording) await this.recording
      // The batch's cost is the event loop's busy time while it ran, not its wall time.
      await this.holdBackUnderLoad(performance.eventLoopUtilization(batchStarted).active, batch.length)
    }
  }

  /**
   * Up to `limit` handed-over webhooks, undefined when none is left. One held so long that its claim may
   * have lapsed (a stalled broker) is left to whichever worker claims it again, rather than published twice.
   */
  private takeHanded(limit: number): Claimed[] | undefined {
    if (this.handed.length === 0) return undefined
    const fresh = performance.now() - (this.options.leaseSeconds * 1000) / 2
    const taken = this.handed.splice(0, limit)
    for (const item of taken) this.handedBytes -= item.webhook.body.length
    return taken.filter((item) => item.claimedAt > fresh).map((item) => item.webhook)
  }

  /**
   * A claim from Postgres, when one was asked for: up to `limit` due webhooks, or [] when the claim was
   * taken up otherwise (routing while the broker is away). Undefined when there is nothing to do.
   */
  private async claim(limit: number): Promise<Claimed[] | undefined> {
    const { log, leaseSeconds, claimOwner } = this.options
    if (!this.claimWanted) return undefined
    this.claimWanted = false
    if (!this.publisher.connected) {
      // Destinations need nothing from the broker: route what is due to them meanwhile.
      if (!(await this.routeWhileBrokerAway())) {
        // Wait for the broker rather than spend attempts on webhooks that cannot be published.
        await Promise.race([
          this.publisher.whenConnected(),
          new Promise((resolve) => setTimeout(resolve, this.options.pollMs)),
        ])
      }
      this.claimWanted = true
      return []
    }
    try {
      const claimed = await this.store.claimDue(claimOwner, limit, leaseSeconds)
      // A full claim, or one stopped by its byte budget, may have left more due; a short one took everything
      // (until woken again).
      if (claimMayHaveLeftMore(claimed, limit)) this.claimWanted = true
      return claimed.length > 0 ? claimed : undefined
    } catch (error) {
      log.warn('worker: cannot claim webhooks, postgres unavailable', { error })
      return undefined
    }
  }

  /**
   * Queues outcomes to be recorded: one statement at a time, each taking everything queued so far, so that
   * records group by themselves as the rate grows. Should one fail, the leases bring its webhooks back and
   * the same event ids go out again.
   */
  private record(handled: readonly Handled[]): void {
    if (handled.length === 0) return
    this.unrecorded.push(...handled)
    if (!handled.every(markOnly) || this.unrecorded.length >= marksBatch) this.linger.end()
    this.recording ??= this.flushRecords().finally(() => (this.recording = undefined))
  }

  private async flushRecords(): Promise<void> {
    while (this.unrecorded.length > 0) {
      if (!this.stopped && this.unrecorded.length < marksBatch && this.unrecorded.every(markOnly))
        await this.linger.wait(Math.min(marksLingerMs, this.options.leaseSeconds * 250))
      const batch = this.unrecorded.splice(0, 1000)
      const recordOf = (item: Handled) => item.record
      const failed = (
        await Promise.all(
          (['published', 'waiting'] as const).map((kind) => {
            const items = batch.filter((item) => item.kind === kind)
            const records = items.map(recordOf)
            const recorded =
              kind === 'published' ? this.recorder.published(records) : this.recorder.released(records)
            return recorded.then(() => []).catch((error: unknown) => this.recordFailed(kind, items, error))
          }),
        )
      ).flat()
      if (failed.length > 0) {
        this.unrecorded.unshift(...failed)
        await sleep(recordRetryMs)
      }
    }
  }

  /**
   * What of `items` to try recording again after `error`: everything while their claims have time left (a
   * quarter of the lease since the first failure), so that a moment without Postgres does not leave them to
   * be published again when their lease ends. Nothing once stopped, or once that time is up.
   */
  private recordFailed(kind: Handled['kind'], items: readonly Handled[], error: unknown): Handled[] {
    const { log, leaseSeconds } = this.options
    const retried = this.stopped ? [] : this.failedRecords.retried(items, leaseSeconds * 250)
    if (retried.length > 0)
      log.warn(
        `worker: could not record ${kind === 'published' ? 'published webhooks' : 'webhooks to give back'}; trying again`,
        {
          webhooks: retried.length,
          error,
        },
      )
    if (retried.length === items.length) return retried
    if (kind === 'published')
      log.error('worker: could not record published webhooks; they will be published again', { error })
    else log.warn('worker: could not give back webhooks the broker did not take; their lease will', { error })
    return retried
  }

  /**
   * While the broker is away: claims webhooks not yet routed, maps them and writes their deliveries to
   * destinations, then gives them back for publishing later (no attempt spent). False when there was
   * nothing to do (no destinations, nothing unrouted, or Postgres unavailable).
   */
  private async routeWhileBrokerAway(): Promise<boolean> {
    const { log, concurrency, leaseSeconds, claimOwner } = this.options
    try {
      if (!(await this.store.hasDestinations())) return false
      const claimed = await this.store.claimDue(claimOwner, concurrency, leaseSeconds, { unroutedOnly: true })
      if (claimed.length === 0) return false
      const mapped: Handled[] = []
      for (const webhook of claimed) {
        const events = await this.map(webhook)
        if (events) mapped.push(handled('waiting', webhook, events))
      }
      this.record(mapped)
      await this.recording
      return true
    } catch (error) {
      log.warn('worker: cannot route webhooks to destinations, postgres unavailable', { error })
      return false
    }
  }

  /**
   * Pauses after a batch that kept the event loop busy `batchMs` while intake is saturated (see
   * intakeCounts) and holding back lets more deliveries in (see nextHoldBack), judged over the last half
   * second at least, so that a steady flow's bursts never hold publishing back.
   */
  private async holdBackUnderLoad(batchMs: number, batchSize: number): Promise<void> {
    const now = performance.now()
    if (now - this.load.at >= (this.load.holdBack.mode === 'probing' ? probeWindowMs : loadWindowMs)) {
      const counts = this.options.intakeCounts?.() ?? this.load.counts
      const arrived = counts.submitted - this.load.counts.submitted
      const ahead = arrived > 0 ? (counts.unansweredSeen - this.load.counts.unansweredSeen) / arrived : 0
      const arrivalsPerSecond = (arrived * 1000) / (now - this.load.at)
      const holdBack = nextHoldBack(this.load.holdBack, {
        now,
        saturated: ahead >= saturatedAhead,
        arrivalsPerSecond,
      })
      this.reportHoldBack(this.load.holdBack, holdBack)
      this.load = { at: now, counts, arrivalsPerSecond, holdBack }
    }
    const pauseMs = pauseAfterBatch({
      batchMs,
      batchSize,
      arrivalsPerSecond: this.load.arrivalsPerSecond,
      intakeSaturated: this.load.holdBack.mode !== 'free',
      share: this.options.shareUnderLoad ?? 0.1,
    })
    this.holdingBack = pauseMs > 0
    // The next window includes this pause: intake that eased during it lets the worker run at full speed.
    if (pauseMs > 0) await sleep(pauseMs, undefined, { ref: false })
  }

  /**
   * What the hold-back decided, for operators: whether the worker holds back now, and what each probe found.
   * Without `before` (at the start), the gauge is set to what `after` says.
   */
  private reportHoldBack(before: HoldBack | undefined, after: HoldBack): void {
    const { metrics } = this.options
    const { probe, holding } = before ? holdBackChange(before, after) : { holding: after.mode !== 'free' }
    if (probe)
      metrics.count(
        'worker_hold_back_probes_total',
        'Probes of whether holding the worker back lets more deliveries in, by what they found',
        { outcome: probe },
      )
    if (holding !== undefined)
      metrics.setGauge(
        'worker_holding_back',
        'Whether the worker holds back for intake now (probing or holding: 1)',
        {},
        holding ? 1 : 0,
      )
  }

  /** Publishes one webhook's events; undefined when it failed (the failure is then already recorded). */
  private async publish(webhook: Claimed): Promise<Handled | undefined> {
    const { log, metrics } = this.options
    const events = await this.map(webhook)
    if (!events) return undefined
    try {
      await this.publisher.publish(events)
      if (!this.publisher.broker) return handled('published', webhook, events)
      metrics.count(
        'events_published_total',
        'Events published to RabbitMQ (confirmed by the broker)',
        { provider: webhook.provider },
        events.length,
      )
      metrics.observe(
        'webhook_publish_lag_seconds',
        'From receiving a webhook to the broker confirming its events',
        { provider: webhook.provider },
        (Date.now() - webhook.receivedAt.getTime()) / 1000,
        lagBuckets,
      )
      log.debug('published', { id: webhook.id, events: events.map((event) => event.type) })
      return handled('published', webhook, events)
    } catch (error) {
      metrics.count('events_publish_failures_total', 'Publishing attempts the broker did not confirm', {
        provider: webhook.provider,
        reason: error instanceof BrokerUnavailable ? 'broker_unavailable' : 'rejected',
      })
      if (error instanceof BrokerUnavailable) {
        log.warn('worker: broker unavailable, webhook waits', { id: webhook.id, error })
        return handled('waiting', webhook, events)
      }
      await this.recordFailure(webhook, error)
      return undefined
    }
  }

  /** A webhook's events (mapped on receipt, or now), or undefined when its handler failed (then recorded). */
  private async map(webhook: Claimed): Promise<readonly OutgoingEvent[] | undefined> {
    try {
      const mapped: Mapped = webhook.mapped ?? { events: this.eventsOf(webhook) }
      if ('error' in mapped) throw mapped.error
      return mapped.events
    } catch (error) {
      await this.recordFailure(webhook, error)
      return undefined
    }
  }

  /** A webhook's events, mapped from its stored body; throws when its provider is unknown or its handler fails. */
  private eventsOf(webhook: NewWebhook): OutgoingEvent[] {
    const provider = this.providers[webhook.provider]
    if (!provider) throw new Error(`no provider named ${webhook.provider}`)
    return eventsFor(webhook, provider).map(outgoing)
  }

  /** Counts a failed attempt: retried on the schedule, or dead after the last one. */
  private async recordFailure(webhook: Claimed, error: unknown): Promise<void> {
    const { log, metrics, retryDelaysSeconds } = this.options
    const message = error instanceof Error ? error.message : String(error)
    const retryInSeconds = retryDelaysSeconds[webhook.attempts]
    metrics.count('webhook_failures_total', 'Failed publishing attempts', { provider: webhook.provider })
    if (retryInSeconds === undefined) {
      metrics.count('webhooks_dead_total', 'Webhooks that ran out of attempts', {
        provider: webhook.provider,
      })
      log.error('worker: webhook is dead', { id: webhook.id, attempts: webhook.attempts + 1, error: message })
    } else {
      log.warn('worker: attempt failed, will retry', {
        id: webhook.id,
        attempt: webhook.attempts + 1,
        retryInSeconds,
        error: message,
      })
    }
    await this.store.markFailed(webhook.id, message, retryInSeconds).catch((storeError: unknown) => {
      log.error('worker: could not record the failure; the lease will bring it back', {
        id: webhook.id,
        error: storeError,
      })
    })
  }
}
