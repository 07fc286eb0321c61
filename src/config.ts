import { z } from 'zod'
import { readProvidersFile, secretKey, type ProviderSpec } from './providers-file.ts'

const list = z
  .string()
  .optional()
  .transform((value) =>
    (value ?? '')
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item.length > 0),
  )

const seconds = z
  .string()
  .optional()
  .transform((value, ctx) => {
    const parsed = (value ?? '5,30,300').split(',').map((item) => Number(item.trim()))
    if (parsed.some((n) => !Number.isFinite(n) || n < 0)) {
      ctx.addIssue({ code: 'custom', message: 'must be a comma-separated list of seconds' })
      return z.NEVER
    }
    return parsed
  })

/** An on/off switch: `1`, `true`, `yes` or `on` is on; unset is off. */
const flag = z
  .string()
  .optional()
  .transform((value, ctx) => {
    const normalized = (value ?? 'false').trim().toLowerCase()
    if (['1', 'true', 'yes', 'on'].includes(normalized)) return true
    if (['0', 'false', 'no', 'off'].includes(normalized)) return false
    ctx.addIssue({ code: 'custom', message: 'must be true or false' })
    return z.NEVER
  })

const int = (fallback: number) => z.coerce.number().int().nonnegative().default(fallback)

const schema = z.object({
  PORT: int(3000),
  HOST: z.string().default('0.0.0.0'),
  ROLE: z.enum(['all', 'api', 'worker']).default('all'),
  // Unset: the embedded PostgreSQL, no Redis, no broker (the try-out and small single-box deployments).
  DATABASE_URL: z.string().optional(),
  EMBEDDED_DATA_DIR: z.string().min(1).default('.data'),
  REDIS_URL: z.string().optional(),
  REDIS_PREFIX: z.string().default('webhooks:'),
  AMQP_URL: z.string().optional(),
  AMQP_EXCHANGE: z.string().min(1).default('webhooks'),
  AMQP_UNROUTED_MAX_LENGTH: int(100_000),
  PUBLIC_BASE_URL: z.url().optional(),
  STRIPE_WEBHOOK_SECRET: list,
  GITHUB_WEBHOOK_SECRET: list,
  TWILIO_AUTH_TOKEN: list,
  SHOPIFY_WEBHOOK_SECRET: list,
  PAYPAL_WEBHOOK_ID: list,
  PAYPAL_CERT_ORIGINS: z
    .string()
    .default(
      'https://api.paypal.com,https://api-m.paypal.com,https://api.sandbox.paypal.com,https://api-m.sandbox.paypal.com',
    )
    .transform((value) =>
      value
        .split(',')
        .map((item) => item.trim())
        .filter(Boolean),
    ),
  PAYPAL_CA_FILE: z.string().optional(),
  PROVIDERS_FILE: z.string().optional(),
  ADMIN_TOKEN: z.string().optional(),
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  // Extensions beyond the contract's table: limits and timings, all with the contract's defaults.
  MAX_BODY_BYTES: int(1024 * 1024),
  GITHUB_MAX_BODY_BYTES: int(25 * 1024 * 1024),
  STRIPE_TOLERANCE_SECONDS: int(300),
  PAYPAL_TOLERANCE_SECONDS: int(300),
  RETRY_DELAYS_SECONDS: seconds,
  WORKER_CONCURRENCY: int(64),
  WORKER_POLL_MS: int(1000),
  WORKER_LEASE_SECONDS: int(60),
  FAILED_VERIFY_LIMIT: int(30),
  FAILED_VERIFY_WINDOW_SECONDS: int(60),
  DATABASE_POOL_SIZE: int(10),
  DATABASE_STATEMENT_TIMEOUT_MS: int(30_000),
  INTAKE_MAX_BATCH: int(500),
  INTAKE_CONCURRENCY: int(1),
  STORE_TIMEOUT_MS: int(4000),
  DESTINATIONS_FILE: z.string().optional(),
  ALLOW_HTTP_DESTINATIONS: flag,
  DESTINATION_ALLOWED_HOSTS: list,
  DELIVERY_CONCURRENCY: int(256),
  DELIVERY_POLL_MS: int(1000),
  DELIVERY_LEASE_MARGIN_SECONDS: int(30),
  HTTP_HEADERS_TIMEOUT_MS: int(10_000),
  HTTP_REQUEST_TIMEOUT_MS: int(60_000),
  HTTP_MAX_CONNECTIONS: int(10_000),
  RETENTION_DAYS: z.coerce.number().positive().default(30),
  RETENTION_FAILED_DAYS: z.coerce.number().positive().default(90),
})

