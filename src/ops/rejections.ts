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

/** The last rejected requests per provider: recorded as they happen, listed newest first. */
export interface Rejections {
  record(rejection: Rejection): void
  /** The newest first: of one provider, or of all of `providers` merged by time. */
  list(providers: readonly string[], limit: number): Promise<Rejection[]>
}

const newestFirst = (a: Rejection, b: Rejection) => b.time.localeCompare(a.time)

/**
 * The last rejected requests per provider, so "why is Shopify failing since 10:42?" has an answer: a capped
 * Redis list per provider, shared by every gateway process. Recording is fire-and-forget and bounded (a
 * flood of forged requests costs one LPUSH and one LTRIM each, and keeps `keep` entries); while Redis is
 * away, rejections are only logged.
 */
export class RejectionLog implements Rejections {
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

  async list(providers: readonly string[], limit: number): Promise<Rejection[]> {
    const lists = await Promise.all(
      providers.map((provider) => this.redis.lrange(this.key(provider), 0, limit - 1)),
    )
    return lists
      .flat()
      .map((entry) => JSON.parse(entry) as Rejection)
      .sort(newestFirst)
      .slice(0, limit)
  }
}

/** The same log kept in this process, for a gateway with no Redis (REDIS_URL unset): `keep` per provider. */
export class LocalRejectionLog implements Rejections {
  private readonly byProvider = new Map<string, Rejection[]>()

  constructor(private readonly options: { readonly keep: number }) {}

  record(rejection: Rejection): void {
    const kept = this.byProvider.get(rejection.provider) ?? []
    kept.unshift(rejection)
    if (kept.length > this.options.keep) kept.length = this.options.keep
    this.byProvider.set(rejection.provider, kept)
  }

  async list(providers: readonly string[], limit: number): Promise<Rejection[]> {
    return providers
      .flatMap((provider) => this.byProvider.get(provider)?.slice(0, limit) ?? [])
      .sort(newestFirst)
      .slice(0, limit)
  }
}
