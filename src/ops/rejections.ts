import type { Redis } from 'ioredis'

/** One refused request, as the rejection log keeps it: never a header's value, never the body. */
export interface Rejection {
  readonly time: string
  readonly provider: string
  /** `invalid_signature`, `throttled`, `malformed` or `too_large`. */
  readonly outcome: string
  readonly status: number
  readonly address: string
  readonly requestId: string | undefined
  /** Why, per secret tried, in the order configured (`secret 2: timestamp 412 s outside ...`). */
  readonly reasons: readonly string[]
  /** How many secrets were tried. */
  readonly secretsTried: number
  /** The request's header names, without their values. */
  readonly headerNames: readonly string[]
  readonly bodyBytes: number | undefined
}

/**
 * The last rejected requests per provider, so "why is Shopify failing since 10:42?" has an answer: a capped
 * Redis list per provider, shared by every gateway process. Recording is fire-and-forget and bounded (a
 * flood of forged requests costs one LPUSH and one LTRIM each, and keeps `keep` entries); without Redis,
 * rejections are only logged.
 */
export class RejectionLog {
  constructor(
    private readonly redis: Redis,
    private readonly options: { readonly prefix: string; readonly keep: number },
  ) {}

  private key(provider: string): string {
    return `${this.options.prefix}rejections:${provider}`
  }

  record(rejection: Rejection): void {
    const key = this.key(rejection.provider)
    this.redis
      .multi()
      .lpush(key, JSON.stringify(rejection))
      .ltrim(key, 0, this.options.keep - 1)
      .exec()
      .catch(() => {})
  }

  /** The newest first: of one provider, or of all of `providers` merged by time. */
  async list(providers: readonly string[], limit: number): Promise<Rejection[]> {
    const lists = await Promise.all(
      providers.map((provider) => this.redis.lrange(this.key(provider), 0, limit - 1)),
    )
    return lists
      .flat()
      .map((entry) => JSON.parse(entry) as Rejection)
      .sort((a, b) => b.time.localeCompare(a.time))
      .slice(0, limit)
  }
}
