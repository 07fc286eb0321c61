import type { Claim, InsertResult, NewWebhook, Store, WrittenWith } from '../db/webhooks.ts'
import type { Mapped } from './events.ts'

/**
 * A delivery to commit, with its events when it was mapped on receipt (a process whose worker may publish
 * it straight after the commit): they go with the webhook to the worker, never to the database.
 */
export interface Received extends NewWebhook {
  readonly mapped?: Mapped | undefined
}

interface Waiting {
  readonly webhook: Received
  readonly resolve: (result: InsertResult) => void
  readonly reject: (error: unknown) => void
  expired: boolean
}

export interface IntakeOptions {
  /** Most rows in one INSERT. */
  readonly maxBatch: number
  /** Commits in flight at once; requests arriving meanwhile join the next group. */
  readonly maxInFlight: number
  /** How long a request waits for its commit before it is answered "storage unavailable". */
  readonly timeoutMs: number
  /** This process's worker, when it runs one: what intake commits is handed over to it (see HandOff). */
  readonly handOff?: HandOff | undefined
}

/**
 * The in-process hand-off to a worker: a group is written already claimed for it (the claim it asks for,
 * if any), and once committed its new webhooks are handed over, parsed bodies and all, to be published
 * from memory. A group written unclaimed (no claim asked for: the broker is away, or the worker is behind)
 * wakes the worker to claim it from Postgres instead.
 */
export interface HandOff {
  claim(): Claim | undefined
  /** What to write with a claimed group, in its commit (the deliveries of its events to destinations). */
  writeWith(webhooks: readonly Received[]): WrittenWith | undefined
  take(webhooks: readonly Received[]): void
  wake(): void
}

export class StorageTimeout extends Error {
  override readonly name = 'StorageTimeout'
}

/**
 * Group commit: requests that arrive while a commit is in flight wait and share the next one, a
 * single multi-row INSERT. A lone request is written at once, so batching costs no latency when idle.
 *
 * Every request is answered within `timeoutMs`, and a commit that takes longer gives up its slot, so a
 * stalled database cannot hold requests past the providers' own timeouts. A commit that lands after its
 * requests were told 503 is harmless: the providers' retries are answered `duplicate`.
 */
export class Intake {
  private readonly waiting: Waiting[] = []
  private inFlight = 0
  private submissions = 0
  /** Deliveries submitted and not answered yet, and their sum over every submission (see counts). */
  private unanswered = 0
  private unansweredSeen = 0
  private drained: (() => void) | undefined

  constructor(
    private readonly store: Pick<Store, 'insertWebhooks'>,
    private readonly options: IntakeOptions,
  ) {}

  /**
   * How many webhooks were submitted so far, and the sum, over them, of how many earlier ones were still
   * waiting for their commit when each arrived: between two readings, the second over the first is how many
   * an arrival found ahead of it. A handful at a steady flow; dozens when deliveries arrive faster than they
   * are committed (a burst, a saturated process).
   */
  get counts(): { readonly submitted: number; readonly unansweredSeen: number } {
    return { submitted: this.submissions, unansweredSeen: this.unansweredSeen }
  }

  /**
   * Whether deliveries received now should be mapped to their events on receipt: when this process's worker
   * would take them straight after their commit. Not while it would not (the broker away, a backlog): the
   * mapping would be work on the request path for nothing.
   */
  get mapsOnReceipt(): boolean {
    return this.options.handOff?.claim() !== undefined
  }

  /** Resolves once the webhook is committed (or found to be a duplicate); rejects if storage failed. */
  submit(webhook: Received): Promise<InsertResult> {
    this.submissions++
    this.unansweredSeen += this.unanswered
    this.unanswered++
    return new Promise((resolve, reject) => {
      let answered = false
      const answer = () => {
        clearTimeout(timer)
        if (!answered) this.unanswered--
        answered = true
      }
      const entry: Waiting = {
        webhook,
        expired: false,
        resolve: (result) => {
          answer()
          resolve(result)
        },
        reject: (error) => {
          answer()
          reject(error)
        },
      }
      const timer = setTimeout(() => {
        entry.expired = true
        answer()
        reject(new StorageTimeout(`storage: no commit within ${this.options.timeoutMs} ms`))
      }, this.options.timeoutMs)
      this.waiting.push(entry)
      this.flush()
    })
  }

  /** Resolves when nothing is waiting or in flight (for shutdown). */
  idle(): Promise<void> {
    if (this.inFlight === 0 && this.waiting.length === 0) return Promise.resolve()
    return new Promise((resolve) => (this.drained = resolve))
  }

  /** A commit finished or gave up: the next group starts before this one's requests are answered. */
  private settled(): void {
    this.inFlight--
    this.flush()
    if (this.inFlight === 0 && this.waiting.length === 0) this.drained?.()
  }

  private flush(): void {
    while (this.inFlight < this.options.maxInFlight && this.waiting.length > 0) {
      // Requests already answered 503 while they waited are not written.
      const group = this.waiting.splice(0, this.options.maxBatch).filter((entry) => !entry.expired)
      if (group.length === 0) continue
      this.inFlight++
      let done = false
      const finish = (outcome: () => void) => {
        if (done) return
        done = true
        clearTimeout(slotTimer)
        this.settled()
        outcome()
      }
      const slotTimer = setTimeout(
        () =>
          finish(() =>
            group.forEach((entry) => entry.reject(new StorageTimeout('storage: commit timed out'))),
          ),
        this.options.timeoutMs,
      )
      const { handOff } = this.options
      const claim = handOff?.claim()
      const webhooks = group.map((entry) => entry.webhook)
      const also = claim ? handOff?.writeWith(webhooks) : undefined
      this.store.insertWebhooks(webhooks, claim, also).then(
        (results) => {
          finish(() => group.forEach((entry, index) => entry.resolve(results[index]!)))
          // Even after a commit so late that its requests were answered 503: the rows are claimed.
          if (claim) handOff?.take(webhooks.filter((_webhook, index) => !results[index]!.duplicate))
          else if (results.some((result) => !result.duplicate)) handOff?.wake()
        },
        (error: unknown) => finish(() => group.forEach((entry) => entry.reject(error))),
      )
    }
  }
}
