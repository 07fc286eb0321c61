import type { Writable } from 'node:stream'
import cliProgress from 'cli-progress'

/** How the answers so far split. */
export interface Tally {
  accepted: number
  duplicate: number
  rejected: number
}

export interface Progress {
  update(answered: number, tally: Tally): void
  stop(): void
}

/** A one-line bar of answered deliveries on `stream`; drawn only on a terminal (cli-progress skips others). */
export function startProgress(total: number, stream: Writable): Progress {
  const bar = new cliProgress.SingleBar(
    {
      stream: stream as NodeJS.WritableStream,
      format:
        'sending {bar} {value}/{total} | {accepted} accepted, {duplicate} duplicate, {rejected} rejected | {eta_formatted}',
    },
    cliProgress.Presets.shades_classic,
  )
  bar.start(total, 0, { accepted: 0, duplicate: 0, rejected: 0 })
  return {
    update: (answered, tally) => bar.update(answered, { ...tally }),
    stop: () => bar.stop(),
  }
}
