import { parseArgs } from 'node:util'

/** The command line of `npm run chaos`. */
export interface Options {
  /** The short form: six faults, about two and a half minutes. */
  readonly short: boolean
  /** New deliveries a second, sent on a fixed schedule whatever the answers. */
  readonly rate: number
  /** Seeds every random choice of the run (providers, bad kinds, resends), so a run can be repeated. */
  readonly seed: number
}

export const usage = `npm run chaos -- [options]

  --short      six faults (kill -9, Postgres stop, Redis restart, RabbitMQ stop_app, destination 500s,
               restore from a dump), about 2.5 minutes in all; the full run has every fault, about 6.5
  --rate N     new deliveries a second, on a fixed schedule (default 150)
  --seed S     seed of the run's random choices (default: from the clock; the report prints it)
  -h, --help`

export function parseOptions(argv: readonly string[]): Options | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      short: { type: 'boolean', default: false },
      rate: { type: 'string' },
      seed: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  })
  if (values.help) return 'help'
  const rate = values.rate === undefined ? 150 : Number(values.rate)
  if (!Number.isFinite(rate) || rate <= 0 || rate > 5000)
    throw new Error('--rate must be a number in (0, 5000]')
  const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed)
  if (!Number.isInteger(seed)) throw new Error('--seed must be an integer')
  return { short: values.short, rate, seed }
}

/** A small seeded generator (mulberry32): the same seed makes the same choices. */
export class Random {
  private state: number

  constructor(seed: number) {
    this.state = seed >>> 0
  }

  /** A number in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0
    let t = this.state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  chance(probability: number): boolean {
    return this.next() < probability
  }

  /** A whole number in [min, max]. */
  between(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1))
  }

  pick<T>(items: readonly T[]): T {
    const item = items[Math.floor(this.next() * items.length)]
    if (item === undefined) throw new Error('pick: no items')
    return item
  }
}
