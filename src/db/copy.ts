import postgres from 'postgres'
import { writerName, type Sql } from './client.ts'
import type { Claim, NewWebhook, WrittenWith } from './webhooks.ts'

/**
 * Storing a group of deliveries with `COPY ... FROM STDIN (FORMAT binary)`, for groups whose bodies pass a
 * quarter of a megabyte (see insertMaxBodyBytes in webhooks.ts): the rows go in chunks of about a megabyte,
 * where an INSERT through postgres.js builds its whole message in one buffer that grows by copying.
 * https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4 (binary format)
 */

/** The columns a delivery fills; the rest (status, attempts, ...) take their defaults. */
const columns = 'id, provider, event_key, event_type, method, path, public_url, headers, body, received_at'
const fieldCount = 10
/** And, when the group is claimed for this process's worker, who holds it and until when. */
const claimColumns = ', claimed_by, next_attempt_at'
const claimFields = 2
/** The file's header: the signature, then no flags and no header extension. */
const fileHeader = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)])
/** A field count of -1 ends the data. */
const fileTrailer = Buffer.from([0xff, 0xff])
/** timestamptz in binary: microseconds since 2000-01-01 UTC. */
const postgresEpochMs = Date.UTC(2000, 0, 1)
/** Rows are sent in chunks of about this size rather than one message per group. */
const chunkBytes = 1024 * 1024

/** One row's text fields, encoded lengths known. */
interface Row {
  readonly webhook: NewWebhook
  /** provider, event_key, event_type, method, path, public_url. */
  readonly texts: readonly string[]
  readonly textLengths: readonly number[]
  readonly headers: string
  readonly headersLength: number
  readonly size: number
}

function measure(webhook: NewWebhook, claimed: boolean): Row {
  const { provider, eventKey, eventType, method, path, publicUrl } = webhook
  const texts = [provider, eventKey, eventType, method, path, publicUrl]
  const textLengths = texts.map((text) => Buffer.byteLength(text))
  const headers = JSON.stringify(webhook.headers)
  const headersLength = Buffer.byteLength(headers)
  const fields = 16 + textLengths.reduce((sum, length) => sum + length, 0) + 1 + headersLength
  // A field count, then a length before each field; jsonb is a version byte and the JSON text.
  const claimBytes = claimed ? claimFields * 4 + 4 + 8 : 0
  const size = 2 + fieldCount * 4 + fields + webhook.body.length + 8 + claimBytes
  return { webhook, texts, textLengths, headers, headersLength, size }
}

const microsecondsSince2000 = (ms: number) => BigInt(Math.round(ms - postgresEpochMs)) * 1000n

/**
 * Rows in COPY's binary format, with the file's header before them when they come `first` and its trailer
 * after them when `last`: a group that fits one chunk is one buffer, one write to the socket.
 */
function encode(
  rows: readonly Row[],
  size: number,
  claim: ClaimFields | undefined,
  { first, last }: { readonly first: boolean; readonly last: boolean },
): Buffer {
  const total = (first ? fileHeader.length : 0) + size + (last ? fileTrailer.length : 0)
  const chunk = Buffer.allocUnsafe(total)
  let offset = first ? fileHeader.copy(chunk, 0) : 0
  const field = (length: number) => {
    offset = chunk.writeInt32BE(length, offset)
  }
  for (const { webhook, texts, textLengths, headers, headersLength } of rows) {
    offset = chunk.writeInt16BE(claim ? fieldCount + claimFields : fieldCount, offset)
    field(16)
    offset += chunk.write(webhook.id.replaceAll('-', ''), offset, 16, 'hex')
    texts.forEach((text, index) => {
      field(textLengths[index]!)
      offset += chunk.write(text, offset, textLengths[index]!, 'utf8')
    })
    field(1 + headersLength)
    offset = chunk.writeUInt8(1, offset)
    offset += chunk.write(headers, offset, headersLength, 'utf8')
    field(webhook.body.length)
    offset += webhook.body.copy(chunk, offset)
    field(8)
    offset = chunk.writeBigInt64BE(microsecondsSince2000(webhook.receivedAt.getTime()), offset)
    if (claim) {
      field(4)
      offset = chunk.writeInt32BE(claim.owner, offset)
      field(8)
      offset = chunk.writeBigInt64BE(claim.until, offset)
    }
  }
  if (last) offset += fileTrailer.copy(chunk, offset)
  if (offset !== total) throw new Error(`copy: encoded ${offset} bytes of ${total}`)
  return chunk
}

