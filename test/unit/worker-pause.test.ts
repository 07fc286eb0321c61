import { describe, expect, it } from 'vitest'
import {
  holdBackChange,
  initialHoldBack,
  nextHoldBack,
  pauseAfterBatch,
  type HoldBack,
} from '../../src/pipeline/worker.ts'

describe('pauseAfterBatch', () => {
  const busy = {
    batchMs: 10,
    batchSize: 8,
    arrivalsPerSecond: 0,
    intakeSaturated: true,
    share: 0.2,
  }

  it('leaves intake four fifths of a saturated event loop while deliveries arrive', () => {
    expect(pauseAfterBatch(busy)).toBe(40)
  })

  it('publishes no more than its share of the arrivals while intake is saturated', () => {
    // 8 webhooks at a fifth of 2,000 arrivals a second: one batch every 20 ms.
    expect(pauseAfterBatch({ ...busy, batchMs: 1, arrivalsPerSecond: 2000 })).toBe(20)
    expect(pauseAfterBatch({ ...busy, batchMs: 1, arrivalsPerSecond: 2000, intakeSaturated: false })).toBe(0)
  })

  it('does not pause while intake keeps up (draining after a burst, or a steady flow)', () => {
    expect(pauseAfterBatch({ ...busy, intakeSaturated: false })).toBe(0)
  })

  it('pauses at most 250 ms, and a share of 1 never pauses', () => {
    expect(pauseAfterBatch({ ...busy, batchMs: 5000 })).toBe(250)
    expect(pauseAfterBatch({ ...busy, share: 1 })).toBe(0)
  })
})

describe('nextHoldBack', () => {
  const saturatedAt = (now: number, arrivalsPerSecond: number) => ({
    now,
    saturated: true,
    arrivalsPerSecond,
  })
  const calmAt = (now: number, arrivalsPerSecond: number) => ({ now, saturated: false, arrivalsPerSecond })
  /** Two saturated windows in a row at `rate`: the second starts a probe. */
  const probing = (state: HoldBack, now: number, rate: number) =>
    nextHoldBack(nextHoldBack(state, saturatedAt(now, rate)), saturatedAt(now + 500, rate))

  it('does not hold back on one saturated window (a burst begins, or a steady flow bunches up)', () => {
    const once = nextHoldBack(initialHoldBack, saturatedAt(0, 1000))
    expect(once.mode).toBe('free')
    expect(nextHoldBack(once, calmAt(500, 1000)).mode).toBe('free')
  })

  it('probes on the second saturated window in a row, from that window’s arrivals', () => {
    const probe = probing(initialHoldBack, 0, 1500)
    expect(probe).toMatchObject({ mode: 'probing', freeRate: 1500 })
  })

  it('holds back while saturated when holding back let a quarter more in (senders waiting for answers)', () => {
    const holding = nextHoldBack(probing(initialHoldBack, 0, 1500), saturatedAt(700, 2100))
    expect(holding.mode).toBe('holding')
    expect(nextHoldBack(holding, saturatedAt(1200, 2200)).mode).toBe('holding')
    expect(nextHoldBack(holding, saturatedAt(1200, 1900)).mode).toBe('holding')
    // The burst is over: full speed again, and the next saturation is probed at once.
    const after = nextHoldBack(holding, calmAt(1200, 300))
    expect(after.mode).toBe('free')
    expect(probing(after, 1700, 1500).mode).toBe('probing')
  })

  it('takes a steady flow read faster for a moment (1.18 times, seen at 1,000/s) for no gain', () => {
    const probe = probing(initialHoldBack, 0, 937)
    expect(nextHoldBack(probe, saturatedAt(700, 1102))).toMatchObject({ mode: 'free', quietUntil: 30_700 })
  })

  it('stops holding back once the gain is gone, with a quiet spell as after a probe that found nothing', () => {
    const holding = nextHoldBack(probing(initialHoldBack, 0, 1000), saturatedAt(700, 1300))
    expect(holding.mode).toBe('holding')
    // Arrivals back where they were while the worker still holds back: the probe saw a backlog read at last.
    const free = nextHoldBack(holding, saturatedAt(1200, 1050))
    expect(free).toMatchObject({ mode: 'free', quietUntil: 31_200, quietMs: 60_000 })
    expect(probing(free, 1700, 1000).mode).toBe('free')
    expect(holdBackChange(holding, free)).toEqual({ holding: false })
  })

  it('stops holding back when arrivals did not rise (a steady flow), and probes again only after a quiet spell that doubles', () => {
    const probe = probing(initialHoldBack, 0, 1000)
    const free = nextHoldBack(probe, saturatedAt(700, 1050))
    expect(free).toMatchObject({ mode: 'free', quietUntil: 30_700, quietMs: 60_000 })
    // Saturated all along: no probe during the quiet spell.
    expect(probing(free, 1200, 1000).mode).toBe('free')
    expect(probing(free, 29_000, 1000).mode).toBe('free')
    const again = probing(free, 30_500, 1000)
    expect(again.mode).toBe('probing')
    expect(nextHoldBack(again, saturatedAt(31_200, 1000))).toMatchObject({
      quietUntil: 91_200,
      quietMs: 120_000,
    })
  })

  it('waits at most ten minutes between probes', () => {
    let state = initialHoldBack
    let now = 0
    for (let probe = 0; probe < 12; probe++) {
      now = Math.max(now + 500, state.quietUntil)
      state = nextHoldBack({ ...state, saturated: true }, saturatedAt(now, 1000))
      expect(state.mode).toBe('probing')
      now += 200
      state = nextHoldBack(state, saturatedAt(now, 1000))
    }
    expect(state.quietUntil - now).toBe(600_000)
    expect(state.quietMs).toBe(600_000)
  })
})

