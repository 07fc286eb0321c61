import type { OutgoingEvent } from './events.ts'

/**
 * What stands for the publisher when no broker is configured (AMQP_URL unset): always there, and publishing
 * goes nowhere. The worker still maps every webhook and records its event ids with it (the dashboard and
 * the admin API show the events), destinations still get them, and nothing waits for a broker as a backlog.
 */
export class NoBroker {
  readonly broker: boolean = false
  readonly connected = true

  whenConnected(): Promise<void> {
    return Promise.resolve()
  }

  async publish(_events: readonly OutgoingEvent[]): Promise<void> {}

  async stop(): Promise<void> {}
}
