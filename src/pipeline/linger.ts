/**
 * A wait that can be cut short: a writer of records that nothing waits on (a webhook's mark once it is
 * published, a delivery's attempt) lingers a little so that one statement takes many, and ends the wait at
 * once when something does wait (a stop, records that change what others see next).
 */
export class Linger {
  private cut: (() => void) | undefined

  /** Resolves after `ms`, or at once when ended. */
  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer)
        this.cut = undefined
        resolve()
      }
      const timer = setTimeout(done, ms)
      timer.unref()
      this.cut = done
    })
  }

  /** Ends the wait in progress, if any. */
  end(): void {
    this.cut?.()
  }
}