export type Env = z.input<typeof schema>
type Parsed = z.output<typeof schema>

export interface Config {
  readonly port: number
  readonly host: string
  readonly role: 'all' | 'api' | 'worker'
  /** Unset: an embedded PostgreSQL, its data under `embeddedDataDir`. */
  readonly databaseUrl: string | undefined
  /** Where the embedded PostgreSQL keeps its data (`<dir>/postgres`), when there is no databaseUrl. */
  readonly embeddedDataDir: string
  readonly databasePoolSize: number
  /**
   * The longest a statement may run before Postgres cancels it; the worker and sender also stop waiting
   * for an answer a little after it (a stalled server, a partition), and try again.
   */
  readonly databaseStatementTimeoutMs: number
  /** Unset: no Redis; failed verifications are counted and rejections kept per process. */
  readonly redisUrl: string | undefined
  readonly redisPrefix: string
  /** Unset: no broker; events are mapped, kept with their webhook and sent to destinations. */
  readonly amqpUrl: string | undefined
  readonly exchange: string
  readonly unroutedMaxLength: number
  readonly publicBaseUrl: string | undefined
  /** Senders declared in PROVIDERS_FILE, checked; their secrets are in `secrets` under their names. */
  readonly configuredProviders: readonly ProviderSpec[]
  /** Provider name -> the secrets that may have signed a delivery (several while rotating). */
  readonly secrets: Readonly<Record<string, readonly string[]>>
  readonly paypal: { readonly certOrigins: readonly string[]; readonly caFile: string | undefined }
  readonly adminToken: string | undefined
  readonly logLevel: Parsed['LOG_LEVEL']
  /** Provider name -> body limit; providers not named use `default`. */
  readonly maxBodyBytes: Readonly<Record<string, number>> & { readonly default: number }
  readonly toleranceSeconds: Readonly<Record<string, number>>
  readonly retryDelaysSeconds: readonly number[]
  readonly workerConcurrency: number
  readonly workerPollMs: number
  readonly workerLeaseSeconds: number
  readonly failedVerifyLimit: number
  readonly failedVerifyWindowSeconds: number
  readonly intakeMaxBatch: number
  /** Group commits in flight at once; requests arriving meanwhile join the next group. */
  readonly intakeConcurrency: number
  /** How long a delivery waits for its commit before the answer is 503 (providers give up at 5-10 s). */
  readonly storeTimeoutMs: number
  readonly destinations: {
    /** YAML or JSON list of destinations applied at startup. */
    readonly file: string | undefined
    readonly allowHttp: boolean
    /** Hosts exempt from the refusal of private, loopback and link-local addresses. */
    readonly allowedHosts: readonly string[]
    /** Requests in flight at once per sending process, over all destinations. */
    readonly concurrency: number
    readonly pollMs: number
    readonly leaseMarginSeconds: number
  }
  /** The public endpoint's limits against slow or greedy clients (slowloris). */
  readonly http: {
    /** A request's headers must be complete within this. */
    readonly headersTimeoutMs: number
    /** A whole request (headers and body) must be in within this. */
    readonly requestTimeoutMs: number
    /** Connections open at once; more are refused. */
    readonly maxConnections: number
  }
  readonly retention: {
    /** Published webhooks and delivered deliveries are deleted after this many days. */
    readonly days: number
    /** Dead webhooks and failed deliveries are deleted after this many days. */
    readonly failedDays: number
  }
}

