import type { Redis } from 'ioredis'

/** Counts failed verifications per client address; answers whether the address is now over its limit. */
export interface FailedVerifications {
  /** Records one failure; true when the address is now over the limit. */
  recordFailure(address: string): Promise<boolean>
}

interface LimitOptions {
  readonly limit: number
  readonly windowSeconds: number
}

/**
 * Counts failed verifications per client address in a fixed window, in Redis, shared by every gateway
 * process. Only failures are counted and only failures are answered 429, so verified traffic from the same
 * address is never throttled. While Redis is away nothing is counted and failures get their plain 401.
 */
export class FailedVerificationLimit implements FailedVerifications {
  constructor(
    private readonly redis: Redis,
    private readonly options: LimitOptions & { readonly prefix: string },
  ) {}

  async recordFailure(address: string): Promise<boolean> {
    if (this.options.limit === 0) return false
    const key = `${this.options.prefix}failed-verify:${address}`
    try {
      const [[, count] = []] =
        (await this.redis.multi().incr(key).expire(key, this.options.windowSeconds, 'NX').exec()) ?? []
      return typeof count === 'number' && count > this.options.limit
    } catch {
      return false
    }
  }
}

/**
 * The same limit kept in this process, for a gateway with no Redis (REDIS_URL unset): one process counts
 * its own failures. At most `maxAddresses` windows are kept: a flood from ever new addresses drops the
 * oldest windows rather than grow without end.
 */
export class LocalFailedVerificationLimit implements FailedVerifications {
  private readonly windows = new Map<string, { count: number; endsAt: number }>()

  constructor(private readonly options: LimitOptions & { readonly maxAddresses?: number }) {}

  async recordFailure(address: string): Promise<boolean> {
    if (this.options.limit === 0) return false
    const now = Date.now()
    let window = this.windows.get(address)
    if (!window || window.endsAt <= now) {
      this.windows.delete(address)
      this.makeRoom(now)
      window = { count: 0, endsAt: now + this.options.windowSeconds * 1000 }
      this.windows.set(address, window)
    }
    window.count += 1
    return window.count > this.options.limit
  }

  /** Drops ended windows, then the oldest ones, when the map is full (a Map iterates in insertion order). */
  private makeRoom(now: number): void {
    const max = this.options.maxAddresses ?? 100_000
    if (this.windows.size < max) return
    for (const [address, window] of this.windows) if (window.endsAt <= now) this.windows.delete(address)
    for (const address of this.windows.keys()) {
      if (this.windows.size < max) break
      this.windows.delete(address)
    }
  }
}
