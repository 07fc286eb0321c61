/** One event that came out for a webhook. */
export interface SeenEvent {
  readonly routingKey: string
  /** The CloudEvent, or the body as text when it is not JSON. */
  readonly event: Record<string, unknown> | string
}

/** Where the events of the sent webhooks are read from: RabbitMQ, or the gateway's admin API without a broker. */
export interface EventWatch {
  /** Where, for the report: `on the RabbitMQ exchange "webhooks"`. */
  readonly source: string
  /** Events seen so far whose `webhookid` is `webhookId`, in publishing order. */
  eventsOf(webhookId: string): readonly SeenEvent[]
  /** Why a webhook's events are not all out when the source can tell (still pending, a failing handler). */
  noteOf(webhookId: string): string | undefined
  /**
   * Resolves once each webhook has at least its expected number of events, or when `timeoutMs` is up; with why
   * the events could not be read, when they could not.
   */
  waitFor(expected: ReadonlyMap<string, number>, timeoutMs: number): Promise<string | undefined>
  close(): Promise<void>
}

/** A watch, or why there is none (the sending goes on without it). */
export type WatchStart = { readonly watch: EventWatch } | { readonly unavailable: string }

/** An error's message, or its code when the message is empty (as for a refused connection). */
export function errorText(error: unknown): string {
  const failure = error as NodeJS.ErrnoException & { cause?: unknown }
  const cause = failure.cause as NodeJS.ErrnoException | undefined
  return (
    [failure.message, cause?.message ?? cause?.code].filter(Boolean).join(': ') ||
    String(failure.code ?? error)
  )
}
