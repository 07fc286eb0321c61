import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, normalize, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

/**
 * The layout tells the architecture, and the imports keep to it: each layer uses the layers under it, never
 * a feature above it (type-only imports included: a type from above is a dependency on it all the same).
 */

const root = fileURLToPath(new URL('../..', import.meta.url))

/** Lowest first. A file may import from its own layer and the ones before it. */
const layers: readonly (readonly [name: string, owns: (path: string) => boolean])[] = [
  [
    'the provider model and its helpers (src/*.ts)',
    (path) => /^src\/[^/]+\.ts$/.test(path) && !composition(path),
  ],
  [
    'operations (src/ops) and the providers',
    (path) => path.startsWith('src/ops/') || path.startsWith('providers/'),
  ],
  ['storage (src/db)', (path) => path.startsWith('src/db/')],
  ['the pipeline (src/pipeline)', (path) => path.startsWith('src/pipeline/')],
  ['destinations (src/destinations)', (path) => path.startsWith('src/destinations/')],
  ['administration (src/admin)', (path) => path.startsWith('src/admin/')],
  ['the HTTP surface (src/http)', (path) => path.startsWith('src/http/')],
  ['composition and tools (gateway.ts, boot.ts, main.ts, dev.ts, src/send)', (path) => composition(path)],
]

function composition(path: string): boolean {
  return (
    ['src/gateway.ts', 'src/boot.ts', 'src/main.ts', 'src/dev.ts'].includes(path) ||
    path.startsWith('src/send/')
  )
}

function layerOf(path: string): number {
  const index = layers.findIndex(([, owns]) => owns(path))
  if (index < 0) throw new Error(`layers: ${path} belongs to no layer`)
  return index
}

function sources(folder: string): string[] {
  return readdirSync(join(root, folder), { withFileTypes: true }).flatMap((entry) => {
    const path = `${folder}/${entry.name}`
    if (entry.isDirectory()) return sources(path)
    return /\.tsx?$/.test(entry.name) ? [path] : []
  })
}

/** The project files a source imports, as paths from the root. */
function importsOf(path: string): string[] {
  const text = readFileSync(join(root, path), 'utf8')
  return [...text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)].map((match) =>
    relative(root, normalize(join(root, dirname(path), match[1]!))),
  )
}

describe('the layers of src/', () => {
  it('has every source in a layer, and no import from a layer above its own', () => {
    const upward: string[] = []
    for (const path of [...sources('src'), ...sources('providers')]) {
      for (const imported of importsOf(path)) {
        if (layerOf(imported) > layerOf(path))
          upward.push(
            `${path} (${layers[layerOf(path)]![0]}) imports ${imported} (${layers[layerOf(imported)]![0]})`,
          )
      }
    }
    expect(upward).toEqual([])
  })

  it('puts storage under the pipeline under destinations, and the pipeline under the HTTP surface', () => {
    expect(layerOf('src/db/webhooks.ts')).toBeLessThan(layerOf('src/destinations/fanout.ts'))
    expect(layerOf('src/pipeline/worker.ts')).toBeLessThan(layerOf('src/http/ingest.ts'))
  })
})