/** A claim as COPY writes it: the owner, and the lease's end in microseconds since 2000. */
interface ClaimFields {
  readonly owner: number
  readonly until: bigint
}

/**
 * The group's rows in COPY's binary format, in chunks of about a megabyte, the file's header at the start of
 * the first and its trailer at the end of the last (most groups are one chunk). Claimed rows carry their
 * owner and a lease from `now` (ms), as the worker's own claims do.
 */
export function copyChunks(webhooks: readonly NewWebhook[], claim?: Claim, now = Date.now()): Buffer[] {
  const fields = claim && {
    owner: claim.owner,
    until: microsecondsSince2000(now + claim.leaseSeconds * 1000),
  }
  const groups: { rows: Row[]; size: number }[] = []
  let rows: Row[] = []
  let size = 0
  for (const webhook of webhooks) {
    const row = measure(webhook, fields !== undefined)
    rows.push(row)
    size += row.size
    if (size >= chunkBytes) {
      groups.push({ rows, size })
      rows = []
      size = 0
    }
  }
  if (rows.length > 0 || groups.length === 0) groups.push({ rows, size })
  return groups.map((group, index) =>
    encode(group.rows, group.size, fields, { first: index === 0, last: index === groups.length - 1 }),
  )
}

/**
 * Inserts the group in one transaction with COPY. False when Postgres refused it, as when a row's (provider,
 * event key) is already stored (COPY has no ON CONFLICT): the caller then inserts the group the slow way,
 * which sorts new rows from duplicates. Throws when Postgres cannot be reached.
 *
 * postgres.js resolves a COPY's stream before the server has read the data, and a COPY that fails after its
 * last byte was sent reports nothing on it: the query after it fails instead (the transaction is aborted),
 * and the transaction is rolled back, never committed. A transaction rather than a reserved connection:
 * postgres.js 3.4 mishandles a reserved connection whose session ended (a Postgres restart) and stops
 * answering for good, where a transaction is rejected and its connection reconnects.
 */
export async function copyWebhooks(
  sql: Sql,
  webhooks: readonly NewWebhook[],
  claim?: Claim,
  also?: WrittenWith,
): Promise<boolean> {
  try {
    const [written] = await sql.begin(async (tx) => {
      const stream = await tx
        .unsafe(`COPY webhooks (${columns}${claim ? claimColumns : ''}) FROM STDIN (FORMAT binary)`)
        .writable()
      // A failed COPY destroys the stream; the query below then reports why.
      stream.on('error', () => {})
      const chunks = copyChunks(webhooks, claim)
      const last = chunks.pop()!
      for (const chunk of chunks) stream.write(chunk)
      // postgres.js takes no other query until the stream has ended (its CopyDone is sent synchronously
      // after the last write's callback, before this promise's continuation runs), or was destroyed.
      const written = new Promise<void>((resolve) => stream.write(last, () => resolve()))
      stream.end()
      await written
      // The query after the COPY reports its outcome. It writes what goes with the webhooks (every one is new
      // once COPY succeeded), or wakes the other processes' workers for unclaimed webhooks (at commit).
      const ids = sql`SELECT unnest(${webhooks.map((webhook) => webhook.id)}::uuid[])`
      if (also)
        return tx`
          WITH also AS (${also.insert(ids)}) SELECT ARRAY(SELECT id FROM also) AS also, ${also.check} AS check`
      if (claim) return tx`SELECT 1`
      return tx`SELECT pg_notify('webhooks_received', ${writerName(sql)})`
    })
    also?.committed(written?.also ?? [], written?.check)
    return true
  } catch (error) {
    // Postgres answered with an error (a duplicate key, a value it refused): the group goes the slow way.
    if (error instanceof postgres.PostgresError) return false
    throw error
  }
}
