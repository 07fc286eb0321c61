import type { History } from './history.ts'
import type { Load } from './load.ts'
import type { Observer } from './observer.ts'
import type { Receiver } from './receiver.ts'
import type { Samplers } from './samplers.ts'

/**
 * A status line every few seconds while the run goes on: what the clients sent and got back, the backlog, what
 * the consumers saw, and this process' own CPU and memory (it shares two cores with what it tests).
 */
export function startProgress(input: {
  readonly history: History
  readonly load: Load
  readonly samplers: Samplers
  readonly observer: Observer
  readonly receiver: Receiver
  readonly everyMs?: number
}): () => void {
  const { history, load, samplers, observer, receiver } = input
  let lastCpu = process.cpuUsage()
  let lastAt = history.now()
  let lastOk = 0
  const timer = setInterval(() => {
    const now = history.now()
    const cpu = process.cpuUsage(lastCpu)
    const cpuShare = (cpu.user + cpu.system) / 1000 / (now - lastAt)
    const ok = load.okArrivedAt.length
    const last = samplers.backlog.at(-1)
    history.say(
      `sent ${load.records.length}, 2xx ${((ok - lastOk) / ((now - lastAt) / 1000)).toFixed(0)}/s, ` +
        `in flight ${load.pending()} | backlog ${last?.backlog ?? 'down'}, dest. pending ` +
        `${last?.deliveriesPending ?? 'down'} | rabbitmq ${observer.seen.size}, destination ${receiver.received.size} | ` +
        `chaos cpu ${(100 * cpuShare).toFixed(0)}%, rss ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB`,
    )
    lastCpu = process.cpuUsage()
    lastAt = now
    lastOk = ok
  }, input.everyMs ?? 5000)
  return () => clearInterval(timer)
}
