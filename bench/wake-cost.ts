import { fork, spawn } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { once } from 'node:events'
import net from 'node:net'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { track } from './cleanup.ts'
import { mainThreadWakes, processCpuMs } from './measure.ts'

/**
 * What this machine charges for the same small piece of work at each rate: a calibration for the steady
 * section's CPU per webhook. Two processes, as a webhook's path has: a client sends 1.5 KB over loopback
 * TCP at a steady rate, an echo process sends it back, and the client checks an HMAC of it and parses it.
 * The CPU of both (from /proc, as the bench reads the servers') and the client's main-thread wakes are
 * divided by the round trips. It takes twice the seconds given for each rate (see client).
 *
 * On a virtual machine a CPU that sleeps between events is slow to wake: its caches are cold and waking it
 * takes the hypervisor's time. On the machine this was written on the same round trip cost about six times
 * as much CPU at 20/s as at 1,000/s. So at a trickle the CPU per webhook is mostly what the machine charges
 * for wakes (see the steady section's wakes per webhook), for the gateway and the hand-written floor alike.
 *
 * Usage: node --import tsx bench/wake-cost.ts [--rates 20,200,1000] [--seconds 10]
 */

export interface WakeCost {
  readonly rate: number
  readonly roundTrips: number
  /** CPU per round trip, in us: the client's and the echo's. */
  readonly clientUs: number
  readonly echoUs: number
  /** The client's main thread woken per round trip (its timer and the echo's answer: about 2). */
  readonly clientWakes: number
}

const message = Buffer.from(JSON.stringify({ id: 'evt_calibration', padding: 'x'.repeat(1500) }))
const script = fileURLToPath(import.meta.url)

/** The echo end: sends back what it reads; tells its parent its port. */
async function echo(): Promise<void> {
  const server = net.createServer((socket) => socket.on('data', (data) => socket.write(data)))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  process.send!((server.address() as net.AddressInfo).port)
  process.once('disconnect', () => process.exit(0))
}

/** The client end: each rate for `seconds` (at least 200 round trips), twice; the second pass. */
async function client(rates: readonly number[], seconds: number): Promise<WakeCost[]> {
  const child = fork(script, ['--echo'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  try {
    const [port] = (await once(child, 'message')) as [number]
    const socket = net.connect(port, '127.0.0.1')
    await once(socket, 'connect')
    socket.setNoDelay(true)
    let answered: (() => void) | undefined
    let received: Buffer[] = []
    let receivedBytes = 0
    socket.on('data', (data: Buffer) => {
      // The echo may come back in pieces: a round trip ends with its last byte.
      received.push(data)
      receivedBytes += data.length
      if (receivedBytes < message.length) return
      const echoed = received.length === 1 ? data : Buffer.concat(received)
      received = []
      receivedBytes = 0
      createHmac('sha256', 'calibration').update(echoed).digest('hex')
      JSON.parse(echoed.toString())
      answered?.()
    })
    const roundTrip = () =>
      new Promise<void>((resolve) => {
        answered = resolve
        socket.write(message)
      })
    // Warm: the functions compiled. A process just started still pays more for the same work for some
    // 20 s (here the first pass at 20/s cost 2-3 times the second), so every rate is measured twice, in
    // turn, and the second pass is kept.
    for (let sent = 0; sent < 2000; sent++) await roundTrip()
    const results: WakeCost[] = []
    for (const rate of [...rates, ...rates]) {
      const roundTrips = Math.max(200, Math.round(rate * seconds))
      const before = { client: processCpuMs(process.pid), echo: processCpuMs(child.pid!) }
      const wakesBefore = mainThreadWakes(process.pid) ?? 0
      const start = performance.now()
      for (let sent = 0; sent < roundTrips; sent++) {
        const wait = start + (sent * 1000) / rate - performance.now()
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
        await roundTrip()
      }
      const per = (ms: number) => (ms * 1000) / roundTrips
      results.push({
        rate,
        roundTrips,
        clientUs: per(processCpuMs(process.pid) - before.client),
        echoUs: per(processCpuMs(child.pid!) - before.echo),
        clientWakes: ((mainThreadWakes(process.pid) ?? 0) - wakesBefore) / roundTrips,
      })
    }
    socket.destroy()
    return results.slice(rates.length)
  } finally {
    child.kill()
  }
}

/** Runs the calibration in a process of its own (so the bench's own timers stay out of it). */
export async function measureWakeCost(
  root: string,
  rates: readonly number[],
  seconds = 10,
): Promise<WakeCost[]> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', script, '--rates', rates.join(','), '--seconds', String(seconds), '--json'],
    { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] },
  )
  track(child)
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
  const [code] = (await once(child, 'exit')) as [number | null]
  if (code !== 0) throw new Error(`wake-cost: the calibration exited with ${code}`)
  return JSON.parse(output) as WakeCost[]
}

/** A rate as the bench's reports write it: 1,000/s, 0.5/s. */
export const perSecond = (rate: number) => `${rate.toLocaleString('en-US', { maximumFractionDigits: 2 })}/s`

/** Lines for a report: the cost of the round trip at each rate. */
export function renderWakeCost(costs: readonly WakeCost[]): string[] {
  return costs.map(
    (cost) =>
      `- ${perSecond(cost.rate)}: ${Math.round(cost.clientUs + cost.echoUs)} us of CPU per round trip ` +
      `(client ${Math.round(cost.clientUs)}, echo ${Math.round(cost.echoUs)}), ` +
      `the client woken ${cost.clientWakes.toFixed(1)} times: ` +
      `${Math.round(cost.clientUs / Math.max(1, cost.clientWakes))} us of the client's CPU per wake`,
  )
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      echo: { type: 'boolean', default: false },
      rates: { type: 'string', default: '20,200,1000' },
      seconds: { type: 'string', default: '10' },
      json: { type: 'boolean', default: false },
    },
  })
  if (values.echo) return echo()
  const costs = await client(values.rates.split(',').map(Number), Number(values.seconds))
  if (values.json) console.log(JSON.stringify(costs))
  else console.log(renderWakeCost(costs).join('\n'))
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main()
