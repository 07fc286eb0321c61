import { createRequire } from 'node:module'
import { PassThrough, Writable } from 'node:stream'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'

/** amqplib's multiplexer of channels onto the connection's socket (patched: patches/amqplib+2.3.1.patch). */
const require = createRequire(import.meta.url)
// Not among the package's exports: reached by its file beside the entry point.
const { Mux } = require(require.resolve('amqplib').replace(/channel_api\.js$/, 'lib/mux.js')) as {
  Mux: new (downstream: Writable) => { pipeFrom(readable: PassThrough): void }
}

describe('amqplib Mux (patched)', () => {
  it('writes the frames of one pass, from every channel, in one writev', async () => {
    const writes: number[] = []
    const socket = new Writable({
      write(_chunk, _encoding, done) {
        writes.push(1)
        done()
      },
      writev(chunks, done) {
        writes.push(chunks.length)
        done()
      },
    })
    const mux = new Mux(socket)
    const channels = [new PassThrough({ objectMode: true }), new PassThrough({ objectMode: true })]
    for (const channel of channels) mux.pipeFrom(channel)
    for (let frame = 0; frame < 3; frame++)
      for (const channel of channels) channel.write(Buffer.from(`frame ${frame}`))
    await nextTurn()
    await nextTurn()
    expect(writes).toEqual([6])
  })
})
