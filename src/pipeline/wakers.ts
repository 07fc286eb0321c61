import type { Logger } from '../ops/log.ts'

/** What wakes a loop that claims rows: its LISTEN and its safety-net poll. */
export interface Wakers {
  /** Settles once the LISTEN is in place, or has failed (then only the poll wakes the loop). */
  readonly listening: Promise<void>
  /** Ends the poll at once and the LISTEN once it is in place. */
  stop(): Promise<void>
}

/** The rows' store, as the wakers use it: its look at what is abandoned and due, and its notifications. */
export interface WakersStore {
  reclaimAbandoned(owner: number): Promise<{ readonly reclaimed: number; readonly due: boolean }>
  listen(onNotify: () => void): Promise<{ unlisten: () => Promise<void> }>
}

/**
 * Starts what wakes a loop that claims rows (the worker's, the sender's): a LISTEN, woken on every
 * notification, and a safety-net poll. Every `pollMs` (on the clock's multiples of it), and once now, the
 * poll takes back the claims of owners that are gone and looks whether anything is due (`reclaim`, never two
 * at once), and wakes the loop when something is: an idle gateway costs a look a second per loop, not a
 * claim too, and the loops' looks go out together as one statement (see lookTogether in db/owners.ts). A
 * failed look wakes the loop anyway: its claim reports Postgres away. A failed LISTEN leaves the poll.
 */
export function startWakers(options: {
  /** Who is woken, for the logs: "worker", "sender". */
  readonly name: string
  /** What its claims hold, for the logs: "webhooks", "deliveries". */
  readonly rows: string
  readonly pollMs: number
  readonly log: Logger
  /** The number this process's claims carry (see ClaimOwner). */
  readonly claimOwner: number
  /** The rows' store: its look at what is abandoned and due, and its notifications. */
  readonly store: WakersStore
  readonly wake: () => void
}): Wakers {
  const { name, rows, log, store, wake } = options
  let reclaiming = false
  const reclaim = () => {
    if (reclaiming) return
    reclaiming = true
    store
      .reclaimAbandoned(options.claimOwner)
      .then(
        ({ reclaimed, due }) => {
          if (reclaimed > 0)
            log.warn(`${name}: took back ${rows} claimed by a gateway that is gone`, { count: reclaimed })
          if (reclaimed > 0 || due) wake()
        },
        () => wake(),
      )
      .finally(() => (reclaiming = false))
  }
  reclaim()
  // The polls fall on multiples of pollMs of the clock, so that the loops of one process with the same
  // period look at the same moment, and their looks can go out as one statement (see lookTogether).
  const { pollMs } = options
  let poll: NodeJS.Timeout | undefined
  const first = setTimeout(
    () => {
      reclaim()
      poll = setInterval(reclaim, pollMs)
    },
    pollMs - (Date.now() % pollMs),
  )
  const listener = store.listen(wake).catch((error: unknown) => {
    log.warn(`${name}: LISTEN failed, relying on the poll`, { error })
    return undefined
  })
  return {
    listening: listener.then(() => {}),
    async stop() {
      clearTimeout(first)
      clearInterval(poll)
      await (await listener)?.unlisten().catch(() => {})
    },
  }
}
