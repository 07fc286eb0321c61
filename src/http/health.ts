export type Check = () => Promise<unknown>

export interface Health {
  readonly status: 'ok' | 'degraded'
  /** Whether webhooks can be accepted right now (Postgres is up). */
  readonly accepting: boolean
  readonly checks: {
    readonly postgres: 'up' | 'down'
    readonly redis: 'up' | 'down'
    readonly rabbitmq: 'up' | 'down'
  }
}

const within = (check: Check, ms: number): Promise<'up' | 'down'> =>
  Promise.race([
    check().then(() => 'up' as const),
    new Promise<'down'>((resolve) => setTimeout(resolve, ms, 'down').unref()),
  ]).catch(() => 'down' as const)

/** Webhooks can be accepted while Postgres is up; Redis and RabbitMQ being down only degrades. */
export async function checkHealth(
  checks: { postgres: Check; redis: Check; rabbitmq: Check },
  timeoutMs = 1000,
): Promise<Health> {
  const [postgres, redis, rabbitmq] = await Promise.all([
    within(checks.postgres, timeoutMs),
    within(checks.redis, timeoutMs),
    within(checks.rabbitmq, timeoutMs),
  ])
  const status = postgres === 'up' && redis === 'up' && rabbitmq === 'up' ? 'ok' : 'degraded'
  return { status, accepting: postgres === 'up', checks: { postgres, redis, rabbitmq } }
}