describe('holdBackChange (the worker_hold_back_probes_total and worker_holding_back metrics)', () => {
  const saturatedAt = (now: number, arrivalsPerSecond: number) => ({
    now,
    saturated: true,
    arrivalsPerSecond,
  })
  const calmAt = (now: number) => ({ now, saturated: false, arrivalsPerSecond: 100 })

  it('says when the worker starts holding back (a probe), what the probe found, and when it stops', () => {
    const saturated = nextHoldBack(initialHoldBack, saturatedAt(0, 1000))
    expect(holdBackChange(initialHoldBack, saturated)).toEqual({})
    const probe = nextHoldBack(saturated, saturatedAt(500, 1000))
    expect(holdBackChange(saturated, probe)).toEqual({ holding: true })

    const holding = nextHoldBack(probe, saturatedAt(700, 1500))
    expect(holdBackChange(probe, holding)).toEqual({ probe: 'helped' })
    const still = nextHoldBack(holding, saturatedAt(1200, 1500))
    expect(holdBackChange(holding, still)).toEqual({})
    expect(holdBackChange(still, nextHoldBack(still, calmAt(1700)))).toEqual({ holding: false })
  })

  it('counts a probe that found no more arrivals, and the worker at full speed again', () => {
    const probe = nextHoldBack(nextHoldBack(initialHoldBack, saturatedAt(0, 1000)), saturatedAt(500, 1000))
    const free = nextHoldBack(probe, saturatedAt(700, 1000))
    expect(holdBackChange(probe, free)).toEqual({ probe: 'did_not_help', holding: false })
  })

  it('counts a probe that helped even when intake eased meanwhile', () => {
    const probe = nextHoldBack(nextHoldBack(initialHoldBack, saturatedAt(0, 1000)), saturatedAt(500, 1000))
    const eased = nextHoldBack(probe, { now: 700, saturated: false, arrivalsPerSecond: 1300 })
    expect(holdBackChange(probe, eased)).toEqual({ probe: 'helped', holding: false })
  })
})
