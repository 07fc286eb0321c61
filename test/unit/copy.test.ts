import { describe, expect, it } from 'vitest'
import { copyChunks } from '../../src/db/copy.ts'
import { newWebhook as webhook } from '../support/stored.ts'

const signature = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1')

/** The rows of a COPY binary file, each as its fields (null for a NULL), read as Postgres reads them. */
function readCopyFile(file: Buffer): (Buffer | null)[][] {
  expect(file.subarray(0, signature.length).equals(signature)).toBe(true)
  let offset = signature.length + 4
  offset += 4 + file.readInt32BE(offset)
  const rows: (Buffer | null)[][] = []
  for (;;) {
    const fields = file.readInt16BE(offset)
    offset += 2
    if (fields === -1) break
    const row: (Buffer | null)[] = []
    for (let field = 0; field < fields; field++) {
      const length = file.readInt32BE(offset)
      offset += 4
      row.push(length === -1 ? null : file.subarray(offset, offset + length))
      offset += Math.max(0, length)
    }
    rows.push(row)
  }
  expect(offset).toBe(file.length)
  return rows
}

describe('copyChunks', () => {
  it('writes a group that fits one chunk as one buffer: header, rows, trailer', () => {
    const group = [webhook(Buffer.from('{"a":1}')), webhook(Buffer.from([0, 255, 92]))]
    const chunks = copyChunks(group)
    expect(chunks).toHaveLength(1)
    const rows = readCopyFile(chunks[0]!)
    expect(rows.map((row) => row[8])).toEqual(group.map((stored) => stored.body))
    expect(rows.every((row) => row.length === 10)).toBe(true)
  })

  it('splits a group over a megabyte into chunks that make one file, the header first and the trailer last', () => {
    const group = [
      webhook(Buffer.alloc(900_000, 'a')),
      webhook(Buffer.alloc(900_000, 'b')),
      webhook(Buffer.from('{}')),
    ]
    const chunks = copyChunks(group, { owner: 3, leaseSeconds: 60 })
    expect(chunks.length).toBeGreaterThan(1)
    expect(chunks.slice(1).some((chunk) => chunk.subarray(0, signature.length).equals(signature))).toBe(false)
    const rows = readCopyFile(Buffer.concat(chunks))
    expect(rows.map((row) => row[8])).toEqual(group.map((stored) => stored.body))
    // Claimed: the owner and the lease's end follow the ten columns.
    expect(rows.every((row) => row.length === 12 && row[10]!.readInt32BE(0) === 3)).toBe(true)
  })
})
