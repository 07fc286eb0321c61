import type { InsertResult, NewWebhook, Store } from './store.ts'

interface Waiting {
  readonly webhook: NewWebhook
  readonly resolve: (result: InsertResult) => void
  readonly reject: (error: unknown) => void
}

/**
 * Group commit: requests that arrive while a commit is in flight wait and share the next one, a
 * single multi-row INSERT. A lone request is written at once, so batching costs no latency when idle.
 */
export class Intake {
  private readonly waiting: Waiting[] = []
  private inFlight = 0
  private drained: (() => void) | undefined

  constructor(
    private readonly store: Pick<Store, 'insertWebhooks'>,
    private readonly options: { readonly maxBatch: number; readonly maxInFlight: number },
  ) {}

  /** Resolves once the webhook is committed (or found to be a duplicate); rejects if storage failed. */
  submit(webhook: NewWebhook): Promise<InsertResult> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ webhook, resolve, reject })
      this.flush()
    })
  }

  /** Resolves when nothing is waiting or in flight (for shutdown). */
  idle(): Promise<void> {
    if (this.inFlight === 0 && this.waiting.length === 0) return Promise.resolve()
    return new Promise((resolve) => (this.drained = resolve))
  }

  /** A commit finished: the next group starts before this one's requests are answered. */
  private settled(): void {
    this.inFlight--
    this.flush()
    if (this.inFlight === 0 && this.waiting.length === 0) this.drained?.()
  }

  private flush(): void {
    while (this.inFlight < this.options.maxInFlight && this.waiting.length > 0) {
      const group = this.waiting.splice(0, this.options.maxBatch)
      this.inFlight++
      this.store.insertWebhooks(group.map((entry) => entry.webhook)).then(
        (results) => {
          this.settled()
          group.forEach((entry, index) => entry.resolve(results[index]!))
        },
        (error: unknown) => {
          this.settled()
          group.forEach((entry) => entry.reject(error))
        },
      )
    }
  }
}
