import { z } from 'zod'
import { patternProblem } from './patterns.ts'
import { reservedHeaders } from './sender.ts'
import {
  defaultMaxInFlight,
  defaultRetryScheduleSeconds,
  defaultTimeoutMs,
  type Delivery,
  type DeliveryAttempt,
  type Destination,
  type DestinationSettings,
} from './store.ts'

const headerName = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** The fields of a destination as the admin API and DESTINATIONS_FILE take them (snake_case, as on the wire). */
const fields = {
  url: z.string().min(1).max(2048),
  events: z
    .array(
      z.string().superRefine((pattern, ctx) => {
        const problem = patternProblem(pattern)
        if (problem) ctx.addIssue({ code: 'custom', message: problem })
      }),
    )
    .min(1, 'events must name at least one pattern, e.g. "payment.*" or "#"')
    .max(100),
  enabled: z.boolean(),
  timeout_ms: z.number().int().min(100).max(60_000),
  max_in_flight: z.number().int().min(1).max(1000),
  headers: z.record(z.string(), z.string().max(8192)).superRefine((headers, ctx) => {
    for (const [name, value] of Object.entries(headers)) {
      if (!headerName.test(name))
        ctx.addIssue({ code: 'custom', message: `header name "${name}" is not valid` })
      else if (reservedHeaders.has(name.toLowerCase()))
        ctx.addIssue({ code: 'custom', message: `header ${name} is set by the gateway` })
      if (/[\r\n\0]/.test(value)) ctx.addIssue({ code: 'custom', message: `header ${name} has a line break` })
    }
  }),
  retry_schedule_seconds: z
    .array(
      z
        .number()
        .min(0)
        .max(7 * 24 * 3600),
    )
    .max(50),
}

export const createSchema = z
  .object({
    ...fields,
    name: z.string().min(1).max(200).optional(),
    enabled: fields.enabled.default(true),
    timeout_ms: fields.timeout_ms.default(defaultTimeoutMs),
    max_in_flight: fields.max_in_flight.default(defaultMaxInFlight),
    headers: fields.headers.default({}),
    retry_schedule_seconds: fields.retry_schedule_seconds.default([...defaultRetryScheduleSeconds]),
  })
  .strict()

export const updateSchema = z.object(fields).partial().strict()

/** One entry of DESTINATIONS_FILE: a create with a required name (its key) and optionally its secret. */
export const fileEntrySchema = createSchema.extend({
  name: z.string().min(1).max(200),
  enabled: fields.enabled.optional(),
  secret: z
    .string()
    .regex(/^whsec_[A-Za-z0-9+/]{32,}={0,2}$/, 'secret must be whsec_ followed by base64 (24 to 64 bytes)')
    .optional(),
})

export type CreateInput = z.output<typeof createSchema>
export type UpdateInput = z.output<typeof updateSchema>

export function toSettings(input: CreateInput): DestinationSettings {
  return {
    url: input.url,
    events: input.events,
    enabled: input.enabled,
    timeoutMs: input.timeout_ms,
    maxInFlight: input.max_in_flight,
    headers: input.headers,
    retryScheduleSeconds: input.retry_schedule_seconds,
  }
}

export function toChanges(input: UpdateInput): Partial<DestinationSettings> {
  const changes: { -readonly [K in keyof DestinationSettings]?: DestinationSettings[K] } = {}
  if (input.url !== undefined) changes.url = input.url
  if (input.events !== undefined) changes.events = input.events
  if (input.enabled !== undefined) changes.enabled = input.enabled
  if (input.timeout_ms !== undefined) changes.timeoutMs = input.timeout_ms
  if (input.max_in_flight !== undefined) changes.maxInFlight = input.max_in_flight
  if (input.headers !== undefined) changes.headers = input.headers
  if (input.retry_schedule_seconds !== undefined) changes.retryScheduleSeconds = input.retry_schedule_seconds
  return changes
}

/** A destination as the admin API shows it: its state and counts, never its secrets. */
export const destinationView = (destination: Destination) => ({
  id: destination.id,
  name: destination.name,
  source: destination.source,
  url: destination.url,
  events: destination.events,
  enabled: destination.enabled,
  disabled_reason: destination.disabledReason,
  consecutive_failures: destination.consecutiveFailures,
  timeout_ms: destination.timeoutMs,
  max_in_flight: destination.maxInFlight,
  headers: destination.headers,
  retry_schedule_seconds: destination.retryScheduleSeconds,
  pending: destination.counts.pending,
  failed: destination.counts.failed,
  delivered: destination.counts.delivered,
  created_at: destination.createdAt.toISOString(),
  updated_at: destination.updatedAt.toISOString(),
})

const attemptView = (attempt: DeliveryAttempt) => ({
  attempted_at: attempt.attemptedAt.toISOString(),
  duration_ms: Math.round(attempt.durationMs * 10) / 10,
  status_code: attempt.statusCode,
  error: attempt.error,
  response_headers: attempt.responseHeaders,
  response_body: attempt.responseBody,
})

/** A delivery with every attempt made for it, oldest first. */
export const deliveryView = (delivery: Delivery & { readonly attemptLog: readonly DeliveryAttempt[] }) => ({
  id: delivery.id,
  destination_id: delivery.destinationId,
  webhook_id: delivery.webhookId,
  event_id: delivery.eventId,
  event_type: delivery.eventType,
  status: delivery.status,
  attempt_count: delivery.attempts,
  next_attempt_at: delivery.status === 'pending' ? delivery.nextAttemptAt.toISOString() : null,
  last_status_code: delivery.lastStatusCode,
  last_error: delivery.lastError,
  created_at: delivery.createdAt.toISOString(),
  delivered_at: delivery.deliveredAt?.toISOString() ?? null,
  attempts: delivery.attemptLog.map(attemptView),
})
