import { expect } from 'vitest'

/**
 * That a record statement failed and was tried again: `statements` holds the ids each statement tried to
 * record, in order. The first one (which failed) held some, each of them went again in the statements after
 * it, and those recorded `ids`, every one.
 */
export function expectRecordedAgain(statements: readonly string[][], ids: readonly string[]): void {
  const [failed, ...after] = statements
  expect(failed!.length).toBeGreaterThan(0)
  expect(after.flat()).toEqual(expect.arrayContaining(failed!))
  expect(new Set(after.flat())).toEqual(new Set(ids))
}
