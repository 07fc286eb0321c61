import { describe, expect, it } from 'vitest'
import { patternProblem, topicMatches } from '../../src/destinations/patterns.ts'

describe('topicMatches', () => {
  it.each([
    ['payment.*', 'payment.completed', true],
    ['payment.*', 'payment.completed.late', false],
    ['payment.*', 'payment', false],
    ['raw.github.#', 'raw.github.push', true],
    ['raw.github.#', 'raw.github.pull_request.opened', true],
    ['raw.github.#', 'raw.github', true],
    ['raw.github.#', 'raw.stripe.charge.succeeded', false],
    ['#', 'anything.at.all', true],
    ['#', 'one', true],
    ['#.opened', 'pull_request.opened', true],
    ['#.opened', 'raw.github.pull_request.opened', true],
    ['#.opened', 'pull_request.closed', false],
    ['*.*', 'order.created', true],
    ['*.*', 'order', false],
    ['raw.*.push', 'raw.github.push', true],
    ['raw.#.opened', 'raw.github.issues.opened', true],
    ['raw.#.#.opened', 'raw.opened', true],
    ['payment.completed', 'payment.completed', true],
    ['payment.completed', 'payment.failed', false],
    ['Payment.completed', 'payment.completed', false],
    ['raw.paypal.PAYMENT.CAPTURE.COMPLETED', 'raw.paypal.PAYMENT.CAPTURE.COMPLETED', true],
    ['*', 'git.push', false],
    ['git.push.#', 'git.push', true],
  ])('%s matches %s: %s', (pattern, key, expected) => {
    expect(topicMatches(pattern, key)).toBe(expected)
  })
})

describe('patternProblem', () => {
  it('accepts topic patterns', () => {
    expect(patternProblem('payment.*')).toBeUndefined()
    expect(patternProblem('raw.github.#')).toBeUndefined()
  })

  it('refuses empty, whitespace and over-long patterns', () => {
    expect(patternProblem('')).toMatch(/empty/)
    expect(patternProblem('payment. *')).toMatch(/whitespace/)
    expect(patternProblem('a'.repeat(256))).toMatch(/255 bytes/)
  })
})
