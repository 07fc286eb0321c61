import { performance } from 'node:perf_hooks'

/** One fault the nemesis injected: when it began, when it was healed, and what happened meanwhile. */
export interface FaultRecord {
  readonly name: string
  /** Milliseconds since the run began. */
  readonly startedAt: number
  healedAt: number | undefined
  /** When the run saw it recovered after the heal (a 2xx since, the backlog back near calm), or gave up waiting. */
  settledAt: number | undefined
  readonly notes: string[]
}

/**
 * The run's clock and its record of faults. Every time in the run is milliseconds since it began, so the
 * load, the samplers and the nemesis can be laid side by side in the report.
 */
export class History {
  readonly startedAtIso = new Date().toISOString()
  private readonly origin = performance.now()
  readonly faults: FaultRecord[] = []
  /** The calm period before the first fault: [0, calmEndsAt). */
  calmEndsAt = Number.POSITIVE_INFINITY

  now(): number {
    return performance.now() - this.origin
  }

  begin(name: string): FaultRecord {
    const fault: FaultRecord = {
      name,
      startedAt: this.now(),
      healedAt: undefined,
      settledAt: undefined,
      notes: [],
    }
    this.faults.push(fault)
    this.say(`fault: ${name}`)
    return fault
  }

  heal(fault: FaultRecord): void {
    fault.healedAt = this.now()
    this.say(`healed: ${fault.name} (held ${((fault.healedAt - fault.startedAt) / 1000).toFixed(1)} s)`)
  }

  /** Whether something at `time` happened while a fault was on, or before the run settled after its heal. */
  underFault(time: number): boolean {
    return this.faults.some(
      (fault) =>
        time >= fault.startedAt && time <= (fault.settledAt ?? fault.healedAt ?? Number.POSITIVE_INFINITY),
    )
  }

  /** A progress line on stderr, stamped with the run's time; stdout is kept for the report. */
  say(line: string): void {
    process.stderr.write(`[${(this.now() / 1000).toFixed(1).padStart(6)} s] ${line}\n`)
  }
}
