import { readFile } from 'node:fs/promises'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import type { Logger } from '../ops/log.ts'
import type { Sql } from '../db/client.ts'
import { destinationUrlProblem, type AddressPolicy } from './address.ts'
import { fileEntrySchema, toSettings } from './settings.ts'
import type { DestinationStore } from './store.ts'

const fileSchema = z.union([
  z.array(fileEntrySchema),
  z.object({ destinations: z.array(fileEntrySchema) }).strict(),
])

export type FileEntry = z.output<typeof fileEntrySchema>

/**
 * Reads DESTINATIONS_FILE: a YAML (or JSON, which is YAML) list of destinations, or `{ destinations: [...] }`.
 * Every problem is reported with the entry it is in; a broken file stops the start.
 */
export async function readDestinationsFile(path: string, policy: AddressPolicy): Promise<FileEntry[]> {
  const text = await readFile(path, 'utf8').catch((error: unknown) => {
    throw new Error(`DESTINATIONS_FILE ${path}: ${error instanceof Error ? error.message : String(error)}`)
  })
  let document: unknown
  try {
    document = parseYaml(text)
  } catch (error) {
    throw new Error(`DESTINATIONS_FILE ${path}: ${error instanceof Error ? error.message : String(error)}`)
  }
  const parsed = fileSchema.safeParse(document ?? [])
  if (!parsed.success) throw new Error(`DESTINATIONS_FILE ${path}: ${z.prettifyError(parsed.error)}`)
  const entries = Array.isArray(parsed.data) ? parsed.data : parsed.data.destinations
  const seen = new Set<string>()
  for (const entry of entries) {
    if (seen.has(entry.name))
      throw new Error(`DESTINATIONS_FILE ${path}: the name ${entry.name} appears twice`)
    seen.add(entry.name)
    const problem = destinationUrlProblem(entry.url, policy)
    if (problem) throw new Error(`DESTINATIONS_FILE ${path}: ${entry.name}: ${problem}`)
  }
  return entries
}

/**
 * Makes the database agree with the file, under an advisory lock so that processes starting together apply
 * it once: entries are created or updated by name; `enabled` is applied only where the file says it, so a
 * destination the sender disabled stays disabled across restarts unless the file insists; a `secret` in the
 * file becomes the signing secret (the previous one keeps signing for a day, as in a rotation); destinations
 * once declared in the file and now gone from it are disabled, not deleted, so their deliveries are kept.
 */
export async function applyDestinationsFile(
  sql: Sql,
  destinations: DestinationStore,
  entries: readonly FileEntry[],
  log: Logger,
): Promise<void> {
  // A session lock on one reserved connection: taken and released on the same session.
  const session = await sql.reserve()
  try {
    await session`SELECT pg_advisory_lock(hashtext('webhook-gateway:destinations-file'))`
    for (const entry of entries) {
      const settings = toSettings({ ...entry, enabled: entry.enabled ?? true })
      const existing = await destinations.getByName(entry.name)
      if (!existing) {
        const created = await destinations.create(
          { ...settings, name: entry.name, source: 'file' },
          entry.secret,
        )
        log.info('destination created from DESTINATIONS_FILE', {
          destination: created.destination.id,
          name: entry.name,
          // Never the secret: without one in the file, rotate it through the admin API to read it.
          secret: entry.secret
            ? 'from the file'
            : 'generated; POST /admin/destinations/:id/rotate-secret to read one',
        })
        continue
      }
      // Back in the file after being removed from it: enabled again, unless the file says otherwise.
      const returning = !existing.enabled && existing.disabledReason === removedReason
      const { enabled: _enabled, ...rest } = settings
      await destinations.update(existing.id, entry.enabled === undefined && !returning ? rest : settings)
      await sql`UPDATE destinations SET source = 'file' WHERE id = ${existing.id}`
      if (entry.secret && !(await destinations.activeSecrets(existing.id)).includes(entry.secret)) {
        await destinations.rotateSecret(existing.id, 24 * 3600, entry.secret)
        log.info('destination secret replaced from DESTINATIONS_FILE', {
          destination: existing.id,
          name: entry.name,
        })
      }
    }
    const names = entries.map((entry) => entry.name)
    const removed = await sql`
      UPDATE destinations SET enabled = false, disabled_reason = ${removedReason}, updated_at = now()
      WHERE source = 'file' AND enabled AND NOT (name = ANY(${names}::text[]))
      RETURNING id, name`
    for (const row of removed)
      log.warn('destination disabled: no longer in DESTINATIONS_FILE', {
        destination: row.id,
        name: row.name,
      })
  } finally {
    await session`SELECT pg_advisory_unlock(hashtext('webhook-gateway:destinations-file'))`.catch(() => {})
    session.release()
  }
}

const removedReason = 'removed from DESTINATIONS_FILE'
