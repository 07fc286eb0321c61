import { describe, expect, it } from 'vitest'
import { fromDecimal, fromMinor } from '../../src/money.ts'

describe('fromMinor', () => {
  it('divides two-decimal currencies by 100 and upper-cases the code', () => {
    expect(fromMinor(1999, 'usd')).toEqual({ amount: 19.99, amount_minor: 1999, currency: 'USD' })
  })
  it('leaves zero-decimal currencies as they are', () => {
    expect(fromMinor(500, 'jpy')).toEqual({ amount: 500, amount_minor: 500, currency: 'JPY' })
    expect(fromMinor(12000, 'KRW')).toEqual({ amount: 12000, amount_minor: 12000, currency: 'KRW' })
  })
  it('divides three-decimal currencies by 1000', () => {
    expect(fromMinor(1234, 'bhd')).toEqual({ amount: 1.234, amount_minor: 1234, currency: 'BHD' })
  })
})

describe('fromDecimal', () => {
  it('reads a decimal string without floating-point rounding', () => {
    expect(fromDecimal('10.10', 'USD')).toEqual({ amount: 10.1, amount_minor: 1010, currency: 'USD' })
    expect(fromDecimal('0.29', 'usd')).toEqual({ amount: 0.29, amount_minor: 29, currency: 'USD' })
  })
  it('pads missing decimals', () => {
    expect(fromDecimal('7', 'EUR')).toEqual({ amount: 7, amount_minor: 700, currency: 'EUR' })
    expect(fromDecimal('7.5', 'EUR').amount_minor).toBe(750)
  })
  it('knows zero-decimal currencies', () => {
    expect(fromDecimal('1500', 'JPY')).toEqual({ amount: 1500, amount_minor: 1500, currency: 'JPY' })
    expect(fromDecimal('1500.00', 'JPY').amount_minor).toBe(1500)
  })
  it('refuses more decimals than the currency has, and non-numbers', () => {
    expect(() => fromDecimal('1.5', 'JPY')).toThrow(RangeError)
    expect(() => fromDecimal('abc', 'USD')).toThrow(RangeError)
    expect(() => fromDecimal('1e3', 'USD')).toThrow(RangeError)
  })
})