/** Reads configuration from an environment object (process.env in production, a literal in tests). */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // An empty variable means unset (compose passes `${VAR:-}` through as an empty string).
  const result = schema.safeParse(Object.fromEntries(Object.entries(env).filter(([, value]) => value !== '')))
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`)
    throw new Error(`invalid configuration: ${problems.join('; ')}`)
  }
  const e = result.data
  const configured = e.PROVIDERS_FILE ? readConfiguredProviders(e.PROVIDERS_FILE, env) : []
  return Object.freeze({
    port: e.PORT,
    host: e.HOST,
    role: e.ROLE,
    databaseUrl: e.DATABASE_URL,
    embeddedDataDir: e.EMBEDDED_DATA_DIR,
    databasePoolSize: e.DATABASE_POOL_SIZE,
    databaseStatementTimeoutMs: Math.max(100, e.DATABASE_STATEMENT_TIMEOUT_MS),
    redisUrl: e.REDIS_URL,
    redisPrefix: e.REDIS_PREFIX,
    amqpUrl: e.AMQP_URL,
    exchange: e.AMQP_EXCHANGE,
    unroutedMaxLength: e.AMQP_UNROUTED_MAX_LENGTH,
    publicBaseUrl: e.PUBLIC_BASE_URL?.replace(/\/+$/, ''),
    configuredProviders: Object.freeze(configured.map(({ spec }) => spec)),
    secrets: Object.freeze({
      stripe: e.STRIPE_WEBHOOK_SECRET,
      github: e.GITHUB_WEBHOOK_SECRET,
      twilio: e.TWILIO_AUTH_TOKEN,
      shopify: e.SHOPIFY_WEBHOOK_SECRET,
      paypal: e.PAYPAL_WEBHOOK_ID,
      ...Object.fromEntries(configured.map(({ spec, secrets }) => [spec.name, secrets])),
    }),
    paypal: Object.freeze({ certOrigins: e.PAYPAL_CERT_ORIGINS, caFile: e.PAYPAL_CA_FILE }),
    adminToken: e.ADMIN_TOKEN || undefined,
    logLevel: e.LOG_LEVEL,
    maxBodyBytes: Object.freeze({
      default: e.MAX_BODY_BYTES,
      github: e.GITHUB_MAX_BODY_BYTES,
      ...Object.fromEntries(
        configured.flatMap(({ spec }) => (spec.maxBodyBytes ? [[spec.name, spec.maxBodyBytes]] : [])),
      ),
    }),
    toleranceSeconds: Object.freeze({
      stripe: e.STRIPE_TOLERANCE_SECONDS,
      paypal: e.PAYPAL_TOLERANCE_SECONDS,
      ...Object.fromEntries(configured.map(({ spec }) => [spec.name, spec.toleranceSeconds])),
    }),
    retryDelaysSeconds: Object.freeze(e.RETRY_DELAYS_SECONDS),
    workerConcurrency: Math.max(1, e.WORKER_CONCURRENCY),
    workerPollMs: Math.max(10, e.WORKER_POLL_MS),
    workerLeaseSeconds: Math.max(1, e.WORKER_LEASE_SECONDS),
    failedVerifyLimit: e.FAILED_VERIFY_LIMIT,
    failedVerifyWindowSeconds: Math.max(1, e.FAILED_VERIFY_WINDOW_SECONDS),
    intakeMaxBatch: Math.max(1, e.INTAKE_MAX_BATCH),
    intakeConcurrency: Math.max(1, e.INTAKE_CONCURRENCY),
    storeTimeoutMs: Math.max(1, e.STORE_TIMEOUT_MS),
    destinations: Object.freeze({
      file: e.DESTINATIONS_FILE,
      allowHttp: e.ALLOW_HTTP_DESTINATIONS,
      allowedHosts: Object.freeze(e.DESTINATION_ALLOWED_HOSTS),
      concurrency: Math.max(1, e.DELIVERY_CONCURRENCY),
      pollMs: Math.max(10, e.DELIVERY_POLL_MS),
      leaseMarginSeconds: e.DELIVERY_LEASE_MARGIN_SECONDS,
    }),
    http: Object.freeze({
      headersTimeoutMs: Math.max(100, e.HTTP_HEADERS_TIMEOUT_MS),
      requestTimeoutMs: Math.max(100, e.HTTP_REQUEST_TIMEOUT_MS),
      maxConnections: Math.max(1, e.HTTP_MAX_CONNECTIONS),
    }),
    retention: Object.freeze({ days: e.RETENTION_DAYS, failedDays: e.RETENTION_FAILED_DAYS }),
  })
}

/**
 * PROVIDERS_FILE's senders with their secrets, read from the variables each names (never from the file). Any
 * problem stops the start as an invalid configuration naming the file, the entry and the field.
 */
function readConfiguredProviders(
  path: string,
  env: Record<string, string | undefined>,
): { spec: ProviderSpec; secrets: readonly string[] }[] {
  try {
    return readProvidersFile(path).map((spec) => {
      const secrets = (env[spec.secretEnv] ?? '')
        .split(',')
        .map((item) => item.trim())
        .filter((item) => item.length > 0)
      const where = `provider "${spec.name}": secret_env: ${spec.secretEnv}`
      if (secrets.length === 0) throw new Error(`${path}: ${where} is not set`)
      for (const [index, secret] of secrets.entries()) {
        try {
          secretKey(spec, secret)
        } catch (error) {
          throw new Error(`${path}: ${where}: secret ${index + 1} ${(error as Error).message}`)
        }
      }
      return { spec, secrets: Object.freeze(secrets) }
    })
  } catch (error) {
    throw new Error(`invalid configuration: PROVIDERS_FILE: ${(error as Error).message}`)
  }
}
