import type { Redis } from 'ioredis'
import type { Logger } from './log.ts'

/**
 * The Redis fast path in front of Postgres' unique key. It is written only after the commit and every
 * failure is swallowed: a lost or unreachable Redis sends requests to Postgres, never to a wrong answer.
 */
export class Idempotency {
  constructor(
    private readonly redis: Redis,
    private readonly options: { readonly prefix: string; readonly ttlSeconds: number; readonly log: Logger },
  ) {}

  private key(provider: string, eventKey: string): string {
    return `${this.options.prefix}seen:${provider}:${eventKey}`
  }

  /** The id of the first accepted delivery of this event, when Redis knows it. */
  async lookup(provider: string, eventKey: string): Promise<string | undefined> {
    try {
      return (await this.redis.get(this.key(provider, eventKey))) ?? undefined
    } catch (error) {
      this.options.log.debug('idempotency: redis lookup failed, asking postgres', { error })
      return undefined
    }
  }

  remember(provider: string, eventKey: string, id: string): void {
    this.redis
      .set(this.key(provider, eventKey), id, 'EX', this.options.ttlSeconds)
      .catch((error: unknown) => {
        this.options.log.debug('idempotency: redis write failed', { error })
      })
  }
}
