import { describe, expect, it } from 'vitest'
import { parseJsonObject } from '../../src/parse.ts'
import { MalformedWebhook } from '../../src/provider.ts'

const reasonFor = (body: string): string => {
  try {
    parseJsonObject(body, 'acme')
  } catch (error) {
    expect(error).toBeInstanceOf(MalformedWebhook)
    return (error as Error).message
  }
  throw new Error('parsed')
}

describe('parseJsonObject', () => {
  it('says where the JSON is invalid without quoting the body (reasons go to logs and the rejection log)', () => {
    expect(reasonFor('{"card":"4242" x}')).toBe('acme: body is not valid JSON (at character 15)')
    expect(reasonFor('{"card":')).toBe('acme: body is not valid JSON (it ends too early)')
    const quoted = reasonFor('card 4242 4242 4242 4242')
    expect(quoted).toMatch(/^acme: body is not valid JSON/)
    expect(quoted).not.toContain('4242')
  })

  it('refuses JSON that is not one object', () => {
    expect(reasonFor('[1]')).toBe('acme: body is not a JSON object')
    expect(reasonFor('null')).toBe('acme: body is not a JSON object')
  })
})
