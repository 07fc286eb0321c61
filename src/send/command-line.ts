import { parseArgs } from 'node:util'
import { offeredList } from './offered.ts'

export const usage = `usage: npm run send -- <provider> <event> [--count N] [--rate R]

Signs a realistic delivery the way the provider does, with the secret the gateway is configured with (the same
variables as npm start, read from the environment or .env), posts it to GATEWAY_URL (default
http://127.0.0.1:3000) and prints the answer and the CloudEvents that came out: watched on RabbitMQ when AMQP_URL
is set, else read from the gateway's admin API with ADMIN_TOKEN.

  --count N   send N deliveries, each a new provider event (default 1); prints a summary instead of events
  --rate R    deliveries a second when sending several (default 10)

Offered:
${offeredList()}
  and every sender PROVIDERS_FILE declares, with any type (npm run send -- acme invoice.paid)`

export type CommandLine =
  | { readonly provider: string; readonly event: string; readonly count: number; readonly rate: number }
  | { readonly help: true }
  | { readonly error: string }

/** `<provider> <event> [--count N] [--rate R]`, checked for shape; the provider and event are checked by send. */
export function parseCommandLine(argv: readonly string[]): CommandLine {
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: { count: { type: 'string' }, rate: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    })
  } catch (error) {
    return { error: (error as Error).message }
  }
  const { values, positionals } = parsed
  if (values.help) return { help: true }
  const [provider, event, ...extra] = positionals
  if (!provider || !event) return { error: 'a provider and an event are needed' }
  if (extra.length > 0)
    return { error: `unexpected argument${extra.length > 1 ? 's' : ''} ${extra.join(' ')}` }
  const count = Number(values.count ?? '1')
  if (!Number.isInteger(count) || count < 1)
    return { error: `--count ${values.count} is not a whole number >= 1` }
  const rate = Number(values.rate ?? '10')
  if (!Number.isFinite(rate) || rate <= 0) return { error: `--rate ${values.rate} is not a number > 0` }
  return { provider, event, count, rate }
}
