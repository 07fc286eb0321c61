import { describe, expect, it } from 'vitest'
import { bounded, DeadlineExceeded, withDeadline } from '../../src/ops/deadline.ts'

const never = () => new Promise<never>(() => {})

describe('withDeadline', () => {
  it('gives the answer that comes in time', async () => {
    await expect(withDeadline(Promise.resolve(7), 1000, 'postgres')).resolves.toBe(7)
  })

  it('rejects with DeadlineExceeded, naming what did not answer, when nothing comes in time', async () => {
    const late = withDeadline(never(), 20, 'postgres.claimDue')
    await expect(late).rejects.toBeInstanceOf(DeadlineExceeded)
    await expect(late).rejects.toThrow('postgres.claimDue: no answer within 20 ms')
  })

  it('passes a failure through as it is', async () => {
    await expect(withDeadline(Promise.reject(new Error('refused')), 1000, 'x')).rejects.toThrow('refused')
  })
})

describe('bounded', () => {
  const store = {
    calls: [] as unknown[][],
    async claim(limit: number) {
      this.calls.push([limit])
      return limit * 2
    },
    stall: never,
    async other() {
      return 'untouched'
    },
  }

  it('calls the named methods on their object, with their arguments', async () => {
    const view = bounded(store, ['claim', 'stall'], 50, 'postgres')
    await expect(view.claim(4)).resolves.toBe(8)
    expect(store.calls).toEqual([[4]])
    expect(Object.keys(view).sort()).toEqual(['claim', 'stall'])
  })

  it('gives up on a method that does not answer', async () => {
    const view = bounded(store, ['stall'], 20, 'postgres')
    await expect(view.stall()).rejects.toThrow('postgres.stall: no answer within 20 ms')
  })
})
