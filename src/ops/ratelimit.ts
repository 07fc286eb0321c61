import type { Redis } from 'ioredis'

/**
 * Counts failed verifications per client address in a fixed window. Only failures are counted and only
 * failures are answered 429, so verified traffic from the same address is never throttled. Without
 * Redis nothing is counted and failures get their plain 401.
 */
export class FailedVerificationLimit {
  constructor(
    private readonly redis: Redis,
    private readonly options: {
      readonly prefix: string
      readonly limit: number
      readonly windowSeconds: number
    },
  ) {}

  /** Records one failure; true when the address is now over the limit. */
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
