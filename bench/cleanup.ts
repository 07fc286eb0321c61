import type { ChildProcess } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'

/**
 * Everything the bench creates is registered here as it is created, and undone newest first: after each
 * run, and on an error, Ctrl-C or the overall time limit.
 */

const cleanups: { readonly what: string; readonly undo: () => Promise<unknown> }[] = []
const children = new Set<ChildProcess>()

/** Registers `undo` to run at the next unwind; `what` names it if it fails. */
export function defer(what: string, undo: () => Promise<unknown>): void {
  cleanups.push({ what, undo })
}

/** A position in the cleanups, for unwinding only what a run registered. */
export const mark = (): number => cleanups.length

let unwinding: Promise<void> = Promise.resolve()

/**
 * Runs the cleanups registered since `since`, newest first, each bounded to 15 s; one unwind at a time,
 * so an abort during a run's own cleanup waits for it rather than racing it.
 */
export function unwind(since = 0): Promise<void> {
  const next = unwinding.then(() => unwindNow(since))
  unwinding = next
  return next
}

async function unwindNow(since: number): Promise<void> {
  while (cleanups.length > since) {
    const { what, undo } = cleanups.pop()!
    const outcome = await Promise.race([
      undo().then(
        () => 'done',
        (error: unknown) => `failed: ${(error as Error).message}`,
      ),
      sleep(15_000, 'timed out after 15 s', { ref: false }),
    ])
    if (outcome !== 'done') console.error(`bench: cleanup (${what}) ${outcome}`)
  }
}

/** Children are killed outright if the bench exits without unwinding (a crash, process.exit). */
export function track(child: ChildProcess): void {
  children.add(child)
  child.once('exit', () => children.delete(child))
}

let exiting = false

/** Unwinds everything and exits; a second signal while unwinding exits at once. */
export async function abort(reason: string, code: number): Promise<never> {
  if (exiting) process.exit(code)
  exiting = true
  console.error(`\nbench: ${reason}; cleaning up`)
  await unwind()
  process.exit(code)
}

/** Ctrl-C, SIGTERM and the overall time limit all clean up before exiting. */
export function installAbortHandlers(timeLimitMs: number): void {
  process.on('exit', () => {
    for (const child of children) child.kill('SIGKILL')
  })
  process.on('SIGINT', () => void abort('interrupted', 130))
  process.on('SIGTERM', () => void abort('terminated', 143))
  setTimeout(() => void abort(`over the overall limit of ${timeLimitMs / 1000} s`, 1), timeLimitMs).unref()
}
