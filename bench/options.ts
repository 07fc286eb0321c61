import { parseArgs } from 'node:util'

/** The command line of `npm run bench`. */

export const sections = ['headline', 'stripe', 'twilio', 'sweep', 'destinations', 'steady'] as const
export type Section = (typeof sections)[number]

export const serverIds = ['hono', 'sdk', 'handwritten', 'gateway', 'gateway-api'] as const
export type ServerId = (typeof serverIds)[number]

/** Which servers each section runs by default: the matrix that fits in about 12 minutes. */
export const defaultMatrix: Readonly<Record<Section, readonly ServerId[]>> = {
  headline: ['hono', 'sdk', 'handwritten', 'gateway', 'gateway-api'],
  stripe: ['hono', 'sdk', 'handwritten', 'gateway'],
  twilio: ['hono', 'sdk', 'handwritten', 'gateway'],
  sweep: ['hono', 'sdk', 'handwritten', 'gateway'],
  // Its own runs (bench/destinations.ts): the gateway and an endpoint process, no baselines.
  destinations: [],
  // Its own runs too (bench/steady.ts): per rate, the gateway then the hand-written pipeline (the floor),
  // with an endpoint and a consumer.
  steady: ['gateway', 'handwritten'],
}

export interface Settings {
  readonly quick: boolean
  readonly sections: readonly Section[]
  /** Overrides the default matrix: these servers in every section. */
  readonly servers: readonly ServerId[] | undefined
  /** Sweep body sizes in bytes. */
  readonly sizes: readonly number[]
  /** The steady section's rates, webhooks a second. */
  readonly rates: readonly number[]
  readonly connections: number
  /** Runs of each server; the tables show the run with the median req/s. */
  readonly repeat: number
  readonly warmupMs: number
  readonly durationMs: number
  readonly maxRequests: number
  readonly requestTimeoutMs: number
  readonly drainLimitMs: number
  readonly timeLimitMs: number
  readonly profile: boolean
  readonly profileDir: string | undefined
  /** Keep the servers' logs even when every run passed. */
  readonly keepLogs: boolean
  /** Where the steady section writes each run's requests one by one, as CSV. */
  readonly requestsDir: string | undefined
  readonly gatewayDir: string | undefined
  readonly gatewayEnv: Readonly<Record<string, string>>
  /** Extra flags for node in every server the bench measures (the gateway and the references). */
  readonly nodeFlags: readonly string[]
  readonly outDir: string | undefined
}

export const usage = `npm run bench -- [options]

  --quick               the headline only, 1 s warm-up and 3 s measured per run (about 1 minute)
  --only LIST           sections, comma-separated: ${sections.join(',')} (default: all)
  --servers LIST        run these in every chosen section: ${serverIds.join(',')}; by default
${Object.entries(defaultMatrix)
  .map(([section, ids]) => `                          ${section}: ${ids.join(',')}`)
  .join('\n')}
  --sizes LIST          sweep body sizes in KB (default 1,8,64,512)
  --rates LIST          the steady section's rates, webhooks a second (default 20,200,1000); each runs for
                          the duration, and at least 500 webhooks
  -c, --connections N   concurrent keep-alive connections (default 50)
  --repeat N            run the whole matrix N times, interleaved; tables show each server's median run by
                          req/s, with every run's req/s under the table; the steady section alternates the
                          servers N times at each rate and shows each figure's median (default 1)
  -d, --duration S      measured seconds per run (default 10)
  --warmup S            warm-up seconds before each measurement (default 2)
  --max-requests N      most requests per measured run (default 1000000)
  --drain-limit S       how long to wait for the gateway to publish what it accepted (default 90)
  --time-limit S        the whole bench, cleanup included (default 1200 per repeat; --quick 240)
  --profile             CPU-profile the gateway's headline run (node --cpu-prof): self time by package and function
  --profile-dir DIR     keep the .cpuprofile files there (for Chrome DevTools or speedscope)
  --keep-logs           keep the servers' logs when every run passed (a failed run keeps them always)
  --requests-dir DIR    the steady section writes there, per run, every measured request: when it was due
                          (unix ms), how late the load generator wrote it and when the answer came (ms after due);
                          and every event that arrived: where (rabbitmq, destination), when, ms after receipt
  --gateway-dir DIR     bench the gateway of another checkout, e.g. a git worktree with its own node_modules
  --gateway-env K=V     extra environment for every gateway run (repeatable)
  --node-flags=FLAGS    extra flags for node in every server measured, gateway and references alike, split at
                          spaces (with the =, as they start with a dash): --node-flags=--trace-gc (each
                          collection in the server's log, kept with --keep-logs), --node-flags=--perf-basic-prof
                          (JavaScript names for perf record)
  --out DIR             where results go (default bench/results)
  -h, --help`

