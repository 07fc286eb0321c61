/** A dependency did not answer in time: treated like it being down. */
export class DeadlineExceeded extends Error {
  override readonly name = 'DeadlineExceeded'
}

/** `work`, or a DeadlineExceeded naming `what` once `ms` have passed without an answer. */
export function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new DeadlineExceeded(`${what}: no answer within ${ms} ms`)), ms)
  })
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer))
}

type AsyncMethods<T> = {
  [K in keyof T]: T[K] extends (...args: never[]) => Promise<unknown> ? K : never
}[keyof T]

/**
 * The named methods of `target`, each given up on after `ms`: a loop calling them (the worker's, the
 * sender's) moves on, and tries again later, when a dependency stalls rather than fails. The call itself
 * is not cancelled; its answer, if it comes, is ignored.
 */
export function bounded<T extends object, K extends AsyncMethods<T>>(
  target: T,
  names: readonly K[],
  ms: number,
  what: string,
): Pick<T, K> {
  const view = {} as Pick<T, K>
  for (const name of names) {
    const method = target[name] as (...args: unknown[]) => Promise<unknown>
    view[name] = ((...args: unknown[]) =>
      withDeadline(method.apply(target, args), ms, `${what}.${String(name)}`)) as T[K]
  }
  return view
}
