import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The parts of a V8 .cpuprofile (`node --cpu-prof`) needed to total self time by function. */
interface CpuProfile {
  readonly nodes: readonly {
    readonly id: number
    readonly callFrame: {
      readonly functionName: string
      readonly url: string
      readonly lineNumber: number
    }
  }[]
  /** Microseconds on the monotonic clock that process.hrtime() reads, in every process on the machine. */
  readonly startTime: number
  readonly samples: readonly number[]
  readonly timeDeltas: readonly number[]
}

export interface ProfileSummary {
  /** Share of the window the main thread was running JavaScript, GC or native code rather than idle. */
  readonly busy: number
  /** Lines of "share of busy time, source", largest first. */
  readonly sources: string[]
  /** Lines of "share of busy time, function and where", largest first. */
  readonly functions: string[]
}

/**
 * Where the main thread's time went between `fromUs` and `toUs` (process.hrtime in µs), from the
 * profiles `node --cpu-prof` wrote to `dir`: self time by source and by function, as a share of the busy
 * time. Only the main thread counts (thread id 0 in the file name): tsx's loader thread is idle noise.
 */
export function summarizeProfiles(
  dir: string,
  root: string,
  window: { readonly fromUs: number; readonly toUs: number },
  limit = 25,
): ProfileSummary {
  const selfUs = new Map<string, number>()
  const sourceUs = new Map<string, number>()
  let busyUs = 0
  let windowUs = 0
  const mainThread = /\.\d+\.0\.\d+\.cpuprofile$/
  for (const file of readdirSync(dir).filter((name) => mainThread.test(name))) {
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile
    const nameOf = new Map<number, { name: string; source: string }>()
    for (const node of profile.nodes) {
      const { functionName, url, lineNumber } = node.callFrame
      const path = url.startsWith('file://') ? relative(root, fileURLToPath(url)) : url
      // tsx compiles each file to one line, so a line number says something only elsewhere.
      const line = lineNumber > 0 ? `:${lineNumber + 1}` : ''
      nameOf.set(node.id, {
        name: `${functionName || '(anonymous)'} ${path.replace(/^.*node_modules\//, '')}${line}`.trim(),
        source: sourceOf(url, path, functionName),
      })
    }
    let at = profile.startTime
    profile.samples.forEach((id, index) => {
      const delta = profile.timeDeltas[index] ?? 0
      at += delta
      if (at < window.fromUs || at > window.toUs) return
      windowUs += delta
      const { name, source } = nameOf.get(id) ?? { name: '?', source: '?' }
      if (name === '(idle)') return
      selfUs.set(name, (selfUs.get(name) ?? 0) + delta)
      sourceUs.set(source, (sourceUs.get(source) ?? 0) + delta)
      busyUs += delta
    })
  }
  const lines = (totals: Map<string, number>, count: number) =>
    [...totals.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, count)
      .map(([name, us]) => `${((100 * us) / Math.max(1, busyUs)).toFixed(1).padStart(5)}%  ${name}`)
  return {
    busy: busyUs / Math.max(1, windowUs),
    sources: lines(sourceUs, 15),
    functions: lines(selfUs, limit),
  }
}

/** A package (`hono`, `postgres`), a Node internal area (`node:internal/webstreams`), or a project file. */
function sourceOf(url: string, path: string, functionName: string): string {
  if (!url) return functionName || '(native)'
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path)
  if (pkg) return pkg[1]!
  if (url.startsWith('node:')) return url.split('/').slice(0, 3).join('/')
  return path
}
