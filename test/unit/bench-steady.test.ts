import { describe, expect, it } from 'vitest'
import { renderSteady, statementKind, statementKinds, type SteadyRun } from '../../bench/steady.ts'

/** A steady run whose figures all derive from `n`, so that each median can be told apart. */
function run(server: SteadyRun['server'], round: number, n: number): SteadyRun {
  const arrived = { p50: n, p99: n * 10, max: n * 20, distinct: 100, repeated: 0 }
  return {
    server,
    rate: 200,
    round,
    seconds: 30,
    sent: 100,
    accepted: 100,
    failed: 0,
    ack: { p50: n, p99: n * 10, max: n * 20 },
    rabbitmq: arrived,
    destination: arrived,
    windowSeconds: 31,
    idle: { gateway: 0.01, postgres: 0.001 },
    cpuUs: { gateway: n * 100, postgres: n * 50 },
    peakRssMb: 100 + n,
    wakesPerWebhook: n,
  }
}

const rowOf = (markdown: string, label: string) =>
  markdown.split('\n').find((line) => line.startsWith(`| ${label} | 200/s`))

describe('the steady section with --repeat', () => {
  // Alternated rounds whose medians are 5 (the gateway) and 2 (the floor).
  const threeRounds = [
    run('gateway', 1, 5),
    run('handwritten', 1, 1),
    run('gateway', 2, 2),
    run('handwritten', 2, 2),
    run('gateway', 3, 9),
    run('handwritten', 3, 4),
  ]

  it('shows one run as it is', () => {
    const markdown = renderSteady([run('gateway', 1, 3)])
    expect(rowOf(markdown, 'gateway')).toContain('| 3.0 / 30.0 |')
    expect(markdown).not.toContain('Every round')
  })

  it('shows each figure as the median of the rounds, counts summed, and every round below', () => {
    const markdown = renderSteady(threeRounds)
    const gateway = rowOf(markdown, 'gateway')!
    // Odd rounds: the middle value of 5, 2 and 9.
    expect(gateway).toContain('| 300 |')
    expect(gateway).toContain('| 5.0 / 50.0 |')
    expect(gateway).toContain('| 500 + 250 us |')
    // The peak RSS is the highest of the rounds.
    expect(gateway).toContain('| 109 |')
    expect(rowOf(markdown, 'hand-written')).toContain('| 2.0 / 20.0 |')
    expect(markdown).toContain('Each row is the median of 3 rounds')
    expect(markdown).toContain(
      '- gateway, 200/s: 50.0, 50.0, 50.0, 500 + 250; 20.0, 20.0, 20.0, 200 + 100; 90.0',
    )
    expect(markdown).toContain('2.50x the floor')
  })

  it("says how often each server's main thread was woken per webhook, the median of the rounds", () => {
    const markdown = renderSteady(threeRounds)
    expect(markdown).toContain("its main thread woken 5.0 times per webhook, the floor's 2.0")
  })

  it("shows the machine's cost of the same round trip at each rate when it was measured", () => {
    const runs = [run('gateway', 1, 5), run('handwritten', 1, 1)]
    expect(renderSteady(runs)).not.toContain('What this machine charges')
    const markdown = renderSteady(runs, [
      { rate: 20, roundTrips: 200, clientUs: 400, echoUs: 250, clientWakes: 1.6 },
      { rate: 200, roundTrips: 1600, clientUs: 156, echoUs: 69, clientWakes: 1.5 },
    ])
    expect(markdown).toContain('What this machine charges')
    expect(markdown).toContain(
      "- 20/s: 650 us of CPU per round trip (client 400, echo 250), the client woken 1.6 times: 250 us of the client's CPU per wake",
    )
    expect(markdown).toContain('- 200/s: 225 us of CPU per round trip')
  })

  it('writes rates with a thousands separator', () => {
    const markdown = renderSteady([{ ...run('gateway', 1, 5), rate: 1000 }])
    expect(markdown).toContain('| gateway | 1,000/s |')
  })

  it('takes the mean of the two middle values of an even number of rounds', () => {
    const markdown = renderSteady([run('gateway', 1, 2), run('gateway', 2, 4)])
    expect(rowOf(markdown, 'gateway')).toContain('| 3.0 / 30.0 |')
  })

  it('keeps a failed round apart from the medians of the others', () => {
    const failed = { server: 'gateway', rate: 200, round: 2, error: 'exited' } as SteadyRun
    const markdown = renderSteady([run('gateway', 1, 2), failed, run('gateway', 3, 4)])
    expect(rowOf(markdown, 'gateway')).toContain('| 200 |')
    expect(markdown).toContain('| gateway | 200/s | FAILED: exited |')
  })
})

describe('the steady section by kind of statement', () => {
  const insert = (rows: number) =>
    `WITH inserted AS ( INSERT INTO webhooks ("id","event_key") values ${Array.from(
      { length: rows },
      (_, row) => `($${row * 2 + 1},$${row * 2 + 2})`,
    ).join(',')} ON CONFLICT DO NOTHING RETURNING id ) SELECT $${rows * 2 + 1}::text`

  it('takes a group commit of any size for one kind', () => {
    expect(statementKind(insert(1))).toBe(statementKind(insert(40)))
    expect(statementKind(insert(3))).toContain('values (...) ON CONFLICT')
    expect(statementKind('UPDATE webhooks SET status = $1')).not.toBe(statementKind(insert(1)))
  })

  it('sums each kind and puts the costliest first, whatever its calls', () => {
    const kinds = statementKinds(
      [
        { query: insert(1), calls: 150, ms: 30, rows: 150, walBytes: 300_000 },
        { query: insert(5), calls: 50, ms: 20, rows: 250, walBytes: 500_000 },
        {
          query: 'UPDATE webhooks SET status = $1 WHERE id = ANY($2)',
          calls: 2,
          ms: 60,
          rows: 400,
          walBytes: 900_000,
        },
        { query: 'SELECT $1', calls: 0, ms: 0, rows: 0, walBytes: 0 },
      ],
      400,
    )
    expect(kinds.map((kind) => kind.query.slice(0, 6))).toEqual(['UPDATE', 'WITH i'])
    expect(kinds[0]).toMatchObject({
      perWebhook: 0.005,
      usPerWebhook: 150,
      walBytesPerWebhook: 2250,
      rowsPerCall: 200,
    })
    expect(kinds[1]!.query).toBe(
      'WITH inserted AS ( INSERT INTO webhooks ("id","event_key") values (...) ON CONFLICT DO NOTHING RETURNING id ) SELECT $n::text',
    )
    expect(kinds[1]).toMatchObject({
      perWebhook: 0.5,
      usPerWebhook: 125,
      walBytesPerWebhook: 2000,
      rowsPerCall: 2,
    })
  })

  it('shows a long statement by its start and its end', () => {
    const [kind] = statementKinds(
      [{ query: `SELECT ${'a, '.repeat(60)}b FROM t`, calls: 1, ms: 1, rows: 1, walBytes: 0 }],
      1,
    )
    expect(kind!.query).toMatch(/^SELECT a, a, .* … .*a, b FROM t$/)
    expect(kind!.query.length).toBeLessThan(130)
  })
})
