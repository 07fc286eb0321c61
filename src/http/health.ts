export type Check = () => Promise<unknown>

/** `off`: not configured (the embedded defaults run without Redis or a broker), which is not a fault. */
export type DependencyState = 'up' | 'down' | 'off'

export interface Health {
  readonly status: 'ok' | 'degraded'
  /** Whether webhooks can be accepted right now (Postgres is up). */
  readonly accepting: boolean
  readonly checks: {
    readonly postgres: 'up' | 'down'
    readonly redis: DependencyState
    readonly rabbitmq: DependencyState
  }
}

const within = (check: Check | undefined, ms: number): Promise<DependencyState> =>
  check
    ? Promise.race([
        check().then(() => 'up' as const),
        new Promise<'down'>((resolve) => setTimeout(resolve, ms, 'down').unref()),
      ]).catch(() => 'down' as const)
    : Promise.resolve('off')

/**
 * Webhooks can be accepted while Postgres is up; Redis or RabbitMQ down only degrades, and one that is not
 * configured (no check) is `off` and degrades nothing.
 */
export async function checkHealth(
  checks: { postgres: Check; redis: Check | undefined; rabbitmq: Check | undefined },
  timeoutMs = 1000,
): Promise<Health> {
  const [postgres, redis, rabbitmq] = await Promise.all([
    within(checks.postgres, timeoutMs) as Promise<'up' | 'down'>,
    within(checks.redis, timeoutMs),
    within(checks.rabbitmq, timeoutMs),
  ])
  const status = [postgres, redis, rabbitmq].includes('down') ? 'degraded' : 'ok'
  return { status, accepting: postgres === 'up', checks: { postgres, redis, rabbitmq } }
}