export function parseSettings(argv: readonly string[]): Settings | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      servers: { type: 'string' },
      sizes: { type: 'string' },
      rates: { type: 'string' },
      connections: { type: 'string', short: 'c' },
      repeat: { type: 'string' },
      duration: { type: 'string', short: 'd' },
      warmup: { type: 'string' },
      'max-requests': { type: 'string' },
      'drain-limit': { type: 'string' },
      'time-limit': { type: 'string' },
      profile: { type: 'boolean', default: false },
      'profile-dir': { type: 'string' },
      'keep-logs': { type: 'boolean', default: false },
      'requests-dir': { type: 'string' },
      'gateway-dir': { type: 'string' },
      'gateway-env': { type: 'string', multiple: true },
      'node-flags': { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) return 'help'
  const quick = values.quick
  const number = (name: string, value: string | undefined, fallback: number, min = 0): number => {
    if (value === undefined) return fallback
    const parsed = Number(value)
    if (!Number.isFinite(parsed) || parsed < min)
      throw new Error(`bench: --${name} must be a number >= ${min}`)
    return parsed
  }
  const list = <T extends string>(name: string, value: string, allowed: readonly T[]): T[] =>
    value.split(',').map((item) => {
      if (!(allowed as readonly string[]).includes(item.trim()))
        throw new Error(`bench: --${name} takes ${allowed.join(',')}, not ${item}`)
      return item.trim() as T
    })
  const repeat = Math.round(number('repeat', values.repeat, 1, 1))
  return {
    quick,
    sections: values.only ? list('only', values.only, sections) : quick ? ['headline'] : [...sections],
    servers: values.servers ? list('servers', values.servers, serverIds) : undefined,
    sizes: (values.sizes ?? '1,8,64,512')
      .split(',')
      .map((kb) => Math.round(number('sizes', kb, 0, 1) * 1024)),
    rates: (values.rates ?? '20,200,1000').split(',').map((rate) => number('rates', rate, 0, 0.1)),
    connections: number('connections', values.connections, 50, 1),
    repeat,
    warmupMs: number('warmup', values.warmup, quick ? 1 : 2) * 1000,
    durationMs: number('duration', values.duration, quick ? 3 : 10, 0.1) * 1000,
    maxRequests: number('max-requests', values['max-requests'], 1_000_000, 1),
    requestTimeoutMs: 10_000,
    drainLimitMs: number('drain-limit', values['drain-limit'], 90) * 1000,
    timeLimitMs: number('time-limit', values['time-limit'], (quick ? 240 : 1200) * repeat, 1) * 1000,
    profile: values.profile,
    profileDir: values['profile-dir'],
    keepLogs: values['keep-logs'],
    requestsDir: values['requests-dir'],
    gatewayDir: values['gateway-dir'],
    gatewayEnv: Object.fromEntries(
      (values['gateway-env'] ?? []).map((pair) => {
        const at = pair.indexOf('=')
        if (at < 1) throw new Error(`bench: --gateway-env takes KEY=VALUE, not ${pair}`)
        return [pair.slice(0, at), pair.slice(at + 1)]
      }),
    ),
    nodeFlags: (values['node-flags'] ?? '').split(' ').filter((flag) => flag !== ''),
    outDir: values.out,
  }
}
