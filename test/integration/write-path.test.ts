import postgres from 'postgres'
import { afterAll, describe, expect, it } from 'vitest'
import { designs, measure } from '../../bench/write-path.ts'
import { services } from '../../bench/resources.ts'

// The bench's what-ifs write through the store's and the outbox's own code (the current design): a change to
// either that breaks the experiment shows here, not the day someone next runs it.
describe('bench/write-path.ts', () => {
  const admin = postgres(services.postgres, { max: 1, onnotice: () => {} })
  afterAll(() => admin.end())

  it.each(designs)('writes and measures the %s design', async (design) => {
    const measured = await measure(admin, design, { intake: 5, record: 25 }, 50)
    expect(measured.design).toBe(design)
    // A commit per 5 webhooks, and a record of 25 in one statement (final) or two.
    expect(measured.statements).toBeCloseTo(1 / 5 + (design === 'final' ? 1 : 2) / 25)
    expect(measured.walBytes).toBeGreaterThan(1000)
    expect(measured.cpuUs).toBeGreaterThanOrEqual(0)
  })
})
