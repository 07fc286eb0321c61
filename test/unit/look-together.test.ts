import { describe, expect, it } from 'vitest'
import { lookTogether, type Abandoned, type ClaimedTable } from '../../src/db/owners.ts'

/** A runner that records each statement it would send: the owner and the tables it looks at. */
function recorder(fail = false) {
  const runs: { owner: number; tables: readonly ClaimedTable[] }[] = []
  const run = async (owner: number, tables: readonly ClaimedTable[]) => {
    runs.push({ owner, tables })
    if (fail) throw new Error('postgres away')
    const found = {} as Record<ClaimedTable, Abandoned>
    for (const table of tables) found[table] = { reclaimed: table === 'webhooks' ? 2 : 1, due: true }
    return found
  }
  return { runs, run }
}

describe('the safety net looks together', () => {
  it('sends one statement for the looks of both loops, each answered with its own table', async () => {
    const { runs, run } = recorder()
    const looks = lookTogether(['webhooks', 'deliveries'], run, 10_000)
    const [webhooks, deliveries] = await Promise.all([looks.webhooks(7), looks.deliveries(7)])
    expect(runs).toEqual([{ owner: 7, tables: ['webhooks', 'deliveries'] }])
    expect(webhooks).toEqual({ reclaimed: 2, due: true })
    expect(deliveries).toEqual({ reclaimed: 1, due: true })
  })

  it('sends a look asked for alone once its window has passed', async () => {
    const { runs, run } = recorder()
    const looks = lookTogether(['webhooks', 'deliveries'], run, 20)
    const asked = performance.now()
    expect(await looks.deliveries(7)).toEqual({ reclaimed: 1, due: true })
    expect(performance.now() - asked).toBeGreaterThanOrEqual(15)
    expect(runs).toEqual([{ owner: 7, tables: ['deliveries'] }])
  })

  it('fails every look of a statement that failed', async () => {
    const { run } = recorder(true)
    const looks = lookTogether(['webhooks', 'deliveries'], run, 10_000)
    const outcomes = await Promise.allSettled([looks.webhooks(7), looks.deliveries(7)])
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['rejected', 'rejected'])
  })

  it('keeps looks for different owners apart, and asks again after a statement went', async () => {
    const { runs, run } = recorder()
    const looks = lookTogether(['webhooks', 'deliveries'], run, 10)
    await Promise.all([looks.webhooks(7), looks.deliveries(8)])
    await Promise.all([looks.deliveries(7), looks.webhooks(7)])
    expect(runs).toEqual([
      { owner: 7, tables: ['webhooks'] },
      { owner: 8, tables: ['deliveries'] },
      { owner: 7, tables: ['deliveries', 'webhooks'] },
    ])
  })
})
